//! An engine in memory, the twin of [`super::disk::Disk`] for unit tests of what sits above
//! the trait (the replicator's decisions, the rules). It keeps the same promises: one
//! commit at a time per object, bodies checked block by block on every read, a body kept
//! per version and dropped when its version is replaced.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::Mutex;

use super::{small_read, Decide, Engine, Key, Outcome, ReadError};
use crate::device::DeviceError;
use crate::diskfile::{body_file_name, ObjectRecord, BLOCK};
use crate::updater::Pending;

#[derive(Default)]
struct State {
    records: BTreeMap<Key, ObjectRecord>,
    /// Bodies by key and body file name.
    bodies: HashMap<(Key, String), Vec<u8>>,
    pending: HashMap<Vec<u8>, Pending>,
}

/// Objects in memory.
#[derive(Default)]
pub struct Mem {
    state: Mutex<State>,
}

impl Mem {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bodies it holds (tests check that replaced versions are dropped).
    pub async fn bodies(&self) -> usize {
        self.state.lock().await.bodies.len()
    }
}

fn missing_body(rec: &ObjectRecord) -> DeviceError {
    DeviceError::Io(
        "mem".into(),
        std::io::Error::other(format!(
            "{}: a record naming a body file cannot commit without its body",
            rec.name
        )),
    )
}

impl Engine for Mem {
    type Staged = Vec<u8>;

    async fn get(&self, key: Key) -> Result<Option<ObjectRecord>, DeviceError> {
        Ok(self.state.lock().await.records.get(&key).cloned())
    }

    async fn stage(&self, body: &[u8]) -> Result<Vec<u8>, DeviceError> {
        Ok(body.to_vec())
    }

    async fn commit(
        &self,
        key: Key,
        body: Option<Vec<u8>>,
        decide: Decide,
    ) -> Result<Outcome, DeviceError> {
        let mut st = self.state.lock().await;
        let old = st.records.get(&key).cloned();
        let Some(change) = decide(old.as_ref()) else {
            return Ok(Outcome::Declined { current: old });
        };
        let rec = change.rec;
        let name = body_file_name(&rec);
        if rec.has_file() {
            match body {
                Some(b) => {
                    st.bodies.insert((key, name.clone()), b);
                }
                None if st.bodies.contains_key(&(key, name.clone())) => {}
                None => return Err(missing_body(&rec)),
            }
        }
        if let Some(o) = old.as_ref().filter(|o| o.has_file()) {
            let f = body_file_name(o);
            if !rec.has_file() || f != name {
                st.bodies.remove(&(key, f));
            }
        }
        let pending = change.pending.map(|p| (p.key(), p));
        if let Some((k, p)) = &pending {
            st.pending.insert(k.clone(), p.clone());
        }
        st.records.insert(key, rec.clone());
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
        let st = self.state.lock().await;
        let body = st
            .bodies
            .get(&(key, body_file_name(rec)))
            .ok_or(ReadError::Missing)?;
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut block = start / BLOCK;
        while block * BLOCK < end {
            let b_start = block * BLOCK;
            let b_end = (b_start + BLOCK).min(rec.size);
            let buf = body
                .get(b_start as usize..b_end as usize)
                .ok_or(ReadError::Checksum(block))?;
            if rec.block_crcs.get(block as usize) != Some(&crc32fast::hash(buf)) {
                return Err(ReadError::Checksum(block));
            }
            let from = start.saturating_sub(b_start) as usize;
            let to = (end - b_start).min(buf.len() as u64) as usize;
            out.extend_from_slice(&buf[from..to]);
            block += 1;
        }
        Ok(out)
    }

    async fn scan(&self, part: u32) -> Result<Vec<(Key, ObjectRecord)>, DeviceError> {
        let st = self.state.lock().await;
        let from = Key {
            part,
            hash: [0; 16],
        };
        Ok(st
            .records
            .range(from..)
            .take_while(|(k, _)| k.part == part)
            .map(|(k, r)| (*k, r.clone()))
            .collect())
    }

    async fn pending(&self, key: &[u8]) -> Result<Option<Pending>, DeviceError> {
        Ok(self.state.lock().await.pending.get(key).cloned())
    }
}

#[cfg(test)]
impl super::conformance::Damage for Mem {
    async fn damage(&self, key: Key, rec: &ObjectRecord) {
        let mut st = self.state.lock().await;
        if let Some(mut b) = rec.inline.clone() {
            b[0] ^= 0xff;
            let mut r = rec.clone();
            r.inline = Some(b);
            st.records.insert(key, r);
            return;
        }
        let body = st.bodies.get_mut(&(key, body_file_name(rec))).unwrap();
        body[0] ^= 0xff;
    }
}
