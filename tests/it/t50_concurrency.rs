//! Read-your-writes: 16 writers upload concurrently, and right after each 201 a listing
//! shows the object (Swift itself does not promise this).

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_read_your_writes_under_16_writers() {
    let c = TestCluster::start(4, 2);
    let s = c.tester().await;
    assert_eq!(s.put("c", "").await.status(), 201);
    let writers = (0..16).map(|w| {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..12 {
                let name = format!("w{w:02}-{i:02}");
                let r = s.put(&format!("c/{name}"), name.clone()).await;
                assert_eq!(r.status(), 201, "{name}");
                let seen = s.names("c", &format!("prefix={name}")).await;
                assert_eq!(
                    seen,
                    std::slice::from_ref(&name),
                    "{name} not listed right after its 201"
                );
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let all = s.names("c", "").await;
    assert_eq!(all.len(), 16 * 12);
    let h = s.req(reqwest::Method::HEAD, "c").send().await.unwrap();
    assert_eq!(h.headers()["x-container-object-count"], "192");
}
