//! Glance v2 images in the proxy (`<proxy>/image`).
//!
//! The real `openstack` client (python-openstackclient 10.5.0) as demo uploads a raw and a
//! qcow2 image, lists them with filters, shows their checksums and sizes (MD5 and SHA-512
//! of the file, the qcow2's virtual size), sets properties and tags, saves the bytes back
//! and deletes; another project's member cannot see demo's private image, admin can.
//! Over raw HTTP with a Keystone token: an upload cut off mid-stream leaves the image
//! queued with nothing readable, a second upload is 409, dangerous or mislabelled disk
//! images are refused with 400, protected images are not deleted, JSON-patch is checked,
//! read-only and admin-only properties are refused, version discovery, ranges and paging.
//! Durability: a 200 MiB upload survives a storage node killed mid-stream, and the auditor
//! and replicator repair a rotten copy of the image's bytes. Every wait is bounded.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

const ADMIN: &str = "openrc";
const DEMO: &str = "openrc-demo";
const MIB: usize = 1 << 20;
/// Glance's JSON-patch media type.
const PATCH_TYPE: &str = "application/openstack-images-v2.1-json-patch";
/// Far above what healing needs here (seconds, on a debug build with 2 shared cores).
const HEAL: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------
// Helpers

/// Runs a tool that must succeed.
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

/// `sha512sum` / `md5sum` of a file: the hex digest.
fn digest(tool: &str, file: &Path) -> String {
    let out = run(tool, &[file.to_str().unwrap()], Path::new("/"));
    let hex = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{tool}: {out}"
    );
    hex
}

/// `n` random bytes from the kernel (fast even in a debug build).
fn urandom(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

/// `(Name, Status)` rows of an `openstack image list -f json` answer.
fn names_and_status(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("image list is not a list: {list}"))
        .iter()
        .map(|row| {
            (
                row["Name"].as_str().unwrap_or_default().to_string(),
                row["Status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = names_and_status(list).into_iter().map(|r| r.0).collect();
    n.sort();
    n
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("image list is not a list: {list}"))
        .iter()
        .map(|row| row["ID"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A field of `openstack image show -f json`: top level, or among `properties` (where
/// the client puts what it has no column for).
fn shown<'a>(img: &'a Value, key: &str) -> &'a Value {
    match &img[key] {
        Value::Null => &img["properties"][key],
        v => v,
    }
}

/// A project-scoped Keystone token for the user of openrc file `rc` (raw HTTP).
async fn keystone_token(c: &TestCluster, rc: &str) -> String {
    let path = c.dir.join(rc);
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
    tok.expect("X-Subject-Token")
}

/// Raw Glance v2 at `<proxy>/image` with a token.
struct Glance {
    http: reqwest::Client,
    /// `http://H/image`
    base: String,
    token: String,
}

impl Glance {
    async fn new(c: &TestCluster, rc: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/image", c.proxy),
            token: keystone_token(c, rc).await,
        }
    }

    /// A request to `<proxy>/image<path>` with the token.
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.base))
            .header("x-auth-token", &self.token)
    }

    async fn call(&self, m: Method, path: &str) -> (u16, Value) {
        answer(self.req(m, path).send().await.unwrap()).await
    }

    /// `POST /v2/images` with `props`.
    async fn post(&self, props: &Value) -> (u16, Value) {
        answer(
            self.req(Method::POST, "/v2/images")
                .json(props)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// [`Glance::post`], which must give 201: the image.
    async fn create(&self, props: Value) -> Value {
        let (s, img) = self.post(&props).await;
        assert_eq!(s, 201, "POST /image/v2/images {props}: {img}");
        assert_eq!(img["status"], "queued", "{img}");
        img
    }

    /// A new queued image of `disk_format`: its id.
    async fn create_id(&self, name: &str, disk_format: &str) -> String {
        let img = self
            .create(json!({"name": name, "disk_format": disk_format, "container_format": "bare"}))
            .await;
        img["id"].as_str().unwrap().to_string()
    }

    async fn show(&self, id: &str) -> Value {
        let (s, img) = self.call(Method::GET, &format!("/v2/images/{id}")).await;
        assert_eq!(s, 200, "GET /image/v2/images/{id}: {img}");
        img
    }

    /// `PUT /v2/images/{id}/file` with `body` (with its Content-Length).
    async fn upload(&self, id: &str, body: Vec<u8>) -> (u16, Value) {
        answer(
            self.req(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn patch(&self, id: &str, ops: &str) -> (u16, Value) {
        answer(
            self.req(Method::PATCH, &format!("/v2/images/{id}"))
                .header("content-type", PATCH_TYPE)
                .body(ops.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `GET /v2/images/{id}/file`: status, headers, bytes.
    async fn download(
        &self,
        id: &str,
        range: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut r = self.req(Method::GET, &format!("/v2/images/{id}/file"));
        if let Some(range) = range {
            r = r.header("range", range);
        }
        let r = r.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.bytes().await.unwrap().to_vec())
    }

    /// Waits (bounded) until image `id` leaves `saving`; its status then.
    async fn settled_status(&self, id: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let img = self.show(id).await;
            let st = img["status"].as_str().unwrap().to_string();
            if st != "saving" {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "image {id} still saving after {WAIT:?}: {img}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Body files (`*.data`) of exactly `len` bytes under the cluster: `(live, quarantined)`.
fn body_files(c: &TestCluster, len: u64) -> (Vec<PathBuf>, Vec<PathBuf>) {
    files_under(&c.dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == len))
        .partition(|p| !p.to_string_lossy().contains("quarantined"))
}

/// Waits (bounded) until no storage node has received a body into `<device>/tmp/` for 3 s
/// (replication pushes still under way would replace a copy in place).
async fn wait_no_transfers(c: &TestCluster) {
    let deadline = Instant::now() + HEAL;
    let mut quiet_since = Instant::now();
    loop {
        let busy: Vec<PathBuf> = std::fs::read_dir(&c.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("storage-"))
            .flat_map(|e| files_under(&e.path()))
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("tmp")))
            .collect();
        if !busy.is_empty() {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bodies still being received after {HEAL:?}: {busy:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The auditor's status on every node (for failure messages).
fn auditors(c: &TestCluster) -> String {
    let v = json(&ok(&["worker", "list", "--json", "--dir", c.dir_str()]));
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let a = n["workers"]
                .as_array()
                .and_then(|ws| ws.iter().find(|w| w["name"] == "auditor"))
                .cloned()
                .unwrap_or_default();
            format!("{} {a}", n["node"])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn byte_at(p: &Path, at: u64) -> u8 {
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    b[0]
}

// ---------------------------------------------------------------------------------------
// The real `openstack` client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_openstack_client_uploads_lists_saves_and_deletes_images() {
    let c = TestCluster::start(1, 1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let raw = w.join("img.raw");
    std::fs::write(&raw, urandom(50 * MIB)).unwrap();
    run(
        "/usr/bin/qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "img.raw",
            "img.qcow2",
        ],
        w,
    );
    let qcow2 = w.join("img.qcow2");
    let qcow2_len = std::fs::metadata(&qcow2).unwrap().len();

    // Upload both as demo.
    for (file, fmt, name) in [
        ("img.raw", "raw", "img-raw"),
        ("img.qcow2", "qcow2", "img-qcow2"),
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
        assert_eq!(img["name"], name, "image create {name}: {img}");
    }
    let list = openstack_json_in(&c, w, DEMO, &["image", "list"]);
    let rows = names_and_status(&list);
    for name in ["img-raw", "img-qcow2"] {
        assert!(
            rows.iter().any(|(n, s)| n == name && s == "active"),
            "{name} is not listed active: {list}"
        );
    }

    // Show: sizes and checksums are those of the files.
    let img = openstack_json_in(&c, w, DEMO, &["image", "show", "img-raw"]);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], (50 * MIB) as u64, "size: {img}");
    assert_eq!(img["disk_format"], "raw", "{img}");
    assert_eq!(img["container_format"], "bare", "{img}");
    assert_eq!(
        img["checksum"].as_str(),
        Some(digest("md5sum", &raw).as_str()),
        "checksum is the MD5 of the file: {img}"
    );
    assert_eq!(shown(&img, "os_hash_algo"), "sha512", "{img}");
    assert_eq!(
        shown(&img, "os_hash_value").as_str(),
        Some(digest("sha512sum", &raw).as_str()),
        "os_hash_value is the SHA-512 of the file: {img}"
    );
    let raw_id = img["id"].as_str().unwrap().to_string();
    let demo_pid = img["owner"].as_str().unwrap().to_string();
    let img = openstack_json_in(&c, w, DEMO, &["image", "show", "img-qcow2"]);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2", "{img}");
    assert_eq!(img["size"], qcow2_len, "size is the qcow2 file's: {img}");
    assert_eq!(
        img["virtual_size"],
        (50 * MIB) as u64,
        "virtual_size is the disk the qcow2 holds: {img}"
    );
    assert_eq!(
        img["checksum"].as_str(),
        Some(digest("md5sum", &qcow2).as_str()),
        "{img}"
    );
    assert_eq!(
        shown(&img, "os_hash_value").as_str(),
        Some(digest("sha512sum", &qcow2).as_str()),
        "{img}"
    );

    // Properties and tags, and the filters that use them.
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &[
            "image",
            "set",
            "--property",
            "k96=v96",
            "--tag",
            "t96",
            "img-raw",
        ],
    );
    let img = openstack_json_in(&c, w, DEMO, &["image", "show", "img-raw"]);
    assert_eq!(shown(&img, "k96"), "v96", "image set --property: {img}");
    assert!(
        img["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "t96")),
        "image set --tag: {img}"
    );
    let by_prop = openstack_json_in(&c, w, DEMO, &["image", "list", "--property", "k96=v96"]);
    assert_eq!(
        names(&by_prop),
        ["img-raw"],
        "--property k96=v96: {by_prop}"
    );
    let by_tag = openstack_json_in(&c, w, DEMO, &["image", "list", "--tag", "t96"]);
    assert_eq!(names(&by_tag), ["img-raw"], "--tag t96: {by_tag}");
    let by_name = openstack_json_in(&c, w, DEMO, &["image", "list", "--name", "img-qcow2"]);
    assert_eq!(
        names(&by_name),
        ["img-qcow2"],
        "--name img-qcow2: {by_name}"
    );

    // Save: the same bytes (the client also checks them against os_hash_value).
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &["image", "save", "--file", "out.raw", "img-raw"],
    );
    assert!(
        std::fs::read(w.join("out.raw")).unwrap() == std::fs::read(&raw).unwrap(),
        "image save returned other bytes"
    );

    // Another project's member does not see demo's private image; admin does.
    openstack_ok_in(&c, w, ADMIN, &["project", "create", "p96"]);
    openstack_ok_in(
        &c,
        w,
        ADMIN,
        &[
            "user",
            "create",
            "--project",
            "p96",
            "--password",
            "pw-u96",
            "u96",
        ],
    );
    openstack_ok_in(
        &c,
        w,
        ADMIN,
        &["role", "add", "--project", "p96", "--user", "u96", "member"],
    );
    let u96 = openrc_for(&c, w, "u96", "pw-u96", "p96");
    std::fs::write(w.join("small.bin"), urandom(100_000)).unwrap();
    let img = openstack_json_in(
        &c,
        w,
        DEMO,
        &[
            "image",
            "create",
            "--private",
            "--file",
            "small.bin",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "img-priv",
        ],
    );
    let priv_id = img["id"].as_str().unwrap().to_string();
    let img = openstack_json_in(&c, w, DEMO, &["image", "show", &priv_id]);
    assert_eq!(img["visibility"], "private", "{img}");
    assert_eq!(img["status"], "active", "{img}");
    for what in ["img-priv", priv_id.as_str()] {
        let o = openstack_in(&c, w, &u96, &["image", "show", what]);
        assert!(
            !o.status.success(),
            "u96 (project p96) sees demo's private image {what}: {}",
            stdout(&o)
        );
    }
    let list = openstack_json_in(&c, w, &u96, &["image", "list"]);
    assert!(
        !ids(&list).contains(&priv_id),
        "u96's image list shows demo's private image: {list}"
    );
    let o = openstack_in(&c, w, &u96, &["image", "delete", &priv_id]);
    assert!(
        !o.status.success(),
        "u96 deleted demo's private image: {}",
        stdout(&o)
    );
    let img = openstack_json_in(&c, w, ADMIN, &["image", "show", &priv_id]);
    assert_eq!(img["name"], "img-priv", "admin sees every image: {img}");
    assert_eq!(img["owner"].as_str(), Some(demo_pid.as_str()), "{img}");
    let list = openstack_json_in(&c, w, ADMIN, &["image", "list"]);
    assert!(ids(&list).contains(&priv_id), "admin's image list: {list}");

    // Delete.
    assert!(
        !body_files(&c, (50 * MIB) as u64).0.is_empty(),
        "img-raw's bytes are not a body file of 50 MiB on the storage node"
    );
    openstack_ok_in(
        &c,
        w,
        DEMO,
        &["image", "delete", "img-raw", "img-qcow2", "img-priv"],
    );
    let list = openstack_json_in(&c, w, DEMO, &["image", "list"]);
    assert!(
        names(&list).is_empty(),
        "deleted images still listed: {list}"
    );
    let o = openstack_in(&c, w, DEMO, &["image", "show", &raw_id]);
    assert!(
        !o.status.success(),
        "deleted img-raw still shows: {}",
        stdout(&o)
    );
    // Their bytes are gone from the storage node too.
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<PathBuf> = [(50 * MIB) as u64, qcow2_len]
            .into_iter()
            .flat_map(|len| body_files(&c, len).0)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bytes of deleted images still stored: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_api_over_http_refuses_what_glance_refuses() {
    let c = TestCluster::start(1, 1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let g = Glance::new(&c, DEMO).await;
    let admin = Glance::new(&c, ADMIN).await;

    // Discovery: 300 with the versions, no token needed.
    let (s, v) = answer(g.http.get(&g.base).send().await.unwrap()).await;
    assert_eq!(s, 300, "GET /image: {v}");
    let versions = v["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /image: no versions list in {v}"));
    assert!(!versions.is_empty());
    for ver in versions {
        assert!(
            ver["id"].as_str().is_some_and(|i| i.starts_with("v2.")),
            "{ver}"
        );
        assert!(ver["status"].is_string(), "{ver}");
        assert!(ver["links"][0]["href"].is_string(), "{ver}");
    }
    let s = g
        .http
        .get(format!("{}/v2/images", g.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401, "GET /image/v2/images without a token");

    // An upload cut off mid-stream: 10 MiB declared, 1 MiB sent, connection closed.
    let id = g.create_id("cut", "raw").await;
    let addr = c.proxy.trim_start_matches("http://").to_string();
    let head = format!(
        "PUT /image/v2/images/{id}/file HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        g.token,
        10 * MIB
    );
    let partial = urandom(MIB);
    tokio::task::block_in_place(|| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&partial).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.shutdown(std::net::Shutdown::Both).unwrap();
    });
    let st = g.settled_status(&id).await;
    assert_eq!(st, "queued", "image {id} after a cut-off upload");
    let img = g.show(&id).await;
    assert!(
        img["size"].is_null() && img["checksum"].is_null(),
        "a cut-off upload left a size or checksum: {img}"
    );
    let (s, _, bytes) = g.download(&id, None).await;
    assert_eq!(s, 204, "GET file of a queued image");
    assert!(
        bytes.is_empty(),
        "a cut-off upload left {} readable bytes",
        bytes.len()
    );

    // The same image then takes a whole upload; a second one is 409.
    let data = urandom(3 * MIB + 17);
    let (s, b) = g.upload(&id, data.clone()).await;
    assert_eq!(s, 204, "upload after a cut-off one: {b}");
    let img = g.show(&id).await;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], data.len() as u64, "{img}");
    assert_eq!(
        img["checksum"].as_str(),
        Some(md5_hex(&data).as_str()),
        "{img}"
    );
    let (s, b) = g.upload(&id, urandom(1000)).await;
    assert_eq!(s, 409, "second upload to an active image: {b}");
    let (s, h, bytes) = g.download(&id, None).await;
    assert_eq!(s, 200);
    assert!(bytes == data, "the second upload changed the bytes");
    assert_eq!(
        h.get("content-md5").and_then(|v| v.to_str().ok()),
        Some(md5_hex(&data).as_str()),
        "Content-MD5"
    );
    // Ranges.
    let (s, _, bytes) = g.download(&id, Some("bytes=1048570-2097160")).await;
    assert_eq!(s, 206, "Range GET of the image file");
    assert!(
        bytes[..] == data[1_048_570..2_097_161],
        "Range GET returned other bytes ({} bytes)",
        bytes.len()
    );
    let (s, _, bytes) = g.download(&id, Some("bytes=-10")).await;
    assert_eq!(s, 206);
    assert!(bytes[..] == data[data.len() - 10..], "suffix range");

    // Tags by URL.
    let (s, b) = g
        .call(Method::PUT, &format!("/v2/images/{id}/tags/blue"))
        .await;
    assert_eq!(s, 204, "PUT tag: {b}");
    assert_eq!(g.show(&id).await["tags"], json!(["blue"]));
    let (s, b) = g
        .call(Method::DELETE, &format!("/v2/images/{id}/tags/blue"))
        .await;
    assert_eq!(s, 204, "DELETE tag: {b}");
    assert_eq!(g.show(&id).await["tags"], json!([]));

    // Deactivation is admin's; a deactivated image's bytes are admin's only.
    let action = |a: &str| format!("/v2/images/{id}/actions/{a}");
    let (s, b) = g.call(Method::POST, &action("deactivate")).await;
    assert_eq!(s, 403, "demo deactivates: {b}");
    let (s, b) = admin.call(Method::POST, &action("deactivate")).await;
    assert_eq!(s, 204, "admin deactivates: {b}");
    assert_eq!(g.show(&id).await["status"], "deactivated");
    let (s, _, bytes) = g.download(&id, None).await;
    assert_eq!(
        (s, bytes.len() < 1000),
        (403, true),
        "demo downloads a deactivated image"
    );
    let (s, _, bytes) = admin.download(&id, None).await;
    assert_eq!(s, 200, "admin downloads a deactivated image");
    assert!(bytes == data);
    let (s, b) = admin.call(Method::POST, &action("reactivate")).await;
    assert_eq!(s, 204, "admin reactivates: {b}");
    let (s, _, bytes) = g.download(&id, None).await;
    assert_eq!(s, 200, "download once reactivated");
    assert!(bytes == data);

    // Disk images that must be refused, and the status they leave.
    run(
        "/usr/bin/qemu-img",
        &["create", "-f", "raw", "base.raw", "1M"],
        w,
    );
    run(
        "/usr/bin/qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "child.qcow2",
        ],
        w,
    );
    run(
        "/usr/bin/qemu-img",
        &["create", "-f", "qcow2", "ok.qcow2", "3M"],
        w,
    );
    let child = std::fs::read(w.join("child.qcow2")).unwrap();
    let good_qcow2 = std::fs::read(w.join("ok.qcow2")).unwrap();
    let refused: [(&str, &str, Vec<u8>); 3] = [
        ("qcow2 with a backing file", "qcow2", child),
        ("random bytes declared qcow2", "qcow2", urandom(2 * MIB)),
        ("a qcow2 declared raw", "raw", good_qcow2.clone()),
    ];
    for (what, fmt, body) in refused {
        let id = g.create_id(what, fmt).await;
        let (s, b) = g.upload(&id, body).await;
        assert_eq!(s, 400, "{what}: {b}");
        let st = g.settled_status(&id).await;
        assert_eq!(st, "queued", "{what} refused, the image stays queued");
        let (s, _, bytes) = g.download(&id, None).await;
        assert_eq!((s, bytes.len()), (204, 0), "{what}: GET file");
    }
    let id = g.create_id("good qcow2", "qcow2").await;
    let (s, b) = g.upload(&id, good_qcow2.clone()).await;
    assert_eq!(s, 204, "a plain qcow2: {b}");
    let img = g.show(&id).await;
    assert_eq!(img["virtual_size"], 3 * MIB as u64, "{img}");
    assert_eq!(img["size"], good_qcow2.len() as u64, "{img}");

    // Protected images are not deleted.
    let (s, img) = g
        .patch(&id, r#"[{"op":"add","path":"/protected","value":true}]"#)
        .await;
    assert_eq!(s, 200, "PATCH /protected: {img}");
    assert_eq!(img["protected"], true, "{img}");
    let (s, b) = g.call(Method::DELETE, &format!("/v2/images/{id}")).await;
    assert_eq!(s, 403, "DELETE of a protected image: {b}");
    let (s, b) = admin
        .call(Method::DELETE, &format!("/v2/images/{id}"))
        .await;
    assert_eq!(s, 403, "DELETE of a protected image by admin: {b}");
    assert_eq!(g.show(&id).await["status"], "active");
    let (s, img) = g
        .patch(
            &id,
            r#"[{"op":"replace","path":"/protected","value":false}]"#,
        )
        .await;
    assert_eq!(s, 200, "{img}");
    let (s, b) = g.call(Method::DELETE, &format!("/v2/images/{id}")).await;
    assert_eq!(s, 204, "DELETE once unprotected: {b}");
    let (s, _) = g.call(Method::GET, &format!("/v2/images/{id}")).await;
    assert_eq!(s, 404, "a deleted image");

    // Unknown ids.
    let unknown = "0b0e4cc1-6c1c-4b5f-9a6a-3c2f2f1d7e55";
    for (m, path) in [
        (Method::GET, format!("/v2/images/{unknown}")),
        (Method::DELETE, format!("/v2/images/{unknown}")),
        (Method::GET, format!("/v2/images/{unknown}/file")),
    ] {
        let (s, b) = g.call(m.clone(), &path).await;
        assert_eq!(s, 404, "{m} {path}: {b}");
    }
    let (s, b) = g.upload(unknown, b"x".to_vec()).await;
    assert_eq!(s, 404, "PUT file of an unknown image: {b}");
    let (s, b) = g
        .patch(unknown, r#"[{"op":"add","path":"/name","value":"x"}]"#)
        .await;
    assert_eq!(s, 404, "PATCH of an unknown image: {b}");

    // JSON-patch: bad documents are 400 and change nothing; read-only is 403; only admin
    // makes an image public.
    let id = g.create_id("patched", "raw").await;
    for bad in [
        r#"[{"op":"bogus","path":"/name","value":"x"}]"#,
        r#"{"op":"add","path":"/name","value":"x"}"#,
        r#"[{"op":"add","value":"x"}]"#,
        r#"[{"op":"add","path":"/name"}]"#,
        "not json",
    ] {
        let (s, b) = g.patch(&id, bad).await;
        assert_eq!(s, 400, "PATCH {bad}: {b}");
    }
    // A valid op before an invalid one is not applied either.
    let (s, b) = g
        .patch(
            &id,
            r#"[{"op":"add","path":"/name","value":"half"},{"op":"bogus","path":"/x"}]"#,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        g.show(&id).await["name"],
        "patched",
        "a refused patch applied"
    );
    for op in ["add", "replace", "remove"] {
        let doc = format!(r#"[{{"op":"{op}","path":"/status","value":"active"}}]"#);
        let (s, b) = g.patch(&id, &doc).await;
        assert_eq!(s, 403, "PATCH {doc} on read-only /status: {b}");
    }
    let make_public = r#"[{"op":"replace","path":"/visibility","value":"public"}]"#;
    let (s, b) = g.patch(&id, make_public).await;
    assert_eq!(s, 403, "demo makes an image public: {b}");
    let (s, b) = g
        .post(&json!({"name": "pub", "visibility": "public"}))
        .await;
    assert_eq!(s, 403, "demo creates a public image: {b}");
    let img = g.show(&id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["visibility"], "shared", "{img}");
    let (s, img) = admin.patch(&id, make_public).await;
    assert_eq!(s, 200, "admin makes an image public: {img}");
    assert_eq!(img["visibility"], "public", "{img}");
    let (s, img) = g
        .patch(
            &id,
            r#"[{"op":"add","path":"/name","value":"renamed"},{"op":"add","path":"/hw_disk_bus","value":"virtio"},{"op":"add","path":"/min_disk","value":1}]"#,
        )
        .await;
    assert_eq!(s, 200, "{img}");
    assert_eq!(
        (&img["name"], &img["hw_disk_bus"], &img["min_disk"]),
        (&json!("renamed"), &json!("virtio"), &json!(1)),
        "{img}"
    );

    // Paging: limit=2 has `next`; following it lists every image exactly once.
    for i in 1..=3 {
        g.create_id(&format!("page-{i}"), "raw").await;
    }
    let (s, all) = g.call(Method::GET, "/v2/images").await;
    assert_eq!(s, 200, "{all}");
    let mut want: Vec<String> = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(want.len() >= 5, "{all}");
    assert!(all.get("next").is_none(), "one page holds them all: {all}");
    let mut got: Vec<String> = Vec::new();
    let mut path = "/v2/images?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (s, page) = g.call(Method::GET, &path).await;
        assert_eq!(s, 200, "GET {path}: {page}");
        let imgs = page["images"].as_array().unwrap();
        assert!(imgs.len() <= 2, "limit=2 gave {} images", imgs.len());
        got.extend(imgs.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        pages += 1;
        assert!(pages <= want.len(), "paging does not end: {page}");
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("/v2/images?"), "next: {next}");
                path = next.to_string();
            }
            None => break,
        }
    }
    assert!(
        pages >= 2,
        "limit=2 over {} images gave no next",
        want.len()
    );
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "an image on two pages");
    want.sort();
    assert_eq!(got, want, "the pages together are the whole list");

    // `id=in:` (what `server list` sends), and the schemas.
    let (s, l) = g
        .call(
            Method::GET,
            &format!("/v2/images?id=in:{},{}", want[0], want[2]),
        )
        .await;
    assert_eq!(s, 200, "{l}");
    let mut found: Vec<&str> = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, [&want[0], &want[2]], "id=in: {l}");
    for name in ["image", "images"] {
        let (s, schema) = g.call(Method::GET, &format!("/v2/schemas/{name}")).await;
        assert_eq!(s, 200, "GET /v2/schemas/{name}: {schema}");
        assert_eq!(schema["name"], name, "{schema}");
    }
}

// ---------------------------------------------------------------------------------------
// Durability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_bytes_survive_a_node_loss_and_a_rotten_copy() {
    const SIZE: usize = 200 * MIB;
    const PAUSE_AT: u64 = 40 * MIB as u64;
    let c = TestCluster::start(4, 1);
    let work = tempfile::tempdir().unwrap();
    let g = Glance::new(&c, DEMO).await;
    let data = Arc::new(urandom(SIZE));
    let src = work.path().join("big.raw");
    std::fs::write(&src, &data[..]).unwrap();
    let want_sha = digest("sha512sum", &src);
    let want_md5 = digest("md5sum", &src);
    std::fs::remove_file(&src).unwrap();
    let id = g.create_id("big", "raw").await;

    // The body pauses after PAUSE_AT bytes until a node that receives a copy is killed.
    let sent = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (d, s2, g2) = (data.clone(), sent.clone(), gate.clone());
    let body = futures::stream::unfold(0usize, move |at| {
        let (d, sent, gate) = (d.clone(), s2.clone(), g2.clone());
        async move {
            if at >= d.len() {
                return None;
            }
            if at as u64 == PAUSE_AT {
                gate.notified().await;
            }
            let end = (at + MIB).min(d.len());
            sent.store(end as u64, Ordering::SeqCst);
            let chunk = d[at..end].to_vec();
            Some((Ok::<_, std::io::Error>(chunk), end))
        }
    });
    let put = g
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("content-type", "application/octet-stream")
        .header("content-length", SIZE.to_string())
        .body(reqwest::Body::wrap_stream(body));
    let started = Instant::now();
    let upload = tokio::spawn(async move { answer(put.send().await.unwrap()).await });

    let deadline = Instant::now() + WAIT;
    while sent.load(Ordering::SeqCst) < PAUSE_AT {
        assert!(Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Which nodes are writing a body file now (in `<device>/tmp/`)?
    let receiving = |c: &TestCluster| -> Vec<u32> {
        (1..=4)
            .filter(|n| {
                files_under(&c.dir.join(format!("storage-{n}")))
                    .iter()
                    .any(|p| {
                        p.parent().is_some_and(|d| d.ends_with("tmp"))
                            && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
                    })
            })
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let victim = loop {
        let r = receiving(&c);
        if r.len() >= 3 || (Instant::now() > deadline && !r.is_empty()) {
            break r[0];
        }
        assert!(
            Instant::now() < deadline,
            "no storage node receives the image"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("t96: killing storage node {victim} while it receives the image");
    tokio::task::block_in_place(|| c.kill_storage(victim));
    gate.notify_one();
    let (s, b) = tokio::time::timeout(HEAL, upload)
        .await
        .expect("upload finished")
        .unwrap();
    let upload_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        s, 204,
        "200 MiB upload with storage node {victim} killed mid-stream: {b}"
    );
    let img = g.show(&id).await;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], SIZE as u64, "{img}");
    assert_eq!(img["os_hash_algo"], "sha512", "{img}");
    assert_eq!(
        img["os_hash_value"].as_str(),
        Some(want_sha.as_str()),
        "{img}"
    );
    assert_eq!(img["checksum"].as_str(), Some(want_md5.as_str()), "{img}");
    let check_download = |what: &'static str| {
        let (g, id, data, dir, sha) = (&g, &id, &data, work.path(), &want_sha);
        async move {
            let (s, _, bytes) = g.download(id, None).await;
            assert_eq!(s, 200, "{what}: download");
            let out = dir.join("out.raw");
            std::fs::write(&out, &bytes).unwrap();
            assert_eq!(
                &digest("sha512sum", &out),
                sha,
                "{what}: SHA-512 of the download"
            );
            assert!(bytes[..] == data[..], "{what}: downloaded other bytes");
        }
    };
    check_download("with a node down").await;
    eprintln!("t96: 200 MiB upload with node {victim} killed took {upload_secs:.1}s");

    // The node comes back; copies settle on the primaries.
    c.up_again();
    tokio::task::block_in_place(|| c.wait_healthy(HEAL, "after the node came back"));
    let (live, _) = body_files(&c, SIZE as u64);
    assert_eq!(live.len(), 3, "copies of the image's bytes: {live:?}");

    // One copy rots: the auditor quarantines it and a replica restores it.
    let quarantined_before = c.worker_total("auditor", "quarantined");
    let at: u64 = 123_456_789;
    // A copy on a node that was never down rots. (Not the restarted node's: replicators
    // that pushed it the same version concurrently may still be finishing, and a late push
    // replaces the body file in place.) Wait until no node receives a body.
    wait_no_transfers(&c).await;
    let rotten = live
        .iter()
        .find(|p| !p.starts_with(c.dir.join(format!("storage-{victim}"))))
        .unwrap()
        .clone();
    let orig = byte_at(&rotten, at);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&rotten)
            .unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[orig ^ 0x5a]).unwrap();
        f.sync_all().unwrap();
    }
    let inode = std::fs::metadata(&rotten).unwrap().ino();
    let rot_started = Instant::now();
    let deadline = Instant::now() + HEAL;
    loop {
        let (live, quarantined) = body_files(&c, SIZE as u64);
        let restored = live.len() == 3 && live.iter().all(|p| byte_at(p, at) == orig);
        if !quarantined.is_empty() && restored {
            break;
        }
        if Instant::now() >= deadline {
            let bytes: Vec<u8> = live.iter().map(|p| byte_at(p, at)).collect();
            panic!(
                "rotten copy {rotten:?} (inode {inode}, now {:?}) not repaired after {HEAL:?}: live \
                 {live:?} (byte {at}: {bytes:?}, originally {orig}), quarantined {quarantined:?}; \
                 auditors: {}",
                std::fs::metadata(&rotten).map(|m| m.ino()),
                auditors(&c)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        c.worker_total("auditor", "quarantined") > quarantined_before,
        "the auditor did not count the quarantine"
    );
    tokio::task::block_in_place(|| c.wait_healthy(HEAL, "after the rot"));
    eprintln!(
        "t96: rotten copy quarantined and restored in {:.1}s",
        rot_started.elapsed().as_secs_f64()
    );
    check_download("after the repair").await;
}
