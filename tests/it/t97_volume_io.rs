//! Block volumes through the real tools: `stratus volume export` serves a replicated volume
//! over NBD and `fio --ioengine=nbd`, `qemu-io` and `nbdcopy` drive it.
//!
//! - fio random writes with `verify=crc32c` over 256 MiB survive a storage node killed
//!   with -9 mid-run (no I/O error); the node catches up after its restart and rejoins the
//!   replica set; with another node then killed, everything still reads back verified (so
//!   the rejoined replica holds the right bytes); the same with a node SIGSTOPped for 30 s;
//!   a replica that missed writes while no writer holds the volume any more is caught up by
//!   its node's repair worker.
//! - Fencing: a second export of the same volume takes a newer epoch and the storage nodes
//!   refuse the first one's next write; the second never sees it.
//! - A writer killed with -9: a new attach reads every write acknowledged to a FLUSH.
//! - Replicas left different by writes never answered (a stalled node, a writer killed
//!   before it noticed): `stratus volume check` shows them, and the next attach makes them
//!   agree.
//! - Snapshots and clones: a clone of a snapshot reads the snapshot's bytes after 1,000
//!   later writes to the volume, and diverges independently; deleting frees the chunks on
//!   every replica; a volume with snapshots is not deleted without --cascade.
//!
//! Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Far above what catching up needs here (a debug build on 2 shared cores).
const HEAL: Duration = Duration::from_secs(240);

/// A running `stratus volume export`; stopped (SIGTERM, then SIGKILL) on drop.
struct Exporter {
    child: Child,
    socket: PathBuf,
    volume: String,
}

impl Exporter {
    fn start(c: &TestCluster, volume: &str, socket: &Path) -> Self {
        let mut child = Command::new(&*STRATUS)
            .args(["--dir", c.dir_str(), "volume", "export", volume, "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start export");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("export of {volume} did not start within {WAIT:?}"));
        assert!(line.starts_with("exporting volume"), "{line}");
        Self {
            child,
            socket: socket.to_path_buf(),
            volume: volume.to_string(),
        }
    }

    fn uri(&self) -> String {
        format!(
            "nbd+unix:///{}?socket={}",
            self.volume,
            self.socket.display()
        )
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // An export that ended by itself is a finding: say how.
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!("export of {} had already ended: {status}", self.volume);
        }
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }
}

fn create(c: &TestCluster, gib: u64) -> String {
    let v = json(&stratus_in(
        c,
        Path::new("/"),
        &["volume", "create", "--size", &gib.to_string(), "--json"],
    ));
    v["id"].as_str().unwrap().to_string()
}

fn show(c: &TestCluster, vol: &str) -> serde_json::Value {
    json(&stratus_in(
        c,
        Path::new("/"),
        &["volume", "show", vol, "--json"],
    ))
}

/// Runs qemu-io commands against an export; answers (success, stdout + stderr).
fn qemu_io(uri: &str, cmds: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    let o = output_within(cmd, Duration::from_secs(120));
    // qemu-io reports a failed command on stdout and still exits 0: look for it.
    let text = format!("{}{}", stdout(&o), stderr(&o));
    let failed = !o.status.success()
        || text.contains("failed")
        || text.contains("Pattern verification failed");
    (!failed, text)
}

fn qemu_io_ok(uri: &str, cmds: &[&str]) -> String {
    let (ok, text) = qemu_io(uri, cmds);
    assert!(ok, "qemu-io {cmds:?}: {text}");
    text
}

/// fio's nbd engine over `uri`: random 64 KiB writes over 256 MiB at depth 16, each block
/// verified with crc32c after the write phase (or only verified, with `verify_only`).
fn fio(uri: &str, verify_only: bool, limit: Duration) -> String {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=vol",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randwrite",
        "--bs=64k",
        "--size=256m",
        "--iodepth=16",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--randseed=7",
        "--output-format=json",
        // No verify state file in the working directory.
        "--verify_state_save=0",
    ]);
    if verify_only {
        cmd.arg("--verify_only=1");
    }
    let o = output_within(cmd, limit);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "fio (verify_only={verify_only}) failed: {out}{}",
        stderr(&o)
    );
    let start = out.find('{').unwrap_or(0);
    let j = json(&out[start..]);
    let job = &j["jobs"][0];
    assert_eq!(job["error"], 0, "fio job error: {job}");
    out
}

/// Waits until the volume's replica set is whole again.
fn wait_no_stale(c: &TestCluster, vol: &str) {
    let deadline = Instant::now() + HEAL;
    loop {
        let v = show(c, vol);
        if v["stale"].as_array().is_some_and(|s| s.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas {} still stale after {HEAL:?}",
            v["stale"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn t97_fio_verifies_through_a_killed_node_a_resync_and_a_stalled_node() {
    let c = TestCluster::start(4, 1);
    let tmp = tempfile::tempdir().unwrap();
    let vol = create(&c, 1);
    let ex = Exporter::start(&c, &vol, &tmp.path().join("v.sock"));
    let uri = ex.uri();

    // kill -9 one storage node while fio writes: no I/O error, the node leaves the set.
    let killer = {
        let dir = c.dir.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            kill_pid_file(&dir.join("storage-2"));
        })
    };
    fio(&uri, false, Duration::from_secs(600));
    killer.join().unwrap();
    let v = show(&c, &vol);
    let stale: Vec<String> = serde_json::from_value(v["stale"].clone()).unwrap();
    assert!(
        !stale.is_empty(),
        "the killed node's device left the set: {v}"
    );
    let h = c.health();
    assert!(
        h["volumes"]["degraded"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "health shows the volume degraded while a replica is out: {h}"
    );

    // Back up: it catches up and rejoins.
    c.up_again();
    wait_no_stale(&c, &vol);
    c.wait_healthy(HEAL, "after the killed node caught up");

    // Another node down: every block still reads back verified, some of them from the
    // replica that caught up.
    c.kill_storage(3);
    fio(&uri, true, Duration::from_secs(600));
    c.up_again();
    wait_no_stale(&c, &vol);

    // SIGSTOP a node for 30 s during a write run: still no I/O error.
    let pid = c.storage_pid(4);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: signalling a process the test cluster started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(30));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    fio(&uri, false, Duration::from_secs(600));
    stopper.join().unwrap();
    wait_no_stale(&c, &vol);
    fio(&uri, true, Duration::from_secs(600));

    // A node killed while the volume is written, then the writer goes away: the node's own
    // repair worker catches it up once it is back, with no writer attached.
    let killer = {
        let dir = c.dir.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            kill_pid_file(&dir.join("storage-1"));
        })
    };
    fio(&uri, false, Duration::from_secs(600));
    killer.join().unwrap();
    drop(ex);
    let v = show(&c, &vol);
    // Detached cleanly: no writer recorded.
    assert!(v["writer"].is_null(), "{v}");
    assert!(
        v["stale"].as_array().is_some_and(|s| !s.is_empty()),
        "node 1 left the set: {v}"
    );
    c.up_again();
    wait_no_stale(&c, &vol);
    assert!(c.worker_total("volume-repairer", "repaired") > 0);
    c.wait_healthy(HEAL, "after the repair worker caught the volume up");
    let ex = Exporter::start(&c, &vol, &tmp.path().join("v2.sock"));
    c.kill_storage(2);
    fio(&ex.uri(), true, Duration::from_secs(600));
}

#[test]
fn t97_a_new_writer_fences_the_old_one_at_the_storage_nodes() {
    let c = TestCluster::start(3, 1);
    let tmp = tempfile::tempdir().unwrap();
    let vol = create(&c, 1);
    let a = Exporter::start(&c, &vol, &tmp.path().join("a.sock"));
    qemu_io_ok(&a.uri(), &["write -P 0x11 0 64k", "flush"]);
    let epoch_a = show(&c, &vol)["epoch"].as_u64().unwrap();

    let b = Exporter::start(&c, &vol, &tmp.path().join("b.sock"));
    assert_eq!(show(&c, &vol)["epoch"].as_u64().unwrap(), epoch_a + 1);
    // A does not look at meta before writing: the storage nodes refuse it.
    let (ok, text) = qemu_io(&a.uri(), &["write -P 0x22 0 64k", "flush"]);
    assert!(!ok, "the fenced writer's write must fail: {text}");
    assert!(
        text.contains("Operation not permitted") || text.contains("EPERM"),
        "fenced writes fail with EPERM: {text}"
    );
    // B sees A's last acknowledged data, not the refused write.
    qemu_io_ok(&b.uri(), &["read -P 0x11 0 64k"]);
    // And A can never write again, even where B has not written.
    let (ok, _) = qemu_io(&a.uri(), &["write -P 0x33 8M 64k"]);
    assert!(!ok, "still fenced");
    qemu_io_ok(
        &b.uri(),
        &["read -P 0 8M 64k", "write -P 0x44 8M 64k", "flush"],
    );
}

#[test]
fn t97_flushed_writes_survive_a_killed_writer_and_snapshots_and_clones_hold() {
    let c = TestCluster::start(3, 1);
    let tmp = tempfile::tempdir().unwrap();
    let vol = create(&c, 1);
    let mut a = Exporter::start(&c, &vol, &tmp.path().join("a.sock"));
    qemu_io_ok(
        &a.uri(),
        &["write -P 0x5a 0 1M", "write -P 0x5b 5M 512", "flush"],
    );
    a.kill9();
    drop(a);
    let b = Exporter::start(&c, &vol, &tmp.path().join("b.sock"));
    qemu_io_ok(&b.uri(), &["read -P 0x5a 0 1M", "read -P 0x5b 5M 512"]);
    drop(b);

    // Replicas left different by writes never answered: a node stalls mid-write (its
    // replicas miss writes the others took), and the writer dies before it notices. The
    // next attach makes every replica of the set agree again.
    let mut a = Exporter::start(&c, &vol, &tmp.path().join("a2.sock"));
    let pid = c.storage_pid(2);
    // SAFETY: signalling a process the test cluster started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let writes: Vec<String> = (0..64)
        .map(|i| {
            format!(
                "aio_write -P 0x3c {} 64k",
                (i + 4) * 4 * 1024 * 1024 + 65536
            )
        })
        .collect();
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for w in &writes {
        cmd.args(["-c", w]);
    }
    cmd.arg(a.uri());
    let mut writer = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Well under the writer's 5 s node timeout: it has not yet taken node 2 out of the set.
    std::thread::sleep(Duration::from_secs(3));
    a.kill9();
    let _ = writer.kill();
    let _ = writer.wait();
    drop(a);
    // Killed while stopped, node 2 never applies the writes queued for it.
    c.kill_storage(2);
    c.up_again();
    let check = |c: &TestCluster| {
        json(&stratus_in(
            c,
            Path::new("/"),
            &["volume", "check", &vol, "--json"],
        ))
    };
    let before = check(&c);
    assert!(
        before["divergent"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "node 2 missed writes the others took, and nobody marked it stale: {before}"
    );
    assert!(
        before["stale"].as_array().is_some_and(|s| s.is_empty()),
        "{before}"
    );
    let b = Exporter::start(&c, &vol, &tmp.path().join("b1.sock"));
    let after = check(&c);
    assert_eq!(
        after["divergent"].as_array().map(Vec::len),
        Some(0),
        "attaching reconciled the replicas (before: {before})"
    );
    qemu_io_ok(&b.uri(), &["read -P 0x5a 0 1M", "read -P 0x5b 5M 512"]);
    drop(b);

    // A snapshot is O(1); later writes do not change what it holds.
    let snap = json(&stratus_in(
        &c,
        Path::new("/"),
        &["volume", "snapshot", &vol, "--json"],
    ));
    let snap_id = snap["id"].as_str().unwrap().to_string();
    let b = Exporter::start(&c, &vol, &tmp.path().join("b2.sock"));
    let writes: Vec<String> = (0..1000)
        .map(|i| format!("write -P 0x77 {} 4k", (i * 37 % 2048) * 4096))
        .collect();
    let refs: Vec<&str> = writes.iter().map(String::as_str).collect();
    qemu_io_ok(&b.uri(), &refs);
    qemu_io_ok(&b.uri(), &["flush"]);
    drop(b);

    // A clone of the snapshot reads the snapshot's bytes, whatever was written since.
    let clone = json(&stratus_in(
        &c,
        Path::new("/"),
        &["volume", "clone", &snap_id, "--from-snapshot", "--json"],
    ));
    let clone_id = clone["id"].as_str().unwrap().to_string();
    let cl = Exporter::start(&c, &clone_id, &tmp.path().join("c.sock"));
    qemu_io_ok(
        &cl.uri(),
        &[
            "read -P 0x5a 0 1M",
            "read -P 0 1M 4M",
            "read -P 0x5b 5M 512",
        ],
    );
    // It diverges on its own: its writes do not reach the parent, and the parent's do not
    // reach it.
    qemu_io_ok(
        &cl.uri(),
        &["write -P 0x99 0 4k", "flush", "read -P 0x99 0 4k"],
    );
    drop(cl);
    let b = Exporter::start(&c, &vol, &tmp.path().join("b3.sock"));
    qemu_io_ok(&b.uri(), &["read -P 0x77 0 4k"]);
    drop(b);

    // A flattened clone owns all its bytes and no longer needs its parent.
    let flat = json(&stratus_in(
        &c,
        Path::new("/"),
        &["volume", "clone", &snap_id, "--from-snapshot", "--json"],
    ));
    let flat_id = flat["id"].as_str().unwrap().to_string();
    let flat = json(&stratus_in(
        &c,
        Path::new("/"),
        &["volume", "flatten", &flat_id, "--json"],
    ));
    assert!(flat["parent"].is_null(), "{flat}");

    // With a snapshot, the volume is only deleted with --cascade; a parent with a clone
    // waits for it; deleting both frees the chunks on every device.
    let out = stratus(&["--dir", c.dir_str(), "volume", "delete", &vol]);
    assert!(!out.status.success(), "a volume with snapshots is kept");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stratus_in(&c, Path::new("/"), &["volume", "delete", &vol, "--cascade"]);
    let v = show(&c, &vol);
    assert_eq!(v["status"], "deleting", "kept for its clone: {v}");
    stratus_in(&c, Path::new("/"), &["volume", "delete", &clone_id]);
    let out = stratus(&["--dir", c.dir_str(), "volume", "show", &vol]);
    assert!(!out.status.success(), "the parent went with its last clone");
    // The flattened clone still reads what the snapshot held.
    let f = Exporter::start(&c, &flat_id, &tmp.path().join("f.sock"));
    qemu_io_ok(
        &f.uri(),
        &[
            "read -P 0x5a 0 1M",
            "read -P 0 1M 4M",
            "read -P 0x5b 5M 512",
        ],
    );
    drop(f);
    let left: Vec<PathBuf> = files_under(&c.dir)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.contains(&format!("/volumes/{vol}")) || s.contains(&format!("/volumes/{clone_id}"))
        })
        .collect();
    assert!(left.is_empty(), "chunk files left behind: {left:?}");
}

#[test]
fn t97_bad_volume_requests_get_clear_errors() {
    let c = TestCluster::start(3, 1);
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["0", "999999999"] {
        let out = stratus(&["--dir", c.dir_str(), "volume", "create", "--size", bad]);
        assert!(!out.status.success(), "size {bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("size"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = stratus(&["--dir", c.dir_str(), "volume", "show", "no-such-volume"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be found"));
    let vol = create(&c, 1);
    let ex = Exporter::start(&c, &vol, &tmp.path().join("v.sock"));
    // Past the end: an error for that request, and the export keeps serving.
    let (ok, text) = qemu_io(&ex.uri(), &["read 1G 4k"]);
    assert!(!ok, "{text}");
    qemu_io_ok(&ex.uri(), &["write -P 1 0 4k", "read -P 1 0 4k"]);
    // An attached volume cannot grow (QEMU cannot grow an NBD disk).
    let out = stratus(&[
        "--dir",
        c.dir_str(),
        "volume",
        "extend",
        &vol,
        "--size",
        "2",
    ]);
    assert!(!out.status.success());
    drop(ex);
    stratus_in(
        &c,
        Path::new("/"),
        &["volume", "extend", &vol, "--size", "2"],
    );
    assert_eq!(show(&c, &vol)["size_gb"], 2);
}
