//! Storage policies: a container chooses one when it is created (`X-Storage-Policy`) and
//! keeps it; its objects are placed by that policy's own ring and kept in that policy's
//! keyspace on each device (`objects-1/` for policy 1), where the auditor and replicator
//! look after them as they do after the default policy's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common::*;

async fn head_policy(s: &Session, container: &str) -> (u16, Option<String>) {
    let r = s.req(Method::HEAD, container).send().await.unwrap();
    let policy = r
        .headers()
        .get("x-storage-policy")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), policy)
}

async fn put_container(s: &Session, name: &str, policy: Option<&str>) -> u16 {
    let mut r = s.req(Method::PUT, name);
    if let Some(p) = policy {
        r = r.header("x-storage-policy", p);
    }
    r.send().await.unwrap().status().as_u16()
}

/// Body files of the storage nodes under a keyspace directory (`objects`, `objects-1`).
fn body_files(c: &TestCluster, keyspace: &str) -> Vec<PathBuf> {
    files_under(&c.dir)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.contains(&format!("/{keyspace}/"))
                && s.ends_with(".data")
                && !s.contains("/quarantined/")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_keep_their_policy_and_objects_live_in_its_ring() {
    let c = TestCluster::start_with(3, 1, &["--policy", "silver"]);
    let s = c.tester().await;

    // /info lists both, the default marked; the CLI shows both rings published.
    let info: serde_json::Value = s
        .http
        .get(format!("{}/info", c.proxy))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["swift"]["policies"],
        serde_json::json!([
            {"name": "Policy-0", "aliases": "Policy-0", "default": true},
            {"name": "silver", "aliases": "silver"}
        ])
    );
    let list = ok(&["policy", "list", "--dir", c.dir_str(), "--json"]);
    let list = json(&list);
    assert_eq!(list[1]["name"], "silver");
    assert_eq!(list[1]["ring"], "object-1");
    assert!(list[1]["ring_version"].as_u64().is_some(), "{list}");

    // Created without a policy: the default. With one (any case): that one, for good.
    assert_eq!(put_container(&s, "plain", None).await, 201);
    assert_eq!(
        head_policy(&s, "plain").await,
        (204, Some("Policy-0".into()))
    );
    assert_eq!(put_container(&s, "fast", Some("SILVER")).await, 201);
    assert_eq!(head_policy(&s, "fast").await, (204, Some("silver".into())));
    assert_eq!(put_container(&s, "fast", Some("Policy-0")).await, 409);
    assert_eq!(put_container(&s, "fast", None).await, 202);
    assert_eq!(put_container(&s, "fast", Some("silver")).await, 202);
    let post = s
        .req(Method::POST, "fast")
        .header("x-storage-policy", "Policy-0")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 204);
    assert_eq!(head_policy(&s, "fast").await, (204, Some("silver".into())));
    // A policy the cluster does not have.
    let bad = s
        .req(Method::PUT, "nope")
        .header("x-storage-policy", "bronze")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("Invalid X-Storage-Policy"));
    // Accounts have no policy of their own.
    assert_eq!(head_policy(&s, "").await.1, None);

    // An object of each: three copies each, in its own policy's keyspace.
    let body = random_bytes(300_000, 85);
    assert_eq!(s.put("fast/obj", body.clone()).await.status(), 201);
    assert_eq!(s.put("plain/obj", body.clone()).await.status(), 201);
    assert_eq!(body_files(&c, "objects-1").len(), 3);
    assert_eq!(body_files(&c, "objects").len(), 3);
    assert_eq!(s.get("fast/obj").await.bytes().await.unwrap(), body);
    assert_eq!(s.names("fast", "").await, vec!["obj"]);
    // `stratus lookup` finds the copies by the container's policy.
    let lookup = ok(&["lookup", "/AUTH_test/fast/obj", "--dir", c.dir_str()]);
    assert_eq!(lookup.matches("300000 bytes").count(), 3, "{lookup}");

    // Object metadata that is not UTF-8 (a character cut short) is kept byte for byte,
    // as Swift keeps it, and survives a POST and a copy.
    let cut = reqwest::header::HeaderValue::from_bytes(b"caf\xc3").unwrap();
    let r = s
        .req(Method::POST, "fast/obj")
        .header("x-object-meta-cut", cut.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = s.req(Method::HEAD, "fast/obj").send().await.unwrap();
    assert_eq!(r.headers().get("x-object-meta-cut"), Some(&cut));

    // A copy across policies lands in the other keyspace.
    let copy = s
        .req(Method::from_bytes(b"COPY").unwrap(), "fast/obj")
        .header("destination", "plain/copy")
        .send()
        .await
        .unwrap();
    assert_eq!(copy.status(), 201);
    let got = s.get("plain/copy").await;
    assert_eq!(got.headers().get("x-object-meta-cut"), Some(&cut));
    assert_eq!(got.bytes().await.unwrap(), body);
    assert_eq!(body_files(&c, "objects").len(), 6);
    assert_eq!(body_files(&c, "objects-1").len(), 3);

    // A damaged copy in policy 1 is quarantined by the auditor and put back by the
    // replicator from the other two.
    let victim = body_files(&c, "objects-1").remove(0);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let healed = std::fs::read(&victim).ok().is_some_and(|b| b == body);
        let quarantined = files_under(&c.dir)
            .iter()
            .any(|p| p.to_string_lossy().contains("/quarantined/"));
        if healed && quarantined {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the damaged copy was not replaced in 120 s (quarantined: {quarantined})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(s.get("fast/obj").await.bytes().await.unwrap(), body);
    // Cluster health counts the policy's ring with the others.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = c.health();
        let silver = h["rings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ring"] == "object-1")
            .cloned()
            .unwrap_or_else(|| panic!("no object-1 ring in {h}"));
        if silver["partitions"] == 1 && silver["percent"] == 100.0 {
            break;
        }
        assert!(Instant::now() < deadline, "object-1 not in sync: {silver}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Emptied and deleted, the container can be made again in another policy.
    for o in ["fast/obj"] {
        assert_eq!(s.req(Method::DELETE, o).send().await.unwrap().status(), 204);
    }
    assert_eq!(
        s.req(Method::DELETE, "fast").send().await.unwrap().status(),
        204
    );
    assert_eq!(put_container(&s, "fast", Some("Policy-0")).await, 201);
    assert_eq!(
        head_policy(&s, "fast").await,
        (204, Some("Policy-0".into()))
    );
}
