//! The real `swift` client (python-swiftclient) with the Swift features beyond plain
//! objects: a 20 MiB file uploaded in 1 MiB segments as a static (`--use-slo`) and as a
//! dynamic large object, downloaded byte for byte, deleted with its segments; a temp URL
//! made by `swift tempurl` and fetched by `curl` (and refused once forged); `swift post -r`
//! granting another account read access, and revoking it. Then the same through `stratus`:
//! `upload --segment-size` (SLO by default, `--use-dlo`), `download`, `delete` (segments
//! included), `tempurl`, `post --read-acl`.

use std::process::Command;

use crate::common::*;

const TESTER: (&str, &str) = ("test:tester", "testing");
const OTHER: (&str, &str) = ("other:reader", "secret");

fn curl(url: &str, out: &std::path::Path) -> u16 {
    let o = Command::new("curl")
        .args(["-s", "-o", out.to_str().unwrap(), "-w", "%{http_code}", url])
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn large_objects_temp_urls_and_acls_through_the_swift_client() {
    let c = TestCluster::start(3, 1);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big = random_bytes(20 << 20, 80);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let swift = |args: &[&str]| swift_ok(&c, &src, TESTER.0, TESTER.1, args);

    // Static and dynamic large objects, 20 segments each.
    swift(&[
        "upload",
        "--segment-size",
        "1M",
        "--use-slo",
        "slo",
        "big.bin",
    ]);
    swift(&["upload", "--segment-size", "1M", "dlo", "big.bin"]);
    let segs = swift(&["list", "slo_segments"]);
    assert_eq!(segs.lines().count(), 20, "{segs}");
    let segs = swift(&["list", "dlo_segments"]);
    assert_eq!(segs.lines().count(), 20, "{segs}");
    let stat = swift(&["stat", "slo", "big.bin"]);
    assert!(stat.contains("Content Length: 20971520"), "{stat}");
    let stat = swift(&["stat", "dlo", "big.bin"]);
    assert!(
        stat.contains("Content Length: 20971520") && stat.contains("Manifest: dlo_segments/"),
        "{stat}"
    );
    for container in ["slo", "dlo"] {
        let dst = work.path().join(format!("dst-{container}"));
        std::fs::create_dir_all(&dst).unwrap();
        swift_ok(
            &c,
            &dst,
            TESTER.0,
            TESTER.1,
            &["download", container, "big.bin"],
        );
        let back = std::fs::read(dst.join("big.bin")).unwrap();
        assert!(
            back == big,
            "{container}: the download differs from the upload"
        );
    }
    swift(&["delete", "slo", "big.bin"]);
    swift(&["delete", "dlo", "big.bin"]);
    for container in ["slo_segments", "dlo_segments"] {
        let left = swift(&["list", container]);
        assert!(left.trim().is_empty(), "{container} kept segments: {left}");
    }
    assert!(swift(&["list", "slo"]).trim().is_empty());

    // A temp URL, signed by the client with the account's key, fetched without a token.
    swift(&["upload", "pub", "big.bin", "--object-name", "file.bin"]);
    swift(&["post", "-m", "Temp-URL-Key:sekrit"]);
    let path = swift(&[
        "tempurl",
        "GET",
        "600",
        "/v1/AUTH_test/pub/file.bin",
        "sekrit",
    ]);
    let path = path.trim();
    let fetched = work.path().join("fetched");
    assert_eq!(curl(&format!("{}{path}", c.proxy), &fetched), 200);
    assert!(
        std::fs::read(&fetched).unwrap() == big,
        "temp URL body differs"
    );
    let forged = path.replace("sig=", "sig=0");
    assert_eq!(curl(&format!("{}{forged}", c.proxy), &fetched), 401);
    let wrong_key = swift(&[
        "tempurl",
        "GET",
        "600",
        "/v1/AUTH_test/pub/file.bin",
        "guess",
    ]);
    assert_eq!(
        curl(&format!("{}{}", c.proxy, wrong_key.trim()), &fetched),
        401
    );

    // Read access for another account, granted and revoked.
    ok(&[
        "user",
        "--dir",
        c.dir_str(),
        "add",
        "other:reader",
        "secret",
    ]);
    let reader = |args: &[&str]| swift_as(&c, &src, OTHER.0, OTHER.1, args);
    let url = format!("{}/v1/AUTH_test", c.proxy);
    let as_other = |args: &[&str]| {
        let mut all = vec!["--os-storage-url", url.as_str()];
        all.extend_from_slice(args);
        reader(&all)
    };
    let denied = as_other(&["stat", "pub", "file.bin"]);
    assert!(!denied.status.success(), "read before any grant");
    swift(&["post", "-r", "other:reader", "pub"]);
    let dst = work.path().join("dst-acl");
    std::fs::create_dir_all(&dst).unwrap();
    let out = Command::new("swift")
        .args(["-A", &c.auth_url, "-U", OTHER.0, "-K", OTHER.1])
        .args(["--os-storage-url", &url, "download", "pub", "file.bin"])
        .current_dir(&dst)
        .env_remove("OS_AUTH_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "granted download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(dst.join("file.bin")).unwrap() == big);
    let listing = as_other(&["list", "pub"]);
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("file.bin"),
        "a user granted read may list"
    );
    let write = as_other(&["delete", "pub", "file.bin"]);
    assert!(
        !write.status.success(),
        "read access does not allow deletes"
    );
    swift(&["post", "-r", "", "pub"]);
    let revoked = as_other(&["stat", "pub", "file.bin"]);
    assert!(
        !revoked.status.success(),
        "read after the grant was revoked"
    );
    assert!(
        String::from_utf8_lossy(&revoked.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );

    // The same through `stratus`.
    let run = |cwd: &std::path::Path, args: &[&str]| stratus_in(&c, cwd, args);
    let up = run(&src, &["upload", "--segment-size", "1M", "mine", "big.bin"]);
    assert!(up.contains("20 segments"), "{up}");
    run(
        &src,
        &[
            "upload",
            "--segment-size",
            "3M",
            "--use-dlo",
            "mine",
            "big.bin",
            "--object-name",
            "dyn.bin",
        ],
    );
    let stat = swift(&["stat", "mine", "big.bin"]);
    assert!(stat.contains("Content Length: 20971520"), "{stat}");
    let stat_head = run(&src, &["stat", "mine", "big.bin"]);
    assert!(
        stat_head.contains("x-static-large-object: True"),
        "{stat_head}"
    );
    let stat_head = run(&src, &["stat", "mine", "dyn.bin"]);
    assert!(
        stat_head.contains("x-object-manifest: mine_segments/dyn.bin/"),
        "{stat_head}"
    );
    let back = work.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    run(&back, &["download", "mine", "big.bin", "dyn.bin"]);
    assert!(std::fs::read(back.join("big.bin")).unwrap() == big);
    assert!(std::fs::read(back.join("dyn.bin")).unwrap() == big);
    assert_eq!(
        run(&src, &["list", "mine_segments"]).lines().count(),
        20 + 7
    );
    run(&src, &["delete", "mine", "big.bin", "dyn.bin"]);
    assert!(run(&src, &["list", "mine_segments"]).trim().is_empty());

    let path = run(
        &src,
        &[
            "tempurl",
            "GET",
            "600",
            "/v1/AUTH_test/pub/file.bin",
            "sekrit",
            "--digest",
            "sha512",
        ],
    );
    assert_eq!(curl(&format!("{}{}", c.proxy, path.trim()), &fetched), 200);
    assert!(std::fs::read(&fetched).unwrap() == big);
    let expired = run(
        &src,
        &[
            "tempurl",
            "GET",
            "1",
            "/v1/AUTH_test/pub/file.bin",
            "sekrit",
            "--absolute",
        ],
    );
    assert_eq!(
        curl(&format!("{}{}", c.proxy, expired.trim()), &fetched),
        401
    );

    run(&src, &["post", "pub", "--read-acl", "other"]);
    assert!(
        as_other(&["stat", "pub", "file.bin"]).status.success(),
        "granted by stratus post"
    );
    run(&src, &["post", "pub", "--read-acl", ""]);
    assert!(
        !as_other(&["stat", "pub", "file.bin"]).status.success(),
        "revoked by stratus post"
    );
}
