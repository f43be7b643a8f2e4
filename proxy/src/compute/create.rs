//! `POST /servers`: everything that can be checked cheaply is checked while the client
//! waits, so a mistake is a 400 with Nova's words, not a server in `ERROR` — the body
//! ([`parse`]), the flavor, the zone, every image, volume and snapshot it names and the
//! sizes of the disks to make ([`super::plan`], which says what the disks will be). Then
//! the record is written (`BUILD`, `building`, task `scheduling`, power state 0, `want`
//! active) and [`super::build`] places the server and makes its disks in a task; the
//! answer is 202 with the server's id, links and an admin password.
//!
//! No networking exists without Neutron: `networks` may be absent, `[]`, `"none"` or
//! `"auto"` (there is nothing to connect to). One server per request (`min_count` and
//! `max_count` 1). `user_data`, `personality`, a config drive, access IPs and forced hosts
//! are refused (nothing would deliver them); `key_name` is recorded, not checked (there
//! are no key pairs yet), and the admin password answered is not set in the guest.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode};
use rand::Rng;
use serde_json::{json, Map, Value};
use stratus_client::compute::{now_us, Request, Server, Want};
use stratus_core::id::new_uuid;
use tracing::Instrument;

use super::build::{self, Job};
use super::params::{self, id_of};
use super::plan::plan;
use super::{bad, invalid, NovaError, NovaResult, Req};
use crate::openstack::json_response;

/// Most disks of a server (`vda` … `vdz`).
pub const MAX_DISKS: usize = 26;

/// Keys of `server` that `POST /servers` takes at 2.1.
const KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "block_device_mapping_v2",
    "block_device_mapping",
    "networks",
    "availability_zone",
    "metadata",
    "key_name",
    "min_count",
    "max_count",
    "return_reservation_id",
    "OS-DCF:diskConfig",
    "security_groups",
    "adminPass",
    "accessIPv4",
    "accessIPv6",
    "config_drive",
    "user_data",
    "personality",
];

/// Keys of a `block_device_mapping_v2` item.
const BDM_KEYS: &[&str] = &[
    "boot_index",
    "uuid",
    "source_type",
    "destination_type",
    "volume_size",
    "delete_on_termination",
    "device_name",
    "device_type",
    "disk_bus",
    "guest_format",
    "no_device",
    "tag",
    "volume_type",
];

/// Nova's answer to a create with no root disk, or a gap in the boot indexes.
pub const BOOT_SEQUENCE: &str = "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.";

/// Where a block device mapping's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Image(String),
    Volume(String),
    Snapshot(String),
    Blank,
}

/// One `block_device_mapping_v2` item, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Bdm {
    pub source: Source,
    /// `destination_type: local` (an image root from `--image`, an ephemeral or swap
    /// disk).
    pub local: bool,
    /// `None` when not bootable (absent, null or negative).
    pub boot_index: Option<u32>,
    /// GiB (MiB for a swap disk, as Nova and OSC's `--swap` take it); `None` when absent
    /// or 0.
    pub volume_size: Option<u64>,
    pub delete_on_termination: bool,
    /// `guest_format: swap`.
    pub swap: bool,
}

/// A create request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub flavor_id: String,
    /// `imageRef`, unless absent or empty.
    pub image_ref: Option<String>,
    pub bdms: Vec<Bdm>,
    /// The zone part of `availability_zone`.
    pub zone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub key_name: Option<String>,
    pub admin_pass: Option<String>,
}

impl Spec {
    /// The mapping that is the root disk (boot index 0), unless it is the `--image` form
    /// (`image`→`local`), which means "the root from `imageRef`".
    pub fn root_bdm(&self) -> Option<&Bdm> {
        self.bdms
            .iter()
            .find(|b| b.boot_index == Some(0) && !(b.local && matches!(b.source, Source::Image(_))))
    }

    /// The mappings other than the root, in device order: bootable ones by boot index,
    /// then the rest as given.
    pub fn other_bdms(&self) -> Vec<&Bdm> {
        let mut bootable: Vec<&Bdm> = self
            .bdms
            .iter()
            .filter(|b| b.boot_index.is_some_and(|i| i > 0))
            .collect();
        bootable.sort_by_key(|b| b.boot_index);
        bootable.extend(self.bdms.iter().filter(|b| b.boot_index.is_none()));
        bootable
    }
}

/// Checks a `block_device_mapping_v2` item.
fn parse_bdm(v: &Value, image_ref: bool) -> NovaResult<Option<Bdm>> {
    let invalid_bdm = |why: &str| bad(format!("Block Device Mapping is Invalid: {why}"));
    let Value::Object(m) = v else {
        return Err(invalid(
            "block_device_mapping_v2",
            v,
            "Items must be objects.",
        ));
    };
    if let Some(k) = m.keys().find(|k| !BDM_KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    if let Some(nd) = m.get("no_device") {
        if !nd.is_null() && params::boolean("no_device", nd)? {
            return Ok(None);
        }
    }
    let uuid = match m.get("uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
        Some(v) => {
            return Err(invalid(
                "uuid",
                v,
                "It must be a string of 1 to 255 characters.",
            ))
        }
    };
    let kind = match m.get("source_type") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(invalid(
                "source_type",
                v,
                "It must be one of image, volume, snapshot, blank.",
            ))
        }
        None => return Err(invalid_bdm("source_type is required.")),
    };
    let source = match (kind, uuid) {
        ("blank", None) => Source::Blank,
        ("blank", Some(_)) => return Err(invalid_bdm("Invalid device UUID.")),
        ("image" | "volume" | "snapshot", None) => return Err(invalid_bdm("Missing device UUID.")),
        ("image", Some(u)) => Source::Image(u),
        ("volume", Some(u)) => Source::Volume(u),
        ("snapshot", Some(u)) => Source::Snapshot(u),
        (_, _) => {
            return Err(invalid(
                "source_type",
                &json!(kind),
                "It must be one of image, volume, snapshot, blank.",
            ))
        }
    };
    let local = match m.get("destination_type") {
        None | Some(Value::Null) => source == Source::Blank,
        Some(Value::String(s)) if s == "volume" => false,
        Some(Value::String(s)) if s == "local" => true,
        Some(v) => {
            return Err(invalid(
                "destination_type",
                v,
                "It must be volume or local.",
            ))
        }
    };
    let boot_index = match m.get("boot_index") {
        None | Some(Value::Null) => None,
        Some(v) => u32::try_from(params::int(
            "boot_index",
            v,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )?)
        .ok(),
    };
    let volume_size = match m.get("volume_size") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(params::int("volume_size", v, 0, i64::from(i32::MAX))? as u64).filter(|&s| s > 0)
        }
    };
    let delete_on_termination = match m.get("delete_on_termination") {
        None | Some(Value::Null) => false,
        Some(v) => params::boolean("delete_on_termination", v)?,
    };
    let swap = m.get("guest_format").and_then(Value::as_str) == Some("swap");
    if local {
        match &source {
            Source::Image(_) if !(image_ref && boot_index == Some(0)) => {
                return Err(invalid_bdm("Mapping image to local is not supported."))
            }
            Source::Volume(_) | Source::Snapshot(_) => return Err(invalid_bdm(
                "a volume or a snapshot can only be mapped as a volume (destination_type volume).",
            )),
            _ => {}
        }
    }
    if !local && source == Source::Blank && volume_size.is_none() {
        return Err(invalid_bdm(
            "Blank volumes (source: 'blank', dest: 'volume') need to have non-zero size",
        ));
    }
    if !local && matches!(source, Source::Image(_)) && volume_size.is_none() {
        return Err(invalid_bdm(
            "Images with destination_type 'volume' need to have a non-zero size specified",
        ));
    }
    Ok(Some(Bdm {
        source,
        local,
        boot_index,
        volume_size,
        delete_on_termination,
        swap,
    }))
}

/// Checks the `server` object of a create body.
pub fn parse(body: &Map<String, Value>) -> NovaResult<Spec> {
    if let Some(k) = body.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let refuse = |k: &str, why: &str| -> NovaResult<()> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(bad(format!("{k} is not supported: {why}"))),
        }
    };
    refuse(
        "user_data",
        "there is no metadata service or config drive to deliver it",
    )?;
    refuse("personality", "there is no config drive to deliver it")?;
    refuse("accessIPv4", "servers have no network")?;
    refuse("accessIPv6", "servers have no network")?;
    refuse("block_device_mapping", "use block_device_mapping_v2")?;
    if let Some(v) = body.get("config_drive") {
        if !matches!(v, Value::Null | Value::Bool(false))
            && !v.as_str().is_some_and(|s| s.is_empty() || parse_false(s))
        {
            return Err(bad(
                "config_drive is not supported: there is no config drive.",
            ));
        }
    }
    if let Some(v) = body.get("return_reservation_id") {
        if params::boolean("return_reservation_id", v)? {
            return Err(bad(
                "return_reservation_id is not supported: servers are created one at a time.",
            ));
        }
    }
    match body.get("OS-DCF:diskConfig") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "AUTO" || s == "MANUAL" => {}
        Some(v) => {
            return Err(invalid(
                "OS-DCF:diskConfig",
                v,
                "It must be AUTO or MANUAL.",
            ))
        }
    }
    match body.get("security_groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a))
            if a.iter()
                .all(|g| g.get("name").and_then(Value::as_str) == Some("default")) => {}
        Some(v) => {
            return Err(invalid(
                "security_groups",
                v,
                "Security groups are not supported: servers have no network.",
            ))
        }
    }
    match body.get("networks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::String(s)) if s == "none" || s == "auto" => {}
        Some(v) => return Err(invalid(
            "networks",
            v,
            "This cloud has no network service: ask for none (absent, [], \"none\" or \"auto\").",
        )),
    }
    for k in ["min_count", "max_count"] {
        if let Some(v) = body.get(k) {
            if params::int(k, v, 1, i64::from(i32::MAX))? != 1 {
                return Err(bad(
                    "Only one server per request is supported: min_count and max_count must be 1.",
                ));
            }
        }
    }
    let name = params::name(
        "name",
        body.get("name")
            .ok_or_else(|| bad("'name' is a required property"))?,
    )?;
    let flavor_id = match body.get("flavorRef") {
        Some(Value::String(s)) if !id_of(s).is_empty() => id_of(s).to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => return Err(invalid("flavorRef", v, "It must be a flavor id or URL.")),
        None => return Err(bad("'flavorRef' is a required property")),
    };
    let image_ref = match body.get("imageRef") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if !id_of(s).is_empty() => Some(id_of(s).to_string()),
        Some(v) => return Err(invalid("imageRef", v, "It must be an image id or URL.")),
    };
    let zone = match body.get("availability_zone") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let mut parts = s.splitn(2, ':');
            let zone = parts.next().unwrap_or("").to_string();
            if parts
                .next()
                .is_some_and(|h| !h.trim_matches(':').is_empty())
            {
                return Err(bad(
                    "Forcing a server onto a host (availability_zone \"zone:host\") is not supported.",
                ));
            }
            (!zone.is_empty()).then_some(zone)
        }
        Some(v) => return Err(invalid("availability_zone", v, "It must be a string.")),
    };
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => params::metadata(v)?,
    };
    let key_name = match body.get("key_name") {
        None | Some(Value::Null) => None,
        Some(v) => Some(params::name("key_name", v)?),
    };
    let admin_pass = match body.get("adminPass") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(invalid("adminPass", v, "It must be a string.")),
    };
    let bdms = match body.get("block_device_mapping_v2") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                if let Some(b) = parse_bdm(item, image_ref.is_some())? {
                    out.push(b);
                }
            }
            out
        }
        Some(v) => {
            return Err(invalid(
                "block_device_mapping_v2",
                v,
                "It must be an array.",
            ))
        }
    };
    let spec = Spec {
        name,
        flavor_id,
        image_ref,
        bdms,
        zone,
        metadata,
        key_name,
        admin_pass,
    };
    check_boot_sequence(&spec)?;
    let mut seen = Vec::new();
    for b in &spec.bdms {
        if let Source::Volume(v) = &b.source {
            if seen.contains(&v) {
                return Err(bad(format!(
                    "Block Device Mapping is Invalid: volume {v} is mapped twice."
                )));
            }
            seen.push(v);
        }
    }
    let disks = spec.other_bdms().len() + 1;
    if disks > MAX_DISKS {
        return Err(bad(format!(
            "Block Device Mapping is Invalid: {disks} disks; a server has at most {MAX_DISKS}."
        )));
    }
    Ok(spec)
}

/// `"false"`-like strings (`config_drive` may come as a string).
fn parse_false(s: &str) -> bool {
    params::parse_bool(s) == Some(false)
}

/// Boot indexes (with `imageRef` as 0 when no mapping has 0) must be 0, 1, 2, … with no
/// gap or repeat, and there must be a root.
fn check_boot_sequence(spec: &Spec) -> NovaResult<()> {
    let mut idx: Vec<u32> = spec.bdms.iter().filter_map(|b| b.boot_index).collect();
    if !idx.contains(&0) && spec.image_ref.is_some() {
        idx.push(0);
    }
    if idx.is_empty() {
        return Err(bad(if spec.bdms.is_empty() {
            "Missing imageRef attribute"
        } else {
            BOOT_SEQUENCE
        }));
    }
    idx.sort_unstable();
    if idx.iter().enumerate().any(|(i, &b)| b as usize != i) {
        return Err(bad(BOOT_SEQUENCE));
    }
    Ok(())
}

/// A random admin password (what Nova answers when none is given).
fn admin_password() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(12)
        .map(char::from)
        .collect()
}

/// 400 unless `zone` is one of the hosts' zones (or `nova`, the default zone, when no host
/// is registered yet).
async fn check_zone(r: &Req<'_>, zone: &str) -> NovaResult<()> {
    let hosts = r.compute().hosts.list().await?;
    let known =
        hosts.iter().any(|h| h.availability_zone == zone) || (hosts.is_empty() && zone == "nova");
    if !known {
        return Err(bad("The requested availability zone is not available"));
    }
    Ok(())
}

/// `POST /servers`.
pub(super) async fn create(r: &Req<'_>) -> NovaResult {
    r.may_change("os_compute_api:servers:create")?;
    let body = r.entity("server")?;
    let spec = parse(&body)?;
    let flavor = match r.compute().flavors.get(&spec.flavor_id).await? {
        Some((f, _)) if super::flavors::visible(r, &f) => f,
        _ => {
            return Err(bad(format!(
                "Flavor {} could not be found.",
                spec.flavor_id
            )))
        }
    };
    if flavor.disabled {
        return Err(bad("Flavor is disabled."));
    }
    if let Some(z) = &spec.zone {
        check_zone(r, z).await?;
    }
    let plan = plan(r, &spec, &flavor).await?;
    let now = now_us();
    let server = Server {
        v: 1,
        id: new_uuid(),
        name: spec.name.clone(),
        project_id: r.project.clone(),
        user_id: r.caller.user_id.clone(),
        flavor: flavor.clone(),
        image_id: plan.image_id.clone(),
        image_ref: spec.image_ref.is_some(),
        created_us: now,
        updated_us: now,
        launched_us: None,
        metadata: spec.metadata.clone(),
        key_name: spec.key_name.clone(),
        availability_zone: spec.zone.clone(),
        host: None,
        want: Want::Active,
        reboot_seq: 0,
        reboot_done: 0,
        reboot_hard: false,
        status: "BUILD".into(),
        vm_state: "building".into(),
        task_state: Some(build::SCHEDULING.into()),
        power_state: stratus_client::compute::power::NOSTATE,
        fault: None,
        disks: Vec::new(),
    };
    if !r.compute().servers.create(&server).await? {
        return Err(NovaError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("server id {} taken", server.id),
        ));
    }
    tracing::info!(server = %server.id, name = %server.name, flavor = %flavor.id, "server created");
    let job = Job {
        server_id: server.id.clone(),
        caller: r.caller.clone(),
        project: r.project.clone(),
        host_url: r.host_url.clone(),
        request: Request {
            take: flavor.take(),
            availability_zone: spec.zone.clone(),
            hypervisor_type: plan.hypervisor_type,
        },
        disks: plan.disks,
    };
    tokio::spawn(build::run(r.p.clone(), job).instrument(tracing::Span::current()));
    let links = r.links();
    let doc = json!({"server": {
        "id": server.id,
        "links": links.of("servers", &server.id),
        "OS-DCF:diskConfig": "MANUAL",
        "adminPass": spec.admin_pass.unwrap_or_else(admin_password),
    }});
    let mut resp = json_response(StatusCode::ACCEPTED, &doc);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/servers/{}", links.base, server.id)) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> NovaResult<Spec> {
        parse(v.as_object().unwrap())
    }

    fn status(v: Value) -> u16 {
        spec(v.clone())
            .err()
            .map(|e| e.status.as_u16())
            .unwrap_or_else(|| panic!("accepted: {v}"))
    }

    #[test]
    fn what_openstack_server_create_sends_is_accepted() {
        // --flavor F --volume V
        let s = spec(
            json!({"name": "s1", "flavorRef": "1", "imageRef": "", "min_count": 1,
            "max_count": 1, "networks": [], "block_device_mapping_v2": [{"uuid": "vol",
            "boot_index": 0, "source_type": "volume", "destination_type": "volume"}]}),
        )
        .unwrap();
        assert_eq!(s.image_ref, None);
        assert_eq!(s.root_bdm().unwrap().source, Source::Volume("vol".into()));
        assert!(s.other_bdms().is_empty());
        // --image I --boot-from-volume 1
        let s = spec(
            json!({"name": "s2", "flavorRef": "1", "imageRef": "", "networks": "auto",
            "block_device_mapping_v2": [{"uuid": "img", "boot_index": 0, "source_type": "image",
            "destination_type": "volume", "volume_size": 1, "delete_on_termination": false}]}),
        )
        .unwrap();
        let root = s.root_bdm().unwrap();
        assert_eq!(root.source, Source::Image("img".into()));
        assert_eq!(root.volume_size, Some(1));
        assert!(!root.delete_on_termination);
        // --image I: imageRef and an image→local root, which means "root from imageRef".
        let s = spec(
            json!({"name": "s3", "flavorRef": "http://h/compute/v2.1/flavors/2",
            "imageRef": "img", "networks": "none", "metadata": {"k": "v"}, "key_name": "kp",
            "block_device_mapping_v2": [{"uuid": "img", "boot_index": 0, "source_type": "image",
            "destination_type": "local", "delete_on_termination": true}]}),
        )
        .unwrap();
        assert_eq!(s.flavor_id, "2");
        assert_eq!(s.image_ref.as_deref(), Some("img"));
        assert!(s.root_bdm().is_none());
        assert_eq!(s.metadata["k"], "v");
        assert_eq!(s.key_name.as_deref(), Some("kp"));
        // tempest: no networks key at all, a volume root with imageRef "".
        let s = spec(json!({"name": "t", "flavorRef": 1, "imageRef": "",
            "block_device_mapping_v2": [{"uuid": "v", "source_type": "volume",
            "destination_type": "volume", "boot_index": "0", "delete_on_termination": true}]}))
        .unwrap();
        assert!(s.root_bdm().unwrap().delete_on_termination);
        assert_eq!(s.flavor_id, "1");
    }

    #[test]
    fn networks_other_than_none_are_refused() {
        let base =
            |n: Value| json!({"name": "s", "flavorRef": "1", "imageRef": "i", "networks": n});
        for ok in [json!([]), json!("none"), json!("auto"), json!(null)] {
            assert!(spec(base(ok.clone())).is_ok(), "{ok}");
        }
        for refused in [json!([{"uuid": "net"}]), json!("public"), json!({})] {
            assert_eq!(status(base(refused.clone())), 400, "{refused}");
        }
    }

    #[test]
    fn one_server_a_request() {
        let base =
            |k: &str, n: Value| json!({"name": "s", "flavorRef": "1", "imageRef": "i", k: n});
        assert!(spec(base("min_count", json!(1))).is_ok());
        assert!(spec(base("max_count", json!("1"))).is_ok());
        let e = spec(base("min_count", json!(2))).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("Only one server"), "{}", e.message);
        assert_eq!(status(base("max_count", json!(3))), 400);
        assert_eq!(status(base("max_count", json!(0))), 400);
    }

    #[test]
    fn required_and_refused_members() {
        assert_eq!(status(json!({"name": "s", "imageRef": "i"})), 400);
        assert_eq!(status(json!({"flavorRef": "1", "imageRef": "i"})), 400);
        assert_eq!(
            status(json!({"name": "", "flavorRef": "1", "imageRef": "i"})),
            400
        );
        assert_eq!(status(json!({"name": "s", "flavorRef": "1"})), 400);
        assert_eq!(
            status(json!({"name": "s", "flavorRef": {}, "imageRef": "i"})),
            400
        );
        for (k, v) in [
            ("user_data", json!("IyEvYmluL3NoCg==")),
            ("personality", json!([])),
            ("config_drive", json!(true)),
            ("accessIPv4", json!("1.2.3.4")),
            ("block_device_mapping", json!([])),
            ("security_groups", json!([{"name": "web"}])),
            ("availability_zone", json!("nova:host1")),
            ("description", json!("2.19+")),
            ("metadata", json!({"k": 1})),
        ] {
            let mut b = json!({"name": "s", "flavorRef": "1", "imageRef": "i"});
            b[k] = v;
            assert_eq!(status(b), 400, "{k}");
        }
        let mut b = json!({"name": "s", "flavorRef": "1", "imageRef": "i",
            "config_drive": "", "security_groups": [{"name": "default"}],
            "availability_zone": "nova", "OS-DCF:diskConfig": "AUTO"});
        let s = spec(b.clone()).unwrap();
        assert_eq!(s.zone.as_deref(), Some("nova"));
        b["availability_zone"] = json!("");
        assert_eq!(spec(b).unwrap().zone, None);
    }

    #[test]
    fn block_device_mappings_are_checked() {
        use crate::compute::plan::blank_gb;
        let with = |bdms: Value, image: &str| json!({"name": "s", "flavorRef": "1", "imageRef": image, "block_device_mapping_v2": bdms});
        // No root at all.
        assert_eq!(status(with(json!([]), "")), 400);
        assert_eq!(
            spec(with(
                json!([{"uuid": "v", "source_type": "volume", "boot_index": 1}]),
                ""
            ))
            .unwrap_err()
            .message,
            BOOT_SEQUENCE
        );
        // Gaps and repeats in the boot sequence.
        assert_eq!(
            status(with(
                json!([
                {"uuid": "a", "source_type": "volume", "boot_index": 0},
                {"uuid": "b", "source_type": "volume", "boot_index": 2}]),
                ""
            )),
            400
        );
        assert_eq!(
            status(with(
                json!([
                {"uuid": "a", "source_type": "volume", "boot_index": 0},
                {"uuid": "b", "source_type": "volume", "boot_index": 0}]),
                ""
            )),
            400
        );
        // imageRef is boot index 0 when no mapping is: a second disk at 1 is fine.
        let s = spec(with(
            json!([{"uuid": "b", "source_type": "volume", "boot_index": 1},
                   {"source_type": "blank", "destination_type": "volume", "volume_size": 2},
                   {"uuid": "c", "source_type": "snapshot", "boot_index": -1}]),
            "img",
        ))
        .unwrap();
        assert!(s.root_bdm().is_none());
        let others: Vec<&Source> = s.other_bdms().iter().map(|b| &b.source).collect();
        assert_eq!(
            others,
            [
                &Source::Volume("b".into()),
                &Source::Blank,
                &Source::Snapshot("c".into())
            ]
        );
        // Malformed items.
        for bad_item in [
            json!({"source_type": "volume", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "blank", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "floppy", "boot_index": 0}),
            json!({"uuid": "x", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "volume", "destination_type": "local", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "image", "destination_type": "volume", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "image", "destination_type": "local", "boot_index": 0}),
            json!({"source_type": "blank", "destination_type": "volume", "boot_index": 0}),
            json!({"uuid": "x", "source_type": "volume", "boot_index": "zero"}),
            json!({"uuid": "x", "source_type": "volume", "boot_index": 0, "volume_size": -1}),
            json!({"uuid": "x", "source_type": "volume", "boot_index": 0, "delete_on_termination": "perhaps"}),
            json!({"uuid": "x", "source_type": "volume", "boot_index": 0, "bogus": 1}),
            json!("not an object"),
        ] {
            assert_eq!(
                status(with(json!([bad_item.clone()]), "")),
                400,
                "{bad_item}"
            );
        }
        // The same volume twice.
        assert_eq!(
            status(with(
                json!([
                {"uuid": "a", "source_type": "volume", "boot_index": 0},
                {"uuid": "a", "source_type": "volume"}]),
                ""
            )),
            400
        );
        // A suppressed device is dropped.
        let s = spec(with(
            json!([{"uuid": "a", "source_type": "volume", "boot_index": 0},
                   {"device_name": "vdb", "no_device": true}]),
            "",
        ))
        .unwrap();
        assert_eq!(s.bdms.len(), 1);
        // OSC's --swap 512 and --ephemeral size=2: MiB for swap, GiB otherwise.
        let s = spec(with(
            json!([{"boot_index": -1, "source_type": "blank", "destination_type": "local",
                    "guest_format": "swap", "volume_size": 512, "delete_on_termination": true},
                   {"boot_index": -1, "source_type": "blank", "destination_type": "local",
                    "delete_on_termination": true, "volume_size": 2},
                   {"boot_index": -1, "source_type": "blank", "destination_type": "local"}]),
            "img",
        ))
        .unwrap();
        let mut flavor = stratus_client::compute::default_flavors()[0].clone();
        flavor.ephemeral_gb = 3;
        let sizes: Vec<u64> = s.bdms.iter().map(|b| blank_gb(b, &flavor)).collect();
        assert_eq!(sizes, [1, 2, 3]);
        assert!(s.bdms.iter().all(|b| b.local));
        // At most 26 disks.
        let many: Vec<Value> = (0..26)
            .map(|i| json!({"uuid": format!("v{i}"), "source_type": "volume"}))
            .collect();
        assert_eq!(status(with(Value::Array(many), "img")), 400);
    }
}
