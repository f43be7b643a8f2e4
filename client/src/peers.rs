//! Connections to storage nodes: one lazily connected gRPC channel per address, shared.
//! Clients made here stamp the current transaction id on every call
//! ([`crate::service::trace`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use stratus_proto::storage::db_client::DbClient;
use stratus_proto::storage::object_client::ObjectClient;
use tonic::transport::{Channel, Endpoint};

use crate::service::trace::{Stamp, Traced};

/// Largest gRPC message a storage client or server accepts (data chunks are ≤ 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// HTTP/2 flow-control windows: large enough that a 1 MiB data message never waits for a
/// window update round trip (the default 64 KiB windows cap a stream's throughput).
pub const STREAM_WINDOW: u32 = 8 << 20;
/// The connection-wide window (shared by every stream to one node).
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// How long connecting to a node may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Channels to storage nodes by `host:port`.
#[derive(Default)]
pub struct Peers {
    map: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// The channel to `addr` (created on first use; connects lazily, reconnects by itself;
    /// TLS as this process when an identity is installed).
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut map = self.map.lock().expect("peers lock");
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| tonic::Status::invalid_argument(format!("bad node address {addr}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let ch = crate::tls::net::channel(ch, crate::tls::Role::Storage);
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// An object client for `addr` (its calls carry the current transaction id).
    pub fn object(&self, addr: &str) -> Result<ObjectClient<Traced>, tonic::Status> {
        Ok(
            ObjectClient::with_interceptor(self.channel(addr)?, Stamp::default())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    /// A database client for `addr` (its calls carry the current transaction id).
    pub fn db(&self, addr: &str) -> Result<DbClient<Traced>, tonic::Status> {
        Ok(
            DbClient::with_interceptor(self.channel(addr)?, Stamp::default())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }
}
