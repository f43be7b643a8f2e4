//! Writing accounts and containers: PUT (or an account's POST), POST and DELETE, each sent
//! to every replica of the database and acknowledged on a quorum. The metadata they carry
//! is checked first: ACLs, versioning locations and quotas must be well formed (400, 412).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_core::timestamp::Timestamp;
use stratus_proto::storage as pb;

use crate::cluster::RingKind;
use crate::error::{
    bad_request, not_found, precondition_failed, unavailable, SwiftError, SwiftResult,
    CONFLICT_PAGE,
};
use crate::headers::{self, hv, title_case};
use crate::ops::listing::db_target;
use crate::proxy::Proxy;

/// Headers an account or container stores besides its `X-*-Meta-*`: ACLs and versioning.
const CONTAINER_HEADERS: &[&str] = &[
    "x-container-read",
    "x-container-write",
    "x-versions-location",
    "x-history-location",
    // Kept and shown to owners only (no container sync runs: the values are inert).
    "x-container-sync-key",
    "x-container-sync-to",
];
const ACCOUNT_HEADERS: &[&str] = &["x-account-access-control"];

/// The metadata of an account or container write, with its ACL and versioning headers
/// checked (400 when malformed).
fn system_metadata(h: &HeaderMap, what: &str) -> SwiftResult<Vec<(String, String)>> {
    let extra = if what == "account" {
        ACCOUNT_HEADERS
    } else {
        CONTAINER_HEADERS
    };
    let mut meta = headers::metadata(h, what, extra)?;
    // An account ACL with no entries (`{}`) removes the ACL, as Swift stores it.
    for (k, v) in meta.iter_mut() {
        if k == "x-account-access-control"
            && crate::acl::AccountAcl::parse(v).is_ok_and(|a| a.is_empty())
        {
            v.clear();
        }
    }
    let set =
        |meta: &[(String, String)], k: &str| meta.iter().any(|(n, v)| n == k && !v.is_empty());
    if set(&meta, "x-versions-location") && set(&meta, "x-history-location") {
        return Err(bad_request(
            "Only one of X-Versions-Location or X-History-Location may be specified",
        ));
    }
    // A container has one versioning mode (Swift keeps one location and its mode): setting
    // either location clears the other.
    for (k, other) in [
        ("x-versions-location", "x-history-location"),
        ("x-history-location", "x-versions-location"),
    ] {
        if set(&meta, k) && !meta.iter().any(|(n, _)| n == other) {
            meta.push((other.to_string(), String::new()));
        }
    }
    for (k, v) in &meta {
        crate::acl::validate(k, v)?;
        crate::ops::quota::validate_container_meta(k, v)?;
        if (k == "x-versions-location" || k == "x-history-location") && v.contains('/') {
            return Err(precondition_failed(format!(
                "{} container name cannot contain slashes",
                title_case(k)
            )));
        }
    }
    Ok(meta)
}

fn items(meta: Vec<(String, String)>, ts: u64) -> Vec<pb::MetaItem> {
    meta.into_iter()
        .map(|(key, value)| pb::MetaItem { key, value, ts })
        .collect()
}

/// PUT of a container, or POST of an account (which creates it): Db.Put on every replica.
pub async fn put(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    put_with(p, kind, account, container, h, Vec::new()).await
}

/// [`put`], storing `sysmeta` (system metadata the proxy sets, never a client) as well.
pub async fn put_with(
    p: &Proxy,
    kind: RingKind,
    account: &str,
    container: &str,
    h: &HeaderMap,
    sysmeta: Vec<(String, String)>,
) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let what = if container.is_empty() {
        "account"
    } else {
        "container"
    };
    // A container's storage policy, by name: 400 for one the cluster does not have or one
    // that is deprecated, as Swift answers.
    let policies = p.policies.current();
    let mut policy = None;
    if let Some(name) = hv(h, "x-storage-policy").filter(|v| !v.trim().is_empty()) {
        if what == "container" {
            let name = name.trim();
            match policies.by_name(name) {
                None => return Err(bad_request(format!("Invalid X-Storage-Policy '{name}'"))),
                Some(pol) if pol.deprecated => {
                    return Err(bad_request(format!(
                        "Storage Policy '{}' is deprecated",
                        pol.name
                    )))
                }
                Some(pol) => policy = Some(pol.index),
            }
        }
    }
    let default_policy = policies.default_policy().index;
    let mut meta = system_metadata(h, what)?;
    meta.extend(sysmeta);
    // An account's POST (which comes here) is checked with what the account already holds,
    // as Swift's account server does; a container's PUT is too, when it exists.
    if meta
        .iter()
        .any(|(k, _)| k.starts_with(&format!("x-{what}-meta-")))
    {
        let stored = crate::ops::listing::info(p, account, container).await?;
        if stored.exists {
            headers::check_merged_metadata(&stored.meta, &meta, what)?;
        }
    }
    let meta = items(meta, ts);
    let c = (!container.is_empty()).then_some(container);
    let place = p.cluster.place(kind, account, c, None)?;
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbPutRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                ts,
                meta: meta.clone(),
                policy,
                default_policy,
            };
            async move { Ok(p.cluster.peers.db(&dev.node)?.put(req).await?.into_inner()) }
        })
        .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    // The container exists with another policy (Swift's container server answers 409).
    let conflict = |r: &Result<pb::DbReply, tonic::Status>| {
        r.as_ref()
            .is_err_and(|s| s.message().starts_with(pb::POLICY_CONFLICT))
    };
    if ok.len() < place.quorum() && results.iter().any(conflict) {
        p.forget(account, container);
        return Err(SwiftError::new(
            StatusCode::CONFLICT,
            "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>",
        ));
    }
    if ok.len() < place.quorum() {
        return Err(unavailable(format!("{what} PUT reached no quorum")));
    }
    p.forget(account, container);
    if kind == RingKind::Account {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let status = if ok.iter().any(|r| r.changed) {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok(SwiftError::new(status, "").into_response())
}

/// POST of a container: metadata.
pub async fn post(
    p: &Proxy,
    account: &str,
    container: &str,
    h: &HeaderMap,
) -> SwiftResult<Response> {
    post_with(p, account, container, h, Vec::new()).await
}

/// [`post`], storing `sysmeta` (system metadata the proxy sets, never a client) as well.
pub async fn post_with(
    p: &Proxy,
    account: &str,
    container: &str,
    h: &HeaderMap,
    sysmeta: Vec<(String, String)>,
) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let mut meta = system_metadata(h, "container")?;
    meta.extend(sysmeta);
    // Swift's limits hold for what the container stores after the POST, not only for the
    // POST's own items.
    if meta.iter().any(|(k, _)| k.starts_with("x-container-meta-")) {
        let stored = crate::ops::listing::info(p, account, container).await?;
        if stored.exists {
            headers::check_merged_metadata(&stored.meta, &meta, "container")?;
        }
    }
    let meta = items(meta, ts);
    let place = p
        .cluster
        .place(RingKind::Container, account, Some(container), None)?;
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbPostRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                meta: meta.clone(),
            };
            async move { Ok(p.cluster.peers.db(&dev.node)?.post(req).await?.into_inner()) }
        })
        .await;
    p.forget(account, container);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if ok >= place.quorum() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if results
        .iter()
        .any(|r| matches!(r, Err(s) if s.code() == tonic::Code::NotFound))
    {
        return Err(not_found());
    }
    Err(unavailable("container POST reached no quorum"))
}

/// DELETE of an empty container.
pub async fn delete(p: &Proxy, account: &str, container: &str) -> SwiftResult<Response> {
    let ts = Timestamp::now().0;
    let place = p
        .cluster
        .place(RingKind::Container, account, Some(container), None)?;
    p.forget(account, container);
    let results = p
        .cluster
        .write_all(&place, |dev, _| {
            let req = pb::DbDeleteRequest {
                target: Some(db_target(&place, &dev.name, account, container)),
                ts,
            };
            async move {
                Ok(p.cluster
                    .peers
                    .db(&dev.node)?
                    .delete(req)
                    .await?
                    .into_inner())
            }
        })
        .await;
    if results
        .iter()
        .any(|r| matches!(r, Err(s) if s.code() == tonic::Code::FailedPrecondition))
    {
        return Err(SwiftError::new(StatusCode::CONFLICT, CONFLICT_PAGE));
    }
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if ok.len() < place.quorum() {
        return Err(unavailable("container DELETE reached no quorum"));
    }
    if !ok.iter().any(|r| r.changed) {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
