//! The volumes this agent serves to its guests: each attached as its one writer (which
//! fences any earlier writer, such as this agent before a restart) and exported over NBD
//! on a unix socket QEMU connects to.
//!
//! A volume is served only for the server its Cinder attachment names, so an agent that
//! lost track (a crash between releasing a volume and saying so) never takes a volume
//! from its new owner. Attaching can take seconds (catch-up of stale replicas): each
//! volume has a lock of its own, so one slow volume never holds up the others.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use stratus_client::nbd::{self, Export};
use stratus_client::volume_io::VolumeIo;
use stratus_client::volumes::{self, Records, Volume};
use stratus_client::MetaClient;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::domain::socket_path;

struct Served {
    server: String,
    io: Arc<VolumeIo>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The exports of this agent, by volume id.
pub struct Exports {
    meta: MetaClient,
    vols: Records<Volume>,
    run_dir: PathBuf,
    /// Who this agent is, as volume records name their writer.
    writer: String,
    served: Mutex<HashMap<String, Served>>,
    /// One lock per volume, held while it is being attached or stopped.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Exports {
    pub fn new(meta: MetaClient, run_dir: PathBuf, writer: String) -> Self {
        Self {
            vols: volumes::volumes(meta.clone()),
            meta,
            run_dir,
            writer,
            served: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    async fn lock(&self, volume: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(volume.to_string())
            .or_default()
            .clone()
    }

    /// Serves `volume` to `server` unless it is served already: attaches it for writing
    /// (a new epoch) and listens on its socket.
    pub async fn ensure(&self, server: &str, volume: &str) -> std::io::Result<()> {
        let lock = self.lock(volume).await;
        let _held = lock.lock().await;
        let old = {
            let mut served = self.served.lock().await;
            match served.get(volume) {
                Some(s) if !s.task.is_finished() && !s.io.fenced() && s.server == server => {
                    return Ok(());
                }
                _ => {
                    let old = served.remove(volume);
                    crate::metrics::METRICS.exports.set(served.len() as i64);
                    old
                }
            }
        };
        if let Some(old) = old {
            let _ = old.stop.send(());
            let _ = old.task.await;
            let _ = old.io.detach().await;
        }
        match self.vols.get(volume).await {
            Ok(Some((v, _)))
                if v.attachments
                    .iter()
                    .any(|a| a.server_id.as_deref() == Some(server)) => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "volume {volume} is not attached to server {server}"
                )))
            }
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let io = VolumeIo::attach(self.meta.clone(), volume, &self.writer, false).await?;
        let export = Arc::new(Export::new(volume, io.clone()));
        let path = socket_path(&self.run_dir, volume);
        let (stop, stopped) = oneshot::channel::<()>();
        let serve_path = path.clone();
        let task = tokio::spawn(async move {
            nbd::serve_unix(export, &serve_path, async {
                let _ = stopped.await;
            })
            .await
        });
        // The socket exists once serve_unix has bound it; QEMU is started right after.
        for _ in 0..400 {
            if path.exists() || task.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if task.is_finished() {
            let why = match task.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the export stopped".into(),
            };
            let _ = io.detach().await;
            return Err(std::io::Error::other(format!(
                "serving volume {volume} on {}: {why}",
                path.display()
            )));
        }
        tracing::info!(server, volume, epoch = io.epoch(), socket = %path.display(), "exporting");
        let mut served = self.served.lock().await;
        served.insert(
            volume.to_string(),
            Served {
                server: server.to_string(),
                io,
                stop,
                task,
            },
        );
        crate::metrics::METRICS.exports.set(served.len() as i64);
        Ok(())
    }

    /// Stops serving `volume` (its guest must be done with it): flushes, closes the
    /// socket and gives the writer's epoch back.
    pub async fn stop(&self, volume: &str) -> std::io::Result<()> {
        let lock = self.lock(volume).await;
        let _held = lock.lock().await;
        let removed = {
            let mut served = self.served.lock().await;
            let removed = served.remove(volume);
            crate::metrics::METRICS.exports.set(served.len() as i64);
            removed
        };
        let Some(s) = removed else {
            return Ok(());
        };
        let _ = s.stop.send(());
        let _ = s.task.await;
        let flushed = s.io.flush().await;
        s.io.detach().await?;
        flushed
    }

    /// Stops every export of `server`.
    pub async fn stop_server(&self, server: &str) {
        let volumes: Vec<String> = self
            .served
            .lock()
            .await
            .iter()
            .filter(|(_, s)| s.server == server)
            .map(|(v, _)| v.clone())
            .collect();
        for v in volumes {
            if let Err(e) = self.stop(&v).await {
                tracing::warn!(server, volume = %v, "stopping the export: {e}");
            }
        }
    }

    /// Whether `volume` is being served (and not fenced by another writer).
    pub async fn serving(&self, volume: &str) -> bool {
        self.served
            .lock()
            .await
            .get(volume)
            .is_some_and(|s| !s.task.is_finished() && !s.io.fenced())
    }
}
