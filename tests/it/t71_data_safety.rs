//! The object path's data-safety rules, tried against a real `dev up` cluster by speaking
//! to its storage nodes directly (as a proxy would, with the admin certificate):
//! - two PUTs that share a timestamp never replace a committed body: the one that orders
//!   after wins on every replica (409 on a replica that holds the winner already), and the
//!   replicas converge on it;
//! - bytes damaged between proxy and node (a BLAKE3 that does not match what arrived) are
//!   refused and leave nothing behind;
//! - a container name holding an encoded `/` cannot reach another container's objects;
//! - a device under its space reserve refuses bodies but still takes DELETEs;
//! - a storage node that stalls (SIGSTOP) holds no request up for longer than twice the
//!   proxy's node timeout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use stratus_client::tls::{self, Identity, Role};
use stratus_proto::storage as spb;
use stratus_proto::storage::object_client::ObjectClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::common::*;

/// One primary of an object.
struct Replica {
    node: String,
    device: String,
    part: u32,
}

fn replicas(c: &TestCluster, path: &str) -> Vec<Replica> {
    let v = json(&ok(&["lookup", "--json", "--dir", c.dir_str(), path]));
    let part = v["partition"].as_u64().unwrap() as u32;
    v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["role"].as_str().unwrap().starts_with("primary"))
        .map(|r| Replica {
            node: r["node"].as_str().unwrap().to_string(),
            device: r["device"].as_str().unwrap().to_string(),
            part,
        })
        .collect()
}

fn node_client(c: &TestCluster, addr: &str) -> ObjectClient<Channel> {
    let admin = Identity::load(&c.dir.join("tls/admin")).unwrap();
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    ObjectClient::new(tls::net::channel_as(admin, ep, Role::Storage))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

fn target(r: &Replica, object: &str) -> spb::ObjectTarget {
    spb::ObjectTarget {
        device: r.device.clone(),
        part: r.part,
        account: "AUTH_test".into(),
        container: "c".into(),
        object: object.into(),
        replica_index: 0,
        policy: 0,
    }
}

fn b3(body: &[u8]) -> [u8; 32] {
    *blake3::hash(body).as_bytes()
}

/// PUTs `body` at `ts` straight to one replica, the footer claiming `claimed` as the
/// proxy's BLAKE3; the node's final answer.
async fn put_at(
    c: &TestCluster,
    r: &Replica,
    object: &str,
    ts: u64,
    body: &[u8],
    claimed: [u8; 32],
) -> Result<(), Status> {
    let mut msgs = vec![spb::PutMsg {
        msg: Some(spb::put_msg::Msg::Header(spb::PutHeader {
            target: Some(target(r, object)),
            ts,
            content_type: "application/octet-stream".into(),
            meta: vec![],
            delete_at: 0,
            content_length: Some(body.len() as u64),
        })),
    }];
    for piece in body.chunks(64 << 10) {
        msgs.push(spb::PutMsg {
            msg: Some(spb::put_msg::Msg::Data(piece.to_vec().into())),
        });
    }
    msgs.push(spb::PutMsg {
        msg: Some(spb::put_msg::Msg::Footer(spb::PutFooter {
            etag: md5_hex(body),
            blake3: claimed.to_vec().into(),
        })),
    });
    let mut acks = node_client(c, &r.node)
        .put(futures::stream::iter(msgs))
        .await?
        .into_inner();
    while let Some(a) = acks.message().await? {
        if a.stage == spb::put_ack::Stage::Committed as i32 {
            return Ok(());
        }
    }
    Err(Status::unknown("the node ended the PUT without committing"))
}

/// (timestamp, body) one replica serves, or `None` if it holds nothing live.
async fn get_from(c: &TestCluster, r: &Replica, object: &str) -> Option<(u64, Vec<u8>)> {
    let mut s = node_client(c, &r.node)
        .get(spb::GetRequest {
            target: Some(target(r, object)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ts = None;
    let mut body = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        match m.msg {
            Some(spb::get_msg::Msg::Meta(m)) if m.found && !m.deleted => ts = Some(m.ts),
            Some(spb::get_msg::Msg::Meta(_)) => return None,
            Some(spb::get_msg::Msg::Data(d)) => body.extend_from_slice(&d),
            _ => {}
        }
    }
    ts.map(|t| (t, body))
}

/// Files under every device's `tmp/` (bodies being written; empty when nothing is).
fn tmp_files(c: &TestCluster) -> usize {
    files_under(&c.dir)
        .iter()
        .filter(|p| p.parent().and_then(Path::file_name) == Some("tmp".as_ref()))
        .count()
}

/// Two PUTs with one timestamp and different bytes, delivered in different orders to
/// different replicas (as two proxies racing can), never replace a body a replica
/// committed: the version that orders after (timestamp, then BLAKE3) wins wherever it
/// arrives, the other gets 409 where the winner is already there, and the replicators
/// bring every replica to the winner. A body whose bytes do not match the proxy's BLAKE3
/// is refused and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_instant_puts_converge_and_damaged_bodies_are_refused() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    s.create_container("c").await;
    let rs = replicas(&c, "/AUTH_test/c/o");
    assert_eq!(rs.len(), 3);
    // Large enough to be body files, not inline records.
    let a = random_bytes(300_000, 1);
    let b = random_bytes(300_000, 2);
    let (win, lose) = if b3(&a) > b3(&b) { (a, b) } else { (b, a) };
    let ts = stratus_core::timestamp::Timestamp::now().0;

    put_at(&c, &rs[0], "o", ts, &win, b3(&win)).await.unwrap();
    put_at(&c, &rs[1], "o", ts, &lose, b3(&lose)).await.unwrap();
    put_at(&c, &rs[2], "o", ts, &lose, b3(&lose)).await.unwrap();
    // The winner is there: the loser at the same instant is refused, the body untouched.
    let e = put_at(&c, &rs[0], "o", ts, &lose, b3(&lose))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(get_from(&c, &rs[0], "o").await, Some((ts, win.clone())));
    // The same version again is already durable: acknowledged.
    put_at(&c, &rs[0], "o", ts, &win, b3(&win)).await.unwrap();
    // The winner replaces the loser where the loser came first.
    put_at(&c, &rs[1], "o", ts, &win, b3(&win)).await.unwrap();
    assert_eq!(get_from(&c, &rs[1], "o").await, Some((ts, win.clone())));

    // Bytes damaged on the way: refused, the stored version served as before.
    let damaged = random_bytes(300_000, 3);
    let e = put_at(&c, &rs[0], "o", ts + 1, &damaged, b3(&win))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains("damaged"), "{e:?}");
    assert_eq!(get_from(&c, &rs[0], "o").await, Some((ts, win.clone())));
    assert_eq!(tmp_files(&c), 0, "a refused body leaves nothing in tmp/");

    // Replica 2 still has the loser: replication brings it the winner.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut all = Vec::new();
        for r in &rs {
            all.push(get_from(&c, r, "o").await);
        }
        if all.iter().all(|g| g.as_ref() == Some(&(ts, win.clone()))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge on the winner in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let got = s.get("c/o").await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &win[..]);
    // Nothing was quarantined: no copy was ever damaged.
    assert_eq!(c.worker_total("auditor", "quarantined"), 0);
    let quarantined = files_under(&c.dir)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/quarantined/"))
        .count();
    assert_eq!(quarantined, 0);
}

/// A container named with an encoded `/` is split as Swift splits it, so a public
/// container `priv%2Fb` cannot expose `b/secret` of the private container `priv`.
/// A device under its space reserve refuses new bodies (507) but still takes DELETEs,
/// so users can free space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_cannot_cross_containers_and_full_devices_take_deletes() {
    let c = TestCluster::start(1, 1);
    let s = c.tester().await;
    let st = |r: reqwest::Response| r.status().as_u16();
    s.create_container("priv").await;
    assert_eq!(st(s.put("priv/b/secret", "private").await), 201);
    // What used to create a public container `priv/b` is a PUT of object `b` of `priv`.
    let r = s
        .req(reqwest::Method::PUT, "priv%2Fb")
        .header("x-container-read", ".r:*")
        .body("not a container")
        .send()
        .await
        .unwrap();
    assert_eq!(st(r), 201);
    let anon = reqwest::Client::new()
        .get(format!("{}/priv%2Fb/secret", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(st(anon), 401, "an anonymous read of a private object");
    let names = s.names("", "").await;
    assert_eq!(names, vec!["priv".to_string()], "no container priv/b");

    assert_eq!(st(s.put("priv/doomed", "x".repeat(100_000)).await), 201);
    // Restart the node with a reserve larger than any disk: every byte is "reserved".
    c.kill_storage(1);
    let out = Command::new(&*STRATUS)
        .args(["dev", "up", "--dir", c.dir_str(), "--meta-nodes", "1"])
        .args([
            "--storage-nodes",
            "1",
            "--devices",
            "1",
            "--worker-interval",
            "1",
        ])
        .env("STRATUS_RESERVE", (1u64 << 62).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let code = st(s.put("priv/more", "y".repeat(100_000)).await);
        // 507 from the device; the proxy, with no replica able to take the body, says 503.
        if code == 507 || code == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "PUT never refused: {code}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let del = st(s
        .req(reqwest::Method::DELETE, "priv/doomed")
        .send()
        .await
        .unwrap());
    assert_eq!(del, 204, "a full device still takes a DELETE");
    assert_eq!(st(s.get("priv/doomed").await), 404);
    assert_eq!(st(s.get("priv/b/secret").await), 200);
}

fn signal_node(c: &TestCluster, n: u32, sig: i32) {
    let pid = c.storage_pid(n);
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Resumes a stopped node however the test ends (a stopped process ignores SIGTERM).
struct Resume<'a>(&'a TestCluster, u32);
impl Drop for Resume<'_> {
    fn drop(&mut self) {
        signal_node(self.0, self.1, libc::SIGCONT);
    }
}

/// One storage node of three stalls (SIGSTOP: its connections stay open and say nothing)
/// while clients PUT and GET: every request still succeeds, none waits more than twice
/// the proxy's node timeout, and everything acknowledged is there once the node resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_does_not_stall_requests() {
    const NODE_TIMEOUT: u64 = 4;
    let c = TestCluster::start_env(
        3,
        1,
        &[],
        &[("STRATUS_NODE_TIMEOUT", &NODE_TIMEOUT.to_string())],
    );
    let s = c.tester().await;
    s.create_container("c").await;
    let body = |i: usize| random_bytes(if i.is_multiple_of(4) { 100_000 } else { 4096 }, i as u64);
    for i in 0..40 {
        assert_eq!(s.put(&format!("c/old-{i}"), body(i)).await.status(), 201);
    }
    signal_node(&c, 2, libc::SIGSTOP);
    let resume = Resume(&c, 2);
    // 8 clients, 200 PUTs and 200 GETs between them.
    let work = (0..8).map(|w| {
        let s = s.clone();
        async move {
            let mut seen = Vec::new();
            for k in 0..25 {
                let i = w * 25 + k;
                let t = Instant::now();
                let put = s
                    .put(&format!("c/new-{i}"), body(i))
                    .await
                    .status()
                    .as_u16();
                seen.push((format!("PUT new-{i}"), put, t.elapsed()));
                let t = Instant::now();
                let r = s.get(&format!("c/old-{}", i % 40)).await;
                let status = r.status().as_u16();
                let got = r.bytes().await.unwrap();
                assert_eq!(got.as_ref(), &body(i % 40)[..], "GET old-{}", i % 40);
                seen.push((format!("GET old-{}", i % 40), status, t.elapsed()));
            }
            seen
        }
    });
    let seen: Vec<_> = futures::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect();
    drop(resume);
    let bound = Duration::from_secs(2 * NODE_TIMEOUT);
    let failed: Vec<_> = seen.iter().filter(|x| x.1 / 100 != 2).collect();
    assert!(
        failed.is_empty(),
        "requests failed with a node stalled: {failed:?}"
    );
    let slow: Vec<_> = seen.iter().filter(|x| x.2 > bound).collect();
    assert!(
        slow.is_empty(),
        "requests waited more than 2 x node_timeout: {slow:?}"
    );
    assert_eq!(seen.len(), 400);
    for i in 0..200 {
        let r = s.get(&format!("c/new-{i}")).await;
        assert_eq!(r.status(), 200, "new-{i}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &body(i)[..]);
    }
}

fn listen_of(node_dir: &Path) -> String {
    let text = std::fs::read_to_string(node_dir.join("storage.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// A body that cannot be read (an I/O error, not corruption: here a directory where the
/// file was, since root ignores file modes) is never quarantined: GETs are served by the
/// other replicas, the device shows as failing in `cluster health`, and once the file is
/// back the copy serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_body_is_an_io_error_not_corruption() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    s.create_container("c").await;
    let body = random_bytes(300_000, 9);
    assert_eq!(s.put("c/big", body.clone()).await.status(), 201);
    let node_dir = c.dir.join("storage-1");
    let file = files_under(&node_dir.join("d1/objects"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "data"))
        .expect("storage-1 holds a copy");
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();
    std::fs::create_dir(&file).unwrap();

    for _ in 0..10 {
        let r = s.get("c/big").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &body[..]);
    }
    let me = listen_of(&node_dir);
    let r = replicas(&c, "/AUTH_test/c/big")
        .into_iter()
        .find(|r| r.node == me)
        .unwrap();
    // The node itself refuses to serve it, and says why.
    let mut stream = node_client(&c, &me)
        .get(spb::GetRequest {
            target: Some(target(&r, "big")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut err = None;
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(err.is_some(), "an unreadable body is not served");
    // Health names the failing device; the auditor (passes every second) and the GETs
    // quarantined nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = c.health();
    let failing = h["failing_devices"].as_array().unwrap();
    assert!(
        failing
            .iter()
            .any(|f| f["node"] == me.as_str() && f["device"] == "d1"),
        "{h}"
    );
    assert_eq!(h["quarantined_files"], 0, "{h}");
    assert!(files_under(&c.dir)
        .iter()
        .all(|p| !p.to_string_lossy().contains("/quarantined/")));

    std::fs::remove_dir(&file).unwrap();
    std::fs::rename(&aside, &file).unwrap();
    assert_eq!(get_from(&c, &r, "big").await.map(|g| g.1), Some(body));
    let out = ok(&["quarantine", "list", "--json", "--dir", c.dir_str()]);
    assert_eq!(json(&out)["files"].as_array().unwrap().len(), 0, "{out}");
}

/// A tar archive of `(name, bytes)` members, whole.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        if name.contains("..") {
            // Set raw, so names the builder would refuse go in as a hostile client sends
            // them.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        } else {
            // (Long names get GNU long-name entries.)
            b.append_data(&mut h, name, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Input that made objects the API cannot reach, or that should not exist, gets what
/// Swift answers: archive members with `..` or over-long container names are refused and
/// create nothing, a member cut short by a truncated archive is not stored, a chunked
/// upload past a byte quota is 413 with nothing kept, a COPY to `c/a/../b` is 400, and a
/// far-future expiry is clamped to Swift's latest, never wrapped into the past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_quotas_and_expiries_get_swifts_answers() {
    let c = TestCluster::start(1, 1);
    let s = c.tester().await;
    let st = |r: reqwest::Response| r.status().as_u16();
    let long = format!("{}/o", "c".repeat(300));
    let archive = tar_of(&[
        ("../x", b"dotdot"),
        ("ok/a", b"fine"),
        ("ok/b/../../etc", b"escape"),
        (long.as_str(), b"long"),
    ]);
    let r = s
        .req(reqwest::Method::PUT, "?extract-archive=tar")
        .header("accept", "application/json")
        .body(archive)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["Number Files Created"], 1, "{report}");
    assert_eq!(report["Errors"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(s.names("", "").await, vec!["ok".to_string()]);
    assert_eq!(s.names("ok", "").await, vec!["a".to_string()]);

    // A truncated archive: the member it cuts is not stored as if it were whole.
    let whole = tar_of(&[("ok/t1", &[7u8; 5000]), ("ok/t2", &[8u8; 5000])]);
    let cut = whole[..512 + 5000 + 512 + 2000].to_vec();
    let r = s
        .req(reqwest::Method::PUT, "?extract-archive=tar")
        .body(cut)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("400"), "{text}");
    assert_eq!(st(s.get("ok/t1").await), 200, "the whole member is stored");
    assert_eq!(
        st(s.get("ok/t2").await),
        404,
        "the cut member is not: {text}"
    );

    // A chunked upload past the container's byte quota: 413, nothing kept.
    let r = s
        .req(reqwest::Method::POST, "ok")
        .header("x-container-meta-quota-bytes", "3000")
        .send()
        .await
        .unwrap();
    assert_eq!(st(r), 204);
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![1u8; 1000])).collect();
    let r = s
        .req(reqwest::Method::PUT, "ok/chunked")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(st(r), 413);
    assert_eq!(st(s.get("ok/chunked").await), 404);

    // COPY to a path with a `..` segment.
    let r = s
        .req(reqwest::Method::from_bytes(b"COPY").unwrap(), "ok/a")
        .header("destination", "ok/a/../b")
        .send()
        .await
        .unwrap();
    assert_eq!(st(r), 400);
    assert_eq!(
        s.names("ok", "").await,
        vec!["a".to_string(), "t1".to_string()]
    );

    // Expiry: clamped to 9999999999, not wrapped into the past.
    s.create_container("exp").await;
    let r = s
        .req(reqwest::Method::PUT, "exp/later")
        .header("x-delete-after", "18446744073709551615")
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(st(r), 201);
    let r = s.get("exp/later").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-delete-at"], "9999999999");
}

/// A storage node that mistakes its own address would take every local copy for a
/// misplaced one and push it away and delete it. It refuses to start instead, and says
/// why: listening on 0.0.0.0 without `--advertise`, under an address its devices do not
/// belong to, or with disks the rings name elsewhere (two disks swapped between slots).
/// A new, empty disk in a slot takes the id the rings name there. Started as itself
/// again, the node serves what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_mistakes_its_address_refuses_to_start() {
    let c = TestCluster::start(1, 2);
    let s = c.tester().await;
    s.create_container("c").await;
    assert_eq!(s.put("c/kept", "still here").await.status(), 201);
    c.kill_storage(1);
    let node_dir = c.dir.join("storage-1");
    let bin = STRATUS.parent().unwrap().join("stratus-storage");
    for (listen, says) in [
        ("0.0.0.0:0", "--advertise"),
        ("127.0.0.1:0", "belongs to the node at"),
    ] {
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(node_dir.join("storage.toml"))
            .args(["--listen", listen])
            .current_dir(&node_dir);
        let out = output_within(cmd, WAIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started on {listen}: {err}");
        assert!(err.contains(says), "{listen}: {err}");
    }
    // The rings name every disk (`dev up` names them): swap d1's and d2's identities, as
    // if the disks had been put back in each other's slots.
    let id_file = |d: &str| node_dir.join(d).join("identity.json");
    let (one, two) = (
        std::fs::read(id_file("d1")).unwrap(),
        std::fs::read(id_file("d2")).unwrap(),
    );
    let disk_of = |raw: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(raw).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ring = json(&ok(&[
        "ring",
        "--dir",
        c.dir_str(),
        "show",
        "object",
        "--json",
    ]));
    let named: Vec<&str> = ring["device_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["disk"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [disk_of(&one), disk_of(&two)],
        "the ring names each disk"
    );
    std::fs::write(id_file("d1"), &two).unwrap();
    std::fs::write(id_file("d2"), &one).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(node_dir.join("storage.toml"))
        .current_dir(&node_dir);
    let out = output_within(cmd, WAIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with swapped disks: {err}");
    assert!(err.contains("Were disks swapped?"), "{err}");
    // d1 back as it was; d2 as a new, empty disk would be: it takes the ring's id.
    std::fs::write(id_file("d1"), &one).unwrap();
    std::fs::remove_file(id_file("d2")).unwrap();
    c.up_again();
    let r = s.get("c/kept").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "still here");
    assert_eq!(
        disk_of(&std::fs::read(id_file("d2")).unwrap()),
        disk_of(&two),
        "a disk without an identity takes the one the rings name for its slot"
    );
}

/// A second proxy of the same cluster, on a port the OS picks; killed on drop.
struct SecondProxy {
    child: std::process::Child,
    url: String,
}

impl SecondProxy {
    fn start(c: &TestCluster) -> Self {
        use std::io::BufRead;
        let dir = c.dir.join("proxy");
        let bin = STRATUS.parent().unwrap().join("stratus-proxy");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(dir.join("proxy.toml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(c.dir.join("proxy2.log")).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        // Killed on drop however the wait below ends.
        let mut me = Self {
            child,
            url: String::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(WAIT)
                .expect("the second proxy says where it listens");
            if let Some(url) = line.strip_prefix("stratus-proxy listening on ") {
                me.url = url.trim().to_string();
                return me;
            }
        }
    }
}

impl Drop for SecondProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two proxies of one cluster, many concurrent PUTs of one name with different bodies
/// (timestamps can collide across proxies): no 201 is ever followed by a 404 or 503,
/// what is read is one of the bodies written, and the replicas converge on one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_proxies_never_lose_an_acknowledged_object() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    s.create_container("c").await;
    let second = SecondProxy::start(&c);
    let mut other = s.clone();
    other.url = s.url.replacen(&c.proxy, &second.url, 1);
    let body = |i: usize| random_bytes(70_000 + i, i as u64 + 100);
    let log = c.dir.join("proxy/log");
    let work = (0..16).map(|w| {
        let s = if w % 2 == 0 { s.clone() } else { other.clone() };
        let log = log.clone();
        async move {
            let mut codes = Vec::new();
            for k in 0..20 {
                let i = w * 20 + k;
                let code = s.put("c/contested", body(i)).await.status().as_u16();
                codes.push((i, code));
                // Read back after every acknowledged write: never 404 or 503.
                if code == 201 {
                    let r = s.get("c/contested").await.status().as_u16();
                    if r != 200 {
                        let text = std::fs::read_to_string(&log).unwrap_or_default()
                            + &std::fs::read_to_string(log.with_file_name("../proxy2.log"))
                                .unwrap_or_default();
                        let why: Vec<&str> = text
                            .lines()
                            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                            .collect();
                        panic!("GET after a 201 (write {i}) got {r}; proxy log: {why:#?}");
                    }
                }
            }
            codes
        }
    });
    let codes: Vec<(usize, u16)> = futures::future::join_all(work)
        .await
        .into_iter()
        .flatten()
        .collect();
    let odd: Vec<_> = codes.iter().filter(|c| c.1 != 201 && c.1 != 202).collect();
    assert!(odd.is_empty(), "PUTs answered other than 201/202: {odd:?}");
    let written: Vec<Vec<u8>> = (0..320).map(body).collect();
    let r = s.get("c/contested").await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap().to_vec();
    assert!(
        written.contains(&got),
        "the object is one of the bodies written"
    );
    // Every replica ends up with the same version.
    let rs = replicas(&c, "/AUTH_test/c/contested");
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for r in &rs {
            seen.push(get_from(&c, r, "contested").await);
        }
        if seen.iter().all(|g| g.is_some() && *g == seen[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    // An aborted process nobody reaped yet is a zombie: dead all the same.
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// A storage node aborts (as a power cut would) at each step of a PUT: after the body's
/// fsync, after its rename into place, after the record's commit, before the container
/// update; three times each. Every PUT the cluster acknowledged stays readable and intact
/// on every replica once the node is back and healed, no corrupt byte is ever served, and
/// the bodies a crash left without a record are swept aside into quarantine, not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_every_step_of_a_put_lose_nothing_acknowledged() {
    let c = TestCluster::start(3, 1);
    let s = c.tester().await;
    s.create_container("c").await;
    let body = |name: &str| {
        random_bytes(
            100_000,
            blake3::hash(name.as_bytes()).as_bytes()[0] as u64 + name.len() as u64,
        )
    };
    let mut acked = Vec::new();
    for point in [
        "put-after-body-fsync",
        "put-after-rename",
        "put-after-record-commit",
        "put-before-container-update",
    ] {
        for round in 0..3 {
            c.kill_storage(2);
            let out = Command::new(&*STRATUS)
                .args(["dev", "up", "--dir", c.dir_str(), "--meta-nodes", "1"])
                .args([
                    "--storage-nodes",
                    "3",
                    "--devices",
                    "1",
                    "--worker-interval",
                    "1",
                ])
                .env("FAILPOINTS", format!("{point}=return"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let pid = c.storage_pid(2);
            let mut crashed = false;
            for i in 0..30 {
                let name = format!("{point}-{round}-{i}");
                let r = s
                    .put(&format!("c/{name}"), body(&name))
                    .await
                    .status()
                    .as_u16();
                assert!(r == 201 || r == 503, "{name}: {r}");
                if r == 201 {
                    acked.push(name);
                }
                if !alive(pid) {
                    crashed = true;
                    break;
                }
            }
            assert!(
                crashed,
                "storage-2 never reached crash point {point}: build it with --features \
                 stratus-storage-node/failpoints (scripts/test.sh does)"
            );
            // Reads while the node is down are served intact by the others.
            for name in acked.iter().rev().take(3) {
                let r = s.get(&format!("c/{name}")).await;
                assert_eq!(r.status(), 200, "{name}");
                assert_eq!(r.bytes().await.unwrap().as_ref(), &body(name)[..], "{name}");
            }
            c.up_again();
        }
    }
    assert!(acked.len() >= 12, "only {} PUTs acknowledged", acked.len());
    tokio::task::block_in_place(|| c.wait_healthy(Duration::from_secs(120), "after the crashes"));
    for name in &acked {
        let r = s.get(&format!("c/{name}")).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &body(name)[..], "{name}");
        for rep in replicas(&c, &format!("/AUTH_test/c/{name}")) {
            let got = get_from(&c, &rep, name).await;
            assert_eq!(got.map(|g| g.1), Some(body(name)), "{name} on {}", rep.node);
        }
    }
    // A body renamed into place whose record never committed is either adopted (the
    // replicator brings that very version, under the same name) or, once older than
    // `orphan_age`, moved into quarantine: none is left lying in objects/.
    let passes = c.worker_total("reclaimer", "passes");
    c.set_workers("reclaimer", "orphan_age", "0");
    let deadline = Instant::now() + WAIT;
    while c.worker_total("reclaimer", "passes") < passes + 3 {
        assert!(Instant::now() < deadline, "no reclaimer pass in 60 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = s.names("c", "").await;
    let bodies = files_under(&c.dir)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "data")
                && p.to_string_lossy().contains("/objects/")
                && !p.to_string_lossy().contains("/quarantined/")
        })
        .count();
    assert_eq!(
        bodies,
        3 * listed.len(),
        "every body file belongs to a listed object's replica"
    );
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An SLO of 1,000 SLOs of 1,000 one-byte segments (a million pieces): a ranged GET
/// fetches only the nested manifest and the segments its range reaches, so it answers the
/// right bytes without the proxy's memory growing with the tree (expanded whole, it took
/// hundreds of MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_slo_range_get_stays_small() {
    let c = TestCluster::start(1, 1);
    let s = c.tester().await;
    let st = |r: reqwest::Response| r.status().as_u16();
    s.create_container("c").await;
    assert_eq!(st(s.put("c/one", "1").await), 201);
    let put_slo = |name: &'static str, manifest: serde_json::Value| {
        let s = s.clone();
        async move {
            s.req(
                reqwest::Method::PUT,
                &format!("c/{name}?multipart-manifest=put"),
            )
            .body(manifest.to_string())
            .send()
            .await
            .unwrap()
        }
    };
    let leaf: Vec<_> = (0..1000)
        .map(|_| serde_json::json!({"path": "/c/one", "etag": md5_hex(b"1"), "size_bytes": 1}))
        .collect();
    assert_eq!(
        st(put_slo("inner", serde_json::Value::from(leaf)).await),
        201
    );
    let head = s
        .req(reqwest::Method::HEAD, "c/inner")
        .send()
        .await
        .unwrap();
    let inner_etag = head.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let top: Vec<_> = (0..1000)
        .map(|_| serde_json::json!({"path": "/c/inner", "etag": inner_etag, "size_bytes": 1000}))
        .collect();
    assert_eq!(st(put_slo("top", serde_json::Value::from(top)).await), 201);

    let pid: i32 = std::fs::read_to_string(c.dir.join("proxy/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let before = rss_kib(pid);
    for range in ["bytes=0-0", "bytes=500000-500009", "bytes=-3"] {
        let r = s
            .req(reqwest::Method::GET, "c/top")
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        let want = if range == "bytes=0-0" {
            1
        } else if range == "bytes=-3" {
            3
        } else {
            10
        };
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            "1".repeat(want).as_bytes(),
            "{range}"
        );
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the proxy grew by {grown} KiB for three ranged GETs"
    );
    let r = s.req(reqwest::Method::HEAD, "c/top").send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "1000000");
}

/// Sends `request` raw to `addr` (optionally shutting our side after it) and returns the
/// first line of the answer.
async fn raw_exchange(addr: &str, request: &[u8], half_close: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The public port bounds its clients: one that half-closes after a complete request
/// still gets its answer (Swift's does), one that stops sending its body gets 408 after
/// the client timeout, and past the request limit new requests get 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_bounds_slow_and_half_closed_clients() {
    let c = TestCluster::start_env(
        1,
        1,
        &[],
        &[
            ("STRATUS_CLIENT_TIMEOUT", "3"),
            ("STRATUS_MAX_REQUESTS", "1"),
        ],
    );
    let s = c.tester().await;
    s.create_container("c").await;
    let addr = c.proxy.trim_start_matches("http://").to_string();
    let path = s.url.trim_start_matches(&c.proxy).to_string();
    let put = |name: &str, declared: usize, sent: &str| {
        format!(
            "PUT {path}/c/{name} HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\nContent-Length: {declared}\r\n\r\n{sent}",
            s.token
        )
        .into_bytes()
    };
    let line = raw_exchange(&addr, &put("half", 5, "hello"), true).await;
    assert!(
        line.starts_with("HTTP/1.1 201"),
        "half-closed client got {line:?}"
    );
    assert_eq!(s.get("c/half").await.text().await.unwrap(), "hello");

    // A client that sends 5 of 100 bytes and waits holds the only request slot...
    let slow = tokio::spawn({
        let addr = addr.clone();
        let req = put("slow", 100, "hello");
        async move { raw_exchange(&addr, &req, false).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = s.get("c/half").await;
    assert_eq!(busy.status(), 503, "past the request limit");
    assert_eq!(busy.headers()["retry-after"], "1");
    // ...until its body times out: 408, and nothing is stored.
    let line = slow.await.unwrap();
    assert!(
        line.starts_with("HTTP/1.1 408"),
        "stalled body got {line:?}"
    );
    assert_eq!(s.get("c/slow").await.status(), 404);
    assert_eq!(
        s.get("c/half").await.status(),
        200,
        "the slot is free again"
    );
}
