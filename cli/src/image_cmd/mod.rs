//! `stratus image create | list | show | set | download | delete`: Glance v2 images, in the
//! style of `openstack image …`, through the catalog of a Keystone login
//! ([`crate::os_auth`]: the `OS_*` environment, else the dev cluster's `openrc`).
//!
//! An `IMAGE` argument is an id or a name, as with the `openstack` client: `GET
//! /v2/images/{x}`, and on 404 a list filtered by `name=x`, which must find exactly one.
//! `create` makes the record, then streams the file as its data; if the upload fails the
//! record is deleted again, so a failed create leaves nothing behind. Transfers show a
//! progress line on a terminal. The Glance client itself is [`glance`].

pub(crate) mod glance;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::identity_cmd::{cell, record_text};
use crate::table;
use glance::{parse_property, pointer, Glance};

const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
const CONTAINER_FORMATS: [&str; 8] = [
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// Options of every image command.
#[derive(Args, Debug, Clone)]
pub struct ImageOpts {
    /// Print JSON (the image documents as Glance gives them) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Who may see an image (one at most).
#[derive(Args, Debug, Clone, Default)]
#[group(multiple = false)]
pub struct Visibility {
    /// Every project sees it (admin only).
    #[arg(long)]
    public: bool,
    /// Only its project sees it.
    #[arg(long)]
    private: bool,
    /// Its project and the projects it is shared with (Glance's default).
    #[arg(long)]
    shared: bool,
    /// Every project may use it, but lists show it only to its own.
    #[arg(long)]
    community: bool,
}

impl Visibility {
    fn value(&self) -> Option<&'static str> {
        [
            (self.public, "public"),
            (self.private, "private"),
            (self.shared, "shared"),
            (self.community, "community"),
        ]
        .into_iter()
        .find_map(|(on, v)| on.then_some(v))
    }
}

/// `stratus image …`
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Create an image and upload its data from a file.
    Create {
        /// The image's name.
        name: String,
        /// The file holding the image's data.
        #[arg(long)]
        file: PathBuf,
        /// The format of the data (checked by Glance as it arrives).
        #[arg(long, value_parser = DISK_FORMATS)]
        disk_format: String,
        /// The container format (`bare`: none).
        #[arg(long, default_value = "bare", value_parser = CONTAINER_FORMATS)]
        container_format: String,
        #[command(flatten)]
        visibility: Visibility,
        /// An extra property (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Disk the image needs to boot (GB).
        #[arg(long, value_name = "GB")]
        min_disk: Option<u32>,
        /// RAM the image needs to boot (MB).
        #[arg(long, value_name = "MB")]
        min_ram: Option<u32>,
        /// Refuse deletes until unprotected.
        #[arg(long)]
        protected: bool,
    },
    /// List the images the project sees, by name.
    List {
        /// Only images of this name.
        #[arg(long)]
        name: Option<String>,
        /// Only images in this status (queued, saving, active, deactivated, …).
        #[arg(long)]
        status: Option<String>,
        /// Only images with this tag (repeatable: all of them).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Show formats, size, checksum, visibility, protection, project and tags too.
        #[arg(long)]
        long: bool,
    },
    /// Show an image.
    Show {
        /// Its id or name.
        image: String,
    },
    /// Change an image's name, properties, tags, protection, visibility or boot needs.
    Set {
        /// Its id or name.
        image: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Set (or replace) an extra property (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// Add a tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Refuse deletes.
        #[arg(long, conflicts_with = "unprotected")]
        protected: bool,
        /// Allow deletes again.
        #[arg(long)]
        unprotected: bool,
        #[command(flatten)]
        visibility: Visibility,
        /// Disk the image needs to boot (GB).
        #[arg(long, value_name = "GB")]
        min_disk: Option<u32>,
        /// RAM the image needs to boot (MB).
        #[arg(long, value_name = "MB")]
        min_ram: Option<u32>,
    },
    /// Download an image's data to a file (checked against its MD5 and SHA-512).
    Download {
        /// Its id or name.
        image: String,
        /// Where to write it.
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete images.
    Delete {
        /// Ids or names.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// Writes a line to stdout; a reader that went away (`stratus image list | head`) is not an
/// error.
pub(crate) fn emit(line: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `println!` through [`emit`].
macro_rules! say {
    ($($t:tt)*) => {
        emit(&format!($($t)*))?
    };
}

/// The `POST /v2/images` body of `create`.
#[allow(clippy::too_many_arguments)]
fn create_body(
    name: &str,
    disk_format: &str,
    container_format: &str,
    visibility: Option<&str>,
    properties: &[(String, String)],
    tags: &[String],
    min_disk: Option<u32>,
    min_ram: Option<u32>,
    protected: bool,
) -> Value {
    let mut m = Map::new();
    // Extra properties first, so a core field given both ways keeps the flag's value.
    for (k, v) in properties {
        m.insert(k.clone(), json!(v));
    }
    m.insert("name".into(), json!(name));
    m.insert("disk_format".into(), json!(disk_format));
    m.insert("container_format".into(), json!(container_format));
    if let Some(v) = visibility {
        m.insert("visibility".into(), json!(v));
    }
    if !tags.is_empty() {
        m.insert("tags".into(), json!(tags));
    }
    if let Some(n) = min_disk {
        m.insert("min_disk".into(), json!(n));
    }
    if let Some(n) = min_ram {
        m.insert("min_ram".into(), json!(n));
    }
    if protected {
        m.insert("protected".into(), json!(true));
    }
    Value::Object(m)
}

/// The JSON-patch operations of `set` (properties are `add`, which replaces one present).
fn set_ops(
    name: Option<&str>,
    properties: &[(String, String)],
    protected: Option<bool>,
    visibility: Option<&str>,
    min_disk: Option<u32>,
    min_ram: Option<u32>,
) -> Value {
    let mut ops = Vec::new();
    let mut replace = |path: &str, v: Value| {
        ops.push(json!({"op": "replace", "path": path, "value": v}));
    };
    if let Some(n) = name {
        replace("/name", json!(n));
    }
    if let Some(v) = visibility {
        replace("/visibility", json!(v));
    }
    if let Some(p) = protected {
        replace("/protected", json!(p));
    }
    if let Some(n) = min_disk {
        replace("/min_disk", json!(n));
    }
    if let Some(n) = min_ram {
        replace("/min_ram", json!(n));
    }
    for (k, v) in properties {
        ops.push(json!({"op": "add", "path": pointer(k), "value": v}));
    }
    Value::Array(ops)
}

/// The list table: id, name, status; with `long` the rest of what `openstack image list
/// --long` shows.
fn list_table(imgs: &[Value], long: bool) -> String {
    let short = ["id", "name", "status"];
    let wide = [
        "id",
        "name",
        "disk_format",
        "container_format",
        "size",
        "checksum",
        "status",
        "visibility",
        "protected",
        "owner",
        "tags",
    ];
    let (keys, header): (&[&str], &[&str]) = if long {
        (
            &wide,
            &[
                "ID",
                "NAME",
                "DISK FORMAT",
                "CONTAINER FORMAT",
                "SIZE",
                "CHECKSUM",
                "STATUS",
                "VISIBILITY",
                "PROTECTED",
                "PROJECT",
                "TAGS",
            ],
        )
    } else {
        (&short, &["ID", "NAME", "STATUS"])
    };
    let rows: Vec<Vec<String>> = imgs
        .iter()
        .map(|i| keys.iter().map(|k| cell(&i[*k])).collect())
        .collect();
    table::render(header, &rows)
}

fn print_image(opts: &ImageOpts, img: &Value) -> Result<()> {
    say!("{}", record_text(opts.json, img)?);
    Ok(())
}

/// `label (id)` of an image, for messages.
fn label(img: &Value) -> String {
    let id = img["id"].as_str().unwrap_or("?");
    match img["name"].as_str() {
        Some(n) if !n.is_empty() => format!("{n} ({id})"),
        _ => id.to_string(),
    }
}

/// Runs `fut`, or on Ctrl-C drops it and fails (`fut`'s destructors clean up).
async fn interruptible<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

/// Creates the image, uploads `file` into it, and deletes it again if the upload fails.
async fn create(g: &Glance, body: &Value, file: &Path) -> Result<Value> {
    // Fail on an unreadable file before a record exists.
    let md =
        std::fs::metadata(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    if !md.is_file() {
        bail!("{} is not a file", file.display());
    }
    let img = g.create(body).await?;
    let id = img["id"].as_str().unwrap_or_default().to_string();
    let name = body["name"].as_str().unwrap_or(&id).to_string();
    if let Err(e) = interruptible(g.upload(&id, file, &name)).await {
        // As the SDK does: a failed upload leaves no queued image behind.
        let cleanup = async {
            if body["protected"] == json!(true) {
                g.patch(
                    &id,
                    &json!([{"op": "replace", "path": "/protected", "value": false}]),
                )
                .await?;
            }
            g.delete(&id).await
        };
        return Err(match cleanup.await {
            Ok(()) => anyhow::anyhow!("{e:#} (image {id} was deleted again)"),
            Err(c) => anyhow::anyhow!("{e:#} (image {id} stays behind, without data: {c:#})"),
        });
    }
    g.get(&id).await
}

/// Runs an image command; `dev_dir` holds the dev cluster's `openrc`, used when
/// `OS_AUTH_URL` is not set.
pub async fn run(dev_dir: &Path, opts: &ImageOpts, cmd: ImageCmd) -> Result<()> {
    let g = Glance::connect(dev_dir).await?;
    match cmd {
        ImageCmd::Create {
            name,
            file,
            disk_format,
            container_format,
            visibility,
            properties,
            tags,
            min_disk,
            min_ram,
            protected,
        } => {
            let body = create_body(
                &name,
                &disk_format,
                &container_format,
                visibility.value(),
                &properties,
                &tags,
                min_disk,
                min_ram,
                protected,
            );
            let img = create(&g, &body, &file).await?;
            print_image(opts, &img)?;
        }
        ImageCmd::List {
            name,
            status,
            tags,
            long,
        } => {
            let mut q: Vec<(String, String)> = Vec::new();
            if let Some(n) = name {
                q.push(("name".into(), n));
            }
            if let Some(s) = status {
                q.push(("status".into(), s));
            }
            q.extend(tags.into_iter().map(|t| ("tag".to_string(), t)));
            let imgs = g.list(&q).await?;
            if opts.json {
                say!("{}", serde_json::to_string_pretty(&imgs)?);
            } else {
                say!("{}", list_table(&imgs, long));
            }
        }
        ImageCmd::Show { image } => {
            let img = g.find(&image).await?;
            print_image(opts, &img)?;
        }
        ImageCmd::Set {
            image,
            name,
            properties,
            tags,
            protected,
            unprotected,
            visibility,
            min_disk,
            min_ram,
        } => {
            let protected = match (protected, unprotected) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let ops = set_ops(
                name.as_deref(),
                &properties,
                protected,
                visibility.value(),
                min_disk,
                min_ram,
            );
            let no_ops = ops.as_array().is_some_and(Vec::is_empty);
            if no_ops && tags.is_empty() {
                bail!("nothing to change: give --name, --property, --tag, --protected, --unprotected, a visibility, --min-disk or --min-ram");
            }
            let img = g.find(&image).await?;
            let id = img["id"].as_str().unwrap_or_default().to_string();
            if !no_ops {
                g.patch(&id, &ops).await?;
            }
            for t in &tags {
                g.add_tag(&id, t).await?;
            }
            let img = g.get(&id).await?;
            if opts.json {
                say!("{}", serde_json::to_string_pretty(&img)?);
            } else {
                say!("Updated image {}", label(&img));
            }
        }
        ImageCmd::Download { image, file } => {
            let img = g.find(&image).await?;
            let n = interruptible(g.download(&img, &file)).await?;
            if opts.json {
                say!(
                    "{}",
                    json!({"id": img["id"], "file": file.display().to_string(), "bytes": n,
                           "checksum": img["checksum"], "os_hash_value": img["os_hash_value"]})
                );
            } else {
                say!(
                    "Saved image {} to {} ({n} bytes, MD5 and SHA-512 checked)",
                    label(&img),
                    file.display()
                );
            }
        }
        ImageCmd::Delete { images } => {
            let mut deleted = Vec::new();
            let mut failed = 0;
            for x in &images {
                let res = async {
                    let img = g.find(x).await?;
                    g.delete(img["id"].as_str().unwrap_or_default()).await?;
                    Ok::<_, anyhow::Error>(img)
                }
                .await;
                match res {
                    Ok(img) => {
                        if !opts.json {
                            say!("Deleted image {}", label(&img));
                        }
                        deleted.push(img["id"].clone());
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed += 1;
                    }
                }
            }
            if opts.json {
                say!("{}", json!({ "deleted": deleted }));
            }
            if failed > 0 {
                bail!("{failed} of {} images could not be deleted", images.len());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sends_what_was_asked() {
        let props = vec![
            ("os_distro".to_string(), "cirros".to_string()),
            ("name".to_string(), "from-property".to_string()),
        ];
        let b = create_body(
            "cirros",
            "raw",
            "bare",
            Some("private"),
            &props,
            &["a".into(), "b".into()],
            Some(1),
            None,
            true,
        );
        assert_eq!(
            b,
            json!({"name": "cirros", "disk_format": "raw", "container_format": "bare",
                   "visibility": "private", "os_distro": "cirros", "tags": ["a", "b"],
                   "min_disk": 1, "protected": true})
        );
        let b = create_body("x", "qcow2", "bare", None, &[], &[], None, None, false);
        assert_eq!(
            b,
            json!({"name": "x", "disk_format": "qcow2", "container_format": "bare"})
        );
    }

    #[test]
    fn set_patches_with_replace_and_add() {
        let ops = set_ops(
            Some("new"),
            &[("a/b".into(), "1".into())],
            Some(false),
            Some("community"),
            None,
            Some(512),
        );
        assert_eq!(
            ops,
            json!([
                {"op": "replace", "path": "/name", "value": "new"},
                {"op": "replace", "path": "/visibility", "value": "community"},
                {"op": "replace", "path": "/protected", "value": false},
                {"op": "replace", "path": "/min_ram", "value": 512},
                {"op": "add", "path": "/a~1b", "value": "1"},
            ])
        );
        assert_eq!(set_ops(None, &[], None, None, None, None), json!([]));
    }

    #[test]
    fn lists_show_the_columns_asked_for() {
        let imgs = vec![json!({"id": "i1", "name": "cirros", "status": "active",
            "disk_format": "raw", "container_format": "bare", "size": 20,
            "checksum": "c", "visibility": "shared", "protected": false,
            "owner": "p", "tags": ["x", "y"]})];
        assert_eq!(
            list_table(&imgs, false),
            "ID  NAME    STATUS\ni1  cirros  active"
        );
        let long = list_table(&imgs, true);
        assert!(long.starts_with("ID  NAME    DISK FORMAT"), "{long}");
        assert!(
            long.ends_with("i1  cirros  raw          bare              20    c         active  shared      false      p        x, y"),
            "{long}"
        );
        assert_eq!(label(&imgs[0]), "cirros (i1)");
        assert_eq!(label(&json!({"id": "i2", "name": null})), "i2");
    }

    #[test]
    fn one_visibility_at_most() {
        assert_eq!(Visibility::default().value(), None);
        let v = Visibility {
            community: true,
            ..Default::default()
        };
        assert_eq!(v.value(), Some("community"));
    }
}
