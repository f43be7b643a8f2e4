//! `stratus flavor list | show | create | delete`: Nova flavors, in the style of
//! `openstack flavor …` (creating and deleting them takes an admin).

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::nova::Nova;
use super::server::label;
use super::{emit, NovaOpts};
use crate::identity_cmd::{cell, record_text};
use crate::table;

/// `stratus flavor …`
#[derive(Subcommand, Debug)]
pub enum FlavorCmd {
    /// List flavors.
    List {
        /// Private flavors too (admin).
        #[arg(long)]
        all: bool,
    },
    /// Show a flavor.
    Show {
        /// Its id or name.
        flavor: String,
    },
    /// Create a flavor (admin).
    Create {
        /// The flavor's name.
        name: String,
        /// Memory of its servers.
        #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
        ram: u64,
        /// Virtual CPUs of its servers.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        vcpus: u64,
        /// Root disk of its servers (0: the image's size).
        #[arg(long, value_name = "GB")]
        disk: u64,
        /// Its id (default: Nova picks one).
        #[arg(long)]
        id: Option<String>,
        /// Only projects given access may use it.
        #[arg(long)]
        private: bool,
    },
    /// Delete flavors (admin).
    Delete {
        /// Ids or names.
        #[arg(required = true)]
        flavors: Vec<String>,
    },
}

/// The `POST /flavors` body (`"id": null` asks Nova to pick one), as `openstack flavor
/// create` sends it.
pub fn create_body(
    name: &str,
    ram_mb: u64,
    vcpus: u64,
    disk_gb: u64,
    id: Option<&str>,
    public: bool,
) -> Value {
    json!({"flavor": {
        "name": name,
        "ram": ram_mb,
        "vcpus": vcpus,
        "disk": disk_gb,
        "swap": 0,
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "os-flavor-access:is_public": public,
        "id": id,
    }})
}

/// The list table, columns as `openstack flavor list` has them.
pub fn list_table(flavors: &[Value]) -> String {
    let rows: Vec<Vec<String>> = flavors
        .iter()
        .map(|f| {
            [
                "id",
                "name",
                "ram",
                "disk",
                "OS-FLV-EXT-DATA:ephemeral",
                "vcpus",
                "os-flavor-access:is_public",
            ]
            .iter()
            .map(|k| cell(&f[*k]))
            .collect()
        })
        .collect();
    table::render(
        &[
            "ID",
            "NAME",
            "RAM MB",
            "DISK GB",
            "EPHEMERAL GB",
            "VCPUS",
            "PUBLIC",
        ],
        &rows,
    )
}

fn print_flavor(opts: &NovaOpts, f: &Value) -> Result<()> {
    let mut shown = f.clone();
    if !opts.json {
        if let Some(o) = shown.as_object_mut() {
            o.remove("links");
        }
    }
    emit(&record_text(opts.json, &shown)?)
}

/// Runs a flavor command against `nova`.
pub async fn run(nova: &Nova, opts: &NovaOpts, cmd: FlavorCmd) -> Result<()> {
    match cmd {
        FlavorCmd::List { all } => {
            let flavors = nova.flavors(all).await?;
            if opts.json {
                emit(&serde_json::to_string_pretty(&flavors)?)?;
            } else {
                emit(&list_table(&flavors))?;
            }
        }
        FlavorCmd::Show { flavor } => print_flavor(opts, &nova.find_flavor(&flavor).await?)?,
        FlavorCmd::Create {
            name,
            ram,
            vcpus,
            disk,
            id,
            private,
        } => {
            let body = create_body(&name, ram, vcpus, disk, id.as_deref(), !private);
            print_flavor(opts, &nova.create_flavor(&body).await?)?;
        }
        FlavorCmd::Delete { flavors } => {
            let mut deleted = Vec::new();
            let mut failed = 0;
            for x in &flavors {
                let res = async {
                    let f = nova.find_flavor(x).await?;
                    nova.delete_flavor(f["id"].as_str().unwrap_or_default())
                        .await?;
                    Ok::<_, anyhow::Error>(f)
                }
                .await;
                match res {
                    Ok(f) => {
                        if !opts.json {
                            emit(&format!("Deleted flavor {}", label(&f)))?;
                        }
                        deleted.push(f["id"].clone());
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed += 1;
                    }
                }
            }
            if opts.json {
                emit(&json!({ "deleted": deleted }).to_string())?;
            }
            if failed > 0 {
                bail!("{failed} of {} flavors could not be deleted", flavors.len());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sends_what_openstack_sends() {
        assert_eq!(
            create_body("m1.small", 1024, 1, 2, None, true),
            json!({"flavor": {"name": "m1.small", "ram": 1024, "vcpus": 1, "disk": 2,
                   "swap": 0, "OS-FLV-EXT-DATA:ephemeral": 0,
                   "os-flavor-access:is_public": true, "id": null}})
        );
        let b = create_body("p", 64, 2, 0, Some("42"), false);
        assert_eq!(b["flavor"]["id"], "42");
        assert_eq!(b["flavor"]["os-flavor-access:is_public"], false);
    }

    #[test]
    fn lists_show_sizes_and_visibility() {
        let f = json!({"id": "1", "name": "m1.tiny", "ram": 256, "disk": 1, "swap": "",
            "OS-FLV-EXT-DATA:ephemeral": 0, "vcpus": 1, "os-flavor-access:is_public": true,
            "links": []});
        assert_eq!(
            list_table(&[f]),
            "ID  NAME     RAM MB  DISK GB  EPHEMERAL GB  VCPUS  PUBLIC\n\
             1   m1.tiny  256     1        0             1      true"
        );
    }
}
