//! The auditor: walks every object on every device at a bounded rate, checks each body's
//! size and BLAKE3 against its record, and quarantines a copy that fails.
//!
//! [`quarantine`] (also called by GET when a block fails its CRC) moves the bad body and
//! its record to `<device>/quarantined/objects/` and removes the record, which changes the
//! suffix's hash: the next replicator pass of a peer sees the difference and pushes a good
//! copy back. Quarantine means corruption: a checksum that does not match, a body its
//! record names that is not there, a record that does not decode. A read that fails
//! (EIO, EACCES) is counted against the device ([`Device::io_failed`]) and the copy stays:
//! a permission mistake must never turn into deleted data. Quarantined files stay until
//! an operator purges them.

use std::io::Read;
use std::sync::Arc;

use rocksdb::WriteBatch;

use crate::device::{write_sync, Device, DeviceError, Space};
use crate::diskfile::{batch_record, body_file, key_hash, object_key, ObjectRecord};
use crate::hashes::suffix_of;
use crate::worker::{Ctx, Limiter, Worker};

/// Default audit rate per node, bytes.
pub const DEFAULT_BYTES_PER_SEC: f64 = 32.0 * 1024.0 * 1024.0;
/// Default audit rate per node, objects (what bounds the cost of many small ones, whose
/// bytes are few but each costs a database read and a decode).
pub const DEFAULT_OBJECTS_PER_SEC: f64 = 500.0;

/// Records read from the database at a time (no iterator is held across an await).
const BATCH: usize = 256;

/// Moves the copy of `version` (timestamp, digest) of an object to quarantine and forgets
/// it. Returns false if that version is no longer the device's (replaced meanwhile:
/// nothing to do). An undecodable record is quarantined whatever `version` says.
pub async fn quarantine(
    dev: &Arc<Device>,
    space: Space,
    part: u32,
    hash: &[u8; 16],
    version: (u64, [u8; 32]),
    why: &str,
) -> Result<bool, DeviceError> {
    let ts = version.0;
    let key = object_key(part, hash);
    let _g = dev.lock_for(&key).lock().await;
    let Some(raw) = dev.get(space.cf(), &key)? else {
        return Ok(false);
    };
    let rec = match ObjectRecord::decode(&raw) {
        Ok(r) if r.version() != version => return Ok(false),
        Ok(r) => Some(r),
        Err(_) => None, // an unreadable record is quarantined as it is
    };
    let io = |e| DeviceError::Io(dev.name.clone(), e);
    let qdir = dev.quarantine_dir();
    std::fs::create_dir_all(&qdir).map_err(io)?;
    let mut base = format!("{}-{ts:020}", hex::encode(hash));
    if space != Space::Object(0) {
        base = format!("{base}-{}", space.cf());
    }
    std::fs::write(qdir.join(format!("{base}.record")), &raw).map_err(io)?;
    if let Some(r) = rec.as_ref().filter(|r| r.has_file()) {
        match std::fs::rename(
            body_file(dev, space, part, hash, r),
            qdir.join(format!("{base}.data")),
        ) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mut batch = WriteBatch::default();
    batch_record(dev, &mut batch, space, &key, None, rec.as_ref());
    write_sync(dev, batch).await?;
    dev.hashes.invalidate(space, part, suffix_of(hash));
    tracing::error!(
        device = %dev.name,
        object = rec.as_ref().map_or("?", |r| r.name.as_str()),
        why,
        "copy quarantined; a replica will restore it"
    );
    Ok(true)
}

/// What an audit found of one copy.
#[derive(Debug)]
enum Finding {
    Good,
    /// Damaged or missing: quarantine it (why).
    Bad(String),
    /// The read failed: count it against the device, leave the copy.
    Io(std::io::Error),
}

/// Checks one copy. Reads the body 1 MiB at a time, paced by `limiter` at `rate()` bytes/s.
#[allow(clippy::too_many_arguments)]
async fn verify(
    dev: &Arc<Device>,
    space: Space,
    part: u32,
    hash: &[u8; 16],
    rec: &ObjectRecord,
    limiter: &mut Limiter,
    rate: impl Fn() -> f64,
    stats: &crate::worker::Stats,
) -> Finding {
    if let Some(body) = &rec.inline {
        limiter.take(body.len() as f64, rate()).await;
        stats.bytes(body.len() as u64);
        if body.len() as u64 != rec.size {
            return Finding::Bad(format!(
                "inline body is {} bytes, not {}",
                body.len(),
                rec.size
            ));
        }
        if blake3::hash(body).as_bytes() != &rec.blake3 {
            return Finding::Bad("inline body fails its BLAKE3".into());
        }
        return Finding::Good;
    }
    let path = body_file(dev, space, part, hash, rec);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Finding::Bad("body file missing".into())
        }
        Err(e) => return Finding::Io(e),
    };
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let r = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = file.read(&mut buf);
            (file, buf, n)
        })
        .await;
        let (f, buf, n) = match r {
            Ok(x) => x,
            Err(e) => return Finding::Io(std::io::Error::other(e)),
        };
        file = f;
        let n = match n {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Finding::Io(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        stats.bytes(n as u64);
        limiter.take(n as f64, rate()).await;
        if size > rec.size {
            break;
        }
    }
    {
        // The audit read must not push hot data out of the page cache.
        use std::os::fd::AsRawFd;
        // SAFETY: an advisory call on a descriptor we hold.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    if size != rec.size {
        return Finding::Bad(format!(
            "body file is {size} bytes, the record says {}",
            rec.size
        ));
    }
    if hasher.finalize().as_bytes() != &rec.blake3 {
        return Finding::Bad("body fails its BLAKE3".into());
    }
    Finding::Good
}

/// The auditor worker.
pub struct Auditor;

#[tonic::async_trait]
impl Worker for Auditor {
    fn name(&self) -> &'static str {
        "auditor"
    }

    fn settings(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("bytes_per_sec", DEFAULT_BYTES_PER_SEC),
            ("objects_per_sec", DEFAULT_OBJECTS_PER_SEC),
        ]
    }

    async fn pass(&self, cx: &Ctx) {
        // One pace for the whole node, across its devices.
        let mut pace = Pace::default();
        for dev in cx.node.present_devices() {
            for space in Space::objects() {
                if let Err(e) = audit_device(cx, &dev, space, &mut pace).await {
                    cx.stats.error(format!("{}: {e}", dev.name));
                }
            }
        }
    }
}

/// The auditor's two limits.
#[derive(Default)]
struct Pace {
    bytes: Limiter,
    objects: Limiter,
}

async fn audit_device(
    cx: &Ctx,
    dev: &Arc<Device>,
    space: Space,
    pace: &mut Pace,
) -> Result<(), DeviceError> {
    let rate = || cx.settings.get("bytes_per_sec");
    let mut from: Vec<u8> = Vec::new();
    loop {
        let rows: Vec<_> = dev
            .scan(space.cf(), &from, false)
            .take(BATCH)
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        from = last.0.to_vec();
        from.push(0);
        let done = rows.len() < BATCH;
        for (k, v) in rows {
            let Some((part, hash)) = key_hash(&k) else {
                continue;
            };
            pace.objects
                .take(1.0, cx.settings.get("objects_per_sec"))
                .await;
            cx.stats.scanned(1);
            cx.stats
                .progress_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (found, version) = match ObjectRecord::decode(&v) {
                Ok(rec) if rec.deleted => continue,
                Ok(rec) => (
                    verify(
                        dev,
                        space,
                        part,
                        &hash,
                        &rec,
                        &mut pace.bytes,
                        rate,
                        &cx.stats,
                    )
                    .await,
                    rec.version(),
                ),
                Err(e) => (Finding::Bad(e), (0, [0; 32])),
            };
            let why = match found {
                Finding::Good => None,
                Finding::Bad(why) => Some(why),
                Finding::Io(e) => {
                    dev.io_failed("auditing a body", &e);
                    cx.stats.error(format!("{}: {e}", dev.name));
                    None
                }
            };
            if let Some(why) = why {
                // (An undecodable record is quarantined whatever `version` says.)
                match quarantine(dev, space, part, &hash, version, &why).await {
                    Ok(true) => cx.stats.quarantined(),
                    Ok(false) => {}
                    Err(e) => cx.stats.error(e),
                }
            }
        }
        if done {
            return Ok(());
        }
    }
}
