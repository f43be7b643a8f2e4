//! The cluster's storage policies as this proxy sees them (see
//! [`stratus_client::policies`]): read from meta at start and again every
//! [`REFRESH`], so a policy added with `stratus policy add` is served within seconds.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use stratus_client::meta::MetaClient;
use stratus_client::policies::{self, Policies};
use tokio::task::JoinHandle;

/// How often the policy list is read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The newest policy list read.
pub struct PolicyView {
    current: Arc<RwLock<Arc<Policies>>>,
    task: JoinHandle<()>,
}

impl Drop for PolicyView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyView {
    /// Reads the list (a cluster that cannot answer yet starts with the default one) and
    /// keeps reading it.
    pub async fn follow(meta: MetaClient) -> Self {
        let first = match policies::load(&meta).await {
            Ok((p, _)) => p,
            Err(e) => {
                tracing::warn!(error = %e, "storage policies not read yet; using the default until they are");
                Policies::default()
            }
        };
        let current = Arc::new(RwLock::new(Arc::new(first)));
        let shared = current.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                match policies::load(&meta).await {
                    Ok((p, _)) => {
                        let mut cur = shared.write().expect("policy lock");
                        if **cur != p {
                            tracing::info!(policies = p.all().len(), "storage policies changed");
                            *cur = Arc::new(p);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "could not read the storage policies"),
                }
            }
        });
        Self { current, task }
    }

    /// The policies now.
    pub fn current(&self) -> Arc<Policies> {
        self.current.read().expect("policy lock").clone()
    }
}
