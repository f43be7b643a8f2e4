//! `stratus policy …`: storage policies (see [`stratus_client::policies`]). A policy is a
//! name for an object ring of its own: `stratus policy add silver` names index 1, and
//! `stratus ring create object-1 …` (devices, rebalance) gives it its ring.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use stratus_client::policies::{self, ring_name};

use crate::{table, Conn};

/// `stratus policy …`
#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// List the storage policies and whether each one's ring is published.
    List,
    /// Add a storage policy (or confirm one that exists). Its objects are placed by ring
    /// `object-<index>`, which must be created and rebalanced before containers use it.
    Add {
        /// Its name (letters, digits, '-'); case does not matter when clients name it.
        name: String,
        /// Its index, 1 to 3 (default: the lowest free one); 0 renames the first policy.
        #[arg(long)]
        index: Option<u32>,
        /// Make it the default policy (for containers created without X-Storage-Policy).
        #[arg(long)]
        default: bool,
    },
}

/// Runs a `stratus policy` command.
pub async fn run(conn: &Conn, cmd: PolicyCmd) -> Result<()> {
    let meta = conn.client()?;
    match cmd {
        PolicyCmd::Add {
            name,
            index,
            default,
        } => {
            let p = policies::add(&meta, &name, index, default).await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "policy {} is index {}; its objects go by ring {}{}",
                    p.name,
                    p.index,
                    ring_name(p.index),
                    if p.default { " (the default)" } else { "" }
                );
            }
        }
        PolicyCmd::List => {
            let (list, _) = policies::load(&meta).await?;
            let store = stratus_client::rings::RingStore::new(meta.clone());
            let mut rows = Vec::new();
            let mut out = Vec::new();
            for p in list.all() {
                let ring = ring_name(p.index);
                let published = store.current(&ring).await.ok().map(|(r, _)| r.version());
                out.push(json!({
                    "index": p.index, "name": p.name, "aliases": p.aliases,
                    "default": p.default, "deprecated": p.deprecated,
                    "ring": ring, "ring_version": published,
                }));
                rows.push(vec![
                    p.index.to_string(),
                    p.name.clone(),
                    if p.default { "yes" } else { "" }.to_string(),
                    ring.clone(),
                    published.map_or("not published".to_string(), |v| format!("v{v}")),
                ]);
            }
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!(
                    "{}",
                    table::render(&["INDEX", "NAME", "DEFAULT", "RING", "VERSION"], &rows)
                );
            }
        }
    }
    Ok(())
}
