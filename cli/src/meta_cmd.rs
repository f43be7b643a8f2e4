//! `stratus meta …`: operator access to the metadata cluster.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use stratus_proto::meta as pb;
use tokio_stream::StreamExt;

use crate::{bench, table, Conn};

/// `stratus meta …`
#[derive(Subcommand, Debug)]
pub enum MetaCmd {
    /// Raft status of every member.
    Status,
    /// Set a key.
    Put {
        key: String,
        value: String,
        /// Print the previous value.
        #[arg(long)]
        prev: bool,
    },
    /// Read a key.
    Get {
        key: String,
        /// Read as of this revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Read from any member without a leader check (may be stale).
        #[arg(long)]
        serializable: bool,
        /// Show identity secrets (the token secret, user records): needs an admin certificate.
        #[arg(long)]
        reveal: bool,
    },
    /// Delete a key (or every key under a prefix).
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// List keys under a prefix.
    Range {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long)]
        keys_only: bool,
        /// Show identity secrets (the token secret, user records): needs an admin certificate.
        #[arg(long)]
        reveal: bool,
    },
    /// Print changes under a prefix as they happen.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// First revision to show (default: from now on).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Stop after this many revisions.
        #[arg(long)]
        count: Option<usize>,
        /// Show identity secrets (the token secret, user records): needs an admin certificate.
        #[arg(long)]
        reveal: bool,
    },
    /// Initialize a new cluster: `stratus meta init 1=127.0.0.1:7001 2=… 3=…`.
    Init {
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Membership changes.
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Benchmark committed writes (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

/// `stratus meta member …`
#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Add a node as a learner (it receives the log but does not vote).
    AddLearner { id: u64, addr: String },
    /// Promote learners to voters.
    Promote {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Remove members (voters or learners).
    Remove {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kv_json(kv: &pb::KeyValue) -> serde_json::Value {
    json!({"key": text(&kv.key), "value": text(&kv.value), "create_revision": kv.create_revision,
           "mod_revision": kv.mod_revision, "version": kv.version})
}

fn kv_rows(kvs: &[pb::KeyValue]) -> Vec<Vec<String>> {
    kvs.iter()
        .map(|kv| {
            vec![
                text(&kv.key),
                text(&kv.value),
                kv.mod_revision.to_string(),
                kv.version.to_string(),
            ]
        })
        .collect()
}

fn members_text(m: &[pb::Member]) -> String {
    m.iter()
        .map(|m| {
            format!(
                "{}{}@{}",
                m.id,
                if m.voter { "" } else { "(learner)" },
                m.addr
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Run a `stratus meta` command.
pub async fn run(conn: &Conn, cmd: MetaCmd) -> Result<()> {
    let mut client = conn.client()?;
    if let MetaCmd::Get { reveal: true, .. }
    | MetaCmd::Range { reveal: true, .. }
    | MetaCmd::Watch { reveal: true, .. } = &cmd
    {
        client = client.revealing();
    }
    let json_out = conn.json;
    match cmd {
        MetaCmd::Status => {
            let mut rows = Vec::new();
            let mut all = Vec::new();
            for addr in client.endpoints() {
                match client.status_of(&addr).await {
                    Ok(s) => {
                        all.push(json!({"id": s.id, "addr": s.addr, "role": s.role, "leader": s.leader_id, "term": s.term,
                            "last_log_index": s.last_log_index, "committed": s.committed, "applied": s.applied,
                            "last_snapshot_index": s.last_snapshot_index, "revision": s.revision,
                            "compact_revision": s.compact_revision,
                            "members": s.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>()}));
                        rows.push(vec![
                            s.id.to_string(),
                            s.addr.clone(),
                            s.role.clone(),
                            opt(s.leader_id),
                            s.term.to_string(),
                            opt(s.last_log_index),
                            opt(s.committed),
                            opt(s.applied),
                            opt(s.last_snapshot_index),
                            s.revision.to_string(),
                            members_text(&s.members),
                        ]);
                    }
                    Err(e) => {
                        all.push(json!({"addr": addr, "error": e.to_string()}));
                        rows.push(vec![
                            "?".into(),
                            addr.clone(),
                            format!("down ({})", e.code()),
                        ]);
                    }
                }
            }
            if json_out {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let header = [
                    "ID",
                    "ADDR",
                    "ROLE",
                    "LEADER",
                    "TERM",
                    "LAST_LOG",
                    "COMMITTED",
                    "APPLIED",
                    "SNAPSHOT",
                    "REVISION",
                    "MEMBERS",
                ];
                println!("{}", table::render(&header, &rows));
            }
        }
        MetaCmd::Put { key, value, prev } => {
            let r = client
                .put_req(pb::PutRequest {
                    key: key.into(),
                    value: value.into(),
                    prev_kv: prev,
                    ..Default::default()
                })
                .await?;
            let rev = r.header.map_or(0, |h| h.revision);
            if json_out {
                println!(
                    "{}",
                    json!({"revision": rev, "prev_kv": r.prev_kv.as_ref().map(kv_json)})
                );
            } else {
                println!("OK (revision {rev})");
                if let Some(p) = r.prev_kv {
                    println!("previous: {}", text(&p.value));
                }
            }
        }
        MetaCmd::Get {
            key,
            rev,
            serializable,
            ..
        } => {
            let r = client
                .get_req(pb::GetRequest {
                    key: key.clone().into(),
                    revision: rev,
                    serializable,
                })
                .await?;
            match (&r.kv, json_out) {
                (Some(kv), true) => println!("{}", kv_json(kv)),
                (Some(kv), false) => println!("{}", text(&kv.value)),
                (None, _) => bail!("key {key:?} not found"),
            }
        }
        MetaCmd::Del { key, prefix } => {
            let r = client.delete(key, prefix).await?;
            let rev = r.header.map_or(0, |h| h.revision);
            if json_out {
                println!("{}", json!({"deleted": r.deleted, "revision": rev}));
            } else {
                println!("deleted {} (revision {rev})", r.deleted);
            }
        }
        MetaCmd::Range {
            prefix,
            limit,
            rev,
            keys_only,
            ..
        } => {
            let req = pb::RangeRequest {
                key: prefix.into(),
                prefix: true,
                limit,
                revision: rev,
                keys_only,
                ..Default::default()
            };
            let r = client.range(req).await?;
            if json_out {
                let kvs: Vec<_> = r.kvs.iter().map(kv_json).collect();
                println!(
                    "{}",
                    json!({"revision": r.header.map_or(0, |h| h.revision), "count": r.count, "more": r.more, "kvs": kvs})
                );
            } else {
                println!(
                    "{}",
                    table::render(&["KEY", "VALUE", "MOD_REV", "VERSION"], &kv_rows(&r.kvs))
                );
                if r.more {
                    println!("({} keys in all; raise --limit to see more)", r.count);
                }
            }
        }
        MetaCmd::Watch {
            prefix,
            from,
            count,
            ..
        } => {
            let mut stream = client.watch(prefix, from, false);
            let mut seen = 0;
            while let Some(msg) = stream.next().await {
                let msg = msg?;
                let rev = msg.header.map_or(0, |h| h.revision);
                for ev in &msg.events {
                    let kv = ev.kv.clone().unwrap_or_default();
                    let kind = if ev.r#type == pb::event::EventType::Delete as i32 {
                        "DELETE"
                    } else {
                        "PUT"
                    };
                    if json_out {
                        println!(
                            "{}",
                            json!({"revision": rev, "type": kind, "kv": kv_json(&kv)})
                        );
                    } else {
                        println!("{rev}\t{kind}\t{}\t{}", text(&kv.key), text(&kv.value));
                    }
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
        }
        MetaCmd::Init { members } => {
            let mut map = BTreeMap::new();
            for m in &members {
                let (id, addr) = m
                    .split_once('=')
                    .with_context(|| format!("{m:?} is not ID=HOST:PORT"))?;
                map.insert(
                    id.parse::<u64>()
                        .with_context(|| format!("bad node id in {m:?}"))?,
                    addr.to_string(),
                );
            }
            let first = map.values().next().cloned().context("no members")?;
            client.initialize(&first, map).await?;
            println!("initialized");
        }
        MetaCmd::Member { cmd } => {
            let r = match cmd {
                MemberCmd::AddLearner { id, addr } => client.add_learner(id, &addr).await?,
                MemberCmd::Promote { ids } => client.change_membership(ids, vec![]).await?,
                MemberCmd::Remove { ids } => client.change_membership(vec![], ids).await?,
            };
            if json_out {
                let m: Vec<_> = r
                    .members
                    .iter()
                    .map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter}))
                    .collect();
                println!("{}", json!({"members": m}));
            } else {
                println!("members: {}", members_text(&r.members));
            }
        }
        MetaCmd::Bench(args) => bench::run(client, args, json_out).await?,
    }
    Ok(())
}
