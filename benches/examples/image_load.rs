//! Image load: upload and download of one image through the Glance API against a plain
//! Swift PUT and GET of the same bytes, in alternating rounds within one run.
//!
//! ```sh
//! cargo run --release -p stratus-benches --example image_load -- \
//!     http://127.0.0.1:PORT ADMIN_PASSWORD 1024 3
//! ```
//! (size in MiB, rounds). `PORT` and the password are in the `openrc` file `stratus dev up`
//! writes. Both paths stream the same in-memory bytes; every download is read in full and
//! its length checked.

use std::time::Instant;

use serde_json::json;

#[path = "common/mod.rs"]
mod common;

use common::{admin_login, args, bytes_of};

#[tokio::main]
async fn main() {
    let a = args(
        "image_load PROXY_URL ADMIN_PASSWORD [SIZE_MIB] [ROUNDS]",
        2..,
    );
    let base = a[1].trim_end_matches('/').to_string();
    let mib: usize = a.get(3).map(|s| s.parse().expect("size")).unwrap_or(1024);
    let rounds: usize = a.get(4).map(|s| s.parse().expect("rounds")).unwrap_or(3);
    let http = reqwest::Client::new();
    let (token, project) = admin_login(&http, &base, &a[2]).await;
    let swift = format!("{base}/v1/AUTH_{project}/bench-images");
    let r = http
        .put(&swift)
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let data = bytes_of(mib << 20);
    let mb = data.len() as f64 / 1e6;
    let get_len = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let t = Instant::now();
            let r = http
                .get(&url)
                .header("x-auth-token", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "GET {url}");
            let n = r.bytes().await.unwrap().len();
            (n, t.elapsed().as_secs_f64())
        }
    };
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Swift.
        let t = Instant::now();
        let r = http
            .put(format!("{swift}/o{round}"))
            .header("x-auth-token", &token)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let swift_put = mb / t.elapsed().as_secs_f64();
        let (n, s) = get_len(format!("{swift}/o{round}")).await;
        assert_eq!(n, data.len());
        let swift_get = mb / s;

        // Glance.
        let r = http
            .post(format!("{base}/image/v2/images"))
            .header("x-auth-token", &token)
            .json(
                &json!({"name": format!("bench-{round}"), "disk_format": "raw",
                          "container_format": "bare"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let t = Instant::now();
        let r = http
            .put(format!("{base}/image/v2/images/{id}/file"))
            .header("x-auth-token", &token)
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "image upload: {}", r.text().await.unwrap());
        let image_put = mb / t.elapsed().as_secs_f64();
        let (n, s) = get_len(format!("{base}/image/v2/images/{id}/file")).await;
        assert_eq!(n, data.len());
        let image_get = mb / s;
        println!(
            "round {round}: upload image {image_put:.0} MB/s vs Swift PUT {swift_put:.0} MB/s ({:.2}x) | download image {image_get:.0} MB/s vs Swift GET {swift_get:.0} MB/s ({:.2}x)",
            image_put / swift_put,
            image_get / swift_get
        );
        up.push(image_put / swift_put);
        down.push(image_get / swift_get);
        for url in [
            format!("{base}/image/v2/images/{id}"),
            format!("{swift}/o{round}"),
        ] {
            http.delete(url)
                .header("x-auth-token", &token)
                .send()
                .await
                .unwrap();
        }
    }
    up.sort_by(f64::total_cmp);
    down.sort_by(f64::total_cmp);
    println!(
        "image/Swift over {rounds} rounds: upload median {:.2}x (min {:.2}), download median {:.2}x (min {:.2})",
        up[up.len() / 2],
        up[0],
        down[down.len() / 2],
        down[0]
    );
}
