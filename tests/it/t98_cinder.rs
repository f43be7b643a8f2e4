//! Cinder v3 volumes in the proxy (`<proxy>/volume/v3/<project_id>`).
//!
//! The real `openstack` client (python-openstackclient 10.5.0) as demo creates, lists,
//! shows (by name and id), extends, tags and deletes volumes, snapshots one and makes
//! volumes of the snapshot and of the volume, is refused deleting a volume that has a
//! snapshot, and ends with nothing listed. Volumes from images: a raw and a compressed
//! qcow2 image become volumes holding exactly the image's disk (read back over NBD with
//! `stratus volume export` and `qemu-img compare`), later volumes of the same image are
//! instant clones, concurrent creates import an image once, the image volume is never
//! shown, and a volume smaller than the image, an inactive or another project's image are
//! refused. Over raw HTTP with Keystone tokens: version discovery and microversions, the
//! catalog entries, project scoping, Cinder's answers to bad sizes, unknown ids and
//! wrong states, the exact keys of every body at microversion 3.0, the legacy attach
//! steps, metadata, paging, filters, and a cascading delete. Every wait is bounded.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

const ADMIN: &str = "openrc";
const DEMO: &str = "openrc-demo";
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Helpers

/// Runs a tool that must succeed; its standard output.
fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    let o = output_within(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// `n` random bytes from the kernel.
fn urandom(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

/// The `Name` column of an `openstack … list -f json` answer, sorted.
fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|row| row["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

/// A row of an `openstack … list -f json` answer by name.
fn row<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|r| r["Name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
}

/// The client prints `bootable` as a boolean or as Cinder's string.
fn bootable(v: &Value) -> bool {
    match &v["bootable"] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        other => panic!("bootable is {other} in {v}"),
    }
}

/// A project-scoped Keystone token for the user of openrc file `rc`: the token and the
/// token's body.
async fn keystone_token(c: &TestCluster, rc: &str) -> (String, Value) {
    let path = if Path::new(rc).is_absolute() {
        rc.into()
    } else {
        c.dir.join(rc)
    };
    let var = |k: &str| openrc_var(&path, k);
    let body = password_auth(
        &var("OS_USERNAME"),
        &var("OS_PASSWORD"),
        Some(&var("OS_PROJECT_NAME")),
    );
    let base = format!("{}/identity/v3", c.proxy);
    let (status, tok, body) = post_auth_tokens(&reqwest::Client::new(), &base, &body).await;
    assert_eq!(
        status, 201,
        "POST /identity/v3/auth/tokens for {rc}: {body}"
    );
    (tok.expect("X-Subject-Token"), body)
}

/// Raw Cinder v3 at `<proxy>/volume/v3/<project_id>` with a token.
struct Cinder {
    http: reqwest::Client,
    /// `http://H/volume/v3/<project_id>`
    base: String,
    token: String,
    project: String,
}

/// An answer: status, headers, JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Cinder {
    async fn new(c: &TestCluster, rc: &str) -> Self {
        let (token, body) = keystone_token(c, rc).await;
        let project = body["token"]["project"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no project in the token {body}"))
            .to_string();
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/volume/v3/{project}", c.proxy),
            token,
            project,
        }
    }

    /// This caller's token against another project's URL.
    fn on_project(&self, project: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.replace(&self.project, project),
            token: self.token.clone(),
            project: project.to_string(),
        }
    }

    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.base))
            .header("x-auth-token", &self.token)
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let r = r.send().await.unwrap();
        let headers = r.headers().clone();
        let (status, body) = answer(r).await;
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(m, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let a = self.send(r).await;
        (a.status, a.body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// `POST /volumes` that must be 202: the volume.
    async fn create(&self, volume: Value) -> Value {
        let (s, b) = self
            .call(Method::POST, "/volumes", Some(json!({ "volume": volume })))
            .await;
        assert_eq!(s, 202, "POST /volumes {volume}: {b}");
        b["volume"].clone()
    }

    /// `GET /volumes/{id}` that must be 200: the volume.
    async fn show(&self, id: &str) -> Value {
        let (s, b) = self.get(&format!("/volumes/{id}")).await;
        assert_eq!(s, 200, "GET /volumes/{id}: {b}");
        b["volume"].clone()
    }

    async fn action(&self, id: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, &format!("/volumes/{id}/action"), Some(body))
            .await
    }

    /// Waits (bounded) until volume `id` is `want`; the volume then.
    async fn wait_status(&self, id: &str, want: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.show(id).await;
            if v["status"] == want {
                return v;
            }
            assert!(
                v["status"] == "creating" && Instant::now() < deadline,
                "volume {id} is not {want} after {limit:?}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ids of `GET <path>`'s `key` list.
    async fn ids(&self, path: &str, key: &str) -> Vec<String> {
        let (s, b) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        b[key]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no {key} in {b}"))
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(k: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// The keys of a volume in create and update answers (tempest's `create_volume`).
const VOLUME_KEYS: &[&str] = &[
    "attachments",
    "availability_zone",
    "bootable",
    "consistencygroup_id",
    "created_at",
    "description",
    "encrypted",
    "id",
    "links",
    "metadata",
    "multiattach",
    "name",
    "replication_status",
    "size",
    "snapshot_id",
    "source_volid",
    "status",
    "updated_at",
    "user_id",
    "volume_type",
];

/// The keys tempest's `show_volume` also allows.
const VOLUME_DETAIL_EXTRA: &[&str] = &[
    "os-vol-tenant-attr:tenant_id",
    "volume_image_metadata",
    "os-vol-host-attr:host",
    "os-vol-mig-status-attr:migstat",
    "os-vol-mig-status-attr:name_id",
    "migration_status",
    "group_id",
    "provider_id",
    "service_uuid",
    "shared_targets",
];

/// A volume of show or list detail: every required key, nothing tempest refuses.
fn check_detail(v: &Value) {
    let k = keys(v);
    for want in VOLUME_KEYS {
        assert!(k.iter().any(|x| x == want), "no {want} in {v}");
    }
    for have in &k {
        assert!(
            VOLUME_KEYS.contains(&have.as_str()) || VOLUME_DETAIL_EXTRA.contains(&have.as_str()),
            "{have} is not a key of a volume at 3.0: {v}"
        );
    }
    assert!(v["bootable"] == "true" || v["bootable"] == "false", "{v}");
}

const SNAPSHOT_KEYS: &[&str] = &[
    "created_at",
    "description",
    "id",
    "metadata",
    "name",
    "size",
    "status",
    "updated_at",
    "volume_id",
];

/// Whether this `stratus` has `volume export` (the NBD export the byte checks read by).
fn has_volume_export() -> bool {
    let o = stratus(&["volume", "--help"]);
    String::from_utf8_lossy(&o.stdout).contains("export")
}

/// Serves volume `id` read-only over NBD with `stratus volume export` and checks with
/// `qemu-img compare` that it holds exactly `file` (and zeros after it).
fn check_volume_bytes(c: &TestCluster, id: &str, file: &Path) {
    let mut child = Command::new(&*STRATUS)
        .args(["--dir", c.dir_str(), "volume", "export", "--read-only"])
        .args(["--listen", "127.0.0.1:0", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stratus volume export");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(WAIT).unwrap_or_default();
    let stop = |child: &mut std::process::Child| {
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    };
    let Some(url) = line.split_whitespace().find(|w| w.starts_with("nbd://")) else {
        stop(&mut child);
        panic!("stratus volume export {id} printed no nbd:// URL: {line:?}");
    };
    let mut cmd = Command::new("qemu-img");
    cmd.args(["compare", "-f", "raw", "-F", "raw"])
        .arg(file)
        .arg(url);
    let o = output_within(cmd, Duration::from_secs(240));
    stop(&mut child);
    assert!(
        o.status.success() && stdout(&o).contains("identical"),
        "volume {id} does not hold {}: {}{}",
        file.display(),
        stdout(&o),
        stderr(&o)
    );
}

/// Creates project `p98` with member `u98`; their openrc file.
fn other_project(c: &TestCluster, w: &Path) -> String {
    openstack_ok_in(c, w, ADMIN, &["project", "create", "p98"]);
    openstack_ok_in(
        c,
        w,
        ADMIN,
        &[
            "user",
            "create",
            "--project",
            "p98",
            "--password",
            "pw-u98",
            "u98",
        ],
    );
    openstack_ok_in(
        c,
        w,
        ADMIN,
        &["role", "add", "--project", "p98", "--user", "u98", "member"],
    );
    openrc_for(c, w, "u98", "pw-u98", "p98")
}

/// Lines of the proxy's log that say image `id` was imported.
fn imports_logged(c: &TestCluster, image: &str) -> usize {
    let log = std::fs::read_to_string(c.dir.join("proxy/log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("image imported into its volume") && l.contains(image))
        .count()
}

// ---------------------------------------------------------------------------------------
// The real `openstack` client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_the_openstack_client_creates_snapshots_clones_and_deletes_volumes() {
    let c = TestCluster::start(1, 1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let v1 = openstack_json_in(&c, w, DEMO, &["volume", "create", "--size", "1", "v1"]);
    assert_eq!(v1["name"], "v1", "{v1}");
    assert_eq!(v1["size"], 1, "{v1}");
    let v1_id = v1["id"].as_str().unwrap().to_string();
    let list = openstack_json_in(&c, w, DEMO, &["volume", "list"]);
    assert_eq!(names(&list), ["v1"], "volume list: {list}");
    assert_eq!(row(&list, "v1")["Status"], "available", "{list}");
    assert_eq!(row(&list, "v1")["Size"], 1, "{list}");
    for what in ["v1", v1_id.as_str()] {
        let v = openstack_json_in(&c, w, DEMO, &["volume", "show", what]);
        assert_eq!(v["id"], v1_id.as_str(), "volume show {what}: {v}");
        assert_eq!(v["status"], "available", "{v}");
        assert_eq!(v["size"], 1, "{v}");
        assert!(!bootable(&v), "a blank volume is not bootable: {v}");
        assert_eq!(v["availability_zone"], "nova", "{v}");
    }

    // Extend, and properties (the metadata calls).
    openstack_ok_in(&c, w, DEMO, &["volume", "set", "--size", "2", "v1"]);
    let v = openstack_json_in(&c, w, DEMO, &["volume", "show", "v1"]);
    assert_eq!(v["size"], 2, "volume set --size 2: {v}");
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &[
            "volume",
            "set",
            "--property",
            "k98=v98",
            "--property",
            "x=y",
            "v1",
        ],
    );
    openstack_ok_in(&c, w, DEMO, &["volume", "unset", "--property", "x", "v1"]);
    let v = openstack_json_in(&c, w, DEMO, &["volume", "show", "v1"]);
    assert_eq!(v["properties"], json!({"k98": "v98"}), "{v}");
    let by_prop = openstack_json_in(&c, w, DEMO, &["volume", "list", "--property", "k98=v98"]);
    assert_eq!(names(&by_prop), ["v1"], "--property k98=v98: {by_prop}");
    let by_name = openstack_json_in(&c, w, DEMO, &["volume", "list", "--name", "nope"]);
    assert!(names(&by_name).is_empty(), "--name nope: {by_name}");

    // A snapshot, and volumes of it and of v1.
    let s1 = openstack_json_in(
        &c,
        w,
        DEMO,
        &["volume", "snapshot", "create", "--volume", "v1", "s1"],
    );
    let s1_id = s1["id"].as_str().unwrap().to_string();
    let snaps = openstack_json_in(&c, w, DEMO, &["volume", "snapshot", "list"]);
    assert_eq!(names(&snaps), ["s1"], "snapshot list: {snaps}");
    assert_eq!(row(&snaps, "s1")["Status"], "available", "{snaps}");
    for what in ["s1", s1_id.as_str()] {
        let s = openstack_json_in(&c, w, DEMO, &["volume", "snapshot", "show", what]);
        assert_eq!(s["id"], s1_id.as_str(), "snapshot show {what}: {s}");
        assert_eq!(s["volume_id"], v1_id.as_str(), "{s}");
        assert_eq!(s["size"], 2, "{s}");
        assert_eq!(s["status"], "available", "{s}");
    }
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &["volume", "create", "--snapshot", "s1", "--size", "2", "v2"],
    );
    let v2 = openstack_json_in(&c, w, DEMO, &["volume", "show", "v2"]);
    assert_eq!(v2["status"], "available", "{v2}");
    assert_eq!(v2["snapshot_id"], s1_id.as_str(), "{v2}");
    assert_eq!(v2["size"], 2, "{v2}");
    openstack_ok_in(&c, w, DEMO, &["volume", "create", "--source", "v1", "v3"]);
    let v3 = openstack_json_in(&c, w, DEMO, &["volume", "show", "v3"]);
    assert_eq!(v3["status"], "available", "{v3}");
    assert_eq!(v3["source_volid"], v1_id.as_str(), "{v3}");
    assert_eq!(v3["size"], 2, "a clone is its source's size: {v3}");
    let list = openstack_json_in(&c, w, DEMO, &["volume", "list"]);
    assert_eq!(names(&list), ["v1", "v2", "v3"], "{list}");

    // Another project sees none of it.
    let u98 = other_project(&c, w);
    for what in ["v1", v1_id.as_str()] {
        let o = openstack_in(&c, w, &u98, &["volume", "show", what]);
        assert!(
            !o.status.success(),
            "u98 (project p98) sees demo's volume {what}: {}",
            stdout(&o)
        );
    }
    let theirs = openstack_json_in(&c, w, &u98, &["volume", "list"]);
    assert!(names(&theirs).is_empty(), "u98's volume list: {theirs}");

    // v1 cannot go while it has a snapshot.
    let o = openstack_in(&c, w, DEMO, &["volume", "delete", "v1"]);
    assert!(!o.status.success(), "v1 deleted with a snapshot");
    assert!(
        stderr(&o).contains("snapshot"),
        "the refusal does not say why: {}",
        stderr(&o)
    );
    let v = openstack_json_in(&c, w, DEMO, &["volume", "show", "v1"]);
    assert_eq!(v["status"], "available", "a refused delete changed v1: {v}");

    openstack_ok_in(&c, w, DEMO, &["volume", "snapshot", "delete", "s1"]);
    let snaps = openstack_json_in(&c, w, DEMO, &["volume", "snapshot", "list"]);
    assert!(names(&snaps).is_empty(), "{snaps}");
    for v in ["v3", "v2", "v1"] {
        openstack_ok_in(&c, w, DEMO, &["volume", "delete", v]);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let list = openstack_json_in(&c, w, DEMO, &["volume", "list"]);
        if names(&list).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deleted volumes still listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let o = openstack_in(&c, w, DEMO, &["volume", "show", &v1_id]);
    assert!(
        !o.status.success(),
        "deleted v1 still shows: {}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_volumes_from_images_hold_the_image_and_import_it_once() {
    let c = TestCluster::start(1, 1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cinder = Cinder::new(&c, DEMO).await;

    // A 12 MiB disk: data, a zero chunk, data then zeros up to a size that is no whole
    // number of chunks.
    let mut disk = urandom(4 * MIB);
    disk.extend(vec![0u8; 4 * MIB]);
    disk.extend(urandom(3 * MIB + 12345));
    disk.resize(12 * MIB - 3 * 512, 0);
    let raw = w.join("disk.raw");
    std::fs::write(&raw, &disk).unwrap();
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "disk.raw",
            "disk.qcow2",
        ],
        w,
    );
    for (file, fmt, name) in [
        ("disk.raw", "raw", "img-raw"),
        ("disk.qcow2", "qcow2", "img-qcow2"),
    ] {
        let img = openstack_json_in(
            &c,
            w,
            DEMO,
            &[
                "image",
                "create",
                "--file",
                file,
                "--disk-format",
                fmt,
                "--container-format",
                "bare",
                name,
            ],
        );
        assert_eq!(img["status"], "active", "image create {name}: {img}");
    }
    let image_id = |name: &str| {
        openstack_json_in(&c, w, DEMO, &["image", "show", name])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (raw_image, qcow2_image) = (image_id("img-raw"), image_id("img-qcow2"));

    // The first volume of each image: creating, then available; bootable.
    let mut first = Vec::new();
    for (img, name) in [("img-raw", "v-raw"), ("img-qcow2", "v-qcow2")] {
        let v = openstack_json_in(
            &c,
            w,
            DEMO,
            &["volume", "create", "--image", img, "--size", "1", name],
        );
        let id = v["id"].as_str().unwrap().to_string();
        let v = cinder.wait_status(&id, "available", WAIT).await;
        assert_eq!(v["bootable"], "true", "a volume from an image boots: {v}");
        first.push(id);
    }
    let v = openstack_json_in(&c, w, DEMO, &["volume", "show", "v-qcow2"]);
    assert!(bootable(&v), "{v}");
    assert_eq!(v["status"], "available", "{v}");
    assert_eq!(v["size"], 1, "{v}");
    assert_eq!(
        v["volume_image_metadata"]["image_id"],
        qcow2_image.as_str(),
        "{v}"
    );
    assert_eq!(imports_logged(&c, &raw_image), 1);
    assert_eq!(imports_logged(&c, &qcow2_image), 1);

    // Their bytes are the disk's.
    if has_volume_export() {
        for id in &first {
            check_volume_bytes(&c, id, &raw);
        }
    } else {
        eprintln!("this stratus has no `volume export`: the volumes' bytes are not checked");
    }

    // A second volume of an image is an instant clone: available in the 202 already.
    let v = openstack_json_in(
        &c,
        w,
        DEMO,
        &[
            "volume",
            "create",
            "--image",
            "img-qcow2",
            "--size",
            "2",
            "v-again",
        ],
    );
    assert_eq!(v["status"], "available", "a second volume of an image: {v}");
    assert_eq!(
        imports_logged(&c, &qcow2_image),
        1,
        "the image was imported again"
    );
    if has_volume_export() {
        check_volume_bytes(&c, v["id"].as_str().unwrap(), &raw);
    }

    // Concurrent creates from a new image import it once.
    let more = urandom(5 * MIB);
    std::fs::write(w.join("more.raw"), &more).unwrap();
    let img = openstack_json_in(
        &c,
        w,
        DEMO,
        &[
            "image",
            "create",
            "--file",
            "more.raw",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "img-more",
        ],
    );
    let more_image = img["id"].as_str().unwrap().to_string();
    let creates = (0..4).map(|i| {
        cinder.create(json!({"name": format!("c{i}"), "size": 1, "imageRef": more_image}))
    });
    let made: Vec<Value> = futures::future::join_all(creates).await;
    for v in &made {
        let id = v["id"].as_str().unwrap();
        cinder.wait_status(id, "available", WAIT).await;
    }
    assert_eq!(
        imports_logged(&c, &more_image),
        1,
        "4 concurrent creates did not import the image exactly once"
    );
    if has_volume_export() {
        std::fs::write(w.join("more.raw"), &more).unwrap();
        check_volume_bytes(&c, made[3]["id"].as_str().unwrap(), &w.join("more.raw"));
    }

    // The image volumes are the cluster's: never listed, 404 by id.
    let list = openstack_json_in(&c, w, DEMO, &["volume", "list"]);
    assert_eq!(
        names(&list),
        ["c0", "c1", "c2", "c3", "v-again", "v-qcow2", "v-raw"],
        "{list}"
    );
    let admin = Cinder::new(&c, ADMIN).await;
    for path in ["/volumes/detail?all_tenants=1", "/volumes?all_tenants=1"] {
        let ids = admin.ids(path, "volumes").await;
        assert!(
            ids.iter().all(|i| !i.starts_with("image-")),
            "an image volume is listed by {path}: {ids:?}"
        );
    }
    for image in [&raw_image, &qcow2_image] {
        let (s, b) = admin.get(&format!("/volumes/image-{image}")).await;
        assert_eq!(s, 404, "GET the image volume of {image}: {b}");
    }

    // Refused: a volume smaller than the image's disk, an image with no data yet, another
    // project's private image.
    run("qemu-img", &["create", "-f", "qcow2", "big.qcow2", "2G"], w);
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &[
            "image",
            "create",
            "--file",
            "big.qcow2",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "img-big",
        ],
    );
    let o = openstack_in(
        &c,
        w,
        DEMO,
        &[
            "volume", "create", "--image", "img-big", "--size", "1", "v-small",
        ],
    );
    assert!(!o.status.success(), "a 1 GiB volume of a 2 GiB image");
    assert!(
        stderr(&o).contains("larger than volume size"),
        "{}",
        stderr(&o)
    );
    // (Over HTTP: the client would upload its empty standard input.)
    let (s, queued) = answer(
        cinder
            .http
            .post(format!("{}/image/v2/images", c.proxy))
            .header("x-auth-token", &cinder.token)
            .json(&json!({"name": "img-queued", "disk_format": "raw", "container_format": "bare"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &queued["status"]), (201, &json!("queued")), "{queued}");
    let (s, b) = cinder
        .call(
            Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1, "imageRef": queued["id"]}})),
        )
        .await;
    assert_eq!(s, 400, "a volume of a queued image: {b}");
    assert_eq!(b["badRequest"]["code"], 400, "{b}");
    let u98 = other_project(&c, w);
    let theirs = Cinder::new(&c, &u98).await;
    openstack_ok_in(&c, w, DEMO, &["image", "set", "--private", "img-raw"]);
    let (s, b) = theirs
        .call(
            Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1, "imageRef": raw_image}})),
        )
        .await;
    assert_eq!(s, 404, "a volume of another project's private image: {b}");
    let (s, b) = cinder
        .call(
            Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1, "imageRef": "no-such-image"}})),
        )
        .await;
    assert_eq!(s, 404, "a volume of no image: {b}");

    // Volumes of an image go like any other.
    for name in ["c0", "c1", "c2", "c3", "v-again", "v-qcow2", "v-raw"] {
        openstack_ok_in(&c, w, DEMO, &["volume", "delete", name]);
    }
    let list = openstack_json_in(&c, w, DEMO, &["volume", "list"]);
    assert!(names(&list).is_empty(), "{list}");
}

// ---------------------------------------------------------------------------------------
// Raw HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_the_volume_api_over_http_answers_as_cinder_does() {
    let c = TestCluster::start(1, 1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let demo = Cinder::new(&c, DEMO).await;
    let admin = Cinder::new(&c, ADMIN).await;
    let http = reqwest::Client::new();

    // Discovery: 300 at /volume, 200 at /volume/v3/, both a list of the one version.
    for (path, want) in [("/volume", 300), ("/volume/", 300), ("/volume/v3/", 200)] {
        let (s, b) = answer(http.get(format!("{}{path}", c.proxy)).send().await.unwrap()).await;
        assert_eq!(s, want, "GET {path}: {b}");
        let v = &b["versions"][0];
        assert_eq!(
            keys(v),
            sorted(&[
                "id",
                "links",
                "media-types",
                "min_version",
                "status",
                "updated",
                "version"
            ]),
            "GET {path}: {b}"
        );
        assert_eq!(v["version"], "3.0", "{b}");
        assert_eq!(v["min_version"], "3.0", "{b}");
        assert_eq!(v["status"], "CURRENT", "{b}");
        let self_link = v["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "self")
            .unwrap_or_else(|| panic!("no self link: {b}"));
        assert_eq!(self_link["href"], format!("{}/volume/v3/", c.proxy), "{b}");
    }

    // The catalog names the API twice.
    let (_, body) = keystone_token(&c, DEMO).await;
    for ty in ["block-storage", "volumev3"] {
        let svc = body["token"]["catalog"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == ty)
            .unwrap_or_else(|| panic!("no {ty} in the catalog: {body}"));
        let public = svc["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["interface"] == "public")
            .unwrap();
        assert_eq!(public["url"], demo.base.as_str(), "{ty}: {svc}");
    }

    // Tokens and projects.
    let (s, _) = answer(
        http.get(format!("{}/volumes", demo.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "no token");
    let (s, b) = demo.on_project(&admin.project).get("/volumes").await;
    assert_eq!(s, 403, "demo's token on admin's project: {b}");
    let (s, b) = admin.on_project(&demo.project).get("/volumes").await;
    assert_eq!(s, 200, "admin on demo's project: {b}");

    // Microversions: 3.0 only, echoed; the request id on every answer.
    for (asked, want) in [
        (None, 200),
        (Some("volume 3.0"), 200),
        (Some("volume latest"), 200),
        (Some("volume 3.71"), 406),
        (Some("volume 2.0"), 406),
        (Some("volume x"), 400),
    ] {
        let mut r = demo.req(Method::GET, "/volumes");
        if let Some(a) = asked {
            r = r.header("openstack-api-version", a);
        }
        let a = demo.send(r).await;
        assert_eq!(
            a.status, want,
            "OpenStack-API-Version {asked:?}: {}",
            a.body
        );
        if want == 200 {
            assert_eq!(a.headers["openstack-api-version"], "volume 3.0");
        }
        assert!(
            a.headers.contains_key("x-openstack-request-id"),
            "no request id: {:?}",
            a.headers
        );
    }

    // Sizes and the other refusals of create.
    for size in [json!(0), json!(-1), json!("x"), json!(1.5), json!(null)] {
        let (s, b) = demo
            .call(
                Method::POST,
                "/volumes",
                Some(json!({"volume": {"size": size}})),
            )
            .await;
        assert_eq!(s, 400, "size {size}: {b}");
        assert_eq!(b["badRequest"]["code"], 400, "{b}");
    }
    let (s, b) = demo
        .call(
            Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1_000_000}})),
        )
        .await;
    assert_eq!(s, 413, "a volume over the per-volume limit: {b}");
    assert_eq!(b["overLimit"]["code"], 413, "{b}");
    for (extra, want) in [
        (json!({"availability_zone": "elsewhere"}), 400),
        (json!({"volume_type": "gold"}), 404),
        (json!({"snapshot_id": "no-such-snapshot"}), 404),
        (json!({"source_volid": "no-such-volume"}), 404),
    ] {
        let mut body = json!({"size": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, b) = demo
            .call(Method::POST, "/volumes", Some(json!({ "volume": body })))
            .await;
        assert_eq!(s, want, "create with {extra}: {b}");
    }
    let (s, b) = demo
        .call(Method::POST, "/volumes", Some(json!({"size": 1})))
        .await;
    assert_eq!(s, 400, "no 'volume' element: {b}");

    // Create: the 3.0 create body, every null key tolerated (what the client sends).
    let v = demo
        .create(json!({
            "name": "h1", "size": 1, "description": null, "volume_type": null,
            "availability_zone": null, "imageRef": null, "snapshot_id": null,
            "source_volid": null, "backup_id": null, "consistencygroup_id": null,
            "metadata": {"a": "1"},
        }))
        .await;
    assert_eq!(keys(&v), sorted(VOLUME_KEYS), "create answer: {v}");
    assert_eq!(v["size"], 1);
    assert_eq!(v["metadata"], json!({"a": "1"}));
    assert_eq!(v["volume_type"], "__DEFAULT__");
    let h1 = v["id"].as_str().unwrap().to_string();
    let shown = demo.show(&h1).await;
    check_detail(&shown);
    assert_eq!(shown["os-vol-tenant-attr:tenant_id"], demo.project.as_str());
    assert_eq!(
        shown["links"][0]["href"],
        format!("{}/volumes/{h1}", demo.base),
        "{shown}"
    );

    // Unknown ids are 404 with Cinder's body; so is another project's volume.
    let (s, b) = demo.get("/volumes/no-such-volume").await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!({"itemNotFound": {"code": 404, "message": "Volume no-such-volume could not be found."}})
    );
    let (s, b) = demo.get("/snapshots/no-such-snapshot").await;
    assert_eq!((s, &b["itemNotFound"]["code"]), (404, &json!(404)), "{b}");
    let u98 = other_project(&c, w);
    let theirs = Cinder::new(&c, &u98).await;
    for (m, path) in [
        (Method::GET, format!("/volumes/{h1}")),
        (Method::DELETE, format!("/volumes/{h1}")),
        (Method::GET, format!("/volumes/{h1}/metadata")),
    ] {
        let (s, b) = theirs.call(m.clone(), &path, None).await;
        assert_eq!(s, 404, "u98 {m} {path}: {b}");
    }
    let (s, b) = theirs
        .action(&h1, json!({"os-extend": {"new_size": 2}}))
        .await;
    assert_eq!(s, 404, "u98 extends demo's volume: {b}");
    assert!(theirs.ids("/volumes/detail", "volumes").await.is_empty());
    // Admin sees it by id.
    assert_eq!(admin.show(&h1).await["id"], h1.as_str());

    // Update and metadata.
    let (s, b) = demo
        .call(
            Method::PUT,
            &format!("/volumes/{h1}"),
            Some(json!({"volume": {"name": "h1b", "description": "d"}})),
        )
        .await;
    assert_eq!(s, 200, "PUT volume: {b}");
    assert_eq!(keys(&b["volume"]), sorted(VOLUME_KEYS), "{b}");
    assert_eq!(
        (&b["volume"]["name"], &b["volume"]["description"]),
        (&json!("h1b"), &json!("d"))
    );
    let meta = format!("/volumes/{h1}/metadata");
    let (s, b) = demo
        .call(Method::POST, &meta, Some(json!({"metadata": {"b": "2"}})))
        .await;
    assert_eq!(
        (s, &b),
        (200, &json!({"metadata": {"a": "1", "b": "2"}})),
        "POST metadata"
    );
    let (s, b) = demo
        .call(
            Method::PUT,
            &format!("{meta}/c"),
            Some(json!({"meta": {"c": "3"}})),
        )
        .await;
    assert_eq!(
        (s, &b),
        (200, &json!({"meta": {"c": "3"}})),
        "PUT metadata item"
    );
    let (s, b) = demo
        .call(
            Method::PUT,
            &format!("{meta}/c"),
            Some(json!({"meta": {"d": "3"}})),
        )
        .await;
    assert_eq!(s, 400, "PUT metadata item with another key: {b}");
    let (s, b) = demo.get(&format!("{meta}/b")).await;
    assert_eq!((s, &b), (200, &json!({"meta": {"b": "2"}})));
    let (s, _) = demo.call(Method::DELETE, &format!("{meta}/b"), None).await;
    assert_eq!(s, 200, "DELETE metadata item");
    let (s, b) = demo.get(&format!("{meta}/b")).await;
    assert_eq!(s, 404, "a deleted metadata item: {b}");
    let (s, b) = demo
        .call(Method::PUT, &meta, Some(json!({"metadata": {"z": "26"}})))
        .await;
    assert_eq!(
        (s, &b),
        (200, &json!({"metadata": {"z": "26"}})),
        "PUT metadata"
    );
    let (s, b) = demo
        .call(Method::POST, &meta, Some(json!({"metadata": {"n": 1}})))
        .await;
    assert_eq!(s, 400, "a metadata value that is no string: {b}");

    // The legacy attach steps.
    let act = |body: Value| demo.action(&h1, body);
    let (s, b) = act(json!({"os-reserve": null})).await;
    assert_eq!(s, 202, "os-reserve: {b}");
    assert_eq!(demo.show(&h1).await["status"], "attaching");
    let (s, _) = act(json!({"os-unreserve": null})).await;
    assert_eq!(s, 202);
    assert_eq!(demo.show(&h1).await["status"], "available");
    let (s, b) = act(json!({"os-initialize_connection": {"connector": {"host": "h"}}})).await;
    assert_eq!(s, 200, "os-initialize_connection: {b}");
    let info = &b["connection_info"];
    assert_eq!(info["driver_volume_type"], "nbd", "{b}");
    assert_eq!(info["data"]["export"], h1.as_str(), "{b}");
    assert_eq!(info["data"]["volume_id"], h1.as_str(), "{b}");
    let (s, b) = act(json!({"os-initialize_connection": {}})).await;
    assert_eq!(s, 400, "os-initialize_connection without a connector: {b}");
    let server = "5b2a0e1c-8d8e-4a55-a2a3-8d0f3c3c9e01";
    let (s, b) = act(json!({"os-attach": {"mountpoint": "/dev/vdb"}})).await;
    assert_eq!(s, 400, "os-attach to nothing: {b}");
    let (s, b) =
        act(json!({"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}})).await;
    assert_eq!(s, 202, "os-attach: {b}");
    let v = demo.show(&h1).await;
    check_detail(&v);
    assert_eq!(v["status"], "in-use", "{v}");
    let a = &v["attachments"][0];
    assert_eq!(
        keys(a),
        sorted(&[
            "attached_at",
            "attachment_id",
            "device",
            "host_name",
            "id",
            "server_id",
            "volume_id"
        ]),
        "{v}"
    );
    assert_eq!(
        (&a["server_id"], &a["device"]),
        (&json!(server), &json!("/dev/vdb"))
    );
    assert_eq!(a["volume_id"], h1.as_str());
    let (s, b) =
        act(json!({"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdc"}})).await;
    assert_eq!(s, 400, "a second os-attach: {b}");
    let (s, b) = act(json!({"os-extend": {"new_size": 2}})).await;
    assert_eq!(s, 400, "os-extend while attached: {b}");
    assert_eq!(b["badRequest"]["code"], 400, "{b}");
    let (s, b) = demo
        .call(Method::DELETE, &format!("/volumes/{h1}"), None)
        .await;
    assert_eq!(s, 400, "delete while attached: {b}");
    let (s, b) = act(json!({"os-begin_detaching": null})).await;
    assert_eq!(s, 202, "os-begin_detaching: {b}");
    assert_eq!(demo.show(&h1).await["status"], "detaching");
    let (s, _) = act(json!({"os-roll_detaching": null})).await;
    assert_eq!(s, 202);
    assert_eq!(demo.show(&h1).await["status"], "in-use");
    let (s, b) = act(json!({"os-detach": {"attachment_id": a["attachment_id"]}})).await;
    assert_eq!(s, 202, "os-detach: {b}");
    let v = demo.show(&h1).await;
    assert_eq!(
        (&v["status"], &v["attachments"]),
        (&json!("available"), &json!([])),
        "{v}"
    );
    let (s, b) = act(json!({"os-detach": {}})).await;
    assert_eq!(s, 400, "os-detach of a detached volume: {b}");
    let (s, b) = act(json!({"os-terminate_connection": {"connector": {"host": "h"}}})).await;
    assert_eq!(s, 202, "os-terminate_connection: {b}");

    // Extend, flags, unknown actions.
    for (size, want) in [
        (json!(1), 400),
        (json!("x"), 400),
        (json!(1_000_000), 413),
        (json!(3), 202),
    ] {
        let (s, b) = act(json!({"os-extend": {"new_size": size}})).await;
        assert_eq!(s, want, "os-extend to {size}: {b}");
    }
    assert_eq!(demo.show(&h1).await["size"], 3);
    let (s, b) = act(json!({"os-set_bootable": {"bootable": true}})).await;
    assert_eq!(s, 200, "os-set_bootable: {b}");
    assert_eq!(demo.show(&h1).await["bootable"], "true");
    let (s, b) = act(json!({"os-update_readonly_flag": {"readonly": true}})).await;
    assert_eq!(s, 202, "os-update_readonly_flag: {b}");
    let (_, b) = act(json!({"os-initialize_connection": {"connector": {}}})).await;
    assert_eq!(b["connection_info"]["data"]["access_mode"], "ro", "{b}");
    let (s, b) = act(json!({"os-update_readonly_flag": {"readonly": false}})).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = act(json!({"os-frobnicate": {}})).await;
    assert_eq!(s, 400, "an unknown action: {b}");
    let (s, b) = act(json!({"os-reset_status": {"status": "error"}})).await;
    assert_eq!(s, 403, "demo resets a status: {b}");

    // Snapshots: bodies at 3.0, lists, update.
    let (s, b) = demo
        .call(
            Method::POST,
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": h1, "name": "hs1", "description": null, "metadata": null}})),
        )
        .await;
    assert_eq!(s, 202, "POST /snapshots: {b}");
    assert_eq!(keys(&b["snapshot"]), sorted(SNAPSHOT_KEYS), "{b}");
    let hs1 = b["snapshot"]["id"].as_str().unwrap().to_string();
    let (s, b) = demo.get(&format!("/snapshots/{hs1}")).await;
    assert_eq!(s, 200, "{b}");
    let mut detail = SNAPSHOT_KEYS.to_vec();
    detail.extend([
        "os-extended-snapshot-attributes:progress",
        "os-extended-snapshot-attributes:project_id",
    ]);
    assert_eq!(keys(&b["snapshot"]), sorted(&detail), "{b}");
    assert_eq!(b["snapshot"]["size"], 3, "{b}");
    let (_, b) = demo.get("/snapshots").await;
    assert_eq!(keys(&b["snapshots"][0]), sorted(SNAPSHOT_KEYS), "{b}");
    let (_, b) = demo.get("/snapshots/detail").await;
    assert_eq!(keys(&b["snapshots"][0]), sorted(&detail), "{b}");
    let (s, b) = demo
        .call(
            Method::PUT,
            &format!("/snapshots/{hs1}"),
            Some(json!({"snapshot": {"name": "hs1b"}})),
        )
        .await;
    assert_eq!((s, &b["snapshot"]["name"]), (200, &json!("hs1b")), "{b}");
    let (s, b) = demo
        .call(
            Method::POST,
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": "nope"}})),
        )
        .await;
    assert_eq!(s, 404, "a snapshot of no volume: {b}");
    assert!(theirs.ids("/snapshots", "snapshots").await.is_empty());
    let (s, b) = demo
        .call(
            Method::POST,
            "/snapshots",
            Some(json!({"snapshot": {"volume_id": h1, "name": "hs2"}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let hs2 = b["snapshot"]["id"].as_str().unwrap().to_string();
    let by_volume = demo
        .ids(&format!("/snapshots/detail?volume_id={h1}"), "snapshots")
        .await;
    assert_eq!(by_volume, [hs2.as_str(), hs1.as_str()], "newest first");
    assert_eq!(
        demo.ids("/snapshots?name=hs1b", "snapshots").await,
        [hs1.as_str()]
    );

    // A volume with snapshots goes only with cascade=true, and takes them along.
    let (s, b) = demo
        .call(
            Method::DELETE,
            &format!("/volumes/{h1}?cascade=False&force=False"),
            None,
        )
        .await;
    assert_eq!(s, 400, "delete with snapshots: {b}");
    let (s, b) = demo
        .call(Method::DELETE, &format!("/volumes/{h1}?cascade=true"), None)
        .await;
    assert_eq!(s, 202, "delete with cascade=true: {b}");
    for path in [
        format!("/volumes/{h1}"),
        format!("/snapshots/{hs1}"),
        format!("/snapshots/{hs2}"),
    ] {
        let (s, b) = demo.get(&path).await;
        assert_eq!(s, 404, "GET {path} after a cascading delete: {b}");
    }

    // Paging and filters: newest first, `volumes_links` to the next page.
    let mut made = Vec::new();
    for i in 0..3 {
        let v = demo
            .create(json!({"name": format!("p{i}"), "size": 1}))
            .await;
        made.push(v["id"].as_str().unwrap().to_string());
        // Distinct creation times.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    let (s, b) = demo.get("/volumes?limit=2").await;
    assert_eq!(s, 200, "{b}");
    let page: Vec<&str> = b["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(
                keys(v),
                sorted(&["id", "links", "name"]),
                "brief list entry {v}"
            );
            v["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(page, newest_first[..2], "{b}");
    let next = b["volumes_links"][0]["href"]
        .as_str()
        .unwrap_or_else(|| panic!("no next link: {b}"));
    assert_eq!(b["volumes_links"][0]["rel"], "next");
    let path = next
        .strip_prefix(&demo.base)
        .unwrap_or_else(|| panic!("next link {next} not under {}", demo.base));
    let (_, b) = demo.get(path).await;
    let rest: Vec<&str> = b["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, newest_first[2..], "the next page: {b}");
    assert!(
        b.get("volumes_links").is_none(),
        "a next link after the last page: {b}"
    );
    let (_, b) = demo.get("/volumes/detail?sort=name:asc").await;
    for v in b["volumes"].as_array().unwrap() {
        check_detail(v);
    }
    let names: Vec<&str> = b["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2"], "sort=name:asc: {b}");
    assert_eq!(
        demo.ids("/volumes/detail?name=p1", "volumes").await,
        [made[1].as_str()]
    );
    assert!(demo
        .ids("/volumes/detail?status=error", "volumes")
        .await
        .is_empty());
    assert_eq!(
        demo.ids("/volumes?offset=1&limit=1", "volumes").await,
        [newest_first[1].as_str()]
    );
    let (s, b) = demo.get("/volumes?marker=no-such-volume").await;
    assert_eq!(s, 404, "an unknown marker: {b}");
    let (s, b) = demo.get("/volumes?sort_key=evil").await;
    assert_eq!(s, 400, "an unknown sort key: {b}");
    for id in &made {
        let (s, b) = demo
            .call(Method::DELETE, &format!("/volumes/{id}"), None)
            .await;
        assert_eq!(s, 202, "{b}");
    }
    assert!(demo.ids("/volumes", "volumes").await.is_empty());

    // A reader reads and changes nothing.
    openstack_ok_in(
        &c,
        w,
        ADMIN,
        &[
            "user",
            "create",
            "--project",
            "p98",
            "--password",
            "pw-r98",
            "r98",
        ],
    );
    openstack_ok_in(
        &c,
        w,
        ADMIN,
        &["role", "add", "--project", "p98", "--user", "r98", "reader"],
    );
    let reader = Cinder::new(&c, &openrc_for(&c, w, "r98", "pw-r98", "p98")).await;
    let (s, b) = reader.get("/volumes/detail").await;
    assert_eq!(s, 200, "a reader lists: {b}");
    let (s, b) = reader
        .call(
            Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    assert_eq!(s, 403, "a reader creates: {b}");
    assert_eq!(b["forbidden"]["code"], 403, "{b}");
}
