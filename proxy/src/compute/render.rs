//! Servers, flavors and volume attachments exactly as Nova shows them at microversion 2.1
//! — key for key what tempest's schemas allow (`additionalProperties: false`): a server's
//! detailed view (with the admin-only `OS-EXT-SRV-ATTR:*` keys for admins), the brief list
//! entry (`id`, `links`, `name`), a flavor's brief and detailed views; and Nova's
//! timestamps, both ways.

use serde_json::{json, Value};
use sha2::{Digest, Sha224};
use stratus_client::compute::{Disk, Flavor, Server};

/// Where links point.
pub struct Links {
    /// `http://host/compute/v2.1`
    pub base: String,
    /// `http://host/compute` (Nova's version-less bookmark).
    pub bookmark: String,
}

impl Links {
    /// The links of the API reached at `host_url`.
    pub fn new(host_url: &str) -> Self {
        Self {
            base: format!("{host_url}/compute/v2.1"),
            bookmark: format!("{host_url}/compute"),
        }
    }

    /// The `self` and `bookmark` links of `id` in collection `coll`.
    pub fn of(&self, coll: &str, id: &str) -> Value {
        json!([
            {"href": format!("{}/{coll}/{id}", self.base), "rel": "self"},
            {"href": format!("{}/{coll}/{id}", self.bookmark), "rel": "bookmark"},
        ])
    }

    /// The `bookmark` link alone (how a server names its flavor and image).
    pub fn bookmark(&self, coll: &str, id: &str) -> Value {
        json!([{"href": format!("{}/{coll}/{id}", self.bookmark), "rel": "bookmark"}])
    }
}

/// Nova's `created`/`updated`: `2013-09-23T13:53:12Z`.
pub fn stamp(us: u64) -> String {
    let iso = crate::headers::iso_date(us);
    format!("{}Z", &iso[..19])
}

/// Nova's `OS-SRV-USG:launched_at` and service `updated_at`: `2013-09-23T13:53:12.000000`.
pub fn usg_stamp(us: u64) -> String {
    crate::headers::iso_date(us)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An ISO 8601 time as `changes-since` takes it (`2024-01-02`, `2024-01-02T03:04:05`,
/// with fractions, `Z` or an offset), in microseconds since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, da) * 86_400;
    let mut micros = 0i64;
    if let Some(t) = time {
        // The zone: `Z`, `+HH:MM`, `-HHMM`, or none (UTC, as Nova takes it).
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(at) = t.rfind(['+', '-']) {
            let (c, z) = t.split_at(at);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let z = z[1..].replace(':', "");
            if z.len() != 4 {
                return None;
            }
            (c, sign * (num(&z[..2])? * 3600 + num(&z[2..])? * 60))
        } else {
            (t, 0)
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut it = hms.split(':');
        let h = num(it.next()?)?;
        let mi = num(it.next()?)?;
        let se = it.next().map(num).unwrap_or(Some(0))?;
        if it.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        if !frac.is_empty() {
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits: String = frac.chars().take(6).collect();
            micros = num(&format!("{digits:0<6}"))?;
        }
        secs += h * 3600 + mi * 60 + se - offset;
    }
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// Nova's `hostId`: the SHA-224 of project and host (so one project can tell its servers
/// apart by host without learning host names), `""` while unplaced.
pub fn host_id(project_id: &str, host: Option<&str>) -> String {
    match host {
        Some(h) if !h.is_empty() => {
            let mut d = Sha224::new();
            d.update(project_id.as_bytes());
            d.update(h.as_bytes());
            hex::encode(d.finalize())
        }
        _ => String::new(),
    }
}

/// The guest's name on its host (`OS-EXT-SRV-ATTR:instance_name`: Nova shows the
/// libvirt domain's name): `stratus-<id>`, as the compute agent names its domains
/// (`stratus_compute_agent::domain::domain_name`; the proxy does not link the agent).
pub fn instance_name(id: &str) -> String {
    format!("stratus-{id}")
}

/// A flavor: brief (`id`, `links`, `name`) or detailed, at 2.1 (no `description`,
/// `extra_specs`).
pub fn flavor(links: &Links, f: &Flavor, detail: bool) -> Value {
    let mut doc = json!({
        "id": f.id,
        "name": f.name,
        "links": links.of("flavors", &f.id),
    });
    if detail {
        let extra = json!({
            "ram": f.ram_mb,
            "vcpus": f.vcpus,
            "disk": f.disk_gb,
            "swap": if f.swap_mb == 0 { json!("") } else { json!(f.swap_mb) },
            "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
            "OS-FLV-DISABLED:disabled": f.disabled,
            "os-flavor-access:is_public": f.is_public,
            "rxtx_factor": f.rxtx_factor,
        });
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
    }
    doc
}

/// A server in a brief list: `id`, `links`, `name`.
pub fn server_brief(links: &Links, s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "links": links.of("servers", &s.id)})
}

/// A server's detailed view at 2.1; `admin` adds the `OS-EXT-SRV-ATTR:*` keys.
pub fn server(links: &Links, s: &Server, admin: bool) -> Value {
    let image = match (&s.image_id, s.image_ref) {
        (Some(id), true) => json!({"id": id, "links": links.bookmark("images", id)}),
        _ => json!(""),
    };
    let volumes: Vec<Value> = s.disks.iter().map(|d| json!({"id": d.volume_id})).collect();
    let mut doc = json!({
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "links": links.of("servers", &s.id),
        "addresses": {},
        "image": image,
        "flavor": {"id": s.flavor.id, "links": links.bookmark("flavors", &s.flavor.id)},
        "user_id": s.user_id,
        "tenant_id": s.project_id,
        "created": stamp(s.created_us),
        "updated": stamp(s.updated_us),
        "metadata": s.metadata,
        "hostId": host_id(&s.project_id, s.host.as_deref()),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": s.availability_zone.clone().unwrap_or_default(),
        "OS-EXT-STS:power_state": s.power_state,
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-SRV-USG:launched_at": s.launched_us.map(usg_stamp),
        "OS-SRV-USG:terminated_at": null,
        "accessIPv4": "",
        "accessIPv6": "",
        "config_drive": "",
        "key_name": s.key_name,
        "progress": 0,
        "os-extended-volumes:volumes_attached": volumes,
    });
    if s.status == "ERROR" {
        if let Some(f) = &s.fault {
            doc["fault"] = json!({
                "code": f.code,
                "message": f.message,
                "created": stamp(f.created_us),
            });
        }
    }
    if admin {
        doc["OS-EXT-SRV-ATTR:host"] = json!(s.host);
        doc["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.host);
        doc["OS-EXT-SRV-ATTR:instance_name"] = json!(instance_name(&s.id));
    }
    doc
}

/// A volume attachment at 2.1: `id` (the volume's), `serverId`, `volumeId`, `device`.
pub fn attachment(server_id: &str, d: &Disk) -> Value {
    json!({
        "id": d.volume_id,
        "serverId": server_id,
        "volumeId": d.volume_id,
        "device": format!("/dev/{}", d.device),
    })
}

/// A server fresh from `POST /servers`, for the compute API's tests.
#[cfg(test)]
pub(crate) fn test_server() -> Server {
    use stratus_client::compute::{default_flavors, Want};
    Server {
        v: 1,
        id: "0123abcd-0000-4000-8000-000000000000".into(),
        name: "s1".into(),
        project_id: "p1".into(),
        user_id: "u1".into(),
        flavor: default_flavors()[0].clone(),
        image_id: Some("img".into()),
        image_ref: true,
        created_us: 1_700_000_000_000_000,
        updated_us: 1_700_000_001_000_000,
        launched_us: None,
        metadata: Default::default(),
        key_name: None,
        availability_zone: None,
        host: None,
        want: Want::Active,
        reboot_seq: 0,
        reboot_done: 0,
        reboot_hard: false,
        status: "BUILD".into(),
        vm_state: "building".into(),
        task_state: Some("scheduling".into()),
        power_state: 0,
        fault: None,
        disks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use stratus_client::compute::{default_flavors, Fault};

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// What tempest's 2.1 server schema requires, and the optional keys Stratus shows.
    const SERVER_KEYS: &[&str] = &[
        "id",
        "name",
        "status",
        "links",
        "addresses",
        "image",
        "flavor",
        "user_id",
        "tenant_id",
        "created",
        "updated",
        "metadata",
        "hostId",
        "OS-DCF:diskConfig",
        "OS-EXT-AZ:availability_zone",
        "OS-EXT-STS:power_state",
        "OS-EXT-STS:task_state",
        "OS-EXT-STS:vm_state",
        "OS-SRV-USG:launched_at",
        "OS-SRV-USG:terminated_at",
        "accessIPv4",
        "accessIPv6",
        "config_drive",
        "key_name",
        "progress",
        "os-extended-volumes:volumes_attached",
    ];

    #[test]
    fn a_server_has_exactly_the_2_1_keys() {
        let l = Links::new("http://h");
        let mut s = test_server();
        let doc = server(&l, &s, false);
        let want: BTreeSet<String> = SERVER_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys(&doc), want);
        assert_eq!(doc["hostId"], "");
        assert_eq!(doc["OS-EXT-AZ:availability_zone"], "");
        assert_eq!(doc["OS-SRV-USG:launched_at"], Value::Null);
        assert_eq!(doc["image"]["id"], "img");
        assert_eq!(
            doc["image"]["links"][0]["href"],
            "http://h/compute/images/img"
        );
        assert_eq!(doc["flavor"]["id"], "1");
        assert_eq!(doc["flavor"]["links"][0]["rel"], "bookmark");
        assert_eq!(
            doc["links"][0]["href"],
            format!("http://h/compute/v2.1/servers/{}", s.id)
        );
        assert_eq!(doc["created"], "2023-11-14T22:13:20Z");

        // Placed, in error, booted from a volume, seen by an admin.
        s.host = Some("node1".into());
        s.image_ref = false;
        s.status = "ERROR".into();
        s.launched_us = Some(1_700_000_002_000_000);
        s.fault = Some(Fault {
            code: 500,
            message: "No valid host was found. ".into(),
            created_us: 1_700_000_003_000_000,
        });
        s.disks.push(Disk {
            volume_id: "v1".into(),
            device: "vda".into(),
            boot_index: Some(0),
            delete_on_termination: false,
            state: "attached".into(),
            attachment_id: "a".into(),
        });
        let doc = server(&l, &s, true);
        let mut want = want;
        for k in [
            "fault",
            "OS-EXT-SRV-ATTR:host",
            "OS-EXT-SRV-ATTR:hypervisor_hostname",
            "OS-EXT-SRV-ATTR:instance_name",
        ] {
            want.insert(k.to_string());
        }
        assert_eq!(keys(&doc), want);
        assert_eq!(doc["image"], "");
        assert_eq!(doc["hostId"].as_str().unwrap().len(), 56);
        assert_eq!(
            doc["OS-EXT-SRV-ATTR:instance_name"],
            format!("stratus-{}", s.id)
        );
        assert_eq!(
            doc["os-extended-volumes:volumes_attached"],
            json!([{"id": "v1"}])
        );
        assert_eq!(keys(&doc["fault"]).len(), 3);
        assert_eq!(doc["OS-SRV-USG:launched_at"], "2023-11-14T22:13:22.000000");

        let brief = server_brief(&l, &s);
        assert_eq!(keys(&brief).len(), 3);
        let att = attachment(&s.id, &s.disks[0]);
        assert_eq!(
            keys(&att),
            ["device", "id", "serverId", "volumeId"]
                .iter()
                .map(|k| k.to_string())
                .collect()
        );
        assert_eq!(att["device"], "/dev/vda");
    }

    #[test]
    fn host_id_is_nova_s_sha224_of_project_and_host() {
        // hashlib.sha224(b"p1node1").hexdigest()
        assert_eq!(
            host_id("p1", Some("node1")),
            hex::encode(Sha224::digest(b"p1node1"))
        );
        assert_ne!(host_id("p2", Some("node1")), host_id("p1", Some("node1")));
        assert_eq!(host_id("p1", None), "");
    }

    #[test]
    fn a_flavor_has_exactly_the_2_1_keys() {
        let l = Links::new("http://h");
        let mut f = default_flavors()[1].clone();
        let brief = flavor(&l, &f, false);
        assert_eq!(keys(&brief).len(), 3);
        let doc = flavor(&l, &f, true);
        let want: BTreeSet<String> = [
            "id",
            "name",
            "links",
            "ram",
            "vcpus",
            "disk",
            "swap",
            "OS-FLV-EXT-DATA:ephemeral",
            "OS-FLV-DISABLED:disabled",
            "os-flavor-access:is_public",
            "rxtx_factor",
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        assert_eq!(keys(&doc), want);
        assert_eq!(doc["swap"], "");
        assert_eq!(doc["ram"], 512);
        assert_eq!(doc["links"][1]["href"], "http://h/compute/flavors/2");
        f.swap_mb = 512;
        assert_eq!(flavor(&l, &f, true)["swap"], 512);
    }

    #[test]
    fn times_parse_as_changes_since_sends_them() {
        let t = 1_700_000_000_000_000;
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(parse_time("2023-11-14T22:13:20"), Some(t));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Some(t + 500_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.000000+00:00"), Some(t));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Some(t));
        assert_eq!(parse_time("2023-11-14T21:13:20-0100"), Some(t));
        assert_eq!(parse_time("2023-11-14T22:13Z"), Some(t - 20_000_000));
        assert_eq!(parse_time("1970-01-01"), Some(0));
        for bad in [
            "",
            "yesterday",
            "2023-13-01",
            "2023-11-14T25:00:00",
            "2023-11",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(stamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(parse_time(&stamp(t)), Some(t));
    }
}
