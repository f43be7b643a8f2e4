//! Servers: list (brief and detailed, with Nova's filters and paging), show, rename,
//! delete, metadata, and addresses (always none: there is no network).
//!
//! # List filters
//! `name` (a regular expression searched in the name, see [`super::pattern`]), `status`,
//! `image`, `flavor` (ids or URLs), `changes-since` (updated at or after), `host`
//! (admins), `deleted` (`false` is what every list is; `true` lists nothing: deleted
//! servers are not kept), `all_tenants` (admins: every project's, narrowed by
//! `project_id`/`tenant_id`; 403 for others, as Nova's policy answers). Unknown filters
//! are ignored. Newest first; `limit` and `marker` page, `servers_links` points on.
//!
//! # Delete
//! `DELETE` marks the server `want: deleted`. Who finishes it:
//! - the agent of its host (task `deleting`): it tears the guest down and retires the
//!   record ([`stratus_client::compute::retire`]);
//! - this API at once when nothing runs the server — it was never placed (an `ERROR`
//!   before placement), or its host's agent is gone or has not been heard from for
//!   [`stratus_client::compute::HOST_DOWN_US`] (Nova's "local delete"; an agent that comes
//!   back finds the record gone and removes the guest), or its build stalled for
//!   [`STALE_BUILD_US`] (the proxy running it died);
//! - the build task, while the server is still being built (it sees the mark between
//!   steps).

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stratus_client::compute::{now_us, retire, Server, Want};

use super::build::{BLOCK_DEVICE_MAPPING, SCHEDULING, VOLUME_WAIT};
use super::params::{self, id_of, next_link, parse_bool, Paging};
use super::pattern::NameFilter;
use super::{bad, conflict, forbidden, invalid, not_found, render, NovaError, NovaResult, Req};
use crate::names::Query;
use crate::openstack::{empty, json_response};

/// A build not heard from for this long lost its proxy: a delete retires the server.
pub const STALE_BUILD_US: u64 = 3 * VOLUME_WAIT.as_micros() as u64;

/// Whether the proxy's build task still has the server (placement or disks).
pub fn building(s: &Server) -> bool {
    matches!(
        s.task_state.as_deref(),
        Some(SCHEDULING | BLOCK_DEVICE_MAPPING)
    )
}

/// The list filters, parsed.
#[derive(Debug, Default)]
pub struct Filters {
    /// `None`: every project's (admins with `all_tenants`).
    pub project: Option<String>,
    pub name: Option<NameFilter>,
    pub status: Option<String>,
    pub image: Option<String>,
    pub flavor: Option<String>,
    pub changes_since: Option<u64>,
    pub host: Option<String>,
    /// `deleted=true`: nothing (deleted servers are not kept).
    pub deleted: bool,
}

impl Filters {
    /// Reads the filters of a list by a caller of `project` (`admin`: may ask for all).
    pub fn parse(q: &Query, project: &str, admin: bool, detail: bool) -> NovaResult<Self> {
        let all = match q.get("all_tenants") {
            None => false,
            // Present without a value enables it (Nova's `is_all_tenants`).
            Some("") => true,
            Some(v) => {
                parse_bool(v).ok_or_else(|| bad(format!("Invalid all_tenants value: {v}")))?
            }
        };
        if all && !admin {
            return Err(forbidden(if detail {
                "os_compute_api:servers:detail:get_all_tenants"
            } else {
                "os_compute_api:servers:index:get_all_tenants"
            }));
        }
        let project = if all {
            q.get("project_id")
                .or_else(|| q.get("tenant_id"))
                .map(str::to_string)
        } else {
            Some(project.to_string())
        };
        let changes_since = q
            .get("changes-since")
            .map(|v| {
                render::parse_time(v).ok_or_else(|| bad("Invalid filter field: changes-since."))
            })
            .transpose()?;
        let deleted = q
            .get("deleted")
            .is_some_and(|v| parse_bool(v).unwrap_or(false));
        Ok(Self {
            project,
            name: q.get("name").map(NameFilter::new),
            status: q.get("status").map(str::to_ascii_uppercase),
            image: q.get("image").map(|v| id_of(v).to_string()),
            flavor: q.get("flavor").map(|v| id_of(v).to_string()),
            changes_since,
            host: q.get("host").filter(|_| admin).map(str::to_string),
            deleted,
        })
    }

    /// Whether `s` passes every filter.
    pub fn keeps(&self, s: &Server) -> bool {
        !self.deleted
            && self.project.as_ref().is_none_or(|p| *p == s.project_id)
            && self.name.as_ref().is_none_or(|n| n.is_match(&s.name))
            && self.status.as_ref().is_none_or(|st| *st == s.status)
            && self
                .image
                .as_ref()
                .is_none_or(|i| s.image_id.as_ref() == Some(i))
            && self.flavor.as_ref().is_none_or(|f| *f == s.flavor.id)
            && self.changes_since.is_none_or(|t| s.updated_us >= t)
            && self
                .host
                .as_ref()
                .is_none_or(|h| s.host.as_ref() == Some(h))
    }
}

/// `GET /servers[/detail]`.
pub(super) async fn list(r: &Req<'_>, detail: bool) -> NovaResult {
    let filters = Filters::parse(&r.query, &r.project, r.is_admin(), detail)?;
    let paging = Paging::from_query(&r.query)?;
    let mut servers: Vec<Server> = r
        .compute()
        .servers
        .list()
        .await?
        .into_iter()
        .filter(|s| filters.keeps(s))
        .collect();
    servers.sort_by(|a, b| {
        b.created_us
            .cmp(&a.created_us)
            .then_with(|| b.id.cmp(&a.id))
    });
    let more = paging.page(&mut servers, |s| &s.id)?;
    let links = r.links();
    let items: Vec<Value> = servers
        .iter()
        .map(|s| {
            if detail {
                render::server(&links, s, r.is_admin())
            } else {
                render::server_brief(&links, s)
            }
        })
        .collect();
    let mut doc = json!({ "servers": items });
    if more {
        if let Some(last) = servers.last() {
            let path = if detail { "servers/detail" } else { "servers" };
            doc["servers_links"] = next_link(
                &format!("{}/{path}", links.base),
                &r.query,
                paging.limit,
                &last.id,
            );
        }
    }
    Ok(json_response(StatusCode::OK, &doc))
}

/// `{"server": …}` with status 200.
fn one(r: &Req<'_>, s: &Server) -> axum::response::Response {
    let doc = render::server(&r.links(), s, r.is_admin());
    json_response(StatusCode::OK, &json!({ "server": doc }))
}

/// `GET /servers/{id}`.
pub(super) async fn show(r: &Req<'_>, id: &str) -> NovaResult {
    let (s, _) = r.server(id).await?;
    Ok(one(r, &s))
}

/// `PUT /servers/{id}`: renames (`OS-DCF:diskConfig` is accepted and changes nothing).
pub(super) async fn update(r: &Req<'_>, id: &str) -> NovaResult {
    r.may_change("os_compute_api:servers:update")?;
    let body = r.entity("server")?;
    let mut name = None;
    for (k, v) in &body {
        match k.as_str() {
            "name" => name = Some(params::name("name", v)?),
            "OS-DCF:diskConfig" if matches!(v.as_str(), Some("AUTO" | "MANUAL")) => {}
            "OS-DCF:diskConfig" => return Err(invalid(k, v, "It must be AUTO or MANUAL.")),
            "accessIPv4" | "accessIPv6" => {
                return Err(bad(format!(
                    "{k} is not supported: servers have no network."
                )))
            }
            _ => {
                return Err(bad(format!(
                    "Additional properties are not allowed ('{k}' was unexpected)"
                )))
            }
        }
    }
    let s = match name {
        Some(n) => {
            r.change_server(id, |s| {
                s.name = n.clone();
                Ok(())
            })
            .await?
        }
        None => r.server(id).await?.0,
    };
    Ok(one(r, &s))
}

/// `DELETE /servers/{id}`: 204.
pub(super) async fn delete(r: &Req<'_>, id: &str) -> NovaResult {
    r.may_change("os_compute_api:servers:delete")?;
    let (before, _) = r.server(id).await?;
    let s = r
        .change_server(id, |s| {
            s.want = Want::Deleted;
            if !building(s) {
                s.task_state = Some("deleting".into());
            }
            Ok(())
        })
        .await?;
    let now = now_us();
    let local = match &s.host {
        None => Some("it was never placed"),
        Some(_) if building(&s) => {
            (now.saturating_sub(before.updated_us) > STALE_BUILD_US).then_some("its build stalled")
        }
        Some(h) => match r.compute().hosts.get(h).await? {
            None => Some("its host is gone"),
            Some((host, _)) if !host.up(now) => Some("its host is down"),
            Some(_) => None,
        },
    };
    match local {
        Some(why) => {
            retire(r.compute(), r.vols(), id).await?;
            tracing::info!(server = id, why, "server deleted by the API");
        }
        None if building(&s) => {
            tracing::info!(server = id, "server to be deleted by its build");
        }
        None => tracing::info!(server = id, host = ?s.host, "server to be deleted by its host"),
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /servers/{id}/ips[/{network}]`: no addresses (no network service).
pub(super) async fn ips(r: &Req<'_>, id: &str, network: Option<&str>) -> NovaResult {
    r.server(id).await?;
    if network.is_some() {
        return Err(not_found("Instance is not a member of specified network"));
    }
    Ok(json_response(StatusCode::OK, &json!({"addresses": {}})))
}

/// 409 unless the server's metadata may change now (Nova: active, paused, suspended or
/// stopped, with no task).
fn metadata_changeable(s: &Server, method: &str) -> NovaResult<()> {
    if !matches!(
        s.vm_state.as_str(),
        "active" | "paused" | "suspended" | "stopped"
    ) {
        return Err(conflict(format!(
            "Cannot '{method}' instance {} while it is in vm_state {}",
            s.id, s.vm_state
        )));
    }
    if let Some(t) = &s.task_state {
        return Err(conflict(format!(
            "Cannot '{method}' instance {} while it is in task_state {t}",
            s.id
        )));
    }
    Ok(())
}

/// `/servers/{id}/metadata[/{key}]`: GET, POST (merge), PUT (replace), DELETE a key.
pub(super) async fn metadata(r: &Req<'_>, id: &str, key: Option<&str>) -> NovaResult {
    let m = r.method.as_str();
    if m == "GET" || m == "HEAD" {
        let (s, _) = r.server(id).await?;
        return match key {
            None => Ok(json_response(
                StatusCode::OK,
                &json!({"metadata": s.metadata}),
            )),
            Some(k) => match s.metadata.get(k) {
                Some(v) => Ok(json_response(StatusCode::OK, &json!({"meta": {k: v}}))),
                None => Err(not_found("Metadata item was not found")),
            },
        };
    }
    r.may_change("os_compute_api:server-metadata:update")?;
    let method = "update_instance_metadata";
    let s = match (m, key) {
        ("POST" | "PUT", None) => {
            let items = params::metadata(&Value::Object(r.entity("metadata")?))?;
            let replace = m == "PUT";
            r.change_server(id, |s| {
                metadata_changeable(s, method)?;
                if replace {
                    s.metadata = items.clone();
                } else {
                    s.metadata.extend(items.clone());
                }
                params::check_metadata_count(s.metadata.len())
            })
            .await?
        }
        ("PUT", Some(k)) => {
            let meta: Map<String, Value> = r.entity("meta")?;
            if meta.len() != 1 || !meta.contains_key(k) {
                return Err(bad("Request body and URI mismatch"));
            }
            let items = params::metadata(&Value::Object(meta))?;
            let out = r
                .change_server(id, |s| {
                    metadata_changeable(s, method)?;
                    s.metadata.extend(items.clone());
                    params::check_metadata_count(s.metadata.len())
                })
                .await?;
            let v = out.metadata.get(k).cloned().unwrap_or_default();
            return Ok(json_response(StatusCode::OK, &json!({"meta": {k: v}})));
        }
        ("DELETE", Some(k)) => {
            r.change_server(id, |s| {
                metadata_changeable(s, "delete_instance_metadata")?;
                s.metadata
                    .remove(k)
                    .map(|_| ())
                    .ok_or_else(|| not_found("Metadata item was not found"))
            })
            .await?;
            return Ok(empty(StatusCode::NO_CONTENT));
        }
        _ => {
            return Err(NovaError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ))
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"metadata": s.metadata}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::render::test_server;

    fn filters(q: &str, admin: bool) -> NovaResult<Filters> {
        Filters::parse(&Query::parse(Some(q)), "p1", admin, true)
    }

    #[test]
    fn name_filters_match_as_nova_s_regular_expressions() {
        let mut s = test_server();
        for (q, keeps) in [
            ("name=s1", true),
            ("name=s", true),
            ("name=%5Es1%24", true),   // ^s1$
            ("name=%5E1", false),      // ^1
            ("name=s%5B0-9%5D", true), // s[0-9]
            ("name=x", false),
        ] {
            assert_eq!(filters(q, false).unwrap().keeps(&s), keeps, "{q}");
        }
        s.name = "web.prod-01".into();
        assert!(filters("name=web.prod", false).unwrap().keeps(&s));
        assert!(filters("name=prod-0%5Cd%24", false).unwrap().keeps(&s));
    }

    #[test]
    fn other_filters() {
        let mut s = test_server();
        s.status = "ACTIVE".into();
        s.host = Some("h1".into());
        assert!(filters("status=active", false).unwrap().keeps(&s));
        assert!(!filters("status=SHUTOFF", false).unwrap().keeps(&s));
        assert!(filters("flavor=1&image=img", false).unwrap().keeps(&s));
        assert!(filters("flavor=http://h/compute/flavors/1", false)
            .unwrap()
            .keeps(&s));
        assert!(!filters("flavor=2", false).unwrap().keeps(&s));
        assert!(!filters("image=other", false).unwrap().keeps(&s));
        assert!(filters("changes-since=2023-11-14T22:13:21Z", false)
            .unwrap()
            .keeps(&s));
        assert!(!filters("changes-since=2023-11-14T22:13:22Z", false)
            .unwrap()
            .keeps(&s));
        assert_eq!(
            filters("changes-since=soon", false).unwrap_err().status,
            400
        );
        assert!(filters("deleted=False", false).unwrap().keeps(&s));
        assert!(!filters("deleted=True", false).unwrap().keeps(&s));
        // `host` is an admin's filter; others' is ignored.
        assert!(filters("host=h2", false).unwrap().keeps(&s));
        assert!(!filters("host=h2", true).unwrap().keeps(&s));
    }

    #[test]
    fn projects_and_all_tenants() {
        let mut s = test_server();
        s.project_id = "p2".into();
        assert!(!filters("", false).unwrap().keeps(&s));
        assert!(!filters("", true).unwrap().keeps(&s));
        assert_eq!(filters("all_tenants=1", false).unwrap_err().status, 403);
        assert!(filters("all_tenants=1", true).unwrap().keeps(&s));
        assert!(filters("all_tenants", true).unwrap().keeps(&s));
        assert!(filters("all_tenants=True&project_id=p2", true)
            .unwrap()
            .keeps(&s));
        assert!(!filters("all_tenants=True&tenant_id=p3", true)
            .unwrap()
            .keeps(&s));
        assert_eq!(filters("all_tenants=maybe", true).unwrap_err().status, 400);
    }

    #[test]
    fn metadata_changes_wait_for_a_settled_server() {
        let mut s = test_server();
        assert_eq!(metadata_changeable(&s, "m").unwrap_err().status, 409);
        s.vm_state = "active".into();
        s.task_state = Some("powering-off".into());
        let e = metadata_changeable(&s, "m").unwrap_err();
        assert!(
            e.message.contains("task_state powering-off"),
            "{}",
            e.message
        );
        s.task_state = None;
        assert!(metadata_changeable(&s, "m").is_ok());
    }
}
