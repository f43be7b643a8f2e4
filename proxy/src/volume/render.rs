//! Volumes and snapshots as Cinder v3 shows them at microversion 3.0, key for key what
//! tempest's schemas allow (`additionalProperties: false`): the detailed view of show and
//! list, the narrower one of create and update (without the `os-vol-*` extension keys and
//! `volume_image_metadata`), the brief list entry (`id`, `links`, `name`), and snapshots'
//! summary and detailed views.

use serde_json::{json, Value};
use stratus_client::volumes::{Snapshot, Volume};

/// Where links point.
pub struct Links {
    /// `http://host/volume/v3/{project_id}`
    pub base: String,
    /// `http://host/volume/{project_id}` (Cinder's version-less bookmark).
    pub bookmark: String,
}

impl Links {
    /// The `self` and `bookmark` links of `id` in collection `coll`.
    pub fn of(&self, coll: &str, id: &str) -> Value {
        json!([
            {"href": format!("{}/{coll}/{id}", self.base), "rel": "self"},
            {"href": format!("{}/{coll}/{id}", self.bookmark), "rel": "bookmark"},
        ])
    }
}

/// Cinder's timestamps: `2018-11-28T06:21:12.715987`.
pub fn stamp(us: u64) -> String {
    crate::headers::iso_date(us)
}

/// Which view of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Show and list detail: with the tenant attribute and the image's metadata.
    Detail,
    /// Create (202) and update answers.
    Change,
}

/// A volume's attachments, in Cinder's legacy form (`id` is the volume's).
fn attachments(v: &Volume) -> Value {
    v.attachments
        .iter()
        .map(|a| {
            json!({
                "server_id": a.server_id,
                "attachment_id": a.id,
                "attached_at": stamp(a.attached_us),
                "host_name": a.host_name,
                "volume_id": v.id,
                "device": a.device,
                "id": v.id,
            })
        })
        .collect()
}

/// The volume document.
pub fn volume(links: &Links, v: &Volume, view: View) -> Value {
    let mut doc = json!({
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "status": v.status,
        "size": v.size_gb,
        "availability_zone": v.availability_zone,
        "created_at": stamp(v.created_us),
        "updated_at": stamp(v.updated_us),
        "attachments": attachments(v),
        "volume_type": v.volume_type,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "metadata": v.metadata,
        "links": links.of("volumes", &v.id),
        "user_id": v.user_id,
        "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": false,
        "replication_status": null,
        "consistencygroup_id": null,
        "multiattach": false,
    });
    if view == View::Detail {
        doc["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
        if let Some(image) = &v.image_id {
            doc["volume_image_metadata"] = json!({"image_id": image});
        }
    }
    doc
}

/// A volume in `GET /volumes`: `id`, `links`, `name`.
pub fn volume_brief(links: &Links, v: &Volume) -> Value {
    json!({"id": v.id, "links": links.of("volumes", &v.id), "name": v.name})
}

/// The snapshot document: the summary of create, update and `GET /snapshots`, or with
/// `detail` (show, `GET /snapshots/detail`) the extended attributes too.
pub fn snapshot(s: &Snapshot, detail: bool) -> Value {
    let mut doc = json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "status": s.status,
        "size": s.size_gb,
        "metadata": s.metadata,
        "created_at": stamp(s.created_us),
        "updated_at": stamp(s.updated_us),
    });
    if detail {
        let progress = if s.status == "available" {
            "100%"
        } else {
            "0%"
        };
        doc["os-extended-snapshot-attributes:progress"] = json!(progress);
        doc["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_client::volumes::Attachment;

    fn sample() -> Volume {
        serde_json::from_value(json!({
            "id": "3b0f7d6e-4f43-4a4b-9f0e-2f6d1c1b2a10", "name": "v1", "description": null,
            "size_gb": 2, "status": "in-use", "project_id": "p1", "user_id": "u1",
            "created_us": 1_700_000_000_000_000u64, "updated_us": 1_700_000_000_500_000u64,
            "availability_zone": "nova", "volume_type": "__DEFAULT__", "bootable": true,
            "image_id": "img", "snapshot_id": null, "source_volid": null,
            "root": "x", "parent": null, "epoch": 0, "writer": null, "snap_seq": 0,
        }))
        .unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn volume_views_have_exactly_the_keys_of_microversion_3_0() {
        let links = Links {
            base: "http://h/volume/v3/p1".into(),
            bookmark: "http://h/volume/p1".into(),
        };
        let mut v = sample();
        v.attachments.push(Attachment {
            id: "a1".into(),
            server_id: Some("s1".into()),
            host_name: None,
            device: Some("/dev/vdb".into()),
            attached_us: 1_700_000_001_000_000,
        });
        let required = [
            "attachments",
            "availability_zone",
            "bootable",
            "consistencygroup_id",
            "created_at",
            "description",
            "encrypted",
            "id",
            "links",
            "metadata",
            "multiattach",
            "name",
            "replication_status",
            "size",
            "snapshot_id",
            "source_volid",
            "status",
            "updated_at",
            "user_id",
            "volume_type",
        ];
        let change = volume(&links, &v, View::Change);
        assert_eq!(keys(&change), required);
        let detail = volume(&links, &v, View::Detail);
        let mut want: Vec<&str> = required.to_vec();
        want.extend(["os-vol-tenant-attr:tenant_id", "volume_image_metadata"]);
        want.sort();
        assert_eq!(keys(&detail), want);
        assert_eq!(detail["bootable"], "true");
        assert_eq!(detail["created_at"], "2023-11-14T22:13:20.000000");
        assert_eq!(
            detail["links"][0]["href"],
            "http://h/volume/v3/p1/volumes/3b0f7d6e-4f43-4a4b-9f0e-2f6d1c1b2a10"
        );
        let a = &detail["attachments"][0];
        assert_eq!(
            keys(a),
            [
                "attached_at",
                "attachment_id",
                "device",
                "host_name",
                "id",
                "server_id",
                "volume_id"
            ]
        );
        assert_eq!(a["id"], v.id.as_str());
        assert_eq!(keys(&volume_brief(&links, &v)), ["id", "links", "name"]);
    }

    #[test]
    fn snapshot_views_differ_by_the_extended_attributes() {
        let s: Snapshot = serde_json::from_value(json!({
            "id": "s", "volume_id": "v", "seq": 1, "name": "s1", "description": null,
            "status": "available", "size_gb": 1, "project_id": "p1",
            "created_us": 0, "updated_us": 0,
        }))
        .unwrap();
        let summary = [
            "created_at",
            "description",
            "id",
            "metadata",
            "name",
            "size",
            "status",
            "updated_at",
            "volume_id",
        ];
        assert_eq!(keys(&snapshot(&s, false)), summary);
        let detail = snapshot(&s, true);
        assert_eq!(keys(&detail).len(), summary.len() + 2);
        assert_eq!(detail["os-extended-snapshot-attributes:progress"], "100%");
        assert_eq!(detail["os-extended-snapshot-attributes:project_id"], "p1");
    }
}
