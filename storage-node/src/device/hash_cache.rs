//! The per-device cache of partition hashes (computed in [`crate::hashes`]).
//!
//! [`HashCache`] keeps the hashes of every partition it has been handed, per keyspace.
//! A write marks its suffix dirty and bumps the partition's generation
//! ([`HashCache::invalidate`]); a partition rewritten wholesale is forgotten
//! ([`HashCache::forget`]). A reader asks [`HashCache::lookup`]: a clean partition costs a
//! map lookup; a stale one says which suffixes to recompute (only the dirty ones, once
//! every suffix has been computed) and at which generation. The reader hands what it
//! computed to [`HashCache::store`], which merges it with the clean suffixes and caches
//! the result only if the generation has not moved: a recomputation that raced with a
//! write is returned but not cached.
//!
//! The cache lives here, beside the device that owns it, so the device needs nothing of
//! the code that reads its records to compute hashes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::keyspace::Space;

/// A suffix's (or database partition's) hash and how many records it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuffixHash {
    /// The hash (the first 16 bytes of a BLAKE3).
    pub hash: [u8; 16],
    /// How many records it covers.
    pub items: u64,
}

/// Suffix → hash of one partition (suffixes without records are absent).
pub type Hashes = BTreeMap<u16, SuffixHash>;

#[derive(Default)]
struct PartHashes {
    /// Every suffix has been computed at least once.
    complete: bool,
    suffixes: Hashes,
    dirty: BTreeSet<u16>,
    generation: u64,
    /// The whole partition's hash, while `complete` and clean.
    digest: Option<Option<SuffixHash>>,
}

impl PartHashes {
    fn store(&mut self, h: Hashes) {
        self.digest = Some(digest_of(&h));
        self.suffixes = h;
        self.complete = true;
        self.dirty.clear();
    }
}

/// The hash of a whole partition and the records it covers (`None` when it is empty).
pub fn digest_of(h: &Hashes) -> Option<SuffixHash> {
    (!h.is_empty()).then(|| SuffixHash {
        hash: partition_hash(h),
        items: h.values().map(|s| s.items).sum(),
    })
}

/// One hash for a whole partition (equal on devices whose suffix hashes all agree).
pub fn partition_hash(h: &Hashes) -> [u8; 16] {
    let mut b = blake3::Hasher::new();
    for (s, sh) in h {
        b.update(&s.to_le_bytes());
        b.update(&sh.hash);
    }
    first16(b.finalize())
}

/// The first 16 bytes of a BLAKE3 hash: the width of every partition hash.
pub fn first16(h: blake3::Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// What [`HashCache::lookup`] knows of a partition.
pub enum Cached {
    /// Nothing changed since its hashes were computed: here they are.
    Clean(Hashes),
    /// Its hashes must be (partly) recomputed, then handed to [`HashCache::store`].
    Stale {
        /// The partition's generation when it was looked up.
        generation: u64,
        /// The suffixes to recompute; `None`: every suffix (never computed in full yet).
        dirty: Option<BTreeSet<u16>>,
    },
}

/// The per-device cache of partition hashes.
#[derive(Default)]
pub struct HashCache {
    parts: Mutex<HashMap<(Space, u32), PartHashes>>,
}

impl HashCache {
    /// A record of `suffix` in `part` changed.
    pub fn invalidate(&self, space: Space, part: u32, suffix: u16) {
        let mut parts = self.parts.lock().expect("hash cache lock");
        let e = parts.entry((space, part)).or_default();
        e.generation += 1;
        e.dirty.insert(suffix);
        e.digest = None;
    }

    /// The partition left this device (or was rewritten wholesale): compute it afresh.
    pub fn forget(&self, space: Space, part: u32) {
        let mut parts = self.parts.lock().expect("hash cache lock");
        let e = parts.entry((space, part)).or_default();
        e.generation += 1;
        e.complete = false;
        e.suffixes.clear();
        e.dirty.clear();
        e.digest = None;
    }

    /// The cached hashes of `part`, or what to recompute of them.
    pub fn lookup(&self, space: Space, part: u32) -> Cached {
        let mut parts = self.parts.lock().expect("hash cache lock");
        let e = parts.entry((space, part)).or_default();
        if e.complete && e.dirty.is_empty() {
            return Cached::Clean(e.suffixes.clone());
        }
        Cached::Stale {
            generation: e.generation,
            dirty: e.complete.then(|| e.dirty.clone()),
        }
    }

    /// Completes a recomputation that [`HashCache::lookup`] asked for: `fresh` replaces
    /// the `dirty` suffixes of the cached hashes (all of them when `dirty` is `None`).
    /// The result is cached only if nothing was written since `generation`; it is
    /// returned either way.
    pub fn store(
        &self,
        space: Space,
        part: u32,
        generation: u64,
        dirty: Option<&BTreeSet<u16>>,
        fresh: Hashes,
    ) -> Hashes {
        let mut parts = self.parts.lock().expect("hash cache lock");
        let e = parts.entry((space, part)).or_default();
        let mut result = match dirty {
            None => Hashes::new(),
            Some(_) => e.suffixes.clone(),
        };
        if let Some(dirty) = dirty {
            for s in dirty {
                result.remove(s);
            }
        }
        result.extend(fresh);
        if e.generation == generation {
            e.store(result.clone());
        }
        result
    }

    /// The cached hash of a whole partition (`Some(None)`: known to be empty), if it is
    /// known and clean.
    pub fn digest(&self, space: Space, part: u32) -> Option<Option<SuffixHash>> {
        let parts = self.parts.lock().expect("hash cache lock");
        parts.get(&(space, part)).and_then(|e| e.digest)
    }
}
