//! `stratus stat | list | upload | download | delete | post`: object storage for users, in
//! the style of the `swift` client, over the Swift API of any proxy (the local dev cluster
//! by default). Large transfers show a progress line on a terminal; downloads are checked
//! against their ETag (MD5) before they are kept.
//!
//! This module holds the commands and their flags and sends each to its module:
//! [`session`] (auth, requests, listings; also used by `stratus bench`), [`transfer`]
//! (whole files up and down, progress), [`segments`] (large objects), [`namespace`] (stat,
//! list, post, delete). `tempurl` is signed here: it needs no session.

mod namespace;
mod segments;
mod session;
mod transfer;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;
use reqwest::Method;

use segments::Segmented;
pub use session::Creds;
pub(crate) use session::Swift;
pub(crate) use transfer::file_stream;

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
            namespace::stat(&s, container.as_deref(), object.as_deref()).await?;
        }
        SwiftCmd::List {
            container,
            prefix,
            delimiter,
            long,
        } => {
            namespace::list(
                &s,
                container.as_deref(),
                prefix.as_deref(),
                delimiter.as_deref(),
                long,
            )
            .await?;
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
                transfer::walk(p, &mut files)?;
            }
            if object_name.is_some() && files.len() != 1 {
                bail!("--object-name needs exactly one file");
            }
            let seg_container =
                segment_container.unwrap_or_else(|| format!("{container}_segments"));
            for f in files {
                let name = object_name
                    .clone()
                    .unwrap_or_else(|| transfer::name_for(&f));
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
                        segments::upload_large(&s, &f, len, &target).await?;
                    }
                    _ => transfer::upload_file(&s, &container, &f, &name).await?,
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
                transfer::download(&s, &container, &n, &output_dir).await?;
            }
        }
        SwiftCmd::Delete { container, objects } => {
            namespace::delete(&s, &container, objects).await?;
        }
        SwiftCmd::Tempurl { .. } => unreachable!("handled before connecting"),
        SwiftCmd::Post {
            container,
            object,
            meta,
            read_acl,
            write_acl,
        } => {
            namespace::post(
                &s,
                container.as_deref(),
                object.as_deref(),
                &meta,
                read_acl.as_deref(),
                write_acl.as_deref(),
            )
            .await?;
        }
    }
    Ok(())
}
