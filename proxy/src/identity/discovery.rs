//! Version discovery documents, in OpenStack's exact formats. `GET /identity` answers 300
//! with the list of versions (what keystoneauth and tempest read first); `GET
//! /identity/v3` answers 200 with the one version.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, KsResult};

/// Keystone's v3 version entry.
pub fn identity_v3(host_url: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{host_url}/identity/v3/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json",
        }],
    })
}

/// `GET /identity`: 300 Multiple Choices.
pub fn versions(host_url: &str, _head: bool) -> KsResult<Response> {
    Ok(json_response(
        StatusCode::MULTIPLE_CHOICES,
        &json!({"versions": {"values": [identity_v3(host_url)]}}),
    ))
}

/// `GET /identity/v3`: 200.
pub fn v3(host_url: &str) -> KsResult<Response> {
    Ok(json_response(
        StatusCode::OK,
        &json!({"version": identity_v3(host_url)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v3_entry_has_what_clients_read() {
        let v = identity_v3("http://h:1");
        for k in ["id", "status", "updated", "links", "media-types"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["links"][0]["href"], "http://h:1/identity/v3/");
    }
}
