//! The `Admin` gRPC service: what `stratus worker list|set` and `stratus cluster health`
//! ask a node. Worker settings changed here are kept in meta
//! (`/settings/storage/<addr>/<worker>`) and applied again when the node restarts.

use std::sync::Arc;

use stratus_client::records::{settings_key, WorkerSettings, RECORD_VERSION};
use stratus_proto::storage as pb;
use stratus_proto::storage::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::device::{Device, Space};
use crate::hashes;
use crate::Node;

/// The gRPC admin service of one node.
pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn workers(&self) -> pb::WorkersReply {
        pb::WorkersReply {
            node: self.node.addr.get().cloned().unwrap_or_default(),
            workers: self
                .node
                .workers
                .get()
                .map(|w| w.iter().map(|r| r.status()).collect())
                .unwrap_or_default(),
        }
    }
}

/// Applies the settings kept in meta for this node (after a restart), read in one request.
pub async fn load_settings(node: &Node) {
    let Some(addr) = node.addr.get() else { return };
    let Some(workers) = node.workers.get() else {
        return;
    };
    let stored = match node.meta.range_prefix(settings_key(addr, ""), 0).await {
        Ok(r) => r.kvs,
        Err(e) => {
            tracing::warn!(error = %e, "could not read worker settings from meta");
            return;
        }
    };
    for kv in stored {
        let key = String::from_utf8_lossy(&kv.key);
        let Some(w) = workers.iter().find(|w| key == settings_key(addr, w.name)) else {
            continue;
        };
        let Some(m) = WorkerSettings::from_json(&kv.value) else {
            continue;
        };
        for (k, v) in m.settings {
            if let Err(e) = w.settings.set(&k, v) {
                tracing::warn!(worker = w.name, error = %e, "ignoring a stored setting");
            }
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn workers(
        &self,
        _: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersReply>, Status> {
        Ok(Response::new(self.workers()))
    }

    async fn set_worker(
        &self,
        req: Request<pb::SetWorkerRequest>,
    ) -> Result<Response<pb::WorkersReply>, Status> {
        let req = req.into_inner();
        let workers = self.node.workers.get().map(Vec::as_slice).unwrap_or(&[]);
        let Some(w) = workers.iter().find(|w| w.name == req.worker) else {
            let names: Vec<_> = workers.iter().map(|w| w.name).collect();
            return Err(Status::not_found(format!(
                "no worker {:?} on this node (workers: {})",
                req.worker,
                names.join(", ")
            )));
        };
        w.settings
            .set(&req.setting, req.value)
            .map_err(Status::invalid_argument)?;
        // Kept in meta so the change survives a restart; the node keeps it either way.
        if let Some(addr) = self.node.addr.get() {
            let all = WorkerSettings {
                v: RECORD_VERSION,
                settings: w.status().settings.into_iter().collect(),
            };
            let body = serde_json::to_vec(&all).expect("a map serializes");
            if let Err(e) = self.node.meta.put(settings_key(addr, w.name), body).await {
                return Err(Status::unavailable(format!(
                    "setting applied, but not kept in meta (lost at restart): {e}"
                )));
            }
        }
        w.wake.notify_one();
        Ok(Response::new(self.workers()))
    }

    async fn partitions(
        &self,
        req: Request<pb::PartitionsRequest>,
    ) -> Result<Response<pb::PartitionsReply>, Status> {
        let ring = req.into_inner().ring;
        let space = Space::from_ring(&ring)
            .ok_or_else(|| Status::invalid_argument(format!("no ring named {ring:?}")))?;
        let devices = self.node.present_devices();
        let copies = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for dev in devices {
                for part in hashes::local_partitions(&dev, space)? {
                    let Some(d) = hashes::digest(&dev, space, part)? else {
                        continue;
                    };
                    out.push(pb::PartitionCopy {
                        device: dev.name.clone(),
                        part,
                        hash: d.hash.to_vec().into(),
                        items: d.items,
                    });
                }
            }
            Ok::<_, crate::device::DeviceError>(out)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let devices = self
            .node
            .devices
            .values()
            .map(|d| pb::DeviceState {
                device: d.name.clone(),
                io_errors: d.io_errors.load(std::sync::atomic::Ordering::Relaxed),
                failing: d.failing(),
                quarantined: quarantined(d).len() as u64,
            })
            .collect();
        Ok(Response::new(pb::PartitionsReply { copies, devices }))
    }

    async fn quarantine(
        &self,
        req: Request<pb::QuarantineRequest>,
    ) -> Result<Response<pb::QuarantineReply>, Status> {
        let req = req.into_inner();
        let now = stratus_core::time::now_secs();
        let mut files = Vec::new();
        let mut purged = 0;
        for d in self.node.devices.values() {
            for (path, f) in quarantined(d) {
                let old = now.saturating_sub(f.at) >= req.older_than_secs;
                if req.purge && old {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::warn!(device = %d.name, file = %f.name, "quarantined copy purged by an operator");
                            purged += 1;
                            continue;
                        }
                        Err(e) => {
                            return Err(Status::internal(format!(
                                "removing {}: {e}",
                                path.display()
                            )))
                        }
                    }
                }
                files.push(f);
            }
        }
        files.sort_by(|a, b| (&a.device, &a.name).cmp(&(&b.device, &b.name)));
        Ok(Response::new(pb::QuarantineReply { files, purged }))
    }
}

/// The files in a device's quarantine, with their paths.
pub fn quarantined(dev: &Device) -> Vec<(std::path::PathBuf, pb::QuarantinedFile)> {
    let Ok(rd) = std::fs::read_dir(dev.quarantine_dir()) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let at = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Some((
                e.path(),
                pb::QuarantinedFile {
                    device: dev.name.clone(),
                    name: e.file_name().to_string_lossy().into_owned(),
                    bytes: m.len(),
                    at,
                },
            ))
        })
        .collect()
}
