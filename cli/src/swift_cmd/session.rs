//! An authenticated session with a Swift API ([`Swift`]) and the credentials that open it
//! ([`Creds`], like `swift -A -U -K`): TempAuth at the auth URL gives a storage URL and a
//! token, every request carries the token, request paths are percent-encoded here, and
//! container and account listings are paged through with markers until an empty page.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::{Method, StatusCode};

use crate::dev;

/// Where the Swift API is and who we are (like `swift -A -U -K`).
#[derive(Args, Debug, Clone)]
pub struct Creds {
    /// Auth URL (`http://HOST:PORT/auth/v1.0`). Default: the local dev cluster's.
    #[arg(short = 'A', long, env = "ST_AUTH", global = true)]
    auth: Option<String>,
    /// `account:user`.
    #[arg(short = 'U', long, env = "ST_USER", global = true, default_value = dev::DEV_USER)]
    user: String,
    /// The user's key.
    #[arg(short = 'K', long, env = "ST_KEY", global = true, default_value = dev::DEV_KEY)]
    key: String,
    /// Dev cluster directory (for the default auth URL, and the `openrc` of `stratus image`,
    /// `server` and `flavor`).
    #[arg(long, env = "STRATUS_DEV_DIR", global = true)]
    dir: Option<PathBuf>,
}

/// An authenticated Swift API session.
pub(crate) struct Swift {
    http: reqwest::Client,
    url: String,
    token: String,
}

fn enc(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

impl Creds {
    /// The dev cluster directory: `--dir`, `$STRATUS_DEV_DIR`, or the default.
    pub(crate) fn dev_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(dev::default_dir)
    }
}

impl Swift {
    /// Authenticates with `c` (at the dev cluster's auth URL when none is given).
    pub(crate) async fn connect(c: &Creds) -> Result<Self> {
        let auth = match &c.auth {
            Some(a) => a.clone(),
            None => dev::read_auth_url(&c.dev_dir())?,
        };
        let http = reqwest::Client::new();
        let r = http
            .get(&auth)
            .header("x-auth-user", &c.user)
            .header("x-auth-key", &c.key)
            .send()
            .await
            .with_context(|| format!("authenticating at {auth}"))?;
        if !r.status().is_success() {
            bail!("authentication failed: {}", r.status());
        }
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (Some(url), Some(token)) = (h("x-storage-url"), h("x-auth-token")) else {
            bail!("the auth answer lacks X-Storage-Url or X-Auth-Token");
        };
        Ok(Self { http, url, token })
    }

    /// The storage URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A request to `path` (`container` or `container/object`, encoded here; empty for the
    /// account), carrying the token.
    pub(crate) fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{}", self.url, enc(path))
        };
        self.http
            .request(m, url)
            .header("x-auth-token", &self.token)
    }

    /// `r` if it succeeded (or is a 304), else an error saying `what` failed, with the
    /// status and the start of the body.
    pub(super) async fn check(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        if r.status().is_success() || r.status() == StatusCode::NOT_MODIFIED {
            return Ok(r);
        }
        let st = r.status();
        let body = r.text().await.unwrap_or_default();
        bail!(
            "{what}: {st} {}",
            body.chars().take(200).collect::<String>()
        )
    }

    /// Every object name of `container`.
    pub(crate) async fn object_names(&self, container: &str) -> Result<Vec<String>> {
        Ok(self
            .names(container, None, None)
            .await?
            .into_iter()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Every listing entry of `container` (following markers).
    pub(super) async fn names(
        &self,
        container: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![("format", "json".to_string()), ("marker", marker.clone())];
            if let Some(p) = prefix {
                q.push(("prefix", p.to_string()));
            }
            if let Some(d) = delimiter {
                q.push(("delimiter", d.to_string()));
            }
            let r = self.req(Method::GET, container).query(&q).send().await?;
            let r = Self::check(
                r,
                &format!(
                    "listing {}",
                    if container.is_empty() {
                        "account"
                    } else {
                        container
                    }
                ),
            )
            .await?;
            let page: Vec<serde_json::Value> = if r.status() == StatusCode::NO_CONTENT {
                Vec::new()
            } else {
                serde_json::from_slice(&r.bytes().await?)?
            };
            let Some(last) = page.last() else { break };
            marker = last["name"]
                .as_str()
                .or(last["subdir"].as_str())
                .unwrap_or_default()
                .to_string();
            out.extend(page);
        }
        Ok(out)
    }
}
