//! The Swift API of a real cluster over HTTP: every operation with its status codes and
//! headers, and every constraint and bad input answered with Swift's 4xx.

use reqwest::Method;
use std::io::{Read, Write};

use crate::common::*;

/// Sends a raw HTTP/1.1 request (for what reqwest will not send) and returns the status.
fn raw_status(proxy: &str, request: &str) -> u16 {
    let head = raw_head(proxy, request);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Sends a raw HTTP/1.1 request and returns the answer's status line and headers as
/// written on the wire.
fn raw_head(proxy: &str, request: &str) -> String {
    let addr = proxy.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_api_end_to_end() {
    let c = TestCluster::start(4, 2);
    let http = reqwest::Client::new();

    // Service endpoints.
    let r = http
        .get(format!("{}/healthcheck", c.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "OK".into())
    );
    let info: serde_json::Value = http
        .get(format!("{}/info", c.proxy))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["swift"]["max_file_size"],
        5 * 1024 * 1024 * 1024u64 + 2
    );
    assert_eq!(info["swift"]["container_listing_limit"], 10_000);
    assert_eq!(info["swift"]["max_object_name_length"], 1024);

    // A raw request target that is not UTF-8 gets Swift's 412, not hyper's bare 400 (the
    // body, which looks like another request, is the PUT's).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = c.proxy.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"PUT /v1/AUTH_test/\xa9\xc3x HTTP/1.1\r\nHost: h\r\nContent-Length: 19\r\n\r\n\
GET /\xff HTTP/1.1\r\n\
GET /healthcheck HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 412 "), "{answer}");
        assert!(answer.contains("Invalid UTF8 or contains NULL"), "{answer}");
    }

    // Auth.
    let auth = |u: &str, k: &str| {
        http.get(&c.auth_url)
            .header("x-auth-user", u)
            .header("x-auth-key", k)
            .send()
    };
    assert_eq!(auth("test:tester", "wrong").await.unwrap().status(), 401);
    assert_eq!(auth("test:nobody", "testing").await.unwrap().status(), 401);
    assert_eq!(http.get(&c.auth_url).send().await.unwrap().status(), 401);
    let s = c.tester().await;
    assert!(s.url.ends_with("/v1/AUTH_test"), "{}", s.url);
    assert!(s.token.starts_with("AUTH_tk"));
    let no_token = http.get(&s.url).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let bad_token = http
        .get(&s.url)
        .header("x-auth-token", "AUTH_tkbogus.00")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 401);
    ok(&["user", "--dir", c.dir_str(), "add", "other:o", "secret"]);
    let other = c.login("other:o", "secret").await;
    assert_eq!(other.get("").await.status(), 204, "own account");
    let cross = http
        .get(&s.url)
        .header("x-auth-token", &other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cross.status(),
        403,
        "a user reaches another account only through an ACL"
    );
    assert_eq!(s.req(Method::PUT, "").send().await.unwrap().status(), 405);

    // Account (created implicitly).
    let r = s.req(Method::HEAD, "").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-account-container-count"], "0");
    assert!(r.headers().contains_key("x-trans-id"));
    let r = s
        .req(Method::POST, "")
        .header("x-account-meta-owner", "ops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.req(Method::HEAD, "").send().await.unwrap();
    assert_eq!(r.headers()["x-account-meta-owner"], "ops");

    // Containers.
    assert_eq!(s.put("photos", "").await.status(), 201);
    assert_eq!(s.put("photos", "").await.status(), 202);
    let r = s
        .req(Method::POST, "photos")
        .header("x-container-meta-color", "red")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.req(Method::HEAD, "photos").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-container-meta-color"], "red");
    assert_eq!(r.headers()["x-container-object-count"], "0");
    assert_eq!(
        s.req(Method::POST, "nothere")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        s.req(Method::HEAD, "nothere")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        s.put("nothere/obj", "x").await.status(),
        404,
        "PUT into a missing container"
    );

    // Objects: small, with metadata.
    let small = random_bytes(4096, 1);
    let r = s
        .req(Method::PUT, "photos/cat.jpg")
        .header("content-type", "image/jpeg")
        .header("x-object-meta-color", "black")
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], md5_hex(&small).as_str());
    assert!(r.headers().contains_key("last-modified"));
    let r = s.get("photos/cat.jpg").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["x-object-meta-color"], "black");
    assert_eq!(r.headers()["content-length"], "4096");
    assert_eq!(r.headers()["etag"], md5_hex(&small).as_str());
    assert!(r.headers().contains_key("x-timestamp"));
    let etag = md5_hex(&small);
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), small);
    let r = s.req(Method::HEAD, "photos/cat.jpg").send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["content-length"].to_str().unwrap()
        ),
        (200, "4096")
    );

    // A large object, sent chunked (no Content-Length), crossing checksum blocks.
    let large = random_bytes(1_600_000, 2);
    let stream = futures::stream::iter(
        large
            .chunks(100_000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = s
        .req(Method::PUT, "photos/big.bin")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get("photos/big.bin").await.bytes().await.unwrap(), large);

    // ETag mismatch: 422, and nothing stored.
    let r = s
        .req(Method::PUT, "photos/bad")
        .header("etag", md5_hex(b"other"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        s.req(Method::HEAD, "photos/bad")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Ranges.
    let range =
        |v: &'static str, path: &'static str| s.req(Method::GET, path).header("range", v).send();
    let r = range("bytes=0-9", "photos/cat.jpg").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-9/4096");
    assert_eq!(r.bytes().await.unwrap(), small[..10]);
    let r = range("bytes=-5", "photos/cat.jpg").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.bytes().await.unwrap()),
        (206, small[4091..].to_vec().into())
    );
    let r = range("bytes=1048570-1048585", "photos/big.bin")
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), large[1_048_570..1_048_586]);
    let r = range("bytes=5000-", "photos/cat.jpg").await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */4096");

    // Conditional requests.
    let cond =
        |k: &'static str, v: String| s.req(Method::GET, "photos/cat.jpg").header(k, v).send();
    assert_eq!(
        cond("if-none-match", format!("\"{etag}\""))
            .await
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        cond("if-match", format!("\"{etag}\""))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        cond("if-match", "\"nope\"".into()).await.unwrap().status(),
        412
    );
    assert_eq!(
        cond("if-modified-since", last_modified.clone())
            .await
            .unwrap()
            .status(),
        304
    );
    assert_eq!(
        cond(
            "if-unmodified-since",
            "Sat, 01 Jan 2000 00:00:00 GMT".into()
        )
        .await
        .unwrap()
        .status(),
        412
    );
    assert_eq!(
        cond("if-unmodified-since", last_modified)
            .await
            .unwrap()
            .status(),
        200
    );

    // POST replaces metadata.
    let r = s
        .req(Method::POST, "photos/cat.jpg")
        .header("x-object-meta-size", "small")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = s.req(Method::HEAD, "photos/cat.jpg").send().await.unwrap();
    assert_eq!(r.headers()["x-object-meta-size"], "small");
    assert!(!r.headers().contains_key("x-object-meta-color"));
    assert_eq!(
        s.req(Method::POST, "photos/none")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Server-side copies.
    let r = s
        .req(Method::from_bytes(b"COPY").unwrap(), "photos/cat.jpg")
        .header("destination", "photos/copy1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-copied-from"], "photos/cat.jpg");
    let r = s
        .req(Method::PUT, "photos/copy2")
        .header("x-copy-from", "photos/big.bin")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get("photos/copy1").await.bytes().await.unwrap(), small);
    assert_eq!(s.get("photos/copy2").await.bytes().await.unwrap(), large);
    let r = s
        .req(Method::PUT, "photos/copy3")
        .header("x-copy-from", "photos/missing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Listings.
    assert_eq!(s.put("list", "").await.status(), 201);
    for n in ["a/1", "a/2", "b", "c/x/1", "d"] {
        assert_eq!(
            s.put(&format!("list/{n}"), n.to_string()).await.status(),
            201
        );
    }
    assert_eq!(s.names("list", "").await, ["a/1", "a/2", "b", "c/x/1", "d"]);
    assert_eq!(s.names("list", "delimiter=/").await, ["a/", "b", "c/", "d"]);
    assert_eq!(s.names("list", "prefix=a/").await, ["a/1", "a/2"]);
    assert_eq!(s.names("list", "marker=b").await, ["c/x/1", "d"]);
    assert_eq!(s.names("list", "end_marker=b").await, ["a/1", "a/2"]);
    assert_eq!(s.names("list", "limit=2").await, ["a/1", "a/2"]);
    assert_eq!(
        s.names("list", "reverse=true&limit=2").await,
        ["d", "c/x/1"]
    );
    assert_eq!(s.names("list", "prefix=c/&delimiter=/").await, ["c/x/"]);
    let j: serde_json::Value = s
        .get("list?format=json&prefix=b")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j[0]["name"], "b");
    assert_eq!(j[0]["bytes"], 1);
    assert_eq!(j[0]["hash"], md5_hex(b"b"));
    assert!(j[0]["last_modified"].as_str().unwrap().contains('T'));
    let j: serde_json::Value = s
        .get("list?format=json&delimiter=/&prefix=c")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j[0]["subdir"], "c/");
    let x = s.get("list?format=xml&limit=1").await.text().await.unwrap();
    assert!(
        x.starts_with("<?xml") && x.contains("<container name=\"list\"><object><name>a/1</name>"),
        "{x}"
    );
    let r = s.get("list?prefix=zzz").await;
    assert_eq!(r.status(), 204, "an empty plain listing is 204");

    // Expiry.
    let at = stratus_now() + 2;
    let r = s
        .req(Method::PUT, "photos/soon")
        .header("x-delete-at", at.to_string())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        s.req(Method::HEAD, "photos/soon")
            .send()
            .await
            .unwrap()
            .headers()["x-delete-at"],
        at.to_string().as_str()
    );
    let deadline = std::time::Instant::now() + WAIT;
    while stratus_now() <= at && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(s.get("photos/soon").await.status(), 404, "expired");
    let r = s
        .req(Method::PUT, "photos/past")
        .header("x-delete-at", "1000")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .req(Method::PUT, "photos/after")
        .header("x-delete-after", "abc")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Constraints and bad input.
    let status = |p: String| {
        let s = s.clone();
        async move { s.put(&p, "x").await.status().as_u16() }
    };
    assert_eq!(status(format!("photos/{}", "o".repeat(1025))).await, 400);
    assert_eq!(status(format!("photos/{}", "o".repeat(1024))).await, 201);
    assert_eq!(status("c".repeat(257)).await, 400);
    // URL libraries fold `..` away, so these go out raw.
    let path = s.url.trim_start_matches(&c.proxy).to_string();
    let raw_put = |p: &str| {
        format!("PUT {path}/{p} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", s.token)
    };
    assert_eq!(raw_status(&c.proxy, &raw_put("photos/a/../b")), 400);
    assert_eq!(raw_status(&c.proxy, &raw_put("../x")), 400);
    assert_eq!(raw_status(&c.proxy, &raw_put("photos/./x")), 400);
    // UTF-8 in a metadata value is kept as sent, as Swift keeps it; header names come
    // back in Swift's case, as written on the wire.
    let utf8 = "bläu ☂";
    let r = s
        .req(Method::PUT, "photos/utf8")
        .header(
            "x-object-meta-color",
            reqwest::header::HeaderValue::from_bytes(utf8.as_bytes()).unwrap(),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let head = raw_head(
        &c.proxy,
        &format!(
            "HEAD {path}/photos/utf8 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n",
            s.token
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("\r\nX-Object-Meta-Color: {utf8}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nEtag: "), "{head}");
    // What Swift's own functional tests check, answered as Swift answers.
    let raw = |req: &str| raw_head(&c.proxy, req);
    let auth = format!("X-Auth-Token: {}\r\n", s.token);
    let v1 = raw("GET /v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        v1.starts_with("HTTP/1.1 412"),
        "a version without account: {v1}"
    );
    let te = raw(&format!(
        "PUT {path}/photos/te HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: gzip,chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    ));
    assert!(te.starts_with("HTTP/1.1 501"), "{te}");
    let r = s
        .req(Method::PUT, "photos/inm")
        .header("if-none-match", "somethingelse")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "If-None-Match on PUT takes only *");
    // A 412 or 416 carries the object's validators.
    for (name, value, code) in [("if-match", "bogus", 412), ("range", "bytes=100-200", 416)] {
        let r = s
            .req(Method::GET, "photos/utf8")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{name}");
        assert_eq!(r.headers()["etag"], "9dd4e461268c8034f5c8564e155c67a6");
        assert_eq!(r.headers()["accept-ranges"], "bytes");
    }
    let r = s
        .req(Method::GET, "photos/utf8")
        .header("if-match", "9dd4e461268c8034f5c8564e155c67a6")
        .header("if-unmodified-since", "Tue, 14 Nov 2023 22:13:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        412,
        "If-Unmodified-Since counts after a matching If-Match"
    );
    // X-If-Delete-At: not a number 400, not the object's expiry 412.
    for (value, code) in [("bad", 400), ("1234567890", 412)] {
        let r = s
            .req(Method::DELETE, "photos/utf8")
            .header("x-if-delete-at", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "X-If-Delete-At: {value}");
    }
    // A limit that is not all digits is ignored, as Swift ignores it.
    let r = s.req(Method::GET, "?limit=5000.0").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Up to Swift's 90 metadata items and past them: Swift's 400, not a header-count 431.
    let mut many = s.req(Method::PUT, "photos/many");
    for i in 0..150 {
        many = many.header(format!("x-object-meta-k{i}"), "v");
    }
    assert_eq!(many.body("x").send().await.unwrap().status(), 400);
    // Bulk delete answers at any path of the account, DELETE as well as POST.
    let r = s
        .req(Method::DELETE, "photos/utf8?bulk-delete")
        .header("accept", "application/json")
        .header("content-type", "text/plain")
        .body("photos/utf8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["Number Deleted"], 1, "{report}");
    assert_eq!(
        s.req(Method::HEAD, "photos/utf8")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(status("photos/nul%00byte".into()).await, 412);
    assert_eq!(status("photos/bad%FFutf8".into()).await, 412);
    let mut many = s.req(Method::PUT, "photos/meta");
    for i in 0..91 {
        many = many.header(format!("x-object-meta-k{i}"), "v");
    }
    assert_eq!(many.body("x").send().await.unwrap().status(), 400);
    let r = s
        .req(Method::PUT, "photos/meta")
        .header("x-object-meta-long", "v".repeat(257))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.get("list?limit=10001").await.status(), 412);
    // A delimiter of several characters is taken, as Swift takes it.
    assert!(s.get("list?delimiter=ab").await.status().is_success());
    let req = format!("PUT {path}/photos/nolength HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n", s.token);
    assert_eq!(raw_status(&c.proxy, &req), 411);
    let req = format!("PUT {path}/photos/huge HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Length: 5368709123\r\nConnection: close\r\n\r\n", s.token);
    assert_eq!(raw_status(&c.proxy, &req), 413);

    // Deletes.
    let del = |p: &'static str| s.req(Method::DELETE, p).send();
    assert_eq!(del("photos/copy1").await.unwrap().status(), 204);
    assert_eq!(del("photos/copy1").await.unwrap().status(), 404);
    assert_eq!(s.get("photos/copy1").await.status(), 404);
    assert!(
        !s.names("photos", "").await.contains(&"copy1".to_string()),
        "deleted objects leave the listing"
    );
    assert_eq!(del("list").await.unwrap().status(), 409, "not empty");
    for n in ["a/1", "a/2", "b", "c/x/1", "d"] {
        assert_eq!(
            s.req(Method::DELETE, &format!("list/{n}"))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
    }
    assert_eq!(del("list").await.unwrap().status(), 204);
    assert_eq!(
        s.req(Method::HEAD, "list").send().await.unwrap().status(),
        404
    );
    assert_eq!(del("list").await.unwrap().status(), 404);

    // Container stats roll up into the account (reported in the background).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let j: serde_json::Value = s.get("?format=json").await.json().await.unwrap();
        let names: Vec<&str> = j
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let photos = j.as_array().unwrap().iter().find(|c| c["name"] == "photos");
        let count = photos.map(|p| p["count"].as_u64().unwrap()).unwrap_or(0);
        let want = s
            .req(Method::HEAD, "photos")
            .send()
            .await
            .unwrap()
            .headers()["x-container-object-count"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        if names == ["photos"] && count == want {
            let h = s.req(Method::HEAD, "").send().await.unwrap();
            assert_eq!(h.headers()["x-account-container-count"], "1");
            assert_eq!(
                h.headers()["x-account-object-count"],
                want.to_string().as_str()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "account listing never converged: {j}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn stratus_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
