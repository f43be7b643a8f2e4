//! Symlinks over HTTP, as Swift's `symlink` middleware answers them: a zero-byte PUT with
//! `X-Symlink-Target` makes a link that GET and HEAD follow (with `Content-Location`, a
//! Range applied to the target, at most 2 links deep, 409 past that), `?symlink=get`
//! returns the link itself, static links (`X-Symlink-Target-Etag`) are checked when made
//! and when read, POST answers 307 to the target while keeping the metadata on the link,
//! COPY copies the target (or the link with `?symlink=get`), listings carry
//! `symlink_path`, `symlink_etag` and `symlink_bytes`, an SLO's segments may be links, and
//! `/info` says all this works.

use reqwest::Method;

use crate::common::*;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A PUT of a link `path` to `target` with more headers; its status.
async fn link(s: &Session, path: &str, target: &str, more: &[(&str, &str)]) -> reqwest::Response {
    let mut r = s
        .req(Method::PUT, path)
        .header("x-symlink-target", target)
        .header("content-length", 0);
    for (k, v) in more {
        r = r.header(*k, *v);
    }
    r.body("").send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    let info: serde_json::Value = reqwest::get(format!("{}/info", c.proxy))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["symlink"],
        serde_json::json!({"symloop_max": 2, "static_links": true})
    );
    let account = s.url.rsplit('/').next().unwrap().to_string();
    for cont in ["tgt", "links"] {
        s.create_container(cont).await;
    }
    let body = b"target body".to_vec();
    let r = s
        .req(Method::PUT, "tgt/obj")
        .header("content-type", "application/target")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let etag = md5_hex(&body);
    let location = format!("/v1/{account}/tgt/obj");

    // A link, and reads through it.
    assert_eq!(link(&s, "links/l1", "tgt/obj", &[]).await.status(), 201);
    let r = s.get("links/l1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-location"), location);
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let r = s
        .req(Method::GET, "links/l1")
        .header("range", "bytes=7-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"body");
    // Conditions apply to the target, never to the link on the way.
    let r = s
        .req(Method::GET, "links/l1")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // The link itself.
    let r = s.get("links/l1?symlink=get").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-symlink-target"), "tgt/obj");
    assert_eq!(header(&r, "content-type"), "application/symlink");
    assert!(r.bytes().await.unwrap().is_empty());

    // Refusals, in Swift's words.
    let r = s
        .req(Method::PUT, "links/bad")
        .header("x-symlink-target", "tgt/obj")
        .body("non-zero")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Symlink requests require a zero byte body"
    );
    let r = link(&s, "links/bad", "obj", &[]).await;
    assert_eq!(r.status(), 412);
    let r = link(&s, "links/bad", "links/bad", &[]).await;
    assert_eq!(r.text().await.unwrap(), "Symlink cannot target itself");

    // Chains: two links are followed, a third is too many; a loop too.
    assert_eq!(link(&s, "links/l2", "links/l1", &[]).await.status(), 201);
    assert_eq!(s.get("links/l2").await.status(), 200);
    assert_eq!(link(&s, "links/l3", "links/l2", &[]).await.status(), 201);
    let r = s.get("links/l3").await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.text().await.unwrap(),
        "Too many levels of symbolic links, maximum allowed is 2"
    );
    // A link to nothing is made, and reads 404 naming where it points.
    let r = link(&s, "links/dangling", "tgt/nothing", &[]).await;
    assert_eq!(r.status(), 201);
    let r = s.get("links/dangling").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        header(&r, "content-location"),
        format!("/v1/{account}/tgt/nothing")
    );

    // Static links: checked when made, and when read.
    let r = link(
        &s,
        "links/static",
        "tgt/obj",
        &[("x-symlink-target-etag", "nope")],
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.text().await.unwrap(),
        format!("Object Etag '{etag}' does not match X-Symlink-Target-Etag header 'nope'")
    );
    let r = link(
        &s,
        "links/nowhere",
        "tgt/nothing",
        &[("x-symlink-target-etag", &etag)],
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "X-Symlink-Target does not exist");
    let r = link(
        &s,
        "links/static",
        "tgt/obj",
        &[("x-symlink-target-etag", &etag)],
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = s
        .req(Method::HEAD, "links/static?symlink=get")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-symlink-target-etag"), etag);
    assert_eq!(header(&r, "x-symlink-target-bytes"), body.len().to_string());
    // Without a Content-Type a static link takes its target's.
    assert_eq!(header(&r, "content-type"), "application/target");

    // Listings say where links point.
    let r = s.get("links?format=json").await;
    let rows: Vec<serde_json::Value> = r.json().await.unwrap();
    let row = |name: &str| rows.iter().find(|x| x["name"] == name).unwrap().clone();
    assert_eq!(row("l1")["symlink_path"], location);
    assert!(row("l1").get("symlink_etag").is_none());
    assert_eq!(row("l1")["content_type"], "application/symlink");
    assert_eq!(row("static")["symlink_etag"], etag);
    assert_eq!(row("static")["symlink_bytes"], body.len());
    assert_eq!(row("static")["content_type"], "application/target");

    // POST: the metadata lands on the link, the answer points at the target (read without
    // following the redirect, as Swift's tests do).
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .post(format!("{}/links/l1", s.url))
        .header("x-auth-token", &s.token)
        .header("x-object-meta-alpha", "apple")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(header(&r, "location"), location);
    let r = s
        .req(Method::HEAD, "links/l1?symlink=get")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-object-meta-alpha"), "apple");
    assert_eq!(header(&r, "x-symlink-target"), "tgt/obj");
    let r = s.req(Method::HEAD, "links/l1").send().await.unwrap();
    assert_eq!(header(&r, "x-object-meta-alpha"), "");
    let r = s
        .req(Method::POST, "tgt/obj")
        .header("x-symlink-target", "tgt/other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // COPY copies what the link leads to; with ?symlink=get, the link.
    let r = s
        .req(Method::from_bytes(b"COPY").unwrap(), "links/l1")
        .header("destination", "tgt/copy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.get("tgt/copy").await;
    assert_eq!(header(&r, "content-location"), "");
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let r = s
        .req(Method::PUT, "links/l1copy?symlink=get")
        .header("x-copy-from", "links/l1")
        .header("content-length", 0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.get("links/l1copy").await;
    assert_eq!(header(&r, "content-location"), location);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // An SLO whose segment is a link reads through it.
    let manifest = serde_json::json!([{"path": "/links/l1"}]).to_string();
    let r = s.put("links/slo?multipart-manifest=put", manifest).await;
    assert_eq!(r.status(), 201);
    let r = s.get("links/slo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // Deleting a link leaves its target.
    assert_eq!(
        s.req(Method::DELETE, "links/l1")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(s.get("tgt/obj").await.status(), 200);
}
