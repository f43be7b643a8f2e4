//! The revisioned key-value model replicated by Raft, in the style of etcd.
//!
//! Every command is a [`Txn`]: compares evaluated against the state before it, then either
//! the success or the failure ops, executed in order. A plain put or delete is a txn with no
//! compares. A txn that changes anything gets exactly one new cluster revision, shared by all
//! its writes; a read-only txn leaves the revision alone.
//!
//! Invariants (the state machine relies on them, tests check them):
//! - the cluster revision only grows, by one per writing command;
//! - a key's `version` counts writes since its creation and restarts at 1 after a delete;
//! - each writing revision produces the [`Event`]s watchers see, with the previous value kept
//!   so that reads at an older revision can be answered by undoing newer events.
//!
//! [`apply_txn`] is pure over [`KvRead`]; the RocksDB state machine and the in-memory map used
//! in unit tests both implement it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stratus_core::id::RequestId;
use stratus_core::limits::{MAX_KEY_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES};

/// Total bytes of keys and values one txn may carry (gRPC messages stay well under 8 MiB).
pub const MAX_TXN_BYTES: usize = 4 * 1024 * 1024;

/// Keys and values as byte strings rather than sequences of `u8`: the same bincode wire
/// format (length, then the bytes), but copied in one go instead of byte by byte, which
/// keeps large values (ring blobs) fast to replicate and store.
mod bytes {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A stored key with its revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "bytes")]
    pub key: Vec<u8>,
    #[serde(with = "bytes")]
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// The end of a key range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeEnd {
    /// Only the start key itself.
    Single,
    /// Keys `< end`.
    Before(Vec<u8>),
    /// Every key `>= start`.
    Unbounded,
}

/// A key range: `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: RangeEnd,
}

impl KeyRange {
    /// Exactly one key.
    pub fn single(key: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: key.into(),
            end: RangeEnd::Single,
        }
    }

    /// Every key starting with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        let end = match prefix_end(&start) {
            Some(e) => RangeEnd::Before(e),
            None => RangeEnd::Unbounded,
        };
        KeyRange { start, end }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.start.as_slice(),
            RangeEnd::Before(end) => key >= self.start.as_slice() && key < end.as_slice(),
            RangeEnd::Unbounded => key >= self.start.as_slice(),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`; `None` when there is none
/// (empty prefix or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Which field a compare looks at, with the operand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
    /// The key exists (`true`) or not (`false`).
    Exists(bool),
}

/// The comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One guard of a txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: Target,
}

/// A read inside a txn or on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeQuery {
    pub range: KeyRange,
    /// 0 = no limit.
    pub limit: usize,
    pub keys_only: bool,
    pub count_only: bool,
}

impl RangeQuery {
    /// Check the key limits of a read.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        check_range(&self.range).map(|_| ())
    }
}

/// One operation of a txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Range(RangeQuery),
    Put {
        #[serde(with = "bytes")]
        key: Vec<u8>,
        #[serde(with = "bytes")]
        value: Vec<u8>,
        prev_kv: bool,
    },
    Delete {
        range: KeyRange,
        prev_kv: bool,
    },
}

/// The result of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Range {
        kvs: Vec<KeyValue>,
        more: bool,
        count: i64,
    },
    Put {
        prev: Option<KeyValue>,
    },
    Delete {
        deleted: i64,
        prev_kvs: Vec<KeyValue>,
    },
}

/// A transaction: the only command the state machine knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    /// Whether applying it may walk many keys: a read or delete of a range, not one key.
    pub fn scans(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| match op {
            Op::Range(q) => q.range.end != RangeEnd::Single,
            Op::Delete { range, .. } => range.end != RangeEnd::Single,
            Op::Put { .. } => false,
        })
    }
}

/// The Raft log payload (`TypeConfig::D`): client writes that were proposed together and
/// share one log entry, one log append and one fsync (group commit). They are applied in
/// order, each as its own txn with its own revision and answer; the entry's answer
/// (`TypeConfig::R`) is the list of theirs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Request>);

/// One client write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Present on client writes; a second entry with the same id returns the first's result.
    pub id: Option<RequestId>,
    pub txn: Txn,
}

/// The state machine's answer to one [`Request`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The cluster revision after this command.
    pub revision: i64,
    pub succeeded: bool,
    pub results: Vec<OpResult>,
}

/// What a watcher sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One key change at one revision. A delete's `kv` has the key, an empty value and
/// `mod_revision` = the delete's revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// A request the store refuses before it reaches the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidRequest {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {0} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLarge(usize),
    #[error("value is {0} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
    #[error("txn has {0} operations; the limit is {MAX_TXN_OPS}")]
    TooManyOps(usize),
    #[error("txn carries {0} bytes; the limit is {MAX_TXN_BYTES}")]
    TxnTooLarge(usize),
    #[error("malformed compare on key {key:?}: {why}")]
    MalformedCompare { key: String, why: &'static str },
    #[error("duplicate key {0:?} written twice in one txn")]
    DuplicateKey(String),
    #[error("range end sorts before its start")]
    BadRange,
}

fn check_key(key: &[u8]) -> Result<usize, InvalidRequest> {
    if key.is_empty() {
        return Err(InvalidRequest::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(InvalidRequest::KeyTooLarge(key.len()));
    }
    Ok(key.len())
}

fn check_range(range: &KeyRange) -> Result<usize, InvalidRequest> {
    if range.end == RangeEnd::Single {
        return check_key(&range.start);
    }
    if range.start.len() > MAX_KEY_BYTES {
        return Err(InvalidRequest::KeyTooLarge(range.start.len()));
    }
    if let RangeEnd::Before(end) = &range.end {
        if end.len() > MAX_KEY_BYTES + 1 {
            return Err(InvalidRequest::KeyTooLarge(end.len()));
        }
        if end.as_slice() < range.start.as_slice() {
            return Err(InvalidRequest::BadRange);
        }
    }
    Ok(range.start.len())
}

impl Txn {
    /// Check every limit; a txn that passes can be applied without error.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        let n = self.compares.len() + self.success.len() + self.failure.len();
        if n > MAX_TXN_OPS {
            return Err(InvalidRequest::TooManyOps(n));
        }
        let mut bytes = 0usize;
        for c in &self.compares {
            bytes += check_key(&c.key)?;
            let why = match (&c.target, c.op) {
                (Target::Exists(_), CompareOp::Greater | CompareOp::Less) => {
                    Some("existence can only be compared with EQUAL or NOT_EQUAL")
                }
                (Target::Version(v) | Target::CreateRevision(v) | Target::ModRevision(v), _)
                    if *v < 0 =>
                {
                    Some("revisions and versions are never negative")
                }
                _ => None,
            };
            if let Some(why) = why {
                return Err(InvalidRequest::MalformedCompare {
                    key: lossy(&c.key),
                    why,
                });
            }
            if let Target::Value(v) = &c.target {
                if v.len() > MAX_VALUE_BYTES {
                    return Err(InvalidRequest::ValueTooLarge(v.len()));
                }
                bytes += v.len();
            }
        }
        for ops in [&self.success, &self.failure] {
            let mut written = std::collections::BTreeSet::new();
            for op in ops.iter() {
                match op {
                    Op::Range(q) => bytes += check_range(&q.range)?,
                    Op::Put { key, value, .. } => {
                        bytes += check_key(key)?;
                        if value.len() > MAX_VALUE_BYTES {
                            return Err(InvalidRequest::ValueTooLarge(value.len()));
                        }
                        bytes += value.len();
                        if !written.insert(key.clone()) {
                            return Err(InvalidRequest::DuplicateKey(lossy(key)));
                        }
                    }
                    Op::Delete { range, .. } => bytes += check_range(range)?,
                }
            }
        }
        if bytes > MAX_TXN_BYTES {
            return Err(InvalidRequest::TxnTooLarge(bytes));
        }
        Ok(())
    }

    /// Whether any op can change state.
    pub fn may_write(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .any(|op| !matches!(op, Op::Range(_)))
    }
}

/// Printable form of a key for messages.
pub fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Read access to the current state, implemented by the RocksDB state machine and by
/// [`MemKv`].
pub trait KvRead {
    fn get(&self, key: &[u8]) -> Option<KeyValue>;
    /// All live keys in `range`, in key order.
    fn range(&self, range: &KeyRange) -> Vec<KeyValue>;
}

/// The outcome of applying a txn: the answer plus what to persist.
#[derive(Debug, Default)]
pub struct Applied {
    pub response: Response,
    /// Final state of every key the txn wrote (`None` = deleted), in key order.
    pub changes: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Events at the new revision, in the order the txn made them; empty for no write.
    pub events: Vec<Event>,
}

/// Apply `txn` on top of `state` whose current revision is `revision`.
pub fn apply_txn(state: &dyn KvRead, txn: &Txn, revision: i64) -> Applied {
    let succeeded = txn
        .compares
        .iter()
        .all(|c| compare(state.get(&c.key).as_ref(), c));
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let new_rev = revision + 1;
    let mut overlay: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
    let mut events = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    let current = |overlay: &BTreeMap<Vec<u8>, Option<KeyValue>>, key: &[u8]| match overlay.get(key)
    {
        Some(v) => v.clone(),
        None => state.get(key),
    };
    for op in ops {
        match op {
            Op::Range(q) => {
                let kvs = merged_range(state, &overlay, &q.range);
                results.push(range_result(kvs, q));
            }
            Op::Put {
                key,
                value,
                prev_kv,
            } => {
                let prev = current(&overlay, key);
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.as_ref().map_or(new_rev, |p| p.create_revision),
                    mod_revision: new_rev,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                overlay.insert(key.clone(), Some(kv.clone()));
                events.push(Event {
                    kind: EventKind::Put,
                    kv,
                    prev_kv: prev.clone(),
                });
                results.push(OpResult::Put {
                    prev: if *prev_kv { prev } else { None },
                });
            }
            Op::Delete { range, prev_kv } => {
                let victims = merged_range(state, &overlay, range);
                let deleted = victims.len() as i64;
                for prev in &victims {
                    overlay.insert(prev.key.clone(), None);
                    let kv = KeyValue {
                        key: prev.key.clone(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: new_rev,
                        version: 0,
                    };
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv,
                        prev_kv: Some(prev.clone()),
                    });
                }
                results.push(OpResult::Delete {
                    deleted,
                    prev_kvs: if *prev_kv { victims } else { Vec::new() },
                });
            }
        }
    }
    let revision = if events.is_empty() { revision } else { new_rev };
    Applied {
        response: Response {
            revision,
            succeeded,
            results,
        },
        changes: overlay,
        events,
    }
}

/// Shape a list of key-values as the answer to `q`.
pub fn range_result(kvs: Vec<KeyValue>, q: &RangeQuery) -> OpResult {
    let total = kvs.len();
    range_page(kvs, q, q.limit, total)
}

/// The answer to `q` from the first keys of its range (`kvs`, at least `limit + 1` of
/// them if there are more) and how many keys the range holds in all (`total`): at most
/// `limit` keys (0 = all), `more` if the range holds more.
pub fn range_page(mut kvs: Vec<KeyValue>, q: &RangeQuery, limit: usize, total: usize) -> OpResult {
    let count = total as i64;
    let more = limit > 0 && total > limit;
    if q.count_only {
        kvs.clear();
    } else if limit > 0 {
        kvs.truncate(limit);
    }
    if q.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    OpResult::Range { kvs, more, count }
}

fn merged_range(
    state: &dyn KvRead,
    overlay: &BTreeMap<Vec<u8>, Option<KeyValue>>,
    range: &KeyRange,
) -> Vec<KeyValue> {
    if overlay.is_empty() {
        return state.range(range);
    }
    let mut map: BTreeMap<Vec<u8>, KeyValue> = state
        .range(range)
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    for (k, v) in overlay.iter().filter(|(k, _)| range.contains(k)) {
        match v {
            Some(kv) => map.insert(k.clone(), kv.clone()),
            None => map.remove(k),
        };
    }
    map.into_values().collect()
}

fn compare(kv: Option<&KeyValue>, c: &Compare) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        // A missing key has version, create and mod revision 0, and an empty value
        // compares as absent (never equal to anything), as in etcd.
        Target::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
        Target::CreateRevision(v) => kv.map_or(0, |kv| kv.create_revision).cmp(v),
        Target::ModRevision(v) => kv.map_or(0, |kv| kv.mod_revision).cmp(v),
        Target::Value(v) => match kv {
            Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
            None => return false,
        },
        Target::Exists(want) => {
            return match c.op {
                CompareOp::Equal => kv.is_some() == *want,
                CompareOp::NotEqual => kv.is_some() != *want,
                _ => false,
            }
        }
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}

/// Undo `events` (newest first) on top of `kvs` to see `range` as of an older revision.
pub fn undo_events(
    kvs: Vec<KeyValue>,
    range: &KeyRange,
    newest_first: impl IntoIterator<Item = Event>,
) -> Vec<KeyValue> {
    let mut map: BTreeMap<Vec<u8>, KeyValue> =
        kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    for ev in newest_first {
        if !range.contains(&ev.kv.key) {
            continue;
        }
        match ev.prev_kv {
            Some(prev) => map.insert(prev.key.clone(), prev),
            None => map.remove(&ev.kv.key),
        };
    }
    map.into_values().collect()
}

/// An in-memory store over [`apply_txn`], for unit tests of the model.
#[derive(Default, Debug)]
pub struct MemKv {
    pub map: BTreeMap<Vec<u8>, KeyValue>,
    pub revision: i64,
    pub history: Vec<(i64, Vec<Event>)>,
}

impl KvRead for MemKv {
    fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.map.get(key).cloned()
    }
    fn range(&self, range: &KeyRange) -> Vec<KeyValue> {
        self.map
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect()
    }
}

impl MemKv {
    /// Apply and persist in memory.
    pub fn apply(&mut self, txn: &Txn) -> Response {
        let applied = apply_txn(self, txn, self.revision);
        for (k, v) in applied.changes {
            match v {
                Some(kv) => self.map.insert(k, kv),
                None => self.map.remove(&k),
            };
        }
        if !applied.events.is_empty() {
            self.revision = applied.response.revision;
            self.history.push((self.revision, applied.events));
        }
        applied.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txn_scans_when_it_reads_or_deletes_a_range() {
        let txn = |op: Op| Txn {
            compares: vec![],
            success: vec![],
            failure: vec![op],
        };
        let put = Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            prev_kv: true,
        };
        let read = |range| {
            Op::Range(RangeQuery {
                range,
                limit: 0,
                keys_only: false,
                count_only: false,
            })
        };
        let delete = |range| Op::Delete {
            range,
            prev_kv: false,
        };
        assert!(!txn(put).scans());
        assert!(!txn(read(KeyRange::single("k"))).scans());
        assert!(!txn(delete(KeyRange::single("k"))).scans());
        assert!(txn(read(KeyRange::prefix("bench/"))).scans());
        assert!(txn(delete(KeyRange::prefix("bench/"))).scans());
        assert!(txn(delete(KeyRange::prefix(""))).scans());
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: k.into(),
            value: v.into(),
            prev_kv: true,
        }
    }
    fn txn(ops: Vec<Op>) -> Txn {
        Txn {
            compares: vec![],
            success: ops,
            failure: vec![],
        }
    }

    #[test]
    fn revisions_and_versions_follow_etcd() {
        let mut kv = MemKv::default();
        let r = kv.apply(&txn(vec![put("a", "1")]));
        assert_eq!(r.revision, 1);
        kv.apply(&txn(vec![put("a", "2"), put("b", "x")]));
        let a = kv.get(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 2, 2));
        assert_eq!(
            kv.get(b"b").unwrap().mod_revision,
            2,
            "one revision per txn"
        );
        let r = kv.apply(&txn(vec![Op::Delete {
            range: KeyRange::single("a"),
            prev_kv: true,
        }]));
        assert_eq!(r.revision, 3);
        assert!(
            matches!(&r.results[0], OpResult::Delete { deleted: 1, prev_kvs } if prev_kvs[0].value == b"2")
        );
        kv.apply(&txn(vec![put("a", "3")]));
        let a = kv.get(b"a").unwrap();
        assert_eq!(
            (a.create_revision, a.version),
            (4, 1),
            "version restarts after delete"
        );
        // A read-only txn and a delete of nothing leave the revision alone.
        let r = kv.apply(&txn(vec![Op::Delete {
            range: KeyRange::single("zz"),
            prev_kv: false,
        }]));
        assert_eq!(r.revision, 4);
        assert_eq!(kv.revision, 4);
    }

    #[test]
    fn compares_choose_the_branch() {
        let mut kv = MemKv::default();
        kv.apply(&txn(vec![put("c", "0")]));
        let cas = |expect: &str, new: &str| Txn {
            compares: vec![Compare {
                key: "c".into(),
                op: CompareOp::Equal,
                target: Target::Value(expect.into()),
            }],
            success: vec![put("c", new)],
            failure: vec![Op::Range(RangeQuery {
                range: KeyRange::single("c"),
                limit: 0,
                keys_only: false,
                count_only: false,
            })],
        };
        assert!(kv.apply(&cas("0", "1")).succeeded);
        let r = kv.apply(&cas("0", "2"));
        assert!(!r.succeeded);
        assert!(matches!(&r.results[0], OpResult::Range { kvs, .. } if kvs[0].value == b"1"));
        let absent = Compare {
            key: "nope".into(),
            op: CompareOp::Equal,
            target: Target::Exists(false),
        };
        assert!(
            kv.apply(&Txn {
                compares: vec![absent],
                success: vec![],
                failure: vec![]
            })
            .succeeded
        );
        let v0 = Compare {
            key: "nope".into(),
            op: CompareOp::Equal,
            target: Target::Version(0),
        };
        assert!(
            kv.apply(&Txn {
                compares: vec![v0],
                success: vec![],
                failure: vec![]
            })
            .succeeded
        );
    }

    #[test]
    fn txn_reads_its_own_writes_and_prefix_delete() {
        let mut kv = MemKv::default();
        kv.apply(&txn(vec![put("p/1", "a"), put("p/2", "b"), put("q", "c")]));
        let r = kv.apply(&txn(vec![
            put("p/3", "c"),
            Op::Range(RangeQuery {
                range: KeyRange::prefix("p/"),
                limit: 2,
                keys_only: false,
                count_only: false,
            }),
            Op::Delete {
                range: KeyRange::prefix("p/"),
                prev_kv: false,
            },
        ]));
        assert!(
            matches!(&r.results[1], OpResult::Range { kvs, more: true, count: 3 } if kvs.len() == 2)
        );
        assert!(matches!(&r.results[2], OpResult::Delete { deleted: 3, .. }));
        assert_eq!(kv.map.len(), 1);
    }

    #[test]
    fn undo_events_reconstructs_old_revisions() {
        let mut kv = MemKv::default();
        kv.apply(&txn(vec![put("k", "1")]));
        kv.apply(&txn(vec![put("k", "2"), put("j", "x")]));
        kv.apply(&txn(vec![Op::Delete {
            range: KeyRange::single("k"),
            prev_kv: false,
        }]));
        let all = KeyRange::prefix("");
        let newer: Vec<Event> = kv
            .history
            .iter()
            .rev()
            .take_while(|(r, _)| *r > 1)
            .flat_map(|(_, e)| e.iter().rev().cloned())
            .collect();
        let at1 = undo_events(kv.range(&all), &all, newer);
        assert_eq!(at1.len(), 1);
        assert_eq!(at1[0].value, b"1");
    }

    #[test]
    fn validation_limits() {
        let big_key = vec![b'k'; MAX_KEY_BYTES + 1];
        assert_eq!(
            txn(vec![Op::Put {
                key: big_key,
                value: vec![],
                prev_kv: false
            }])
            .validate(),
            Err(InvalidRequest::KeyTooLarge(MAX_KEY_BYTES + 1))
        );
        let big_val = vec![0; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            txn(vec![Op::Put {
                key: "k".into(),
                value: big_val,
                prev_kv: false
            }])
            .validate(),
            Err(InvalidRequest::ValueTooLarge(_))
        ));
        assert!(matches!(
            txn((0..=MAX_TXN_OPS).map(|i| put(&i.to_string(), "")).collect()).validate(),
            Err(InvalidRequest::TooManyOps(129))
        ));
        assert!(
            txn((0..MAX_TXN_OPS).map(|i| put(&i.to_string(), "")).collect())
                .validate()
                .is_ok()
        );
        let bad = Compare {
            key: "k".into(),
            op: CompareOp::Greater,
            target: Target::Exists(true),
        };
        assert!(matches!(
            Txn {
                compares: vec![bad],
                ..Default::default()
            }
            .validate(),
            Err(InvalidRequest::MalformedCompare { .. })
        ));
        assert_eq!(
            txn(vec![put("a", "1"), put("a", "2")]).validate(),
            Err(InvalidRequest::DuplicateKey("a".into()))
        );
        assert_eq!(
            txn(vec![put("", "1")]).validate(),
            Err(InvalidRequest::EmptyKey)
        );
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
