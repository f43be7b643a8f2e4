//! Compute records in meta: hosts (what each compute agent offers and when it was last
//! heard from), what is reserved on each host, flavors and servers; and the scheduler
//! that places a server on a host.
//!
//! # Keys
//! - `/compute/hosts/<name>`: a [`Host`], written by its agent (capacity, heartbeat).
//! - `/compute/usage/<name>`: a [`Usage`], what the scheduler reserved on the host.
//! - `/compute/flavors/<id>`: a [`Flavor`].
//! - `/compute/servers/<id>`: a [`Server`].
//!
//! # Who writes a server
//! The API (the proxy) creates the record and writes what the user asked for: `want`
//! (the power state to reach), `reboot_seq`, disks to attach or detach, name and metadata.
//! The scheduler writes `host`. The agent of that host writes what is: `status`,
//! `vm_state`, `power_state`, `task_state` back to none, each disk's state, `fault`.
//! Every write is a compare-and-swap on the record's revision ([`Records::update`]), so
//! the two sides never lose each other's changes.
//!
//! # Reservations
//! A host's [`Usage`] lists the servers placed on it with what each takes. Placing a
//! server is one meta transaction: the usage record is still at the revision the scheduler
//! read (so two schedulers never both fill the last room), and the server record is still
//! at its revision (so a server deleted meanwhile is not placed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stratus_proto::meta as pb;

use crate::meta::MetaClient;
use stratus_core::id::new_uuid;

use crate::volume_io::{Attach, VolumeIo};
use crate::volume_ops::{OpError, Volumes};
use crate::volumes::{Attachment, Keyed, Records, Volume, VolumeError};

pub const HOSTS: &str = "/compute/hosts/";
pub const USAGE: &str = "/compute/usage/";
pub const FLAVORS: &str = "/compute/flavors/";
pub const SERVERS: &str = "/compute/servers/";

/// A host whose agent has not written a heartbeat for this long is down.
pub const HOST_DOWN_US: u64 = 30_000_000;
/// How often an agent writes its heartbeat.
pub const HEARTBEAT_SECS: u64 = 5;

/// Default allocation ratios (Nova's defaults).
pub const CPU_RATIO: f64 = 16.0;
pub const RAM_RATIO: f64 = 1.5;
pub const DISK_RATIO: f64 = 1.0;

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a compute agent writes as the `<description>` of its libvirt domains: how it (and
/// `stratus dev down`) tells its own domains from any other's on a shared libvirtd.
pub fn domain_owner(host: &str, run_dir: &std::path::Path) -> String {
    format!("stratus compute agent {host} {}", run_dir.display())
}

/// A compute host, as its agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub name: String,
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// Always `QEMU` (libvirt's name for both KVM and TCG hosts).
    pub hypervisor_type: String,
    /// `kvm` when KVM really runs guests here, else `qemu` (TCG, emulated).
    pub virt_type: String,
    /// Why KVM is not used, when it is not.
    #[serde(default)]
    pub kvm_note: Option<String>,
    pub availability_zone: String,
    pub enabled: bool,
    /// Base URL of the agent's HTTP port (console logs), e.g. `http://127.0.0.1:8990`.
    pub http: String,
    pub started_us: u64,
    pub heartbeat_us: u64,
    /// libvirt's version, e.g. `9.0.0`.
    #[serde(default)]
    pub libvirt_version: String,
}

impl Host {
    /// Whether the agent was heard from within [`HOST_DOWN_US`] of `now`.
    pub fn up(&self, now: u64) -> bool {
        now.saturating_sub(self.heartbeat_us) < HOST_DOWN_US
    }
}

/// What one server takes on a host.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Take {
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
}

/// What is reserved on a host, by server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Usage {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub host: String,
    pub servers: BTreeMap<String, Take>,
}

impl Usage {
    pub fn total(&self) -> Take {
        self.servers.values().fold(Take::default(), |a, t| Take {
            vcpus: a.vcpus + t.vcpus,
            ram_mb: a.ram_mb + t.ram_mb,
            disk_gb: a.disk_gb + t.disk_gb,
        })
    }
}

/// A flavor (Nova's fields at microversion 2.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flavor {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    pub ram_mb: u64,
    pub vcpus: u64,
    pub disk_gb: u64,
    #[serde(default)]
    pub swap_mb: u64,
    #[serde(default)]
    pub ephemeral_gb: u64,
    #[serde(default = "yes")]
    pub is_public: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default = "one")]
    pub rxtx_factor: f64,
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

impl Flavor {
    pub fn take(&self) -> Take {
        Take {
            vcpus: self.vcpus,
            ram_mb: self.ram_mb,
            disk_gb: self.disk_gb,
        }
    }
}

/// The flavors a new cluster starts with, sized for a small machine (Nova's names).
pub fn default_flavors() -> Vec<Flavor> {
    [
        ("1", "m1.tiny", 256, 1, 1),
        ("2", "m1.small", 512, 1, 2),
        ("3", "m1.medium", 1024, 2, 5),
        ("4", "m1.large", 2048, 2, 10),
        ("5", "m1.xlarge", 4096, 4, 20),
    ]
    .into_iter()
    .map(|(id, name, ram_mb, vcpus, disk_gb)| Flavor {
        v: 1,
        id: id.into(),
        name: name.into(),
        ram_mb,
        vcpus,
        disk_gb,
        swap_mb: 0,
        ephemeral_gb: 0,
        is_public: true,
        disabled: false,
        rxtx_factor: 1.0,
    })
    .collect()
}

/// The power state a server should reach.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    Active,
    Stopped,
    Paused,
    Suspended,
    Deleted,
}

/// One disk of a server: a volume served to the guest over NBD.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Disk {
    pub volume_id: String,
    /// The guest device, `vda`, `vdb`, ….
    pub device: String,
    /// 0 for the root disk; `None` for a disk that is not bootable.
    pub boot_index: Option<i32>,
    pub delete_on_termination: bool,
    /// `attaching` (asked for, not yet in the guest), `attached`, `detaching` (asked to
    /// leave), `error`.
    pub state: String,
    /// Id of the volume's Cinder attachment record.
    pub attachment_id: String,
}

/// Why a server is `ERROR`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub created_us: u64,
}

/// A server (a Nova instance).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Server {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    /// The flavor as it was at create time.
    pub flavor: Flavor,
    /// The image it was booted from (`imageRef` or an image block device), if any.
    pub image_id: Option<String>,
    /// Whether it was created with `imageRef` (Nova shows `image` as `""` for a server
    /// booted from a volume).
    #[serde(default)]
    pub image_ref: bool,
    pub created_us: u64,
    pub updated_us: u64,
    pub launched_us: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub key_name: Option<String>,
    /// The availability zone asked for (or the host's, once placed).
    pub availability_zone: Option<String>,
    /// The host it is placed on.
    pub host: Option<String>,
    /// What the user asked for.
    pub want: Want,
    /// Raised by each reboot request; the agent has done every reboot up to `reboot_done`.
    #[serde(default)]
    pub reboot_seq: u64,
    #[serde(default)]
    pub reboot_done: u64,
    #[serde(default)]
    pub reboot_hard: bool,
    /// Nova's `status`, `OS-EXT-STS:vm_state`, `task_state` and `power_state`.
    pub status: String,
    pub vm_state: String,
    pub task_state: Option<String>,
    pub power_state: u8,
    pub fault: Option<Fault>,
    #[serde(default)]
    pub disks: Vec<Disk>,
}

impl Server {
    /// The next free guest device name (`vdb` after `vda`, …).
    pub fn next_device(&self) -> String {
        (b'a'..=b'z')
            .map(|c| format!("vd{}", c as char))
            .find(|d| !self.disks.iter().any(|x| &x.device == d))
            .unwrap_or_else(|| "vdzz".into())
    }

    /// Marks the server `ERROR` with a fault.
    pub fn set_error(&mut self, code: u16, message: impl Into<String>) {
        self.status = "ERROR".into();
        self.vm_state = "error".into();
        self.task_state = None;
        self.fault = Some(Fault {
            code,
            message: message.into(),
            created_us: now_us(),
        });
        self.updated_us = now_us();
    }
}

/// Power states (Nova's numbers).
pub mod power {
    pub const NOSTATE: u8 = 0;
    pub const RUNNING: u8 = 1;
    pub const PAUSED: u8 = 3;
    pub const SHUTDOWN: u8 = 4;
    pub const CRASHED: u8 = 6;
    pub const SUSPENDED: u8 = 7;
}

impl Keyed for Host {
    fn id(&self) -> &str {
        &self.name
    }
}
impl Keyed for Usage {
    fn id(&self) -> &str {
        &self.host
    }
}
impl Keyed for Flavor {
    fn id(&self) -> &str {
        &self.id
    }
}
impl Keyed for Server {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The compute records of a cluster.
#[derive(Clone)]
pub struct Compute {
    pub meta: MetaClient,
    pub hosts: Records<Host>,
    pub usage: Records<Usage>,
    pub flavors: Records<Flavor>,
    pub servers: Records<Server>,
}

/// Why a server could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Nova's `NoValidHost` (the server goes `ERROR`).
    #[error("No valid host was found. {0}")]
    NoValidHost(String),
    /// The server record changed or vanished while it was being placed.
    #[error("server {0} changed while it was being scheduled")]
    Gone(String),
    #[error(transparent)]
    Record(#[from] VolumeError),
}

/// What a server asks of a host.
#[derive(Debug, Clone)]
pub struct Request {
    pub take: Take,
    pub availability_zone: Option<String>,
    /// Image property `hypervisor_type` (e.g. `qemu`, `kvm`), if the image sets one.
    pub hypervisor_type: Option<String>,
}

/// Allocation ratios.
#[derive(Debug, Clone, Copy)]
pub struct Ratios {
    pub cpu: f64,
    pub ram: f64,
    pub disk: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Self {
            cpu: CPU_RATIO,
            ram: RAM_RATIO,
            disk: DISK_RATIO,
        }
    }
}

/// Hosts that can take `req`, best first (most free RAM: spread), each with the reason a
/// refused host was refused.
pub fn rank<'a>(
    hosts: &'a [(Host, Usage)],
    req: &Request,
    ratios: Ratios,
    now: u64,
) -> (Vec<&'a (Host, Usage)>, Vec<String>) {
    let mut ok = Vec::new();
    let mut why = Vec::new();
    for hu in hosts {
        let (h, u) = hu;
        let used = u.total();
        let room = |cap: u64, ratio: f64, used: u64| {
            (cap as f64 * ratio) as u64 - used.min((cap as f64 * ratio) as u64)
        };
        let reason = if !h.enabled {
            Some("disabled".to_string())
        } else if !h.up(now) {
            Some("not heard from".to_string())
        } else if req
            .availability_zone
            .as_deref()
            .is_some_and(|z| !z.is_empty() && z != h.availability_zone)
        {
            Some(format!("in zone {}", h.availability_zone))
        } else if req.hypervisor_type.as_deref().is_some_and(|t| {
            !t.eq_ignore_ascii_case(&h.virt_type) && !t.eq_ignore_ascii_case(&h.hypervisor_type)
        }) {
            Some(format!("hypervisor {}", h.virt_type))
        } else if room(h.ram_mb, ratios.ram, used.ram_mb) < req.take.ram_mb {
            Some(format!(
                "{} MB RAM free",
                room(h.ram_mb, ratios.ram, used.ram_mb)
            ))
        } else if room(h.vcpus, ratios.cpu, used.vcpus) < req.take.vcpus {
            Some(format!(
                "{} vCPUs free",
                room(h.vcpus, ratios.cpu, used.vcpus)
            ))
        } else if room(h.disk_gb, ratios.disk, used.disk_gb) < req.take.disk_gb {
            Some(format!(
                "{} GB disk free",
                room(h.disk_gb, ratios.disk, used.disk_gb)
            ))
        } else {
            None
        };
        match reason {
            Some(r) => why.push(format!("{}: {r}", h.name)),
            None => ok.push(hu),
        }
    }
    let free_ram =
        |hu: &&(Host, Usage)| (hu.0.ram_mb as f64 * ratios.ram) as i64 - hu.1.total().ram_mb as i64;
    ok.sort_by(|a, b| free_ram(b).cmp(&free_ram(a)).then(a.0.name.cmp(&b.0.name)));
    (ok, why)
}

fn records<T>(meta: &MetaClient, prefix: &'static str) -> Records<T> {
    Records::new(meta.clone(), prefix)
}

impl Compute {
    pub fn new(meta: MetaClient) -> Self {
        Self {
            hosts: records(&meta, HOSTS),
            usage: records(&meta, USAGE),
            flavors: records(&meta, FLAVORS),
            servers: records(&meta, SERVERS),
            meta,
        }
    }

    /// Creates the default flavors that do not exist yet (a flavor deleted by an admin
    /// comes back only if its id is free).
    pub async fn ensure_flavors(&self) -> Result<(), VolumeError> {
        for f in default_flavors() {
            if self.flavors.get(&f.id).await?.is_none() {
                self.flavors.create(&f).await?;
            }
        }
        Ok(())
    }

    /// Every host with what is reserved on it.
    pub async fn hosts_with_usage(&self) -> Result<Vec<(Host, Usage)>, VolumeError> {
        let hosts = self.hosts.list().await?;
        let mut out = Vec::with_capacity(hosts.len());
        for h in hosts {
            let u = self
                .usage
                .get(&h.name)
                .await?
                .map(|(u, _)| u)
                .unwrap_or(Usage {
                    v: 1,
                    host: h.name.clone(),
                    servers: BTreeMap::new(),
                });
            out.push((h, u));
        }
        Ok(out)
    }

    /// Places server `id` (which must still be at revision `rev`): picks the best host
    /// for `req` and, in one transaction, reserves `req.take` on it and writes the
    /// server with `host` set (and `place` applied). Retries when another placement
    /// changed the chosen host meanwhile.
    pub async fn schedule(
        &self,
        id: &str,
        req: &Request,
        ratios: Ratios,
        mut place: impl FnMut(&mut Server),
    ) -> Result<Server, ScheduleError> {
        for _ in 0..32 {
            let Some((mut server, rev)) = self.servers.get(id).await? else {
                return Err(ScheduleError::Gone(id.into()));
            };
            let hosts = self.hosts_with_usage().await?;
            let (ranked, why) = rank(&hosts, req, ratios, now_us());
            let Some((host, usage)) = ranked.first().map(|hu| (&hu.0, &hu.1)) else {
                let why = if why.is_empty() {
                    "There are no compute hosts.".to_string()
                } else {
                    format!("Hosts refused: {}.", why.join("; "))
                };
                return Err(ScheduleError::NoValidHost(why));
            };
            // The room check and the compare must see the same usage: read it once more
            // with its revision and check that host again on exactly that.
            let (mut usage, usage_rev) = match self.usage.get(&host.name).await? {
                Some((u, r)) => (u, Some(r)),
                None => (usage.clone(), None),
            };
            let pair = [(host.clone(), usage.clone())];
            if rank(&pair, req, ratios, now_us()).0.is_empty() {
                continue;
            }
            usage.servers.insert(id.to_string(), req.take);
            server.host = Some(host.name.clone());
            server.availability_zone = Some(host.availability_zone.clone());
            server.updated_us = now_us();
            place(&mut server);
            let usage_cmp = match usage_rev {
                Some(r) => pb::compare::Target::ModRevision(r),
                None => pb::compare::Target::Version(0),
            };
            let put = |key: String, value: Vec<u8>| pb::RequestOp {
                request: Some(pb::request_op::Request::Put(pb::PutRequest {
                    key: key.into_bytes(),
                    value,
                    ..Default::default()
                })),
            };
            let r = self
                .meta
                .txn(pb::TxnRequest {
                    compare: vec![
                        pb::Compare {
                            result: pb::compare::Result::Equal as i32,
                            key: format!("{USAGE}{}", host.name).into_bytes(),
                            target: Some(usage_cmp),
                        },
                        pb::Compare {
                            result: pb::compare::Result::Equal as i32,
                            key: format!("{SERVERS}{id}").into_bytes(),
                            target: Some(pb::compare::Target::ModRevision(rev)),
                        },
                    ],
                    success: vec![
                        put(
                            format!("{USAGE}{}", host.name),
                            serde_json::to_vec(&usage).expect("serializes"),
                        ),
                        put(
                            format!("{SERVERS}{id}"),
                            serde_json::to_vec(&server).expect("serializes"),
                        ),
                    ],
                    ..Default::default()
                })
                .await
                .map_err(VolumeError::from)?;
            if r.succeeded {
                return Ok(server);
            }
        }
        Err(ScheduleError::Record(VolumeError::Contended(id.into())))
    }

    /// Gives back what server `id` reserved on `host`.
    pub async fn release(&self, host: &str, id: &str) -> Result<(), VolumeError> {
        self.usage
            .update(host, |u| u.servers.remove(id).map(|_| ()))
            .await?;
        Ok(())
    }
}

/// Marks volume `vol` `in-use` by server `server` as guest device `device` (it must be
/// `available`); answers the attachment's id. The agent attaching the volume for I/O is
/// what fences any earlier writer; this is the Cinder-visible side.
pub async fn reserve_volume(
    vols: &Records<Volume>,
    vol: &str,
    server: &str,
    host: Option<&str>,
    device: &str,
) -> Result<String, OpError> {
    let attachment = new_uuid();
    let mut state = None;
    let done = vols
        .update(vol, |v| {
            if v.status != "available" || v.hidden {
                state = Some(v.status.clone());
                return None;
            }
            v.status = "in-use".into();
            v.attachments.push(Attachment {
                id: attachment.clone(),
                server_id: Some(server.to_string()),
                host_name: host.map(str::to_string),
                device: Some(format!("/dev/{device}")),
                attached_us: now_us(),
            });
            v.updated_us = now_us();
            Some(())
        })
        .await?;
    match (done, state) {
        (Some(_), _) => Ok(attachment),
        (None, Some(st)) => Err(OpError::State(format!(
            "Invalid volume: volume {vol} status must be available, but current status is: {st}."
        ))),
        (None, None) => Err(OpError::NotFound(format!(
            "Volume {vol} could not be found."
        ))),
    }
}

/// Drops server `server`'s attachment of volume `vol`; the volume is `available` again
/// when no other attachment is left. A volume that is gone is fine.
pub async fn release_volume(
    vols: &Records<Volume>,
    vol: &str,
    server: &str,
) -> Result<(), VolumeError> {
    vols.update(vol, |v| {
        let before = v.attachments.len();
        v.attachments
            .retain(|a| a.server_id.as_deref() != Some(server));
        if v.attachments.len() == before && v.status != "in-use" {
            return None;
        }
        if v.attachments.is_empty()
            && matches!(
                v.status.as_str(),
                "in-use" | "attaching" | "detaching" | "reserved"
            )
        {
            v.status = "available".into();
        }
        v.updated_us = now_us();
        Some(())
    })
    .await?;
    Ok(())
}

/// The last step of deleting a server, once no guest uses its disks: each volume is
/// released, and deleted if it was to be deleted with the server; the host's
/// reservation is given back; the record goes.
pub async fn retire(compute: &Compute, volumes: &Volumes, id: &str) -> Result<(), OpError> {
    let Some((server, _)) = compute.servers.get(id).await? else {
        return Ok(());
    };
    for d in &server.disks {
        // A writer left behind (an agent that died, or one no longer heard from) is fenced
        // first: a new epoch, so the storage nodes refuse it, then given back.
        if let Some((v, _)) = volumes.vols.get(&d.volume_id).await? {
            if v.writer.is_some() && !v.read_only {
                let io = VolumeIo::attach_with(
                    volumes.meta().clone(),
                    &d.volume_id,
                    &format!("compute-retire:{id}"),
                    Attach::Write,
                )
                .await
                .map_err(|e| OpError::Failed(format!("fencing volume {}: {e}", d.volume_id)))?;
                io.detach()
                    .await
                    .map_err(|e| OpError::Failed(format!("fencing volume {}: {e}", d.volume_id)))?;
            }
        }
        release_volume(&volumes.vols, &d.volume_id, id).await?;
        if d.delete_on_termination {
            match volumes.delete(&d.volume_id, true).await {
                Ok(()) | Err(OpError::NotFound(_)) => {}
                // Kept with the record: the next attempt deletes it.
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(h) = &server.host {
        compute.release(h, id).await?;
    }
    if let Some((_, rev)) = compute.servers.get(id).await? {
        compute.servers.delete(id, rev).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, ram_mb: u64, beat: u64) -> Host {
        Host {
            v: 1,
            name: name.into(),
            vcpus: 2,
            ram_mb,
            disk_gb: 100,
            hypervisor_type: "QEMU".into(),
            virt_type: "qemu".into(),
            kvm_note: None,
            availability_zone: "nova".into(),
            enabled: true,
            http: String::new(),
            started_us: 0,
            heartbeat_us: beat,
            libvirt_version: String::new(),
        }
    }

    fn usage(h: &str, ram: &[u64]) -> Usage {
        Usage {
            v: 1,
            host: h.into(),
            servers: ram
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        format!("s{i}"),
                        Take {
                            vcpus: 1,
                            ram_mb: *r,
                            disk_gb: 1,
                        },
                    )
                })
                .collect(),
        }
    }

    fn req(ram_mb: u64) -> Request {
        Request {
            take: Take {
                vcpus: 1,
                ram_mb,
                disk_gb: 1,
            },
            availability_zone: None,
            hypervisor_type: None,
        }
    }

    #[test]
    fn spreads_by_free_ram_and_filters_full_and_dead_hosts() {
        let now = 100 * HOST_DOWN_US;
        let hosts = vec![
            (host("a", 1000, now), usage("a", &[600])),
            (host("b", 1000, now), usage("b", &[100])),
            (host("c", 4000, now - HOST_DOWN_US - 1), usage("c", &[])),
        ];
        let (ok, why) = rank(&hosts, &req(500), Ratios::default(), now);
        let names: Vec<_> = ok.iter().map(|h| h.0.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(why[0].starts_with("c: not heard"), "{why:?}");
        // Ratio 1.0: a has 400 MB left, so a 500 MB server fits on b only.
        let strict = Ratios {
            ram: 1.0,
            ..Ratios::default()
        };
        let (ok, why) = rank(&hosts, &req(500), strict, now);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0.name, "b");
        assert!(why.iter().any(|w| w.starts_with("a: 400 MB")), "{why:?}");
    }

    #[test]
    fn zone_and_hypervisor_filters() {
        let now = HOST_DOWN_US;
        let hosts = vec![(host("a", 1000, now), usage("a", &[]))];
        let mut r = req(1);
        r.availability_zone = Some("other".into());
        assert!(rank(&hosts, &r, Ratios::default(), now).0.is_empty());
        r.availability_zone = Some("nova".into());
        r.hypervisor_type = Some("kvm".into());
        assert!(rank(&hosts, &r, Ratios::default(), now).0.is_empty());
        r.hypervisor_type = Some("qemu".into());
        assert_eq!(rank(&hosts, &r, Ratios::default(), now).0.len(), 1);
    }

    #[test]
    fn device_names_fill_gaps() {
        let mut s: Server = serde_json::from_value(serde_json::json!({
            "id": "x", "name": "n", "project_id": "p", "user_id": "u",
            "flavor": default_flavors()[0], "image_id": null, "created_us": 0,
            "updated_us": 0, "launched_us": null, "key_name": null,
            "availability_zone": null, "host": null, "want": "active", "status": "BUILD",
            "vm_state": "building", "task_state": "scheduling", "power_state": 0,
            "fault": null, "disks": []
        }))
        .unwrap();
        assert_eq!(s.next_device(), "vda");
        for d in ["vda", "vdc"] {
            s.disks.push(Disk {
                volume_id: d.into(),
                device: d.into(),
                boot_index: None,
                delete_on_termination: false,
                state: "attached".into(),
                attachment_id: String::new(),
            });
        }
        assert_eq!(s.next_device(), "vdb");
    }
}
