//! The engine a storage node runs: records in the device's RocksDB (small bodies inline),
//! larger bodies in files named by version (`<ts>-<digest>.data`), written to `tmp/`,
//! fsynced, and renamed into place under the object's lock only once the rule has taken
//! the version. The record, its place in the expirer's index and its pending container
//! update commit in one synced write.

use std::sync::Arc;

use rocksdb::WriteBatch;

use super::{small_read, Decide, Engine, Key, Outcome, ReadError};
use crate::bodyfile::TmpBody;
use crate::device::{blocking, write_sync, Device, DeviceError, Space, CF_PENDING};
use crate::diskfile::{
    batch_record, body_file, key_hash, read_block, BlockError, ObjectRecord, BLOCK,
};
use crate::hashes::suffix_of;
use crate::updater::Pending;

/// The objects of one storage policy on one device, as stored on it.
#[derive(Clone)]
pub struct Disk {
    dev: Arc<Device>,
    space: Space,
}

impl Disk {
    /// The engine over the objects of `space` (a [`Space::Object`]) on `dev`.
    pub fn new(dev: Arc<Device>, space: Space) -> Self {
        debug_assert!(matches!(space, Space::Object(_)));
        Disk { dev, space }
    }

    /// The device underneath.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    fn io(&self, e: std::io::Error) -> DeviceError {
        self.dev.io_failed("writing a body", &e);
        DeviceError::Io(self.dev.name.clone(), e)
    }
}

/// The stored record at `key` in `space` on `dev` (a record that does not decode is an
/// error, never "absent": taking it for absent would let an older version replace it
/// unseen).
pub fn load(dev: &Device, space: Space, key: &[u8]) -> Result<Option<ObjectRecord>, DeviceError> {
    match dev.get(space.cf(), key)? {
        None => Ok(None),
        Some(b) => ObjectRecord::decode(&b)
            .map(Some)
            .map_err(|e| DeviceError::Damaged(dev.name.clone(), e)),
    }
}

impl Engine for Disk {
    type Staged = TmpBody;

    async fn get(&self, key: Key) -> Result<Option<ObjectRecord>, DeviceError> {
        load(&self.dev, self.space, &key.bytes())
    }

    async fn stage(&self, body: &[u8]) -> Result<TmpBody, DeviceError> {
        self.dev.check_space(body.len() as u64)?;
        let mut t = TmpBody::create(&self.dev).map_err(|e| self.io(e))?;
        t.push(body).await.map_err(|e| self.io(e))?;
        Ok(t)
    }

    async fn commit(
        &self,
        key: Key,
        body: Option<TmpBody>,
        decide: Decide,
    ) -> Result<Outcome, DeviceError> {
        let dev = &self.dev;
        let mut body = body;
        // The body's fsync happens before the lock: the lock is never held across it.
        if let Some(b) = body.as_mut() {
            b.sync().await.map_err(|e| self.io(e))?;
        }
        let kb = key.bytes();
        let _guard = dev.lock_for(&kb).lock().await;
        let old = load(dev, self.space, &kb)?;
        let Some(change) = decide(old.as_ref()) else {
            return Ok(Outcome::Declined { current: old });
        };
        let rec = change.rec;
        if rec.has_file() {
            let same_file = old.as_ref().is_some_and(|o| {
                o.has_file()
                    && body_file(dev, self.space, key.part, &key.hash, o)
                        == body_file(dev, self.space, key.part, &key.hash, &rec)
            });
            match body {
                Some(b) if !same_file => {
                    b.install(body_file(dev, self.space, key.part, &key.hash, &rec))
                        .await
                        .map_err(|e| self.io(e))?;
                    fail::fail_point!("put-after-rename", |_| crate::crash("put-after-rename"));
                }
                // The version stays (new metadata for it): its file is there already.
                _ if same_file => {}
                _ => {
                    return Err(DeviceError::Io(
                        dev.name.clone(),
                        std::io::Error::other(format!(
                            "{}: a record naming a body file cannot commit without its body",
                            rec.name
                        )),
                    ))
                }
            }
        }
        let mut batch = WriteBatch::default();
        batch_record(dev, &mut batch, self.space, &kb, Some(&rec), old.as_ref());
        let pending = change.pending.map(|p| (p.key(), p));
        if let Some((k, p)) = &pending {
            dev.batch_put(&mut batch, CF_PENDING, k, &p.encode());
        }
        write_sync(dev, batch).await?;
        fail::fail_point!("put-after-record-commit", |_| crate::crash(
            "put-after-record-commit"
        ));
        dev.hashes
            .invalidate(self.space, key.part, suffix_of(&key.hash));
        if let Some(o) = old.as_ref().filter(|o| o.has_file()) {
            let f = body_file(dev, self.space, key.part, &key.hash, o);
            if !rec.has_file() || f != body_file(dev, self.space, key.part, &key.hash, &rec) {
                let _ = tokio::fs::remove_file(f).await;
            }
        }
        Ok(Outcome::Committed {
            old,
            new: rec,
            pending,
        })
    }

    async fn read(
        &self,
        key: Key,
        rec: &ObjectRecord,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let end = match small_read(rec, start, end) {
            Ok(end) => end,
            Err(done) => return done,
        };
        let mut file =
            match std::fs::File::open(body_file(&self.dev, self.space, key.part, &key.hash, rec)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ReadError::Missing)
                }
                Err(e) => return Err(ReadError::Io(e)),
            };
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut block = start / BLOCK;
        while block * BLOCK < end {
            let b_start = block * BLOCK;
            let (f, r) = read_block(file, rec, block).await;
            let buf = match r {
                Ok(b) => b,
                Err(BlockError::Checksum) => return Err(ReadError::Checksum(block)),
                Err(BlockError::Read(e)) => return Err(ReadError::Io(e)),
            };
            let from = start.saturating_sub(b_start) as usize;
            let to = (end - b_start).min(buf.len() as u64) as usize;
            out.extend_from_slice(&buf[from..to]);
            file = f.expect("a finished read gives the file back");
            block += 1;
        }
        Ok(out)
    }

    async fn scan(&self, part: u32) -> Result<Vec<(Key, ObjectRecord)>, DeviceError> {
        let cf = self.space.cf();
        blocking(&self.dev, move |d| {
            let start = Key {
                part,
                hash: [0; 16],
            }
            .bytes();
            let mut out = Vec::new();
            for item in d.scan(cf, &start, false) {
                let (k, v) = item?;
                let Some((p, hash)) = key_hash(&k) else {
                    continue;
                };
                if p != part {
                    break;
                }
                if let Ok(rec) = ObjectRecord::decode(&v) {
                    out.push((Key { part, hash }, rec));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn pending(&self, key: &[u8]) -> Result<Option<Pending>, DeviceError> {
        Ok(self
            .dev
            .get(CF_PENDING, key)?
            .and_then(|b| Pending::decode(&b)))
    }
}

#[cfg(test)]
impl super::conformance::Damage for Disk {
    async fn damage(&self, key: Key, rec: &ObjectRecord) {
        if let Some(mut b) = rec.inline.clone() {
            b[0] ^= 0xff;
            let mut r = rec.clone();
            r.inline = Some(b);
            let mut batch = WriteBatch::default();
            self.dev
                .batch_put(&mut batch, self.space.cf(), &key.bytes(), &r.encode());
            self.dev.write(batch, true).unwrap();
            return;
        }
        let path = body_file(&self.dev, self.space, key.part, &key.hash, rec);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
}
