//! Keystone v3 login for the commands that call OpenStack APIs (`stratus image …`, `server …`,
//! `flavor …`): credentials as the `openstack` client takes them, a token, and the catalog's
//! endpoints.
//!
//! Credentials ([`OsCreds::load`]) come from the `OS_*` environment variables when
//! `OS_AUTH_URL` is set (as after `source openrc`), else from the dev cluster's
//! `<dir>/openrc`, which `stratus dev up` writes for the Keystone user `admin`. A login
//! ([`OsSession::login`]) is a password authentication scoped to the project, by name or
//! id, in its domain; the answer's `X-Subject-Token` goes on every request
//! ([`OsSession::request`]) and its catalog says where each service is
//! ([`OsSession::endpoint`], interface `OS_INTERFACE`, `public` by default, in
//! `OS_REGION_NAME` when set). [`check`] turns an error answer of any OpenStack service into
//! its status and message.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A domain as credentials name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    Name(String),
    Id(String),
}

impl DomainRef {
    fn json(&self) -> Value {
        match self {
            DomainRef::Name(n) => json!({ "name": n }),
            DomainRef::Id(i) => json!({ "id": i }),
        }
    }
}

/// The project a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    /// By name, in a domain.
    Name(String, DomainRef),
    Id(String),
}

/// Who logs in, where, and which endpoints to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsCreds {
    /// `OS_AUTH_URL`: Keystone's root (`http://host:port/identity`) or its `/v3`.
    pub auth_url: String,
    pub username: String,
    pub user_domain: DomainRef,
    pub password: String,
    pub project: ProjectRef,
    /// The catalog interface to use (`public`, `internal`, `admin`).
    pub interface: String,
    /// Only endpoints of this region, when set.
    pub region: Option<String>,
    /// Where these came from, for messages (`the OS_* environment`, a file's path).
    pub source: String,
}

impl OsCreds {
    /// Credentials from the `OS_*` environment if `OS_AUTH_URL` is set there, else from
    /// `<dev_dir>/openrc`.
    pub fn load(dev_dir: &Path) -> Result<Self> {
        if std::env::var("OS_AUTH_URL").is_ok_and(|v| !v.trim().is_empty()) {
            return Self::from_vars(|k| std::env::var(k).ok(), "the OS_* environment");
        }
        let path = dev_dir.join("openrc");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "OS_AUTH_URL is not set and there are no dev cluster credentials in {} \
                 (source an openrc file, or run `stratus dev up`)",
                path.display()
            )
        })?;
        let vars = parse_openrc(&text);
        Self::from_vars(|k| vars.get(k).cloned(), &path.display().to_string())
    }

    /// Credentials from `OS_*` variables as `get` gives them (an empty value is unset).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>, source: &str) -> Result<Self> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let need =
            |k: &str| var(k).with_context(|| format!("{k} is not set (credentials from {source})"));
        let domain =
            |prefix: &str| match (var(&format!("{prefix}_ID")), var(&format!("{prefix}_NAME"))) {
                (Some(id), _) => DomainRef::Id(id),
                (None, Some(name)) => DomainRef::Name(name),
                (None, None) => DomainRef::Name("Default".into()),
            };
        if let Some(t) = var("OS_AUTH_TYPE") {
            if !matches!(t.as_str(), "password" | "v3password") {
                bail!(
                    "OS_AUTH_TYPE {t} is not supported (only password) (credentials from {source})"
                );
            }
        }
        let project = match (var("OS_PROJECT_ID"), var("OS_PROJECT_NAME")) {
            (Some(id), _) => ProjectRef::Id(id),
            (None, Some(name)) => ProjectRef::Name(name, domain("OS_PROJECT_DOMAIN")),
            (None, None) => bail!("OS_PROJECT_NAME is not set (credentials from {source})"),
        };
        Ok(Self {
            auth_url: need("OS_AUTH_URL")?,
            username: need("OS_USERNAME")?,
            user_domain: domain("OS_USER_DOMAIN"),
            password: need("OS_PASSWORD")?,
            project,
            interface: var("OS_INTERFACE").unwrap_or_else(|| "public".into()),
            region: var("OS_REGION_NAME"),
            source: source.to_string(),
        })
    }

    /// The body of `POST /v3/auth/tokens`.
    fn auth_body(&self) -> Value {
        let scope = match &self.project {
            ProjectRef::Name(n, d) => json!({"project": {"name": n, "domain": d.json()}}),
            ProjectRef::Id(i) => json!({"project": {"id": i}}),
        };
        json!({"auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {
                    "name": self.username,
                    "domain": self.user_domain.json(),
                    "password": self.password,
                }},
            },
            "scope": scope,
        }})
    }
}

/// The variables an openrc file sets: `[export] NAME=value` lines, the value a shell word
/// (single or double quotes, backslashes); comments, blank and other lines are skipped, and
/// a later line wins.
pub fn parse_openrc(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim();
        let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let name_ok = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            continue;
        }
        if let Some(v) = shell_word(v) {
            out.insert(k.to_string(), v);
        }
    }
    out
}

/// The first word of `s` as a POSIX shell reads it (quotes removed, escapes applied);
/// `None` if a quote is left open.
fn shell_word(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        '\n' => {}
                        c => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    c => out.push(c),
                }
            },
            '\\' => {
                if let Some(c) = chars.next() {
                    out.push(c);
                }
            }
            c if c.is_whitespace() || (c == '#' && out.is_empty()) => break,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Where tokens are issued, from `OS_AUTH_URL` (Keystone's root or its `/v3`).
pub fn tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

/// The URL of the `kind` service at `interface` (and in `region`, when given) in a token's
/// catalog, without a trailing `/`.
pub fn find_endpoint(
    catalog: &Value,
    kind: &str,
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|s| s["type"].as_str() == Some(kind))
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| {
            let iface = e["interface"].as_str().unwrap_or("");
            // `publicURL` is how v2-era configurations name it.
            let iface_ok = iface == interface || format!("{iface}URL") == interface;
            let region_ok = region.is_none_or(|r| {
                e["region_id"].as_str() == Some(r) || e["region"].as_str() == Some(r)
            });
            iface_ok && region_ok
        })
        .and_then(|e| e["url"].as_str())
        .map(|u| u.trim_end_matches('/').to_string())
}

/// The message of an OpenStack error answer: Keystone's `{"error": {"message"}}`, Nova's
/// `{"itemNotFound": {"message"}}`, a `message` or `detail`, or the text (Glance's
/// `404 Not Found\n\nNo image found…`) without its status line, on one line.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let direct = |v: &Value| {
            ["message", "detail", "title"]
                .iter()
                .find_map(|k| v[*k].as_str().map(str::to_string))
        };
        let found = direct(&v).or_else(|| {
            v.as_object()?
                .values()
                .filter(|x| x.is_object())
                .find_map(direct)
        });
        if let Some(m) = found {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let status_line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if lines.len() > 1 && lines[0].eq_ignore_ascii_case(status_line.trim()) {
        lines.remove(0);
    }
    let one = lines.join(" ");
    if one.chars().count() > 500 {
        format!("{}…", one.chars().take(500).collect::<String>())
    } else {
        one
    }
}

/// `r` if it succeeded, else an error `what: <status>: <message>`.
pub async fn check(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let st = r.status();
    let body = r.bytes().await.unwrap_or_default();
    let msg = error_message(st, &body);
    if msg.is_empty() {
        bail!("{what}: {st}")
    }
    bail!("{what}: {st}: {msg}")
}

/// A Keystone token and its catalog (cloning shares the HTTP client's connection pool).
#[derive(Clone)]
pub struct OsSession {
    http: reqwest::Client,
    token: String,
    catalog: Value,
    interface: String,
    region: Option<String>,
}

impl OsSession {
    /// Logs in with `c` (password, scoped to its project).
    pub async fn login(c: &OsCreds) -> Result<Self> {
        let http = reqwest::Client::new();
        let url = tokens_url(&c.auth_url);
        let r = http
            .post(&url)
            .json(&c.auth_body())
            .send()
            .await
            .with_context(|| {
                format!("reaching Keystone at {url} (credentials from {})", c.source)
            })?;
        let r = check(
            r,
            &format!(
                "Keystone login as {} at {url} (credentials from {})",
                c.username, c.source
            ),
        )
        .await?;
        let token = r
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .context("Keystone's answer has no X-Subject-Token")?;
        let body: Value = r.json().await.context("reading Keystone's token")?;
        Ok(Self {
            http,
            token,
            catalog: body["token"]["catalog"].clone(),
            interface: c.interface.clone(),
            region: c.region.clone(),
        })
    }

    /// The URL of the `kind` service (`image`, `object-store`, …) for this session.
    pub fn endpoint(&self, kind: &str) -> Result<String> {
        find_endpoint(&self.catalog, kind, &self.interface, self.region.as_deref()).with_context(
            || {
                format!(
                    "the catalog has no {kind} endpoint with interface {}{}",
                    self.interface,
                    self.region
                        .as_deref()
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                )
            },
        )
    }

    /// A request to `url` carrying the token.
    pub fn request(&self, m: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, url)
            .header("x-auth-token", &self.token)
    }
}

/// The one `kind` among those a name lookup found whose name is exactly `what`.
pub fn pick_named(kind: &str, what: &str, found: Vec<Value>) -> Result<Value> {
    let mut same: Vec<Value> = found
        .into_iter()
        .filter(|i| i["name"].as_str() == Some(what))
        .collect();
    match same.len() {
        0 => bail!("no {kind} with a name or ID of '{what}' exists"),
        1 => Ok(same.remove(0)),
        n => {
            let ids: Vec<&str> = same.iter().filter_map(|i| i["id"].as_str()).collect();
            bail!(
                "{n} {kind}s are named '{what}'; use an ID: {}",
                ids.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENRC: &str = "# Keystone credentials, written by `stratus dev up`.\n\
        export OS_AUTH_URL=http://127.0.0.1:8080/identity\n\
        export OS_IDENTITY_API_VERSION=3\n\
        export OS_USERNAME=admin\n\
        export OS_PASSWORD='it'\\''s \"q\" $x'\n\
        export OS_PROJECT_NAME=admin\n\
        export OS_USER_DOMAIN_NAME=Default\n\
        export OS_PROJECT_DOMAIN_NAME=Default\n\
        export OS_REGION_NAME=RegionOne\n\
        export OS_INTERFACE=public\n";

    #[test]
    fn openrc_files_parse_like_a_shell() {
        let v = parse_openrc(OPENRC);
        assert_eq!(v["OS_AUTH_URL"], "http://127.0.0.1:8080/identity");
        assert_eq!(v["OS_PASSWORD"], "it's \"q\" $x");
        assert_eq!(v["OS_PROJECT_DOMAIN_NAME"], "Default");
        assert_eq!(v.len(), 9);
        let v = parse_openrc(
            "OS_A=\"a\\\"b\\\\c\"\nexport OS_B=x\\ y # note\n  export   OS_C=''\n\
             not a var\nexport 1X=2\nOS_D='open\nOS_E=first\nOS_E=later\n",
        );
        assert_eq!(v["OS_A"], "a\"b\\c");
        assert_eq!(v["OS_B"], "x y");
        assert_eq!(v["OS_E"], "later");
        assert_eq!(v["OS_C"], "");
        assert!(!v.contains_key("OS_D") && !v.contains_key("1X"));
    }

    #[test]
    fn credentials_come_from_the_variables() {
        let vars = parse_openrc(OPENRC);
        let c = OsCreds::from_vars(|k| vars.get(k).cloned(), "openrc").unwrap();
        assert_eq!(c.username, "admin");
        assert_eq!(c.interface, "public");
        assert_eq!(c.region.as_deref(), Some("RegionOne"));
        assert_eq!(
            c.project,
            ProjectRef::Name("admin".into(), DomainRef::Name("Default".into()))
        );
        let body = c.auth_body();
        assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({"name": "admin", "domain": {"name": "Default"}, "password": "it's \"q\" $x"})
        );
        assert_eq!(
            body["auth"]["scope"],
            json!({"project": {"name": "admin", "domain": {"name": "Default"}}})
        );

        // Ids win over names; domains default to Default; missing essentials are named.
        let mut m: BTreeMap<&str, &str> = [
            ("OS_AUTH_URL", "http://h/identity/v3"),
            ("OS_USERNAME", "u"),
            ("OS_PASSWORD", "p"),
            ("OS_PROJECT_ID", "p1"),
            ("OS_PROJECT_NAME", "ignored"),
            ("OS_USER_DOMAIN_ID", "d1"),
            ("OS_INTERFACE", ""),
        ]
        .into();
        let get = |m: &BTreeMap<&str, &str>, k: &str| m.get(k).map(|v| v.to_string());
        let c = OsCreds::from_vars(|k| get(&m, k), "env").unwrap();
        assert_eq!(c.project, ProjectRef::Id("p1".into()));
        assert_eq!(c.user_domain, DomainRef::Id("d1".into()));
        assert_eq!(c.interface, "public");
        assert_eq!(
            c.auth_body()["auth"]["scope"],
            json!({"project": {"id": "p1"}})
        );
        m.remove("OS_PROJECT_ID");
        m.remove("OS_USER_DOMAIN_ID");
        let c = OsCreds::from_vars(|k| get(&m, k), "env").unwrap();
        assert_eq!(
            c.project,
            ProjectRef::Name("ignored".into(), DomainRef::Name("Default".into()))
        );
        assert_eq!(c.user_domain, DomainRef::Name("Default".into()));
        m.remove("OS_PASSWORD");
        let e = OsCreds::from_vars(|k| get(&m, k), "env").unwrap_err();
        assert_eq!(
            e.to_string(),
            "OS_PASSWORD is not set (credentials from env)"
        );
        m.insert("OS_PASSWORD", "p");
        m.insert("OS_AUTH_TYPE", "token");
        assert!(OsCreds::from_vars(|k| get(&m, k), "env").is_err());
    }

    #[test]
    fn tokens_are_asked_for_under_v3() {
        assert_eq!(
            tokens_url("http://h:1/identity"),
            "http://h:1/identity/v3/auth/tokens"
        );
        assert_eq!(
            tokens_url("http://h:1/identity/"),
            "http://h:1/identity/v3/auth/tokens"
        );
        assert_eq!(tokens_url("http://h:1/v3/"), "http://h:1/v3/auth/tokens");
    }

    #[test]
    fn endpoints_are_picked_by_type_interface_and_region() {
        let ep = |i: &str, r: &str, u: &str| json!({"interface": i, "region_id": r, "url": u});
        let cat = json!([
            {"type": "identity", "endpoints": [ep("public", "RegionOne", "http://h/identity")]},
            {"type": "image", "endpoints": [
                ep("admin", "RegionOne", "http://admin/image"),
                ep("public", "RegionTwo", "http://two/image/"),
                ep("public", "RegionOne", "http://h/image/"),
            ]},
        ]);
        assert_eq!(
            find_endpoint(&cat, "image", "public", None).as_deref(),
            Some("http://two/image")
        );
        assert_eq!(
            find_endpoint(&cat, "image", "public", Some("RegionOne")).as_deref(),
            Some("http://h/image")
        );
        assert_eq!(
            find_endpoint(&cat, "image", "adminURL", None).as_deref(),
            Some("http://admin/image")
        );
        assert_eq!(find_endpoint(&cat, "image", "internal", None), None);
        assert_eq!(find_endpoint(&cat, "compute", "public", None), None);
        assert_eq!(find_endpoint(&Value::Null, "image", "public", None), None);
    }

    #[test]
    fn error_messages_are_found_in_every_dialect() {
        let nf = StatusCode::NOT_FOUND;
        assert_eq!(
            error_message(nf, b"404 Not Found\n\nNo image found with ID x\n"),
            "No image found with ID x"
        );
        assert_eq!(
            error_message(
                StatusCode::UNAUTHORIZED,
                br#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#
            ),
            "The request you have made requires authentication."
        );
        assert_eq!(
            error_message(nf, br#"{"itemNotFound": {"code": 404, "message": "gone"}}"#),
            "gone"
        );
        assert_eq!(error_message(nf, b"just text"), "just text");
        assert_eq!(error_message(nf, b"404 Not Found"), "404 Not Found");
        assert_eq!(error_message(nf, b""), "");
        assert_eq!(error_message(nf, &[b'x'; 600]).chars().count(), 501);
    }
}
