//! `stratus server create | list | show | console | stop | start | reboot | delete`: Nova
//! servers, in the style of `openstack server …`.
//!
//! `create` boots one of three ways, with the request bodies the `openstack` client sends at
//! microversion 2.1: an image on the host's local disk (`imageRef`), an image copied into a
//! new volume (`--image I --boot-from-volume GB`: a `block_device_mapping_v2` entry from
//! `image` to `volume`, `imageRef` empty), or an existing volume (`--volume V`: an entry
//! from `volume` to `volume`). Flavors and servers are looked up through Nova, images
//! through Glance, volumes through Cinder, each by id or name.
//!
//! # Waiting
//! `--wait` polls the server every [`POLL`] for at most [`WAIT_LIMIT`] until it has the
//! status the command leads to with no task left (`OS-EXT-STS:task_state` null), or until
//! it is gone (`delete`). Nova sets a task (`powering-off`, `rebooting`, …) before it
//! answers an action, so a server still `ACTIVE` right after a reboot request is not taken
//! for done. `ERROR` ends a wait with the fault's message — unless the server already had
//! that very fault when the wait began (a hard reboot or a delete of a server in `ERROR`
//! must be able to wait for its outcome).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::nova::Nova;
use super::{emit, NovaOpts};
use crate::identity_cmd::{cell, record_text};
use crate::table;

/// How often a wait looks at the server.
pub const POLL: Duration = Duration::from_secs(2);
/// How long a wait lasts at most.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// `stratus server …`
#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// Create a server from an image (`--image`), from an image copied into a new volume
    /// (`--image --boot-from-volume GB`) or from a volume (`--volume`).
    Create {
        /// The server's name.
        name: String,
        /// Its flavor (id or name).
        #[arg(long)]
        flavor: String,
        /// The image to boot (id or name).
        #[arg(long, required_unless_present = "volume", conflicts_with = "volume")]
        image: Option<String>,
        /// Copy the image into a new volume of this size and boot from that.
        #[arg(long, value_name = "GB", requires = "image", conflicts_with = "volume",
              value_parser = clap::value_parser!(u64).range(1..))]
        boot_from_volume: Option<u64>,
        /// The volume to boot from (id or name).
        #[arg(long)]
        volume: Option<String>,
        /// Wait until the server is ACTIVE (fails with its fault if it goes ERROR).
        #[arg(long)]
        wait: bool,
    },
    /// List the project's servers.
    List,
    /// Show a server.
    Show {
        /// Its id or name.
        server: String,
    },
    /// Print a server's console log.
    Console {
        /// Its id or name.
        server: String,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        lines: Option<u32>,
    },
    /// Stop a server (power off).
    Stop {
        /// Its id or name.
        server: String,
        /// Wait until it is SHUTOFF.
        #[arg(long)]
        wait: bool,
    },
    /// Start a stopped server.
    Start {
        /// Its id or name.
        server: String,
        /// Wait until it is ACTIVE.
        #[arg(long)]
        wait: bool,
    },
    /// Reboot a server (ACPI restart; `--hard`: power cycle).
    Reboot {
        /// Its id or name.
        server: String,
        /// Power cycle instead of asking the guest.
        #[arg(long)]
        hard: bool,
        /// Wait until it is ACTIVE again.
        #[arg(long)]
        wait: bool,
    },
    /// Delete servers.
    Delete {
        /// Ids or names.
        #[arg(required = true)]
        servers: Vec<String>,
        /// Wait until each is gone.
        #[arg(long)]
        wait: bool,
    },
}

/// What a new server boots from (ids already looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The image, on the host's local disk (`imageRef`).
    Image(String),
    /// A new volume of `size_gb` GB made from the image.
    ImageToVolume { image: String, size_gb: u64 },
    /// An existing volume.
    Volume(String),
}

/// The `POST /servers` body (as `openstack server create` sends it at microversion 2.1:
/// one server, `networks` empty since 2.1 has no `auto`).
pub fn create_body(name: &str, flavor_id: &str, boot: &Boot) -> Value {
    let (image_ref, bdm) = match boot {
        Boot::Image(id) => (id.as_str(), None),
        Boot::ImageToVolume { image, size_gb } => (
            "",
            Some(
                json!({"uuid": image, "boot_index": 0, "source_type": "image",
                        "destination_type": "volume", "volume_size": size_gb,
                        "delete_on_termination": false}),
            ),
        ),
        Boot::Volume(id) => (
            "",
            Some(json!({"uuid": id, "boot_index": 0, "source_type": "volume",
                        "destination_type": "volume"})),
        ),
    };
    let mut s = json!({
        "name": name,
        "flavorRef": flavor_id,
        "imageRef": image_ref,
        "min_count": 1,
        "max_count": 1,
        "networks": [],
    });
    if let Some(b) = bdm {
        s["block_device_mapping_v2"] = json!([b]);
    }
    json!({ "server": s })
}

/// A power action and the status it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Stop,
    Start,
    Reboot { hard: bool },
}

impl Power {
    /// The `POST /servers/{id}/action` body.
    pub fn body(self) -> Value {
        match self {
            Power::Stop => json!({"os-stop": null}),
            Power::Start => json!({"os-start": null}),
            Power::Reboot { hard } => {
                json!({"reboot": {"type": if hard { "HARD" } else { "SOFT" }}})
            }
        }
    }

    /// The status the server has once the action is done.
    pub fn status(self) -> &'static str {
        match self {
            Power::Stop => "SHUTOFF",
            Power::Start | Power::Reboot { .. } => "ACTIVE",
        }
    }

    fn verb(self) -> (&'static str, &'static str) {
        match self {
            Power::Stop => ("stop", "Stopping"),
            Power::Start => ("start", "Starting"),
            Power::Reboot { hard: false } => ("reboot", "Rebooting"),
            Power::Reboot { hard: true } => ("hard-reboot", "Hard-rebooting"),
        }
    }
}

/// Where a wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The server has this status and no task.
    Status(&'static str),
    /// The server is gone (404).
    Gone,
}

/// What one look at a server says about a wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done,
    Failed(String),
    /// Still on the way: the status (and task) it is in.
    Pending(String),
}

/// A server's fault message, or a stand-in when it has none.
fn fault_message(s: &Value) -> String {
    match s["fault"]["message"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => "no fault recorded".into(),
    }
}

/// Judges `server` (`None`: 404) against `goal`; `fault_before` is the fault the server had
/// when the wait began (`null` for none).
pub fn step(server: Option<&Value>, goal: Goal, fault_before: &Value) -> Step {
    let Some(s) = server else {
        return match goal {
            Goal::Gone => Step::Done,
            Goal::Status(_) => Step::Failed("the server is gone".into()),
        };
    };
    let status = s["status"].as_str().unwrap_or("?");
    let task = s["OS-EXT-STS:task_state"]
        .as_str()
        .filter(|t| !t.is_empty());
    if status == "ERROR" && (fault_before.is_null() || s["fault"] != *fault_before) {
        return Step::Failed(format!("went into ERROR: {}", fault_message(s)));
    }
    match goal {
        Goal::Status(want) if status == want && task.is_none() => Step::Done,
        _ => Step::Pending(match task {
            Some(t) => format!("{status} ({t})"),
            None => status.to_string(),
        }),
    }
}

/// Polls server `id` until `goal` (see the module's overview); the server at the end
/// (`None` once gone).
async fn wait(nova: &Nova, server: &Value, goal: Goal) -> Result<Option<Value>> {
    let id = server["id"].as_str().unwrap_or_default();
    let label = label(server);
    let before = server["fault"].clone();
    let tty = std::io::stderr().is_terminal();
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut last = String::new();
    loop {
        let now = nova.server(id).await?;
        match step(now.as_ref(), goal, &before) {
            Step::Done => return Ok(now),
            Step::Failed(why) => bail!("server {label} {why}"),
            Step::Pending(state) => {
                if tty && state != last {
                    eprintln!("server {label}: {state}");
                }
                last = state;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let want = match goal {
                Goal::Status(s) => format!("become {s}"),
                Goal::Gone => "go away".into(),
            };
            bail!(
                "server {label} did not {want} within {} minutes (it is {last})",
                WAIT_LIMIT.as_secs() / 60
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `name (id)` of a server, flavor or image, for messages and cells.
pub fn label(v: &Value) -> String {
    let id = v["id"].as_str().unwrap_or("?");
    match v["name"].as_str().or(v["original_name"].as_str()) {
        Some(n) if !n.is_empty() => format!("{n} ({id})"),
        _ => id.to_string(),
    }
}

/// Names by id, looked up once for a table.
pub type Names = BTreeMap<String, String>;

/// The flavor of a server as a cell: `name (id)` when the name is known.
fn flavor_cell(s: &Value, flavors: &Names) -> String {
    let f = &s["flavor"];
    if let Some(n) = f["original_name"].as_str() {
        return n.to_string();
    }
    let id = f["id"].as_str().unwrap_or_default();
    match flavors.get(id) {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// The image of a server as a cell (`N/A (booted from volume)` when it has none).
fn image_cell(s: &Value, images: &Names) -> String {
    let id = s["image"]["id"].as_str().unwrap_or_default();
    if id.is_empty() {
        return "N/A (booted from volume)".into();
    }
    match images.get(id) {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// The admin-only host field.
const HOST: &str = "OS-EXT-SRV-ATTR:host";

/// The list table: id, name, status, host (when the answer carries it: admins only),
/// flavor, image.
pub fn list_table(servers: &[Value], flavors: &Names, images: &Names) -> String {
    let with_host = servers
        .iter()
        .any(|s| s.as_object().is_some_and(|o| o.contains_key(HOST)));
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut r = vec![cell(&s["id"]), cell(&s["name"]), cell(&s["status"])];
            if with_host {
                r.push(cell(&s[HOST]));
            }
            r.push(flavor_cell(s, flavors));
            r.push(image_cell(s, images));
            r
        })
        .collect();
    let header: &[&str] = if with_host {
        &["ID", "NAME", "STATUS", "HOST", "FLAVOR", "IMAGE"]
    } else {
        &["ID", "NAME", "STATUS", "FLAVOR", "IMAGE"]
    };
    table::render(header, &rows)
}

/// A server document as `show` prints it: links dropped, flavor and image as `name (id)`,
/// addresses, volumes, security groups, metadata and fault on one line each.
pub fn show_doc(s: &Value, flavors: &Names, images: &Names) -> Value {
    let Some(o) = s.as_object() else {
        return s.clone();
    };
    let mut m: Map<String, Value> = o.clone();
    m.remove("links");
    m.insert("flavor".into(), json!(flavor_cell(s, flavors)));
    m.insert("image".into(), json!(image_cell(s, images)));
    if let Some(a) = s["addresses"].as_object() {
        let nets: Vec<String> = a
            .iter()
            .map(|(net, addrs)| {
                let ips: Vec<&str> = addrs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["addr"].as_str())
                    .collect();
                format!("{net}={}", ips.join(", "))
            })
            .collect();
        m.insert("addresses".into(), json!(nets.join("; ")));
    }
    let ids = |key: &str, field: &str| -> Option<Value> {
        let a = s[key].as_array()?;
        let v: Vec<&str> = a.iter().filter_map(|x| x[field].as_str()).collect();
        Some(json!(v.join(", ")))
    };
    for (key, field) in [
        ("os-extended-volumes:volumes_attached", "id"),
        ("security_groups", "name"),
    ] {
        if let Some(v) = ids(key, field) {
            m.insert(key.into(), v);
        }
    }
    if let Some(md) = s["metadata"].as_object() {
        let kv: Vec<String> = md
            .iter()
            .map(|(k, v)| format!("{k}='{}'", cell(v)))
            .collect();
        m.insert("metadata".into(), json!(kv.join(", ")));
    }
    if s["fault"].is_object() {
        let f = &s["fault"];
        m.insert(
            "fault".into(),
            json!(format!(
                "{} (code {}, {})",
                fault_message(s),
                cell(&f["code"]),
                cell(&f["created"])
            )),
        );
    }
    Value::Object(m)
}

/// Prints a server: its document with `--json`, else its fields (with the flavor's and
/// image's names when they can be found).
async fn print_server(nova: &Nova, opts: &NovaOpts, s: &Value) -> Result<()> {
    if opts.json {
        return emit(&serde_json::to_string_pretty(s)?);
    }
    let mut flavors = Names::new();
    if let Some(id) = s["flavor"]["id"].as_str() {
        if let Ok(Some(f)) = nova.flavor(id).await {
            flavors.insert(id.into(), cell(&f["name"]));
        }
    }
    let mut images = Names::new();
    if let Some(id) = s["image"]["id"].as_str().filter(|i| !i.is_empty()) {
        if let Ok(img) = async { nova.glance()?.get(id).await }.await {
            images.insert(id.into(), cell(&img["name"]));
        }
    }
    emit(&record_text(false, &show_doc(s, &flavors, &images))?)
}

/// Looks the names a boot needs up: flavor through Nova, image through Glance, volume
/// through Cinder.
async fn resolve_boot(
    nova: &Nova,
    image: Option<&str>,
    boot_from_volume: Option<u64>,
    volume: Option<&str>,
) -> Result<Boot> {
    Ok(match (image, volume) {
        (Some(i), None) => {
            let img = nova.glance()?.find(i).await?;
            let id = img["id"].as_str().unwrap_or_default().to_string();
            match boot_from_volume {
                Some(size_gb) => Boot::ImageToVolume { image: id, size_gb },
                None => Boot::Image(id),
            }
        }
        (None, Some(v)) => {
            let vol = nova.cinder()?.find_volume(v).await?;
            Boot::Volume(vol["id"].as_str().unwrap_or_default().to_string())
        }
        _ => bail!("give --image IMAGE (with or without --boot-from-volume GB) or --volume VOLUME"),
    })
}

/// Runs a server command against `nova`.
pub async fn run(nova: &Nova, opts: &NovaOpts, cmd: ServerCmd) -> Result<()> {
    match cmd {
        ServerCmd::Create {
            name,
            flavor,
            image,
            boot_from_volume,
            volume,
            wait: wait_active,
        } => {
            let f = nova.find_flavor(&flavor).await?;
            let boot =
                resolve_boot(nova, image.as_deref(), boot_from_volume, volume.as_deref()).await?;
            let body = create_body(&name, f["id"].as_str().unwrap_or_default(), &boot);
            let id = nova.create_server(&body).await?;
            let mut s = match nova.server(&id).await? {
                Some(s) => s,
                None => bail!("server {name} ({id}) was created but is gone already"),
            };
            if wait_active {
                if let Some(now) = wait(nova, &s, Goal::Status("ACTIVE")).await? {
                    s = now;
                }
            }
            print_server(nova, opts, &s).await?;
        }
        ServerCmd::List => {
            let servers = nova.servers().await?;
            if opts.json {
                return emit(&serde_json::to_string_pretty(&servers)?);
            }
            // Names are a nicety: without them the table shows ids.
            let flavors: Names = nova
                .flavors(true)
                .await
                .unwrap_or_default()
                .iter()
                .map(|f| (cell(&f["id"]), cell(&f["name"])))
                .collect();
            let any_image = servers
                .iter()
                .any(|s| s["image"]["id"].as_str().is_some_and(|i| !i.is_empty()));
            let mut images = Names::new();
            if any_image {
                if let Ok(list) = async { nova.glance()?.list(&[]).await }.await {
                    images = list
                        .iter()
                        .map(|i| (cell(&i["id"]), cell(&i["name"])))
                        .collect();
                }
            }
            emit(&list_table(&servers, &flavors, &images))?;
        }
        ServerCmd::Show { server } => {
            let s = nova.find_server(&server).await?;
            print_server(nova, opts, &s).await?;
        }
        ServerCmd::Console { server, lines } => {
            let s = nova.find_server(&server).await?;
            let id = s["id"].as_str().unwrap_or_default();
            let body = match lines {
                Some(n) => json!({"os-getConsoleOutput": {"length": n}}),
                None => json!({"os-getConsoleOutput": {}}),
            };
            let v = nova
                .action(
                    id,
                    &body,
                    &format!("getting the console of server {}", label(&s)),
                )
                .await?;
            let out = v["output"].as_str().unwrap_or_default();
            if opts.json {
                emit(&json!({"id": id, "output": out}).to_string())?;
            } else if !out.is_empty() {
                emit(out.strip_suffix('\n').unwrap_or(out))?;
            }
        }
        ServerCmd::Stop { server, wait } => power(nova, opts, &server, Power::Stop, wait).await?,
        ServerCmd::Start { server, wait } => power(nova, opts, &server, Power::Start, wait).await?,
        ServerCmd::Reboot { server, hard, wait } => {
            power(nova, opts, &server, Power::Reboot { hard }, wait).await?
        }
        ServerCmd::Delete {
            servers,
            wait: wait_gone,
        } => {
            let mut deleted = Vec::new();
            let mut failed = 0;
            for x in &servers {
                let res = async {
                    let s = nova.find_server(x).await?;
                    nova.delete_server(s["id"].as_str().unwrap_or_default())
                        .await?;
                    if wait_gone {
                        wait(nova, &s, Goal::Gone).await?;
                    }
                    Ok::<_, anyhow::Error>(s)
                }
                .await;
                match res {
                    Ok(s) => {
                        if !opts.json {
                            let done = if wait_gone { "Deleted" } else { "Deleting" };
                            emit(&format!("{done} server {}", label(&s)))?;
                        }
                        deleted.push(s["id"].clone());
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
                bail!("{failed} of {} servers could not be deleted", servers.len());
            }
        }
    }
    Ok(())
}

/// Stop, start or reboot `server`, and with `wait_done` wait for the status it leads to.
async fn power(
    nova: &Nova,
    opts: &NovaOpts,
    server: &str,
    p: Power,
    wait_done: bool,
) -> Result<()> {
    let s = nova.find_server(server).await?;
    let id = s["id"].as_str().unwrap_or_default();
    let (verb, doing) = p.verb();
    nova.action(id, &p.body(), &format!("{verb} of server {}", label(&s)))
        .await?;
    let now = if wait_done {
        wait(nova, &s, Goal::Status(p.status())).await?
    } else {
        None
    };
    if opts.json {
        let now = match now {
            Some(v) => Some(v),
            None => nova.server(id).await?,
        };
        return emit(&serde_json::to_string_pretty(&now.unwrap_or(Value::Null))?);
    }
    match now {
        Some(v) => emit(&format!(
            "Server {} is {}",
            label(&v),
            v["status"].as_str().unwrap_or("?")
        )),
        None => emit(&format!("{doing} server {}", label(&s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_for_the_three_ways_to_boot() {
        let b = create_body("s1", "1", &Boot::Image("img".into()));
        assert_eq!(
            b,
            json!({"server": {"name": "s1", "flavorRef": "1", "imageRef": "img",
                   "min_count": 1, "max_count": 1, "networks": []}})
        );
        let b = create_body(
            "s2",
            "2",
            &Boot::ImageToVolume {
                image: "img".into(),
                size_gb: 1,
            },
        );
        assert_eq!(
            b,
            json!({"server": {"name": "s2", "flavorRef": "2", "imageRef": "",
                   "min_count": 1, "max_count": 1, "networks": [],
                   "block_device_mapping_v2": [{"uuid": "img", "boot_index": 0,
                       "source_type": "image", "destination_type": "volume",
                       "volume_size": 1, "delete_on_termination": false}]}})
        );
        let b = create_body("s3", "3", &Boot::Volume("vol".into()));
        assert_eq!(
            b["server"]["block_device_mapping_v2"],
            json!([{"uuid": "vol", "boot_index": 0, "source_type": "volume",
                    "destination_type": "volume"}])
        );
        assert_eq!(b["server"]["imageRef"], "");
    }

    #[test]
    fn power_actions_and_their_statuses() {
        assert_eq!(Power::Stop.body(), json!({"os-stop": null}));
        assert_eq!(Power::Start.body(), json!({"os-start": null}));
        assert_eq!(
            Power::Reboot { hard: true }.body(),
            json!({"reboot": {"type": "HARD"}})
        );
        assert_eq!(
            Power::Reboot { hard: false }.body(),
            json!({"reboot": {"type": "SOFT"}})
        );
        assert_eq!(Power::Stop.status(), "SHUTOFF");
        assert_eq!(Power::Reboot { hard: false }.status(), "ACTIVE");
    }

    #[test]
    fn waits_end_at_the_status_with_no_task_or_at_an_error() {
        let srv = |status: &str, task: Value| json!({"id": "i", "name": "s", "status": status, "OS-EXT-STS:task_state": task});
        let active = Goal::Status("ACTIVE");
        let none = Value::Null;
        assert_eq!(
            step(Some(&srv("BUILD", json!("spawning"))), active, &none),
            Step::Pending("BUILD (spawning)".into())
        );
        // Still ACTIVE with a reboot under way is not done.
        assert_eq!(
            step(Some(&srv("ACTIVE", json!("rebooting"))), active, &none),
            Step::Pending("ACTIVE (rebooting)".into())
        );
        assert_eq!(
            step(Some(&srv("ACTIVE", Value::Null)), active, &none),
            Step::Done
        );
        assert_eq!(
            step(None, active, &none),
            Step::Failed("the server is gone".into())
        );
        assert_eq!(step(None, Goal::Gone, &none), Step::Done);
        let mut err = srv("ERROR", Value::Null);
        err["fault"] = json!({"code": 500, "message": "No valid host was found."});
        assert_eq!(
            step(Some(&err), active, &none),
            Step::Failed("went into ERROR: No valid host was found.".into())
        );
        // The fault it had when the wait began does not end the wait; a new one does.
        let before = err["fault"].clone();
        assert_eq!(
            step(Some(&err), Goal::Gone, &before),
            Step::Pending("ERROR".into())
        );
        let mut later = err.clone();
        later["fault"]["message"] = json!("deleting failed");
        assert_eq!(
            step(Some(&later), Goal::Gone, &before),
            Step::Failed("went into ERROR: deleting failed".into())
        );
        assert_eq!(
            step(Some(&srv("ERROR", Value::Null)), active, &none),
            Step::Failed("went into ERROR: no fault recorded".into())
        );
    }

    fn servers() -> Vec<Value> {
        vec![
            json!({"id": "a1", "name": "web", "status": "ACTIVE",
                   "OS-EXT-SRV-ATTR:host": "compute-1",
                   "flavor": {"id": "1", "links": []},
                   "image": {"id": "img1", "links": []}}),
            json!({"id": "b2", "name": "db", "status": "BUILD",
                   "OS-EXT-SRV-ATTR:host": null,
                   "flavor": {"id": "9", "links": []}, "image": ""}),
        ]
    }

    #[test]
    fn lists_show_the_host_only_to_admins() {
        let flavors: Names = [("1".to_string(), "m1.tiny".to_string())].into();
        let images: Names = [("img1".to_string(), "cirros".to_string())].into();
        assert_eq!(
            list_table(&servers(), &flavors, &images),
            "ID  NAME  STATUS  HOST       FLAVOR       IMAGE\n\
             a1  web   ACTIVE  compute-1  m1.tiny (1)  cirros (img1)\n\
             b2  db    BUILD              9            N/A (booted from volume)"
        );
        let mut plain = servers();
        for s in &mut plain {
            s.as_object_mut().unwrap().remove(HOST);
        }
        let t = list_table(&plain, &Names::new(), &Names::new());
        assert!(t.starts_with("ID  NAME  STATUS  FLAVOR  IMAGE\n"), "{t}");
        assert!(t.contains("a1  web   ACTIVE  1       img1\n"), "{t}");
    }

    #[test]
    fn show_puts_nested_fields_on_one_line() {
        let mut s = servers().remove(0);
        s["links"] = json!([{"rel": "self", "href": "x"}]);
        s["addresses"] = json!({"private": [{"addr": "10.0.0.5", "version": 4}]});
        s["os-extended-volumes:volumes_attached"] = json!([{"id": "v1"}, {"id": "v2"}]);
        s["metadata"] = json!({"k": "v"});
        s["fault"] = json!({"code": 500, "message": "boom", "created": "2026-01-01T00:00:00Z"});
        let d = show_doc(&s, &Names::new(), &Names::new());
        assert!(d.get("links").is_none());
        assert_eq!(d["flavor"], "1");
        assert_eq!(d["image"], "img1");
        assert_eq!(d["addresses"], "private=10.0.0.5");
        assert_eq!(d["os-extended-volumes:volumes_attached"], "v1, v2");
        assert_eq!(d["metadata"], "k='v'");
        assert_eq!(d["fault"], "boom (code 500, 2026-01-01T00:00:00Z)");
        assert_eq!(d[HOST], "compute-1");
        assert_eq!(label(&s), "web (a1)");
    }
}
