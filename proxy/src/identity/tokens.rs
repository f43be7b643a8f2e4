//! `/v3/auth/*`: issuing tokens (password and token methods; project-, domain- or
//! unscoped), validating and revoking them, and what a token's holder may see of the
//! catalog, its projects and its domains.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use stratus_client::identity::revoke::now_us;
use stratus_client::identity::{
    new_id, Domain, Project, Revocation, Role, Scope, Target, TokenClaims, User,
};
use stratus_core::time::now_secs;

use super::render;
use super::{bad, empty, json_response, not_found, unauthorized, KsError, KsResult, Req};
use crate::headers::{hv, iso_date};

/// Answers `/v3/auth/...`.
pub(super) async fn route(r: &Req<'_>) -> KsResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    match (r.method.as_str(), &segs[..]) {
        ("POST", ["auth", "tokens"]) => issue(r).await,
        ("GET" | "HEAD", ["auth", "tokens"]) => validate(r),
        ("DELETE", ["auth", "tokens"]) => revoke(r).await,
        ("GET", ["auth", "catalog"]) => {
            let c = r.who()?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "catalog": super::catalog::catalog(&r.host_url, c.project_id()),
                    "links": {"self": format!("{}/auth/catalog", r.v3()), "previous": null, "next": null},
                }),
            ))
        }
        ("GET", ["auth", "projects"]) => {
            let c = r.who()?;
            let ps = super::resources::projects_of(r, &c.user_id).await?;
            let items = ps.iter().map(|p| render::project(p, &r.v3())).collect();
            Ok(ok(render::list(
                "projects",
                items,
                format!("{}/auth/projects", r.v3()),
            )))
        }
        ("GET", ["auth", "domains"]) => {
            let c = r.who()?;
            let ds = super::resources::domains_of(r, &c.user_id).await?;
            let items = ds.iter().map(|d| render::domain(d, &r.v3())).collect();
            Ok(ok(render::list(
                "domains",
                items,
                format!("{}/auth/domains", r.v3()),
            )))
        }
        ("GET", ["auth", "system"]) => {
            r.who()?;
            Ok(ok(
                json!({"system": [], "links": {"self": format!("{}/auth/system", r.v3())}}),
            ))
        }
        (_, ["auth", "tokens" | "catalog" | "projects" | "domains" | "system"]) => {
            Err(method_not_allowed())
        }
        _ => Err(not_found("path", &format!("/{}", segs.join("/")))),
    }
}

pub(super) fn method_not_allowed() -> KsError {
    KsError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for the requested URL.",
    )
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Resolves `{"id"}` or `{"name"}` of a domain.
async fn domain_ref(r: &Req<'_>, d: &Value) -> KsResult<Option<Domain>> {
    if let Some(id) = d.get("id").and_then(Value::as_str) {
        return Ok(r.store().get::<Domain>(id).await?);
    }
    if let Some(name) = d.get("name").and_then(Value::as_str) {
        return Ok(r.store().by_name::<Domain>("-", name).await?);
    }
    Err(bad("Expecting to find id or name in domain."))
}

/// The user a password-method request names, if it exists.
async fn password_user(r: &Req<'_>, u: &Value) -> KsResult<Option<User>> {
    if let Some(id) = u.get("id").and_then(Value::as_str) {
        return Ok(r.store().get::<User>(id).await?);
    }
    let Some(name) = u.get("name").and_then(Value::as_str) else {
        return Err(bad("Expecting to find id or name in user."));
    };
    let Some(d) = u.get("domain") else {
        return Err(bad("Expecting to find domain in user."));
    };
    match domain_ref(r, d).await? {
        Some(d) if d.enabled => Ok(r.store().by_name::<User>(&d.id, name).await?),
        _ => Ok(None),
    }
}

/// `POST /v3/auth/tokens`.
async fn issue(r: &Req<'_>) -> KsResult {
    let body = r.json()?;
    let auth = body
        .get("auth")
        .filter(|a| a.is_object())
        .ok_or_else(|| bad("Expecting to find auth in request body."))?;
    let identity = auth
        .get("identity")
        .filter(|a| a.is_object())
        .ok_or_else(|| bad("Expecting to find identity in auth."))?;
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Expecting to find methods in identity."))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let now_s = now_secs();
    let store = r.store();
    // Who: by password, or by a token already held (re-scoping keeps its expiry).
    let (user, expires, parent_audit) = if methods.iter().any(|m| m == "password") {
        let pw = identity
            .get("password")
            .and_then(|p| p.get("user"))
            .ok_or_else(|| bad("Expecting to find user in password."))?;
        let given = pw
            .get("password")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Expecting to find password in user."))?;
        let found = password_user(r, pw).await?;
        let user = store
            .check_password(found, given)
            .await
            .ok_or_else(unauthorized)?;
        (user, now_s + r.ttl(), None)
    } else if methods.iter().any(|m| m == "token") {
        let id = str_at(identity, &["token", "id"])
            .ok_or_else(|| bad("Expecting to find id in token."))?;
        let c = r.p.auth.keystone(id).map_err(|_| unauthorized())?;
        let user = store
            .get::<User>(&c.user_id)
            .await?
            .filter(|u| u.enabled)
            .ok_or_else(unauthorized)?;
        (user, c.expires, c.audit_ids.first().cloned())
    } else {
        return Err(KsError::new(
            StatusCode::UNAUTHORIZED,
            "Attempted to authenticate with an unsupported method.",
        ));
    };
    let user_domain = store
        .get::<Domain>(&user.domain_id)
        .await?
        .filter(|d| d.enabled)
        .ok_or_else(unauthorized)?;
    let (scope, roles) = resolve_scope(r, auth.get("scope"), &user).await?;
    let mut audit_ids = vec![audit_id()];
    audit_ids.extend(parent_audit);
    let claims = TokenClaims {
        v: 1,
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        user_domain_id: user_domain.id.clone(),
        user_domain_name: user_domain.name.clone(),
        methods,
        scope,
        roles: roles.into_iter().map(|r| (r.id, r.name)).collect(),
        issued_us: now_us(),
        expires,
        audit_ids,
    };
    let token = r.p.auth.keystone_key().mint(&claims);
    let mut resp = json_response(
        StatusCode::CREATED,
        &token_body(r, &claims, !r.query.has("nocatalog")),
    );
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

/// Keystone's audit ids: 16 random bytes, base64url without padding (22 characters).
fn audit_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// The scope a token request asks for, checked: the project or domain must exist and be
/// enabled and the user must hold a role there (else 401). Without a scope, a user with a
/// default project it holds a role on gets a token for it, as Keystone does.
async fn resolve_scope(
    r: &Req<'_>,
    scope: Option<&Value>,
    user: &User,
) -> KsResult<(Scope, Vec<Role>)> {
    let store = r.store();
    let project = match scope {
        None => match &user.default_project_id {
            Some(pid) => store.get::<Project>(pid).await?.map(|p| (p, false)),
            None => None,
        },
        Some(Value::String(s)) if s == "unscoped" => None,
        Some(s) if s.get("project").is_some() => {
            let p = &s["project"];
            let found = if let Some(id) = p.get("id").and_then(Value::as_str) {
                store.get::<Project>(id).await?
            } else if let Some(name) = p.get("name").and_then(Value::as_str) {
                let d = p
                    .get("domain")
                    .ok_or_else(|| bad("Expecting to find domain in project."))?;
                match domain_ref(r, d).await? {
                    Some(d) => store.by_name::<Project>(&d.id, name).await?,
                    None => None,
                }
            } else {
                return Err(bad("Expecting to find id or name in project."));
            };
            Some((found.ok_or_else(unauthorized)?, true))
        }
        Some(s) if s.get("domain").is_some() => {
            let d = domain_ref(r, &s["domain"])
                .await?
                .filter(|d| d.enabled)
                .ok_or_else(unauthorized)?;
            let roles = store
                .effective_roles(&user.id, &Target::Domain(d.id.clone()))
                .await?;
            if roles.is_empty() {
                return Err(unauthorized());
            }
            return Ok((
                Scope::Domain {
                    id: d.id,
                    name: d.name,
                },
                roles,
            ));
        }
        Some(s) if s.get("system").is_some() => {
            return Err(KsError::new(
                StatusCode::UNAUTHORIZED,
                "System-scoped tokens are not supported by this cloud.",
            ))
        }
        Some(_) => return Err(bad("Invalid scope: expecting project, domain or unscoped.")),
    };
    let Some((p, explicit)) = project else {
        return Ok((Scope::Unscoped, Vec::new()));
    };
    let domain = store.get::<Domain>(&p.domain_id).await?;
    let usable = p.enabled && domain.as_ref().is_some_and(|d| d.enabled);
    let roles = if usable {
        store
            .effective_roles(&user.id, &Target::Project(p.id.clone()))
            .await?
    } else {
        Vec::new()
    };
    if roles.is_empty() {
        if explicit {
            return Err(unauthorized());
        }
        // A default project the user cannot use gives an unscoped token.
        return Ok((Scope::Unscoped, Vec::new()));
    }
    let domain = domain.expect("checked above");
    Ok((
        Scope::Project {
            id: p.id,
            name: p.name,
            domain_id: domain.id,
            domain_name: domain.name,
        },
        roles,
    ))
}

/// Keystone's timestamps: `2026-11-30T02:58:43.000000Z`.
fn stamp(us: u64) -> String {
    format!("{}Z", iso_date(us))
}

/// The body of a token answer.
fn token_body(r: &Req<'_>, c: &TokenClaims, with_catalog: bool) -> Value {
    let mut t = serde_json::Map::new();
    t.insert("methods".into(), json!(c.methods));
    t.insert(
        "user".into(),
        json!({
            "id": c.user_id,
            "name": c.user_name,
            "domain": {"id": c.user_domain_id, "name": c.user_domain_name},
            "password_expires_at": null,
        }),
    );
    t.insert("audit_ids".into(), json!(c.audit_ids));
    t.insert(
        "expires_at".into(),
        json!(stamp(c.expires.saturating_mul(1_000_000))),
    );
    t.insert("issued_at".into(), json!(stamp(c.issued_us)));
    match &c.scope {
        Scope::Unscoped => {}
        Scope::Project {
            id,
            name,
            domain_id,
            domain_name,
        } => {
            t.insert(
                "project".into(),
                json!({"id": id, "name": name, "domain": {"id": domain_id, "name": domain_name}}),
            );
            t.insert("is_domain".into(), json!(false));
        }
        Scope::Domain { id, name } => {
            t.insert("domain".into(), json!({"id": id, "name": name}));
        }
    }
    if c.scope != Scope::Unscoped {
        let roles: Vec<Value> = c
            .roles
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        t.insert("roles".into(), json!(roles));
        if with_catalog {
            t.insert(
                "catalog".into(),
                super::catalog::catalog(&r.host_url, c.project_id()),
            );
        }
    }
    json!({"token": t})
}

/// The subject token of a validate or revoke request: 404 when it is not valid.
fn subject(r: &Req<'_>) -> KsResult<(String, TokenClaims)> {
    let t = hv(r.headers, "x-subject-token")
        .ok_or_else(|| bad("Expecting to find X-Subject-Token in the request headers."))?;
    let c =
        r.p.auth
            .keystone(t)
            .map_err(|_| not_found("token", "the token in X-Subject-Token"))?;
    Ok((t.to_string(), c))
}

/// `GET`/`HEAD /v3/auth/tokens`: the caller may check its own tokens; admins any token.
fn validate(r: &Req<'_>) -> KsResult {
    let caller = r.who()?;
    let (token, c) = subject(r)?;
    if c.user_id != caller.user_id && !r.is_admin() {
        return Err(super::forbidden("identity:validate_token"));
    }
    let mut resp = if *r.method == Method::HEAD {
        empty(StatusCode::OK)
    } else {
        json_response(
            StatusCode::OK,
            &token_body(r, &c, !r.query.has("nocatalog")),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}

/// `DELETE /v3/auth/tokens`: revokes the subject token (and every token later re-scoped
/// from it, which carries its audit id), on this proxy at once and on every other as the
/// revocation reaches it.
async fn revoke(r: &Req<'_>) -> KsResult {
    let caller = r.who()?;
    let (_, c) = subject(r)?;
    if c.user_id != caller.user_id && !r.is_admin() {
        return Err(super::forbidden("identity:revoke_token"));
    }
    let audit = c.audit_ids.first().cloned().unwrap_or_else(new_id);
    let ev = r
        .store()
        .revoke(Revocation {
            audit_id: Some(audit),
            ..Default::default()
        })
        .await?;
    r.p.auth.revocations().insert(ev);
    Ok(empty(StatusCode::NO_CONTENT))
}
