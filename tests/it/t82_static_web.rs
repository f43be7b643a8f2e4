//! Static web (Swift's `staticweb`) over HTTP: a container readable by strangers serves its
//! index, HTML listings, error pages and slash redirects to requests without a token (and
//! to owners only with `X-Web-Mode: true`); a container without web settings, or one
//! strangers may not list, answers as before.

use reqwest::Method;

use crate::common::*;

/// A client without a token that does not follow redirects.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_serve_web_sites() {
    let c = TestCluster::start_with(1, 1, &["--storage-domain", "example.net"]);
    let s = c.tester().await;
    let anon = stranger();
    let site = format!("{}/site", s.url);
    let r = s
        .req(Method::PUT, "site")
        .header("x-container-read", ".r:*,.rlistings")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (name, body) in [
        ("index.html", "<h1>home</h1>"),
        ("404error.html", "no such page"),
        ("docs/a%20b.txt", "ab"),
        ("docs/deep/x", "x"),
    ] {
        assert_eq!(s.put(&format!("site/{name}"), body).await.status(), 201);
    }
    let marker = s
        .req(Method::PUT, "site/docs")
        .header("content-type", "application/directory")
        .header("content-length", 0)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), 201);

    // Without web settings, the container answers as it always has.
    let (st, _, body) = get(&anon, &format!("{site}?format=json")).await;
    assert_eq!(st, 200);
    assert!(body.starts_with('['), "{body}");

    let post = |h: &'static [(&'static str, &'static str)]| {
        let mut r = s.req(Method::POST, "site");
        for (k, v) in h {
            r = r.header(*k, *v);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(&[
            ("x-container-meta-web-index", "index.html"),
            ("x-container-meta-web-listings", "true"),
            ("x-container-meta-web-error", "error.html"),
        ])
        .await,
        204
    );
    // The container redirects to its root, which serves the index.
    let (st, loc, _) = get(&anon, &site).await;
    assert_eq!((st, loc.as_str()), (301, format!("{site}/").as_str()));
    let (st, _, body) = get(&anon, &format!("{site}/")).await;
    assert_eq!((st, body.as_str()), (200, "<h1>home</h1>"));
    // A directory marker reads as its directory: a redirect, then a listing.
    let (st, loc, _) = get(&anon, &format!("{site}/docs")).await;
    assert_eq!((st, loc.as_str()), (301, format!("{site}/docs/").as_str()));
    let (st, _, body) = get(&anon, &format!("{site}/docs/")).await;
    assert_eq!(st, 200);
    assert!(body.contains("<title>Listing of /v1/AUTH_test/site/docs/</title>"));
    assert!(body.contains("<a href=\"a%20b.txt\">a b.txt</a>"), "{body}");
    assert!(body.contains("<a href=\"deep/\">deep/</a>"), "{body}");
    assert!(body.contains("<a href=\"../\">../</a>"));
    // A HEAD of a listing tells the length of its GET.
    let r = anon.head(format!("{site}/docs/")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-length"],
        body.len().to_string().as_str()
    );
    // Missing pages get the error page, with their status.
    let (st, _, body) = get(&anon, &format!("{site}/nope")).await;
    assert_eq!((st, body.as_str()), (404, "no such page"));
    // Objects are served as they are.
    let (st, _, body) = get(&anon, &format!("{site}/docs/deep/x")).await;
    assert_eq!((st, body.as_str()), (200, "x"));

    // Under the storage domain, the host names the container (or the account) and the
    // site is served from its root; redirects stay on that host.
    let origin = s.url.split("/v1/").next().unwrap().to_string();
    let by_host = |host: &'static str, path: &str| {
        let r = anon
            .get(format!("{origin}{path}"))
            .header("host", host)
            .send();
        async move {
            let r = r.await.unwrap();
            let st = r.status().as_u16();
            let loc = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (st, loc, r.text().await.unwrap())
        }
    };
    let (st, _, body) = by_host("site.AUTH_test.example.net", "/").await;
    assert_eq!((st, body.as_str()), (200, "<h1>home</h1>"));
    let (st, loc, _) = by_host("site.auth-test.example.net", "/docs").await;
    assert_eq!(
        (st, loc.as_str()),
        (301, "http://site.auth-test.example.net/docs/")
    );
    let (st, _, body) = by_host("AUTH_test.example.net", "/site/docs/deep/x").await;
    assert_eq!((st, body.as_str()), (200, "x"));
    let (st, _, body) = by_host("a.site.AUTH_test.example.net", "/").await;
    assert_eq!((st, body.as_str()), (400, "Bad domain in host header"));
    let info: serde_json::Value = anon
        .get(format!("{origin}/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info.get("domain_remap").is_some(), "{info}");

    // The owner sees the API unless asking for the web view.
    let r = s.get("site?format=json").await;
    assert_eq!(r.status(), 200);
    let r = s
        .req(Method::GET, "site/")
        .header("x-web-mode", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "<h1>home</h1>");

    // Listings turned off: Swift's "Web Listing Disabled" page.
    assert_eq!(
        post(&[
            ("x-remove-container-meta-web-error", "x"),
            ("x-container-meta-web-listings", "off"),
        ])
        .await,
        204
    );
    let (st, _, body) = get(&anon, &format!("{site}/docs/")).await;
    assert_eq!(st, 404);
    assert!(body.contains("<h1>Web Listing Disabled</h1>"), "{body}");

    // Strangers who may not list the container get no listing of it either.
    assert_eq!(
        post(&[
            ("x-container-read", ".r:*"),
            ("x-container-meta-web-listings", "true"),
            ("x-remove-container-meta-web-index", "x"),
        ])
        .await,
        204
    );
    let (st, _, _) = get(&anon, &format!("{site}/")).await;
    assert_eq!(st, 401);
}
