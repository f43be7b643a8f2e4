//! The volumes this agent serves to its guests: each attached as its one writer (which
//! fences any earlier writer, such as this agent before a restart) and exported over NBD
//! on a unix socket QEMU connects to.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use stratus_client::nbd::{self, Export};
use stratus_client::volume_io::VolumeIo;
use stratus_client::MetaClient;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::domain::socket_path;

struct Served {
    io: Arc<VolumeIo>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The exports of this agent, by volume id.
pub struct Exports {
    meta: MetaClient,
    run_dir: PathBuf,
    /// Who this agent is, as volume records name their writer.
    writer: String,
    served: Mutex<HashMap<String, Served>>,
}

impl Exports {
    pub fn new(meta: MetaClient, run_dir: PathBuf, writer: String) -> Self {
        Self {
            meta,
            run_dir,
            writer,
            served: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `volume` unless it is served already: attaches it for writing (a new epoch)
    /// and listens on its socket.
    pub async fn ensure(&self, volume: &str) -> std::io::Result<()> {
        let mut served = self.served.lock().await;
        if let Some(s) = served.get(volume) {
            if !s.task.is_finished() {
                return Ok(());
            }
        }
        if let Some(old) = served.remove(volume) {
            let _ = old.io.detach().await;
        }
        let io = VolumeIo::attach(self.meta.clone(), volume, &self.writer, false).await?;
        let export = Arc::new(Export::new(volume, io.clone()));
        let path = socket_path(&self.run_dir, volume);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            nbd::serve_unix(export, &path, async {
                let _ = stopped.await;
            })
            .await
        });
        // The socket exists once serve_unix has bound it; QEMU is started right after.
        let path = socket_path(&self.run_dir, volume);
        for _ in 0..200 {
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
        tracing::info!(volume, epoch = io.epoch(), socket = %path.display(), "exporting");
        served.insert(volume.to_string(), Served { io, stop, task });
        Ok(())
    }

    /// Stops serving `volume` (its guest must be done with it): flushes, closes the
    /// socket and gives the writer's epoch back.
    pub async fn stop(&self, volume: &str) -> std::io::Result<()> {
        let Some(s) = self.served.lock().await.remove(volume) else {
            return Ok(());
        };
        let _ = s.stop.send(());
        let _ = s.task.await;
        let flushed = s.io.flush().await;
        s.io.detach().await?;
        flushed
    }

    /// Whether `volume` is being served.
    pub async fn serving(&self, volume: &str) -> bool {
        self.served.lock().await.contains_key(volume)
    }

    /// Volume ids being served.
    pub async fn volumes(&self) -> Vec<String> {
        self.served.lock().await.keys().cloned().collect()
    }
}
