//! What replicators compare: a hash per *suffix* of an object partition, and one per
//! database partition, cached and invalidated on every write.
//!
//! # Suffixes
//! An object's suffix is the top 12 bits of its name hash (the first three hex digits, also
//! the directory under `objects/<part>/`). Object keys are `part ++ name hash`, so a suffix
//! is one contiguous key range: recomputing one after a write scans only its own records.
//! A suffix's hash covers, in key order, every record's name hash, data timestamp, metadata
//! timestamp, deletion flag and content digest — exactly what decides which copy wins
//! ([`crate::diskfile::VersionOrder`]) — so two devices that agree on a suffix's hash hold
//! the same versions of its objects, even two versions that share a timestamp.
//!
//! A container or account database partition has a single "suffix" (0): the hash of its
//! databases' put/delete timestamps and metadata and of every row.
//!
//! # Cache
//! Every device keeps the hashes it computed in its
//! [`HashCache`](crate::device::hash_cache::HashCache). A write marks its
//! suffix dirty; the next [`object_hashes`] rescans only dirty suffixes, so asking for an
//! unchanged partition's hashes costs a map lookup. A recomputation that raced with a
//! write is returned but not cached (see [`crate::device::hash_cache`]).

use serde::Deserialize;

use crate::db::records::info_digest;
use crate::device::hash_cache::{digest_of, first16, Cached};
use crate::device::{Device, DeviceError, Space};

pub use crate::device::hash_cache::{partition_hash, Hashes, SuffixHash};

/// The suffix of a name hash: its top 12 bits.
pub fn suffix_of(hash: &[u8; 16]) -> u16 {
    (u16::from(hash[0]) << 4) | u16::from(hash[1] >> 4)
}

/// Largest suffix.
pub const MAX_SUFFIX: u16 = 0xfff;

/// The object keys of `suffix` in `part`: `[start, end)`.
fn suffix_range(part: u32, suffix: u16) -> (Vec<u8>, Vec<u8>) {
    let key = |part: u32, s: u16| {
        let mut k = part.to_be_bytes().to_vec();
        k.push((s >> 4) as u8);
        k.push(((s & 0xf) << 4) as u8);
        k
    };
    let end = if suffix == MAX_SUFFIX {
        (part + 1).to_be_bytes().to_vec()
    } else {
        key(part, suffix + 1)
    };
    (key(part, suffix), end)
}

/// The head of an encoded object record: what decides which copy wins. (Bincode reads a
/// struct's fields in order and ignores what follows, so the body is never decoded.)
#[derive(Deserialize)]
pub struct RecordHead {
    /// The object's name.
    pub name: String,
    /// Its data timestamp.
    pub ts: u64,
    /// Its metadata timestamp.
    pub meta_ts: u64,
    /// Whether the record is a tombstone.
    pub deleted: bool,
    _size: u64,
    _content_type: String,
    _etag: String,
    blake3: [u8; 32],
}

impl RecordHead {
    /// Reads the head of [`crate::diskfile::ObjectRecord::encode`]'s output (formats 1
    /// and 2 share the layout).
    pub fn decode(b: &[u8]) -> Option<RecordHead> {
        match b.split_first() {
            Some((1 | 2, rest)) => bincode::deserialize(rest).ok(),
            _ => None,
        }
    }

    /// What orders versions with the same timestamp (see
    /// [`crate::diskfile::ObjectRecord::digest`]).
    pub fn digest(&self) -> [u8; 32] {
        if self.deleted {
            [0; 32]
        } else {
            self.blake3
        }
    }
}

/// One object record as a replica summary: (name hash, ts, meta_ts, deleted, digest).
pub type Summary = ([u8; 16], u64, u64, bool, [u8; 32]);

/// Summaries of the records of `suffixes` of `part`, in key order.
pub fn summaries(
    dev: &Device,
    space: Space,
    part: u32,
    suffixes: &[u16],
) -> Result<Vec<Summary>, DeviceError> {
    let mut out = Vec::new();
    for &s in suffixes {
        let (start, end) = suffix_range(part, s);
        for item in dev.scan(space.cf(), &start, false) {
            let (k, v) = item?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            let Some(h) = RecordHead::decode(&v) else {
                continue;
            };
            let mut nh = [0u8; 16];
            nh.copy_from_slice(&k[4..20]);
            out.push((nh, h.ts, h.meta_ts, h.deleted, h.digest()));
        }
    }
    Ok(out)
}

fn hash_suffix(
    dev: &Device,
    space: Space,
    part: u32,
    suffix: u16,
) -> Result<Option<SuffixHash>, DeviceError> {
    let mut h = blake3::Hasher::new();
    let mut items = 0;
    for s in summaries(dev, space, part, &[suffix])? {
        feed(&mut h, &s);
        items += 1;
    }
    Ok((items > 0).then(|| SuffixHash {
        hash: first16(h.finalize()),
        items,
    }))
}

/// Adds one record's summary to a suffix hash.
fn feed(h: &mut blake3::Hasher, (nh, ts, meta_ts, deleted, digest): &Summary) {
    h.update(nh);
    h.update(&ts.to_le_bytes());
    h.update(&meta_ts.to_le_bytes());
    h.update(&[*deleted as u8]);
    h.update(digest);
}

/// Every suffix of every record of `part` (one scan).
fn hash_partition(dev: &Device, space: Space, part: u32) -> Result<Hashes, DeviceError> {
    let mut out = Hashes::new();
    let start = part.to_be_bytes();
    let mut cur: Option<(u16, blake3::Hasher, u64)> = None;
    let mut flush = |cur: &mut Option<(u16, blake3::Hasher, u64)>| {
        if let Some((s, h, items)) = cur.take() {
            out.insert(
                s,
                SuffixHash {
                    hash: first16(h.finalize()),
                    items,
                },
            );
        }
    };
    for item in dev.scan(space.cf(), &start, false) {
        let (k, v) = item?;
        if k.len() != 20 || k[..4] != start {
            break;
        }
        let mut nh = [0u8; 16];
        nh.copy_from_slice(&k[4..]);
        let s = suffix_of(&nh);
        if cur.as_ref().is_some_and(|c| c.0 != s) {
            flush(&mut cur);
        }
        let Some(head) = RecordHead::decode(&v) else {
            continue;
        };
        let c = cur.get_or_insert_with(|| (s, blake3::Hasher::new(), 0));
        feed(
            &mut c.1,
            &(nh, head.ts, head.meta_ts, head.deleted, head.digest()),
        );
        c.2 += 1;
    }
    flush(&mut cur);
    Ok(out)
}

/// The suffix hashes of object partition `part` (from the cache when nothing changed).
/// Blocking: call it off the async runtime.
pub fn object_hashes(dev: &Device, space: Space, part: u32) -> Result<Hashes, DeviceError> {
    let (generation, todo) = match dev.hashes.lookup(space, part) {
        Cached::Clean(h) => return Ok(h),
        Cached::Stale { generation, dirty } => (generation, dirty),
    };
    let fresh = match &todo {
        None => hash_partition(dev, space, part)?,
        Some(dirty) => {
            let mut m = Hashes::new();
            for &s in dirty {
                if let Some(h) = hash_suffix(dev, space, part, s)? {
                    m.insert(s, h);
                }
            }
            m
        }
    };
    Ok(dev
        .hashes
        .store(space, part, generation, todo.as_ref(), fresh))
}

/// The hash of database partition `part` of `space` (container or account), as suffix 0;
/// empty if the partition holds nothing. Blocking.
pub fn db_hashes(dev: &Device, space: Space, part: u32) -> Result<Hashes, DeviceError> {
    let generation = match dev.hashes.lookup(space, part) {
        Cached::Clean(h) => return Ok(h),
        Cached::Stale { generation, .. } => generation,
    };
    let mut h = blake3::Hasher::new();
    let mut items = 0u64;
    for tag in [b'I', b'R'] {
        let mut prefix = vec![tag];
        prefix.extend_from_slice(&part.to_be_bytes());
        for item in dev.scan(space.cf(), &prefix, false) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            h.update(&(k.len() as u32).to_le_bytes());
            h.update(&k);
            if tag == b'I' {
                // Timestamps and metadata only: created_ts and totals are local facts.
                h.update(&info_digest(dev, &v)?);
            } else {
                h.update(&v);
            }
            items += 1;
        }
    }
    let mut result = Hashes::new();
    if items > 0 {
        result.insert(
            0,
            SuffixHash {
                hash: first16(h.finalize()),
                items,
            },
        );
    }
    Ok(dev.hashes.store(space, part, generation, None, result))
}

/// The hashes of a partition of any space. Blocking.
pub fn hashes(dev: &Device, space: Space, part: u32) -> Result<Hashes, DeviceError> {
    match space {
        Space::Object(_) => object_hashes(dev, space, part),
        _ => db_hashes(dev, space, part),
    }
}

/// The hash of a whole partition and the records it covers (`None`: the device holds
/// nothing of it), from the cache without copying it when nothing changed. Blocking.
pub fn digest(dev: &Device, space: Space, part: u32) -> Result<Option<SuffixHash>, DeviceError> {
    if let Some(d) = dev.hashes.digest(space, part) {
        return Ok(d);
    }
    Ok(digest_of(&hashes(dev, space, part)?))
}

/// The partitions of `space` this device holds anything of, in order. Jumps from one
/// partition to the next, so it costs one seek per partition. Blocking.
pub fn local_partitions(dev: &Device, space: Space) -> Result<Vec<u32>, DeviceError> {
    let mut out = Vec::new();
    let prefixes: &[Option<u8>] = match space {
        Space::Object(_) => &[None],
        _ => &[Some(b'I'), Some(b'R')],
    };
    for tag in prefixes {
        let mut next: u64 = 0;
        while next <= u64::from(u32::MAX) {
            let mut seek = tag.map(|t| vec![t]).unwrap_or_default();
            seek.extend_from_slice(&(next as u32).to_be_bytes());
            let Some(item) = dev.scan(space.cf(), &seek, false).next() else {
                break;
            };
            let (k, _) = item?;
            let body = match tag {
                Some(t) if k.first() != Some(t) => break,
                Some(_) => &k[1..],
                None => &k[..],
            };
            let Some(p) = body.get(..4) else { break };
            let part = u32::from_be_bytes(p.try_into().expect("4 bytes"));
            out.push(part);
            next = u64::from(part) + 1;
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_ranges_tile_a_partition() {
        let (s0, e0) = suffix_range(7, 0);
        let (s1, _) = suffix_range(7, 1);
        assert_eq!(e0, s1);
        assert_eq!(s0, vec![0, 0, 0, 7, 0, 0]);
        let (_, last) = suffix_range(7, MAX_SUFFIX);
        assert_eq!(last, 8u32.to_be_bytes().to_vec());
        let mut h = [0u8; 16];
        h[0] = 0xab;
        h[1] = 0xcd;
        assert_eq!(suffix_of(&h), 0xabc);
        let (s, e) = suffix_range(7, 0xabc);
        let mut key = 7u32.to_be_bytes().to_vec();
        key.extend_from_slice(&h);
        assert!(key >= s && key < e);
    }
}
