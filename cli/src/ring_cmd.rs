//! `stratus ring …`: build rings in meta and look up where data lives.
//!
//! The builder state lives in meta, so every command works from any machine that reaches
//! the meta cluster, and `rebalance` publishes the new ring to every watching process.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use stratus_client::records::{registration_key, Registration};
use stratus_client::rings::{RingStore, RingWatcher};
use stratus_core::ring::{object_path, parse_path, DevId, Device, NewDevice, Ring, RingBuilder};
use stratus_core::time::now_secs;

use crate::{table, Conn};

/// `stratus ring …`
#[derive(Subcommand, Debug)]
pub enum RingCmd {
    /// Create a ring with no devices.
    Create {
        /// account, container, object or volume.
        ring: String,
        /// The ring has 2^P partitions (1..=32); pick ~100 partitions per device at full size.
        #[arg(long)]
        part_power: u32,
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        /// Hours a partition stays put after it moved.
        #[arg(long, default_value_t = 1)]
        min_part_hours: u32,
    },
    /// Add a device (takes effect at the next rebalance).
    Add {
        ring: String,
        #[arg(long, default_value_t = 1)]
        region: u32,
        #[arg(long)]
        zone: u32,
        /// Storage node serving the device, HOST:PORT.
        #[arg(long)]
        node: String,
        /// Device name on that node.
        #[arg(long)]
        device: String,
        #[arg(long)]
        weight: f64,
        /// The disk's id (its `identity.json`); by default, what the node registered for
        /// the device, if it has.
        #[arg(long)]
        disk: Option<String>,
    },
    /// Name the disk a device is (a storage node refuses to start where its disks and
    /// the rings disagree): a replaced disk's id, or what its node registered.
    SetDisk {
        ring: String,
        /// Device: its id (`3` or `d3`) or `HOST:PORT/NAME`.
        device: String,
        /// The disk id; by default, what the device's node registered for it.
        disk: Option<String>,
    },
    /// Change a device's weight (0 drains it).
    SetWeight {
        ring: String,
        /// Device: its id (`3` or `d3`) or `HOST:PORT/NAME`.
        device: String,
        weight: f64,
    },
    /// Move a device to another region/zone.
    SetZone {
        ring: String,
        device: String,
        #[arg(long)]
        region: Option<u32>,
        #[arg(long)]
        zone: u32,
    },
    /// Remove a device: its partitions move off at the next rebalance.
    Remove { ring: String, device: String },
    /// Reassign partitions and publish a new ring version.
    Rebalance {
        ring: String,
        /// Rebalance even though data moved by the previous rebalance has not all arrived
        /// (the storage nodes' replication reports say what is left).
        #[arg(long)]
        force: bool,
    },
    /// Summary and device table.
    Show { ring: String },
    /// How widely partitions are spread, per tier.
    Dispersion { ring: String },
    /// Where a path lives: partition, primaries, first handoffs (in the published ring).
    Lookup {
        ring: String,
        /// /account[/container[/object]]
        path: String,
        /// Handoffs to list.
        #[arg(long, default_value_t = 3)]
        handoffs: usize,
    },
    /// Published versions.
    History { ring: String },
    /// Print each new published version as this process picks it up.
    Watch {
        ring: String,
        /// Exit after this many versions (the current one counts).
        #[arg(long)]
        count: Option<usize>,
    },
}

/// Finds a device by `3`, `d3` or `HOST:PORT/NAME`.
fn resolve(b: &RingBuilder, spec: &str) -> Result<DevId> {
    let id = spec.strip_prefix('d').unwrap_or(spec);
    if let Ok(id) = id.parse::<DevId>() {
        if b.device(id).is_some() && !b.is_removing(id) {
            return Ok(id);
        }
        bail!("no device {spec} in this ring (see `stratus ring show`)");
    }
    if let Some((node, name)) = spec.rsplit_once('/') {
        if let Some(d) = b
            .devices()
            .find(|d| d.node == node && d.name == name && !b.is_removing(d.id))
        {
            return Ok(d.id);
        }
    }
    bail!("no device {spec:?} in this ring: give its id (3 or d3) or HOST:PORT/NAME")
}

fn device_json(d: &Device) -> serde_json::Value {
    json!({"id": d.id, "region": d.region, "zone": d.zone, "node": d.node, "device": d.name, "weight": d.weight, "disk": d.disk})
}

/// The disk id node `node` registered for its device `name`, if it has.
async fn registered_disk(store: &RingStore, node: &str, name: &str) -> Result<Option<String>> {
    let Some(kv) = store.client().get(registration_key(node)).await? else {
        return Ok(None);
    };
    let reg: Registration = serde_json::from_slice(&kv.value)?;
    Ok(reg
        .devices
        .into_iter()
        .find(|d| d.name == name && !d.disk.is_empty())
        .map(|d| d.disk))
}

fn summary(name: &str, b: &RingBuilder) -> serde_json::Value {
    let devs: Vec<&Device> = b.devices().collect();
    let regions: std::collections::BTreeSet<u32> = devs.iter().map(|d| d.region).collect();
    let zones: std::collections::BTreeSet<(u32, u32)> =
        devs.iter().map(|d| (d.region, d.zone)).collect();
    let nodes: std::collections::BTreeSet<&str> = devs.iter().map(|d| d.node.as_str()).collect();
    json!({
        "ring": name, "version": b.version(), "part_power": b.part_power(), "partitions": b.partitions(),
        "replicas": b.replicas(), "min_part_hours": b.min_part_hours(), "regions": regions.len(),
        "zones": zones.len(), "nodes": nodes.len(), "devices": devs.len(), "balance": b.balance(),
        "dispersion": b.dispersion().percent(), "pending_changes": b.has_pending_changes(),
        "rebalanced_at": b.rebalanced_at(),
    })
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Run a `stratus ring` command.
pub async fn run(conn: &Conn, cmd: RingCmd) -> Result<()> {
    let store = RingStore::new(conn.client()?);
    let json_out = conn.json;
    match cmd {
        RingCmd::Create {
            ring,
            part_power,
            replicas,
            min_part_hours,
        } => {
            let b = store
                .create(&ring, part_power, replicas, min_part_hours)
                .await?;
            if json_out {
                return print_json(&summary(&ring, &b));
            }
            println!(
                "Created ring {ring}: 2^{part_power} = {} partitions, {replicas} replicas, min_part_hours {min_part_hours}.",
                b.partitions()
            );
        }
        RingCmd::Add {
            ring,
            region,
            zone,
            node,
            device,
            weight,
            disk,
        } => {
            let disk = match disk {
                Some(d) => Some(d),
                None => registered_disk(&store, &node, &device).await?,
            };
            let new = NewDevice {
                region,
                zone,
                node,
                name: device,
                weight,
            };
            let (b, id) = store
                .edit(&ring, |b| {
                    let id = b.add_device(new.clone())?;
                    if let Some(disk) = &disk {
                        b.set_disk(id, disk)?;
                    }
                    Ok(id)
                })
                .await?;
            let d = b.device(id).expect("just added");
            if json_out {
                return print_json(&device_json(d));
            }
            println!(
                "Device d{id} r{}z{}-{}/{} with weight {} added to {ring}. Run `stratus ring rebalance {ring}` to use it.",
                d.region, d.zone, d.node, d.name, d.weight
            );
            if d.disk.is_empty() {
                println!(
                    "Its node has not registered this device, so the ring does not name its disk yet: once the node serves it, run `stratus ring set-disk {ring} d{id}`."
                );
            }
        }
        RingCmd::SetDisk { ring, device, disk } => {
            let (cur, _) = store.builder(&ring).await?;
            let id = resolve(&cur, &device)?;
            let d = cur.device(id).expect("resolved");
            let disk = match disk {
                Some(d) => d,
                None => registered_disk(&store, &d.node, &d.name).await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}/{} has not registered a disk id (is the node running?): give the id, from {}/identity.json on that node",
                        d.node,
                        d.name,
                        d.name
                    )
                })?,
            };
            let (b, ()) = store.edit(&ring, |b| b.set_disk(id, &disk)).await?;
            report_device(json_out, &ring, b.device(id).expect("exists"), "disk named")?;
        }
        RingCmd::SetWeight {
            ring,
            device,
            weight,
        } => {
            let id = resolve(&store.builder(&ring).await?.0, &device)?;
            let (b, ()) = store.edit(&ring, |b| b.set_weight(id, weight)).await?;
            report_device(json_out, &ring, b.device(id).expect("exists"), "weight set")?;
        }
        RingCmd::SetZone {
            ring,
            device,
            region,
            zone,
        } => {
            let (cur, _) = store.builder(&ring).await?;
            let id = resolve(&cur, &device)?;
            let region = region.unwrap_or(cur.device(id).expect("resolved").region);
            let (b, ()) = store.edit(&ring, |b| b.set_zone(id, region, zone)).await?;
            report_device(json_out, &ring, b.device(id).expect("exists"), "zone set")?;
        }
        RingCmd::Remove { ring, device } => {
            let (cur, _) = store.builder(&ring).await?;
            let id = resolve(&cur, &device)?;
            let d = cur.device(id).expect("resolved").clone();
            store.edit(&ring, |b| b.remove_device(id)).await?;
            if json_out {
                return print_json(&json!({"removed": device_json(&d)}));
            }
            println!(
                "Device d{id} {}/{} marked for removal from {ring}; its partitions move at the next rebalance.",
                d.node, d.name
            );
        }
        RingCmd::Rebalance { ring, force } => {
            let why = crate::cluster_cmd::rebalance_blockers(store.client(), &ring).await?;
            if !why.is_empty() && !force {
                bail!(
                    "not rebalancing {ring}: partitions moved by the previous rebalance are not all home yet\n  {}\n(watch `stratus cluster health`; retry when it is done, or pass --force)",
                    why.join("\n  ")
                );
            }
            let r = store.rebalance(&ring).await?;
            if json_out {
                return print_json(&serde_json::to_value(&r)?);
            }
            if !r.changed {
                println!(
                    "No partitions could be reassigned. Either none need to be or none can be due to min_part_hours."
                );
                return Ok(());
            }
            println!(
                "Reassigned {} ({:.2}%) partition-replicas. Balance is now {:.2}. Dispersion is now {:.2}.",
                r.reassigned,
                r.reassigned_percent(),
                r.balance,
                r.dispersion
            );
            println!("Published {ring} ring version {}.", r.version);
        }
        RingCmd::Show { ring } => show(&store, &ring, json_out).await?,
        RingCmd::Dispersion { ring } => {
            let (b, _) = store.builder(&ring).await?;
            let d = b.dispersion();
            if json_out {
                return print_json(&serde_json::to_value(&d)?);
            }
            println!(
                "Dispersion is {:.2}%: {} of {} partitions have more replicas in one failure domain than the topology requires.",
                d.percent(),
                d.worst,
                d.partitions
            );
            let rows: Vec<Vec<String>> = d
                .tiers
                .iter()
                .map(|t| {
                    vec![
                        t.tier.clone(),
                        t.units.to_string(),
                        t.over.to_string(),
                        format!("{:.2}", t.percent),
                    ]
                })
                .collect();
            println!(
                "{}",
                table::render(&["TIER", "UNITS", "PARTITIONS_OVER", "PERCENT"], &rows)
            );
        }
        RingCmd::Lookup {
            ring,
            path,
            handoffs,
        } => {
            let (r, _) = store.current(&ring).await?;
            lookup(&r, &ring, &path, handoffs, json_out)?;
        }
        RingCmd::History { ring } => {
            let h = store.history(&ring).await?;
            if json_out {
                return print_json(&serde_json::to_value(&h)?);
            }
            let rows: Vec<Vec<String>> = h
                .iter()
                .map(|e| {
                    vec![
                        e.version.to_string(),
                        table::utc(e.at),
                        e.devices.to_string(),
                        e.reassigned.to_string(),
                        e.moved.to_string(),
                        format!("{:.2}", e.balance),
                        format!("{:.2}", e.dispersion),
                    ]
                })
                .collect();
            println!(
                "{}",
                table::render(
                    &[
                        "VERSION",
                        "AT(unix)",
                        "DEVICES",
                        "REASSIGNED",
                        "MOVED",
                        "BALANCE",
                        "DISPERSION"
                    ],
                    &rows
                )
            );
        }
        RingCmd::Watch { ring, count } => {
            let w = RingWatcher::spawn(store, &ring)?;
            let mut rx = w.subscribe();
            let mut seen = 0usize;
            loop {
                let r = rx.borrow_and_update().clone();
                if let Some(r) = r {
                    seen += 1;
                    if json_out {
                        println!(
                            "{}",
                            json!({"ring": ring, "version": r.version(), "devices": r.devices().len(),
                                   "partitions": r.partitions(), "created_at": r.created_at()})
                        );
                    } else {
                        println!(
                            "{ring} ring version {}: {} devices, {} partitions",
                            r.version(),
                            r.devices().len(),
                            r.partitions()
                        );
                    }
                    if count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
                if rx.changed().await.is_err() {
                    bail!("ring watcher stopped");
                }
            }
        }
    }
    Ok(())
}

fn report_device(json_out: bool, ring: &str, d: &Device, what: &str) -> Result<()> {
    if json_out {
        return print_json(&device_json(d));
    }
    println!(
        "Device d{} r{}z{}-{}/{} weight {}: {what}. Run `stratus ring rebalance {ring}` to apply.",
        d.id, d.region, d.zone, d.node, d.name, d.weight
    );
    Ok(())
}

async fn show(store: &RingStore, ring: &str, json_out: bool) -> Result<()> {
    let (b, _) = store.builder(ring).await?;
    let parts = b.parts_per_device();
    let bal = b.device_balance();
    let s = summary(ring, &b);
    if json_out {
        let devs: Vec<serde_json::Value> = b
            .devices()
            .map(|d| {
                let mut v = device_json(d);
                v["partitions"] = json!(parts.get(&d.id).copied().unwrap_or(0));
                v["balance"] = json!(bal.get(&d.id).copied().unwrap_or(0.0));
                v["removing"] = json!(b.is_removing(d.id));
                v
            })
            .collect();
        let mut s = s;
        s["device_list"] = json!(devs);
        return print_json(&s);
    }
    println!(
        "{ring} ring, version {}: {} partitions, {} replicas, {} regions, {} zones, {} nodes, {} devices, {:.2} balance, {:.2} dispersion",
        b.version(),
        b.partitions(),
        b.replicas(),
        s["regions"],
        s["zones"],
        s["nodes"],
        s["devices"],
        s["balance"].as_f64().unwrap_or(0.0),
        s["dispersion"].as_f64().unwrap_or(0.0)
    );
    let since = now_secs().saturating_sub(b.rebalanced_at()) / 3600;
    println!(
        "The minimum number of hours before a partition can be reassigned is {} (last rebalance {} h ago).",
        b.min_part_hours(),
        if b.rebalanced_at() == 0 { "never".to_string() } else { since.to_string() }
    );
    if b.has_pending_changes() {
        println!(
            "Devices changed since the published version: run `stratus ring rebalance {ring}`."
        );
    }
    let rows: Vec<Vec<String>> = b
        .devices()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.region.to_string(),
                d.zone.to_string(),
                d.node.clone(),
                d.name.clone(),
                // The first 8 hex digits tell disks apart; `--json` has the whole id.
                if d.disk.is_empty() {
                    "-".into()
                } else {
                    d.disk.chars().take(8).collect()
                },
                format!("{}", d.weight),
                parts.get(&d.id).copied().unwrap_or(0).to_string(),
                format!("{:.2}", bal.get(&d.id).copied().unwrap_or(0.0)),
                if b.is_removing(d.id) {
                    "removing".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table::render(
            &[
                "ID",
                "REGION",
                "ZONE",
                "NODE",
                "DEVICE",
                "DISK",
                "WEIGHT",
                "PARTITIONS",
                "BALANCE",
                "STATE"
            ],
            &rows
        )
    );
    Ok(())
}

fn lookup(r: &Ring, ring: &str, path: &str, handoffs: usize, json_out: bool) -> Result<()> {
    let (a, c, o) = parse_path(path)?;
    let canonical = object_path(&a, c.as_deref(), o.as_deref());
    let part = r.partition(&canonical);
    let prim: Vec<&Device> = r.primaries(part).collect();
    let hand: Vec<&Device> = r.handoffs(part).take(handoffs).collect();
    if json_out {
        return print_json(&json!({
            "ring": ring, "version": r.version(), "path": canonical, "partition": part,
            "primaries": prim.iter().map(|d| device_json(d)).collect::<Vec<_>>(),
            "handoffs": hand.iter().map(|d| device_json(d)).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{canonical}: partition {part} of the {ring} ring (version {})",
        r.version()
    );
    let mut rows = Vec::new();
    for (kind, list) in [("primary", &prim), ("handoff", &hand)] {
        for d in list.iter() {
            rows.push(vec![
                kind.to_string(),
                d.id.to_string(),
                d.region.to_string(),
                d.zone.to_string(),
                d.node.clone(),
                d.name.clone(),
            ]);
        }
    }
    println!(
        "{}",
        table::render(&["ROLE", "ID", "REGION", "ZONE", "NODE", "DEVICE"], &rows)
    );
    Ok(())
}
