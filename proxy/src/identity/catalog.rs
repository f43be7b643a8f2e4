//! The service catalog: what this cloud serves, where, for a project. Every API shares the
//! proxy's port under DevStack-style prefixes, so the catalog is built from the address the
//! client used; region `RegionOne`, interfaces `public`, `internal` and `admin`.
//!
//! Services appear here as they are built: identity, image, block-storage (also under its
//! older type `volumev3`, same URL), compute and object-store today. No `network` entry: clients
//! change behaviour when one is present.

use serde_json::{json, Value};

/// The one region.
pub const REGION: &str = "RegionOne";
const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

/// One service: type, name, and its URL under the proxy (`{project_id}` is replaced).
pub struct Service {
    pub kind: &'static str,
    pub name: &'static str,
    pub path: &'static str,
}

/// What this cloud serves.
pub const SERVICES: &[Service] = &[
    Service {
        kind: "identity",
        name: "keystone",
        path: "/identity",
    },
    Service {
        kind: "image",
        name: "glance",
        path: "/image",
    },
    Service {
        kind: "block-storage",
        name: "cinder",
        path: "/volume/v3/{project_id}",
    },
    Service {
        kind: "volumev3",
        name: "cinderv3",
        path: "/volume/v3/{project_id}",
    },
    Service {
        kind: "compute",
        name: "nova",
        path: "/compute/v2.1",
    },
    Service {
        kind: "object-store",
        name: "swift",
        path: "/v1/AUTH_{project_id}",
    },
];

/// A stable id for a service or an endpoint (the same on every proxy).
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// The endpoint URL of `s` for `project_id` (`None` if it needs one and there is none).
pub fn url(host_url: &str, s: &Service, project_id: Option<&str>) -> Option<String> {
    if s.path.contains("{project_id}") {
        let p = project_id?;
        return Some(format!("{host_url}{}", s.path.replace("{project_id}", p)));
    }
    Some(format!("{host_url}{}", s.path))
}

/// The catalog of a token scoped to `project_id` (or to none).
pub fn catalog(host_url: &str, project_id: Option<&str>) -> Value {
    let entries: Vec<Value> = SERVICES
        .iter()
        .filter_map(|s| {
            let url = url(host_url, s, project_id)?;
            let endpoints: Vec<Value> = INTERFACES
                .iter()
                .map(|i| {
                    json!({
                        "id": stable_id(&[s.kind, i]),
                        "interface": i,
                        "region": REGION,
                        "region_id": REGION,
                        "url": url,
                    })
                })
                .collect();
            Some(json!({
                "type": s.kind,
                "name": s.name,
                "id": stable_id(&[s.kind]),
                "endpoints": endpoints,
            }))
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_scoped_services_need_a_project() {
        let c = catalog("http://h", Some("p1"));
        let types: Vec<&str> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "identity",
                "image",
                "block-storage",
                "volumev3",
                "compute",
                "object-store"
            ]
        );
        assert_eq!(c[2]["endpoints"][0]["url"], "http://h/volume/v3/p1");
        assert_eq!(c[3]["endpoints"][0]["url"], "http://h/volume/v3/p1");
        assert_ne!(c[2]["id"], c[3]["id"]);
        assert_eq!(c[4]["endpoints"][0]["url"], "http://h/compute/v2.1");
        assert_eq!(c[4]["name"], "nova");
        assert_eq!(c[4]["endpoints"].as_array().unwrap().len(), 3);
        assert_eq!(c[5]["endpoints"][0]["url"], "http://h/v1/AUTH_p1");
        assert_eq!(c[5]["endpoints"].as_array().unwrap().len(), 3);
        let unscoped = catalog("http://h", None);
        assert_eq!(unscoped.as_array().unwrap().len(), 3);
        assert!(!types.contains(&"network"));
    }
}
