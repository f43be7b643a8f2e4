//! The small read-only resources `openstack` asks for: availability zones, limits,
//! hypervisors and their statistics, compute services, key pairs. All come from the host
//! records the agents write and the reservations the scheduler keeps
//! ([`stratus_client::compute`]).
//!
//! Hypervisors and services have integer ids at 2.1; Stratus derives a stable one from
//! the host's name ([`host_number`]), the same on every proxy.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{json, Value};
use stratus_client::compute::{now_us, Host, Usage};

use super::render::usg_stamp;
use super::{not_found, NovaResult, Req};
use crate::openstack::json_response;

/// Absolute limits shown by `GET /limits` (nothing enforces them: generous numbers).
const MAX_INSTANCES: u64 = 1000;
const MAX_CORES: u64 = 4000;
const MAX_RAM_MB: u64 = 8 * 1024 * 1024;

/// The 31-bit id of host `name` (hypervisor and service ids are integers at 2.1).
pub fn host_number(name: &str) -> u32 {
    let h = blake3::hash(name.as_bytes());
    let b = h.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7FFF_FFFF
}

/// `GET /os-availability-zone[/detail]`: the hosts' zones (available while one of their
/// hosts is enabled and up); `nova` when no host is registered. The detail (admins) lists
/// each zone's hosts with their `nova-compute` service.
pub(super) async fn zones(r: &Req<'_>, detail: bool) -> NovaResult {
    if detail {
        r.admin_only("os_compute_api:os-availability-zone:detail")?;
    }
    let now = now_us();
    let mut hosts = r.compute().hosts.list().await?;
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut by_zone: BTreeMap<String, Vec<Host>> = BTreeMap::new();
    for h in hosts {
        by_zone
            .entry(h.availability_zone.clone())
            .or_default()
            .push(h);
    }
    if by_zone.is_empty() {
        by_zone.insert("nova".into(), Vec::new());
    }
    let zones: Vec<Value> = by_zone
        .iter()
        .map(|(zone, hosts)| {
            let available = hosts.is_empty() || hosts.iter().any(|h| h.enabled && h.up(now));
            let hosts_doc = if detail && !hosts.is_empty() {
                let m: serde_json::Map<String, Value> = hosts
                    .iter()
                    .map(|h| {
                        let svc = json!({"nova-compute": {
                            "available": h.enabled && h.up(now),
                            "active": h.enabled,
                            "updated_at": usg_stamp(h.heartbeat_us),
                        }});
                        (h.name.clone(), svc)
                    })
                    .collect();
                Value::Object(m)
            } else {
                Value::Null
            };
            json!({
                "zoneName": zone,
                "zoneState": {"available": available},
                "hosts": hosts_doc,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"availabilityZoneInfo": zones}),
    ))
}

/// `GET /limits`: Nova's 2.1 absolute limits, with what the project uses (`tenant_id`:
/// another project's, for admins).
pub(super) async fn limits(r: &Req<'_>) -> NovaResult {
    let project = match r.query.get("tenant_id") {
        Some(p) if r.is_admin() => p.to_string(),
        _ => r.project.clone(),
    };
    let servers = r.compute().servers.list().await?;
    let mine: Vec<_> = servers.iter().filter(|s| s.project_id == project).collect();
    let cores: u64 = mine.iter().map(|s| s.flavor.vcpus).sum();
    let ram: u64 = mine.iter().map(|s| s.flavor.ram_mb).sum();
    let doc = json!({"limits": {
        "rate": [],
        "absolute": {
            "maxServerMeta": super::params::MAX_METADATA,
            "maxPersonality": 5,
            "maxPersonalitySize": 10240,
            "maxImageMeta": 128,
            "maxTotalKeypairs": 100,
            "maxSecurityGroupRules": 20,
            "maxSecurityGroups": 10,
            "maxTotalFloatingIps": 10,
            "maxTotalInstances": MAX_INSTANCES,
            "maxTotalCores": MAX_CORES,
            "maxTotalRAMSize": MAX_RAM_MB,
            "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalCoresUsed": cores,
            "totalInstancesUsed": mine.len(),
            "totalRAMUsed": ram,
            "totalSecurityGroupsUsed": 0,
            "totalFloatingIpsUsed": 0,
            "totalServerGroupsUsed": 0,
        },
    }});
    Ok(json_response(StatusCode::OK, &doc))
}

/// libvirt's version as Nova's integer (`9.0.0` → 9000000).
fn version_number(v: &str) -> u64 {
    v.split('.')
        .take(3)
        .map(|p| p.parse::<u64>().unwrap_or(0))
        .chain(std::iter::repeat(0))
        .take(3)
        .fold(0, |a, p| a * 1000 + p)
}

/// The host part of an agent's URL (`http://10.0.0.5:8990` → `10.0.0.5`).
fn host_ip(http: &str) -> String {
    let rest = http.split_once("://").map_or(http, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
        None => authority.split(':').next().unwrap_or("").to_string(),
    }
}

/// A hypervisor: brief (`id`, name, state, status) or detailed (capacity and use).
pub fn hypervisor(h: &Host, u: &Usage, now: u64, detail: bool) -> Value {
    let id = host_number(&h.name);
    let mut doc = json!({
        "id": id,
        "hypervisor_hostname": h.name,
        "state": if h.up(now) { "up" } else { "down" },
        "status": if h.enabled { "enabled" } else { "disabled" },
    });
    if detail {
        let used = u.total();
        let extra = json!({
            "vcpus": h.vcpus,
            "memory_mb": h.ram_mb,
            "local_gb": h.disk_gb,
            "vcpus_used": used.vcpus,
            "memory_mb_used": used.ram_mb,
            "local_gb_used": used.disk_gb,
            "free_ram_mb": h.ram_mb as i64 - used.ram_mb as i64,
            "free_disk_gb": h.disk_gb as i64 - used.disk_gb as i64,
            "disk_available_least": h.disk_gb as i64 - used.disk_gb as i64,
            "hypervisor_type": h.hypervisor_type,
            "hypervisor_version": version_number(&h.libvirt_version),
            "current_workload": 0,
            "running_vms": u.servers.len(),
            "host_ip": host_ip(&h.http),
            "cpu_info": json!({"arch": "x86_64", "virt_type": h.virt_type}).to_string(),
            "service": {"host": h.name, "id": id, "disabled_reason": null},
        });
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
    }
    doc
}

/// `GET /os-hypervisors[/detail]` (admins).
pub(super) async fn hypervisors(r: &Req<'_>, detail: bool) -> NovaResult {
    r.admin_only("os_compute_api:os-hypervisors:list")?;
    let now = now_us();
    let mut hosts = r.compute().hosts_with_usage().await?;
    hosts.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let items: Vec<Value> = hosts
        .iter()
        .map(|(h, u)| hypervisor(h, u, now, detail))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"hypervisors": items}),
    ))
}

/// `GET /os-hypervisors/{id}` (admins): one, detailed.
pub(super) async fn hypervisor_show(r: &Req<'_>, id: &str) -> NovaResult {
    r.admin_only("os_compute_api:os-hypervisors:show")?;
    let hosts = r.compute().hosts_with_usage().await?;
    let found = hosts
        .iter()
        .find(|(h, _)| host_number(&h.name).to_string() == id || h.name == id);
    match found {
        Some((h, u)) => Ok(json_response(
            StatusCode::OK,
            &json!({"hypervisor": hypervisor(h, u, now_us(), true)}),
        )),
        None => Err(not_found(format!(
            "Hypervisor with ID {id} could not be found."
        ))),
    }
}

/// `GET /os-hypervisors/statistics` (admins): the sums over every host.
pub(super) async fn hypervisor_statistics(r: &Req<'_>) -> NovaResult {
    r.admin_only("os_compute_api:os-hypervisors:statistics")?;
    let hosts = r.compute().hosts_with_usage().await?;
    let (mut vcpus, mut ram, mut disk, mut vu, mut ru, mut du, mut vms) = (0, 0, 0, 0, 0, 0, 0);
    for (h, u) in &hosts {
        let t = u.total();
        vcpus += h.vcpus;
        ram += h.ram_mb;
        disk += h.disk_gb;
        vu += t.vcpus;
        ru += t.ram_mb;
        du += t.disk_gb;
        vms += u.servers.len();
    }
    let doc = json!({"hypervisor_statistics": {
        "count": hosts.len(),
        "vcpus": vcpus,
        "memory_mb": ram,
        "local_gb": disk,
        "vcpus_used": vu,
        "memory_mb_used": ru,
        "local_gb_used": du,
        "free_ram_mb": ram as i64 - ru as i64,
        "free_disk_gb": disk as i64 - du as i64,
        "disk_available_least": disk as i64 - du as i64,
        "current_workload": 0,
        "running_vms": vms,
    }});
    Ok(json_response(StatusCode::OK, &doc))
}

/// `GET /os-services` (admins): a `nova-compute` service per host (`host` and `binary`
/// filter).
pub(super) async fn services(r: &Req<'_>) -> NovaResult {
    r.admin_only("os_compute_api:os-services:list")?;
    let now = now_us();
    let mut hosts = r.compute().hosts.list().await?;
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let binary = r.query.get("binary");
    let host = r.query.get("host");
    let items: Vec<Value> = hosts
        .iter()
        .filter(|h| host.is_none_or(|x| x == h.name))
        .filter(|_| binary.is_none_or(|b| b == "nova-compute"))
        .map(|h| {
            json!({
                "id": host_number(&h.name),
                "binary": "nova-compute",
                "host": h.name,
                "zone": h.availability_zone,
                "status": if h.enabled { "enabled" } else { "disabled" },
                "state": if h.up(now) { "up" } else { "down" },
                "updated_at": usg_stamp(h.heartbeat_us),
                "disabled_reason": null,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"services": items})))
}

/// `GET /os-keypairs`: none (key pairs are not kept yet).
pub(super) async fn keypairs(_r: &Req<'_>) -> NovaResult {
    Ok(json_response(StatusCode::OK, &json!({"keypairs": []})))
}

#[cfg(test)]
mod tests {
    use stratus_client::compute::{Take, HOST_DOWN_US};

    use super::*;

    fn host(name: &str, beat: u64) -> Host {
        Host {
            v: 1,
            name: name.into(),
            vcpus: 4,
            ram_mb: 8192,
            disk_gb: 100,
            hypervisor_type: "QEMU".into(),
            virt_type: "kvm".into(),
            kvm_note: None,
            availability_zone: "nova".into(),
            enabled: true,
            http: "http://10.0.0.5:8990".into(),
            started_us: 0,
            heartbeat_us: beat,
            libvirt_version: "9.0.0".into(),
        }
    }

    #[test]
    fn a_hypervisor_shows_capacity_use_and_liveness() {
        let now = 10 * HOST_DOWN_US;
        let mut u = Usage {
            v: 1,
            host: "h1".into(),
            servers: Default::default(),
        };
        u.servers.insert(
            "s".into(),
            Take {
                vcpus: 1,
                ram_mb: 512,
                disk_gb: 1,
            },
        );
        let doc = hypervisor(&host("h1", now), &u, now, true);
        assert_eq!(doc["state"], "up");
        assert_eq!(doc["status"], "enabled");
        assert_eq!(doc["memory_mb_used"], 512);
        assert_eq!(doc["free_ram_mb"], 8192 - 512);
        assert_eq!(doc["running_vms"], 1);
        assert_eq!(doc["hypervisor_type"], "QEMU");
        assert_eq!(doc["hypervisor_version"], 9_000_000);
        assert_eq!(doc["host_ip"], "10.0.0.5");
        assert!(doc["cpu_info"].is_string());
        assert_eq!(doc["id"], doc["service"]["id"]);
        let brief = hypervisor(&host("h1", 0), &u, now, false);
        assert_eq!(brief.as_object().unwrap().len(), 4);
        assert_eq!(brief["state"], "down");
        assert_eq!(host_number("h1"), host_number("h1"));
        assert_ne!(host_number("h1"), host_number("h2"));
        assert!(host_number("h1") <= 0x7FFF_FFFF);
    }

    #[test]
    fn versions_and_addresses() {
        assert_eq!(version_number("10.1.2"), 10_001_002);
        assert_eq!(version_number(""), 0);
        assert_eq!(host_ip("http://[::1]:80/x"), "::1");
        assert_eq!(host_ip("http://node1"), "node1");
    }
}
