//! Object versioning over HTTP, as Swift's `object_versioning` answers it: `X-Versions-Enabled`
//! on a container keeps every overwritten or deleted object as a version (each PUT
//! answers its `X-Object-Version-Id`), `?versions` lists them all (`version_id`,
//! `is_latest`, delete markers), `?version-id=` reads, deletes and restores one, a DELETE
//! leaves a delete marker, the hidden versions container never shows in the account, a
//! versioned container cannot be deleted while it holds versions, and disabling keeps the
//! versions while new writes stop making them.

use reqwest::Method;

use crate::common::*;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `?versions` listing of `container`: (name, version_id, is_latest, content_type).
async fn versions(s: &Session, container: &str) -> Vec<(String, String, bool, String)> {
    let r = s.get(&format!("{container}?versions&format=json")).await;
    assert_eq!(r.status(), 200);
    let items: Vec<serde_json::Value> = r.json().await.unwrap();
    items
        .into_iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["version_id"].as_str().unwrap().to_string(),
                i["is_latest"].as_bool().unwrap(),
                i["content_type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A PUT of `body` to `path`; its version id.
async fn put_version(s: &Session, path: &str, body: &'static [u8]) -> String {
    let r = s
        .req(Method::PUT, path)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "PUT {path}");
    let id = header(&r, "x-object-version-id");
    assert!(!id.is_empty(), "a versioned PUT names its version");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_versioning() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    let info: serde_json::Value = reqwest::get(format!("{}/info", c.proxy))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info.get("object_versioning").is_some());

    // Enable it; the flag shows on HEAD, and the hidden container never in the account.
    let r = s
        .req(Method::PUT, "docs")
        .header("x-versions-enabled", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s.req(Method::HEAD, "docs").send().await.unwrap();
    assert_eq!(header(&r, "x-versions-enabled"), "True");
    assert_eq!(s.names("", "").await, ["docs"]);

    // Overwrites keep versions; reads name the current one.
    let v1 = put_version(&s, "docs/a", b"one").await;
    let v2 = put_version(&s, "docs/a", b"two!").await;
    assert_ne!(v1, v2);
    let r = s.get("docs/a").await;
    assert_eq!(header(&r, "x-object-version-id"), v2);
    assert!(header(&r, "content-location").ends_with(&format!("/docs/a?version-id={v2}")));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"two!");
    let r = s.get(&format!("docs/a?version-id={v1}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-object-version-id"), v1);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"one");

    // The plain listing shows the current version's size; ?versions lists both, newest
    // first; the container's bytes count every version.
    let r = s.get("docs?format=json").await;
    let items: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["bytes"], 4);
    assert_eq!(items[0]["version_symlink"], true);
    assert_eq!(
        versions(&s, "docs").await,
        [
            ("a".into(), v2.clone(), true, "text/plain".into()),
            ("a".into(), v1.clone(), false, "text/plain".into()),
        ]
    );
    let r = s.req(Method::HEAD, "docs").send().await.unwrap();
    assert_eq!(header(&r, "x-container-bytes-used"), "7");
    // Only JSON (406), and bad parameters are 400s.
    let r = s.get("docs?versions&format=xml").await;
    assert_eq!(r.status(), 406);
    let r = s.get("docs?versions&version_marker=1").await;
    assert_eq!(r.status(), 400);
    let r = s.get("docs/a?version-id=nope").await;
    assert_eq!(r.status(), 400);
    let r = s
        .req(Method::POST, &format!("docs/a?version-id={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A DELETE leaves a delete marker; the object is gone, its versions are not.
    let r = s.req(Method::DELETE, "docs/a").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let marker = header(&r, "x-object-version-id");
    assert!(!marker.is_empty());
    assert_eq!(s.get("docs/a").await.status(), 404);
    let r = s.get(&format!("docs/a?version-id={marker}")).await;
    assert_eq!(r.status(), 404);
    let listed = versions(&s, "docs").await;
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0],
        (
            "a".into(),
            marker.clone(),
            true,
            "application/x-deleted;swift_versions_deleted=1".into()
        )
    );

    // Restore v1 (a zero-byte PUT with its version id), then delete v2 for good.
    let r = s
        .req(Method::PUT, &format!("docs/a?version-id={v1}"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "x-object-version-id"), v1);
    assert_eq!(
        s.get("docs/a").await.bytes().await.unwrap().as_ref(),
        b"one"
    );
    let r = s
        .req(Method::DELETE, &format!("docs/a?version-id={v2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "x-object-current-version-id"), v1);
    assert_eq!(
        s.get(&format!("docs/a?version-id={v2}")).await.status(),
        404
    );

    // A POST updates the current version in place (no new version), its content type
    // included, which the listings show.
    let r = s
        .req(Method::POST, "docs/a")
        .header("content-type", "text/updated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let listed = versions(&s, "docs").await;
    // The delete marker stays the newest version (and, as in Swift, is listed as latest).
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[1],
        ("a".into(), v1.clone(), true, "text/updated".into())
    );
    let r = s.get("docs?format=json").await;
    let items: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(items[0]["content_type"], "text/updated");

    // A container holding versions cannot go (409).
    let r = s.req(Method::DELETE, "docs").send().await.unwrap();
    assert_eq!(r.status(), 409);

    // Disabled: writes replace the object in place (version "null"), versions stay.
    let r = s
        .req(Method::POST, "docs")
        .header("x-versions-enabled", "false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.put("docs/b", "plain").await;
    assert_eq!(r.status(), 201);
    assert!(header(&r, "x-object-version-id").is_empty());
    let r = s.get("docs/b").await;
    assert_eq!(header(&r, "x-object-version-id"), "null");
    let listed = versions(&s, "docs").await;
    assert!(listed.contains(&(
        "b".into(),
        "null".into(),
        true,
        "application/octet-stream".into()
    )));

    // Once every version is gone, the container can be deleted.
    for (name, id, _, _) in versions(&s, "docs").await {
        let r = s
            .req(Method::DELETE, &format!("docs/{name}?version-id={id}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status() == 404, "{name} {id}");
    }
    let r = s.req(Method::DELETE, "docs/b").send().await.unwrap();
    assert!(r.status() == 204 || r.status() == 404);
    let r = s.req(Method::DELETE, "docs").send().await.unwrap();
    assert_eq!(r.status(), 204);

    // Legacy versioning and the new API do not mix (400).
    s.create_container("old-archive").await;
    let r = s
        .req(Method::PUT, "legacy")
        .header("x-versions-location", "old-archive")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .req(Method::POST, "legacy")
        .header("x-versions-enabled", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
