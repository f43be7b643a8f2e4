//! `stratus dev up --compute`: libvirt, and one compute agent beside the other services.
//!
//! # libvirt
//! The agent drives guests through libvirtd on `qemu:///system`. When `virsh -c
//! qemu:///system version` fails, `up` starts `virtlogd -d` and `libvirtd -d` (they
//! daemonize themselves; their start-up output goes to `<dir>/libvirt-start.log`) and waits
//! up to [`LIBVIRT_WAIT`] for virsh to get an answer. They are the machine's daemons, not
//! the cluster's: `dev down` leaves them running. Starting them takes root.
//!
//! # The agent
//! It runs like the other services (pid and log in its directory, stopped by `dev down`):
//! ```text
//! stratus-compute --meta <endpoints> --name compute-1 --listen 127.0.0.1:0
//!     --state-dir <dir>/compute-1 --run-dir /run/stratus-compute/<cluster id>-compute-1
//!     [--vcpus N] [--ram-mb MB] [--disk-gb GB]
//! ```
//! The cluster id (8 hex digits of a hash of the cluster directory) keeps the run
//! directories of two dev clusters on one machine apart. The agent picks its port and says
//! `stratus-compute listening on ADDR` on stdout, which goes to its log: `up` reads the
//! address from the lines written since it started the agent, waits until it accepts
//! connections, and keeps it in `<dir>/compute-1/addr` (where `dev status` reads it, and a
//! later `up` finds a running agent's address).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// How long `up` waits for libvirtd to answer after starting it.
pub const LIBVIRT_WAIT: Duration = Duration::from_secs(30);
/// How long `up` waits for the agent to say where it listens.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(60);
/// What the agent prints once it listens, before its address.
const ANNOUNCEMENT: &str = "stratus-compute listening on ";
/// The libvirt URI the agent uses.
const LIBVIRT_URI: &str = "qemu:///system";

/// The `dev up` flags of the compute agent.
#[derive(Args, Debug, Clone, Default)]
pub struct DevCompute {
    /// Also run a compute agent (starting libvirtd first when it does not answer).
    #[arg(long)]
    pub compute: bool,
    /// The compute host's name (also its directory in the cluster directory).
    #[arg(
        long,
        default_value = "compute-1",
        value_name = "NAME",
        requires = "compute"
    )]
    pub compute_name: String,
    /// vCPUs the host offers (default: the agent's choice).
    #[arg(long, value_name = "N", requires = "compute")]
    pub compute_vcpus: Option<u64>,
    /// RAM the host offers (default: the agent's choice).
    #[arg(long, value_name = "MB", requires = "compute")]
    pub compute_ram_mb: Option<u64>,
    /// Disk the host offers (default: the agent's choice).
    #[arg(long, value_name = "GB", requires = "compute")]
    pub compute_disk_gb: Option<u64>,
}

/// A running compute agent, as `up` reports it.
pub struct Agent {
    name: String,
    addr: String,
    node_dir: PathBuf,
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: http://{}   (compute agent; log: {})",
            self.name,
            self.addr,
            self.node_dir.join("log").display()
        )
    }
}

/// `name` if it can name a compute host's directory beside the other services'.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !plain {
        bail!("--compute-name {name:?}: use letters, digits, '-', '_' and '.' only");
    }
    if name == "proxy" || name.starts_with("meta-") || name.starts_with("storage-") {
        bail!("--compute-name {name}: that is the directory of another service");
    }
    Ok(())
}

/// 8 hex digits naming the cluster in `dir` (the same for the same directory).
pub fn cluster_id(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let h = Sha256::digest(dir.as_os_str().as_bytes());
    hex::encode(&h[..4])
}

/// The agent's run directory (sockets, guest consoles) for host `name` of the cluster in
/// `dir`.
pub fn run_dir(dir: &Path, name: &str) -> PathBuf {
    PathBuf::from(format!("/run/stratus-compute/{}-{name}", cluster_id(dir)))
}

/// Powers off (destroys) the guests of host `name` of the cluster in `dir` and removes
/// their libvirt definitions: an agent that stops leaves its guests running (so it can be
/// restarted under them), but `dev down` stops the whole cloud. The servers' records and
/// volumes stay, so `dev up` boots them again (the agent defines each domain anew).
pub fn stop_guests(dir: &Path, name: &str) {
    let Some(virsh) = find_program("virsh") else {
        return;
    };
    let owner = stratus_client::compute::domain_owner(name, &run_dir(dir, name));
    let run = |args: &[&str]| {
        std::process::Command::new(&virsh)
            .args(["-c", "qemu:///system"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let Some(list) = run(&["list", "--all", "--name"]) else {
        return;
    };
    for dom in list
        .lines()
        .map(str::trim)
        .filter(|d| d.starts_with("stratus-"))
    {
        if run(&["desc", dom]).is_some_and(|d| d.trim() == owner) {
            let _ = run(&["destroy", dom]);
            let _ = run(&["undefine", "--managed-save", dom]);
        }
    }
}

/// The agent's command line.
pub fn agent_args(
    endpoints: &[String],
    c: &DevCompute,
    state_dir: &Path,
    run_dir: &Path,
    tls: Option<&Path>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--meta",
        &endpoints.join(","),
        "--name",
        &c.compute_name,
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state_dir.display().to_string(),
        "--run-dir",
        &run_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, v) in [
        ("--vcpus", c.compute_vcpus),
        ("--ram-mb", c.compute_ram_mb),
        ("--disk-gb", c.compute_disk_gb),
    ] {
        if let Some(v) = v {
            args.extend([flag.to_string(), v.to_string()]);
        }
    }
    match tls {
        Some(d) => args.extend(["--tls".to_string(), d.display().to_string()]),
        None => args.push("--insecure".to_string()),
    }
    args
}

/// The address in the last `stratus-compute listening on ADDR` line of `log` (`ADDR` may
/// be a URL: its `host:port`).
pub fn announced(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let (_, rest) = l.split_once(ANNOUNCEMENT)?;
        let a = rest.split_whitespace().next()?;
        let a = a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
        (!a.is_empty()).then(|| a.to_string())
    })
}

/// An executable `name` on `PATH` or in the sbin directories (daemons live there, which a
/// user's `PATH` may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Whether `virsh -c qemu:///system version` succeeds (within 10 s).
async fn libvirt_answers(virsh: &Path) -> bool {
    let run = tokio::process::Command::new(virsh)
        .args(["-c", LIBVIRT_URI, "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(10), run).await,
        Ok(Ok(s)) if s.success()
    )
}

/// Runs `daemon -d` with its output appended to `log`; an error says how it failed.
async fn start_daemon(daemon: &Path, log: &Path) -> Result<()> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    // Its output goes to a file, not a pipe: a daemon's child may keep the descriptor
    // open for as long as it runs.
    let run = tokio::process::Command::new(daemon)
        .arg("-d")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => bail!("`{} -d` failed ({s})", daemon.display()),
        Ok(Err(e)) => bail!("starting `{} -d`: {e}", daemon.display()),
        Err(_) => bail!("`{} -d` did not return within 20 s", daemon.display()),
    }
}

/// Makes sure libvirtd answers on `qemu:///system`, starting virtlogd and libvirtd when it
/// does not (see the module's overview); their output goes to `<dir>/libvirt-start.log`.
pub async fn ensure_libvirt(dir: &Path) -> Result<()> {
    let missing = |what: &str| {
        anyhow::anyhow!("--compute needs libvirt, and {what} is not installed: run scripts/deps.sh")
    };
    let virsh = find_program("virsh").ok_or_else(|| missing("virsh"))?;
    if libvirt_answers(&virsh).await {
        return Ok(());
    }
    let virtlogd = find_program("virtlogd").ok_or_else(|| missing("virtlogd"))?;
    let libvirtd = find_program("libvirtd").ok_or_else(|| missing("libvirtd"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "libvirtd does not answer on {LIBVIRT_URI}, and starting it takes root: \
             run `sudo virtlogd -d; sudo libvirtd -d` (or `stratus dev up --compute` as root)"
        );
    }
    let log = dir.join("libvirt-start.log");
    // virtlogd may run already (only libvirtd was missing): its failure is only a note.
    let logd = start_daemon(&virtlogd, &log).await.err();
    start_daemon(&libvirtd, &log).await?;
    eprintln!("started virtlogd and libvirtd (the machine's daemons: `stratus dev down` leaves them running)");
    let deadline = Instant::now() + LIBVIRT_WAIT;
    while Instant::now() < deadline {
        if libvirt_answers(&virsh).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "libvirtd does not answer on {LIBVIRT_URI} {} s after `libvirtd -d`{}; see {}",
        LIBVIRT_WAIT.as_secs(),
        logd.map(|e| format!(" ({e:#})")).unwrap_or_default(),
        log.display()
    )
}

/// What `log` holds past byte `from` (all of it if it is shorter: it was truncated).
fn log_since(log: &Path, from: u64) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    let start = if bytes.len() as u64 >= from {
        from as usize
    } else {
        0
    };
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Waits until the agent in `node_dir` announces its address in its log past byte `from`.
async fn wait_announced(what: &str, node_dir: &Path, from: u64) -> Result<String> {
    let log = node_dir.join("log");
    let deadline = Instant::now() + ANNOUNCE_WAIT;
    loop {
        if let Some(a) = announced(&log_since(&log, from)) {
            return Ok(a);
        }
        if super::running_pid(node_dir).is_none() {
            bail!(
                "{what} exited; last lines of {}:\n{}",
                log.display(),
                super::log_tail(node_dir)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not say where it listens (`{ANNOUNCEMENT}ADDR`) within {} s; see {}",
                ANNOUNCE_WAIT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the compute agent of the cluster in `dir` unless it runs already, and waits
/// until it listens.
pub async fn start_agent(
    dir: &Path,
    endpoints: &[String],
    c: &DevCompute,
    tls: Option<&Path>,
) -> Result<Agent> {
    check_name(&c.compute_name)?;
    let node_dir = dir.join(&c.compute_name);
    fs::create_dir_all(&node_dir)?;
    let what = format!("compute agent {}", c.compute_name);
    let addr_file = node_dir.join("addr");
    let addr = if super::running_pid(&node_dir).is_some() {
        // Running already: the address kept when it was started, else the last it said.
        let kept = fs::read_to_string(&addr_file)
            .ok()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
        match kept.or_else(|| announced(&log_since(&node_dir.join("log"), 0))) {
            Some(a) => a,
            None => bail!(
                "{what} runs (pid file in {}) but its address is unknown: stop it with `stratus dev down`",
                node_dir.display()
            ),
        }
    } else {
        let bin = super::sibling_binary("stratus-compute")?;
        let args = agent_args(endpoints, c, &node_dir, &run_dir(dir, &c.compute_name), tls);
        let saved = node_dir.join(ARGS_FILE);
        fs::write(&saved, serde_json::to_vec(&args)?)
            .with_context(|| format!("writing {}", saved.display()))?;
        let from = fs::metadata(node_dir.join("log")).map_or(0, |m| m.len());
        super::spawn(&bin, &args, &node_dir)?;
        wait_announced(&what, &node_dir, from).await?
    };
    super::wait_listening(&what, &addr, &node_dir).await?;
    fs::write(&addr_file, &addr).with_context(|| format!("writing {}", addr_file.display()))?;
    Ok(Agent {
        name: c.compute_name.clone(),
        addr,
        node_dir,
    })
}

/// Where `up --compute` keeps an agent's command line, so `up` can restart it.
const ARGS_FILE: &str = "args.json";

/// Restarts the agents `up --compute` started in `dir` that are not running (with the
/// arguments they were started with); the first, if any.
pub async fn restart_agents(dir: &Path) -> Result<Option<Agent>> {
    let mut first = None;
    for e in fs::read_dir(dir)?.flatten() {
        let node_dir = e.path();
        let Ok(saved) = fs::read(node_dir.join(ARGS_FILE)) else {
            continue;
        };
        let args: Vec<String> = serde_json::from_slice(&saved)
            .with_context(|| format!("reading {}", node_dir.join(ARGS_FILE).display()))?;
        let name = e.file_name().to_string_lossy().to_string();
        let what = format!("compute agent {name}");
        let addr = if super::running_pid(&node_dir).is_some() {
            fs::read_to_string(node_dir.join("addr"))
                .map(|a| a.trim().to_string())
                .unwrap_or_default()
        } else {
            ensure_libvirt(dir).await?;
            let bin = super::sibling_binary("stratus-compute")?;
            let from = fs::metadata(node_dir.join("log")).map_or(0, |m| m.len());
            super::spawn(&bin, &args, &node_dir)?;
            let addr = wait_announced(&what, &node_dir, from).await?;
            super::wait_listening(&what, &addr, &node_dir).await?;
            fs::write(node_dir.join("addr"), &addr)?;
            addr
        };
        if first.is_none() {
            first = Some(Agent {
                name,
                addr,
                node_dir,
            });
        }
    }
    Ok(first)
}

/// The compute lines of `up`'s report, after the `openstack` ones.
pub fn print_hints() {
    println!("  Compute (Nova v2.1): flavors m1.tiny … m1.xlarge; servers boot from volumes of this cluster");
    println!("  scripts/build-guest-image.sh /tmp/stratus-guest   # a small guest image (serial console)");
    println!("  openstack image create --file /tmp/stratus-guest/stratus-guest.raw --disk-format raw guest");
    println!(
        "  openstack server create --flavor m1.tiny --image guest --boot-from-volume 1 --wait s1"
    );
    println!(
        "  openstack console log show s1; openstack server stop s1; openstack server delete s1"
    );
    println!("  stratus server list; stratus compute list   (hosts: state, virt, reserved/total)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_gets_the_agreed_arguments() {
        let mut c = DevCompute {
            compute: true,
            compute_name: "compute-1".into(),
            ..Default::default()
        };
        let eps = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let dir = Path::new("/d");
        let run = run_dir(dir, "compute-1");
        let args = agent_args(&eps, &c, &dir.join("compute-1"), &run, None);
        let id = cluster_id(dir);
        assert_eq!(
            args,
            [
                "--meta",
                "127.0.0.1:1,127.0.0.1:2",
                "--name",
                "compute-1",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                "/d/compute-1",
                "--run-dir",
                &format!("/run/stratus-compute/{id}-compute-1"),
                "--insecure",
            ]
        );
        c.compute_vcpus = Some(2);
        c.compute_disk_gb = Some(20);
        let tls = Path::new("/d/tls/compute-1");
        let args = agent_args(&eps, &c, &dir.join("compute-1"), &run, Some(tls));
        assert_eq!(
            args[10..],
            [
                "--vcpus",
                "2",
                "--disk-gb",
                "20",
                "--tls",
                "/d/tls/compute-1"
            ]
        );
    }

    #[test]
    fn clusters_have_short_stable_distinct_ids() {
        let a = cluster_id(Path::new("/home/u/.local/share/stratus/dev"));
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, cluster_id(Path::new("/home/u/.local/share/stratus/dev")));
        assert_ne!(a, cluster_id(Path::new("/tmp/other")));
    }

    #[test]
    fn the_address_is_the_last_one_announced() {
        let log = "old line\nstratus-compute listening on 127.0.0.1:1\n\
                   2026-01-01 INFO something\nstratus-compute listening on http://127.0.0.1:2/\n\
                   more\n";
        assert_eq!(announced(log).as_deref(), Some("127.0.0.1:2"));
        assert_eq!(announced("starting\n"), None);
        assert_eq!(announced("stratus-compute listening on \n"), None);
    }

    #[test]
    fn log_reads_start_where_the_new_process_began() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        fs::write(&p, "stratus-compute listening on 127.0.0.1:1\n").unwrap();
        let from = fs::metadata(&p).unwrap().len();
        assert_eq!(announced(&log_since(&p, from)), None);
        fs::write(&p, "x\n").unwrap(); // truncated: read from the start
        assert_eq!(log_since(&p, from), "x\n");
        assert_eq!(log_since(&d.path().join("none"), 0), "");
    }

    #[test]
    fn host_names_are_plain_and_taken_by_no_other_service() {
        assert!(check_name("compute-1").is_ok());
        assert!(check_name("c_2.x").is_ok());
        for bad in ["", "..", "a/b", "proxy", "meta-1", "storage-3", "sp ace"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
