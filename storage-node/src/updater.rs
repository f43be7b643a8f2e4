//! Keeping listings up to date.
//!
//! - **Container updates.** An object write commits, in the same batch as the object record,
//!   an *async pending*: the row its container replica must get. Right after the commit the
//!   object server sends the row ([`send_container_update`]) and drops the pending on
//!   success; if the container replica is down the pending stays and the [`Updater`] worker
//!   retries it until it lands (surviving restarts, since it is on disk).
//! - **Account reports.** A container change marks the container dirty (in the same batch);
//!   the [`AccountReporter`] worker sends the container's row and stats to every account replica
//!   and clears the mark once all of them have it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratus_core::ring::object_path;
use stratus_proto::storage as pb;

use crate::db;
use crate::device::{Device, Row, CF_DIRTY, CF_PENDING};
use crate::worker::{Ctx, Worker};
use crate::Node;

/// How long one update RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write waits for its container update before acknowledging without it
/// (the pending, committed with the write, delivers it later): Swift's
/// `container_update_timeout`. A stalled container replica costs a write one second,
/// never a failed quorum.
pub const SYNC_UPDATE_TIMEOUT: Duration = Duration::from_secs(1);

/// A container update waiting to be delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub account: String,
    pub container: String,
    pub replica_index: u32,
    pub name: String,
    pub ts: u64,
    pub size: u64,
    pub content_type: String,
    pub etag: String,
    pub deleted: bool,
    /// When it was queued (µs), so the retry loop leaves fresh ones to the writer.
    pub queued: u64,
    /// When `content_type` was set: `ts` for a PUT or DELETE, the POST's timestamp for a
    /// POST that set a Content-Type (the row then carries the stored version's `ts`).
    pub ct_ts: u64,
}

/// Format 1 of [`Pending`] (before content-type timestamps: it is `ts`).
#[derive(Serialize, Deserialize)]
struct PendingV1 {
    account: String,
    container: String,
    replica_index: u32,
    name: String,
    ts: u64,
    size: u64,
    content_type: String,
    etag: String,
    deleted: bool,
    queued: u64,
}

impl Pending {
    /// The stored form: a version byte and bincode; version 1 (the layout without
    /// `ct_ts`) when the type came with the data, so a node rolled back can still
    /// deliver what it finds queued, else version 2.
    pub fn encode(&self) -> Vec<u8> {
        if self.ct_ts <= self.ts {
            let mut out = vec![1u8];
            let v1 = PendingV1 {
                account: self.account.clone(),
                container: self.container.clone(),
                replica_index: self.replica_index,
                name: self.name.clone(),
                ts: self.ts,
                size: self.size,
                content_type: self.content_type.clone(),
                etag: self.etag.clone(),
                deleted: self.deleted,
                queued: self.queued,
            };
            bincode::serialize_into(&mut out, &v1).expect("plain struct serializes");
            out
        } else {
            let mut out = vec![2u8];
            bincode::serialize_into(&mut out, self).expect("plain struct serializes");
            out
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        match b.split_first() {
            Some((1, rest)) => {
                let v: PendingV1 = bincode::deserialize(rest).ok()?;
                Some(Pending {
                    account: v.account,
                    container: v.container,
                    replica_index: v.replica_index,
                    name: v.name,
                    ts: v.ts,
                    size: v.size,
                    content_type: v.content_type,
                    etag: v.etag,
                    deleted: v.deleted,
                    queued: v.queued,
                    ct_ts: v.ts,
                })
            }
            Some((2, rest)) => bincode::deserialize(rest).ok(),
            _ => None,
        }
    }

    /// A unique key for this pending (time-ordered).
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.queued.to_be_bytes().to_vec();
        k.extend_from_slice(&rand::random::<[u8; 8]>());
        k
    }
}

/// Sends one object row to its container replica, waiting at most `limit` for it.
pub async fn send_container_update(
    node: &Node,
    p: &Pending,
    limit: Duration,
) -> Result<(), String> {
    let ring = node
        .container_ring
        .current()
        .ok_or("the container ring is not published yet")?;
    let path = object_path(&p.account, Some(&p.container), None);
    let part = ring.partition(&path);
    let ids = ring.primary_ids(part);
    let id = ids[p.replica_index as usize % ids.len()];
    let dev = ring
        .device(id)
        .ok_or("container ring names an unknown device")?;
    let mut client = node.peers.db(&dev.node).map_err(|e| e.to_string())?;
    let req = pb::ObjectUpdateRequest {
        target: Some(pb::DbTarget {
            device: dev.name.clone(),
            part,
            account: p.account.clone(),
            container: p.container.clone(),
        }),
        row: Some(pb::ObjectRow {
            name: p.name.clone(),
            ts: p.ts,
            size: p.size,
            content_type: p.content_type.clone(),
            etag: p.etag.clone(),
            deleted: p.deleted,
            ct_ts: p.ct_ts,
        }),
    };
    match tokio::time::timeout(limit, client.object_update(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err(format!("{}: {}", dev.node, s.message())),
        Err(_) => Err(format!("{}: timed out", dev.node)),
    }
}

/// The updater worker: delivers async pendings on every device until their container
/// replicas have the rows.
pub struct Updater;

#[tonic::async_trait]
impl Worker for Updater {
    fn name(&self) -> &'static str {
        "updater"
    }

    async fn pass(&self, cx: &Ctx) {
        for dev in cx.node.devices.values() {
            match pending_pass(&cx.node, dev).await {
                Ok((seen, done)) => {
                    cx.stats.scanned(seen);
                    cx.stats.repaired(done);
                }
                Err(e) => cx.stats.error(format!("{}: {e}", dev.name)),
            }
        }
    }
}

/// One pass over a device's pendings: (pendings looked at, delivered).
async fn pending_pass(node: &Node, dev: &Arc<Device>) -> Result<(u64, u64), String> {
    let fresh_after = stratus_core::timestamp::Timestamp::now()
        .0
        .saturating_sub(3_000_000);
    let items: Vec<Row> = dev
        .scan(CF_PENDING, &[], false)
        .take(1000)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (mut seen, mut done) = (0, 0);
    for (k, v) in items {
        seen += 1;
        let Some(p) = Pending::decode(&v) else {
            tracing::error!(device = %dev.name, "dropping an unreadable async pending");
            let mut b = rocksdb::WriteBatch::default();
            dev.batch_delete(&mut b, CF_PENDING, &k);
            dev.write(b, false).map_err(|e| e.to_string())?;
            continue;
        };
        if p.queued > fresh_after {
            break; // its writer is probably still delivering it
        }
        match send_container_update(node, &p, RPC_TIMEOUT).await {
            Ok(()) => {
                let mut b = rocksdb::WriteBatch::default();
                dev.batch_delete(&mut b, CF_PENDING, &k);
                dev.write(b, false).map_err(|e| e.to_string())?;
                done += 1;
            }
            Err(e) => {
                tracing::debug!(object = %p.name, error = %e, "container still unreachable");
            }
        }
    }
    Ok((seen, done))
}

/// The account reporter worker: sends dirty containers' rows and stats to their account
/// replicas. Woken by every container change.
pub struct AccountReporter;

#[tonic::async_trait]
impl Worker for AccountReporter {
    fn name(&self) -> &'static str {
        "account-reporter"
    }

    async fn pass(&self, cx: &Ctx) {
        for dev in cx.node.devices.values() {
            match report_pass(&cx.node, dev).await {
                Ok(n) => {
                    cx.stats.scanned(n);
                    cx.stats.repaired(n);
                }
                Err(e) => cx.stats.error(format!("{}: {e}", dev.name)),
            }
        }
    }

    async fn idle(&self, node: &Node, interval: Duration) {
        let _ = tokio::time::timeout(interval, node.dirty.notified()).await;
        // Let a burst of updates to one container coalesce into one report.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reports a device's dirty containers; returns how many were reported.
async fn report_pass(node: &Node, dev: &Arc<Device>) -> Result<u64, String> {
    let items: Vec<Row> = dev
        .scan(CF_DIRTY, &[], false)
        .take(1000)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut last_err = None;
    let mut reported = 0;
    for (k, mark) in items {
        let Some((part, account, container)) = db::parse_container_key(&k) else {
            continue;
        };
        let t = db::Target {
            kind: db::Kind::Container,
            part,
            account,
            container,
        };
        match report_container(node, dev, &t).await {
            Ok(()) => {
                let _g = dev.lock_for(&k).lock().await;
                // Cleared only if no change marked it again meanwhile.
                if dev.get(CF_DIRTY, &k).ok().flatten().as_deref() == Some(&mark[..]) {
                    let mut b = rocksdb::WriteBatch::default();
                    dev.batch_delete(&mut b, CF_DIRTY, &k);
                    dev.write(b, false).map_err(|e| e.to_string())?;
                }
                reported += 1;
            }
            Err(e) => last_err = Some(e),
        }
    }
    last_err.map_or(Ok(reported), Err)
}

/// Sends one container's row and stats to every replica of its account.
pub async fn report_container(
    node: &Node,
    dev: &Arc<Device>,
    t: &db::Target,
) -> Result<(), String> {
    let info = db::info(dev, t).map_err(|e| e.to_string())?;
    let row = db::container_row(
        &t.container,
        &info,
        stratus_core::timestamp::Timestamp::now().0,
    );
    let ring = node
        .account_ring
        .current()
        .ok_or("the account ring is not published yet")?;
    let part = ring.partition(&object_path(&t.account, None, None));
    let calls = ring.primaries(part).map(|d| {
        let row = row.clone();
        let account = t.account.clone();
        async move {
            let mut c = node.peers.db(&d.node).map_err(|e| e.to_string())?;
            let req = pb::AccountUpdateRequest {
                target: Some(pb::DbTarget {
                    device: d.name.clone(),
                    part,
                    account,
                    container: String::new(),
                }),
                row: Some(row),
            };
            match tokio::time::timeout(RPC_TIMEOUT, c.account_update(req)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(s)) => Err(format!("{}: {}", d.node, s.message())),
                Err(_) => Err(format!("{}: timed out", d.node)),
            }
        }
    });
    let results = futures::future::join_all(calls).await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ts: u64, ct_ts: u64) -> Pending {
        Pending {
            account: "a".into(),
            container: "c".into(),
            replica_index: 2,
            name: "o".into(),
            ts,
            size: 5,
            content_type: "image/b".into(),
            etag: "e".into(),
            deleted: false,
            queued: 7,
            ct_ts,
        }
    }

    /// A PUT's pending keeps format 1 (what a node before content-type timestamps
    /// wrote and reads); a POST's carries its type's timestamp in format 2.
    #[test]
    fn pendings_of_both_formats_decode() {
        let put = pending(10, 10);
        let b = put.encode();
        assert_eq!(b[0], 1);
        let back = Pending::decode(&b).unwrap();
        assert_eq!((back.ts, back.ct_ts, back.replica_index), (10, 10, 2));
        let post = pending(10, 20);
        let b = post.encode();
        assert_eq!(b[0], 2);
        let back = Pending::decode(&b).unwrap();
        assert_eq!(
            (back.ts, back.ct_ts, back.content_type.as_str()),
            (10, 20, "image/b")
        );
        assert!(Pending::decode(&[3, 0]).is_none());
    }
}
