//! One meta node: storage, Raft and the gRPC services, built from a [`Config`] and served on a
//! listener the caller bound (tests bind port 0).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::{ServerState, SnapshotPolicy};
use stratus_client::service::metrics::RpcLayer;
use stratus_client::tls::{self, PeerIo, Role};
use stratus_proto::meta::meta_server::MetaServer as MetaGrpcServer;
use tokio::net::TcpListener;

use crate::grpc::meta_service::MetaService;
use crate::network::Network;
use crate::peer;
use crate::store::{self, SmReader};
use crate::{MetaError, NodeId, Raft};

pub use stratus_client::meta::MAX_CLIENT_MESSAGE_BYTES;

/// Default Raft heartbeat interval (ms).
pub const DEFAULT_HEARTBEAT_MS: u64 = 150;
/// Default election timeout range (ms).
pub const DEFAULT_ELECTION_MS: (u64, u64) = (750, 1500);
/// Default log entries between snapshots: etcd's default too. A snapshot copies the whole
/// state machine (~115 MB with the dedup window and the history after a benchmark), on
/// every member at the same index; a 6 s run at 64 writes in flight that held one made
/// 3,547 writes/s against ~5,700 for the runs beside it. At 20,000 entries that came every
/// ~25 s at 1 write in flight.
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 100_000;
/// Default log entries kept behind a snapshot.
pub const DEFAULT_KEEP_LOGS: u64 = 1_000;

/// How often a node re-reads whether it leads, for the log store's choice of sync path.
const LEADING_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// How a meta node runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; unique in the cluster, never reused after removal.
    pub id: NodeId,
    /// Where the database, snapshots and the address file live.
    pub data_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot (so slightly lagging followers need no snapshot).
    pub keep_logs: u64,
    /// Live WAL bytes past which the oldest WAL file's memtables are flushed (and the file
    /// kept for reuse).
    pub wal_bytes: u64,
}

impl Config {
    /// Defaults for node `id` with data in `data_dir`.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            id,
            data_dir: data_dir.into(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_min_ms: DEFAULT_ELECTION_MS.0,
            election_max_ms: DEFAULT_ELECTION_MS.1,
            snapshot_logs: DEFAULT_SNAPSHOT_LOGS,
            keep_logs: DEFAULT_KEEP_LOGS,
            wal_bytes: store::DEFAULT_WAL_BYTES,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, MetaError> {
        openraft::Config {
            cluster_name: "stratus-meta".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.keep_logs,
            snapshot_max_chunk_size: 1024 * 1024,
            // openraft times each AppendEntries out after one heartbeat interval, whatever its
            // size: small batches keep catch-up of large values (ring blobs) under that.
            max_payload_entries: 32,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Config(e.to_string()))
    }
}

/// A running meta node.
pub struct MetaServer {
    cfg: Config,
    addr: String,
    raft: Raft,
    reader: SmReader,
}

impl MetaServer {
    /// Open storage and start Raft for a node reachable at `addr`.
    pub async fn new(cfg: Config, addr: String) -> Result<Self, MetaError> {
        let raft_cfg = Arc::new(cfg.raft_config()?);
        let (log, sm) = store::open(&cfg.data_dir, cfg.wal_bytes).await?;
        let leading = log.leading();
        let reader = sm.reader();
        let raft = Raft::new(cfg.id, raft_cfg, Network, log, sm)
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))?;
        // Tell the log store whether this node leads (it picks the faster sync path). Polled:
        // openraft's metrics change several times per write, and waking a task for each
        // costs more than a stale flag, which is safe either way.
        let metrics = raft.metrics();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEADING_POLL);
            loop {
                tick.tick().await;
                let state = metrics.borrow().state;
                leading.store(state == ServerState::Leader, Ordering::Relaxed);
                if metrics.has_changed().is_err() {
                    return;
                }
            }
        });
        Ok(MetaServer {
            cfg,
            addr,
            raft,
            reader,
        })
    }

    /// The Raft handle (for in-process use and tests).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Serve both gRPC services on `listener` until `shutdown` resolves, then stop Raft.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MetaError> {
        // One port for Raft peers and gRPC. With TLS (the process's identity), the caller
        // picks by ALPN and only a `meta` certificate may speak Raft; a plain node tells a
        // Raft peer (it opens with `peer::MAGIC`) from an HTTP/2 client by its first bytes.
        let (grpc_tx, grpc_rx) = tokio::sync::mpsc::channel::<std::io::Result<PeerIo>>(64);
        let raft = self.raft.clone();
        let identity = tls::current();
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, remote) = tls::net::accept_tcp(&listener).await;
                let (grpc_tx, raft, identity) = (grpc_tx.clone(), raft.clone(), identity.clone());
                tokio::spawn(async move {
                    let io = match tls::net::accept(stream, identity.as_deref()).await {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::info!(%remote, error = %e, "refused a connection");
                            return;
                        }
                    };
                    let raft_peer = match io.alpn() {
                        Some(alpn) => alpn == tls::ALPN_RAFT,
                        None if identity.is_none() => peer::is_peer(io.tcp()).await,
                        None => false,
                    };
                    if !raft_peer {
                        let _ = grpc_tx.send(Ok(io)).await;
                    } else if matches!(io.peer().role, None | Some(Role::Meta)) {
                        peer::serve(io, raft).await;
                    } else {
                        peer::refuse(io, "raft needs role meta").await;
                    }
                });
            }
        });
        let incoming = tokio_stream::wrappers::ReceiverStream::new(grpc_rx);
        let meta_svc = MetaGrpcServer::new(MetaService::new(
            self.cfg.id,
            self.addr.clone(),
            self.raft.clone(),
            self.reader.clone(),
        ))
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_encoding_message_size(64 * 1024 * 1024);
        tracing::info!(id = self.cfg.id, addr = %self.addr, "meta node serving");
        crate::metrics::install(self.raft.clone());
        let served = tonic::transport::Server::builder()
            .layer(RpcLayer)
            .layer(tls::Authorize(crate::grpc::access::policy))
            .add_service(meta_svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        acceptor.abort();
        let _ = self.raft.shutdown().await;
        served.map_err(Into::into)
    }
}

pub use stratus_client::service::{read_addr, resolve_listen, write_addr, ADDR_FILE};
