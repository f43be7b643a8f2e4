//! Domains, projects, users, groups, roles, assignments, implied roles, and the read-only
//! catalog collections (services, endpoints, regions), with Keystone's status codes and
//! list filters.

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use stratus_client::identity::password;
use stratus_client::identity::store::Record;
use stratus_client::identity::{
    new_id, Actor, Assignment, Domain, Group, Project, Role, Target, User, DEFAULT_DOMAIN_ID,
};
use stratus_client::records::RECORD_VERSION;

use super::catalog::{stable_id, REGION, SERVICES};
use super::tokens::method_not_allowed;
use super::{bad, empty, forbidden, json_response, not_found, render, KsResult, Req};
use crate::names::Query;

/// A resource the API creates, shows, lists, patches and deletes.
trait Api: Record {
    /// The key of one in a body (`project`).
    const KEY: &'static str;
    fn render(&self, v3: &str) -> Value;
    /// Whether it passes the list filters in `q`.
    fn filter(&self, q: &Query) -> bool;
}

fn truthy(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "false" | "f" | "no" | "n" | "off"
    )
}

fn name_domain_filter(q: &Query, name: &str, domain: Option<&str>) -> bool {
    q.get("name").is_none_or(|n| n == name) && q.get("domain_id").is_none_or(|d| Some(d) == domain)
}

impl Api for Domain {
    const KEY: &'static str = "domain";
    fn render(&self, v3: &str) -> Value {
        render::domain(self, v3)
    }
    fn filter(&self, q: &Query) -> bool {
        q.get("name").is_none_or(|n| n == self.name)
            && q.get("enabled").is_none_or(|e| truthy(e) == self.enabled)
    }
}

impl Api for Project {
    const KEY: &'static str = "project";
    fn render(&self, v3: &str) -> Value {
        render::project(self, v3)
    }
    fn filter(&self, q: &Query) -> bool {
        name_domain_filter(q, &self.name, Some(&self.domain_id))
            && q.get("enabled").is_none_or(|e| truthy(e) == self.enabled)
            && q.get("parent_id").is_none_or(|p| p == self.domain_id)
            && q.get("is_domain").is_none_or(|d| !truthy(d))
    }
}

impl Api for User {
    const KEY: &'static str = "user";
    fn render(&self, v3: &str) -> Value {
        render::user(self, v3)
    }
    fn filter(&self, q: &Query) -> bool {
        name_domain_filter(q, &self.name, Some(&self.domain_id))
            && q.get("enabled").is_none_or(|e| truthy(e) == self.enabled)
    }
}

impl Api for Group {
    const KEY: &'static str = "group";
    fn render(&self, v3: &str) -> Value {
        render::group(self, v3)
    }
    fn filter(&self, q: &Query) -> bool {
        name_domain_filter(q, &self.name, Some(&self.domain_id))
    }
}

impl Api for Role {
    const KEY: &'static str = "role";
    fn render(&self, v3: &str) -> Value {
        render::role(self, v3)
    }
    fn filter(&self, q: &Query) -> bool {
        name_domain_filter(q, &self.name, self.domain_id.as_deref())
    }
}

/// Answers everything under `/v3` but `auth`.
pub(super) async fn route(r: &Req<'_>) -> KsResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let m = r.method.as_str();
    match &segs[..] {
        ["domains"] => collection::<Domain>(r, m).await,
        ["domains", id] => item::<Domain>(r, m, id).await,
        ["projects"] => collection::<Project>(r, m).await,
        ["projects", id] => item::<Project>(r, m, id).await,
        ["users"] => collection::<User>(r, m).await,
        ["users", id] => item::<User>(r, m, id).await,
        ["groups"] => collection::<Group>(r, m).await,
        ["groups", id] => item::<Group>(r, m, id).await,
        ["roles"] => collection::<Role>(r, m).await,
        ["roles", id] => item::<Role>(r, m, id).await,
        [kind @ ("projects" | "domains"), target, actor @ ("users" | "groups"), who, "roles"] => {
            if m != "GET" {
                return Err(method_not_allowed());
            }
            let (target, actor) = assignment_parts(r, kind, target, actor, who).await?;
            r.admin("identity:list_grants")?;
            let scope = format!(
                "{}/",
                Assignment {
                    target,
                    actor,
                    role_id: String::new(),
                }
                .key()
            );
            let roles = roles_by_id(r).await?;
            let items = r
                .store()
                .assignments()
                .await?
                .into_iter()
                .filter(|a| a.key().starts_with(&scope))
                .filter_map(|a| roles.get(&a.role_id).map(|x| x.render(&r.v3())))
                .collect();
            Ok(ok(render::list("roles", items, self_url(r))))
        }
        [kind @ ("projects" | "domains"), target, actor @ ("users" | "groups"), who, "roles", role] => {
            grant(r, m, kind, target, actor, who, role).await
        }
        ["users", id, "projects"] => {
            self_or_admin(r, id, "identity:list_user_projects")?;
            r.store().need::<User>(id).await?;
            let items = projects_of(r, id)
                .await?
                .iter()
                .map(|p| p.render(&r.v3()))
                .collect();
            get_only(m, ok(render::list("projects", items, self_url(r))))
        }
        ["users", id, "groups"] => {
            self_or_admin(r, id, "identity:list_groups_for_user")?;
            r.store().need::<User>(id).await?;
            let mut items = Vec::new();
            for g in r.store().groups_of(id).await? {
                if let Some(g) = r.store().get::<Group>(&g).await? {
                    items.push(g.render(&r.v3()));
                }
            }
            get_only(m, ok(render::list("groups", items, self_url(r))))
        }
        ["users", id, "password"] if m == "POST" => change_password(r, id).await,
        ["groups", id, "users"] => {
            r.admin("identity:list_users_in_group")?;
            r.store().need::<Group>(id).await?;
            let mut items = Vec::new();
            for u in r.store().users_of(id).await? {
                if let Some(u) = r.store().get::<User>(&u).await? {
                    if u.filter(&r.query) {
                        items.push(u.render(&r.v3()));
                    }
                }
            }
            get_only(m, ok(render::list("users", items, self_url(r))))
        }
        ["groups", g, "users", u] => membership(r, m, g, u).await,
        ["roles", prior, "implies"] => {
            r.admin("identity:list_implied_roles")?;
            let roles = roles_by_id(r).await?;
            let p = roles.get(*prior).ok_or_else(|| not_found("role", prior))?;
            let implies: Vec<Value> = r
                .store()
                .implications()
                .await?
                .iter()
                .filter(|(a, _)| a == prior)
                .filter_map(|(_, b)| roles.get(b).map(|x| render::role_brief(x, &r.v3())))
                .collect();
            get_only(
                m,
                ok(json!({
                    "role_inference": {"prior_role": render::role_brief(p, &r.v3()), "implies": implies},
                    "links": {"self": self_url(r)},
                })),
            )
        }
        ["roles", prior, "implies", implied] => implication(r, m, prior, implied).await,
        ["role_inferences"] => {
            r.admin("identity:list_role_inference_rules")?;
            let roles = roles_by_id(r).await?;
            let mut by_prior: HashMap<&str, Vec<Value>> = HashMap::new();
            let pairs = r.store().implications().await?;
            for (a, b) in &pairs {
                if let Some(x) = roles.get(b) {
                    by_prior
                        .entry(a.as_str())
                        .or_default()
                        .push(render::role_brief(x, &r.v3()));
                }
            }
            let items: Vec<Value> = by_prior
                .into_iter()
                .filter_map(|(a, implies)| {
                    roles.get(a).map(|p| {
                        json!({"prior_role": render::role_brief(p, &r.v3()), "implies": implies})
                    })
                })
                .collect();
            get_only(
                m,
                ok(json!({"role_inferences": items, "links": {"self": self_url(r)}})),
            )
        }
        ["role_assignments"] => get_only(m, role_assignments(r).await?),
        ["regions"] => get_only(m, ok(render::list("regions", vec![region(r)], self_url(r)))),
        ["regions", id] if *id == REGION => get_only(m, ok(json!({"region": region(r)}))),
        ["services"] => {
            r.admin("identity:list_services")?;
            let items = SERVICES
                .iter()
                .filter(|s| r.query.get("type").is_none_or(|t| t == s.kind))
                .map(|s| service(r, s))
                .collect();
            get_only(m, ok(render::list("services", items, self_url(r))))
        }
        ["services", id] => {
            r.admin("identity:get_service")?;
            let s = SERVICES
                .iter()
                .find(|s| stable_id(&[s.kind]) == *id)
                .ok_or_else(|| not_found("service", id))?;
            get_only(m, ok(json!({"service": service(r, s)})))
        }
        ["endpoints"] => {
            r.admin("identity:list_endpoints")?;
            let items = endpoints(r)
                .into_iter()
                .filter(|e| {
                    r.query.get("interface").is_none_or(|i| e["interface"] == i)
                        && r.query
                            .get("service_id")
                            .is_none_or(|s| e["service_id"] == s)
                })
                .collect();
            get_only(m, ok(render::list("endpoints", items, self_url(r))))
        }
        _ => Err(not_found("path", &format!("/{}", segs.join("/")))),
    }
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn get_only(m: &str, resp: Response) -> KsResult {
    if m == "GET" || m == "HEAD" {
        Ok(resp)
    } else {
        Err(method_not_allowed())
    }
}

fn self_url(r: &Req<'_>) -> String {
    format!("{}/{}", r.v3(), r.segs.join("/"))
}

fn self_or_admin(r: &Req<'_>, user_id: &str, action: &str) -> KsResult<()> {
    if r.who()?.user_id == user_id || r.is_admin() {
        Ok(())
    } else {
        Err(forbidden(action))
    }
}

fn region(r: &Req<'_>) -> Value {
    json!({
        "id": REGION,
        "description": "",
        "parent_region_id": null,
        "links": {"self": format!("{}/regions/{REGION}", r.v3())},
    })
}

fn service(r: &Req<'_>, s: &super::catalog::Service) -> Value {
    let id = stable_id(&[s.kind]);
    json!({
        "id": id,
        "type": s.kind,
        "name": s.name,
        "enabled": true,
        "description": "",
        "links": {"self": format!("{}/services/{id}", r.v3())},
    })
}

fn endpoints(r: &Req<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for s in SERVICES {
        for i in ["public", "internal", "admin"] {
            let id = stable_id(&[s.kind, i]);
            out.push(json!({
                "id": id,
                "interface": i,
                "region": REGION,
                "region_id": REGION,
                "service_id": stable_id(&[s.kind]),
                "url": format!("{}{}", r.host_url, s.path.replace("{project_id}", "%(project_id)s")),
                "enabled": true,
                "links": {"self": format!("{}/endpoints/{id}", r.v3())},
            }));
        }
    }
    out
}

async fn roles_by_id(r: &Req<'_>) -> KsResult<HashMap<String, Role>> {
    Ok(r.store()
        .list::<Role>()
        .await?
        .into_iter()
        .map(|x| (x.id.clone(), x))
        .collect())
}

// ----- collections and items ---------------------------------------------------------------

async fn collection<T: Api + Create>(r: &Req<'_>, m: &str) -> KsResult {
    match m {
        "GET" | "HEAD" => {
            r.admin(&format!("identity:list_{}", T::KIND))?;
            let v3 = r.v3();
            let mut items: Vec<T> = r
                .store()
                .list::<T>()
                .await?
                .into_iter()
                .filter(|x| x.filter(&r.query))
                .collect();
            items.sort_by(|a, b| a.name().cmp(b.name()));
            let items = items.iter().map(|x| x.render(&v3)).collect();
            Ok(ok(render::list(T::KIND, items, self_url(r))))
        }
        "POST" => {
            r.admin(&format!("identity:create_{}", T::LABEL))?;
            let body = r.entity(T::KEY)?;
            let rec = T::from_body(r, body).await?;
            r.store().create(&rec).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ T::KEY: rec.render(&r.v3()) }),
            ))
        }
        _ => Err(method_not_allowed()),
    }
}

async fn item<T: Api + Create>(r: &Req<'_>, m: &str, id: &str) -> KsResult {
    match m {
        "GET" | "HEAD" => {
            let c = r.who()?;
            let own = match T::KIND {
                "projects" => c.project_id() == Some(id),
                "users" => c.user_id == id,
                "domains" => {
                    c.user_domain_id == id
                        || matches!(&c.scope, stratus_client::identity::Scope::Project { domain_id, .. } if domain_id == id)
                }
                _ => false,
            };
            if !own && !r.is_admin() {
                return Err(forbidden(&format!("identity:get_{}", T::LABEL)));
            }
            let rec = r.store().need::<T>(id).await?;
            Ok(ok(json!({ T::KEY: rec.render(&r.v3()) })))
        }
        "PATCH" => {
            r.admin(&format!("identity:update_{}", T::LABEL))?;
            let body = r.entity(T::KEY)?;
            let prepared = T::prepare_patch(&body).await?;
            let (old, new) = r
                .store()
                .update::<T>(id, |rec| rec.apply_patch(&body, &prepared))
                .await?;
            T::after_patch(r, &old, &new).await?;
            Ok(ok(json!({ T::KEY: new.render(&r.v3()) })))
        }
        "DELETE" => {
            r.admin(&format!("identity:delete_{}", T::LABEL))?;
            let s = r.store();
            match T::KIND {
                "projects" => s.delete_project(id).await?,
                "users" => s.delete_user(id).await?,
                "groups" => s.delete_group(id).await?,
                "roles" => s.delete_role(id).await?,
                _ => s.delete_domain(id).await?,
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(method_not_allowed()),
    }
}

// ----- body parsing -------------------------------------------------------------------------

fn opt_str(m: &Map<String, Value>, k: &str) -> KsResult<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(format!(
            "Invalid input for field '{k}': {v} is not of type 'string'."
        ))),
    }
}

fn need_name(m: &Map<String, Value>) -> KsResult<String> {
    opt_str(m, "name")?
        .ok_or_else(|| bad("Invalid input for field 'name': 'name' is a required property."))
}

fn opt_bool(m: &Map<String, Value>, k: &str) -> KsResult<Option<bool>> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(format!(
            "Invalid input for field '{k}': {v} is not of type 'boolean'."
        ))),
    }
}

fn opt_tags(m: &Map<String, Value>) -> KsResult<Option<Vec<String>>> {
    match m.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| match t.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 255 && !s.contains(['/', ',']) => {
                    Ok(s.to_string())
                }
                _ => Err(bad(format!(
                    "Invalid input for field 'tags': {t} is not a valid tag."
                ))),
            })
            .collect::<KsResult<Vec<_>>>()
            .map(Some),
        Some(v) => Err(bad(format!(
            "Invalid input for field 'tags': {v} is not of type 'array'."
        ))),
    }
}

/// The domain a new record goes to: the one named, else the caller's project's domain.
async fn domain_for(r: &Req<'_>, m: &Map<String, Value>) -> KsResult<String> {
    let id = match opt_str(m, "domain_id")? {
        Some(d) => d,
        None => match r.caller.as_ref().map(|c| &c.scope) {
            Some(stratus_client::identity::Scope::Project { domain_id, .. }) => domain_id.clone(),
            Some(stratus_client::identity::Scope::Domain { id, .. }) => id.clone(),
            _ => DEFAULT_DOMAIN_ID.to_string(),
        },
    };
    r.store().need::<Domain>(&id).await?;
    Ok(id)
}

fn no_domain_change(m: &Map<String, Value>, current: &str) -> KsResult<()> {
    match opt_str(m, "domain_id")? {
        Some(d) if d != current => Err(bad("Cannot change the domain_id of an existing entity.")),
        _ => Ok(()),
    }
}

/// The fields several records share, as a PATCH may change them.
struct Common<'a> {
    name: &'a mut String,
    description: Option<&'a mut String>,
    enabled: Option<&'a mut bool>,
    tags: Option<&'a mut Vec<String>>,
}

/// Applies the shared fields present in a PATCH body.
fn patch_common(m: &Map<String, Value>, c: Common<'_>) -> KsResult<()> {
    if let Some(n) = opt_str(m, "name")? {
        *c.name = n;
    }
    if let (Some(field), Some(d)) = (c.description, opt_str(m, "description")?) {
        *field = d;
    }
    if let (Some(field), Some(e)) = (c.enabled, opt_bool(m, "enabled")?) {
        *field = e;
    }
    if let (Some(field), Some(t)) = (c.tags, opt_tags(m)?) {
        *field = t;
    }
    Ok(())
}

/// What a body makes, and how a PATCH changes it.
trait Create: Sized {
    async fn from_body(r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self>;
    /// Work done before the read-modify-write (password hashing).
    async fn prepare_patch(_m: &Map<String, Value>) -> KsResult<Option<String>> {
        Ok(None)
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        prepared: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError>;
    /// Revocations a change calls for.
    async fn after_patch(_r: &Req<'_>, _old: &Self, _new: &Self) -> KsResult<()> {
        Ok(())
    }
}

fn invalid(e: super::KsError) -> stratus_client::identity::IdentityError {
    stratus_client::identity::IdentityError::Invalid(e.message)
}

impl Create for Domain {
    async fn from_body(_r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self> {
        Ok(Domain {
            v: RECORD_VERSION,
            id: new_id(),
            name: need_name(&m)?,
            description: opt_str(&m, "description")?.unwrap_or_default(),
            enabled: opt_bool(&m, "enabled")?.unwrap_or(true),
            tags: opt_tags(&m)?.unwrap_or_default(),
        })
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        _: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError> {
        patch_common(
            m,
            Common {
                name: &mut self.name,
                description: Some(&mut self.description),
                enabled: Some(&mut self.enabled),
                tags: Some(&mut self.tags),
            },
        )
        .map_err(invalid)
    }
    async fn after_patch(r: &Req<'_>, old: &Self, new: &Self) -> KsResult<()> {
        if old.enabled && !new.enabled {
            // Tokens of the domain's users and projects stop working.
            for u in r.store().list::<User>().await? {
                if u.domain_id == new.id {
                    r.store().revoke_disabled(Some(&u.id), None).await?;
                }
            }
            for p in r.store().list::<Project>().await? {
                if p.domain_id == new.id {
                    r.store().revoke_disabled(None, Some(&p.id)).await?;
                }
            }
        }
        Ok(())
    }
}

impl Create for Project {
    async fn from_body(r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self> {
        if opt_bool(&m, "is_domain")? == Some(true) {
            return Err(bad(
                "Projects acting as domains are not supported; create a domain.",
            ));
        }
        let domain_id = domain_for(r, &m).await?;
        if let Some(parent) = opt_str(&m, "parent_id")? {
            if parent != domain_id {
                return Err(bad(
                    "Invalid input for field 'parent_id': nested projects are not supported; the parent must be the project's domain.",
                ));
            }
        }
        Ok(Project {
            v: RECORD_VERSION,
            id: new_id(),
            name: need_name(&m)?,
            domain_id,
            description: opt_str(&m, "description")?.unwrap_or_default(),
            enabled: opt_bool(&m, "enabled")?.unwrap_or(true),
            tags: opt_tags(&m)?.unwrap_or_default(),
        })
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        _: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError> {
        no_domain_change(m, &self.domain_id).map_err(invalid)?;
        patch_common(
            m,
            Common {
                name: &mut self.name,
                description: Some(&mut self.description),
                enabled: Some(&mut self.enabled),
                tags: Some(&mut self.tags),
            },
        )
        .map_err(invalid)
    }
    async fn after_patch(r: &Req<'_>, old: &Self, new: &Self) -> KsResult<()> {
        if old.enabled && !new.enabled {
            r.store().revoke_disabled(None, Some(&new.id)).await?;
        }
        Ok(())
    }
}

/// User attributes the API handles itself; anything else is kept as given.
const USER_FIELDS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "enabled",
    "default_project_id",
    "password",
    "options",
    "links",
    "password_expires_at",
    "federated",
];

async fn password_of(m: &Map<String, Value>) -> KsResult<Option<String>> {
    match opt_str(m, "password")? {
        None => Ok(None),
        Some(p) => Ok(Some(password::hash_async(p).await?)),
    }
}

impl Create for User {
    async fn from_body(r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self> {
        let domain_id = domain_for(r, &m).await?;
        let default_project_id = opt_str(&m, "default_project_id")?;
        if let Some(p) = &default_project_id {
            r.store().need::<Project>(p).await?;
        }
        let extra = m
            .iter()
            .filter(|(k, _)| !USER_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(User {
            v: RECORD_VERSION,
            id: new_id(),
            name: need_name(&m)?,
            domain_id,
            enabled: opt_bool(&m, "enabled")?.unwrap_or(true),
            default_project_id,
            password_hash: password_of(&m).await?,
            extra,
        })
    }
    async fn prepare_patch(m: &Map<String, Value>) -> KsResult<Option<String>> {
        password_of(m).await
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        prepared: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError> {
        no_domain_change(m, &self.domain_id).map_err(invalid)?;
        patch_common(
            m,
            Common {
                name: &mut self.name,
                description: None,
                enabled: Some(&mut self.enabled),
                tags: None,
            },
        )
        .map_err(invalid)?;
        if m.contains_key("default_project_id") {
            self.default_project_id = opt_str(m, "default_project_id").map_err(invalid)?;
        }
        if prepared.is_some() {
            self.password_hash = prepared.clone();
        }
        for (k, v) in m {
            if !USER_FIELDS.contains(&k.as_str()) {
                self.extra.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    }
    async fn after_patch(r: &Req<'_>, old: &Self, new: &Self) -> KsResult<()> {
        if (old.enabled && !new.enabled) || old.password_hash != new.password_hash {
            r.store().revoke_disabled(Some(&new.id), None).await?;
        }
        Ok(())
    }
}

impl Create for Group {
    async fn from_body(r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self> {
        Ok(Group {
            v: RECORD_VERSION,
            id: new_id(),
            name: need_name(&m)?,
            domain_id: domain_for(r, &m).await?,
            description: opt_str(&m, "description")?.unwrap_or_default(),
        })
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        _: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError> {
        no_domain_change(m, &self.domain_id).map_err(invalid)?;
        patch_common(
            m,
            Common {
                name: &mut self.name,
                description: Some(&mut self.description),
                enabled: None,
                tags: None,
            },
        )
        .map_err(invalid)
    }
}

impl Create for Role {
    async fn from_body(r: &Req<'_>, m: Map<String, Value>) -> KsResult<Self> {
        let domain_id = opt_str(&m, "domain_id")?;
        if let Some(d) = &domain_id {
            r.store().need::<Domain>(d).await?;
        }
        Ok(Role {
            v: RECORD_VERSION,
            id: new_id(),
            name: need_name(&m)?,
            domain_id,
            description: opt_str(&m, "description")?,
        })
    }
    fn apply_patch(
        &mut self,
        m: &Map<String, Value>,
        _: &Option<String>,
    ) -> Result<(), stratus_client::identity::IdentityError> {
        if let Some(n) = opt_str(m, "name").map_err(invalid)? {
            self.name = n;
        }
        if m.contains_key("description") {
            self.description = opt_str(m, "description").map_err(invalid)?;
        }
        Ok(())
    }
}

// ----- assignments, membership, implications --------------------------------------------------

async fn assignment_parts(
    r: &Req<'_>,
    kind: &str,
    target: &str,
    actor: &str,
    who: &str,
) -> KsResult<(Target, Actor)> {
    let s = r.store();
    let target = if kind == "projects" {
        s.need::<Project>(target).await?;
        Target::Project(target.into())
    } else {
        s.need::<Domain>(target).await?;
        Target::Domain(target.into())
    };
    let actor = if actor == "users" {
        s.need::<User>(who).await?;
        Actor::User(who.into())
    } else {
        s.need::<Group>(who).await?;
        Actor::Group(who.into())
    };
    Ok((target, actor))
}

async fn grant(
    r: &Req<'_>,
    m: &str,
    kind: &str,
    target: &str,
    actor: &str,
    who: &str,
    role: &str,
) -> KsResult {
    r.admin(match m {
        "PUT" => "identity:create_grant",
        "DELETE" => "identity:revoke_grant",
        _ => "identity:check_grant",
    })?;
    let (target, actor) = assignment_parts(r, kind, target, actor, who).await?;
    r.store().need::<Role>(role).await?;
    let a = Assignment {
        target,
        actor,
        role_id: role.into(),
    };
    match m {
        "PUT" => {
            r.store().grant(&a).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        "GET" | "HEAD" => {
            if r.store().has_assignment(&a).await? {
                Ok(empty(StatusCode::NO_CONTENT))
            } else {
                Err(not_found("grant", &a.key()))
            }
        }
        "DELETE" => {
            if r.store().ungrant(&a).await? {
                Ok(empty(StatusCode::NO_CONTENT))
            } else {
                Err(not_found("grant", &a.key()))
            }
        }
        _ => Err(method_not_allowed()),
    }
}

async fn membership(r: &Req<'_>, m: &str, g: &str, u: &str) -> KsResult {
    r.admin(match m {
        "PUT" => "identity:add_user_to_group",
        "DELETE" => "identity:remove_user_from_group",
        _ => "identity:check_user_in_group",
    })?;
    let s = r.store();
    s.need::<Group>(g).await?;
    s.need::<User>(u).await?;
    match m {
        "PUT" => {
            s.add_member(g, u).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        "GET" | "HEAD" if s.is_member(g, u).await? => Ok(empty(StatusCode::NO_CONTENT)),
        "GET" | "HEAD" => Err(not_found("membership", &format!("user {u} in group {g}"))),
        "DELETE" if s.remove_member(g, u).await? => Ok(empty(StatusCode::NO_CONTENT)),
        "DELETE" => Err(not_found("membership", &format!("user {u} in group {g}"))),
        _ => Err(method_not_allowed()),
    }
}

async fn implication(r: &Req<'_>, m: &str, prior: &str, implied: &str) -> KsResult {
    r.admin(match m {
        "PUT" => "identity:create_implied_role",
        "DELETE" => "identity:delete_implied_role",
        _ => "identity:get_implied_role",
    })?;
    let s = r.store();
    let p = s.need::<Role>(prior).await?;
    let i = s.need::<Role>(implied).await?;
    let exists = || async {
        Ok::<bool, super::KsError>(
            s.implications()
                .await?
                .iter()
                .any(|(a, b)| a == prior && b == implied),
        )
    };
    let body = || {
        json!({
            "role_inference": {
                "prior_role": render::role_brief(&p, &r.v3()),
                "implies": render::role_brief(&i, &r.v3()),
            },
            "links": {"self": self_url(r)},
        })
    };
    match m {
        "PUT" => {
            s.imply(prior, implied).await?;
            Ok(json_response(StatusCode::CREATED, &body()))
        }
        "GET" if exists().await? => Ok(ok(body())),
        "HEAD" if exists().await? => Ok(empty(StatusCode::NO_CONTENT)),
        "DELETE" if s.unimply(prior, implied).await? => Ok(empty(StatusCode::NO_CONTENT)),
        "GET" | "HEAD" | "DELETE" => Err(not_found(
            "implied role",
            &format!("{prior} implies {implied}"),
        )),
        _ => Err(method_not_allowed()),
    }
}

/// `POST /v3/users/{id}/password`: users change their own password.
async fn change_password(r: &Req<'_>, id: &str) -> KsResult {
    if r.who()?.user_id != id {
        return Err(forbidden("identity:change_password"));
    }
    let m = r.entity("user")?;
    let original = opt_str(&m, "original_password")?
        .ok_or_else(|| bad("Invalid input for field 'original_password': required."))?;
    let new = opt_str(&m, "password")?
        .ok_or_else(|| bad("Invalid input for field 'password': required."))?;
    let user = r.store().get::<User>(id).await?;
    if r.store().check_password(user, &original).await.is_none() {
        return Err(super::unauthorized());
    }
    r.store().set_password(id, &new).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ----- what a user may reach ----------------------------------------------------------------

async fn targets_of(r: &Req<'_>, user_id: &str) -> KsResult<BTreeSet<Target>> {
    let groups = r.store().groups_of(user_id).await?;
    Ok(r.store()
        .assignments()
        .await?
        .into_iter()
        .filter(|a| match &a.actor {
            Actor::User(u) => u == user_id,
            Actor::Group(g) => groups.contains(g),
        })
        .map(|a| a.target)
        .collect())
}

/// The projects `user_id` holds a role on.
pub(super) async fn projects_of(r: &Req<'_>, user_id: &str) -> KsResult<Vec<Project>> {
    let mut out = Vec::new();
    for t in targets_of(r, user_id).await? {
        if let Target::Project(p) = t {
            if let Some(p) = r.store().get::<Project>(&p).await? {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// The domains `user_id` holds a role on.
pub(super) async fn domains_of(r: &Req<'_>, user_id: &str) -> KsResult<Vec<Domain>> {
    let mut out = Vec::new();
    for t in targets_of(r, user_id).await? {
        if let Target::Domain(d) = t {
            if let Some(d) = r.store().get::<Domain>(&d).await? {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// `GET /v3/role_assignments` with Keystone's filters, `effective` (group grants become
/// their members' and implied roles are added) and `include_names`.
async fn role_assignments(r: &Req<'_>) -> KsResult {
    let q = &r.query;
    let caller = r.who()?;
    if !r.is_admin() && q.get("user.id") != Some(caller.user_id.as_str()) {
        return Err(forbidden("identity:list_role_assignments"));
    }
    let s = r.store();
    let effective = q.has("effective") && q.get("effective").is_none_or(truthy);
    let names = q.get("include_names").is_some_and(truthy);
    // (assignment, the group it came through)
    let mut list: Vec<(Assignment, Option<String>)> = s
        .assignments()
        .await?
        .into_iter()
        .map(|a| (a, None))
        .collect();
    if effective {
        let mut expanded = Vec::new();
        for (a, _) in list {
            match &a.actor {
                Actor::Group(g) => {
                    for u in s.users_of(g).await? {
                        expanded.push((
                            Assignment {
                                actor: Actor::User(u),
                                ..a.clone()
                            },
                            Some(g.clone()),
                        ));
                    }
                }
                Actor::User(_) => expanded.push((a, None)),
            }
        }
        let implied = s.implications().await?;
        let mut seen: BTreeSet<Assignment> = expanded.iter().map(|(a, _)| a.clone()).collect();
        let mut i = 0;
        while i < expanded.len() {
            let (a, via) = expanded[i].clone();
            for (p, imp) in &implied {
                if *p == a.role_id {
                    let b = Assignment {
                        role_id: imp.clone(),
                        ..a.clone()
                    };
                    if seen.insert(b.clone()) {
                        expanded.push((b, via.clone()));
                    }
                }
            }
            i += 1;
        }
        list = expanded;
    }
    let keep = |a: &Assignment| {
        q.get("user.id")
            .is_none_or(|u| a.actor == Actor::User(u.into()))
            && q.get("group.id")
                .is_none_or(|g| a.actor == Actor::Group(g.into()))
            && q.get("role.id").is_none_or(|x| a.role_id == x)
            && q.get("scope.project.id")
                .is_none_or(|p| a.target == Target::Project(p.into()))
            && q.get("scope.domain.id")
                .is_none_or(|d| a.target == Target::Domain(d.into()))
    };
    list.retain(|(a, _)| keep(a));
    let (roles, users, groups, projects, domains) = if names {
        (
            roles_by_id(r).await?,
            by_id(s.list::<User>().await?),
            by_id(s.list::<Group>().await?),
            by_id(s.list::<Project>().await?),
            by_id(s.list::<Domain>().await?),
        )
    } else {
        Default::default()
    };
    let dom = |id: &str| match domains.get(id) {
        Some(d) => json!({"id": id, "name": d.name}),
        None => json!({"id": id}),
    };
    let v3 = r.v3();
    let items: Vec<Value> = list
        .iter()
        .map(|(a, via)| {
            let mut role = json!({"id": a.role_id});
            if let Some(x) = roles.get(&a.role_id) {
                role["name"] = json!(x.name);
            }
            let (actor_key, actor, actor_path) = match &a.actor {
                Actor::User(u) => {
                    let mut v = json!({"id": u});
                    if let Some(x) = users.get(u) {
                        v["name"] = json!(x.name);
                        v["domain"] = dom(&x.domain_id);
                    }
                    ("user", v, format!("users/{u}"))
                }
                Actor::Group(g) => {
                    let mut v = json!({"id": g});
                    if let Some(x) = groups.get(g) {
                        v["name"] = json!(x.name);
                        v["domain"] = dom(&x.domain_id);
                    }
                    ("group", v, format!("groups/{g}"))
                }
            };
            let (scope, scope_path) = match &a.target {
                Target::Project(p) => {
                    let mut v = json!({"id": p});
                    if let Some(x) = projects.get(p) {
                        v["name"] = json!(x.name);
                        v["domain"] = dom(&x.domain_id);
                    }
                    (json!({"project": v}), format!("projects/{p}"))
                }
                Target::Domain(d) => (json!({"domain": dom(d)}), format!("domains/{d}")),
            };
            let assignment_actor = match via {
                Some(g) => format!("groups/{g}"),
                None => actor_path,
            };
            let mut links = json!({
                "assignment": format!("{v3}/{scope_path}/{assignment_actor}/roles/{}", a.role_id)
            });
            if let (Some(g), Actor::User(u)) = (via, &a.actor) {
                links["membership"] = json!(format!("{v3}/groups/{g}/users/{u}"));
            }
            let mut item = Map::new();
            item.insert("role".into(), role);
            item.insert(actor_key.into(), actor);
            item.insert("scope".into(), scope);
            item.insert("links".into(), links);
            Value::Object(item)
        })
        .collect();
    Ok(ok(render::list("role_assignments", items, self_url(r))))
}

fn by_id<T: Record>(v: Vec<T>) -> HashMap<String, T> {
    v.into_iter().map(|x| (x.id().to_string(), x)).collect()
}
