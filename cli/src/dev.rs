//! `stratus dev`: a whole local cluster as separate processes on 127.0.0.1.
//!
//! Layout of the cluster directory (default `~/.local/share/stratus/dev`):
//! ```text
//! <dir>/meta-<id>/        data dir of meta node <id> (db, snapshots, addr)
//! <dir>/meta-<id>/pid     pid of the running process
//! <dir>/meta-<id>/log     its stdout and stderr
//! <dir>/endpoints         meta endpoints, comma separated (read by `stratus meta`)
//! <dir>/storage-<n>/addr  the address storage node <n> serves (picked once, kept)
//! <dir>/storage-<n>/d<k>  its devices (directories)
//! <dir>/storage-<n>/{pid,log}
//! <dir>/proxy/{addr,pid,log}  the Swift API proxy
//! <dir>/<service>/<kind>.toml   the config file each process is started with
//!                                (`meta.toml`, `storage.toml`, `proxy.toml`)
//! <dir>/<service>/admin-addr    its admin port: /metrics (Prometheus text), /healthz
//! <dir>/auth-url          the TempAuth URL (`http://<proxy>/auth/v1.0`)
//! <dir>/openrc            `OS_*` variables for the `openstack` client as Keystone user
//!                         `admin` (role admin on project admin); mode 0600
//! <dir>/openrc-demo       the same for `demo` (role member on project demo)
//! <dir>/compute-1/        with `up --compute`: the compute agent's state dir and its
//!                         {addr,pid,log} (named after the host, `--compute-name`);
//!                         see [`compute`]
//! <dir>/libvirt-start.log what `virtlogd -d` and `libvirtd -d` said, when `up` started them
//! ```
//! The first `up` also creates the `account`, `container`, `object` and `volume` rings in meta with
//! every device of every storage node (one zone per node) and publishes them, the
//! TempAuth user `test:tester` (key `testing`), and the Keystone users `admin` and `demo`
//! with random passwords, which live in the openrc files only: a later `up` reads them back
//! from there (and gives a user whose openrc file is gone a new password).
//! With `--compute` it also makes sure libvirtd runs and starts a compute agent
//! ([`compute`]); the proxy creates the default flavors itself.
//! A second `up` reuses the data and the addresses; `down` stops the processes and keeps
//! the data.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use stratus_client::meta::MetaClient;
use stratus_client::rings::{RingStore, RingStoreError};
use stratus_client::tls::certs::{Ca, Validity};
use stratus_client::tls::{self, Identity, Role};
use stratus_core::ring::NewDevice;
use tokio::time::Instant;

use crate::table;

mod compute;

/// `stratus dev …`
#[derive(Subcommand, Debug)]
pub enum DevCmd {
    /// Start (or restart) the local cluster and wait until it is healthy.
    Up {
        #[arg(long, env = "STRATUS_DEV_DIR")]
        dir: Option<PathBuf>,
        /// Number of meta nodes.
        #[arg(long, default_value_t = 3)]
        meta_nodes: u64,
        /// Storage nodes to start and put in the rings (each its own zone).
        #[arg(long, default_value_t = 4)]
        storage_nodes: u32,
        /// Devices per storage node.
        #[arg(long, default_value_t = 2)]
        devices: u32,
        /// Seconds the storage nodes' background workers (replicator, auditor, …) idle
        /// between passes; short, so a dev cluster heals while you watch.
        #[arg(long, default_value_t = 5.0)]
        worker_interval: f64,
        /// Run every process without TLS: nothing is authenticated. Only for measuring what
        /// TLS costs (a cluster is made with TLS or without, for good).
        #[arg(long)]
        insecure: bool,
        /// Storage domain for domain remap (`Host: c.AUTH_a.<domain>` means `/v1/AUTH_a/c`),
        /// comma-separated; none by default.
        #[arg(long, value_name = "DOMAIN")]
        storage_domain: Option<String>,
        /// A storage policy besides `Policy-0` (repeatable, up to 3): each is given index
        /// 1, 2, … in order and an object ring of its own over the same devices.
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        #[command(flatten)]
        compute: compute::DevCompute,
    },
    /// Show every process of the local cluster and its Raft state.
    Status {
        #[arg(long, env = "STRATUS_DEV_DIR")]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Stop the local cluster (data is kept).
    Down {
        #[arg(long, env = "STRATUS_DEV_DIR")]
        dir: Option<PathBuf>,
    },
}

/// Installs the identity this CLI process speaks TLS with: `explicit` (`--tls`), else the
/// admin identity of the dev cluster in `dir`, else none (an `--insecure` cluster, or one
/// reached with `--meta` and no identity, which a TLS cluster refuses).
pub fn install_identity(dir: &Path, explicit: Option<&Path>) -> Result<()> {
    let admin = dir.join(TLS_DIR).join(ADMIN_IDENTITY);
    match explicit {
        Some(d) => tls::install(Some(Identity::load(d)?)),
        None if admin.join(tls::CERT_FILE).exists() => tls::install(Some(Identity::load(&admin)?)),
        None => tls::install(None),
    }
    Ok(())
}

/// The default cluster directory.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/stratus/dev"),
        None => PathBuf::from(".stratus-dev"),
    }
}

/// Meta endpoints recorded by `dev up` in `dir`.
pub fn read_endpoints(dir: &Path) -> Result<Vec<String>> {
    let s = fs::read_to_string(dir.join("endpoints")).with_context(|| {
        format!(
            "no dev cluster in {} (run `stratus dev up`, or pass --meta)",
            dir.display()
        )
    })?;
    Ok(s.trim()
        .split(',')
        .map(str::to_string)
        .filter(|e| !e.is_empty())
        .collect())
}

fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the stratus binary")?;
    let path = exe
        .parent()
        .map(|p| p.join(name))
        .context("stratus binary has no directory")?;
    if !path.exists() {
        bail!(
            "{} not found next to {} (build the workspace: cargo build --release)",
            name,
            exe.display()
        );
    }
    Ok(path)
}

fn read_pid(node_dir: &Path) -> Option<i32> {
    fs::read_to_string(node_dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn running_pid(node_dir: &Path) -> Option<i32> {
    read_pid(node_dir).filter(|p| alive(*p))
}

/// Every service directory with a pid file (meta, storage, proxy, compute), by name.
fn service_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("pid").exists())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

fn node_dirs(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("meta-")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn log_tail(node_dir: &Path) -> String {
    let log = fs::read_to_string(node_dir.join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The file in a service's directory that names its admin port.
pub const ADMIN_ADDR_FILE: &str = "admin-addr";

/// A TOML value for a service config file.
enum Setting {
    Str(String),
    List(Vec<String>),
    Num(f64),
    Int(u64),
    Bool(bool),
}

/// Writes the config file `node_dir/<name>.toml` of a service (keys are its long flag
/// names) and returns the arguments that start the service with it.
fn write_config(node_dir: &Path, name: &str, settings: &[(&str, Setting)]) -> Result<Vec<String>> {
    fs::create_dir_all(node_dir)?;
    let quote = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut text =
        format!("# {name}: written by `stratus dev up`; flags given to the process win.\n");
    for (key, value) in settings {
        let v = match value {
            Setting::Str(s) => quote(s),
            Setting::List(l) => format!(
                "[{}]",
                l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            ),
            Setting::Num(n) => format!("{n:?}"),
            Setting::Int(n) => n.to_string(),
            Setting::Bool(b) => b.to_string(),
        };
        text.push_str(&format!("{key} = {v}\n"));
    }
    let path = node_dir.join(format!("{name}.toml"));
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(vec!["--config".into(), path.display().to_string()])
}

/// Starts `bin args…` with its pid and log in `node_dir`, unless it already runs there.
fn spawn(bin: &Path, args: &[String], node_dir: &Path) -> Result<()> {
    fs::create_dir_all(node_dir)?;
    if running_pid(node_dir).is_some() {
        return Ok(());
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node_dir.join("log"))?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    fs::write(node_dir.join("pid"), format!("{}\n", child.id()))?;
    Ok(())
}

/// How long a started process may take to listen. Idle, a dev cluster is up in a second; on
/// two cores shared with QEMU guests booting under TCG and other clusters, a proxy once took
/// over 30 s.
const START_WAIT: Duration = Duration::from_secs(60);

/// Waits until something accepts connections on `addr` (the process in `node_dir` must
/// stay alive meanwhile).
async fn wait_listening(what: &str, addr: &str, node_dir: &Path) -> Result<()> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if running_pid(node_dir).is_none() {
            bail!(
                "{what} exited; last lines of {}:\n{}",
                node_dir.join("log").display(),
                log_tail(node_dir)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not listen on {addr} within {}s; see {}",
                START_WAIT.as_secs(),
                node_dir.join("log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start meta node `id` in `node_dir` unless it already runs; returns its address.
async fn start_meta(
    bin: &Path,
    id: u64,
    node_dir: &Path,
    tls: (&'static str, Setting),
) -> Result<String> {
    let args = write_config(
        node_dir,
        "meta",
        &[
            ("id", Setting::Int(id)),
            ("data_dir", Setting::Str(node_dir.display().to_string())),
            ("listen", Setting::Str("127.0.0.1:0".into())),
            ("admin_listen", Setting::Str(admin_addr(node_dir)?)),
            // Every node of a dev cluster shares this machine's cores (see BENCHMARKS.md).
            ("worker_threads", Setting::Int(1)),
            tls,
        ],
    )?;
    spawn(bin, &args, node_dir)?;
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Some(addr) = stratus_client::service::read_addr(node_dir) {
            let addr = addr.to_string();
            if MetaClient::new(&[&addr])?.status_of(&addr).await.is_ok() {
                return Ok(addr);
            }
        }
        if running_pid(node_dir).is_none() {
            bail!(
                "meta node {id} exited; last lines of {}:\n{}",
                node_dir.join("log").display(),
                log_tail(node_dir)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "meta node {id} did not answer within {}s; see {}",
                START_WAIT.as_secs(),
                node_dir.join("log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until every node agrees on one leader and the membership holds every voter.
async fn wait_healthy(
    client: &MetaClient,
    addrs: &BTreeMap<u64, String>,
    timeout: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let mut leaders = Vec::new();
        for addr in addrs.values() {
            match client.status_of(addr).await {
                Ok(s) if s.members.iter().filter(|m| m.voter).count() == addrs.len() => {
                    leaders.push(s.leader_id)
                }
                Ok(s) => last = format!("node {} sees {} voters", s.id, s.members.len()),
                Err(e) => last = e.to_string(),
            }
        }
        if leaders.len() == addrs.len()
            && leaders[0].is_some()
            && leaders.iter().all(|l| *l == leaders[0])
        {
            // A linearizable read proves the leader can reach a quorum.
            if client.revision().await.is_ok() {
                return Ok(leaders[0].unwrap_or_default());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("cluster not healthy after {timeout:?}: {last}")
}

/// Run a `stratus dev` command.
pub async fn run(cmd: DevCmd) -> Result<()> {
    match cmd {
        DevCmd::Up {
            dir,
            meta_nodes,
            storage_nodes,
            devices,
            worker_interval,
            insecure,
            storage_domain,
            policies,
            compute,
        } => {
            let dir = dir.unwrap_or_else(default_dir);
            let shape = Shape {
                meta_nodes,
                storage_nodes,
                devices,
                worker_interval,
                insecure,
            };
            up(&dir, &shape, storage_domain.as_deref(), &policies, &compute).await
        }
        DevCmd::Status { dir, json } => {
            let dir = dir.unwrap_or_else(default_dir);
            install_identity(&dir, None)?;
            status(&dir, json).await
        }
        DevCmd::Down { dir } => down(&dir.unwrap_or_else(default_dir)),
    }
}

/// What `dev up` starts.
struct Shape {
    meta_nodes: u64,
    storage_nodes: u32,
    devices: u32,
    worker_interval: f64,
    insecure: bool,
}

/// Where a dev cluster keeps its CA and the identity of each process (`tls/<name>`).
pub const TLS_DIR: &str = "tls";
/// The CLI's identity in a dev cluster (`tls/admin`).
pub const ADMIN_IDENTITY: &str = "admin";

/// The CA of a dev cluster, and the identities of its processes.
struct Certs {
    /// `None`: an `--insecure` cluster.
    ca: Option<Ca>,
    dir: PathBuf,
}

impl Certs {
    /// Opens (or makes) the cluster's CA, and installs the admin identity for this process.
    fn open(dir: &Path, insecure: bool) -> Result<Certs> {
        let tls_dir = dir.join(TLS_DIR);
        if insecure {
            if tls_dir.exists() {
                bail!(
                    "{} was made with TLS: --insecure would start its processes without it",
                    dir.display()
                );
            }
            tls::install(None);
            return Ok(Certs {
                ca: None,
                dir: tls_dir,
            });
        }
        let ca = Ca::open_or_create(&tls_dir.join("ca"))?;
        let certs = Certs {
            ca: Some(ca),
            dir: tls_dir,
        };
        let admin = certs.identity(Role::Admin, ADMIN_IDENTITY)?;
        if let Some(d) = &admin {
            tls::install(Some(Identity::load(d)?));
        }
        Ok(certs)
    }

    /// The identity folder of process `name` (issued on first use); `None` when insecure.
    fn identity(&self, role: Role, name: &str) -> Result<Option<PathBuf>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let out = self.dir.join(name);
        if !out.join(tls::CERT_FILE).exists() {
            ca.issue(role, name, &out, Validity::default())?;
        }
        Ok(Some(out))
    }

    /// The config setting that gives process `name` its identity (or runs it insecure).
    fn setting(&self, role: Role, name: &str) -> Result<(&'static str, Setting)> {
        Ok(match self.identity(role, name)? {
            Some(d) => ("tls", Setting::Str(d.display().to_string())),
            None => ("insecure", Setting::Bool(true)),
        })
    }
}

async fn up(
    dir: &Path,
    shape: &Shape,
    storage_domain: Option<&str>,
    policies: &[String],
    with_compute: &compute::DevCompute,
) -> Result<()> {
    let Shape {
        meta_nodes,
        storage_nodes,
        devices,
        worker_interval,
        insecure,
    } = *shape;
    if meta_nodes == 0 {
        bail!("--meta-nodes must be at least 1");
    }
    if storage_nodes == 0 || devices == 0 {
        bail!("--storage-nodes and --devices must be at least 1");
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    // Without the agent's binary or libvirt, `--compute` fails before anything starts.
    if with_compute.compute {
        sibling_binary("stratus-compute")?;
        compute::ensure_libvirt(&dir).await?;
    }
    let certs = Certs::open(&dir, insecure)?;
    let bin = sibling_binary("stratus-meta")?;
    let mut addrs = BTreeMap::new();
    for id in 1..=meta_nodes {
        let name = format!("meta-{id}");
        let tls = certs.setting(Role::Meta, &name)?;
        let addr = start_meta(&bin, id, &dir.join(&name), tls).await?;
        addrs.insert(id, addr);
    }
    let endpoints: Vec<String> = addrs.values().cloned().collect();
    let client = MetaClient::new(&endpoints)?;
    let mut initialized = false;
    for addr in addrs.values() {
        initialized |= client.status_of(addr).await?.initialized;
    }
    if !initialized {
        client
            .initialize(&addrs[&1], addrs.clone())
            .await
            .context("initializing the meta cluster")?;
    }
    let leader = wait_healthy(&client, &addrs, Duration::from_secs(60)).await?;
    fs::write(dir.join("endpoints"), endpoints.join(","))?;
    if policies.len() >= stratus_client::policies::MAX_POLICIES as usize {
        bail!(
            "at most {} --policy (policy 0 is Policy-0)",
            stratus_client::policies::MAX_POLICIES - 1
        );
    }
    for (i, name) in policies.iter().enumerate() {
        stratus_client::policies::add(&client, name, Some(i as u32 + 1), false).await?;
    }
    let rings = ensure_rings(&client, &dir, storage_nodes, devices, policies.len()).await?;
    let storage_bin = sibling_binary("stratus-storage")?;
    let mut storage = Vec::new();
    for n in 1..=storage_nodes {
        let node_dir = dir.join(format!("storage-{n}"));
        let addr = storage_addr(&dir, n)?;
        let device_dirs = (1..=devices)
            .map(|k| node_dir.join(format!("d{k}")).display().to_string())
            .collect();
        let args = write_config(
            &node_dir,
            "storage",
            &[
                ("listen", Setting::Str(addr.clone())),
                ("meta", Setting::List(endpoints.clone())),
                ("worker_interval", Setting::Num(worker_interval)),
                ("device", Setting::List(device_dirs)),
                ("admin_listen", Setting::Str(admin_addr(&node_dir)?)),
                certs.setting(Role::Storage, &format!("storage-{n}"))?,
            ],
        )?;
        spawn(&storage_bin, &args, &node_dir)?;
        storage.push((n, addr, node_dir, args));
    }
    for (n, addr, node_dir, args) in &storage {
        let what = format!("storage node {n}");
        match wait_listening(&what, addr, node_dir).await {
            Ok(()) => {}
            // A node killed just before `up` can still have looked alive (a process with
            // I/O in flight takes a moment to go), so it was not started: start it now.
            Err(_) if running_pid(node_dir).is_none() => {
                spawn(&storage_bin, args, node_dir)?;
                wait_listening(&what, addr, node_dir).await?;
            }
            Err(e) => return Err(e),
        }
    }
    let proxy_dir = dir.join("proxy");
    let proxy_addr = picked_addr(&proxy_dir)?;
    let mut proxy_settings = vec![
        ("listen", Setting::Str(proxy_addr.clone())),
        ("meta", Setting::List(endpoints.clone())),
        ("admin_listen", Setting::Str(admin_addr(&proxy_dir)?)),
        certs.setting(Role::Proxy, "proxy")?,
    ];
    if let Some(d) = storage_domain {
        proxy_settings.push(("storage_domain", Setting::Str(d.to_string())));
    }
    let proxy_args = write_config(&proxy_dir, "proxy", &proxy_settings)?;
    spawn(&sibling_binary("stratus-proxy")?, &proxy_args, &proxy_dir)?;
    ensure_test_user(&client).await?;
    let identity_url = format!("http://{proxy_addr}/identity");
    let identities = ensure_identities(&client, &dir, &identity_url).await?;
    wait_listening("the proxy", &proxy_addr, &proxy_dir).await?;
    // A cluster made with `--compute` keeps its agents: `up` again restarts them.
    let agent = if with_compute.compute {
        let tls = certs.identity(Role::Compute, &with_compute.compute_name)?;
        Some(compute::start_agent(&dir, &endpoints, with_compute, tls.as_deref()).await?)
    } else {
        compute::restart_agents(&dir).await?
    };
    let auth_url = format!("http://{proxy_addr}/auth/v1.0");
    fs::write(dir.join("auth-url"), &auth_url)?;
    println!(
        "Stratus dev cluster is up ({} meta nodes, leader: node {leader}).",
        addrs.len()
    );
    println!("  data:  {}", dir.display());
    for (id, addr) in &addrs {
        println!(
            "  meta-{id}: {addr}   (log: {})",
            dir.join(format!("meta-{id}/log")).display()
        );
    }
    println!("  rings: {rings}");
    for (n, addr, node_dir, _) in &storage {
        println!(
            "  storage-{n}: {addr}   (log: {})",
            node_dir.join("log").display()
        );
    }
    println!(
        "  proxy: http://{proxy_addr}   (log: {})",
        proxy_dir.join("log").display()
    );
    if let Some(a) = &agent {
        println!("  {a}");
    }
    println!();
    println!("  Swift API auth URL: {auth_url}   user: {DEV_USER}   key: {DEV_KEY}");
    println!("  swift -A {auth_url} -U {DEV_USER} -K {DEV_KEY} stat");
    println!("  stratus upload mycontainer ./some-file   (stratus uses this cluster by default)");
    println!();
    print_identities(&identity_url, &identities);
    if agent.is_some() {
        compute::print_hints();
    }
    println!();
    println!("  export STRATUS_META={}", endpoints.join(","));
    println!("  stratus meta status");
    println!("  stratus ring show object");
    println!("  stratus dev status --dir {}", dir.display());
    println!("  stop it with: stratus dev down --dir {}", dir.display());
    Ok(())
}

/// Partition power of each dev ring: ~100+ partitions per device for a few devices.
const DEV_RINGS: [(&str, u32); 4] = [
    ("account", 8),
    ("container", 8),
    ("object", 10),
    ("volume", 8),
];

/// The TempAuth user every dev cluster has.
pub const DEV_USER: &str = "test:tester";
/// Its key.
pub const DEV_KEY: &str = "testing";

async fn ensure_test_user(client: &MetaClient) -> Result<()> {
    let users = stratus_client::users::UserStore::new(client.clone().revealing());
    if users.get("test", "tester").await?.is_none() {
        users
            .add(
                "test",
                "tester",
                DEV_KEY,
                &[stratus_client::users::ROLE_ADMIN],
            )
            .await?;
    }
    Ok(())
}

/// A Keystone user every dev cluster has, with the openrc file that holds its password.
struct DevIdentity {
    /// The openrc file's name in the cluster directory.
    rc: &'static str,
    project: &'static str,
    user: &'static str,
    role: &'static str,
}

/// `admin` (role admin on project admin) and `demo` (role member on project demo).
const DEV_IDENTITIES: [DevIdentity; 2] = [
    DevIdentity {
        rc: "openrc",
        project: "admin",
        user: "admin",
        role: "admin",
    },
    DevIdentity {
        rc: "openrc-demo",
        project: "demo",
        user: "demo",
        role: "member",
    },
];

/// What `ensure_identities` did for one [`DevIdentity`].
struct IdentityState {
    id: &'static DevIdentity,
    rc: PathBuf,
    password: String,
    /// Its password was set in this run (a new user, or one whose openrc file was gone):
    /// the only time it is printed.
    fresh: bool,
    /// The openrc file's password no longer opens the account (changed since).
    stale: bool,
}

/// Makes sure the dev Keystone users exist and their openrc files (mode 0600) are written.
async fn ensure_identities(
    client: &MetaClient,
    dir: &Path,
    auth_url: &str,
) -> Result<Vec<IdentityState>> {
    let store = stratus_client::identity::IdentityStore::new(client.clone().revealing());
    let mut out = Vec::new();
    for id in &DEV_IDENTITIES {
        let rc = dir.join(id.rc);
        let kept = fs::read_to_string(&rc)
            .ok()
            .and_then(|t| openrc_var(&t, "OS_PASSWORD"))
            .filter(|p| !p.is_empty());
        let password = kept
            .clone()
            .unwrap_or_else(crate::identity_cmd::random_password);
        let (_, user, created) = store
            .ensure_user(id.project, id.user, &password, id.role)
            .await
            .with_context(|| format!("creating the Keystone user {}", id.user))?;
        let (mut fresh, mut stale) = (created, false);
        if !created {
            if kept.is_none() {
                // Its password was only ever in the openrc file, which is gone.
                store.set_password(&user.id, &password).await?;
                fresh = true;
            } else {
                let hash = user.password_hash.clone().unwrap_or_default();
                let pw = password.clone();
                stale = !tokio::task::spawn_blocking(move || {
                    stratus_client::identity::password::verify(&hash, &pw)
                })
                .await?;
            }
        }
        write_private(&rc, &openrc_text(&openrc_vars(auth_url, id, &password)))?;
        out.push(IdentityState {
            id,
            rc,
            password,
            fresh,
            stale,
        });
    }
    Ok(out)
}

/// The `OS_*` variables of an openrc file, in order.
fn openrc_vars(auth_url: &str, id: &DevIdentity, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OS_AUTH_URL", auth_url.to_string()),
        ("OS_IDENTITY_API_VERSION", "3".into()),
        ("OS_USERNAME", id.user.into()),
        ("OS_PASSWORD", password.into()),
        ("OS_PROJECT_NAME", id.project.into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
        ("OS_INTERFACE", "public".into()),
    ]
}

/// `s` for a POSIX shell: as it is when that is safe, else single-quoted.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@%+=".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        single_quote(s)
    }
}

/// `s` single-quoted for a POSIX shell (`'` written as `'\''`).
fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// An openrc file: `export NAME=value` lines, the password always single-quoted.
fn openrc_text(vars: &[(&str, String)]) -> String {
    let mut t = String::from(
        "# Keystone credentials for the `openstack` client, written by `stratus dev up`.\n\
         # Use: source this file, then e.g. `openstack catalog list`.\n",
    );
    for (k, v) in vars {
        let v = if *k == "OS_PASSWORD" {
            single_quote(v)
        } else {
            shell_quote(v)
        };
        t.push_str(&format!("export {k}={v}\n"));
    }
    t
}

/// The value an openrc text gives `name` (`export NAME=value`, maybe quoted).
fn openrc_var(text: &str, name: &str) -> Option<String> {
    crate::os_auth::parse_openrc(text).remove(name)
}

/// Writes `text` to `path` readable by its owner only (through a temporary file, so a
/// reader never sees half of it, nor it readable by others for a moment).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The Keystone lines of `dev up`'s report: a password only when it was set in this run.
fn print_identities(auth_url: &str, ids: &[IdentityState]) {
    println!("  Keystone (identity v3) auth URL: {auth_url}");
    for s in ids {
        let who = format!(
            "{} (role {} on project {})",
            s.id.user, s.id.role, s.id.project
        );
        let rc = shell_quote(&s.rc.display().to_string());
        if s.fresh {
            println!(
                "  {who}: password {}   (shown once; kept in {rc})",
                s.password
            );
        } else {
            println!("  {who}: credentials in {rc}");
        }
        if s.stale {
            println!(
                "    note: the password in {rc} no longer matches {}'s (changed since); fix the file or `stratus identity user set {} --password …`",
                s.id.user, s.id.user
            );
        }
    }
    let Some(admin) = ids.first() else { return };
    let rc = shell_quote(&admin.rc.display().to_string());
    println!("  source {rc} && openstack catalog list");
    if admin.fresh {
        let inline: Vec<String> = openrc_vars(auth_url, admin.id, &admin.password)
            .iter()
            .map(|(k, v)| {
                let v = if *k == "OS_PASSWORD" {
                    single_quote(v)
                } else {
                    shell_quote(v)
                };
                format!("{k}={v}")
            })
            .collect();
        println!("  {} openstack project list", inline.join(" "));
    }
    println!(
        "  stratus project list; stratus identity user list; stratus role assignment list --names"
    );
}

/// The auth URL `dev up` recorded in `dir`.
pub fn read_auth_url(dir: &Path) -> Result<String> {
    let s = fs::read_to_string(dir.join("auth-url")).with_context(|| {
        format!(
            "no dev cluster in {} (run `stratus dev up`, or pass --auth)",
            dir.display()
        )
    })?;
    Ok(s.trim().to_string())
}

/// The address storage node `n` will serve, picked once (a free loopback port) and kept.
fn storage_addr(dir: &Path, n: u32) -> Result<String> {
    picked_addr(&dir.join(format!("storage-{n}")))
}

/// An address picked once for the service in `node_dir` (a free loopback port) and kept.
fn picked_addr(node_dir: &Path) -> Result<String> {
    picked_port(node_dir, "addr")
}

/// The admin port (`/metrics`, `/healthz`) of the service in `node_dir`, picked once.
fn admin_addr(node_dir: &Path) -> Result<String> {
    picked_port(node_dir, ADMIN_ADDR_FILE)
}

/// A free loopback address picked once and kept in `node_dir/file`.
fn picked_port(node_dir: &Path, file: &str) -> Result<String> {
    fs::create_dir_all(node_dir)?;
    let file = node_dir.join(file);
    if let Ok(a) = fs::read_to_string(&file) {
        return Ok(a.trim().to_string());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    fs::write(&file, &addr)?;
    Ok(addr)
}

/// Creates and publishes the dev rings that do not exist yet; returns a summary line.
async fn ensure_rings(
    client: &MetaClient,
    dir: &Path,
    nodes: u32,
    devices: u32,
    extra_policies: usize,
) -> Result<String> {
    let store = RingStore::new(client.clone());
    let mut devs = Vec::new();
    for n in 1..=nodes {
        let addr = storage_addr(dir, n)?;
        for k in 1..=devices {
            let path = dir.join(format!("storage-{n}/d{k}"));
            fs::create_dir_all(&path)?;
            // The rings name each disk from the start: the id a node already gave the
            // device, or a new one that the node takes when it first serves the device.
            let disk = fs::read(path.join("identity.json"))
                .ok()
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
            devs.push((
                NewDevice {
                    region: 1,
                    zone: n,
                    node: addr.clone(),
                    name: format!("d{k}"),
                    weight: 100.0,
                },
                disk,
            ));
        }
    }
    let replicas = 3.min(devs.len() as u32);
    let mut out = Vec::new();
    // Each extra storage policy's object ring is as big as the others but the object one.
    let policy_rings: Vec<(String, u32)> = (1..=extra_policies as u32)
        .map(|i| (stratus_client::policies::ring_name(i), 8))
        .collect();
    let rings = DEV_RINGS
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .chain(policy_rings);
    for (name, power) in rings {
        let name = name.as_str();
        let b = match store.builder(name).await {
            Ok((b, _)) => b,
            // min_part_hours 0: a dev cluster has no data whose move must be waited for.
            Err(RingStoreError::NotFound(_)) => store.create(name, power, replicas, 0).await?,
            Err(e) => return Err(e.into()),
        };
        // Only a ring never published is filled in (an `up` interrupted half-way is
        // finished); a published ring is the operator's and is left as it is.
        if b.version() == 0 {
            for (d, disk) in &devs {
                if !b.devices().any(|x| x.node == d.node && x.name == d.name) {
                    store
                        .edit(name, |b| {
                            let id = b.add_device(d.clone())?;
                            b.set_disk(id, disk)
                        })
                        .await?;
                }
            }
            store.rebalance(name).await?;
        }
        let (ring, _) = store.current(name).await?;
        out.push(format!(
            "{name} v{} ({} devices, 2^{} partitions x {})",
            ring.version(),
            ring.devices().len(),
            ring.part_power(),
            ring.replicas()
        ));
    }
    Ok(out.join(", "))
}

/// The admin address recorded in a service's directory, if any.
fn read_admin(node_dir: &Path) -> Option<String> {
    fs::read_to_string(node_dir.join(ADMIN_ADDR_FILE))
        .ok()
        .map(|a| a.trim().to_string())
}

async fn status(dir: &Path, json: bool) -> Result<()> {
    let nodes = node_dirs(dir);
    if nodes.is_empty() {
        bail!("no dev cluster in {}", dir.display());
    }
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (id, node_dir) in nodes {
        let pid = running_pid(&node_dir);
        let addr = stratus_client::service::read_addr(&node_dir)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let st = match (&pid, addr.is_empty()) {
            (Some(_), false) => MetaClient::new(&[&addr])?.status_of(&addr).await.ok(),
            _ => None,
        };
        let role = st.as_ref().map_or(
            if pid.is_some() {
                "unreachable"
            } else {
                "stopped"
            }
            .to_string(),
            |s| s.role.clone(),
        );
        out.push(serde_json::json!({
            "service": "meta", "id": id, "addr": addr, "pid": pid, "role": role,
            "admin": read_admin(&node_dir),
            "term": st.as_ref().map(|s| s.term), "applied": st.as_ref().and_then(|s| s.applied),
            "revision": st.as_ref().map(|s| s.revision),
        }));
        rows.push(vec![
            format!("meta-{id}"),
            addr,
            pid.map_or("-".into(), |p| p.to_string()),
            role,
            st.as_ref().map_or("-".into(), |s| s.term.to_string()),
            st.as_ref()
                .and_then(|s| s.applied)
                .map_or("-".into(), |a| a.to_string()),
            st.as_ref().map_or("-".into(), |s| s.revision.to_string()),
        ]);
    }
    for (name, node_dir) in service_dirs(dir) {
        if name.starts_with("meta-") {
            continue;
        }
        let pid = running_pid(&node_dir);
        let addr = fs::read_to_string(node_dir.join("addr"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let state = if pid.is_some() { "running" } else { "stopped" };
        out.push(serde_json::json!({
            "service": name, "addr": addr, "pid": pid, "role": state,
            "admin": read_admin(&node_dir),
        }));
        let dash = || "-".to_string();
        rows.push(vec![
            name,
            addr,
            pid.map_or(dash(), |p| p.to_string()),
            state.into(),
            dash(),
            dash(),
            dash(),
        ]);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}",
            table::render(
                &["SERVICE", "ADDR", "PID", "ROLE", "TERM", "APPLIED", "REVISION"],
                &rows
            )
        );
    }
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let mut nodes = service_dirs(dir);
    // Front ends (proxy, compute agents) first, then storage, meta last: nothing logs errors
    // about a vanished meta, and an agent flushes its guests' volumes while storage runs.
    nodes.sort_by_key(|(name, _)| {
        if name.starts_with("meta-") {
            2
        } else {
            u8::from(name.starts_with("storage-"))
        }
    });
    let mut stopped = 0;
    for (name, _) in nodes.iter().filter(|(_, d)| d.join("console").is_dir()) {
        compute::stop_guests(dir, name);
    }
    for (_, node_dir) in &nodes {
        if let Some(pid) = running_pid(node_dir) {
            // SAFETY: sending SIGTERM to a pid we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                // SAFETY: as above; the process ignored SIGTERM.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            stopped += 1;
        }
        let _ = fs::remove_file(node_dir.join("pid"));
    }
    println!(
        "Stopped {stopped} process(es); data kept in {}.",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrc_files_round_trip() {
        let vars = openrc_vars("http://127.0.0.1:8080/identity", &DEV_IDENTITIES[1], "it's");
        let text = openrc_text(&vars);
        assert!(text.contains("export OS_AUTH_URL=http://127.0.0.1:8080/identity\n"));
        assert!(text.contains("export OS_PASSWORD='it'\\''s'\n"), "{text}");
        assert!(text.contains("export OS_USERNAME=demo\n"));
        assert!(text.contains("export OS_PROJECT_NAME=demo\n"));
        assert!(text.contains("export OS_INTERFACE=public\n"));
        for (k, v) in &vars {
            assert_eq!(openrc_var(&text, k).as_ref(), Some(v), "{k}");
        }
        assert_eq!(openrc_var(&text, "OS_NOPE"), None);
        assert_eq!(
            openrc_var("export OS_PASSWORD=\"a\\\"b\"", "OS_PASSWORD").as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            openrc_var("OS_PASSWORD=plain", "OS_PASSWORD").as_deref(),
            Some("plain")
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_quote("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(single_quote("a'b"), "'a'\\''b'");
    }

    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("openrc");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, "new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
