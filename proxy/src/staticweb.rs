//! Static web sites served from containers (Swift's `staticweb` middleware).
//!
//! A container's owner turns it on with metadata: `X-Container-Meta-Web-Index` (the object
//! served for the container and for each pseudo-directory), `-Web-Listings` (HTML listings
//! where there is no index), `-Web-Listings-CSS` (a style sheet those link to),
//! `-Web-Listings-Label` (what the listings' title shows instead of `/v1/account`),
//! `-Web-Error` (`<status><suffix>` objects served for 401 and 404), and
//! `-Web-Directory-Type` (the content type of directory markers, `application/directory`
//! by default: a marker of at most 1 byte reads as missing, so its path resolves as a
//! directory).
//!
//! Only GET and HEAD without a token are served this way (with a token, only when they
//! carry `X-Web-Mode: true`); a temp URL never is. Every read it makes on the requester's
//! behalf (the object, the index, the listing, the error page) is judged by the same ACLs
//! as a direct read: a container is a web site to strangers only if `X-Container-Read`
//! lets them in (`.r:*`, and `.rlistings` for its root and listings).
//!
//! It sits between the router and the handlers, as Swift's middleware sits in its pipeline:
//! it answers by calling [`large::get`] and the listing reads, and the HTML it writes is
//! Swift 2.30.1's, byte for byte.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_proto::storage as pb;

use crate::acl::Identity;
use crate::error::{not_found, SwiftError, SwiftResult};
use crate::headers::{hv, iso_date, meta_value, truthy};
use crate::names::Query;
use crate::ops::listing::{list, ListQuery, LISTING_LIMIT};
use crate::ops::object::ObjPath;
use crate::proxy::Proxy;
use crate::router::check_names;
use crate::{container, large};

/// A container's web settings, as its metadata holds them (each trimmed; empty if unset).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `X-Container-Meta-Web-Index`: the object name served for a directory.
    pub index: String,
    /// `X-Container-Meta-Web-Error`: the suffix of error pages (`404error.html`).
    pub error: String,
    /// `X-Container-Meta-Web-Listings`: any value turns directory handling on; a true one
    /// (Swift's `config_true_value`) also shows the listings.
    pub listings: String,
    /// `X-Container-Meta-Web-Listings-CSS`: a style sheet listings link to.
    pub listings_css: String,
    /// `X-Container-Meta-Web-Listings-Label`: shown in titles in place of `/v1/account`.
    pub listings_label: String,
    /// `X-Container-Meta-Web-Directory-Type`: the content type of directory markers.
    pub dir_type: String,
}

impl WebConfig {
    /// The settings in a container's metadata.
    pub fn from_meta(meta: &[pb::MetaItem]) -> Self {
        let get = |k: &str| {
            meta_value(meta, &format!("x-container-meta-{k}"))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        Self {
            index: get("web-index"),
            error: get("web-error"),
            listings: get("web-listings"),
            listings_css: get("web-listings-css"),
            listings_label: get("web-listings-label"),
            dir_type: get("web-directory-type"),
        }
    }

    /// Whether the container is a web site at all (an index or listings set).
    fn is_site(&self) -> bool {
        !self.index.is_empty() || !self.listings.is_empty()
    }

    /// The content type that marks a directory.
    fn dir_type(&self) -> &str {
        if self.dir_type.is_empty() {
            "application/directory"
        } else {
            &self.dir_type
        }
    }
}

/// Whether a request is served as a web page: a GET or HEAD without a token, or with
/// `X-Web-Mode: true`, and not through a temp URL.
pub fn applies(who: &Identity, h: &HeaderMap, q: &Query) -> bool {
    let web_mode = hv(h, "x-web-mode").is_some_and(truthy);
    !q.has("temp_url_sig") && (*who == Identity::Anonymous || web_mode)
}

/// One web request: who asks, for what, and the container's settings.
pub struct Site<'a> {
    /// The proxy.
    pub p: &'a Arc<Proxy>,
    /// The requester (every read is judged by their rights).
    pub who: &'a Identity,
    /// The account.
    pub account: &'a str,
    /// The container.
    pub container: &'a str,
    /// The request path, percent-decoded (Swift's `PATH_INFO`).
    pub path_info: &'a str,
    /// `scheme://host` of the request, for redirects.
    pub host_url: &'a str,
    /// The query string.
    pub q: &'a Query,
    /// The request headers.
    pub h: &'a HeaderMap,
    /// A HEAD (subrequests that read objects are HEADs too).
    pub head: bool,
}

impl Site<'_> {
    /// The container's web settings (none if it does not exist or cannot be read).
    async fn config(&self) -> WebConfig {
        match self.p.db_info(self.account, self.container).await {
            Ok(i) if i.exists => WebConfig::from_meta(&i.meta),
            _ => WebConfig::default(),
        }
    }

    /// GET or HEAD of the container itself. `None`: not a web site, so it gets its usual
    /// answer (a listing in JSON, XML or text).
    pub async fn container(&self) -> SwiftResult<Option<Response>> {
        let cfg = self.config().await;
        if let Err(e) = self.may_list().await {
            return self.error_page(&cfg, Err(e)).await.map(Some);
        }
        if !cfg.is_site() {
            if hv(self.h, "x-web-mode").is_some_and(truthy) {
                return Err(not_found());
            }
            return Ok(None);
        }
        if !self.path_info.ends_with('/') {
            return Ok(Some(self.redirect_with_slash()));
        }
        if cfg.index.is_empty() {
            return self.listing(&cfg, "").await.map(Some);
        }
        let r = self.read_object(&cfg.index, self.h, self.q).await;
        let status = status_of(&r);
        if status == StatusCode::NOT_FOUND {
            return self.listing(&cfg, "").await.map(Some);
        }
        if !status.is_success() && !status.is_redirection() {
            return self.error_page(&cfg, r).await.map(Some);
        }
        r.map(Some)
    }

    /// GET or HEAD of an object path: the object itself, else the index of the directory
    /// it names, else a redirect to that directory (`dir` → `dir/`), else its listing.
    pub async fn object(&self, object: &str) -> SwiftResult<Response> {
        let r = self.read_object(object, self.h, self.q).await;
        let cfg = self.config().await;
        let status = status_of(&r);
        if status.is_success() || status.is_redirection() {
            let marker = r.as_ref().is_ok_and(|r| {
                let len: u64 = hv(r.headers(), "content-length")
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                hv(r.headers(), "content-type") == Some(cfg.dir_type()) && len <= 1
            });
            if !marker {
                return r;
            }
        } else if status != StatusCode::NOT_FOUND {
            // As Swift: error pages are for 404s found here, not for other failures.
            return r;
        }
        if !cfg.is_site() {
            return r;
        }
        let slash = self.path_info.ends_with('/');
        if !cfg.index.is_empty() {
            let dir = if object.ends_with('/') {
                object.to_string()
            } else {
                format!("{object}/")
            };
            let r = self
                .read_object(&format!("{dir}{}", cfg.index), self.h, self.q)
                .await;
            let status = status_of(&r);
            if status.is_success() || status.is_redirection() {
                return if slash {
                    r
                } else {
                    Ok(self.redirect_with_slash())
                };
            }
            if status != StatusCode::NOT_FOUND {
                return r;
            }
        }
        if slash {
            return self.listing(&cfg, object).await;
        }
        // `dir` without its slash: a redirect if anything is under `dir/`.
        let q = ListQuery {
            prefix: format!("{object}/"),
            delimiter: "/".into(),
            limit: 1,
            ..Default::default()
        };
        match self.list(&q).await {
            Ok(entries) if !entries.is_empty() => Ok(self.redirect_with_slash()),
            _ => self.error_page(&cfg, Err(not_found())).await,
        }
    }

    /// A GET (or HEAD) of an object of the container, as the requester.
    async fn read_object(&self, object: &str, h: &HeaderMap, q: &Query) -> SwiftResult<Response> {
        check_names(self.container, object)?;
        self.p
            .access(self.who, true, self.account, Some(self.container), true, h)
            .await?;
        let path = ObjPath {
            account: self.account.to_string(),
            container: self.container.to_string(),
            object: object.to_string(),
        };
        // Links in a web site are followed with the stranger's rights, as a direct read.
        let reader = crate::ops::symlink::Reader::Token {
            who: self.who.clone(),
            account: self.account.to_string(),
        };
        large::get(self.p, &reader, &path, q, h, self.head).await
    }

    /// Whether the requester may list the container (its root and listings need it).
    async fn may_list(&self) -> SwiftResult<crate::acl::Decision> {
        self.p
            .access(
                self.who,
                true,
                self.account,
                Some(self.container),
                false,
                self.h,
            )
            .await
    }

    /// A page of the container's listing, as the requester.
    async fn list(&self, q: &ListQuery) -> SwiftResult<Vec<pb::ListEntry>> {
        self.may_list().await?;
        list(self.p, self.account, self.container, q).await
    }

    /// The HTML listing of the directory `prefix` (`""` for the container's root).
    async fn listing(&self, cfg: &WebConfig, prefix: &str) -> SwiftResult<Response> {
        let label = label(self.path_info, &cfg.listings_label);
        let css = (!cfg.listings_css.is_empty()).then(|| css_path(&cfg.listings_css, prefix));
        if !truthy(&cfg.listings) {
            let body = disabled_html(&label, css.as_deref(), &cfg.index);
            let e = SwiftError::new(StatusCode::NOT_FOUND, body);
            return self.error_page(cfg, Err(e)).await;
        }
        let q = ListQuery {
            prefix: prefix.to_string(),
            delimiter: "/".into(),
            limit: LISTING_LIMIT,
            ..Default::default()
        };
        let entries = match self.list(&q).await {
            Ok(e) => e,
            Err(e) => return self.error_page(cfg, Err(e)).await,
        };
        if !prefix.is_empty() && entries.is_empty() {
            return self.error_page(cfg, Err(not_found())).await;
        }
        Ok(html(
            StatusCode::OK,
            listing_html(&label, css.as_deref(), prefix, &entries),
        ))
    }

    /// `orig` (a failure), or the container's error page for its status in its place:
    /// the object `<status><Web-Error>`, served with the original status.
    async fn error_page(
        &self,
        cfg: &WebConfig,
        orig: SwiftResult<Response>,
    ) -> SwiftResult<Response> {
        if cfg.error.is_empty() {
            return orig;
        }
        let status = status_of(&orig);
        let name = format!("{}{}", status.as_u16(), cfg.error);
        // A fresh GET, as Swift's: only the Referer of the request goes with it.
        let mut h = HeaderMap::new();
        if let Some(r) = self.h.get("referer") {
            h.insert("referer", r.clone());
        }
        match self.read_object(&name, &h, &Query::parse(None)).await {
            Ok(mut page) if page.status().is_success() => {
                *page.status_mut() = status;
                Ok(page)
            }
            _ => orig,
        }
    }

    /// 301 to the same path with a `/` added.
    fn redirect_with_slash(&self) -> Response {
        let body =
            "<html><h1>Moved Permanently</h1><p>The resource has moved permanently.</p></html>";
        let mut r = html(StatusCode::MOVED_PERMANENTLY, body.to_string());
        if let Ok(v) = HeaderValue::from_str(&slash_location(self.host_url, self.path_info)) {
            r.headers_mut().insert("location", v);
        }
        r
    }
}

/// An HTML answer. Its `Content-Length` is set here, so a HEAD keeps it once the body is
/// dropped (as Swift's HEAD of a listing tells the length of its GET).
fn html(status: StatusCode, body: String) -> Response {
    let len = body.len();
    let mut r = (status, body).into_response();
    let hs = r.headers_mut();
    hs.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    hs.insert("content-length", HeaderValue::from(len));
    r
}

/// The status of an answer, failed or not.
fn status_of(r: &SwiftResult<Response>) -> StatusCode {
    match r {
        Ok(r) => r.status(),
        Err(e) => e.status,
    }
}

/// Where a redirect to `path/` points: absolute, as Swift's are (`http://host:port/...`,
/// with the scheme's default port dropped), and percent-quoted.
pub fn slash_location(host_url: &str, path_info: &str) -> String {
    let host = host_url
        .strip_suffix(":80")
        .filter(|_| host_url.starts_with("http://"))
        .or_else(|| {
            host_url
                .strip_suffix(":443")
                .filter(|_| host_url.starts_with("https://"))
        })
        .unwrap_or(host_url);
    format!("{host}{}", quote(&format!("{path_info}/"), b"/"))
}

/// The title of a listing: the request's path, or with `X-Container-Meta-Web-Listings-Label`
/// that label followed by the path within the container.
pub fn label(path_info: &str, listings_label: &str) -> String {
    if listings_label.is_empty() {
        return path_info.to_string();
    }
    let within: Vec<&str> = path_info.split('/').skip(4).collect();
    format!("{listings_label}/{}", within.join("/"))
}

/// The link to the style sheet from a listing of `prefix`: relative to the container's
/// root (one `../` per directory level) unless it is absolute or a URL.
pub fn css_path(css: &str, prefix: &str) -> String {
    if css.starts_with('/') || css.starts_with("http://") || css.starts_with("https://") {
        quote(css, b":/")
    } else {
        format!(
            "{}{}",
            "../".repeat(prefix.matches('/').count()),
            quote(css, b"/")
        )
    }
}

/// Python's `urllib.parse.quote` of the UTF-8 bytes: letters, digits, `_.-~` and `safe`
/// stay, everything else is `%XX`.
pub fn quote(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `html.escape` (quotes included): XML's escaping, with `'` as Python writes it.
pub fn html_escape(s: &str) -> String {
    stratus_core::xml::escape(s).replace("&apos;", "&#x27;")
}

/// Swift's `human_readable`: `1023`, `1Ki`, `2Mi` (each step rounded, halves to even).
pub fn human_readable(n: u64) -> String {
    const SUFFIXES: &[u8] = b"KMGTPEZY";
    let mut v = n as f64;
    let mut index = None;
    while v >= 1024.0 && index.map_or(0, |i| i + 1) < SUFFIXES.len() {
        let i = index.map_or(0, |i| i + 1);
        index = Some(i);
        v = (v / 1024.0).round_ties_even();
    }
    match index {
        None => format!("{v:.0}"),
        Some(i) => format!("{v:.0}{}i", SUFFIXES[i] as char),
    }
}

const DOCTYPE: &str = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n";

fn css_link(href: &str) -> String {
    format!("  <link rel=\"stylesheet\" type=\"text/css\" href=\"{href}\" />\n")
}

/// The 404 page of a directory with listings turned off (and no index found in it).
pub fn disabled_html(label: &str, css: Option<&str>, index: &str) -> String {
    let mut b = format!(
        "{DOCTYPE}<html>\n<head>\n<title>Listing of {}</title>\n",
        html_escape(label)
    );
    match css {
        Some(href) => b.push_str(&css_link(href)),
        None => b.push_str(
            "  <style type=\"text/css\">\n   h1 {font-size: 1em; font-weight: bold;}\n   p {font-size: 2}\n  </style>\n",
        ),
    }
    b.push_str(
        "</head>\n<body>  <h1>Web Listing Disabled</h1>   <p>The owner of this web site has disabled web listing.   <p>If you are the owner of this web site, you can enable   web listing by setting X-Container-Meta-Web-Listings.</p>",
    );
    if !index.is_empty() {
        // Swift writes the index name unescaped; escaped here (the same bytes for any
        // name without `&<>"'`).
        b.push_str(&format!(
            "<h1>Index File Not Found</h1> <p>The owner of this web site has set  <b>X-Container-Meta-Web-Index: {}</b>.  However, this file is not found.</p>",
            html_escape(index)
        ));
    }
    b.push_str(" </body>\n</html>\n");
    b
}

/// The HTML listing of directory `prefix`: a parent link (below the root), then its
/// subdirectories, then its objects with size, date and classes from their content type.
pub fn listing_html(
    label: &str,
    css: Option<&str>,
    prefix: &str,
    entries: &[pb::ListEntry],
) -> String {
    let label = html_escape(label);
    let mut b = format!("{DOCTYPE}<html>\n <head>\n  <title>Listing of {label}</title>\n");
    match css {
        Some(href) => b.push_str(&css_link(href)),
        None => b.push_str(concat!(
            "  <style type=\"text/css\">\n",
            "   h1 {font-size: 1em; font-weight: bold;}\n",
            "   th {text-align: left; padding: 0px 1em 0px 1em;}\n",
            "   td {padding: 0px 1em 0px 1em;}\n",
            "   a {text-decoration: none;}\n",
            "  </style>\n"
        )),
    }
    b.push_str(&format!(
        concat!(
            " </head>\n",
            " <body>\n",
            "  <h1 id=\"title\">Listing of {label}</h1>\n",
            "  <table id=\"listing\">\n",
            "   <tr id=\"heading\">\n",
            "    <th class=\"colname\">Name</th>\n",
            "    <th class=\"colsize\">Size</th>\n",
            "    <th class=\"coldate\">Date</th>\n",
            "   </tr>\n"
        ),
        label = label
    ));
    if !prefix.is_empty() {
        b.push_str(concat!(
            "   <tr id=\"parent\" class=\"item\">\n",
            "    <td class=\"colname\"><a href=\"../\">../</a></td>\n",
            "    <td class=\"colsize\">&nbsp;</td>\n",
            "    <td class=\"coldate\">&nbsp;</td>\n",
            "   </tr>\n"
        ));
    }
    let within = |name: &str| name.strip_prefix(prefix).unwrap_or(name).to_string();
    for e in entries.iter().filter(|e| e.subdir) {
        let subdir = within(&e.name);
        b.push_str(&format!(
            concat!(
                "   <tr class=\"item subdir\">\n",
                "    <td class=\"colname\"><a href=\"{}\">{}</a></td>\n",
                "    <td class=\"colsize\">&nbsp;</td>\n",
                "    <td class=\"coldate\">&nbsp;</td>\n",
                "   </tr>\n"
            ),
            quote(&subdir, b"/"),
            html_escape(&subdir)
        ));
    }
    for e in entries.iter().filter(|e| !e.subdir) {
        let name = within(&e.name);
        let content_type = container::listed_content_type(&e.content_type);
        let classes: Vec<String> = content_type
            .split('/')
            .map(|t| format!("type-{}", html_escape(&t.to_lowercase())))
            .collect();
        let date = html_escape(&iso_date(e.ts));
        let date = date.split('.').next().unwrap_or("").replace('T', " ");
        b.push_str(&format!(
            concat!(
                "   <tr class=\"item {}\">\n",
                "    <td class=\"colname\"><a href=\"{}\">{}</a></td>\n",
                "    <td class=\"colsize\">{}</td>\n",
                "    <td class=\"coldate\">{}</td>\n",
                "   </tr>\n"
            ),
            classes.join(" "),
            quote(&name, b"/"),
            html_escape(&name),
            human_readable(e.bytes),
            date
        ));
    }
    b.push_str("  </table>\n </body>\n</html>\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, bytes: u64, ct: &str) -> pb::ListEntry {
        pb::ListEntry {
            name: name.into(),
            bytes,
            content_type: ct.into(),
            // 2024-01-02T03:04:05.678900
            ts: 1_704_164_645_678_900,
            ..Default::default()
        }
    }

    fn subdir(name: &str) -> pb::ListEntry {
        pb::ListEntry {
            name: name.into(),
            subdir: true,
            ..Default::default()
        }
    }

    /// The listing Swift 2.30.1's staticweb writes for the same directory, byte for byte.
    #[test]
    fn a_listing_is_swifts_html() {
        let entries = [
            obj("d/a b&c.txt", 2048, "text/plain"),
            subdir("d/sub dir/"),
            obj(
                "d/big",
                3 * 1024 * 1024 + 1,
                "application/octet-stream;slo_etag=x",
            ),
        ];
        let html = listing_html("/v1/AUTH_t/c/d/", Some("../s.css"), "d/", &entries);
        let want = concat!(
            "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n",
            "<html>\n",
            " <head>\n",
            "  <title>Listing of /v1/AUTH_t/c/d/</title>\n",
            "  <link rel=\"stylesheet\" type=\"text/css\" href=\"../s.css\" />\n",
            " </head>\n",
            " <body>\n",
            "  <h1 id=\"title\">Listing of /v1/AUTH_t/c/d/</h1>\n",
            "  <table id=\"listing\">\n",
            "   <tr id=\"heading\">\n",
            "    <th class=\"colname\">Name</th>\n",
            "    <th class=\"colsize\">Size</th>\n",
            "    <th class=\"coldate\">Date</th>\n",
            "   </tr>\n",
            "   <tr id=\"parent\" class=\"item\">\n",
            "    <td class=\"colname\"><a href=\"../\">../</a></td>\n",
            "    <td class=\"colsize\">&nbsp;</td>\n",
            "    <td class=\"coldate\">&nbsp;</td>\n",
            "   </tr>\n",
            "   <tr class=\"item subdir\">\n",
            "    <td class=\"colname\"><a href=\"sub%20dir/\">sub dir/</a></td>\n",
            "    <td class=\"colsize\">&nbsp;</td>\n",
            "    <td class=\"coldate\">&nbsp;</td>\n",
            "   </tr>\n",
            "   <tr class=\"item type-text type-plain\">\n",
            "    <td class=\"colname\"><a href=\"a%20b%26c.txt\">a b&amp;c.txt</a></td>\n",
            "    <td class=\"colsize\">2Ki</td>\n",
            "    <td class=\"coldate\">2024-01-02 03:04:05</td>\n",
            "   </tr>\n",
            "   <tr class=\"item type-application type-octet-stream\">\n",
            "    <td class=\"colname\"><a href=\"big\">big</a></td>\n",
            "    <td class=\"colsize\">3Mi</td>\n",
            "    <td class=\"coldate\">2024-01-02 03:04:05</td>\n",
            "   </tr>\n",
            "  </table>\n",
            " </body>\n",
            "</html>\n"
        );
        assert_eq!(html, want);
    }

    #[test]
    fn the_root_listing_has_no_parent_and_the_default_style() {
        let html = listing_html("/v1/a/<c>/", None, "", &[obj("x", 1, "text/html")]);
        assert!(html.contains("  <title>Listing of /v1/a/&lt;c&gt;/</title>\n  <style type=\"text/css\">\n   h1 {font-size: 1em; font-weight: bold;}\n"));
        assert!(!html.contains("id=\"parent\""));
        assert!(html.contains("<a href=\"x\">x</a>"));
    }

    #[test]
    fn a_disabled_listing_names_the_missing_index() {
        let html = disabled_html("/v1/a/c/d/", None, "index.html");
        assert!(html.starts_with(&format!(
            "{DOCTYPE}<html>\n<head>\n<title>Listing of /v1/a/c/d/</title>\n  <style"
        )));
        assert!(html.contains("<h1>Web Listing Disabled</h1>"));
        assert!(html.contains("<b>X-Container-Meta-Web-Index: index.html</b>"));
        assert!(html.ends_with(" </body>\n</html>\n"));
        assert!(!disabled_html("/", None, "").contains("Index File Not Found"));
    }

    #[test]
    fn names_are_quoted_as_python_quotes_them() {
        assert_eq!(quote("a b/c~d_e.f-g", b"/"), "a%20b/c~d_e.f-g");
        assert_eq!(quote("some sub%dir/", b"/"), "some%20sub%25dir/");
        assert_eq!(quote("\u{2603}", b"/"), "%E2%98%83");
        assert_eq!(quote("http://h/x y", b":/"), "http://h/x%20y");
        assert_eq!(
            html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn sizes_read_as_swifts_human_readable() {
        assert_eq!(human_readable(0), "0");
        assert_eq!(human_readable(1023), "1023");
        assert_eq!(human_readable(1024), "1Ki");
        assert_eq!(human_readable(1536), "2Ki");
        // Python's round: halves go to the even neighbour.
        assert_eq!(human_readable(2560), "2Ki");
        assert_eq!(human_readable(1024 * 1024 - 1), "1Mi");
        assert_eq!(human_readable(5 * 1024 * 1024 * 1024), "5Gi");
    }

    #[test]
    fn style_sheets_are_linked_from_each_level() {
        assert_eq!(css_path("s.css", ""), "s.css");
        assert_eq!(css_path("s.css", "a/b/"), "../../s.css");
        assert_eq!(css_path("/s.css", "a/"), "/s.css");
        assert_eq!(
            css_path("https://cdn/s s.css", "a/"),
            "https://cdn/s%20s.css"
        );
    }

    #[test]
    fn labels_replace_the_account_path() {
        assert_eq!(label("/v1/a/c/d/", ""), "/v1/a/c/d/");
        assert_eq!(label("/v1/a/c/d/", "example.com"), "example.com/d/");
        assert_eq!(label("/v1/a/c/", "example.com"), "example.com/");
    }

    #[test]
    fn redirects_are_absolute_and_quoted() {
        assert_eq!(
            slash_location("http://127.0.0.1:8080", "/v1/a/c d"),
            "http://127.0.0.1:8080/v1/a/c%20d/"
        );
        assert_eq!(slash_location("http://h:80", "/v1/a/c"), "http://h/v1/a/c/");
        assert_eq!(
            slash_location("https://h:443", "/v1/a/\u{2603}"),
            "https://h/v1/a/%E2%98%83/"
        );
        assert_eq!(
            slash_location("https://h:80", "/v1/a/c"),
            "https://h:80/v1/a/c/"
        );
    }

    #[test]
    fn settings_come_from_container_metadata() {
        let m = |k: &str, v: &str| pb::MetaItem {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        let cfg = WebConfig::from_meta(&[
            m("x-container-meta-web-index", " index.html "),
            m("x-container-meta-web-listings", "false"),
            m("x-container-read", ".r:*"),
        ]);
        assert_eq!(cfg.index, "index.html");
        assert!(cfg.is_site());
        assert_eq!(cfg.dir_type(), "application/directory");
        assert!(!WebConfig::default().is_site());
    }

    #[test]
    fn only_anonymous_or_web_mode_reads_are_web_pages() {
        let user = Identity::User {
            groups: vec![],
            owner: true,
            reseller: false,
            reader: false,
        };
        let none = Query::parse(None);
        let mut web = HeaderMap::new();
        web.insert("x-web-mode", HeaderValue::from_static("True"));
        assert!(applies(&Identity::Anonymous, &HeaderMap::new(), &none));
        assert!(!applies(&user, &HeaderMap::new(), &none));
        assert!(applies(&user, &web, &none));
        let temp = Query::parse(Some("temp_url_sig=x&temp_url_expires=1"));
        assert!(!applies(&Identity::Anonymous, &HeaderMap::new(), &temp));
    }
}
