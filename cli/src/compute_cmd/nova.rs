//! A Nova v2.1 session: the `compute` endpoint of a Keystone login, with every request
//! pinned to microversion 2.1 (`OpenStack-API-Version: compute 2.1`, the only one the
//! Stratus proxy speaks, so answers have exactly the 2.1 shapes); and the Cinder volume
//! lookup `server create --volume` needs.
//!
//! A server, flavor or volume is named by id or name as with the `openstack` client: `GET
//! <collection>/{x}`, and only on 404 a list whose exact-name matches must be one (Nova's
//! `name` filter is a regular expression, so the list is filtered again here). Lists are
//! followed through their `…_links` `next` pages.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::image_cmd::glance::{seg, Glance};
use crate::os_auth::{check, OsCreds, OsSession};

/// The microversion header every Nova request carries.
pub const MICROVERSION: (&str, &str) = ("openstack-api-version", "compute 2.1");

/// The catalog types the block-storage API may be listed under, newest first.
const VOLUME_TYPES: [&str; 2] = ["block-storage", "volumev3"];

/// The root of the compute API from the catalog's URL: kept when it names a version
/// (`…/v2.1`, or `…/v2.1/<project>` in older catalogs), else with `/v2.1` appended.
pub fn compute_root(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    let versioned = e
        .split('/')
        .skip(3) // scheme, empty, host
        .any(|s| s == "v2" || s == "v2.1");
    if versioned {
        e.to_string()
    } else {
        format!("{e}/v2.1")
    }
}

pub use crate::os_auth::pick_named;

/// The `href` of the `next` link in `links` (`servers_links`, `flavors_links`), if any.
pub fn next_link(links: &Value) -> Option<String> {
    links
        .as_array()?
        .iter()
        .find(|l| l["rel"].as_str() == Some("next"))
        .and_then(|l| l["href"].as_str())
        .map(str::to_string)
}

/// The compute API of a Keystone session.
pub struct Nova {
    s: OsSession,
    root: String,
}

impl Nova {
    /// Logs in (see [`OsCreds::load`]) and finds the compute endpoint.
    pub async fn connect(dev_dir: &Path) -> Result<Self> {
        let creds = OsCreds::load(dev_dir)?;
        let s = OsSession::login(&creds).await?;
        let root = compute_root(&s.endpoint("compute")?);
        Ok(Self { s, root })
    }

    /// The image API of the same login.
    pub fn glance(&self) -> Result<Glance> {
        Glance::with_session(self.s.clone())
    }

    /// The block-storage API of the same login.
    pub fn cinder(&self) -> Result<Cinder> {
        let ep = VOLUME_TYPES
            .iter()
            .find_map(|t| self.s.endpoint(t).ok())
            .context("the catalog has no block-storage (volumev3) endpoint")?;
        Ok(Cinder {
            s: self.s.clone(),
            root: ep,
        })
    }

    /// A request to `url` (absolute) carrying the token and the microversion.
    fn at(&self, m: Method, url: &str) -> reqwest::RequestBuilder {
        self.s
            .request(m, url)
            .header(MICROVERSION.0, MICROVERSION.1)
    }

    /// A request to `<compute API>/<path>` (`path` already encoded).
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.at(m, &format!("{}/{path}", self.root))
    }

    async fn send(&self, r: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let r = r
            .send()
            .await
            .with_context(|| format!("{what}: reaching {}", self.root))?;
        check(r, what).await
    }

    /// The answer's JSON (`null` for an empty body, as actions give).
    async fn json(&self, r: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let body = self
            .send(r, what)
            .await?
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).with_context(|| format!("{what}: the answer is not JSON"))
    }

    /// `GET <path>`, or `None` on 404.
    async fn get_opt(&self, path: &str, what: &str) -> Result<Option<Value>> {
        let r = self
            .req(Method::GET, path)
            .send()
            .await
            .with_context(|| format!("{what}: reaching {}", self.root))?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = check(r, what).await?;
        Ok(Some(
            r.json()
                .await
                .with_context(|| format!("{what}: reading the answer"))?,
        ))
    }

    /// Every item of a paged list (`key` is `servers` or `flavors`).
    async fn list_all(&self, path: &str, query: &[(&str, &str)], key: &str) -> Result<Vec<Value>> {
        let what = format!("listing {key}");
        let mut out = Vec::new();
        let mut page = self
            .json(self.req(Method::GET, path).query(query), &what)
            .await?;
        let mut seen = HashSet::new();
        loop {
            if let Some(items) = page[key].as_array() {
                out.extend(items.iter().cloned());
            }
            match next_link(&page[format!("{key}_links")]) {
                Some(n) if seen.insert(n.clone()) => {
                    page = self.json(self.at(Method::GET, &n), &what).await?;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Server `id`, or `None` if there is none (any more).
    pub async fn server(&self, id: &str) -> Result<Option<Value>> {
        let found = self
            .get_opt(
                &format!("servers/{}", seg(id)),
                &format!("showing server {id}"),
            )
            .await?;
        Ok(found.map(|v| v["server"].clone()))
    }

    /// The server `x` names: its id, else its (unique) name.
    pub async fn find_server(&self, x: &str) -> Result<Value> {
        if let Some(s) = self.server(x).await? {
            return Ok(s);
        }
        let found = self
            .list_all("servers/detail", &[("name", x)], "servers")
            .await?;
        pick_named("server", x, found)
    }

    /// Every server the project sees (details), as Nova orders them (newest first).
    pub async fn servers(&self) -> Result<Vec<Value>> {
        self.list_all("servers/detail", &[], "servers").await
    }

    /// `POST /servers`: the new server's id (the 202 answer carries little else).
    pub async fn create_server(&self, body: &Value) -> Result<String> {
        let v = self
            .json(
                self.req(Method::POST, "servers").json(body),
                "creating the server",
            )
            .await?;
        v["server"]["id"]
            .as_str()
            .map(str::to_string)
            .context("creating the server: the answer names no server id")
    }

    /// `POST /servers/{id}/action` with `body`; the answer (`null` when empty).
    pub async fn action(&self, id: &str, body: &Value, what: &str) -> Result<Value> {
        self.json(
            self.req(Method::POST, &format!("servers/{}/action", seg(id)))
                .json(body),
            what,
        )
        .await
    }

    /// `DELETE /servers/{id}`.
    pub async fn delete_server(&self, id: &str) -> Result<()> {
        self.send(
            self.req(Method::DELETE, &format!("servers/{}", seg(id))),
            &format!("deleting server {id}"),
        )
        .await?;
        Ok(())
    }

    /// Flavor `id`, or `None`.
    pub async fn flavor(&self, id: &str) -> Result<Option<Value>> {
        let found = self
            .get_opt(
                &format!("flavors/{}", seg(id)),
                &format!("showing flavor {id}"),
            )
            .await?;
        Ok(found.map(|v| v["flavor"].clone()))
    }

    /// The flavor `x` names: its id, else its (unique) name among every flavor.
    pub async fn find_flavor(&self, x: &str) -> Result<Value> {
        if let Some(f) = self.flavor(x).await? {
            return Ok(f);
        }
        pick_named("flavor", x, self.flavors(true).await?)
    }

    /// Flavors (details): public ones, or with `all` private ones too (what an admin sees
    /// with `is_public=None`).
    pub async fn flavors(&self, all: bool) -> Result<Vec<Value>> {
        let q: &[(&str, &str)] = if all { &[("is_public", "None")] } else { &[] };
        self.list_all("flavors/detail", q, "flavors").await
    }

    /// `POST /flavors`: the new flavor.
    pub async fn create_flavor(&self, body: &Value) -> Result<Value> {
        let v = self
            .json(
                self.req(Method::POST, "flavors").json(body),
                "creating the flavor",
            )
            .await?;
        Ok(v["flavor"].clone())
    }

    /// `DELETE /flavors/{id}`.
    pub async fn delete_flavor(&self, id: &str) -> Result<()> {
        self.send(
            self.req(Method::DELETE, &format!("flavors/{}", seg(id))),
            &format!("deleting flavor {id}"),
        )
        .await?;
        Ok(())
    }
}

/// The block-storage API of a Keystone session, as far as servers need it.
pub struct Cinder {
    s: OsSession,
    root: String,
}

impl Cinder {
    /// The volume `x` names: its id, else its (unique) name.
    pub async fn find_volume(&self, x: &str) -> Result<Value> {
        let url = format!("{}/volumes/{}", self.root, seg(x));
        let r = self
            .s
            .request(Method::GET, &url)
            .send()
            .await
            .with_context(|| format!("looking up volume {x}: reaching {}", self.root))?;
        if r.status() != StatusCode::NOT_FOUND {
            let r = check(r, &format!("looking up volume {x}")).await?;
            let v: Value = r.json().await.context("reading the volume")?;
            return Ok(v["volume"].clone());
        }
        let r = self
            .s
            .request(Method::GET, &format!("{}/volumes/detail", self.root))
            .query(&[("name", x)])
            .send()
            .await
            .with_context(|| format!("listing volumes: reaching {}", self.root))?;
        let v: Value = check(r, "listing volumes")
            .await?
            .json()
            .await
            .context("reading the volume list")?;
        let found = v["volumes"].as_array().cloned().unwrap_or_default();
        pick_named("volume", x, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_compute_root_names_version_2_1() {
        assert_eq!(
            compute_root("http://h:1/compute/v2.1/"),
            "http://h:1/compute/v2.1"
        );
        assert_eq!(compute_root("http://h:8774"), "http://h:8774/v2.1");
        assert_eq!(compute_root("http://h/compute/"), "http://h/compute/v2.1");
        assert_eq!(compute_root("http://h/v2.1/p1"), "http://h/v2.1/p1");
        // A host called v2 is not a version.
        assert_eq!(compute_root("http://v2/nova"), "http://v2/nova/v2.1");
    }

    #[test]
    fn names_resolve_to_exactly_one() {
        let it = |id: &str, name: &str| json!({"id": id, "name": name});
        // Nova's name filter is a regex: `web` also finds `web2`, which must not count.
        let one = pick_named("server", "web", vec![it("1", "web"), it("2", "web2")]).unwrap();
        assert_eq!(one["id"], "1");
        let e = pick_named("flavor", "x", vec![]).unwrap_err().to_string();
        assert_eq!(e, "no flavor with a name or ID of 'x' exists");
        let e = pick_named("server", "w", vec![it("1", "w"), it("2", "w")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "2 servers are named 'w'; use an ID: 1, 2");
    }

    #[test]
    fn next_pages_are_followed_by_link() {
        let links = json!([{"rel": "next", "href": "http://h/servers/detail?marker=a"}]);
        assert_eq!(
            next_link(&links).as_deref(),
            Some("http://h/servers/detail?marker=a")
        );
        assert_eq!(next_link(&json!([{"rel": "self", "href": "x"}])), None);
        assert_eq!(next_link(&Value::Null), None);
    }
}
