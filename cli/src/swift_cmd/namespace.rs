//! `stratus stat | list | post | delete`: the account → container → object namespace —
//! showing headers, listing names, setting metadata and ACLs, and deleting (a container is
//! emptied first; a large object's segments go with it).

use anyhow::{bail, Result};
use reqwest::Method;

use super::segments::delete_object;
use super::session::Swift;

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

/// `stratus stat [CONTAINER [OBJECT]]`: the headers of the account, a container or an object.
pub(super) async fn stat(s: &Swift, container: Option<&str>, object: Option<&str>) -> Result<()> {
    let path = match (container, object) {
        (Some(c), Some(o)) => format!("{c}/{o}"),
        (Some(c), None) => c.to_string(),
        _ => String::new(),
    };
    let r = Swift::check(s.req(Method::HEAD, &path).send().await?, "stat").await?;
    print_headers(&r);
    Ok(())
}

/// `stratus list [CONTAINER]`: the account's containers or a container's objects, one per
/// line (with size, date and ETag when `long`); subdirectories of a `delimiter` listing as
/// their prefix.
pub(super) async fn list(
    s: &Swift,
    container: Option<&str>,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    long: bool,
) -> Result<()> {
    let c = container.unwrap_or_default();
    for e in s.names(c, prefix, delimiter).await? {
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
    Ok(())
}

/// `stratus delete CONTAINER [OBJECT…]`: the objects named, or every object of the container
/// and then the container; each name is printed once it is gone.
pub(super) async fn delete(s: &Swift, container: &str, objects: Vec<String>) -> Result<()> {
    let whole = objects.is_empty();
    let names = if whole {
        s.object_names(container).await?
    } else {
        objects
    };
    for n in names {
        delete_object(s, container, &n).await?;
        println!("{n}");
    }
    if whole {
        let r = s.req(Method::DELETE, container).send().await?;
        Swift::check(r, &format!("deleting container {container}")).await?;
        println!("{container}");
    }
    Ok(())
}

/// `stratus post [CONTAINER [OBJECT]]`: sets metadata (`key:value`) on the account, a
/// container or an object, and a container's ACLs; a container is created if it does not
/// exist (a PUT).
pub(super) async fn post(
    s: &Swift,
    container: Option<&str>,
    object: Option<&str>,
    meta: &[String],
    read_acl: Option<&str>,
    write_acl: Option<&str>,
) -> Result<()> {
    let (path, kind) = match (container, object) {
        (Some(c), Some(o)) => (format!("{c}/{o}"), "Object"),
        (Some(c), None) => (c.to_string(), "Container"),
        _ => (String::new(), "Account"),
    };
    let method = if kind == "Container" {
        Method::PUT
    } else {
        Method::POST
    };
    let mut req = s.req(method, &path);
    for m in meta {
        let Some((k, v)) = m.split_once(':') else {
            bail!("metadata is key:value, got {m:?}");
        };
        req = req.header(format!("x-{}-meta-{k}", kind.to_lowercase()), v);
    }
    if (read_acl.is_some() || write_acl.is_some()) && kind != "Container" {
        bail!("--read-acl and --write-acl apply to a container");
    }
    if let Some(acl) = read_acl {
        req = req.header("x-container-read", acl);
    }
    if let Some(acl) = write_acl {
        req = req.header("x-container-write", acl);
    }
    Swift::check(req.send().await?, "post").await?;
    Ok(())
}
