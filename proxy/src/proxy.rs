//! The proxy itself: one struct that owns what every request needs — the cluster's rings
//! and storage-node channels, TempAuth, and a small cache of account and container info.
//! It keeps no state that matters across restarts: run as many proxies as you like.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratus_client::compute::Compute;
use stratus_client::identity::{IdentityStore, Revocations};
use stratus_client::images::ImageStore;
use stratus_client::meta::MetaClient;
use stratus_client::users::UserStore;
use stratus_client::volume_ops::Volumes;
use stratus_proto::storage as pb;

use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::compute::Nova;
use crate::identity::Keystone;
use crate::image::Images;
use crate::volume::Cinder;

/// How long a proxy trusts the account and container info it read.
pub const INFO_CACHE: Duration = Duration::from_secs(5);

/// How to run a proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Meta endpoints.
    pub meta: Vec<String>,
    /// TempAuth token lifetime in seconds.
    pub token_ttl: u64,
    /// Keystone token lifetime in seconds.
    pub identity_token_ttl: u64,
    /// Longest one storage-node call may take (see [`crate::cluster::node_timeout`]).
    pub node_timeout: Duration,
    /// Longest a client may take to send its headers, or the next piece of its body
    /// (408 for a body, Swift's `client_timeout`).
    pub client_timeout: Duration,
    /// Requests handled at once; more get 503 with `Retry-After`.
    pub max_requests: usize,
    /// Storage domains for domain remap (comma-separated; empty: none).
    pub storage_domain: String,
}

/// Defaults of the limits in [`Config`].
impl Config {
    /// Swift's `client_timeout` default.
    pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default of `max_requests`.
    pub const MAX_REQUESTS: usize = 1024;
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("meta: {0}")]
    Meta(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Cached info by `(account, container)`, with when it was read.
pub(crate) type InfoCache = HashMap<(String, String), (Instant, Arc<pb::DbInfo>)>;

/// The proxy: rings, auth and a small cache of account and container info.
pub struct Proxy {
    /// Rings, placement and the storage nodes' channels.
    pub(crate) cluster: Cluster,
    /// TempAuth, and Keystone token checks.
    pub(crate) auth: Auth,
    /// The Keystone v3 API.
    pub(crate) keystone: Keystone,
    /// The Glance v2 API.
    pub(crate) images: Images,
    /// The Cinder v3 API.
    pub(crate) volumes: Cinder,
    /// The Nova v2.1 API.
    pub(crate) compute: Nova,
    /// Account and container info, by `(account, container)` (see [`crate::ops::info`]).
    pub(crate) infos: Mutex<InfoCache>,
    /// Requests in flight (one permit each).
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
    /// See [`Config::client_timeout`].
    pub(crate) client_timeout: Duration,
    /// Domain remap, when a storage domain is configured.
    pub(crate) domain_remap: Option<crate::domain_remap::DomainRemap>,
    /// The storage policies.
    pub(crate) policies: crate::policy::PolicyView,
}

impl Proxy {
    /// Connects to meta, loads the token secret and starts watching the rings.
    pub async fn new(cfg: Config) -> Result<Arc<Self>, ProxyError> {
        crate::cluster::set_node_timeout(cfg.node_timeout);
        let meta = MetaClient::new(&cfg.meta).map_err(|e| ProxyError::Meta(e.to_string()))?;
        let revocations = Revocations::follow(meta.clone())
            .await
            .map_err(|e| ProxyError::Meta(e.to_string()))?;
        let auth = Auth::new(UserStore::new(meta.clone()), cfg.token_ttl, revocations)
            .await
            .map_err(|e| ProxyError::Meta(e.to_string()))?;
        let keystone = Keystone::new(IdentityStore::new(meta.clone()), cfg.identity_token_ttl)
            .await
            .map_err(|e| ProxyError::Meta(e.to_string()))?;
        let images = Images::new(ImageStore::new(meta.clone()));
        let volumes = Cinder::new(Volumes::new(meta.clone()));
        let compute = Nova::new(Compute::new(meta.clone()), Volumes::new(meta.clone()))
            .await
            .map_err(ProxyError::Meta)?;
        let policies = crate::policy::PolicyView::follow(meta.clone()).await;
        let cluster = Cluster::new(meta).map_err(|e| ProxyError::Meta(e.to_string()))?;
        if !cluster.wait_ready(Duration::from_secs(30)).await {
            tracing::warn!("rings are not all published yet; requests get 503 until they are");
        }
        Ok(Arc::new(Self {
            cluster,
            auth,
            keystone,
            images,
            volumes,
            compute,
            infos: Mutex::new(HashMap::new()),
            inflight: Arc::new(tokio::sync::Semaphore::new(cfg.max_requests.max(1))),
            client_timeout: cfg.client_timeout,
            policies,
            domain_remap: crate::domain_remap::DomainRemap::new(
                &cfg.storage_domain,
                &crate::auth::RESELLER_PREFIXES
                    .iter()
                    .map(|(p, _)| p.trim_end_matches('_'))
                    .collect::<Vec<_>>(),
            ),
        }))
    }
}
