//! `stratus stat | list | upload | download | delete | post`: object storage for users, in
//! the style of the `swift` client, over the Swift API of any proxy (the local dev cluster
//! by default). Large transfers show a progress line on a terminal; downloads are checked
//! against their ETag (MD5) before they are kept.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// Dev cluster directory (for the default auth URL).
    #[arg(long, env = "STRATUS_DEV_DIR", global = true)]
    dir: Option<PathBuf>,
}

/// The object storage commands.
#[derive(Subcommand, Debug)]
pub enum SwiftCmd {
    /// Show account, container or object information.
    Stat {
        container: Option<String>,
        object: Option<String>,
    },
    /// List containers, or the objects of a container.
    List {
        container: Option<String>,
        #[arg(long, short)]
        prefix: Option<String>,
        #[arg(long, short)]
        delimiter: Option<String>,
        /// Show size, date and ETag too.
        #[arg(long, short)]
        long: bool,
    },
    /// Upload files and directory trees (the container is created if needed).
    Upload {
        container: String,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Object name for a single file.
        #[arg(long)]
        object_name: Option<String>,
        /// Upload files larger than this in segments (bytes, or with a K/M/G suffix), as a
        /// static large object unless `--use-dlo`.
        #[arg(long, short = 'S', value_parser = parse_size)]
        segment_size: Option<u64>,
        /// Make segmented uploads dynamic large objects (`X-Object-Manifest`).
        #[arg(long)]
        use_dlo: bool,
        /// Container for the segments (default: `<container>_segments`).
        #[arg(long)]
        segment_container: Option<String>,
    },
    /// Download objects (all of the container's if none are named).
    Download {
        container: String,
        objects: Vec<String>,
        /// Directory to write into.
        #[arg(long, short = 'D', default_value = ".")]
        output_dir: PathBuf,
    },
    /// Delete objects, or a whole container with everything in it.
    Delete {
        container: String,
        objects: Vec<String>,
    },
    /// Create a container or set metadata (`-m key:value`) and ACLs.
    Post {
        container: Option<String>,
        object: Option<String>,
        #[arg(long = "meta", short = 'm')]
        meta: Vec<String>,
        /// The container's read ACL (`account:user`, `account`, `.r:*`, `.rlistings`, …;
        /// empty to clear).
        #[arg(long, short = 'r')]
        read_acl: Option<String>,
        /// The container's write ACL (empty to clear).
        #[arg(long, short = 'w')]
        write_acl: Option<String>,
    },
    /// Print a temporary URL: `stratus tempurl GET 3600 /v1/AUTH_test/c/o KEY`.
    Tempurl {
        /// The method it allows (GET, HEAD, PUT, POST, DELETE).
        method: String,
        /// Seconds it stays valid (or, with --absolute, when it expires).
        seconds: u64,
        /// `/v1/<account>/<container>/<object>` (or `/v1/a/c/<prefix>` with --prefix-based).
        path: String,
        /// The account's or container's Temp-URL-Key.
        key: String,
        /// sha1, sha256 or sha512.
        #[arg(long, default_value = "sha256")]
        digest: String,
        /// `seconds` is an expiry time (seconds since the epoch).
        #[arg(long)]
        absolute: bool,
        /// Sign every object whose name starts with the path's last part.
        #[arg(long)]
        prefix_based: bool,
    },
}

/// `1048576`, `1024K`, `1M`, `2G`.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => Err(format!("not a size: {s:?} (bytes, or with a K/M/G suffix)")),
    }
}

/// The path and query of a temp URL.
fn tempurl(
    method: &str,
    expires: u64,
    path: &str,
    key: &str,
    digest: &str,
    prefix: bool,
) -> Result<String> {
    if !stratus_core::tempurl::DIGESTS.contains(&digest) {
        bail!("--digest must be one of sha1, sha256, sha512");
    }
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    let needed = if prefix { 4 } else { 5 };
    if parts.len() < 5 || !parts[0].is_empty() || parts[1..needed].iter().any(|p| p.is_empty()) {
        bail!("the path must be /v1/<account>/<container>/<object>");
    }
    let signed = if prefix {
        format!("prefix:{path}")
    } else {
        path.to_string()
    };
    let method = method.to_ascii_uppercase();
    let sig = stratus_core::tempurl::sign(digest, key, &method, expires, &signed);
    let mut url = format!("{path}?temp_url_sig={sig}&temp_url_expires={expires}");
    if prefix {
        url.push_str(&format!("&temp_url_prefix={}", parts[4]));
    }
    Ok(url)
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

impl Swift {
    pub(crate) async fn connect(c: &Creds) -> Result<Self> {
        let auth = match &c.auth {
            Some(a) => a.clone(),
            None => dev::read_auth_url(&c.dir.clone().unwrap_or_else(dev::default_dir))?,
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

    async fn check(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
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
    async fn names(
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

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// A progress line on stderr for transfers above 8 MiB, when stderr is a terminal.
struct Progress {
    name: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    on: bool,
}

impl Progress {
    fn new(name: &str, total: u64) -> Self {
        let now = Instant::now();
        Self {
            name: name.to_string(),
            total,
            done: 0,
            start: now,
            last: now,
            on: total > 8 << 20 && std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.on && (self.last.elapsed().as_millis() > 200 || self.done == self.total) {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            let pct = self.done as f64 * 100.0 / self.total.max(1) as f64;
            let width = 30;
            let filled = (pct / 100.0 * width as f64) as usize;
            eprint!(
                "\r{} [{}{}] {:5.1}% {} / {} {:.1} MB/s ",
                self.name,
                "#".repeat(filled.min(width)),
                " ".repeat(width - filled.min(width)),
                pct,
                human(self.done),
                human(self.total),
                self.done as f64 / secs / 1e6
            );
        }
    }

    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if md.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn name_for(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

async fn upload_file(s: &Swift, container: &str, file: &Path, name: &str) -> Result<()> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata().await?.len();
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(name, len)));
    let p2 = progress.clone();
    let stream = file_stream(f, move |n| p2.lock().expect("lock").add(n));
    let r = s
        .req(Method::PUT, &format!("{container}/{name}"))
        .header("content-length", len)
        .header("x-object-meta-mtime", mtime(file))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    progress.lock().expect("lock").finish();
    Swift::check(r, &format!("uploading {name}")).await?;
    println!("{name}");
    Ok(())
}

/// Where a segmented upload goes.
struct Segmented<'a> {
    container: &'a str,
    name: &'a str,
    seg_container: &'a str,
    seg_size: u64,
    dynamic: bool,
}

/// Segments uploaded at once.
const SEGMENT_PARALLELISM: usize = 4;

/// Uploads `file` in segments, then its manifest: an SLO listing each segment's path, ETag
/// and size (checked by the proxy), or a DLO naming the segments' prefix.
async fn upload_large(s: &Swift, file: &Path, len: u64, t: &Segmented<'_>) -> Result<()> {
    let mt = mtime(file);
    let prefix = if t.dynamic {
        format!("{}/{mt}/{len}/{}/", t.name, t.seg_size)
    } else {
        format!("{}/slo/{mt}/{len}/{}/", t.name, t.seg_size)
    };
    let count = len.div_ceil(t.seg_size);
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(t.name, len)));
    let uploads = (0..count).map(|i| {
        let seg_name = format!("{prefix}{i:08}");
        let offset = i * t.seg_size;
        let size = t.seg_size.min(len - offset);
        let progress = &progress;
        async move {
            // Two reads of the segment (the second mostly from the page cache): one for its
            // MD5, sent as the ETag so the proxy refuses a corrupted transfer (422), and one
            // streamed, so memory does not grow with the segment size.
            let open = || async {
                let mut f = tokio::fs::File::open(file).await?;
                tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(offset)).await?;
                anyhow::Ok(f.take(size))
            };
            let mut md5 = Md5::new();
            let mut f = open().await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                md5.update(&buf[..n]);
            }
            let etag = hex::encode(md5.finalize());
            let p2 = progress.clone();
            let body = file_stream(open().await?, move |n| p2.lock().expect("lock").add(n));
            let r = s
                .req(Method::PUT, &format!("{}/{seg_name}", t.seg_container))
                .header("etag", &etag)
                .header("content-length", size)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await?;
            Swift::check(r, &format!("uploading segment {seg_name}")).await?;
            anyhow::Ok(serde_json::json!({
                "path": format!("/{}/{seg_name}", t.seg_container),
                "etag": etag,
                "size_bytes": size,
            }))
        }
    });
    let segments: Vec<serde_json::Value> = futures::stream::iter(uploads)
        .buffered(SEGMENT_PARALLELISM)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    progress.lock().expect("lock").finish();
    let path = format!("{}/{}", t.container, t.name);
    let r = if t.dynamic {
        s.req(Method::PUT, &path)
            .header("x-object-manifest", format!("{}/{prefix}", t.seg_container))
            .header("x-object-meta-mtime", &mt)
            .header("content-length", 0)
            .body("")
            .send()
            .await?
    } else {
        s.req(Method::PUT, &path)
            .query(&[("multipart-manifest", "put")])
            .header("x-object-meta-mtime", &mt)
            .body(serde_json::to_vec(&segments)?)
            .send()
            .await?
    };
    Swift::check(r, &format!("uploading the manifest of {}", t.name)).await?;
    println!("{} ({count} segments)", t.name);
    Ok(())
}

/// Deletes an object; a large object's segments go with it.
async fn delete_object(s: &Swift, container: &str, name: &str) -> Result<()> {
    let path = format!("{container}/{name}");
    let head = s.req(Method::HEAD, &path).send().await?;
    let h = |k: &str| {
        head.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if h("x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let r = s
            .req(Method::DELETE, &path)
            .query(&[("multipart-manifest", "delete")])
            .send()
            .await?;
        let r = Swift::check(r, &format!("deleting {name}")).await?;
        let report = r.text().await.unwrap_or_default();
        if !report.contains("Response Status: 200") {
            bail!("deleting {name}: {report}");
        }
        return Ok(());
    }
    let r = s.req(Method::DELETE, &path).send().await?;
    Swift::check(r, &format!("deleting {name}")).await?;
    if let Some(m) = h("x-object-manifest") {
        let m = percent_encoding::percent_decode_str(&m)
            .decode_utf8_lossy()
            .into_owned();
        if let Some((c, prefix)) = m.split_once('/') {
            for e in s.names(c, Some(prefix), None).await? {
                if let Some(seg) = e["name"].as_str() {
                    let r = s.req(Method::DELETE, &format!("{c}/{seg}")).send().await?;
                    Swift::check(r, &format!("deleting segment {seg}")).await?;
                }
            }
        }
    }
    Ok(())
}

fn mtime(p: &Path) -> String {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!("{:.6}", d.as_secs_f64()))
        .unwrap_or_default()
}

/// The file as a stream of 1 MiB chunks, reporting each chunk's size to `on_chunk`.
fn file_stream(
    f: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    on_chunk: impl FnMut(u64) + Send + 'static,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::unfold(Some((f, on_chunk)), |state| async move {
        let (mut f, mut cb) = state?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                cb(n as u64);
                Some((Ok(buf), Some((f, cb))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

async fn download(s: &Swift, container: &str, name: &str, dir: &Path) -> Result<()> {
    let r = s
        .req(Method::GET, &format!("{container}/{name}"))
        .send()
        .await?;
    let r = Swift::check(r, &format!("downloading {name}")).await?;
    // A large object's ETag is not the MD5 of its bytes (each segment was checked by the
    // proxy instead).
    let large = r.headers().contains_key("x-static-large-object")
        || r.headers().contains_key("x-object-manifest");
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .filter(|_| !large)
        .map(|e| e.trim_matches('"').to_string());
    let total = r.content_length().unwrap_or(0);
    let dest = dir.join(name);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = dest.with_extension(format!("stratus-part-{}", std::process::id()));
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut md5 = Md5::new();
    let mut progress = Progress::new(name, total);
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("downloading {name}"))?;
        md5.update(&chunk);
        out.write_all(&chunk).await?;
        progress.add(chunk.len() as u64);
    }
    progress.finish();
    out.flush().await?;
    let got = hex::encode(md5.finalize());
    if etag.as_deref().is_some_and(|e| e != got) {
        let _ = tokio::fs::remove_file(&tmp).await;
        bail!(
            "{name}: downloaded data does not match its ETag ({got} != {})",
            etag.unwrap_or_default()
        );
    }
    tokio::fs::rename(&tmp, &dest).await?;
    println!("{name}");
    Ok(())
}

fn print_headers(r: &reqwest::Response) {
    let mut hs: Vec<_> = r
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "date" | "content-length" | "x-openstack-request-id"
            )
        })
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    hs.sort();
    let w = hs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in hs {
        println!("{:>w$}: {v}", k);
    }
}

/// Runs an object storage command.
pub async fn run(creds: &Creds, cmd: SwiftCmd) -> Result<()> {
    if let SwiftCmd::Tempurl {
        method,
        seconds,
        path,
        key,
        digest,
        absolute,
        prefix_based,
    } = &cmd
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let expires = if *absolute { *seconds } else { now + seconds };
        println!(
            "{}",
            tempurl(method, expires, path, key, digest, *prefix_based)?
        );
        return Ok(());
    }
    let s = Swift::connect(creds).await?;
    match cmd {
        SwiftCmd::Stat { container, object } => {
            let path = match (&container, &object) {
                (Some(c), Some(o)) => format!("{c}/{o}"),
                (Some(c), None) => c.clone(),
                _ => String::new(),
            };
            let r = Swift::check(s.req(Method::HEAD, &path).send().await?, "stat").await?;
            print_headers(&r);
        }
        SwiftCmd::List {
            container,
            prefix,
            delimiter,
            long,
        } => {
            let c = container.unwrap_or_default();
            for e in s.names(&c, prefix.as_deref(), delimiter.as_deref()).await? {
                if let Some(d) = e["subdir"].as_str() {
                    println!("{d}");
                } else if long {
                    println!(
                        "{:>12} {:26} {:32} {}",
                        e["bytes"].as_u64().unwrap_or(0),
                        e["last_modified"].as_str().unwrap_or(""),
                        e["hash"].as_str().unwrap_or(""),
                        e["name"].as_str().unwrap_or("")
                    );
                } else {
                    println!("{}", e["name"].as_str().unwrap_or(""));
                }
            }
        }
        SwiftCmd::Upload {
            container,
            paths,
            object_name,
            segment_size,
            use_dlo,
            segment_container,
        } => {
            let r = s.req(Method::PUT, &container).send().await?;
            Swift::check(r, &format!("creating container {container}")).await?;
            let mut files = Vec::new();
            for p in &paths {
                walk(p, &mut files)?;
            }
            if object_name.is_some() && files.len() != 1 {
                bail!("--object-name needs exactly one file");
            }
            let seg_container =
                segment_container.unwrap_or_else(|| format!("{container}_segments"));
            for f in files {
                let name = object_name.clone().unwrap_or_else(|| name_for(&f));
                let len = std::fs::metadata(&f)?.len();
                match segment_size {
                    Some(seg) if len > seg => {
                        let r = s.req(Method::PUT, &seg_container).send().await?;
                        Swift::check(r, &format!("creating container {seg_container}")).await?;
                        let target = Segmented {
                            container: &container,
                            name: &name,
                            seg_container: &seg_container,
                            seg_size: seg,
                            dynamic: use_dlo,
                        };
                        upload_large(&s, &f, len, &target).await?;
                    }
                    _ => upload_file(&s, &container, &f, &name).await?,
                }
            }
        }
        SwiftCmd::Download {
            container,
            objects,
            output_dir,
        } => {
            let names = if objects.is_empty() {
                s.object_names(&container).await?
            } else {
                objects
            };
            for n in names {
                download(&s, &container, &n, &output_dir).await?;
            }
        }
        SwiftCmd::Delete { container, objects } => {
            let whole = objects.is_empty();
            let names = if whole {
                s.object_names(&container).await?
            } else {
                objects
            };
            for n in names {
                delete_object(&s, &container, &n).await?;
                println!("{n}");
            }
            if whole {
                let r = s.req(Method::DELETE, &container).send().await?;
                Swift::check(r, &format!("deleting container {container}")).await?;
                println!("{container}");
            }
        }
        SwiftCmd::Tempurl { .. } => unreachable!("handled before connecting"),
        SwiftCmd::Post {
            container,
            object,
            meta,
            read_acl,
            write_acl,
        } => {
            let (path, kind) = match (&container, &object) {
                (Some(c), Some(o)) => (format!("{c}/{o}"), "Object"),
                (Some(c), None) => (c.clone(), "Container"),
                _ => (String::new(), "Account"),
            };
            let method = if kind == "Container" {
                Method::PUT
            } else {
                Method::POST
            };
            let mut req = s.req(method, &path);
            for m in &meta {
                let Some((k, v)) = m.split_once(':') else {
                    bail!("metadata is key:value, got {m:?}");
                };
                req = req.header(format!("x-{}-meta-{k}", kind.to_lowercase()), v);
            }
            if (read_acl.is_some() || write_acl.is_some()) && kind != "Container" {
                bail!("--read-acl and --write-acl apply to a container");
            }
            if let Some(acl) = &read_acl {
                req = req.header("x-container-read", acl);
            }
            if let Some(acl) = &write_acl {
                req = req.header("x-container-write", acl);
            }
            Swift::check(req.send().await?, "post").await?;
        }
    }
    Ok(())
}
