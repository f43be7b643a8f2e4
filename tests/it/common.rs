//! Helpers shared by the integration tests: running `stratus`, and a dev cluster per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The `stratus` binary: `$STRATUS_BIN`, else the one cargo built beside this test binary
/// (`target/<profile>/stratus`; `scripts/test.sh` builds every binary first).
pub static STRATUS: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    if let Some(p) = std::env::var_os("STRATUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("stratus");
    assert!(
        bin.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        bin.display()
    );
    bin
});
/// Upper bound for any wait; far above what a healthy run needs.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn stratus(args: &[&str]) -> Output {
    Command::new(&*STRATUS)
        .args(args)
        .env_remove("STRATUS_META")
        .env_remove("STRATUS_DEV_DIR")
        .env_remove("ST_AUTH")
        .env_remove("ST_USER")
        .env_remove("ST_KEY")
        .output()
        .expect("run stratus")
}

pub fn ok(args: &[&str]) -> String {
    let out = stratus(args);
    assert!(
        out.status.success(),
        "stratus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stops the dev cluster however the test ends.
pub struct Down(pub PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = stratus(&["dev", "down", "--dir", self.0.to_str().unwrap()]);
    }
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
}

/// A dev cluster (1 meta node, storage nodes, proxy) in a temp dir, stopped on drop.
pub struct TestCluster {
    pub dir: PathBuf,
    pub auth_url: String,
    /// `http://host:port`
    pub proxy: String,
    _down: Down,
    _tmp: tempfile::TempDir,
}

/// A token and storage URL.
#[derive(Clone)]
pub struct Session {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl TestCluster {
    pub fn start(storage_nodes: u32, devices: u32) -> Self {
        Self::start_with(storage_nodes, devices, &[])
    }

    /// [`TestCluster::start`] with more `dev up` arguments.
    pub fn start_with(storage_nodes: u32, devices: u32, extra: &[&str]) -> Self {
        Self::start_env(storage_nodes, devices, extra, &[])
    }

    /// [`TestCluster::start_with`] with environment variables for every process started
    /// (a service's settings that have one, such as `STRATUS_NODE_TIMEOUT`).
    pub fn start_env(
        storage_nodes: u32,
        devices: u32,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cluster");
        let d = dir.to_str().unwrap().to_string();
        let down = Down(dir.clone());
        let (nodes, devices) = (storage_nodes.to_string(), devices.to_string());
        let mut args = vec![
            "dev",
            "up",
            "--dir",
            &d,
            "--meta-nodes",
            "1",
            "--storage-nodes",
            &nodes,
            "--devices",
            &devices,
            "--worker-interval",
            "1",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(&*STRATUS)
            .args(&args)
            .env_remove("STRATUS_META")
            .env_remove("STRATUS_DEV_DIR")
            .env_remove("ST_AUTH")
            .env_remove("ST_USER")
            .env_remove("ST_KEY")
            .envs(env.iter().copied())
            .output()
            .expect("run stratus");
        assert!(
            out.status.success(),
            "stratus {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let auth_url = std::fs::read_to_string(dir.join("auth-url")).unwrap();
        let proxy = auth_url.trim_end_matches("/auth/v1.0").to_string();
        Self {
            dir,
            auth_url,
            proxy,
            _down: down,
            _tmp: tmp,
        }
    }

    pub fn dir_str(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Starts whatever is not running again (`dev up` on the same dir), each storage node
    /// with the devices node 1 has.
    pub fn up_again(&self) {
        let count = |dir: &Path, prefix: &str| {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        };
        let devices = count(&self.dir.join("storage-1"), "d").max(1);
        self.start_nodes(count(&self.dir, "storage-"), devices);
    }

    /// Starts storage nodes up to `total` (the new ones with `devices` devices each; they
    /// are in no ring until the test adds them).
    pub fn start_nodes(&self, total: u32, devices: u32) {
        ok(&[
            "dev",
            "up",
            "--dir",
            self.dir_str(),
            "--meta-nodes",
            "1",
            "--storage-nodes",
            &total.to_string(),
            "--devices",
            &devices.to_string(),
            "--worker-interval",
            "1",
        ]);
    }

    /// `stratus worker set all WORKER SETTING VALUE`.
    pub fn set_workers(&self, worker: &str, setting: &str, value: &str) {
        ok(&[
            "worker",
            "--dir",
            self.dir_str(),
            "set",
            "all",
            worker,
            setting,
            value,
        ]);
    }

    /// `stratus cluster health --json`.
    pub fn health(&self) -> serde_json::Value {
        json(&ok(&[
            "cluster",
            "health",
            "--json",
            "--dir",
            self.dir_str(),
        ]))
    }

    /// Waits until every ring is 100% in sync on its primaries with no handoff copy left
    /// and every node answering; panics with the last health report after `limit`.
    pub fn wait_healthy(&self, limit: Duration, what: &str) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let h = self.health();
            if fully_healthy(&h) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: cluster not healthy after {limit:?}: {h:#}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `stratus lookup --json PATH`: the states of the primaries.
    pub fn primaries_state(&self, path: &str) -> Vec<String> {
        let v = json(&ok(&["lookup", "--json", "--dir", self.dir_str(), path]));
        v["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["role"].as_str().unwrap().starts_with("primary"))
            .map(|r| r["state"].as_str().unwrap().to_string())
            .collect()
    }

    /// Sum of a counter over every node's `worker` (from `stratus worker list --json`).
    pub fn worker_total(&self, worker: &str, counter: &str) -> u64 {
        let v = json(&ok(&["worker", "list", "--json", "--dir", self.dir_str()]));
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["workers"].as_array())
            .flatten()
            .filter(|w| w["name"] == worker)
            .map(|w| w[counter].as_u64().unwrap())
            .sum()
    }

    /// The pid of storage node `n`.
    pub fn storage_pid(&self, n: u32) -> i32 {
        std::fs::read_to_string(self.dir.join(format!("storage-{n}/pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// kill -9 storage node `n`.
    pub fn kill_storage(&self, n: u32) {
        kill_pid_file(&self.dir.join(format!("storage-{n}")));
    }

    pub async fn login(&self, user: &str, key: &str) -> Session {
        let http = reqwest::Client::new();
        let r = http
            .get(&self.auth_url)
            .header("x-auth-user", user)
            .header("x-auth-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login as {user}");
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_string();
        Session {
            url: h("x-storage-url"),
            token: h("x-auth-token"),
            http,
        }
    }

    pub async fn tester(&self) -> Session {
        self.login("test:tester", "testing").await
    }
}

/// Retries `stratus ring rebalance RING` until the gate lets it through (every node has
/// finished a replication pass on the current ring with nothing left on handoffs); returns
/// its output.
pub fn wait_rebalance_allowed(dir: &str, ring: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let out = stratus(&["ring", "--dir", dir, "rebalance", ring]);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("not rebalancing"), "unexpected failure: {err}");
        assert!(
            std::time::Instant::now() < deadline,
            "rebalance still refused: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every ring fully in sync on its primaries, no handoff copy, every node answering, every
/// volume with all its replicas in the set.
pub fn fully_healthy(h: &serde_json::Value) -> bool {
    h["unreachable"].as_array().is_some_and(|u| u.is_empty())
        && h["volumes"]["degraded"]
            .as_array()
            .is_some_and(|d| d.is_empty())
        && h["rings"].as_array().is_some_and(|rings| {
            rings
                .iter()
                .all(|r| r["in_sync"] == r["slots"] && r["handoffs"] == 0 && r["missing"] == 0)
        })
}

/// Files under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn kill_pid_file(node_dir: &Path) {
    let pid: i32 = std::fs::read_to_string(node_dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + WAIT;
    // SAFETY: signal 0 only checks existence.
    while unsafe { libc::kill(pid, 0) } == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Session {
    /// A request to `path` under the storage URL (already percent-encoded), with the token.
    pub fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{}", self.url, path)
        };
        self.http
            .request(m, url)
            .header("x-auth-token", &self.token)
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.req(reqwest::Method::PUT, path)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates container `name` (201 asserted).
    pub async fn create_container(&self, name: &str) {
        let r = self.req(reqwest::Method::PUT, name).send().await.unwrap();
        assert_eq!(r.status(), 201, "PUT container {name}");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path).send().await.unwrap()
    }

    /// Object names of a container listing (plain, with `query`).
    pub async fn names(&self, container: &str, query: &str) -> Vec<String> {
        let r = self.get(&format!("{container}?{query}")).await;
        assert!(
            r.status().is_success(),
            "listing {container}?{query}: {}",
            r.status()
        );
        r.text()
            .await
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the real `swift` client as `user` (`account:user`) in `cwd`.
pub fn swift_as(c: &TestCluster, cwd: &Path, user: &str, key: &str, args: &[&str]) -> Output {
    std::process::Command::new("swift")
        .args(["-A", &c.auth_url, "-U", user, "-K", key])
        .args(args)
        .current_dir(cwd)
        .env_remove("OS_AUTH_URL")
        .output()
        .expect("the swift client is installed by scripts/deps.sh (python3-swiftclient)")
}

/// [`swift_as`] that must succeed; its standard output.
pub fn swift_ok(c: &TestCluster, cwd: &Path, user: &str, key: &str, args: &[&str]) -> String {
    let out = swift_as(c, cwd, user, key, args);
    assert!(
        out.status.success(),
        "swift {args:?} as {user} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `stratus --dir <cluster>` in `cwd`; it must succeed; its standard output.
pub fn stratus_in(c: &TestCluster, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(&*STRATUS)
        .args(["--dir", c.dir_str()])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stratus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Removes a device directory under a running storage node, as pulling a disk would. The
/// node may create files in it while it goes (`DirectoryNotEmpty`): try again, bounded.
pub fn pull_device(dir: &Path) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("removing {}: {e}; again", dir.display());
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("removing {}: {e}", dir.display()),
        }
    }
}

/// Runs `cmd` with its output captured; kills it (and fails the test) after `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap();
            panic!(
                "{what} still running after {limit:?}; killed. stderr: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The variables an openrc file (`export OS_X=value` lines, values maybe single- or
/// double-quoted) sets, in order.
pub fn parse_openrc(path: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = if let Some(q) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                q.replace("'\\''", "'")
            } else if let Some(q) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                q.replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                v.to_string()
            };
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// One variable of an openrc file; panics when it is not set there.
pub fn openrc_var(path: &Path, name: &str) -> String {
    parse_openrc(path)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{} sets no {name}", path.display()))
}

/// Writes an openrc file with `vars` (single-quoted values).
pub fn write_openrc(path: &Path, vars: &[(String, String)]) {
    let text: String = vars
        .iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''")))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// The real `openstack` client (python-openstackclient): `$STRATUS_OPENSTACK`, else the
/// one `scripts/deps.sh` installs in `<workspace>/.venv`.
pub static OPENSTACK: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    if let Some(p) = std::env::var_os("STRATUS_OPENSTACK") {
        return PathBuf::from(p);
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/openstack");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/deps.sh (it installs python-openstackclient into .venv)",
        bin.display()
    );
    bin
});

/// Upper bound for one `openstack` command.
pub const OPENSTACK_WAIT: Duration = Duration::from_secs(120);

/// Runs the real `openstack` client in `cwd` with exactly the `OS_*` variables of the openrc
/// file `rc` (relative paths are under the cluster's directory, e.g. `openrc`, `openrc-demo`):
/// inherited `OS_*` variables are removed. Killed after [`OPENSTACK_WAIT`].
pub fn openstack_in(c: &TestCluster, cwd: &Path, rc: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(&*OPENSTACK);
    cmd.args(args).current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(k);
        }
    }
    for k in ["PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"] {
        cmd.env_remove(k);
    }
    cmd.envs(parse_openrc(&c.dir.join(rc)));
    output_within(cmd, OPENSTACK_WAIT)
}

/// A command's standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A command's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// An openrc file in `dir` for `user`/`password` in `project`, the rest as in the cluster's
/// admin `openrc`; its path.
pub fn openrc_for(
    c: &TestCluster,
    dir: &Path,
    user: &str,
    password: &str,
    project: &str,
) -> String {
    let vars: Vec<(String, String)> = parse_openrc(&c.dir.join("openrc"))
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "OS_USERNAME" => user.to_string(),
                "OS_PASSWORD" => password.to_string(),
                "OS_PROJECT_NAME" => project.to_string(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    let path = dir.join(format!("openrc-{user}-{password}"));
    write_openrc(&path, &vars);
    path.to_str().unwrap().to_string()
}

/// Keystone v3 password authentication as `user` in domain `Default`, scoped to `project`
/// (in `Default`) when given: the body of `POST /v3/auth/tokens`.
pub fn password_auth(user: &str, password: &str, project: Option<&str>) -> serde_json::Value {
    let mut auth = serde_json::json!({
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}
        }
    });
    if let Some(p) = project {
        auth["scope"] = serde_json::json!({"project": {"name": p, "domain": {"name": "Default"}}});
    }
    serde_json::json!({ "auth": auth })
}

/// `POST <base>/auth/tokens` (`base`: `http://H/identity/v3`) with `body`: status,
/// `X-Subject-Token`, JSON body.
pub async fn post_auth_tokens(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let r = http
        .post(format!("{base}/auth/tokens"))
        .json(body)
        .send()
        .await
        .unwrap();
    let tok = r
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = answer(r).await;
    (status, tok, body)
}

/// Status and JSON body (`Null` when empty, the text as a string when not JSON).
pub async fn answer(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, body)
}

/// [`openstack_in`] that must succeed; its standard output.
pub fn openstack_ok_in(c: &TestCluster, cwd: &Path, rc: &str, args: &[&str]) -> String {
    let out = openstack_in(c, cwd, rc, args);
    assert!(
        out.status.success(),
        "openstack {args:?} with {rc} failed ({}): {}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`openstack_ok_in`] with `-f json`, parsed.
pub fn openstack_json_in(
    c: &TestCluster,
    cwd: &Path,
    rc: &str,
    args: &[&str],
) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["-f", "json"]);
    json(&openstack_ok_in(c, cwd, rc, &args))
}

/// [`openstack_in`] in the cluster's directory.
pub fn openstack(c: &TestCluster, rc: &str, args: &[&str]) -> Output {
    openstack_in(c, &c.dir, rc, args)
}

/// [`openstack_ok_in`] in the cluster's directory.
pub fn openstack_ok(c: &TestCluster, rc: &str, args: &[&str]) -> String {
    openstack_ok_in(c, &c.dir, rc, args)
}

/// [`openstack_json_in`] in the cluster's directory.
pub fn openstack_json(c: &TestCluster, rc: &str, args: &[&str]) -> serde_json::Value {
    openstack_json_in(c, &c.dir, rc, args)
}
