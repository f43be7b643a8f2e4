//! A cluster of real meta processes for tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use stratus_client::meta::MetaClient;
use stratus_proto::meta as pb;
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_stratus-meta");
/// Upper bound for any wait in these tests; far above what a healthy run needs.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Node {
    pub id: u64,
    pub dir: PathBuf,
    pub addr: String,
    child: Option<Child>,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
    args: Vec<String>,
}

/// One cluster CA for the whole test process: every node gets the `meta` identity, and the
/// test process speaks as `admin` (installed once, for every client it makes).
pub fn pki() -> &'static Path {
    static PKI: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, meta) = PKI.get_or_init(|| {
        use stratus_client::tls::{self, certs, Identity, Role};
        let tmp = tempfile::tempdir().unwrap();
        let ca = certs::Ca::create(&tmp.path().join("ca")).unwrap();
        let (admin, meta) = (tmp.path().join("admin"), tmp.path().join("meta"));
        ca.issue(Role::Admin, "tests", &admin, certs::Validity::default())
            .unwrap();
        ca.issue(Role::Meta, "meta", &meta, certs::Validity::default())
            .unwrap();
        tls::install(Some(Identity::load(&admin).unwrap()));
        (tmp, meta)
    });
    meta
}

/// Poll `f` until it returns `Some`, or panic after [`WAIT`] naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// Start `n` nodes with extra flags and initialize them as voters.
    pub async fn start(n: u64, args: &[&str]) -> Cluster {
        let mut c = Cluster {
            tmp: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            c.spawn(id).await;
        }
        let members: BTreeMap<u64, String> =
            c.nodes.values().map(|n| (n.id, n.addr.clone())).collect();
        let first = c.nodes[&1].addr.clone();
        c.client()
            .initialize(&first, members)
            .await
            .expect("initialize");
        c.leader().await;
        c
    }

    /// Start (or restart) node `id` with its data dir; wait until it answers.
    pub async fn spawn(&mut self, id: u64) {
        self.spawn_env(id, &[]).await
    }

    /// [`Cluster::spawn`] with extra environment variables (crash points: `FAILPOINTS`).
    pub async fn spawn_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let dir = self.tmp.path().join(format!("n{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .unwrap();
        let child = Command::new(BIN)
            .args([
                "--id",
                &id.to_string(),
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--tls",
                pki().to_str().unwrap(),
                // As `stratus dev up` runs its nodes.
                "--worker-threads",
                "1",
            ])
            .args([
                "--heartbeat-ms",
                "100",
                "--election-min-ms",
                "500",
                "--election-max-ms",
                "1000",
            ])
            .args(&self.args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn stratus-meta");
        let addr = eventually("node address", || {
            let dir = dir.clone();
            async move {
                let addr = stratus_client::service::read_addr(&dir)?.to_string();
                MetaClient::new(&[&addr])
                    .ok()?
                    .status_of(&addr)
                    .await
                    .ok()
                    .map(|_| addr)
            }
        })
        .await;
        self.nodes.insert(
            id,
            Node {
                id,
                dir,
                addr,
                child: Some(child),
            },
        );
    }

    /// Waits (bounded) for node `id` to end by itself; returns whether it did.
    pub async fn exited(&mut self, id: u64) -> bool {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(child) = node.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                node.child = None;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// SIGKILL node `id` and reap it.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(mut child) = node.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Kill node `id` and delete its data directory (a replaced disk).
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        let dir = self.nodes[&id].dir.clone();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.addr.clone())
            .collect()
    }

    /// A client that knows every running node.
    pub fn client(&self) -> MetaClient {
        MetaClient::new(&self.endpoints()).unwrap()
    }

    /// A client that knows only node `id` (it still follows redirects to the leader).
    pub fn client_of(&self, id: u64) -> MetaClient {
        MetaClient::new(&[&self.nodes[&id].addr]).unwrap()
    }

    /// Node `id`'s own copy of the keys under `prefix` (a serializable read, served there).
    pub async fn local_prefix(&self, id: u64, prefix: &str) -> Vec<pb::KeyValue> {
        self.client_of(id)
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                prefix: true,
                serializable: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .kvs
    }

    pub async fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        let addr = &self.nodes[&id].addr;
        MetaClient::new(&[addr]).ok()?.status_of(addr).await.ok()
    }

    /// The leader every running node agrees on, once a linearizable read succeeds.
    pub async fn leader(&self) -> u64 {
        eventually("one agreed leader", || async {
            let mut leaders = Vec::new();
            for id in self
                .nodes
                .values()
                .filter(|n| n.child.is_some())
                .map(|n| n.id)
            {
                let st = self.status(id).await?;
                if st.members.iter().any(|m| m.id == id && m.voter) {
                    leaders.push(st.leader_id?);
                }
            }
            let first = *leaders.first()?;
            if !leaders.iter().all(|l| *l == first) {
                return None;
            }
            self.client().revision().await.ok()?;
            Some(first)
        })
        .await
    }

    /// Wait until node `id` has applied at least what the leader has.
    pub async fn caught_up(&self, id: u64) {
        let leader = self.leader().await;
        let target = self
            .status(leader)
            .await
            .and_then(|s| s.applied)
            .unwrap_or(0);
        eventually(&format!("node {id} applied {target}"), || async {
            (self.status(id).await?.applied? >= target).then_some(())
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
