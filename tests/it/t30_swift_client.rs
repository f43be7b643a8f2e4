//! The real `swift` client (python-swiftclient) against a dev cluster: stat, post, upload of
//! files and a directory tree, list with a prefix, download compared byte for byte, delete.

use std::path::Path;

use crate::common::*;

fn swift(c: &TestCluster, cwd: &Path, args: &[&str]) -> String {
    swift_ok(c, cwd, "test:tester", "testing", args)
}

#[test]
fn the_real_swift_client_works() {
    let c = TestCluster::start(4, 2);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("tree/deep")).unwrap();
    std::fs::write(src.join("hello.txt"), "hello, swift\n").unwrap();
    std::fs::write(src.join("tree/a.bin"), random_bytes(300_000, 7)).unwrap();
    std::fs::write(src.join("tree/deep/b.bin"), random_bytes(2_500_000, 8)).unwrap();
    std::fs::write(src.join("tree/deep/empty"), "").unwrap();

    let stat = swift(&c, &src, &["stat"]);
    assert!(
        stat.contains("Account: AUTH_test") && stat.contains("Containers: 0"),
        "{stat}"
    );
    swift(&c, &src, &["post", "docs"]);
    swift(&c, &src, &["post", "-m", "color:blue", "docs"]);
    let stat = swift(&c, &src, &["stat", "docs"]);
    assert!(stat.contains("Meta Color: blue"), "{stat}");

    let up = swift(&c, &src, &["upload", "docs", "hello.txt", "tree"]);
    for name in [
        "hello.txt",
        "tree/a.bin",
        "tree/deep/b.bin",
        "tree/deep/empty",
    ] {
        assert!(up.contains(name), "{name} not uploaded: {up}");
    }
    let list = swift(&c, &src, &["list", "docs"]);
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "hello.txt",
            "tree/a.bin",
            "tree/deep/b.bin",
            "tree/deep/empty"
        ]
    );
    let list = swift(&c, &src, &["list", "docs", "--prefix", "tree/deep"]);
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["tree/deep/b.bin", "tree/deep/empty"]
    );
    let stat = swift(&c, &src, &["stat", "docs", "tree/deep/b.bin"]);
    assert!(stat.contains("Content Length: 2500000"), "{stat}");

    let dst = work.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    swift(&c, &dst, &["download", "docs"]);
    for name in [
        "hello.txt",
        "tree/a.bin",
        "tree/deep/b.bin",
        "tree/deep/empty",
    ] {
        assert_eq!(
            std::fs::read(dst.join(name)).unwrap(),
            std::fs::read(src.join(name)).unwrap(),
            "{name} differs after the round trip"
        );
    }

    swift(&c, &src, &["delete", "docs", "hello.txt"]);
    let list = swift(&c, &src, &["list", "docs"]);
    assert!(!list.contains("hello.txt"), "{list}");
    swift(&c, &src, &["delete", "docs"]);
    let list = swift(&c, &src, &["list"]);
    assert!(!list.contains("docs"), "{list}");

    // `stratus` itself against the same cluster: upload a tree, list, download, compare.
    let run = |cwd: &Path, args: &[&str]| stratus_in(&c, cwd, args);
    run(&src, &["upload", "mine", "tree"]);
    assert_eq!(
        run(&src, &["list", "mine", "--prefix", "tree/deep/"])
            .lines()
            .collect::<Vec<_>>(),
        ["tree/deep/b.bin", "tree/deep/empty"]
    );
    let back = work.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    run(&back, &["download", "mine"]);
    assert_eq!(
        std::fs::read(back.join("tree/deep/b.bin")).unwrap(),
        std::fs::read(src.join("tree/deep/b.bin")).unwrap()
    );
    run(&src, &["delete", "mine"]);
    assert!(!run(&src, &["list"]).contains("mine"));
}
