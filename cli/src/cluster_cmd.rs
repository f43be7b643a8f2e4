//! Watching a cluster heal: `stratus cluster health`, `stratus worker list|set`,
//! `stratus lookup`, and the check `stratus ring rebalance` makes before it moves data.
//!
//! Every figure comes from the storage nodes themselves (their Admin and Replication
//! services), found through the rings and their registrations in meta.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use stratus_client::meta::MetaClient;
use stratus_client::peers::Peers;
use stratus_client::records::REGISTRATION_PREFIX;
use stratus_client::records::{Progress, PROGRESS_PREFIX};
use stratus_client::rings::RingStore;
use stratus_core::ring::{object_path, parse_path, Ring};
use stratus_proto::storage as pb;
use stratus_proto::storage::admin_client::AdminClient;

use crate::{table, Conn};

/// How long one node may take to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

const RINGS: [&str; 3] = ["account", "container", "object"];

/// `stratus cluster …`
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// For each ring: partition-replicas on their primaries and in sync, behind, missing,
    /// and copies on handoffs. 100% means every copy is home and identical.
    Health,
}

/// `stratus quarantine …`
#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
    /// Copies every node moved to quarantine (damaged or missing bodies, undecodable
    /// records): device, file, size, when.
    List,
    /// Removes quarantined copies older than `--older-than` seconds (nothing else ever
    /// removes them: look at them first, once the cluster is healthy again).
    Purge {
        /// Only copies quarantined at least this many seconds ago.
        #[arg(long, default_value_t = 0)]
        older_than: u64,
    },
}

/// `stratus worker …`
#[derive(Subcommand, Debug)]
pub enum WorkerCmd {
    /// Every node's background workers: state, last pass, items scanned, repaired,
    /// quarantined, errors.
    List,
    /// Change a worker setting (rate limits, interval) on a node, or on `all` nodes.
    Set {
        /// HOST:PORT of the storage node, or `all`.
        node: String,
        /// replicator, auditor, updater, account-reporter, expirer or reclaimer.
        worker: String,
        /// e.g. bytes_per_sec, parts_per_sec, interval, reclaim_age.
        setting: String,
        value: f64,
    },
}

/// The storage nodes of a cluster: those in any ring, and those registered in meta.
async fn nodes(client: &MetaClient, rings: &BTreeMap<String, Ring>) -> Result<Vec<String>> {
    let mut set = BTreeSet::new();
    for r in rings.values() {
        for d in r.devices() {
            set.insert(d.node.clone());
        }
    }
    let regs = client.range_prefix(REGISTRATION_PREFIX, 0).await?;
    for kv in regs.kvs {
        if let Some(a) = String::from_utf8_lossy(&kv.key).strip_prefix(REGISTRATION_PREFIX) {
            set.insert(a.to_string());
        }
    }
    Ok(set.into_iter().collect())
}

/// The published rings that place data on storage nodes: [`RINGS`] and the object ring of
/// every storage policy but the first (`object-1` …) that has one.
async fn rings(client: &MetaClient) -> Result<BTreeMap<String, Ring>> {
    let store = RingStore::new(client.clone());
    let mut out = BTreeMap::new();
    let policy_rings =
        (1..stratus_client::policies::MAX_POLICIES).map(stratus_client::policies::ring_name);
    for name in RINGS.iter().map(|n| n.to_string()).chain(policy_rings) {
        if let Ok((r, _)) = store.current(&name).await {
            out.insert(name, (*r).clone());
        }
    }
    Ok(out)
}

fn admin(peers: &Peers, addr: &str) -> Result<AdminClient<tonic::transport::Channel>> {
    Ok(AdminClient::new(peers.channel(addr)?))
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(NODE_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => bail!("{}", s.message()),
        Err(_) => bail!("timed out"),
    }
}

/// Partition copies by (node, device): (partition, partition hash) each.
pub type Copies = HashMap<(String, String), Vec<(u32, Vec<u8>)>>;

/// One ring's health.
#[derive(Debug, Default, serde::Serialize)]
pub struct RingHealth {
    pub ring: String,
    pub version: u64,
    /// Partitions holding data somewhere.
    pub partitions: u64,
    /// Their partition-replica slots.
    pub slots: u64,
    /// Slots whose primary holds a copy identical to the reference copy.
    pub in_sync: u64,
    /// Slots whose primary holds a copy that differs (being repaired).
    pub behind: u64,
    /// Slots whose primary holds nothing (or could not be asked).
    pub missing: u64,
    /// Copies on devices that are not primaries (to be moved home).
    pub handoffs: u64,
    pub percent: f64,
}

/// Works out a ring's health from the partition copies each node reported, keyed by
/// (node, device). The reference copy of a partition is the hash most of its copies share.
pub fn ring_health(name: &str, ring: &Ring, copies: &Copies) -> RingHealth {
    // partition → (node, device, hash) of each copy
    type Held<'a> = Vec<(&'a str, &'a str, &'a [u8])>;
    let mut by_part: BTreeMap<u32, Held> = BTreeMap::new();
    for ((node, dev), list) in copies {
        for (part, hash) in list {
            by_part
                .entry(*part)
                .or_default()
                .push((node.as_str(), dev.as_str(), hash.as_slice()));
        }
    }
    let mut h = RingHealth {
        ring: name.to_string(),
        version: ring.version(),
        ..Default::default()
    };
    for (part, list) in by_part {
        if part as usize >= ring.partitions() {
            h.handoffs += list.len() as u64;
            continue;
        }
        h.partitions += 1;
        let mut votes: HashMap<&[u8], usize> = HashMap::new();
        for (_, _, hash) in &list {
            *votes.entry(hash).or_default() += 1;
        }
        let reference = votes
            .iter()
            .max_by_key(|(hash, n)| (**n, **hash))
            .map(|(hash, _)| *hash);
        let primaries: Vec<_> = ring.primaries(part).collect();
        h.slots += primaries.len() as u64;
        for p in &primaries {
            match list.iter().find(|(n, d, _)| *n == p.node && *d == p.name) {
                Some((_, _, hash)) if Some(*hash) == reference => h.in_sync += 1,
                Some(_) => h.behind += 1,
                None => h.missing += 1,
            }
        }
        h.handoffs += list
            .iter()
            .filter(|(n, d, _)| !primaries.iter().any(|p| p.node == *n && p.name == *d))
            .count() as u64;
    }
    h.percent = if h.slots == 0 {
        100.0
    } else {
        100.0 * h.in_sync as f64 / h.slots as f64
    };
    h
}

async fn health(conn: &Conn) -> Result<()> {
    let client = conn.client()?;
    let rings = rings(&client).await?;
    if rings.is_empty() {
        bail!("no ring is published yet (stratus ring create/add/rebalance)");
    }
    let nodes = nodes(&client, &rings).await?;
    let peers = Peers::default();
    let mut out = Vec::new();
    let mut unreachable = BTreeSet::new();
    let mut devices = Vec::new();
    // (node, device) → (I/O errors, failing, files in quarantine)
    let mut states: BTreeMap<(String, String), (u64, bool, u64)> = BTreeMap::new();
    for (name, ring) in &rings {
        let mut copies = Copies::new();
        let calls = nodes.iter().map(|n| {
            let peers = &peers;
            let ring = name.clone();
            async move {
                let mut c = admin(peers, n)?;
                timed(c.partitions(pb::PartitionsRequest { ring })).await
            }
        });
        let replies = futures::future::join_all(calls).await;
        for (n, r) in nodes.iter().zip(replies) {
            match r {
                Ok(r) => {
                    for d in &r.devices {
                        states.insert(
                            (n.clone(), d.device.clone()),
                            (d.io_errors, d.failing, d.quarantined),
                        );
                    }
                    let mut per_dev: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                    for c in &r.copies {
                        let e = per_dev.entry(c.device.clone()).or_default();
                        e.0 += 1;
                        e.1 += c.items;
                    }
                    for (d, (parts, items)) in per_dev {
                        devices.push(json!({"ring": name, "node": n, "device": d,
                            "partitions": parts, "items": items}));
                    }
                    for c in r.copies {
                        copies
                            .entry((n.clone(), c.device))
                            .or_default()
                            .push((c.part, c.hash.to_vec()));
                    }
                }
                Err(e) => {
                    unreachable.insert(format!("{n}: {e}"));
                }
            }
        }
        out.push(ring_health(name, ring, &copies));
    }
    // Volumes: a replica out of a volume's set missed writes and is not yet caught up.
    let vols = stratus_client::volumes::volumes(client.clone())
        .list()
        .await?;
    let degraded: Vec<serde_json::Value> = vols
        .iter()
        .filter(|v| !v.stale.is_empty())
        .map(|v| json!({"volume": v.id, "stale": v.stale}))
        .collect();
    let failing: Vec<serde_json::Value> = states
        .iter()
        .filter(|(_, s)| s.1)
        .map(|((n, d), s)| json!({"node": n, "device": d, "io_errors": s.0}))
        .collect();
    let quarantined: u64 = states.values().map(|s| s.2).sum();
    if conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "rings": out,
                "unreachable": unreachable,
                "devices": devices,
                "failing_devices": failing,
                "quarantined_files": quarantined,
                "volumes": {"total": vols.len(), "degraded": degraded},
            }))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|h| {
            vec![
                h.ring.clone(),
                h.version.to_string(),
                h.partitions.to_string(),
                format!("{}/{}", h.in_sync, h.slots),
                h.behind.to_string(),
                h.missing.to_string(),
                h.handoffs.to_string(),
                format!("{:.1}%", h.percent),
            ]
        })
        .collect();
    println!(
        "{}",
        table::render(
            &[
                "RING",
                "VERSION",
                "PARTITIONS",
                "IN SYNC ON PRIMARIES",
                "BEHIND",
                "MISSING",
                "ON HANDOFFS",
                "HEALTHY",
            ],
            &rows
        )
    );
    let whole = vols.len() - degraded.len();
    println!(
        "volumes: {whole}/{} with every replica in the set ({:.1}%)",
        vols.len(),
        if vols.is_empty() {
            100.0
        } else {
            100.0 * whole as f64 / vols.len() as f64
        }
    );
    for d in &degraded {
        println!(
            "volume {} waits for {} to catch up",
            d["volume"], d["stale"]
        );
    }
    for u in &unreachable {
        println!("unreachable: {u}");
    }
    for f in &failing {
        println!(
            "failing: device {} on {} ({} I/O errors; the last in the past 5 minutes)",
            f["device"].as_str().unwrap_or(""),
            f["node"].as_str().unwrap_or(""),
            f["io_errors"]
        );
    }
    if quarantined > 0 {
        println!("quarantined: {quarantined} file(s) (stratus quarantine list)");
    }
    Ok(())
}

async fn quarantine(conn: &Conn, cmd: QuarantineCmd) -> Result<()> {
    let client = conn.client()?;
    let rings = rings(&client).await?;
    let nodes = nodes(&client, &rings).await?;
    let peers = Peers::default();
    let req = match cmd {
        QuarantineCmd::List => pb::QuarantineRequest::default(),
        QuarantineCmd::Purge { older_than } => pb::QuarantineRequest {
            purge: true,
            older_than_secs: older_than,
        },
    };
    let mut rows = Vec::new();
    let mut js = Vec::new();
    let mut purged = 0;
    for n in &nodes {
        let mut c = admin(&peers, n)?;
        let r = match timed(c.quarantine(req)).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("unreachable: {n}: {e}");
                continue;
            }
        };
        purged += r.purged;
        for f in r.files {
            rows.push(vec![
                n.clone(),
                f.device.clone(),
                f.name.clone(),
                f.bytes.to_string(),
                f.at.to_string(),
            ]);
            js.push(json!({"node": n, "device": f.device, "name": f.name,
                "bytes": f.bytes, "at": f.at}));
        }
    }
    if conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"files": js, "purged": purged}))?
        );
        return Ok(());
    }
    if req.purge {
        println!("purged {purged} file(s)");
    }
    println!(
        "{}",
        table::render(
            &["NODE", "DEVICE", "FILE", "BYTES", "QUARANTINED AT"],
            &rows
        )
    );
    Ok(())
}

/// Runs `stratus quarantine …`.
pub async fn run_quarantine(conn: &Conn, cmd: QuarantineCmd) -> Result<()> {
    quarantine(conn, cmd).await
}

async fn worker(conn: &Conn, cmd: WorkerCmd) -> Result<()> {
    let client = conn.client()?;
    let rings = rings(&client).await?;
    let peers = Peers::default();
    match cmd {
        WorkerCmd::List => {
            let nodes = nodes(&client, &rings).await?;
            let mut replies = Vec::new();
            let mut rows = Vec::new();
            for n in &nodes {
                let r = match admin(&peers, n) {
                    Ok(mut c) => timed(c.workers(pb::WorkersRequest {})).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(r) => {
                        for w in &r.workers {
                            let progress = if w.state == "running" && w.progress_total > 0 {
                                format!(" {}/{}", w.progress_done, w.progress_total)
                            } else {
                                String::new()
                            };
                            rows.push(vec![
                                n.clone(),
                                w.name.clone(),
                                format!("{}{progress}", w.state),
                                w.passes.to_string(),
                                format!("{:.2}s", w.last_pass_secs),
                                w.scanned.to_string(),
                                format!("{:.1} MiB", w.bytes as f64 / 1048576.0),
                                w.repaired.to_string(),
                                w.quarantined.to_string(),
                                w.errors.to_string(),
                                w.last_error.chars().take(60).collect(),
                            ]);
                        }
                        replies.push(json!({"node": n, "workers": r.workers.iter().map(worker_json).collect::<Vec<_>>()}));
                    }
                    Err(e) => {
                        rows.push(vec![n.clone(), "-".into(), format!("unreachable: {e}")]);
                        replies.push(json!({"node": n, "error": e.to_string()}));
                    }
                }
            }
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&json!(replies))?);
                return Ok(());
            }
            println!(
                "{}",
                table::render(
                    &[
                        "NODE",
                        "WORKER",
                        "STATE",
                        "PASSES",
                        "LAST PASS",
                        "SCANNED",
                        "BYTES",
                        "REPAIRED",
                        "QUARANTINED",
                        "ERRORS",
                        "LAST ERROR"
                    ],
                    &rows
                )
            );
        }
        WorkerCmd::Set {
            node,
            worker,
            setting,
            value,
        } => {
            let targets = if node == "all" {
                nodes(&client, &rings).await?
            } else {
                vec![node]
            };
            let mut failed = Vec::new();
            for n in targets {
                let r = match admin(&peers, &n) {
                    Ok(mut c) => {
                        timed(c.set_worker(pb::SetWorkerRequest {
                            worker: worker.clone(),
                            setting: setting.clone(),
                            value,
                        }))
                        .await
                    }
                    Err(e) => Err(e),
                };
                match r {
                    Ok(r) if conn.json => {
                        let w = r.workers.iter().find(|w| w.name == worker);
                        println!("{}", json!({"node": n, "worker": w.map(worker_json)}));
                    }
                    Ok(_) => println!("{n}: {worker} {setting} = {value}"),
                    // One node's failure does not stop the others from getting the change.
                    Err(e) => {
                        eprintln!("{n}: {e:#}");
                        failed.push(n);
                    }
                }
            }
            if !failed.is_empty() {
                bail!("not set on {}", failed.join(", "));
            }
        }
    }
    Ok(())
}

fn worker_json(w: &pb::WorkerStatus) -> serde_json::Value {
    json!({
        "name": w.name, "state": w.state, "passes": w.passes,
        "last_pass_secs": w.last_pass_secs, "last_pass_end": w.last_pass_end,
        "scanned": w.scanned, "repaired": w.repaired, "quarantined": w.quarantined,
        "errors": w.errors, "last_error": w.last_error, "settings": w.settings,
        "progress_done": w.progress_done, "progress_total": w.progress_total,
        "bytes": w.bytes,
    })
}

/// `stratus lookup /account[/container[/object]]`: where each replica lives and what it
/// holds.
async fn lookup(conn: &Conn, path: &str) -> Result<()> {
    let (account, container, object) =
        parse_path(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let client = conn.client()?;
    let store = RingStore::new(client.clone());
    let peers = Peers::default();
    // An object is placed by its container's storage policy's ring.
    let policy = match (&container, &object) {
        (Some(c), Some(_)) => container_policy(&store, &peers, &account, c).await?,
        _ => 0,
    };
    let object_ring = stratus_client::policies::ring_name(policy);
    let ring_name = match (&container, &object) {
        (_, Some(_)) => object_ring.as_str(),
        (Some(_), None) => "container",
        _ => "account",
    };
    let (ring, _) = store.current(ring_name).await?;
    let p = object_path(&account, container.as_deref(), object.as_deref());
    let part = ring.partition(&p);
    let mut rows = Vec::new();
    let mut js = Vec::new();
    let mut devs: Vec<(String, stratus_core::ring::Device)> = ring
        .primaries(part)
        .enumerate()
        .map(|(i, d)| (format!("primary {i}"), d.clone()))
        .collect();
    devs.extend(
        ring.handoffs(part)
            .take(usize::from(ring.replicas()))
            .map(|d| ("handoff".to_string(), d.clone())),
    );
    for (role, d) in devs {
        let state = match object {
            Some(_) => {
                let req = pb::GetRequest {
                    target: Some(pb::ObjectTarget {
                        device: d.name.clone(),
                        part,
                        account: account.clone(),
                        container: container.clone().unwrap_or_default(),
                        object: object.clone().unwrap_or_default(),
                        replica_index: 0,
                        policy,
                    }),
                    head_only: true,
                    ..Default::default()
                };
                object_state(&peers, &d.node, req).await
            }
            _ => {
                db_state(
                    &peers,
                    &d.node,
                    &d.name,
                    part,
                    &account,
                    container.as_deref(),
                )
                .await
            }
        };
        rows.push(vec![
            role.clone(),
            d.node.clone(),
            d.name.clone(),
            state.clone(),
        ]);
        js.push(json!({"role": role, "node": d.node, "device": d.name, "state": state}));
    }
    if conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "path": p, "ring": ring_name, "ring_version": ring.version(),
                "partition": part, "replicas": js,
            }))?
        );
        return Ok(());
    }
    println!(
        "{p}: {ring_name} ring v{}, partition {part}",
        ring.version()
    );
    println!(
        "{}",
        table::render(&["ROLE", "NODE", "DEVICE", "HOLDS"], &rows)
    );
    Ok(())
}

async fn object_state(peers: &Peers, node: &str, req: pb::GetRequest) -> String {
    let r = async {
        let mut c = peers.object(node)?;
        let mut s = c.get(req).await?.into_inner();
        s.message().await
    };
    match tokio::time::timeout(NODE_TIMEOUT, r).await {
        Err(_) => "unreachable: timed out".into(),
        Ok(Err(s)) => format!("error: {}", s.message()),
        Ok(Ok(Some(pb::GetMsg {
            msg: Some(pb::get_msg::Msg::Meta(m)),
        }))) => {
            if !m.found {
                "nothing".into()
            } else if m.deleted {
                format!("tombstone {}", ts_text(m.ts))
            } else {
                format!("{} bytes, etag {}, {}", m.size, m.etag, ts_text(m.ts))
            }
        }
        Ok(Ok(_)) => "error: no metadata in the answer".into(),
    }
}

/// The storage policy of a container, as the first of its replicas that has it says (0
/// when none does: where objects of a missing container are looked for).
async fn container_policy(
    store: &RingStore,
    peers: &Peers,
    account: &str,
    container: &str,
) -> Result<u32> {
    let (ring, _) = store.current("container").await?;
    let part = ring.partition(&object_path(account, Some(container), None));
    for d in ring.primaries(part) {
        let r = async {
            peers
                .db(&d.node)?
                .info(pb::DbTarget {
                    device: d.name.clone(),
                    part,
                    account: account.to_string(),
                    container: container.to_string(),
                })
                .await
        };
        if let Ok(Ok(r)) = tokio::time::timeout(NODE_TIMEOUT, r).await {
            if let Some(i) = r.into_inner().info.filter(|i| i.exists) {
                let policy = i.meta.iter().find(|m| m.key == pb::POLICY_META);
                return Ok(policy.and_then(|m| m.value.parse().ok()).unwrap_or(0));
            }
        }
    }
    Ok(0)
}

async fn db_state(
    peers: &Peers,
    node: &str,
    device: &str,
    part: u32,
    account: &str,
    container: Option<&str>,
) -> String {
    let r = async {
        let mut c = peers.db(node)?;
        c.info(pb::DbTarget {
            device: device.to_string(),
            part,
            account: account.to_string(),
            container: container.unwrap_or_default().to_string(),
        })
        .await
    };
    match tokio::time::timeout(NODE_TIMEOUT, r).await {
        Err(_) => "unreachable: timed out".into(),
        Ok(Err(s)) => format!("error: {}", s.message()),
        Ok(Ok(r)) => match r.into_inner().info {
            Some(i) if i.exists => format!(
                "{} objects, {} bytes{}, {}",
                i.object_count,
                i.bytes,
                if container.is_none() {
                    format!(", {} containers", i.container_count)
                } else {
                    String::new()
                },
                ts_text(i.put_ts)
            ),
            Some(i) if i.delete_ts > 0 => format!("deleted {}", ts_text(i.delete_ts)),
            _ => "nothing".into(),
        },
    }
}

fn ts_text(ts: u64) -> String {
    format!("ts {}", stratus_core::timestamp::Timestamp(ts))
}

/// Why `ring` must not be rebalanced yet: nodes that have not finished a replication
/// pass on its current version, or still hold handoff partitions (data the previous
/// rebalance moved that has not reached its new home). Empty when it may proceed.
pub async fn rebalance_blockers(client: &MetaClient, ring: &str) -> Result<Vec<String>> {
    let store = RingStore::new(client.clone());
    let current = match store.current(ring).await {
        Ok((r, _)) => r,
        // Never published: nothing can be on its way yet.
        Err(_) => return Ok(Vec::new()),
    };
    let reports = client.range_prefix(PROGRESS_PREFIX, 0).await?;
    let mut by_node: HashMap<String, Progress> = HashMap::new();
    for kv in reports.kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        if let (Some(addr), Ok(p)) = (
            key.strip_prefix(PROGRESS_PREFIX),
            serde_json::from_slice::<Progress>(&kv.value),
        ) {
            by_node.insert(addr.to_string(), p);
        }
    }
    let nodes: BTreeSet<&str> = current.devices().iter().map(|d| d.node.as_str()).collect();
    Ok(blockers(ring, current.version(), &nodes, &by_node))
}

/// The pure part of [`rebalance_blockers`].
pub fn blockers(
    ring: &str,
    version: u64,
    nodes: &BTreeSet<&str>,
    reports: &HashMap<String, Progress>,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        match reports.get(*n).and_then(|p| p.rings.get(ring)) {
            None => out.push(format!(
                "{n} has not reported a replication pass of the {ring} ring yet"
            )),
            Some(p) if p.version < version => out.push(format!(
                "{n} has not finished a replication pass on {ring} ring version {version} (last pass: version {})",
                p.version
            )),
            Some(p) if p.handoff_parts > 0 => out.push(format!(
                "{n} still holds {} {ring} partition(s) on handoff devices, waiting to move home",
                p.handoff_parts
            )),
            Some(_) => {}
        }
    }
    out
}

/// Runs `stratus cluster …`.
pub async fn run_cluster(conn: &Conn, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Health => health(conn).await,
    }
}

/// Runs `stratus worker …`.
pub async fn run_worker(conn: &Conn, cmd: WorkerCmd) -> Result<()> {
    worker(conn, cmd).await
}

/// Runs `stratus lookup PATH`.
pub async fn run_lookup(conn: &Conn, path: &str) -> Result<()> {
    lookup(conn, path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_client::records::RingProgress;

    fn progress(version: u64, handoffs: u64) -> Progress {
        Progress {
            v: 1,
            rings: BTreeMap::from([(
                "object".to_string(),
                RingProgress {
                    version,
                    handoff_parts: handoffs,
                    parts: 10,
                },
            )]),
        }
    }

    fn ring() -> Ring {
        let mut b = stratus_core::ring::RingBuilder::new(2, 3, 0, [7u8; 16], 1).unwrap();
        for n in 1..=4 {
            b.add_device(stratus_core::ring::NewDevice {
                region: 1,
                zone: n,
                node: format!("n{n}:1"),
                name: "d1".into(),
                weight: 1.0,
            })
            .unwrap();
        }
        b.rebalance(0).unwrap();
        b.ring().unwrap()
    }

    #[test]
    fn health_counts_in_sync_behind_missing_and_handoffs() {
        let r = ring();
        let prim: Vec<_> = r.primaries(0).cloned().collect();
        let other = r.handoffs(0).next().unwrap().clone();
        let mut copies = Copies::new();
        let mut hold = |d: &stratus_core::ring::Device, hash: &[u8]| {
            copies
                .entry((d.node.clone(), d.name.clone()))
                .or_default()
                .push((0, hash.to_vec()));
        };
        // Partition 0: two primaries agree, the third is missing, one handoff copy.
        hold(&prim[0], b"good");
        hold(&prim[1], b"good");
        hold(&other, b"good");
        let h = ring_health("object", &r, &copies);
        assert_eq!((h.partitions, h.slots, h.in_sync), (1, 3, 2));
        assert_eq!((h.behind, h.missing, h.handoffs), (0, 1, 1));
        // The third primary gets a different copy: behind, not missing.
        copies
            .entry((prim[2].node.clone(), prim[2].name.clone()))
            .or_default()
            .push((0, b"old".to_vec()));
        let h = ring_health("object", &r, &copies);
        assert_eq!((h.in_sync, h.behind, h.missing), (2, 1, 0));
        assert!((h.percent - 200.0 / 3.0).abs() < 1e-9);
        // Nothing anywhere: nothing to be unhealthy about.
        assert_eq!(ring_health("object", &r, &Copies::new()).percent, 100.0);
    }

    #[test]
    fn rebalance_waits_for_every_node_and_every_handoff() {
        let nodes = BTreeSet::from(["a:1", "b:1", "c:1"]);
        let mut reports = HashMap::new();
        reports.insert("a:1".to_string(), progress(4, 0));
        reports.insert("b:1".to_string(), progress(3, 0));
        let why = blockers("object", 4, &nodes, &reports);
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("b:1") && why[0].contains("version 4"));
        assert!(why[1].contains("c:1") && why[1].contains("not reported"));
        reports.insert("b:1".to_string(), progress(4, 2));
        reports.insert("c:1".to_string(), progress(5, 0));
        let why = blockers("object", 4, &nodes, &reports);
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("2 object partition(s)"));
        reports.insert("b:1".to_string(), progress(4, 0));
        assert!(blockers("object", 4, &nodes, &reports).is_empty());
    }
}
