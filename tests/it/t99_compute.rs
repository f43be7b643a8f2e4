//! Compute: servers booted by the compute agent through libvirt (QEMU under TCG here)
//! from replicated volumes, driven with the real `openstack` client.
//!
//! The guest is the project's test disk (`scripts/build-guest-image.sh`, built once per
//! test run): it prints `STRATUS-GUEST-READY boot-count=N` on its serial console, keeps a
//! boot counter on its disk, and writes and syncs a heartbeat file on its disk every 5 s
//! (`STRATUS-GUEST-HEARTBEAT seq=N … disk=ok`, or `disk=error`).
//!
//! One cluster with one small agent: a server booted from a volume made from a raw image
//! keeps its data through stop/start and a soft reboot (the counter goes up), pauses,
//! suspends (its memory is restored: the counter stays), takes and gives back a second
//! volume; a second server boots from a volume made from the same image as qcow2; a
//! third does not fit the host (`ERROR`, NoValidHost). While a guest runs, a storage node
//! holding its replicas is killed: the guest sees no I/O error and keeps writing, and the
//! replica catches up once back. The agent is killed: the guest runs on, the restarted
//! agent adopts it, and it still stops. Deleting servers deletes the root volume only
//! when it was to be deleted with the server. Nova's answers to bad requests are checked
//! over HTTP. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// Bound for a guest to boot or change state under TCG on a loaded 2-core machine.
const GUEST_WAIT: Duration = Duration::from_secs(180);

/// The test guest image, built once per run into `target/guest-image` (the script caches
/// its outputs there across runs too): (raw, qcow2).
fn guest_image() -> (PathBuf, PathBuf) {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = repo.join("target").join("guest-image");
        let mut cmd = Command::new("bash");
        cmd.arg(repo.join("scripts/build-guest-image.sh")).arg(&out);
        let o = output_within(cmd, Duration::from_secs(600));
        assert!(
            o.status.success(),
            "building the guest image: {}{}",
            stdout(&o),
            stderr(&o)
        );
        out
    });
    (
        dir.join("stratus-guest.raw"),
        dir.join("stratus-guest.qcow2"),
    )
}

/// A dev cluster with a compute agent offering `ram_mb` of RAM.
fn start_compute_cluster(ram_mb: u32) -> TestCluster {
    TestCluster::start_with(
        3,
        1,
        &[
            "--compute",
            "--compute-ram-mb",
            &ram_mb.to_string(),
            "--compute-vcpus",
            "2",
        ],
    )
}

fn server(c: &TestCluster, name: &str) -> Value {
    openstack_json(c, "openrc", &["server", "show", name])
}

/// Polls `server show` until `status`; the last document.
fn wait_status(c: &TestCluster, name: &str, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let s = server(c, name);
        if s["status"] == status && s["OS-EXT-STS:task_state"].is_null() {
            return s;
        }
        assert!(
            s["status"] != "ERROR" || status == "ERROR",
            "server {name} went ERROR: {s}"
        );
        assert!(
            start.elapsed() < GUEST_WAIT,
            "server {name} is not {status} after {GUEST_WAIT:?}: {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn console(c: &TestCluster, name: &str) -> String {
    openstack_ok(c, "openrc", &["console", "log", "show", name]).replace('\r', "")
}

/// Polls the console log (through the compute API) until it holds `marker`; the log.
fn wait_console(c: &TestCluster, name: &str, marker: &str) -> String {
    let start = Instant::now();
    loop {
        let log = console(c, name);
        if log.contains(marker) {
            return log;
        }
        assert!(
            start.elapsed() < GUEST_WAIT,
            "{name}'s console has no {marker:?} after {GUEST_WAIT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Polls the console log until heartbeat `seq` (or a later one) is in it; the log. `what`
/// says what stopped when it is not.
fn wait_heartbeats(c: &TestCluster, name: &str, seq: u64, what: &str) -> String {
    let start = Instant::now();
    loop {
        let log = console(c, name);
        if last_heartbeat(&log) >= seq {
            return log;
        }
        assert!(start.elapsed() < GUEST_WAIT, "{what}:\n{log}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The part of a console log from the last heartbeat `seq` on (the whole log if there is
/// none): what the running boot wrote since then.
fn since_heartbeat(log: &str, seq: u64) -> &str {
    log.rfind(&format!("STRATUS-GUEST-HEARTBEAT seq={seq} "))
        .map_or(log, |i| &log[i..])
}

/// The last heartbeat sequence number in a console log.
fn last_heartbeat(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("STRATUS-GUEST-HEARTBEAT seq=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn action(c: &TestCluster, args: &[&str]) {
    openstack_ok(c, "openrc", args);
}

fn volume(c: &TestCluster, name: &str) -> Value {
    openstack_json(c, "openrc", &["volume", "show", name])
}

fn wait_volume(c: &TestCluster, name: &str, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = volume(c, name);
        if v["status"] == status {
            return v;
        }
        assert!(
            start.elapsed() < GUEST_WAIT,
            "volume {name} is not {status}: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The libvirt domains (all states) whose name starts with `stratus-`.
fn domains() -> Vec<String> {
    let o = output_within(
        {
            let mut c = Command::new("virsh");
            c.args(["-c", "qemu:///system", "list", "--all", "--name"]);
            c
        },
        Duration::from_secs(30),
    );
    stdout(&o)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("stratus-"))
        .map(str::to_string)
        .collect()
}

/// `virsh domstate` of server `id`'s domain.
fn domain_state(id: &str) -> String {
    let mut cmd = Command::new("virsh");
    cmd.args(["-c", "qemu:///system", "domstate", &format!("stratus-{id}")]);
    stdout(&output_within(cmd, Duration::from_secs(30)))
        .trim()
        .to_string()
}

/// The root volume id of a server (its `volumes_attached`).
fn attached(s: &Value) -> Vec<String> {
    let v = &s["volumes_attached"];
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x["id"].as_str().map(str::to_string))
            .collect(),
        // Older clients print "id='…'" lines.
        Value::String(t) => t
            .split('\'')
            .filter(|p| p.len() == 36)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A Keystone token scoped to the admin's project, and the compute API's base URL.
async fn nova(c: &TestCluster) -> (reqwest::Client, String, String) {
    let var = |k: &str| openrc_var(&c.dir.join("openrc"), k);
    let body = password_auth(
        &var("OS_USERNAME"),
        &var("OS_PASSWORD"),
        Some(&var("OS_PROJECT_NAME")),
    );
    let http = reqwest::Client::new();
    let (status, tok, body) =
        post_auth_tokens(&http, &format!("{}/identity/v3", c.proxy), &body).await;
    assert_eq!(status, 201, "{body}");
    (http, tok.unwrap(), format!("{}/compute/v2.1", c.proxy))
}

async fn call(
    (http, tok, base): &(reqwest::Client, String, String),
    m: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(m, format!("{base}{path}"))
        .header("x-auth-token", tok);
    if let Some(b) = body {
        r = r.json(&b);
    }
    answer(r.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_servers_boot_from_replicated_volumes_and_keep_their_data() {
    let (raw, qcow2) = tokio::task::spawn_blocking(guest_image).await.unwrap();
    // 400 MB at the default ratio of 1.5: two m1.tiny (256 MB) servers fit, a third
    // server of 128 MB does not.
    let c = tokio::task::spawn_blocking(|| start_compute_cluster(400))
        .await
        .unwrap();
    let c = &c;
    let hosts = stratus_in(c, Path::new("/"), &["compute", "list"]);
    assert!(hosts.contains("compute-1"), "{hosts}");
    assert!(hosts.contains("up"), "{hosts}");
    assert!(
        hosts.contains("qemu"),
        "the agent must say guests run under TCG: {hosts}"
    );

    let raw_s = raw.to_str().unwrap();
    let qcow2_s = qcow2.to_str().unwrap();
    action(
        c,
        &[
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            raw_s,
            "guest-raw",
        ],
    );
    action(
        c,
        &[
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            qcow2_s,
            "guest-qcow2",
        ],
    );

    // --- s1: boot from a 1 GiB volume made from the raw image.
    let s1 = openstack_json(
        c,
        "openrc",
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "guest-raw",
            "--boot-from-volume",
            "1",
            "--wait",
            "s1",
        ],
    );
    assert_eq!(s1["status"], "ACTIVE", "{s1}");
    let log = wait_console(c, "s1", "STRATUS-GUEST-READY boot-count=1");
    assert!(
        log.contains("STRATUS-GUEST-DISK-SIZE dev=vda bytes=1073741824"),
        "the guest's disk is the 1 GiB volume:\n{log}"
    );
    let s1 = server(c, "s1");
    let s1_volumes = attached(&s1);
    assert_eq!(s1_volumes.len(), 1, "{s1}");
    let root1 = s1_volumes[0].clone();
    let v = volume(c, &root1);
    assert_eq!(v["status"], "in-use", "{v}");
    assert_eq!(v["bootable"].to_string().trim_matches('"'), "true", "{v}");

    // Stop and start: the counter on the replicated volume goes up.
    action(c, &["server", "stop", "s1"]);
    let s = wait_status(c, "s1", "SHUTOFF");
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "power state SHUTDOWN: {s}");
    action(c, &["server", "start", "s1"]);
    wait_status(c, "s1", "ACTIVE");
    wait_console(c, "s1", "STRATUS-GUEST-READY boot-count=2");
    // A soft reboot.
    action(c, &["server", "reboot", "s1"]);
    wait_status(c, "s1", "ACTIVE");
    wait_console(c, "s1", "STRATUS-GUEST-READY boot-count=3");
    // A hard reboot (the plug, then boot).
    action(c, &["server", "reboot", "--hard", "s1"]);
    wait_status(c, "s1", "ACTIVE");
    wait_console(c, "s1", "STRATUS-GUEST-READY boot-count=4");
    // Pause and unpause; suspend and resume: memory is kept, so no new boot.
    action(c, &["server", "pause", "s1"]);
    wait_status(c, "s1", "PAUSED");
    action(c, &["server", "unpause", "s1"]);
    wait_status(c, "s1", "ACTIVE");
    action(c, &["server", "suspend", "s1"]);
    wait_status(c, "s1", "SUSPENDED");
    action(c, &["server", "resume", "s1"]);
    wait_status(c, "s1", "ACTIVE");
    let before = last_heartbeat(&console(c, "s1"));
    let log = wait_heartbeats(c, "s1", before + 2, "no heartbeat after resume");
    assert!(
        !log.contains("boot-count=5"),
        "resume restored the guest, it did not boot again:\n{log}"
    );

    // A second volume, attached and detached while the guest runs.
    action(c, &["volume", "create", "--size", "1", "data1"]);
    wait_volume(c, "data1", "available");
    action(c, &["server", "add", "volume", "s1", "data1"]);
    let start = Instant::now();
    loop {
        let v = volume(c, "data1");
        let s = server(c, "s1");
        if v["status"] == "in-use" && attached(&s).len() == 2 {
            break;
        }
        assert!(start.elapsed() < GUEST_WAIT, "data1 not attached: {v} {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
    action(c, &["server", "remove", "volume", "s1", "data1"]);
    wait_volume(c, "data1", "available");

    // --- s2: from a volume made from the qcow2 image.
    action(
        c,
        &[
            "volume",
            "create",
            "--image",
            "guest-qcow2",
            "--size",
            "1",
            "v2",
        ],
    );
    wait_volume(c, "v2", "available");
    let s2 = openstack_json(
        c,
        "openrc",
        &[
            "server", "create", "--flavor", "m1.tiny", "--volume", "v2", "--wait", "s2",
        ],
    );
    assert_eq!(s2["status"], "ACTIVE", "{s2}");
    wait_console(c, "s2", "STRATUS-GUEST-READY boot-count=1");

    // The operator's view, and the same servers through `stratus server`.
    let listed = stratus_in(c, Path::new("/"), &["server", "list"]);
    assert!(listed.contains("s1") && listed.contains("s2"), "{listed}");
    let hosts = stratus_in(c, Path::new("/"), &["compute", "list"]);
    assert!(hosts.contains("512/400"), "two m1.tiny reserved: {hosts}");
    let tail = stratus_in(
        c,
        Path::new("/"),
        &["server", "console", "s2", "--lines", "3"],
    );
    assert!(tail.lines().count() <= 3, "{tail}");
    assert!(tail.contains("STRATUS-GUEST"), "{tail}");

    // The agent's metrics count its boots and the volumes it serves.
    let agent = std::fs::read_to_string(c.dir.join("compute-1").join("addr")).unwrap();
    // Its port serves mutual TLS: the operator's (admin) identity, a `compute` server.
    let admin = stratus_client::tls::Identity::load(&c.dir.join("tls/admin")).unwrap();
    let tls =
        stratus_client::tls::http::client_config_for(&admin, stratus_client::tls::Role::Compute)
            .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let metrics = http
        .get(format!("https://{}/metrics", agent.trim()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Without a certificate, nothing.
    assert!(reqwest::get(format!("http://{}/metrics", agent.trim()))
        .await
        .is_err());
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("stratus_compute_boots_total") >= 5.0, "{metrics}");
    assert_eq!(
        value("stratus_compute_exports"),
        2.0,
        "s1's and s2's root volumes"
    );

    // --- s3 does not fit: NoValidHost.
    action(
        c,
        &[
            "flavor", "create", "--ram", "128", "--vcpus", "1", "--disk", "1", "chunky",
        ],
    );
    let o = openstack(
        c,
        "openrc",
        &[
            "server",
            "create",
            "--flavor",
            "chunky",
            "--image",
            "guest-raw",
            "--boot-from-volume",
            "1",
            "s3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s3 = wait_status(c, "s3", "ERROR");
    assert!(
        s3["fault"].to_string().contains("No valid host"),
        "the fault says why: {s3}"
    );
    action(c, &["server", "delete", "s3"]);

    // --- Nova's answers to bad requests.
    let n = nova(c).await;
    let flavor = |f: &str| {
        json!({"server": {"name": "x", "flavorRef": f, "imageRef": "", "networks": [],
        "block_device_mapping_v2": [{"uuid": root1, "boot_index": 0, "source_type": "volume", "destination_type": "volume"}]}})
    };
    let (st, body) = call(
        &n,
        reqwest::Method::POST,
        "/servers",
        Some(flavor("no-such")),
    )
    .await;
    assert_eq!(st, 400, "unknown flavor: {body}");
    // root1 is in use by s1.
    let (st, body) = call(&n, reqwest::Method::POST, "/servers", Some(flavor("1"))).await;
    assert_eq!(st, 400, "a volume in use: {body}");
    let bad_image = json!({"server": {"name": "x", "flavorRef": "1", "imageRef": "00000000-0000-0000-0000-000000000000", "networks": []}});
    let (st, body) = call(&n, reqwest::Method::POST, "/servers", Some(bad_image)).await;
    assert_eq!(st, 400, "unknown image: {body}");
    let bad_volume = json!({"server": {"name": "x", "flavorRef": "1", "imageRef": "", "networks": [],
        "block_device_mapping_v2": [{"uuid": "00000000-0000-0000-0000-000000000000", "boot_index": 0, "source_type": "volume", "destination_type": "volume"}]}});
    let (st, body) = call(&n, reqwest::Method::POST, "/servers", Some(bad_volume)).await;
    assert_eq!(st, 400, "unknown volume: {body}");
    let s1_id = server(c, "s1")["id"].as_str().unwrap().to_string();
    let (st, body) = call(
        &n,
        reqwest::Method::POST,
        &format!("/servers/{s1_id}/action"),
        Some(json!({"os-start": null})),
    )
    .await;
    assert_eq!(st, 409, "starting an ACTIVE server: {body}");
    let (st, body) = call(
        &n,
        reqwest::Method::GET,
        "/servers/00000000-0000-0000-0000-000000000000",
        None,
    )
    .await;
    assert_eq!(st, 404, "{body}");

    // --- A storage node dies under a running guest: no I/O error, the heartbeat goes on.
    let before = last_heartbeat(&console(c, "s1"));
    kill_pid_file(&c.dir.join("storage-2"));
    let log = wait_heartbeats(
        c,
        "s1",
        before + 4,
        "the guest stopped writing after a storage node died",
    );
    // Only what the guest wrote since: the log holds earlier boots too, and a heartbeat
    // racing an earlier power-off's read-only remount says nothing about this.
    let after = since_heartbeat(&log, before);
    assert!(
        !after.contains("disk=error")
            && !after.contains("I/O error")
            && !after.contains("STRATUS-GUEST-ERROR"),
        "the guest saw an I/O error:\n{log}"
    );
    c.up_again();
    // The replica that missed writes catches up: the volume's set is whole again.
    let start = Instant::now();
    loop {
        let v = json(&stratus_in(
            c,
            Path::new("/"),
            &["volume", "show", &root1, "--json"],
        ));
        if v["stale"].as_array().is_some_and(|s| s.is_empty()) {
            break;
        }
        assert!(
            start.elapsed() < GUEST_WAIT,
            "the replica did not catch up: {}",
            v["stale"]
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // --- The agent dies: the guest runs on (its disk requests wait, QEMU's NBD reconnect
    // delay); the restarted agent serves its volume again and adopts it.
    kill_pid_file(&c.dir.join("compute-1"));
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        domain_state(&s1_id),
        "running",
        "the guest runs on without its agent"
    );
    c.up_again();
    let s = wait_status(c, "s1", "ACTIVE");
    assert_eq!(s["status"], "ACTIVE");
    let before = last_heartbeat(&console(c, "s1"));
    let log = wait_heartbeats(
        c,
        "s1",
        before + 2,
        "no heartbeat after the agent came back",
    );
    assert!(
        !since_heartbeat(&log, before).contains("disk=error"),
        "{log}"
    );
    assert!(
        !log.contains("boot-count=5"),
        "the guest ran on, it did not boot again:\n{log}"
    );
    action(c, &["server", "stop", "s1"]);
    wait_status(c, "s1", "SHUTOFF");

    // --- Deleting: s1's root volume was made by the client with
    // delete_on_termination=false and stays; a server made with imageRef deletes its own.
    action(c, &["server", "delete", "--wait", "s1"]);
    let v = wait_volume(c, &root1, "available");
    assert_eq!(v["status"], "available");
    let s4 = openstack_json(
        c,
        "openrc",
        &[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "guest-raw",
            "--wait",
            "s4",
        ],
    );
    assert_eq!(s4["status"], "ACTIVE", "{s4}");
    let root4 = attached(&server(c, "s4"));
    assert_eq!(root4.len(), 1);
    action(c, &["server", "delete", "--wait", "s4"]);
    action(c, &["server", "delete", "--wait", "s2"]);
    let gone = openstack(c, "openrc", &["volume", "show", &root4[0]]);
    assert!(
        !gone.status.success(),
        "s4's root volume is deleted with it"
    );
    wait_volume(c, "v2", "available");
    let left = openstack_json(c, "openrc", &["server", "list"]);
    assert_eq!(left, json!([]), "{left}");
    let ids = [s1_id];
    let doms = domains();
    for id in ids {
        assert!(
            !doms.iter().any(|d| d.contains(&id)),
            "libvirt still has {id}: {doms:?}"
        );
    }
}
