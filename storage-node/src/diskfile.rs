//! Object records and bodies.
//!
//! # Layout (see docs/storage.md for why)
//! Every object has one record in the `objects` column family, keyed by partition and a hash
//! of its path, holding the newest version only (the newest timestamp wins):
//! name, size, content type, MD5 ETag, BLAKE3 digest, a CRC32 per 1 MiB block, user
//! metadata and timestamps. A body of at most [`INLINE_MAX`] bytes lives inside the record,
//! so a small PUT costs one group-committed WAL append. A larger body is a file,
//! `<device>/objects/<part>/<suffix>/<hash>/<ts>-<digest>.data` (see [`body_file`]), written
//! to `tmp/` and fsynced, then, under the object's lock and only once its record is known to
//! win, renamed into place and its directory fsynced *before* the record naming it is
//! committed; the previous version's file is removed only after that commit.
//!
//! A tombstone is a record with `deleted` set. Records start with a format version byte.
//!
//! # Which version wins
//! Versions are ordered by timestamp, then by content digest ([`VersionOrder`]): two PUTs
//! that got the same timestamp from two proxies are still ordered, the same way on every
//! replica, so replicas converge on one of them whatever order they arrived in.
//!
//! # Invariants
//! - A record is committed only after its body is durable; a body never changes after its
//!   record is committed (every version has its own file name, digest included).
//! - Every byte served is checked against its block's CRC32 before it leaves the node.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::device::{Device, Space};

/// Bodies up to this size are stored inside the record.
pub const INLINE_MAX: u64 = 64 * 1024;

/// Bytes covered by one CRC32 in [`ObjectRecord::block_crcs`].
pub const BLOCK: u64 = 1 << 20;

/// Records of format 2 name their body file with the content digest; format 1 (older
/// nodes) named it by timestamp alone. The layout of the fields is the same.
const FORMAT_VERSION: u8 = 2;
const FORMAT_LEGACY: u8 = 1;

/// The stored form of one object version (or tombstone).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ObjectRecord {
    /// `/account/container/object`.
    pub name: String,
    /// Timestamp of the data (PUT) or of the deletion.
    pub ts: u64,
    /// Timestamp of the newest metadata (PUT or POST).
    pub meta_ts: u64,
    pub deleted: bool,
    pub size: u64,
    pub content_type: String,
    /// MD5 of the body, hex (Swift's ETag).
    pub etag: String,
    /// BLAKE3 of the body.
    pub blake3: [u8; 32],
    /// CRC32 of each [`BLOCK`] of the body.
    pub block_crcs: Vec<u32>,
    /// User metadata (`X-Object-Meta-*` and other stored headers), header name → value.
    pub meta: Vec<(String, String)>,
    /// Expiry (seconds since the epoch), 0 = never.
    pub delete_at: u64,
    /// The body when it is inline; `None` for tombstones and file bodies.
    pub inline: Option<Vec<u8>>,
    /// Read from a format-1 record: its body file is `<ts>.data` (not stored; kept when
    /// the record is rewritten, so the name it gives stays right).
    #[serde(skip)]
    pub legacy_name: bool,
}

/// Where a version stands against the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// It wins: store it.
    Newer,
    /// The very same version (timestamp and content) is stored already.
    Same,
    /// The stored version wins (a later timestamp, or the same one with a larger digest).
    Older,
}

impl ObjectRecord {
    /// Serialized form: version byte + bincode.
    pub fn encode(&self) -> Vec<u8> {
        let v = if self.legacy_name {
            FORMAT_LEGACY
        } else {
            FORMAT_VERSION
        };
        let mut out = vec![v];
        bincode::serialize_into(&mut out, self).expect("plain struct serializes");
        out
    }

    /// Parses [`ObjectRecord::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        match b.split_first() {
            Some((&v, rest)) if v == FORMAT_VERSION || v == FORMAT_LEGACY => {
                let mut r: Self =
                    bincode::deserialize(rest).map_err(|e| format!("object record: {e}"))?;
                r.legacy_name = v == FORMAT_LEGACY;
                Ok(r)
            }
            Some((v, _)) => Err(format!("object record format {v} is not supported")),
            None => Err("empty object record".into()),
        }
    }

    /// Whether the body is a file on disk.
    pub fn has_file(&self) -> bool {
        !self.deleted && self.inline.is_none()
    }

    /// What orders two versions with the same timestamp: the body's BLAKE3 (zero for a
    /// tombstone, so data at the same instant wins over a deletion).
    pub fn digest(&self) -> [u8; 32] {
        if self.deleted {
            [0; 32]
        } else {
            self.blake3
        }
    }

    /// What identifies this version among the object's: (timestamp, digest).
    pub fn version(&self) -> (u64, [u8; 32]) {
        (self.ts, self.digest())
    }

    /// How this version stands against `stored` (none stored: it wins).
    pub fn order(&self, stored: Option<&ObjectRecord>) -> VersionOrder {
        let Some(old) = stored else {
            return VersionOrder::Newer;
        };
        match (self.ts, self.digest()).cmp(&(old.ts, old.digest())) {
            std::cmp::Ordering::Greater => VersionOrder::Newer,
            std::cmp::Ordering::Equal => VersionOrder::Same,
            std::cmp::Ordering::Less => VersionOrder::Older,
        }
    }
}

/// 16 bytes naming an object on disk: BLAKE3 of its path, truncated.
pub fn name_hash(path: &str) -> [u8; 16] {
    let mut h = [0u8; 16];
    h.copy_from_slice(&blake3::hash(path.as_bytes()).as_bytes()[..16]);
    h
}

/// The record key: partition (big-endian, so a partition is one key range) + name hash.
pub fn object_key(part: u32, hash: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&part.to_be_bytes());
    k.extend_from_slice(hash);
    k
}

/// `<device>/objects/<part>/<suffix>/<hash>` (`objects-<i>` for storage policy `i`, as
/// Swift names them): the directory of an object's body files (the suffix is the hash's
/// first three hex digits, see [`crate::hashes`]).
pub fn object_dir(dev: &Device, space: Space, part: u32, hash: &[u8; 16]) -> PathBuf {
    let hex = hex::encode(hash);
    dev.root
        .join(space.cf())
        .join(part.to_string())
        .join(&hex[..3])
        .join(hex)
}

/// The expirer's index key of an object (`key` in `space`) expiring at `delete_at`:
/// `delete_at (be64) ++ key`, then the policy's index unless it is 0.
pub fn expiring_key(delete_at: u64, space: Space, key: &[u8]) -> Vec<u8> {
    let mut k = delete_at.to_be_bytes().to_vec();
    k.extend_from_slice(key);
    if let Space::Object(p @ 1..) = space {
        k.push(p);
    }
    k
}

/// What an expirer's index key names: `(delete_at, space, object key)`.
pub fn parse_expiring_key(k: &[u8]) -> Option<(u64, Space, &[u8])> {
    let at = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    match k.len() {
        28 => Some((at, Space::Object(0), &k[8..])),
        29 => Some((at, Space::policy(u32::from(k[28]))?, &k[8..28])),
        _ => None,
    }
}

/// Adds to `batch` everything that replaces record `old` by `new` (or removes it, `None`)
/// at `key`: the record itself and its place in the expirer's index. After the batch is
/// committed the caller invalidates the suffix ([`crate::device::hash_cache::HashCache::invalidate`]).
pub fn batch_record(
    dev: &Device,
    batch: &mut rocksdb::WriteBatch,
    space: Space,
    key: &[u8],
    new: Option<&ObjectRecord>,
    old: Option<&ObjectRecord>,
) {
    use crate::device::CF_EXPIRING;
    match new {
        Some(r) => dev.batch_put(batch, space.cf(), key, &r.encode()),
        None => dev.batch_delete(batch, space.cf(), key),
    }
    let old_at = old.filter(|o| !o.deleted).map_or(0, |o| o.delete_at);
    let new_at = new.filter(|n| !n.deleted).map_or(0, |n| n.delete_at);
    if old_at != 0 && old_at != new_at {
        dev.batch_delete(batch, CF_EXPIRING, &expiring_key(old_at, space, key));
    }
    if new_at != 0 {
        dev.batch_put(batch, CF_EXPIRING, &expiring_key(new_at, space, key), b"");
    }
}

/// The name hash inside an object key.
pub fn key_hash(key: &[u8]) -> Option<(u32, [u8; 16])> {
    if key.len() != 20 {
        return None;
    }
    let part = u32::from_be_bytes(key[..4].try_into().ok()?);
    let mut h = [0u8; 16];
    h.copy_from_slice(&key[4..]);
    Some((part, h))
}

/// The body file of version `rec`: `<ts>-<first 8 bytes of its BLAKE3, hex>.data`, so two
/// versions that share a timestamp never share a file (`<ts>.data` for format-1 records).
pub fn body_file(
    dev: &Device,
    space: Space,
    part: u32,
    hash: &[u8; 16],
    rec: &ObjectRecord,
) -> PathBuf {
    object_dir(dev, space, part, hash).join(body_file_name(rec))
}

/// The file name of [`body_file`].
pub fn body_file_name(rec: &ObjectRecord) -> String {
    if rec.legacy_name {
        format!("{:020}.data", rec.ts)
    } else {
        format!("{:020}-{}.data", rec.ts, hex::encode(&rec.blake3[..8]))
    }
}

/// Why a block of a body file could not be served.
#[derive(Debug)]
pub enum BlockError {
    /// The read itself failed.
    Read(std::io::Error),
    /// The bytes do not match the block's CRC32: the copy is damaged.
    Checksum,
}

/// Reads block `block` of `rec`'s body from `file` on a blocking thread and checks it
/// against its CRC32 before anything can use it. Gives the file back for the next block.
pub async fn read_block(
    mut file: std::fs::File,
    rec: &ObjectRecord,
    block: u64,
) -> (Option<std::fs::File>, Result<Vec<u8>, BlockError>) {
    use std::io::{Read, Seek, SeekFrom};
    let start = block * BLOCK;
    let len = BLOCK.min(rec.size.saturating_sub(start)) as usize;
    let want = rec.block_crcs.get(block as usize).copied();
    let r = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        let r = file
            .seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut buf));
        (file, r.map(|_| buf))
    })
    .await;
    match r {
        Err(e) => (None, Err(BlockError::Read(std::io::Error::other(e)))),
        Ok((f, Err(e))) => (Some(f), Err(BlockError::Read(e))),
        Ok((f, Ok(buf))) if want == Some(crc32fast::hash(&buf)) => (Some(f), Ok(buf)),
        Ok((f, Ok(_))) => (Some(f), Err(BlockError::Checksum)),
    }
}

/// Incremental digests of a body as it streams in.
pub struct BodyHasher {
    blake: blake3::Hasher,
    crcs: Vec<u32>,
    crc: crc32fast::Hasher,
    in_block: u64,
    /// Bytes seen so far.
    pub size: u64,
}

impl Default for BodyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyHasher {
    /// A hasher over nothing yet.
    pub fn new() -> Self {
        Self {
            blake: blake3::Hasher::new(),
            crcs: Vec::new(),
            crc: crc32fast::Hasher::new(),
            in_block: 0,
            size: 0,
        }
    }

    /// Feeds the next bytes of the body.
    pub fn update(&mut self, mut data: &[u8]) {
        self.blake.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let take = ((BLOCK - self.in_block) as usize).min(data.len());
            self.crc.update(&data[..take]);
            self.in_block += take as u64;
            data = &data[take..];
            if self.in_block == BLOCK {
                let done = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
                self.crcs.push(done.finalize());
                self.in_block = 0;
            }
        }
    }

    /// (BLAKE3, block CRCs).
    pub fn finish(mut self) -> ([u8; 32], Vec<u32>) {
        if self.in_block > 0 || self.crcs.is_empty() {
            self.crcs.push(self.crc.finalize());
        }
        (*self.blake.finalize().as_bytes(), self.crcs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_version() {
        let r = ObjectRecord {
            name: "/a/c/o".into(),
            ts: 5,
            size: 3,
            inline: Some(b"abc".to_vec()),
            meta: vec![("X-Object-Meta-Color".into(), "blue".into())],
            ..Default::default()
        };
        let back = ObjectRecord::decode(&r.encode()).unwrap();
        assert_eq!(back.name, "/a/c/o");
        assert_eq!(back.inline.as_deref(), Some(&b"abc"[..]));
        let mut bad = r.encode();
        bad[0] = 9;
        assert!(ObjectRecord::decode(&bad).unwrap_err().contains("format 9"));
        assert!(ObjectRecord::decode(&[]).is_err());
    }

    #[test]
    fn versions_order_by_timestamp_then_digest() {
        let v = |ts, b: u8| ObjectRecord {
            ts,
            blake3: [b; 32],
            ..Default::default()
        };
        assert_eq!(v(5, 1).order(None), VersionOrder::Newer);
        assert_eq!(v(6, 0).order(Some(&v(5, 9))), VersionOrder::Newer);
        assert_eq!(v(5, 2).order(Some(&v(5, 1))), VersionOrder::Newer);
        assert_eq!(v(5, 1).order(Some(&v(5, 2))), VersionOrder::Older);
        assert_eq!(v(5, 1).order(Some(&v(5, 1))), VersionOrder::Same);
        assert_eq!(v(4, 9).order(Some(&v(5, 0))), VersionOrder::Older);
        let tomb = ObjectRecord {
            ts: 5,
            deleted: true,
            ..Default::default()
        };
        assert_eq!(v(5, 1).order(Some(&tomb)), VersionOrder::Newer);
        assert_eq!(tomb.order(Some(&v(5, 1))), VersionOrder::Older);
    }

    #[test]
    fn format_1_records_keep_their_file_name() {
        let r = ObjectRecord {
            ts: 7,
            blake3: [0xab; 32],
            ..Default::default()
        };
        assert_eq!(
            body_file_name(&r),
            "00000000000000000007-abababababababab.data"
        );
        let mut old = r.encode();
        old[0] = FORMAT_LEGACY;
        let back = ObjectRecord::decode(&old).unwrap();
        assert!(back.legacy_name);
        assert_eq!(body_file_name(&back), "00000000000000000007.data");
        // Rewritten (a POST), it stays format 1 and keeps naming the same file.
        assert_eq!(back.encode()[0], FORMAT_LEGACY);
        assert!(!ObjectRecord::decode(&r.encode()).unwrap().legacy_name);
    }

    #[test]
    fn block_crcs_cover_every_block() {
        let data: Vec<u8> = (0..(2 * BLOCK + 10)).map(|i| (i % 251) as u8).collect();
        let mut h = BodyHasher::new();
        for piece in data.chunks(70_000) {
            h.update(piece);
        }
        let (b3, crcs) = h.finish();
        assert_eq!(b3, *blake3::hash(&data).as_bytes());
        assert_eq!(crcs.len(), 3);
        assert_eq!(
            crcs[1],
            crc32fast::hash(&data[BLOCK as usize..2 * BLOCK as usize])
        );
        assert_eq!(crcs[2], crc32fast::hash(&data[2 * BLOCK as usize..]));
        let (_, empty) = BodyHasher::new().finish();
        assert_eq!(empty, vec![crc32fast::hash(b"")]);
    }
}
