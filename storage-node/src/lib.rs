//! `stratus-storage`: a storage node. It serves objects and the container and account
//! databases from its local devices over gRPC, keeps listings up to date, and tells meta it
//! is alive.
//!
//! # Layout
//! - [`device`]: one device directory: its RocksDB and column families, locks, space
//!   checks, and the cache of its partition hashes.
//! - [`diskfile`]: object records (small bodies inline) and body files.
//! - [`engine`]: one device's objects behind a trait (the RocksDB + body-file engine and an
//!   in-memory twin, one conformance suite): every change is one commit by a shared rule.
//! - [`bodyfile`]: writing large bodies (direct I/O, tmp → fsync → rename).
//! - [`object`]: the `Object` gRPC service (PUT/GET/HEAD/DELETE/POST).
//! - [`db`]: container and account databases (rows, totals, listings).
//! - [`db_service`]: the `Db` gRPC service over [`db`].
//! - [`updater`]: container updates (synchronous, then async pendings) and account reports.
//! - [`hashes`]: per-suffix partition hashes, cached, that replicators compare.
//! - [`replication`]: the `Replication` gRPC service and the replicator worker.
//! - [`auditor`]: verifies every stored body; quarantines bad copies.
//! - [`maintenance`]: the object expirer and the reclaimer.
//! - [`worker`]: the `Worker` trait and the runner of every background worker.
//! - [`volume`]: volume chunks (sparse file per volume, epochs, snapshots, clones) and the
//!   `Chunk` gRPC service.
//! - [`admin`]: the `Admin` gRPC service (workers, settings, partitions held).
//! - [`peers`]: channels to other storage nodes (used by the proxy too).
//! - [`identity`]: who this node is (the address the rings name), the identity each
//!   device keeps on disk, checked at start, and whether a ring entry is one of its devices.
//!
//! One [`Node`] owns every subsystem; [`StorageServer`] serves it.

// tonic::Status (176 bytes) is the error type of every gRPC handler and client call.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod auditor;
pub mod bodyfile;
pub mod db;
pub mod db_service;
pub mod device;
pub mod diskfile;
pub mod engine;
pub mod hashes;
pub mod identity;
pub mod maintenance;
pub mod metrics;
pub mod object;
pub mod replication;
pub mod updater;
pub mod volume;
pub mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use stratus_client::meta::MetaClient;
use stratus_client::rings::{RingStore, RingWatcher};
use stratus_proto::storage::admin_server::AdminServer;
use stratus_proto::storage::chunk_server::ChunkServer;
use stratus_proto::storage::db_server::DbServer;
use stratus_proto::storage::object_server::ObjectServer;
use stratus_proto::storage::replication_server::ReplicationServer;
use tokio::net::TcpListener;

use crate::device::Device;
use stratus_client::peers::{self, Peers, MAX_MESSAGE_BYTES};
use stratus_client::records::{registration_key, DeviceReport, Registration, RECORD_VERSION};
use stratus_client::service::metrics::RpcLayer;
use stratus_client::tls::{self, Role};

/// Free bytes each device keeps back by default (writes that would use them get 507).
pub const DEFAULT_RESERVE: u64 = 64 << 20;

/// How to run a storage node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Device directories; a device's name is its directory's name.
    pub devices: Vec<PathBuf>,
    /// Meta endpoints.
    pub meta: Vec<String>,
    /// Free bytes kept back on each device.
    pub reserve: u64,
    /// Seconds each background worker idles between passes (changeable per worker with
    /// `stratus worker set`).
    pub worker_interval: f64,
    /// The address the rings name this node by, when it is not the listen address (a
    /// node listening on `0.0.0.0` must say which address it is).
    pub advertise: Option<String>,
}

/// Default idle time between background passes, seconds.
pub const DEFAULT_WORKER_INTERVAL: f64 = 30.0;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error("device path {0} has no usable name")]
    BadDevicePath(PathBuf),
    #[error("two devices are named {0}")]
    DuplicateDevice(String),
    #[error("meta: {0}")]
    Meta(String),
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("refusing to start: {0}")]
    Identity(String),
}

/// Everything a storage node owns.
pub struct Node {
    /// Devices by name.
    pub devices: HashMap<String, Arc<Device>>,
    /// The account ring (where container stats are reported).
    pub account_ring: RingWatcher,
    /// The container ring (where object rows go).
    pub container_ring: RingWatcher,
    /// The object ring of each storage policy, by index (`object`, `object-1`, …; a
    /// policy whose ring is not published places nothing).
    pub object_rings: Vec<RingWatcher>,
    /// The address this node serves on (as the rings name it), once it serves.
    pub addr: OnceLock<String>,
    /// The background workers, once started.
    pub workers: OnceLock<Vec<Arc<worker::Running>>>,
    /// Channels to other nodes.
    pub peers: Peers,
    /// The meta cluster.
    pub meta: MetaClient,
    /// Wakes the account reporter.
    pub dirty: tokio::sync::Notify,
    /// Volume chunks of every device.
    pub chunks: volume::ChunkStore,
}

impl Node {
    /// The device named `name`, or NOT_FOUND.
    pub fn device(&self, name: &str) -> Result<Arc<Device>, tonic::Status> {
        self.devices
            .get(name)
            .cloned()
            .ok_or_else(|| device::DeviceError::Unknown(name.to_string()).into())
    }

    /// The devices that are there (not pulled or wiped), in name order: what a background
    /// pass walks.
    pub fn present_devices(&self) -> Vec<Arc<Device>> {
        let mut v: Vec<_> = self
            .devices
            .values()
            .filter(|d| d.check_present().is_ok())
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The ring placing `space`.
    pub fn ring(&self, space: device::Space) -> &RingWatcher {
        match space {
            device::Space::Object(p) => &self.object_rings[usize::from(p)],
            device::Space::Container => &self.container_ring,
            device::Space::Account => &self.account_ring,
        }
    }
}

/// A running storage node.
pub struct StorageServer {
    node: Arc<Node>,
    worker_interval: f64,
    advertise: Option<String>,
}

impl StorageServer {
    /// Opens every device and starts watching the rings.
    pub async fn new(cfg: Config) -> Result<Self, StorageError> {
        let mut devices = HashMap::new();
        for path in &cfg.devices {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| StorageError::BadDevicePath(path.clone()))?
                .to_string();
            let dev = Device::open(&name, path, cfg.reserve)?;
            if devices.insert(name.clone(), dev).is_some() {
                return Err(StorageError::DuplicateDevice(name));
            }
        }
        let meta = MetaClient::new(&cfg.meta).map_err(|e| StorageError::Meta(e.to_string()))?;
        let store = RingStore::new(meta.clone());
        let ring = |name| {
            RingWatcher::spawn(store.clone(), name).map_err(|e| StorageError::Meta(e.to_string()))
        };
        let account_ring = ring("account")?;
        let container_ring = ring("container")?;
        let object_rings = device::OBJECT_RINGS
            .into_iter()
            .map(ring)
            .collect::<Result<Vec<_>, _>>()?;
        // Serving before the rings are known would defer every listing update.
        for (name, w) in [("account", &account_ring), ("container", &container_ring)] {
            if w.wait_for(1, Duration::from_secs(30)).await.is_none() {
                tracing::warn!(
                    ring = name,
                    "ring not published yet; listing updates wait for it"
                );
            }
        }
        let node = Node {
            devices,
            account_ring,
            container_ring,
            object_rings,
            addr: OnceLock::new(),
            workers: OnceLock::new(),
            peers: Peers::default(),
            meta,
            dirty: tokio::sync::Notify::new(),
            chunks: volume::ChunkStore::default(),
        };
        Ok(Self {
            node: Arc::new(node),
            worker_interval: cfg.worker_interval,
            advertise: cfg.advertise,
        })
    }

    /// Serves on `listener` until `shutdown` resolves; background work runs meanwhile.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StorageError> {
        let addr = identity::address(&listener.local_addr()?, self.advertise.as_deref())
            .map_err(StorageError::Identity)?;
        // Who each disk is, checked against what the rings say (those published by now).
        let published: Vec<(&str, Arc<stratus_core::ring::Ring>)> = device::Space::all()
            .filter_map(|s| self.node.ring(s).current().map(|r| (s.ring(), r)))
            .collect();
        let rings: Vec<(&str, &stratus_core::ring::Ring)> =
            published.iter().map(|(n, r)| (*n, &**r)).collect();
        let mut disks = Vec::new();
        // In name order, so the same disagreement is always reported the same way.
        let mut devs: Vec<_> = self.node.devices.values().collect();
        devs.sort_by(|a, b| a.name.cmp(&b.name));
        for dev in devs {
            let expected = identity::ring_disk(&rings, &addr, &dev.name);
            let id = identity::check(dev, &addr, expected).map_err(StorageError::Identity)?;
            let _ = dev.disk.set(id.id.clone());
            disks.push((dev.name.clone(), id.id));
        }
        identity::check_rings(&rings, &addr, &disks).map_err(StorageError::Identity)?;
        let _ = self.node.addr.set(addr.clone());
        let workers: Vec<Box<dyn worker::Worker>> = vec![
            Box::new(replication::Replicator::default()),
            Box::new(auditor::Auditor),
            Box::new(updater::Updater),
            Box::new(updater::AccountReporter),
            Box::new(maintenance::Expirer),
            Box::new(maintenance::Reclaimer),
            Box::new(volume::VolumeRepairer),
        ];
        let (running, mut tasks) = worker::spawn_all(&self.node, workers, self.worker_interval);
        let _ = self.node.workers.set(running);
        admin::load_settings(&self.node).await;
        let disks: HashMap<String, String> = disks.into_iter().collect();
        tasks.push(tokio::spawn(register(self.node.clone(), addr, disks)));
        let object = ObjectServer::new(object::ObjectService::new(self.node.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let db = DbServer::new(db_service::DbService::new(self.node.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let replication =
            ReplicationServer::new(replication::ReplicationService::new(self.node.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let chunk = ChunkServer::new(volume::ChunkService::new(self.node.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let admin = AdminServer::new(admin::AdminService::new(self.node.clone()));
        // TLS with the process's identity (or plain with --insecure); TCP_NODELAY, so a
        // reply written in two segments does not wait for a delayed ACK.
        let incoming = tls::net::incoming(listener, tls::current());
        metrics::install(self.node.clone());
        let r = tonic::transport::Server::builder()
            .initial_stream_window_size(peers::STREAM_WINDOW)
            .initial_connection_window_size(peers::CONNECTION_WINDOW)
            .layer(RpcLayer)
            .layer(tls::Authorize(policy))
            .add_service(object)
            .add_service(db)
            .add_service(replication)
            .add_service(chunk)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        for t in tasks {
            t.abort();
        }
        Ok(r?)
    }
}

/// Ends the process at a crash point (see the `failpoints` feature): no unwinding, no
/// destructors, no flushing, as a power cut or `kill -9` would.
pub fn crash(at: &str) -> ! {
    eprintln!("crash point {at}: aborting");
    std::process::abort()
}

/// Who may call what on a storage node, by the caller's certificate: worker settings
/// (`Admin`) need `admin`; replication between nodes needs `storage` (or `admin`, for
/// `stratus` health checks); objects, databases and volume chunks are for the proxy, other
/// storage nodes, compute agents and operators, never for meta.
pub fn policy(path: &str, role: Role) -> Result<(), String> {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let service = service.rsplit('.').next().unwrap_or("");
    let allowed: &[Role] = match service {
        "Admin" => &[Role::Admin],
        "Replication" => &[Role::Storage, Role::Admin],
        _ => &[Role::Proxy, Role::Storage, Role::Compute, Role::Admin],
    };
    if allowed.contains(&role) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(names.join(" or "))
}

/// How often the node looks at its devices, and the longest it leaves its registration
/// unrefreshed.
const REGISTER_CHECK: Duration = Duration::from_secs(10);
const REGISTER_REFRESH: Duration = Duration::from_secs(300);

/// Whether a new report differs enough from the last one written to be worth a Raft write:
/// a device came or went, or its free space moved by more than 1% of its capacity.
fn changed(old: &[DeviceReport], new: &[DeviceReport]) -> bool {
    old.len() != new.len()
        || old.iter().zip(new).any(|(a, b)| {
            a.name != b.name || a.ok != b.ok || a.free.abs_diff(b.free) > b.capacity / 100
        })
}

/// Tells meta this node's address, devices and free space: at start, whenever they change
/// noticeably, and at least every 5 minutes (each registration is a committed write, so
/// an idle node does not write every few seconds).
async fn register(node: Arc<Node>, addr: String, disks: HashMap<String, String>) {
    let mut last: Option<(Vec<DeviceReport>, tokio::time::Instant)> = None;
    loop {
        let mut devices: Vec<DeviceReport> = node
            .devices
            .values()
            .map(|d| {
                let u = d.usage();
                DeviceReport {
                    name: d.name.clone(),
                    disk: disks.get(&d.name).cloned().unwrap_or_default(),
                    capacity: u.as_ref().map_or(0, |u| u.0),
                    free: u.as_ref().map_or(0, |u| u.1),
                    ok: u.is_ok(),
                }
            })
            .collect();
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        let due = match &last {
            None => true,
            Some((old, at)) => changed(old, &devices) || at.elapsed() >= REGISTER_REFRESH,
        };
        if due {
            let reg = Registration {
                v: RECORD_VERSION,
                addr: addr.clone(),
                devices: devices.clone(),
                updated: stratus_core::time::now_secs(),
            };
            let body = serde_json::to_vec(&reg).expect("plain struct serializes");
            match node.meta.put(registration_key(&addr), body).await {
                Ok(_) => last = Some((devices, tokio::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, "registering with meta failed; will retry"),
            }
        }
        tokio::time::sleep(REGISTER_CHECK).await;
    }
}
