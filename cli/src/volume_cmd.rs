//! `stratus volume create|list|show|extend|snapshot|snapshots|clone|delete|export|flatten|check`:
//! block volumes, straight through meta and the storage nodes (the operator's view; users
//! go through the Cinder API with `openstack volume`).
//!
//! `export` attaches the volume as its one writer (bumping its epoch, so any earlier writer
//! is fenced by the storage nodes) and serves it over NBD until it gets SIGINT or SIGTERM;
//! then it flushes and detaches. Anything that speaks NBD can use it: QEMU, `qemu-img`,
//! `qemu-io`, `nbdcopy`, `fio --ioengine=nbd`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use stratus_client::nbd::{self, Export};
use stratus_client::volume_io::{Attach, VolumeIo};
use stratus_client::volume_ops::{NewVolume, Source, Volumes};
use stratus_client::volumes::{Snapshot, Volume};

use crate::{table, Conn};

/// `stratus volume …`
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume (thin: ready at once, whatever its size).
    Create {
        /// Size in GiB.
        #[arg(long)]
        size: u64,
        #[arg(long)]
        name: Option<String>,
        /// The owning project's id.
        #[arg(long, default_value = "")]
        project: String,
    },
    /// List volumes.
    List {
        /// Also the cluster's own (image volumes, volumes being deleted).
        #[arg(long)]
        all: bool,
    },
    /// Show one volume.
    Show { volume: String },
    /// Grow a detached volume.
    Extend {
        volume: String,
        /// New size in GiB.
        #[arg(long)]
        size: u64,
    },
    /// Take a snapshot (O(1)); prints its id.
    Snapshot {
        volume: String,
        #[arg(long)]
        name: Option<String>,
        /// Also while the volume is in use.
        #[arg(long)]
        force: bool,
    },
    /// List snapshots.
    Snapshots,
    /// Make a copy-on-write clone of a volume (via a new snapshot) or of a snapshot.
    Clone {
        /// The volume to clone (or the snapshot, with --from-snapshot).
        source: String,
        /// SOURCE names a snapshot.
        #[arg(long)]
        from_snapshot: bool,
        #[arg(long)]
        name: Option<String>,
        /// Size in GiB (default: the source's).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Delete a volume (with --cascade, its snapshots too).
    Delete {
        volume: String,
        #[arg(long)]
        cascade: bool,
    },
    /// Serve a volume over NBD until interrupted.
    Export {
        volume: String,
        /// A unix socket to serve on (made mode 0666 so QEMU can open it).
        #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
        socket: Option<PathBuf>,
        /// A TCP address to serve on, e.g. 127.0.0.1:10809.
        #[arg(long)]
        listen: Option<String>,
        /// Serve without taking the writer's epoch (writes refused).
        #[arg(long)]
        read_only: bool,
    },
    /// Copy into a clone everything it still reads from its parent, and detach it from it.
    Flatten { volume: String },
    /// Compare the chunk versions of a volume's replicas (without attaching it): chunks
    /// whose replicas in the set differ, and the replicas out of the set.
    Check { volume: String },
}

fn writer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("stratus-cli@{host}:{}", std::process::id())
}

fn volume_json(v: &Volume) -> serde_json::Value {
    serde_json::to_value(v).expect("plain struct serializes")
}

fn print_volume(conn: &Conn, v: &Volume) {
    if conn.json {
        println!("{}", volume_json(v));
        return;
    }
    let rows = vec![
        vec!["id".into(), v.id.clone()],
        vec!["name".into(), v.name.clone().unwrap_or_default()],
        vec!["status".into(), v.status.clone()],
        vec!["size".into(), format!("{} GiB", v.size_gb)],
        vec!["root".into(), v.root.clone()],
        vec![
            "parent".into(),
            v.parent
                .as_ref()
                .map(|p| format!("{} @ snapshot {}", p.volume, p.snap))
                .unwrap_or_default(),
        ],
        vec!["epoch".into(), v.epoch.to_string()],
        vec!["writer".into(), v.writer.clone().unwrap_or_default()],
        vec!["snapshots taken".into(), v.snap_seq.to_string()],
        vec!["stale replicas".into(), v.stale.join(", ")],
    ];
    println!("{}", table::render(&["field", "value"], &rows));
}

fn print_snapshot(conn: &Conn, s: &Snapshot) {
    if conn.json {
        println!(
            "{}",
            serde_json::to_value(s).expect("plain struct serializes")
        );
    } else {
        println!(
            "Snapshot {} of volume {} (sequence {}, {})",
            s.id, s.volume_id, s.seq, s.status
        );
    }
}

/// Runs a `stratus volume` command.
pub async fn run(conn: &Conn, cmd: VolumeCmd) -> Result<()> {
    if matches!(cmd, VolumeCmd::Export { .. } | VolumeCmd::Flatten { .. }) {
        // These hold connections to storage nodes that may die mid-request, and tokio
        // writes sockets with writev, not send(MSG_NOSIGNAL): with SIGPIPE at its default
        // (`main` sets it for pipelines) a killed storage node killed the export with it.
        // A broken connection must be an error the writer handles (the replica leaves the
        // set), never the end of the process.
        // SAFETY: SIG_IGN installs no handler; it only changes SIGPIPE's disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let meta = conn.client()?;
    let vols = Volumes::new(meta.clone());
    match cmd {
        VolumeCmd::Create {
            size,
            name,
            project,
        } => {
            let v = vols
                .create(NewVolume {
                    name,
                    description: None,
                    size_gb: size,
                    project_id: project,
                    user_id: String::new(),
                    metadata: Default::default(),
                    source: Source::Blank,
                })
                .await?;
            print_volume(conn, &v);
        }
        VolumeCmd::List { all } => {
            let mut list: Vec<Volume> = vols
                .vols
                .list()
                .await?
                .into_iter()
                .filter(|v| all || !v.hidden)
                .collect();
            list.sort_by_key(|v| v.created_us);
            if conn.json {
                let v: Vec<_> = list.iter().map(volume_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.clone(),
                            v.name.clone().unwrap_or_default(),
                            v.status.clone(),
                            format!("{} GiB", v.size_gb),
                            v.writer.clone().map_or("-".into(), |_| "attached".into()),
                            v.parent.as_ref().map_or("-".into(), |p| p.volume.clone()),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table::render(&["ID", "NAME", "STATUS", "SIZE", "WRITER", "PARENT"], &rows)
                );
            }
        }
        VolumeCmd::Show { volume } => {
            let (v, _) = vols.get(&volume).await?;
            print_volume(conn, &v);
        }
        VolumeCmd::Extend { volume, size } => {
            let v = vols.extend(&volume, size).await?;
            print_volume(conn, &v);
        }
        VolumeCmd::Snapshot {
            volume,
            name,
            force,
        } => {
            let s = vols
                .create_snapshot(&volume, name, None, Default::default(), force)
                .await?;
            print_snapshot(conn, &s);
        }
        VolumeCmd::Snapshots => {
            let list = vols.snaps.list().await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.name.clone().unwrap_or_default(),
                            s.volume_id.clone(),
                            s.seq.to_string(),
                            s.status.clone(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table::render(&["ID", "NAME", "VOLUME", "SEQ", "STATUS"], &rows)
                );
            }
        }
        VolumeCmd::Clone {
            source,
            from_snapshot,
            name,
            size,
        } => {
            let (src, size_gb) = if from_snapshot {
                let (s, _) = vols.snapshot(&source).await?;
                (Source::Snapshot(source), size.unwrap_or(s.size_gb))
            } else {
                let (v, _) = vols.get(&source).await?;
                (Source::Volume(source), size.unwrap_or(v.size_gb))
            };
            let started = std::time::Instant::now();
            let v = vols
                .create(NewVolume {
                    name,
                    description: None,
                    size_gb,
                    project_id: String::new(),
                    user_id: String::new(),
                    metadata: Default::default(),
                    source: src,
                })
                .await?;
            print_volume(conn, &v);
            if !conn.json {
                println!("cloned in {:.3} s", started.elapsed().as_secs_f64());
            }
        }
        VolumeCmd::Delete { volume, cascade } => {
            vols.delete(&volume, cascade).await?;
            if !conn.json {
                println!("Deleted volume {volume}");
            }
        }
        VolumeCmd::Check { volume } => {
            let io = VolumeIo::attach_with(meta, &volume, &writer_name(), Attach::ReadOnly)
                .await
                .with_context(|| format!("reading volume {volume}"))?;
            let d = io.divergent().await?;
            if conn.json {
                let chunks: Vec<_> = d
                    .iter()
                    .map(|(c, best, others)| {
                        serde_json::json!({"chunk": c, "newest": best.key(),
                            "differ": others.iter().map(|r| r.key()).collect::<Vec<_>>()})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"divergent": chunks, "stale": io.stale()})
                );
            } else {
                for (c, best, others) in &d {
                    let o: Vec<String> = others.iter().map(|r| r.key()).collect();
                    println!("chunk {c}: {} differ from {}", o.join(", "), best.key());
                }
                println!(
                    "{} divergent chunks; replicas out of the set: {}",
                    d.len(),
                    if io.stale().is_empty() {
                        "none".into()
                    } else {
                        io.stale().join(", ")
                    }
                );
            }
        }
        VolumeCmd::Flatten { volume } => {
            let v = vols.flatten(&volume, &writer_name()).await?;
            print_volume(conn, &v);
        }
        VolumeCmd::Export {
            volume,
            socket,
            listen,
            read_only,
        } => {
            // The export runs on a runtime of its own with one thread: an NBD request
            // crosses the NBD socket, then a gRPC call per replica, and on a multi-thread
            // runtime every hop was a wake-up of another thread (profiled: most of the
            // export's CPU per 4 KiB read went to scheduling).
            let endpoints = meta.endpoints();
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(async move {
                        let meta = stratus_client::MetaClient::new(&endpoints)?;
                        export(meta, &volume, socket, listen, read_only).await
                    })
            })
            .await??
        }
    }
    Ok(())
}

async fn export(
    meta: stratus_client::MetaClient,
    volume: &str,
    socket: Option<PathBuf>,
    listen: Option<String>,
    read_only: bool,
) -> Result<()> {
    let io = VolumeIo::attach(meta, volume, &writer_name(), read_only)
        .await
        .with_context(|| format!("attaching volume {volume}"))?;
    let export = Arc::new(Export::new(volume, io.clone()));
    let stop = stratus_client::service::shutdown_signal();
    let served = match (socket, listen) {
        (Some(path), _) => {
            println!(
                "exporting volume {volume} ({} bytes, epoch {}) on nbd+unix:///{volume}?socket={}",
                io.size(),
                io.epoch(),
                path.display()
            );
            nbd::serve_unix(export, &path, stop).await
        }
        (None, Some(addr)) => {
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            println!(
                "exporting volume {volume} ({} bytes, epoch {}) on nbd://{}/{volume}",
                io.size(),
                io.epoch(),
                l.local_addr()?
            );
            nbd::serve_tcp(export, l, stop).await
        }
        (None, None) => bail!("give --socket PATH or --listen ADDR"),
    };
    let flushed = io.flush().await;
    io.detach().await?;
    served?;
    flushed.context("flushing at exit")?;
    Ok(())
}
