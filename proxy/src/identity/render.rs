//! Records as the Keystone API reference shows them (no fields beyond it).

use serde_json::{json, Map, Value};
use stratus_client::identity::{Domain, Group, Project, Role, User};

pub fn domain(d: &Domain, v3: &str) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "enabled": d.enabled,
        "tags": d.tags,
        "options": {},
        "links": {"self": format!("{v3}/domains/{}", d.id)},
    })
}

pub fn project(p: &Project, v3: &str) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": false,
        "parent_id": p.domain_id,
        "tags": p.tags,
        "options": {},
        "links": {"self": format!("{v3}/projects/{}", p.id)},
    })
}

pub fn user(u: &User, v3: &str) -> Value {
    let mut m: Map<String, Value> = u.extra.clone();
    m.insert("id".into(), json!(u.id));
    m.insert("name".into(), json!(u.name));
    m.insert("domain_id".into(), json!(u.domain_id));
    m.insert("enabled".into(), json!(u.enabled));
    if let Some(p) = &u.default_project_id {
        m.insert("default_project_id".into(), json!(p));
    }
    m.insert("password_expires_at".into(), Value::Null);
    m.insert("options".into(), json!({}));
    m.insert(
        "links".into(),
        json!({"self": format!("{v3}/users/{}", u.id)}),
    );
    Value::Object(m)
}

pub fn group(g: &Group, v3: &str) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "domain_id": g.domain_id,
        "description": g.description,
        "links": {"self": format!("{v3}/groups/{}", g.id)},
    })
}

pub fn role(r: &Role, v3: &str) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "domain_id": r.domain_id,
        "description": r.description,
        "options": {},
        "links": {"self": format!("{v3}/roles/{}", r.id)},
    })
}

/// A role as an implication shows it.
pub fn role_brief(r: &Role, v3: &str) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "links": {"self": format!("{v3}/roles/{}", r.id)},
    })
}

/// `{"<key>": [...], "links": {...}}`.
pub fn list(key: &str, items: Vec<Value>, self_url: String) -> Value {
    json!({
        key: items,
        "links": {"self": self_url, "previous": null, "next": null},
    })
}
