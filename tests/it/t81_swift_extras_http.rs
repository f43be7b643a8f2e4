//! The Swift features beyond plain objects, over HTTP, with their failure answers:
//! large objects (DLO and SLO: ETag rules, ranges across segments, nested manifests,
//! `multipart-manifest=get|delete`, bad manifests), ACLs (container and account, denial),
//! temp URLs (expired, forged, prefix, PUT, disposition), quotas, bulk delete, archive
//! extraction (tar, tar.gz, tar.bz2) and versioned writes (stack and history).

use std::process::Command;

use reqwest::Method;

use crate::common::*;

async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    for cont in ["segs", "big"] {
        assert_eq!(status(s.req(Method::PUT, cont)).await, 201);
    }
    // Three segments of different sizes.
    let parts: Vec<Vec<u8>> = [1000usize, 2500, 700]
        .iter()
        .enumerate()
        .map(|(i, n)| random_bytes(*n, i as u64 + 1))
        .collect();
    let whole: Vec<u8> = parts.concat();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(
            s.put(&format!("segs/part/{i:02}"), p.clone())
                .await
                .status(),
            201
        );
    }
    let etags: Vec<String> = parts.iter().map(|p| md5_hex(p)).collect();

    // DLO.
    let r = s
        .req(Method::PUT, "big/dlo")
        .header("x-object-manifest", "segs/part/")
        .header("content-length", 0)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.get("big/dlo").await;
    assert_eq!(r.status(), 200);
    let dlo_etag = format!("\"{}\"", md5_hex(etags.concat().as_bytes()));
    assert_eq!(header(&r, "etag"), dlo_etag);
    assert_eq!(header(&r, "x-object-manifest"), "segs/part/");
    assert!(r.bytes().await.unwrap() == whole);
    let r = s.req(Method::HEAD, "big/dlo").send().await.unwrap();
    assert_eq!(header(&r, "content-length"), whole.len().to_string());
    // A range across both segment boundaries.
    let r = s
        .req(Method::GET, "big/dlo")
        .header("range", "bytes=900-3600")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 900-3600/{}", whole.len())
    );
    assert!(r.bytes().await.unwrap() == whole[900..=3600]);
    let r = s
        .req(Method::GET, "big/dlo")
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap() == whole[whole.len() - 100..]);
    let r = s
        .req(Method::GET, "big/dlo")
        .header("if-none-match", &dlo_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = s.get("big/dlo?multipart-manifest=get").await;
    assert_eq!(header(&r, "content-length"), "0");
    let bad = s
        .req(Method::PUT, "big/bad")
        .header("x-object-manifest", "no-slash")
        .header("content-length", 0)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // SLO: the failure answers first.
    let put_slo = |name: &str, body: String| {
        s.req(Method::PUT, &format!("big/{name}?multipart-manifest=put"))
            .body(body)
    };
    let r = put_slo("slo", "not json".into()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Manifest must be valid JSON"));
    let manifest = |etag0: &str, size0: u64| {
        serde_json::json!([
            {"path": "/segs/part/00", "etag": etag0, "size_bytes": size0},
            {"path": "/segs/part/01", "etag": etags[1], "size_bytes": 2500},
            {"path": "/segs/part/02", "etag": null, "size_bytes": null},
        ])
        .to_string()
    };
    let r = put_slo("slo", manifest("0123", 1000)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("/segs/part/00, Etag Mismatch"), "{text}");
    let r = put_slo("slo", manifest(&etags[0], 999))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Size Mismatch"));
    let missing = serde_json::json!([{"path": "/segs/nope", "etag": null, "size_bytes": null}]);
    let r = put_slo("slo", missing.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("/segs/nope, 404 Not Found"));
    let too_many: Vec<_> = (0..1001)
        .map(|_| serde_json::json!({"path": "/segs/part/00"}))
        .collect();
    let r = put_slo("slo", serde_json::Value::Array(too_many).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        s.get("big/slo").await.status(),
        404,
        "no half-made manifest"
    );

    // A good SLO, GET/HEAD/Range, then one with a ranged segment and one nested.
    let r = put_slo("slo", manifest(&etags[0], 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let slo_etag = format!("\"{}\"", md5_hex(etags.concat().as_bytes()));
    assert_eq!(header(&r, "etag"), slo_etag);
    // With heartbeat=on: 202 at once, a space, then the outcome as a report.
    let beat = |name: &str, body: String| {
        s.req(
            Method::PUT,
            &format!("big/{name}?multipart-manifest=put&heartbeat=on"),
        )
        .body(body)
    };
    let r = beat("slo-beat", manifest(&etags[0], 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let text = r.text().await.unwrap();
    assert!(text.starts_with(" \r\n\r\n"), "{text:?}");
    assert!(text.contains("Response Status: 201 Created\n"), "{text}");
    assert!(text.contains(&format!("Etag: {slo_etag}\n")), "{text}");
    let r = beat("slo-beat-bad", missing.to_string())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let report: serde_json::Value = serde_json::from_str(r.text().await.unwrap().trim()).unwrap();
    assert_eq!(report["Response Status"], "400 Bad Request", "{report}");
    assert_eq!(report["Errors"][0][0], "/segs/nope", "{report}");
    assert_eq!(s.get("big/slo-beat-bad").await.status(), 404);
    let listing: serde_json::Value = s.get("big?format=json").await.json().await.unwrap();
    let row = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "slo")
        .unwrap();
    assert_eq!(row["bytes"], whole.len(), "listed at its full size: {row}");
    // A POSTed Content-Type reaches the listing (as Swift's): the row keeps its size, its
    // manifest's hash and its SLO ETag, and its last_modified moves to the POST's.
    let listed = |listing: serde_json::Value| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "slo")
            .unwrap()
            .clone()
    };
    let before = row.clone();
    assert_eq!(before["slo_etag"], slo_etag.as_str(), "{before}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = s
        .req(Method::POST, "big/slo")
        .header("content-type", "image/jpeg")
        .header("x-object-meta-test", "blah");
    assert_eq!(status(r).await, 202);
    let after = listed(s.get("big?format=json").await.json().await.unwrap());
    assert_eq!(after["content_type"], "image/jpeg", "{after}");
    for k in ["bytes", "hash", "slo_etag"] {
        assert_eq!(after[k], before[k], "{k}: {after}");
    }
    assert!(
        after["last_modified"].as_str() > before["last_modified"].as_str(),
        "{before} then {after}"
    );
    // A POST without a Content-Type leaves the listed type alone.
    let r = s
        .req(Method::POST, "big/slo")
        .header("x-object-meta-test", "again");
    assert_eq!(status(r).await, 202);
    let again = listed(s.get("big?format=json").await.json().await.unwrap());
    assert_eq!(again["content_type"], "image/jpeg", "{again}");
    let r = s.get("big/slo").await;
    assert_eq!(header(&r, "etag"), slo_etag);
    assert_eq!(header(&r, "x-static-large-object"), "True");
    assert!(r.bytes().await.unwrap() == whole);
    let r = s.req(Method::HEAD, "big/slo").send().await.unwrap();
    assert_eq!(header(&r, "content-length"), whole.len().to_string());
    let r = s
        .req(Method::GET, "big/slo")
        .header("range", "bytes=999-3500")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap() == whole[999..=3500]);
    let r = s.get("big/slo?multipart-manifest=get").await;
    assert!(header(&r, "content-type").starts_with("application/json"));
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored[1]["name"], "/segs/part/01");
    assert_eq!(stored[1]["bytes"], 2500);
    assert_eq!(stored[1]["hash"], etags[1].as_str());

    // A copy of a large object is the assembled object, and with
    // ?multipart-manifest=get the manifest itself.
    let r = s
        .req(Method::PUT, "big/copy")
        .header("x-copy-from", "big/slo")
        .header("content-length", 0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "etag"), md5_hex(&whole));
    let r = s.get("big/copy").await;
    assert!(!r.headers().contains_key("x-static-large-object"));
    assert!(r.bytes().await.unwrap() == whole);
    let r = s
        .req(
            Method::from_bytes(b"COPY").unwrap(),
            "big/slo?multipart-manifest=get",
        )
        .header("destination", "big/slo-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.get("big/slo-copy").await;
    assert_eq!(header(&r, "x-static-large-object"), "True");
    assert_eq!(header(&r, "etag"), slo_etag);
    assert!(r.bytes().await.unwrap() == whole);

    let ranged = serde_json::json!([
        {"path": "/segs/part/01", "range": "100-199"},
        {"path": "/big/slo", "etag": slo_etag.trim_matches('"'), "size_bytes": whole.len()},
    ]);
    assert_eq!(
        put_slo("nested", ranged.to_string())
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let want: Vec<u8> = [&parts[1][100..200], &whole[..]].concat();
    let r = s.get("big/nested").await;
    assert_eq!(header(&r, "content-length"), want.len().to_string());
    assert!(r.bytes().await.unwrap() == want);
    let r = s
        .req(Method::GET, "big/nested")
        .header("range", "bytes=50-1150")
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap() == want[50..=1150]);

    // A segment overwritten after the manifest was made is never served: the first one
    // fails the GET with 409, a later one cuts the body short (the status is sent by then).
    assert_eq!(s.put("segs/part/00", "changed").await.status(), 201);
    assert_eq!(s.get("big/slo").await.status(), 409);
    assert_eq!(s.put("segs/part/00", parts[0].clone()).await.status(), 201);
    assert_eq!(s.put("segs/part/02", "changed").await.status(), 201);
    let r = s.get("big/slo").await;
    assert_eq!(r.status(), 200);
    if let Ok(b) = r.bytes().await {
        assert!(b.len() < whole.len(), "a changed segment was served");
    }
    assert_eq!(s.put("segs/part/02", parts[2].clone()).await.status(), 201);
    assert!(s.get("big/slo").await.bytes().await.unwrap() == whole);

    // multipart-manifest=delete takes the segments along (nested ones included).
    let r = s
        .req(Method::DELETE, "big/nested?multipart-manifest=delete")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = r.text().await.unwrap();
    assert!(report.contains("Response Status: 200 OK"), "{report}");
    // part/00-02, the inner manifest and the outer one (part/01 counted once).
    assert!(report.contains("Number Deleted: 5"), "{report}");
    assert_eq!(s.get("big/slo").await.status(), 404);
    assert!(s.names("segs", "").await.is_empty());
    assert_eq!(
        status(s.req(Method::DELETE, "big/dlo?multipart-manifest=delete")).await,
        400,
        "not an SLO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_temp_urls_and_quotas() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    let http = reqwest::Client::new();
    ok(&["user", "--dir", c.dir_str(), "add", "bob:bob", "b0b"]);
    ok(&["user", "--dir", c.dir_str(), "add", "carol:carol", "c4r"]);
    ok(&[
        "user",
        "--dir",
        c.dir_str(),
        "add",
        "root:admin",
        "r00t",
        "--reseller",
    ]);
    let info: serde_json::Value = http
        .get(format!("{}/info", c.proxy))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for feature in [
        "slo",
        "dlo",
        "tempurl",
        "bulk_delete",
        "bulk_upload",
        "versioned_writes",
        "container_quotas",
        "account_quotas",
    ] {
        assert!(info.get(feature).is_some(), "/info lacks {feature}: {info}");
    }
    assert_eq!(info["tempauth"]["account_acls"], true);
    assert_eq!(info["slo"]["max_manifest_segments"], 1000);
    let bob = c.login("bob:bob", "b0b").await;
    let carol = c.login("carol:carol", "c4r").await;
    let root = c.login("root:admin", "r00t").await;
    let as_ = |who: &Session, m: Method, path: &str| {
        http.request(m, format!("{}/{path}", s.url))
            .header("x-auth-token", &who.token)
    };
    assert_eq!(status(s.req(Method::PUT, "shared")).await, 201);
    assert_eq!(s.put("shared/doc", "hello").await.status(), 201);

    // A user of the account without admin (Swift's user without `.admin`) acts only
    // through ACLs, even in its own account.
    ok(&[
        "user",
        "--dir",
        c.dir_str(),
        "add",
        "--member",
        "test:guest",
        "g0est",
    ]);
    let guest = c.login("test:guest", "g0est").await;
    assert_eq!(guest.url, s.url, "the guest's storage URL is its account's");
    let listing = http.get(&s.url).header("x-auth-token", &guest.token);
    assert_eq!(status(listing).await, 403);
    assert_eq!(status(as_(&guest, Method::GET, "shared/doc")).await, 403);
    assert_eq!(status(as_(&guest, Method::PUT, "guestmade")).await, 403);
    let grant = s
        .req(Method::POST, "shared")
        .header("x-container-read", "test:guest");
    assert_eq!(status(grant).await, 204);
    assert_eq!(status(as_(&guest, Method::GET, "shared/doc")).await, 200);
    let acl = as_(&guest, Method::POST, "shared").header("x-container-read", ".r:*");
    assert_eq!(status(acl).await, 403, "only owners set ACLs");

    // Service tokens: SERVICE_test takes the owner's token plus a service token of a user
    // in the `service` group; neither alone.
    ok(&[
        "user",
        "--dir",
        c.dir_str(),
        "add",
        "--member",
        "--group",
        "service",
        "glance:glance",
        "gl4nce",
    ]);
    let glance = c.login("glance:glance", "gl4nce").await;
    let service_url = s.url.replace("/AUTH_test", "/SERVICE_test");
    let svc = |token: &str, service: Option<&str>, m: Method, path: &str| {
        let r = http
            .request(m, format!("{service_url}/{path}"))
            .header("x-auth-token", token);
        match service {
            Some(t) => r.header("x-service-token", t),
            None => r,
        }
    };
    let both = |m, path| svc(&s.token, Some(&glance.token), m, path);
    assert_eq!(status(both(Method::PUT, "images")).await, 201);
    assert_eq!(
        status(both(Method::PUT, "images/i1").body("img")).await,
        201
    );
    assert_eq!(status(both(Method::GET, "images/i1")).await, 200);
    let user_alone = svc(&s.token, None, Method::GET, "images/i1");
    assert_eq!(status(user_alone).await, 403);
    let service_alone = svc(&glance.token, Some(&glance.token), Method::GET, "images/i1");
    assert_eq!(status(service_alone).await, 403);
    let not_a_service = svc(&s.token, Some(&bob.token), Method::GET, "images/i1");
    assert_eq!(status(not_a_service).await, 403);
    assert_eq!(status(both(Method::DELETE, "images/i1")).await, 204);
    let bad = stratus(&[
        "user",
        "--dir",
        c.dir_str(),
        "add",
        "--group",
        "a,b",
        "x:y",
        "k",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("group name"));

    // OPTIONS needs no token; a CORS preflight is judged by the container's origins.
    let opts = |path: &str| http.request(Method::OPTIONS, format!("{}/{path}", s.url));
    let r = opts("shared/doc").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["allow"].to_str().unwrap().contains("COPY"));
    let preflight = |origin: &str| {
        opts("shared/doc")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
    };
    assert_eq!(status(preflight("http://site.example")).await, 401);
    let cors = s.req(Method::POST, "shared").header(
        "x-container-meta-access-control-allow-origin",
        "http://site.example",
    );
    assert_eq!(status(cors).await, 204);
    let r = preflight("http://site.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://site.example"
    );
    assert_eq!(status(preflight("http://elsewhere.example")).await, 401);

    // Container ACLs.
    assert_eq!(status(as_(&bob, Method::GET, "shared/doc")).await, 403);
    assert_eq!(status(http.get(format!("{}/shared/doc", s.url))).await, 401);
    let r = s
        .req(Method::POST, "shared")
        .header("x-container-read", "bob:bob")
        .header("x-container-write", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(status(as_(&bob, Method::GET, "shared/doc")).await, 200);
    assert_eq!(status(as_(&bob, Method::GET, "shared")).await, 200);
    assert_eq!(
        status(as_(&bob, Method::PUT, "shared/from-bob").body("b")).await,
        201
    );
    assert_eq!(
        status(as_(&bob, Method::DELETE, "shared/from-bob")).await,
        204
    );
    // Bulk deletes are judged item by item with the requester's rights.
    assert_eq!(
        status(as_(&bob, Method::PUT, "shared/bulk-bob").body("b")).await,
        201
    );
    let r = as_(&bob, Method::POST, "?bulk-delete")
        .body("/shared/bulk-bob\n")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("Number Deleted: 1\n"), "{text}");
    let r = as_(&carol, Method::POST, "?bulk-delete")
        .body("/shared/doc\n")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("/shared/doc, 403 Forbidden"), "{text}");
    assert_eq!(status(as_(&carol, Method::GET, "shared/doc")).await, 403);
    let r = as_(&bob, Method::HEAD, "shared").send().await.unwrap();
    assert!(
        !r.headers().contains_key("x-container-read"),
        "ACLs are shown to owners only"
    );
    let r = s.req(Method::HEAD, "shared").send().await.unwrap();
    assert_eq!(header(&r, "x-container-read"), "bob:bob");
    // Only the owner changes the container, whatever the write ACL says.
    let r = as_(&bob, Method::POST, "shared").header("x-container-read", ".r:*");
    assert_eq!(status(r).await, 403);
    assert_eq!(status(as_(&bob, Method::DELETE, "shared")).await, 403);
    assert_eq!(
        status(
            s.req(Method::POST, "shared")
                .header("x-container-read", ".r:")
        )
        .await,
        400
    );
    // Public objects; the listing only with .rlistings.
    let r = s
        .req(Method::POST, "shared")
        .header("x-container-read", ".r:*");
    assert_eq!(status(r).await, 204);
    assert_eq!(status(http.get(format!("{}/shared/doc", s.url))).await, 200);
    assert_eq!(status(http.get(format!("{}/shared", s.url))).await, 401);
    assert_eq!(
        status(http.put(format!("{}/shared/x", s.url)).body("x")).await,
        401
    );
    let r = s
        .req(Method::POST, "shared")
        .header("x-container-read", ".r:*,.rlistings");
    assert_eq!(status(r).await, 204);
    assert_eq!(status(http.get(format!("{}/shared", s.url))).await, 200);
    let r = s
        .req(Method::POST, "shared")
        .header("x-remove-container-read", "x");
    assert_eq!(status(r).await, 204);
    assert_eq!(status(http.get(format!("{}/shared/doc", s.url))).await, 401);

    // Account ACLs.
    let acl = r#"{"read-only":["carol"],"read-write":["bob:bob"]}"#;
    let r = s
        .req(Method::POST, "")
        .header("x-account-access-control", acl);
    assert_eq!(status(r).await, 204);
    assert_eq!(status(as_(&carol, Method::GET, "shared/doc")).await, 200);
    assert_eq!(status(as_(&carol, Method::GET, "")).await, 200);
    assert_eq!(
        status(as_(&carol, Method::PUT, "shared/c").body("c")).await,
        403
    );
    assert_eq!(
        status(as_(&bob, Method::PUT, "shared/b").body("b")).await,
        201
    );
    assert_eq!(status(as_(&bob, Method::PUT, "bobs")).await, 201);
    let r = as_(&bob, Method::POST, "").header("x-account-meta-x", "y");
    assert_eq!(
        status(r).await,
        403,
        "read-write does not reach the account"
    );
    let r = s
        .req(Method::POST, "")
        .header("x-account-access-control", "{bad");
    assert_eq!(status(r).await, 400);
    let r = s
        .req(Method::POST, "")
        .header("x-account-access-control", "");
    assert_eq!(status(r).await, 204);
    assert_eq!(status(as_(&carol, Method::GET, "shared/doc")).await, 403);

    // Temp URLs.
    let r = s
        .req(Method::POST, "")
        .header("x-account-meta-temp-url-key", "k1");
    assert_eq!(status(r).await, 204);
    let r = s
        .req(Method::POST, "shared")
        .header("x-container-meta-temp-url-key", "k2");
    assert_eq!(status(r).await, 204);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = "/v1/AUTH_test/shared/doc";
    let url = |method: &str, key: &str, expires: u64, alg: &str| {
        let sig = stratus_core::tempurl::sign(alg, key, method, expires, path);
        format!(
            "{}{path}?temp_url_sig={sig}&temp_url_expires={expires}",
            c.proxy
        )
    };
    let r = http
        .get(url("GET", "k1", now + 60, "sha1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"doc\"; filename*=UTF-8''doc"
    );
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = http
        .get(url("GET", "k2", now + 60, "sha512") + "&inline")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-disposition"), "inline");
    let r = http
        .get(url("GET", "k2", now + 60, "sha256") + "&filename=report.txt")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "content-disposition").contains("filename=\"report.txt\""));
    assert_eq!(
        status(http.head(url("GET", "k1", now + 60, "sha256"))).await,
        200
    );
    assert_eq!(
        status(http.get(url("GET", "k1", now - 1, "sha256"))).await,
        401
    );
    assert_eq!(
        status(http.get(url("GET", "nope", now + 60, "sha256"))).await,
        401
    );
    assert_eq!(
        status(http.delete(url("GET", "k1", now + 60, "sha256"))).await,
        401
    );
    let forged = url("GET", "k1", now + 60, "sha256").replace("expires=", "expires=1");
    assert_eq!(status(http.get(forged)).await, 401);
    let put_url = url("PUT", "k1", now + 60, "sha256");
    assert_eq!(status(http.put(&put_url).body("via temp url")).await, 201);
    assert_eq!(
        s.get("shared/doc").await.text().await.unwrap(),
        "via temp url"
    );
    let prefix_sig = stratus_core::tempurl::sign(
        "sha256",
        "k1",
        "GET",
        now + 60,
        "prefix:/v1/AUTH_test/shared/d",
    );
    let prefixed = |obj: &str| {
        format!(
            "{}/v1/AUTH_test/shared/{obj}?temp_url_sig={prefix_sig}&temp_url_expires={}&temp_url_prefix=d",
            c.proxy,
            now + 60
        )
    };
    assert_eq!(status(http.get(prefixed("doc"))).await, 200);
    assert_eq!(status(http.get(prefixed("b"))).await, 401);
    // A container key's temp URL reads a DLO whose segments share its container, and not
    // one whose segments live elsewhere.
    assert_eq!(s.put("shared/seg-1", "one ").await.status(), 201);
    assert_eq!(s.put("shared/seg-2", "two").await.status(), 201);
    assert_eq!(status(s.req(Method::PUT, "elsewhere")).await, 201);
    assert_eq!(s.put("elsewhere/seg-1", "far").await.status(), 201);
    for (name, segments) in [("dlo-in", "shared/seg-"), ("dlo-out", "elsewhere/seg-")] {
        let r = s
            .req(Method::PUT, &format!("shared/{name}"))
            .header("x-object-manifest", segments)
            .header("content-length", "0");
        assert_eq!(status(r).await, 201);
    }
    let signed = |obj: &str| {
        let path = format!("/v1/AUTH_test/shared/{obj}");
        let sig = stratus_core::tempurl::sign("sha256", "k2", "GET", now + 60, &path);
        format!(
            "{}{path}?temp_url_sig={sig}&temp_url_expires={}",
            c.proxy,
            now + 60
        )
    };
    let r = http.get(signed("dlo-in")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "one two");
    assert_eq!(status(http.get(signed("dlo-out"))).await, 401);

    // Quotas: a container's, then an account's (set by a reseller only).
    assert_eq!(status(s.req(Method::PUT, "q")).await, 201);
    let r = s
        .req(Method::POST, "q")
        .header("x-container-meta-quota-bytes", "100")
        .header("x-container-meta-quota-count", "2");
    assert_eq!(status(r).await, 204);
    assert_eq!(s.put("q/a", vec![0u8; 60]).await.status(), 201);
    let r = s.put("q/b", vec![0u8; 60]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "Upload exceeds quota.");
    assert_eq!(s.put("q/b", vec![0u8; 30]).await.status(), 201);
    assert_eq!(s.put("q/c", vec![0u8; 1]).await.status(), 413, "count");
    let r = s
        .req(Method::POST, "q")
        .header("x-container-meta-quota-bytes", "lots");
    assert_eq!(status(r).await, 400);
    let r = s
        .req(Method::POST, "")
        .header("x-account-meta-quota-bytes", "10");
    assert_eq!(status(r).await, 403, "an owner cannot set its own quota");
    let r = http
        .post(&s.url)
        .header("x-auth-token", &root.token)
        .header("x-account-meta-quota-bytes", "1000000");
    assert_eq!(status(r).await, 204);
    assert_eq!(
        s.put("shared/huge", vec![0u8; 1_000_001]).await.status(),
        413
    );
    assert_eq!(s.put("shared/small", vec![0u8; 1000]).await.status(), 201);
    let r = http
        .post(&s.url)
        .header("x-auth-token", &root.token)
        .header("x-remove-account-meta-quota-bytes", "x");
    assert_eq!(status(r).await, 204);
    assert_eq!(
        s.put("shared/huge", vec![0u8; 1_000_001]).await.status(),
        201
    );
}

fn tarball(dir: &std::path::Path, flag: &str, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let st = Command::new("tar")
        .args([
            flag,
            out.to_str().unwrap(),
            "-C",
            dir.join("tree").to_str().unwrap(),
            ".",
        ])
        .status()
        .expect("tar runs");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_and_versions() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;

    // Archives of the same tree in three formats.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("photos/2024")).unwrap();
    std::fs::write(tree.join("photos/a.txt"), "a").unwrap();
    std::fs::write(tree.join("photos/2024/b.bin"), random_bytes(300_000, 5)).unwrap();
    std::fs::create_dir_all(tree.join("notes")).unwrap();
    std::fs::write(tree.join("notes/n.txt"), "n").unwrap();
    for (flag, fmt, name) in [
        ("-cf", "tar", "t.tar"),
        ("-czf", "tar.gz", "t.tgz"),
        ("-cjf", "tar.bz2", "t.tbz"),
    ] {
        let body = tarball(work.path(), flag, name);
        // At the account level the first directory names the container.
        let r = s
            .req(Method::PUT, &format!("?extract-archive={fmt}"))
            .header("accept", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let report: serde_json::Value = r.json().await.unwrap();
        assert_eq!(report["Number Files Created"], 3, "{fmt}: {report}");
        assert_eq!(report["Response Status"], "201 Created", "{fmt}: {report}");
        assert_eq!(s.names("photos", "").await, ["2024/b.bin", "a.txt"]);
        // Into a container (created), under a prefix.
        let r = s
            .req(Method::PUT, &format!("up/{fmt}?extract-archive={fmt}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(text.contains("Number Files Created: 3"), "{fmt}: {text}");
        let got = s
            .get(&format!("up/{fmt}/photos/2024/b.bin"))
            .await
            .bytes()
            .await
            .unwrap();
        assert!(got == random_bytes(300_000, 5), "{fmt}");
    }
    let r = s
        .req(Method::PUT, "up?extract-archive=zip")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .req(Method::PUT, "up?extract-archive=tar")
        .body("this is no tar file at all, though it is long enough to look at".repeat(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Bulk delete: objects, a missing one, a non-empty container, then the empty ones.
    let list = "/photos/a.txt\n/photos/2024/b.bin\n/photos/missing\n/notes\n";
    let r = s
        .req(Method::POST, "?bulk-delete")
        .header("content-type", "text/plain")
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("Number Deleted: 2\n"), "{text}");
    assert!(text.contains("Number Not Found: 1\n"), "{text}");
    assert!(text.contains("Response Status: 400 Bad Request"), "{text}");
    assert!(text.contains("/notes, 409 Conflict"), "{text}");
    let r = s
        .req(Method::POST, "?bulk-delete")
        .header("accept", "application/json")
        .body("/notes/n.txt\n/notes\n/photos\n")
        .send()
        .await
        .unwrap();
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["Number Deleted"], 3, "{report}");
    assert_eq!(report["Response Status"], "200 OK");
    assert_eq!(s.get("photos").await.status(), 404);

    // Versions, stack mode.
    for cont in ["docs", "docs-versions", "log", "log-history"] {
        assert_eq!(status(s.req(Method::PUT, cont)).await, 201);
    }
    let r = s
        .req(Method::POST, "docs")
        .header("x-versions-location", "docs-versions");
    assert_eq!(status(r).await, 204);
    for v in ["v1", "v2", "v3"] {
        assert_eq!(s.put("docs/readme", v).await.status(), 201);
    }
    let archived = s.names("docs-versions", "").await;
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert!(archived[0].starts_with("006readme/"), "{archived:?}");
    assert_eq!(s.get("docs/readme").await.text().await.unwrap(), "v3");
    assert_eq!(status(s.req(Method::DELETE, "docs/readme")).await, 204);
    assert_eq!(s.get("docs/readme").await.text().await.unwrap(), "v2");
    assert_eq!(status(s.req(Method::DELETE, "docs/readme")).await, 204);
    assert_eq!(s.get("docs/readme").await.text().await.unwrap(), "v1");
    assert_eq!(status(s.req(Method::DELETE, "docs/readme")).await, 204);
    assert_eq!(s.get("docs/readme").await.status(), 404);
    assert!(s.names("docs-versions", "").await.is_empty());

    // History mode.
    let r = s
        .req(Method::POST, "log")
        .header("x-history-location", "log-history");
    assert_eq!(status(r).await, 204);
    assert_eq!(s.put("log/day", "one").await.status(), 201);
    assert_eq!(s.put("log/day", "two").await.status(), 201);
    assert_eq!(status(s.req(Method::DELETE, "log/day")).await, 204);
    assert_eq!(s.get("log/day").await.status(), 404);
    let history = s.names("log-history", "format=json").await;
    let history: serde_json::Value = serde_json::from_str(&history.concat()).unwrap();
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 3, "{history}");
    assert_eq!(
        types[2], "application/x-deleted;swift_versions_deleted=1",
        "{history}"
    );
    let r = s
        .req(Method::POST, "log")
        .header("x-versions-location", "a")
        .header("x-history-location", "b");
    assert_eq!(status(r).await, 400);

    // Switching to stack mode (one mode at a time, and setting wins over a removal in the
    // same request): a DELETE over history's delete marker restores the version before it
    // and drops the marker.
    let r = s
        .req(Method::POST, "log")
        .header("x-remove-versions-location", "x")
        .header("x-versions-location", "log-history");
    assert_eq!(status(r).await, 204);
    let r = s.req(Method::HEAD, "log").send().await.unwrap();
    assert_eq!(r.headers()["x-versions-location"], "log-history");
    assert!(!r.headers().contains_key("x-history-location"));
    assert_eq!(status(s.req(Method::DELETE, "log/day")).await, 204);
    let r = s.get("log/day").await;
    assert_eq!(r.text().await.unwrap(), "two");
    assert_eq!(
        s.names("log-history", "").await.len(),
        1,
        "one and only one left"
    );
    // Without its archive container, a stack DELETE just deletes.
    assert_eq!(status(s.req(Method::DELETE, "log-history")).await, 409);
    for name in s.names("log-history", "").await {
        let r = s.req(Method::DELETE, &format!("log-history/{name}"));
        assert_eq!(status(r).await, 204);
    }
    assert_eq!(status(s.req(Method::DELETE, "log-history")).await, 204);
    assert_eq!(status(s.req(Method::DELETE, "log/day")).await, 204);
    assert_eq!(s.get("log/day").await.status(), 404);
}
