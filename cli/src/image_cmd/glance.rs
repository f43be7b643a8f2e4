//! A Glance v2 session: the image endpoint of a Keystone login, finding an image by id or
//! name, paging through lists, and streaming image data up and down.
//!
//! Uploads read the file 1 MiB at a time into the request (with its `Content-Length`), so
//! memory does not grow with the image. Downloads go to a temporary file beside the
//! destination, hashed (MD5 and SHA-512) as they are written, and are renamed into place only
//! when size and both hashes match what Glance recorded; otherwise the file is removed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use md5::Md5;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha512};
use tokio::io::AsyncWriteExt;

use crate::os_auth::{check, OsCreds, OsSession};
use crate::progress::Progress;
use crate::swift_cmd::file_stream;

/// Glance's JSON-patch media type.
pub const PATCH_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// `s` as one path segment.
pub fn seg(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The root of the image API from the catalog's URL (which may name a version already).
pub fn api_root(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    e.strip_suffix("/v2").unwrap_or(e).to_string()
}

/// The one image among those a name lookup found (`what` is the name asked for).
pub fn pick_one(what: &str, found: Vec<Value>) -> Result<Value> {
    crate::os_auth::pick_named("image", what, found)
}

/// A JSON-pointer path of one level for property `key` (`~` and `/` escaped).
pub fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// `KEY=VALUE` of `--property`.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expecting KEY=VALUE, got {s:?}")),
    }
}

/// What a download must match.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub size: Option<u64>,
    pub md5: Option<String>,
    pub sha512: Option<String>,
}

impl Expected {
    /// From the image record and the answer's `Content-MD5` (which wins over `checksum`).
    pub fn of(image: &Value, content_md5: Option<&str>) -> Self {
        let hexish = |s: &str, len: usize| {
            let s = s.trim().to_ascii_lowercase();
            (s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())).then_some(s)
        };
        Self {
            size: image["size"].as_u64(),
            md5: content_md5
                .and_then(|m| hexish(m, 32))
                .or_else(|| image["checksum"].as_str().and_then(|m| hexish(m, 32))),
            sha512: (image["os_hash_algo"].as_str() == Some("sha512"))
                .then(|| image["os_hash_value"].as_str().and_then(|h| hexish(h, 128)))
                .flatten(),
        }
    }

    /// Why `size` bytes hashing to `md5` and `sha512` are not the image, if they are not.
    pub fn mismatch(&self, size: u64, md5: &str, sha512: &str) -> Option<String> {
        if let Some(want) = self.size.filter(|w| *w != size) {
            return Some(format!("got {size} bytes, the image has {want}"));
        }
        if let Some(want) = self.md5.as_deref().filter(|w| *w != md5) {
            return Some(format!("MD5 {md5} is not the image's checksum {want}"));
        }
        if let Some(want) = self.sha512.as_deref().filter(|w| *w != sha512) {
            return Some(format!(
                "SHA-512 {}… is not the image's {}…",
                &sha512[..16],
                &want[..16]
            ));
        }
        None
    }
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A file removed when dropped, unless kept (so an error, or an interrupted download,
/// leaves nothing behind).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The image API of a Keystone session.
pub struct Glance {
    s: OsSession,
    root: String,
}

impl Glance {
    /// Logs in (see [`OsCreds::load`]) and finds the image endpoint.
    pub async fn connect(dev_dir: &Path) -> Result<Self> {
        let creds = OsCreds::load(dev_dir)?;
        Self::with_session(OsSession::login(&creds).await?)
    }

    /// The image API of a session already logged in (`stratus server create` finds its
    /// image here).
    pub fn with_session(s: OsSession) -> Result<Self> {
        let root = api_root(&s.endpoint("image")?);
        Ok(Self { s, root })
    }

    /// A request to `<image API>/v2/<path>` (`path` already encoded).
    pub fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.s.request(m, &format!("{}/v2/{path}", self.root))
    }

    async fn send(&self, r: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let r = r
            .send()
            .await
            .with_context(|| format!("{what}: reaching {}", self.root))?;
        check(r, what).await
    }

    async fn json(&self, r: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        self.send(r, what)
            .await?
            .json()
            .await
            .with_context(|| format!("{what}: reading the answer"))
    }

    /// Image `id`.
    pub async fn get(&self, id: &str) -> Result<Value> {
        self.json(
            self.req(Method::GET, &format!("images/{}", seg(id))),
            &format!("showing image {id}"),
        )
        .await
    }

    /// The image `x` names: its id, else its (unique) name.
    pub async fn find(&self, x: &str) -> Result<Value> {
        let r = self
            .req(Method::GET, &format!("images/{}", seg(x)))
            .send()
            .await
            .with_context(|| format!("looking up image {x}: reaching {}", self.root))?;
        if r.status() != StatusCode::NOT_FOUND {
            let r = check(r, &format!("looking up image {x}")).await?;
            return r.json().await.context("reading the image");
        }
        let found = self.list(&[("name".into(), x.into())]).await?;
        pick_one(x, found)
    }

    /// Every image matching `filters` (all pages), sorted by name.
    pub async fn list(&self, filters: &[(String, String)]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut q: Vec<(String, String)> = filters.to_vec();
        q.push(("sort".into(), "name:asc".into()));
        let mut next: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let r = match &next {
                None => self.req(Method::GET, "images").query(&q),
                // `next` is the path under the API root (`/v2/images?…&marker=…`).
                Some(n) => self.s.request(Method::GET, &format!("{}{n}", self.root)),
            };
            let page = self.json(r, "listing images").await?;
            if let Some(imgs) = page["images"].as_array() {
                out.extend(imgs.iter().cloned());
            }
            match page["next"].as_str() {
                Some(n) if seen.insert(n.to_string()) => next = Some(n.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// `POST /v2/images`: a queued image record.
    pub async fn create(&self, body: &Value) -> Result<Value> {
        self.json(
            self.req(Method::POST, "images").json(body),
            "creating the image",
        )
        .await
    }

    /// `PUT /v2/images/{id}/file`: streams `file` as the image's data.
    pub async fn upload(&self, id: &str, file: &Path, label: &str) -> Result<()> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let len = f.metadata().await?.len();
        let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(label, len, 0)));
        let p2 = progress.clone();
        let stream = file_stream(f, move |n| {
            if let Ok(mut p) = p2.lock() {
                p.add(n)
            }
        });
        let r = self
            .req(Method::PUT, &format!("images/{}/file", seg(id)))
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        if let Ok(mut p) = progress.lock() {
            p.finish();
        }
        let r = r.with_context(|| format!("uploading the image data: sending to {}", self.root))?;
        check(r, "uploading the image data").await?;
        Ok(())
    }

    /// `PATCH /v2/images/{id}` with JSON-patch `ops`.
    pub async fn patch(&self, id: &str, ops: &Value) -> Result<Value> {
        self.json(
            self.req(Method::PATCH, &format!("images/{}", seg(id)))
                .header("content-type", PATCH_TYPE)
                .body(ops.to_string()),
            &format!("updating image {id}"),
        )
        .await
    }

    /// `PUT /v2/images/{id}/tags/{tag}`.
    pub async fn add_tag(&self, id: &str, tag: &str) -> Result<()> {
        self.send(
            self.req(
                Method::PUT,
                &format!("images/{}/tags/{}", seg(id), seg(tag)),
            ),
            &format!("tagging image {id} with {tag:?}"),
        )
        .await?;
        Ok(())
    }

    /// `DELETE /v2/images/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.send(
            self.req(Method::DELETE, &format!("images/{}", seg(id))),
            &format!("deleting image {id}"),
        )
        .await?;
        Ok(())
    }

    /// Streams the data of `image` to `out`, checked against its size, MD5 and SHA-512;
    /// the bytes written.
    pub async fn download(&self, image: &Value, out: &Path) -> Result<u64> {
        let id = image["id"].as_str().unwrap_or_default();
        if out.is_dir() {
            bail!("{} is a directory; name the file to write", out.display());
        }
        let r = self
            .send(
                self.req(Method::GET, &format!("images/{}/file", seg(id))),
                &format!("downloading image {id}"),
            )
            .await?;
        if r.status() == StatusCode::NO_CONTENT {
            bail!(
                "image {id} has no data (status {})",
                image["status"].as_str().unwrap_or("?")
            );
        }
        let expected = Expected::of(
            image,
            r.headers().get("content-md5").and_then(|v| v.to_str().ok()),
        );
        let total = r.content_length().or(expected.size).unwrap_or_default();
        let tmp = TempFile {
            path: beside(out, &format!(".stratus-part-{}", std::process::id())),
            keep: false,
        };
        let mut f = tokio::fs::File::create(&tmp.path)
            .await
            .with_context(|| format!("creating {}", tmp.path.display()))?;
        let (mut md5, mut sha) = (Md5::new(), Sha512::new());
        let mut size = 0u64;
        let label = image["name"].as_str().unwrap_or(id);
        let mut progress = Progress::new(label, total, 0);
        let mut body = r.bytes_stream();
        let res: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.with_context(|| format!("downloading image {id}"))?;
                md5.update(&chunk);
                sha.update(&chunk);
                f.write_all(&chunk)
                    .await
                    .with_context(|| format!("writing {}", tmp.path.display()))?;
                size += chunk.len() as u64;
                progress.add(chunk.len() as u64);
            }
            f.flush().await?;
            f.sync_all().await?;
            Ok(())
        }
        .await;
        progress.finish();
        res?;
        let (md5, sha) = (hex::encode(md5.finalize()), hex::encode(sha.finalize()));
        if let Some(why) = expected.mismatch(size, &md5, &sha) {
            bail!(
                "image {id}: the downloaded data is not the image ({why}); nothing was written to {}",
                out.display()
            );
        }
        tokio::fs::rename(&tmp.path, out)
            .await
            .with_context(|| format!("writing {}", out.display()))?;
        let mut tmp = tmp;
        tmp.keep = true;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_resolve_to_exactly_one_image() {
        let img = |id: &str, name: &str| json!({"id": id, "name": name});
        let one = pick_one("web", vec![img("1", "web")]).unwrap();
        assert_eq!(one["id"], "1");
        // Only exact names count.
        let one = pick_one("web", vec![img("1", "web"), img("2", "Web")]).unwrap();
        assert_eq!(one["id"], "1");
        let e = pick_one("web", vec![]).unwrap_err().to_string();
        assert_eq!(e, "no image with a name or ID of 'web' exists");
        let e = pick_one("web", vec![img("1", "web"), img("2", "web")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "2 images are named 'web'; use an ID: 1, 2");
    }

    #[test]
    fn paths_and_pointers_are_escaped() {
        assert_eq!(seg("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(seg("cirros-0.6.2_x86.64~"), "cirros-0.6.2_x86.64~");
        assert_eq!(pointer("os_distro"), "/os_distro");
        assert_eq!(pointer("a/b~c"), "/a~1b~0c");
        assert_eq!(api_root("http://h/image/"), "http://h/image");
        assert_eq!(api_root("http://h/image/v2/"), "http://h/image");
        assert_eq!(parse_property("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert_eq!(parse_property("k=").unwrap(), ("k".into(), String::new()));
        assert!(parse_property("=v").is_err() && parse_property("kv").is_err());
        assert_eq!(
            beside(Path::new("/tmp/x.raw"), ".part"),
            PathBuf::from("/tmp/x.raw.part")
        );
    }

    #[test]
    fn downloads_are_checked_against_the_record() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let sha = "ab".repeat(64);
        let img = json!({"size": 43, "checksum": md5, "os_hash_algo": "sha512",
                         "os_hash_value": sha});
        let e = Expected::of(&img, None);
        assert_eq!(e.md5.as_deref(), Some(md5));
        assert_eq!(e.mismatch(43, md5, &sha), None);
        assert!(e.mismatch(42, md5, &sha).unwrap().contains("42 bytes"));
        assert!(e
            .mismatch(43, &"0".repeat(32), &sha)
            .unwrap()
            .contains("MD5"));
        assert!(e
            .mismatch(43, md5, &"cd".repeat(64))
            .unwrap()
            .contains("SHA-512"));
        // Content-MD5 wins; junk in it is ignored.
        let other = "0".repeat(32);
        assert_eq!(Expected::of(&img, Some(&other)).md5, Some(other));
        assert_eq!(
            Expected::of(&img, Some("bm90IGhleA==")).md5.as_deref(),
            Some(md5)
        );
        // Another algorithm, or nothing recorded: nothing to check.
        let img = json!({"os_hash_algo": "sha256", "os_hash_value": "ab".repeat(32)});
        assert_eq!(Expected::of(&img, None), Expected::default());
    }
}
