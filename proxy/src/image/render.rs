//! An image as Glance v2 shows it, and the JSON schemas of `/v2/schemas/image(s)`.

use serde_json::{json, Map, Value};
use stratus_client::images::Image;

/// Glance's timestamps: `2014-05-05T17:15:10Z`.
pub fn stamp(us: u64) -> String {
    let iso = crate::headers::iso_date(us);
    format!("{}Z", iso.split('.').next().unwrap_or(&iso))
}

/// The image document.
pub fn image(i: &Image) -> Value {
    let mut m: Map<String, Value> = i.properties.clone();
    let core = json!({
        "id": i.id,
        "name": i.name,
        "status": i.status,
        "visibility": i.visibility,
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo,
        "os_hash_value": i.os_hash_value,
        "size": i.size,
        "virtual_size": i.virtual_size,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "owner": i.owner,
        "tags": i.tags,
        "created_at": stamp(i.created_us),
        "updated_at": stamp(i.updated_us),
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(c) = core {
        m.extend(c);
    }
    Value::Object(m)
}

/// Accepted `disk_format` values.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
/// Accepted `container_format` values.
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
/// Accepted `visibility` values.
pub const VISIBILITIES: &[&str] = &["public", "private", "shared", "community"];

/// `GET /v2/schemas/image`.
pub fn image_schema() -> Value {
    let s = |t: &str, d: &str| json!({"type": t, "description": d});
    let n = |d: &str| json!({"type": ["null", "string"], "readOnly": true, "description": d});
    json!({
        "name": "image",
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$", "description": "An identifier for the image"},
            "name": {"type": ["null", "string"], "maxLength": 255, "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": true, "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"], "description": "Status of the image"},
            "visibility": {"type": "string", "enum": VISIBILITIES, "description": "Scope of image accessibility"},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": n("md5 hash of image contents."),
            "os_hash_algo": n("Algorithm to calculate the os_hash_value"),
            "os_hash_value": n("Hexdigest of the image contents using the algorithm specified by the os_hash_algo"),
            "owner": {"type": ["null", "string"], "maxLength": 255, "description": "Owner of the image"},
            "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"], "description": "Format of the container"},
            "disk_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"], "description": "Format of the disk"},
            "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}, "description": "List of strings related to the image"},
            "min_ram": s("integer", "Amount of ram (in MB) required to boot image."),
            "min_disk": s("integer", "Amount of disk space (in GB) required to boot image."),
            "self": {"type": "string", "readOnly": true, "description": "An image self url"},
            "file": {"type": "string", "readOnly": true, "description": "An image file url"},
            "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `GET /v2/schemas/images`.
pub fn images_schema() -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}
