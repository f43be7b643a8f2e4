//! Keystone v3 identity in the proxy (`<proxy>/identity`): the real `openstack` client
//! (python-openstackclient 10.5.0, installed by scripts/deps.sh) manages projects, users,
//! roles and groups with the `openrc` files `dev up` writes, and stores objects through the
//! catalog's object-store endpoint; over raw HTTP, tokens are issued, validated, revoked and
//! expire (a second proxy with `--identity-token-ttl 2`), Swift honours Keystone tokens
//! (`AUTH_<project_id>`: admin and member own it, reader only reads), bad input gets
//! Keystone's status codes and error body, and version discovery answers. A revoked token
//! and a disabled user's token stop working on another proxy within moments; 50 Swift GETs
//! with a Keystone token make no meta call; container ACLs name `project:user` by ids or
//! names, `*`, and role names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::*;

const ADMIN: &str = "openrc";
const DEMO: &str = "openrc-demo";

// ---------------------------------------------------------------------------------------
// Helpers

/// Checks the openrc file `rc` that `dev up` wrote for `user` in `project`; its password.
fn check_openrc(c: &TestCluster, rc: &str, user: &str, project: &str) -> String {
    let path = c.dir.join(rc);
    assert!(
        path.exists(),
        "dev up wrote no {} (files: {:?})",
        path.display(),
        std::fs::read_dir(&c.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    let want = [
        ("OS_AUTH_URL", format!("{}/identity", c.proxy)),
        ("OS_IDENTITY_API_VERSION", "3".into()),
        ("OS_USERNAME", user.into()),
        ("OS_PROJECT_NAME", project.into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
        ("OS_INTERFACE", "public".into()),
    ];
    for (k, v) in want {
        assert_eq!(openrc_var(&path, k), v, "{k} in {}", path.display());
    }
    let pw = openrc_var(&path, "OS_PASSWORD");
    assert!(!pw.is_empty(), "empty OS_PASSWORD in {}", path.display());
    pw
}

/// The values of `column` in an `openstack … list -f json` answer.
fn column(list: &Value, column: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|row| {
            row[column]
                .as_str()
                .unwrap_or_else(|| panic!("no {column} in {row}"))
                .to_string()
        })
        .collect()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// `Keystone`'s timestamp forms: `%Y-%m-%dT%H:%M:%SZ` or `%Y-%m-%dT%H:%M:%S.%fZ` (what
/// tempest parses).
fn is_keystone_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let tail = &s[19..];
    head && (tail == "Z"
        || (tail.len() >= 3
            && tail.starts_with('.')
            && tail.ends_with('Z')
            && digits(20..b.len() - 1)))
}

/// Raw Keystone v3 over HTTP at `<proxy>/identity/v3`.
struct Keystone {
    http: reqwest::Client,
    /// `http://H/identity/v3`
    base: String,
}

/// Asserts Keystone's error envelope `{"error":{"code","title","message"}}` with `code`.
fn assert_error(body: &Value, code: u16, title: &str, what: &str) -> String {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{what}: error.code in {body}");
    assert_eq!(e["title"], title, "{what}: error.title in {body}");
    let m = e["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error.message in {body}"));
    assert!(!m.is_empty(), "{what}: empty error.message");
    m.to_string()
}

impl Keystone {
    fn new(proxy: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{proxy}/identity/v3"),
        }
    }

    fn req(&self, m: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.request(m, format!("{}{path}", self.base));
        match token {
            Some(t) => r.header("x-auth-token", t),
            None => r,
        }
    }

    /// `POST /auth/tokens` with `body`: status, `X-Subject-Token`, JSON body.
    async fn auth(&self, body: &Value) -> (u16, Option<String>, Value) {
        post_auth_tokens(&self.http, &self.base, body).await
    }

    /// A project-scoped token by password, which must be issued: the token and its body.
    async fn token(&self, user: &str, password: &str, project: &str) -> (String, Value) {
        let (status, tok, body) = self
            .auth(&password_auth(user, password, Some(project)))
            .await;
        assert_eq!(
            status, 201,
            "POST {}/auth/tokens as {user} in {project}: {body}",
            self.base
        );
        let tok = tok.unwrap_or_else(|| panic!("no X-Subject-Token issuing for {user}"));
        assert!(!tok.is_empty());
        (tok, body)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        answer(
            self.req(Method::GET, path, Some(token))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        answer(
            self.req(Method::POST, path, Some(token))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `GET|HEAD|DELETE /auth/tokens` on `subject` with `token`: the status.
    async fn on_token(&self, m: Method, token: &str, subject: &str) -> (u16, Value) {
        answer(
            self.req(m, "/auth/tokens", Some(token))
                .header("x-subject-token", subject)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The id of role `name` (`GET /roles?name=`).
    async fn role_id(&self, token: &str, name: &str) -> String {
        let (status, body) = self.get(&format!("/roles?name={name}"), token).await;
        assert_eq!(status, 200, "GET /roles?name={name}: {body}");
        let roles = body["roles"].as_array().unwrap();
        let r = roles
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no role {name} in {body}"));
        str_of(&r["id"], "role id").to_string()
    }
}

/// Checks a token body: the user, the project, the roles, the times, the catalog.
fn check_token(
    body: &Value,
    proxy: &str,
    user: &str,
    project: &str,
    roles: &[&str],
) -> (String, String) {
    let t = &body["token"];
    assert!(
        t["methods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "password")),
        "token.methods in {body}"
    );
    assert_eq!(t["user"]["name"], user, "token.user in {body}");
    assert_eq!(
        t["user"]["domain"]["id"], "default",
        "token.user.domain in {body}"
    );
    let uid = str_of(&t["user"]["id"], "token.user.id").to_string();
    assert_eq!(t["project"]["name"], project, "token.project in {body}");
    assert_eq!(
        t["project"]["domain"]["id"], "default",
        "token.project.domain in {body}"
    );
    let pid = str_of(&t["project"]["id"], "token.project.id").to_string();
    assert!(!uid.is_empty() && !pid.is_empty());
    let names: Vec<&str> = t["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no token.roles in {body}"))
        .iter()
        .map(|r| {
            assert!(r["id"].is_string(), "role without id in {body}");
            str_of(&r["name"], "role name")
        })
        .collect();
    for r in roles {
        assert!(
            names.contains(r),
            "role {r} (itself or implied) missing from token.roles {names:?}"
        );
    }
    for k in ["expires_at", "issued_at"] {
        let s = str_of(&t[k], k);
        assert!(
            is_keystone_time(s),
            "token.{k} {s:?} is not Keystone's form"
        );
    }
    assert!(
        str_of(&t["expires_at"], "expires_at") > str_of(&t["issued_at"], "issued_at"),
        "expires_at not after issued_at: {body}"
    );
    check_catalog(body, proxy, &pid);
    (uid, pid)
}

/// The token's catalog has `identity` at `<proxy>/identity` and `object-store` at
/// `<proxy>/v1/AUTH_<project_id>`, each public, internal and admin in RegionOne.
fn check_catalog(body: &Value, proxy: &str, project_id: &str) {
    let cat = body["token"]["catalog"]
        .as_array()
        .unwrap_or_else(|| panic!("no token.catalog in {body}"));
    for (ty, url) in [
        ("identity", format!("{proxy}/identity")),
        ("object-store", format!("{proxy}/v1/AUTH_{project_id}")),
    ] {
        let svc = cat
            .iter()
            .find(|s| s["type"] == ty)
            .unwrap_or_else(|| panic!("no {ty} in the catalog {body}"));
        let eps = svc["endpoints"].as_array().unwrap();
        for iface in ["public", "internal", "admin"] {
            let ep = eps
                .iter()
                .find(|e| e["interface"] == iface)
                .unwrap_or_else(|| panic!("no {iface} endpoint for {ty}: {svc}"));
            assert!(
                ep["region"] == "RegionOne" || ep["region_id"] == "RegionOne",
                "{ty} {iface} not in RegionOne: {ep}"
            );
            if iface == "public" {
                assert_eq!(ep["url"], url.as_str(), "{ty} public url");
            } else {
                assert!(ep["url"].as_str().is_some_and(|u| !u.is_empty()), "{ep}");
            }
        }
    }
}

/// A Swift request on `<base>/v1/AUTH_<project>[/path]` with `token`.
fn swift(
    http: &reqwest::Client,
    m: Method,
    base: &str,
    project: &str,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    let url = if path.is_empty() {
        format!("{base}/v1/AUTH_{project}")
    } else {
        format!("{base}/v1/AUTH_{project}/{path}")
    };
    http.request(m, url).header("x-auth-token", token)
}

async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

/// A second `stratus-proxy` on the cluster's meta, killed on drop.
struct ExtraProxy {
    child: Child,
    /// `http://ADDR`
    url: String,
    log: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl ExtraProxy {
    fn start(c: &TestCluster, extra: &[&str]) -> Self {
        let endpoints = std::fs::read_to_string(c.dir.join("endpoints")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("stderr");
        let mut child = Command::new(STRATUS.with_file_name("stratus-proxy"))
            .args(["--listen", "127.0.0.1:0", "--meta", endpoints.trim()])
            .arg("--tls")
            .arg(c.dir.join("tls/proxy"))
            .args(extra)
            .env_remove("STRATUS_META")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start stratus-proxy");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads every line (the proxy logs to stdout too) so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(u) = line.trim().strip_prefix("stratus-proxy listening on ") {
                    let _ = tx.send(u.trim().to_string());
                }
            }
        });
        let mut p = Self {
            child,
            url: String::new(),
            log,
            _tmp: tmp,
        };
        match rx.recv_timeout(WAIT) {
            Ok(u) => p.url = u,
            Err(_) => panic!(
                "stratus-proxy {extra:?} did not say it listens within {WAIT:?} (exit: {:?}); stderr: {}",
                p.child.try_wait(),
                std::fs::read_to_string(&p.log).unwrap_or_default()
            ),
        }
        p
    }
}

impl Drop for ExtraProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The real `openstack` client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_openstack_client_manages_identity_and_stores_objects() {
    let c = TestCluster::start(3, 1);
    let work = tempfile::tempdir().unwrap();
    check_openrc(&c, ADMIN, "admin", "admin");
    check_openrc(&c, DEMO, "demo", "demo");

    // Token and catalog.
    let t = openstack_json(&c, ADMIN, &["token", "issue"]);
    for k in ["id", "expires", "project_id", "user_id"] {
        assert!(
            t[k].as_str().is_some_and(|v| !v.is_empty()),
            "token issue: no {k} in {t}"
        );
    }
    let admin_pid = t["project_id"].as_str().unwrap().to_string();
    let cat = openstack_json(&c, ADMIN, &["catalog", "list"]);
    let types = column(&cat, "Type");
    for ty in ["identity", "object-store"] {
        assert!(
            types.iter().any(|t| t == ty),
            "no {ty} in catalog list {cat}"
        );
    }
    let cat_text = cat.to_string();
    for url in [
        format!("{}/identity", c.proxy),
        format!("{}/v1/AUTH_{admin_pid}", c.proxy),
    ] {
        assert!(cat_text.contains(&url), "{url} not in catalog list {cat}");
    }

    // Projects.
    let p = openstack_json(
        &c,
        ADMIN,
        &[
            "project",
            "create",
            "--domain",
            "default",
            "--description",
            "first",
            "p95",
        ],
    );
    assert_eq!(p["name"], "p95", "{p}");
    assert_eq!(p["domain_id"], "default", "{p}");
    assert_eq!(p["description"], "first", "{p}");
    let pid = str_of(&p["id"], "project id").to_string();
    let names = column(&openstack_json(&c, ADMIN, &["project", "list"]), "Name");
    for n in ["admin", "demo", "p95"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    openstack_ok(
        &c,
        ADMIN,
        &["project", "set", "--description", "for t95", "p95"],
    );
    let p = openstack_json(&c, ADMIN, &["project", "show", "p95"]);
    assert_eq!(p["id"], pid.as_str(), "{p}");
    assert_eq!(
        p["description"], "for t95",
        "project set --description: {p}"
    );

    // Users: create with a password and a default project; the password changes.
    let u = openstack_json(
        &c,
        ADMIN,
        &[
            "user",
            "create",
            "--project",
            "p95",
            "--password",
            "old-pw-95",
            "u95",
        ],
    );
    assert_eq!(u["name"], "u95", "{u}");
    assert_eq!(u["default_project_id"], pid.as_str(), "{u}");
    let uid = str_of(&u["id"], "user id").to_string();
    let users = column(&openstack_json(&c, ADMIN, &["user", "list"]), "Name");
    for n in ["admin", "demo", "u95"] {
        assert!(users.iter().any(|x| x == n), "{n} not in {users:?}");
    }
    let u = openstack_json(&c, ADMIN, &["user", "show", "u95"]);
    assert_eq!(u["id"], uid.as_str(), "{u}");
    assert_eq!(u["domain_id"], "default", "{u}");

    openstack_ok(
        &c,
        ADMIN,
        &["role", "add", "--project", "p95", "--user", "u95", "member"],
    );
    let has_member = |c: &TestCluster| {
        let a = openstack_json(
            c,
            ADMIN,
            &["role", "assignment", "list", "--project", "p95", "--names"],
        );
        a.as_array().unwrap().iter().any(|row| {
            row["Role"] == "member"
                && row["User"] == "u95@Default"
                && row["Project"] == "p95@Default"
        })
    };
    assert!(
        has_member(&c),
        "role assignment list --names lacks member for u95@Default on p95@Default"
    );

    let old_rc = openrc_for(&c, work.path(), "u95", "old-pw-95", "p95");
    let new_rc = openrc_for(&c, work.path(), "u95", "new-pw-95", "p95");
    let t = openstack_json(&c, &old_rc, &["token", "issue"]);
    assert_eq!(t["project_id"], pid.as_str(), "{t}");
    assert_eq!(t["user_id"], uid.as_str(), "{t}");
    openstack_ok(
        &c,
        ADMIN,
        &["user", "set", "--password", "new-pw-95", "u95"],
    );
    let old = openstack(&c, &old_rc, &["token", "issue"]);
    assert!(
        !old.status.success(),
        "the old password still issues a token: {}",
        stdout(&old)
    );
    let t = openstack_json(&c, &new_rc, &["token", "issue"]);
    assert_eq!(t["user_id"], uid.as_str(), "{t}");

    // Groups.
    let g = openstack_json(&c, ADMIN, &["group", "create", "g95"]);
    assert_eq!(g["name"], "g95", "{g}");
    openstack_ok(&c, ADMIN, &["group", "add", "user", "g95", "u95"]);
    let o = openstack(&c, ADMIN, &["group", "contains", "user", "g95", "u95"]);
    assert!(
        o.status.success() && stdout(&o).contains("u95 in group g95"),
        "group contains user: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = openstack(&c, ADMIN, &["group", "contains", "user", "g95", "admin"]);
    assert!(
        stderr(&o).contains("admin not in group g95") && !stdout(&o).contains("in group"),
        "admin was never added to g95: {}{}",
        stdout(&o),
        stderr(&o)
    );

    // Without a role on the project, no token scoped to it.
    openstack_ok(
        &c,
        ADMIN,
        &[
            "role",
            "remove",
            "--project",
            "p95",
            "--user",
            "u95",
            "member",
        ],
    );
    assert!(!has_member(&c), "role remove left the assignment");
    let o = openstack(&c, &new_rc, &["token", "issue"]);
    assert!(
        !o.status.success(),
        "a user with no role on p95 got a token scoped to it: {}",
        stdout(&o)
    );

    // The demo user (member of demo) may not create projects.
    let o = openstack(&c, DEMO, &["project", "create", "x95"]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && (err.contains("403") || err.to_lowercase().contains("not authorized")),
        "project create as demo: {} {}{err}",
        o.status,
        stdout(&o)
    );
    let names = column(&openstack_json(&c, ADMIN, &["project", "list"]), "Name");
    assert!(!names.iter().any(|n| n == "x95"), "{names:?}");
    let a = openstack_json(
        &c,
        ADMIN,
        &["role", "assignment", "list", "--project", "demo", "--names"],
    );
    assert!(
        a.as_array()
            .unwrap()
            .iter()
            .any(|r| r["Role"] == "member" && r["User"] == "demo@Default"),
        "demo is not a member of demo: {a}"
    );

    // Objects as demo, through the catalog's object-store endpoint.
    let t = openstack_json(&c, DEMO, &["token", "issue"]);
    let demo_pid = t["project_id"].as_str().unwrap().to_string();
    let demo_token = t["id"].as_str().unwrap().to_string();
    let body = random_bytes(200_000, 95);
    std::fs::write(work.path().join("hello.bin"), &body).unwrap();
    let os_in = |args: &[&str]| openstack_ok_in(&c, work.path(), DEMO, args);
    os_in(&["container", "create", "c1"]);
    os_in(&["object", "create", "c1", "hello.bin"]);
    let list = json(&os_in(&["object", "list", "c1", "-f", "json"]));
    assert_eq!(column(&list, "Name"), ["hello.bin"], "{list}");
    os_in(&["object", "save", "c1", "hello.bin", "--file", "out.bin"]);
    assert!(
        std::fs::read(work.path().join("out.bin")).unwrap() == body,
        "object save returned other bytes"
    );
    // The object is in the demo project's account, reachable with the demo token.
    let http = reqwest::Client::new();
    let r = swift(&http, Method::GET, &c.proxy, &demo_pid, "c1", &demo_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET AUTH_{demo_pid}/c1 with demo's token");
    assert_eq!(r.text().await.unwrap().trim(), "hello.bin");
    // Not the admin project's account.
    let s = status(swift(
        &http,
        Method::GET,
        &c.proxy,
        &admin_pid,
        "",
        &demo_token,
    ))
    .await;
    assert_eq!(s, 403, "demo's token on AUTH_<admin project>");
    os_in(&["object", "delete", "c1", "hello.bin"]);
    let list = json(&os_in(&["object", "list", "c1", "-f", "json"]));
    assert!(column(&list, "Name").is_empty(), "{list}");

    // Clean up: user and project delete.
    openstack_ok(&c, ADMIN, &["user", "delete", "u95"]);
    let users = column(&openstack_json(&c, ADMIN, &["user", "list"]), "Name");
    assert!(!users.iter().any(|n| n == "u95"), "{users:?}");
    openstack_ok(&c, ADMIN, &["project", "delete", "p95"]);
    let names = column(&openstack_json(&c, ADMIN, &["project", "list"]), "Name");
    assert!(!names.iter().any(|n| n == "p95"), "{names:?}");
    let o = openstack(&c, ADMIN, &["project", "show", "p95"]);
    assert!(
        !o.status.success(),
        "deleted p95 still shows: {}",
        stdout(&o)
    );
}

// ---------------------------------------------------------------------------------------
// Raw HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_validated_revoked_and_expire() {
    let c = TestCluster::start(1, 1);
    let ks = Keystone::new(&c.proxy);
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");
    let http = reqwest::Client::new();

    let (tok, body) = ks.token("admin", &admin_pw, "admin").await;
    let (uid, pid) = check_token(
        &body,
        &c.proxy,
        "admin",
        "admin",
        &["admin", "member", "reader"],
    );

    // Swift takes the Keystone token on AUTH_<project_id>, which admin owns.
    let get_account = |t: &str| swift(&http, Method::GET, &c.proxy, &pid, "", t);
    let s = status(get_account(&tok)).await;
    assert!(
        (200..300).contains(&s),
        "GET AUTH_{pid} with a Keystone token: {s}"
    );
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &pid, "k95", &tok)).await,
        201,
        "PUT a container with admin's Keystone token"
    );
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &pid, "k95/o", &tok).body("x95")).await,
        201
    );
    let r = swift(&http, Method::GET, &c.proxy, &pid, "k95/o", &tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "x95");

    // The other request forms: user and project by id.
    let (s, _, b) = ks
        .auth(&serde_json::json!({"auth": {
            "identity": {"methods": ["password"],
                         "password": {"user": {"id": uid, "password": admin_pw}}},
            "scope": {"project": {"id": pid}}}}))
        .await;
    assert_eq!(s, 201, "user id + project id scope: {b}");

    // Validate, check, revoke.
    let (checker, _) = ks.token("admin", &admin_pw, "admin").await;
    let r = ks
        .req(Method::GET, "/auth/tokens", Some(&checker))
        .header("x-subject-token", &tok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("x-subject-token")
            .map(|v| v.to_str().unwrap().to_string())
            .as_deref(),
        Some(tok.as_str()),
        "GET /auth/tokens echoes X-Subject-Token"
    );
    let (s, b) = answer(r).await;
    assert_eq!(s, 200, "GET /auth/tokens: {b}");
    assert_eq!(b["token"]["user"]["id"], uid.as_str(), "{b}");
    assert_eq!(b["token"]["project"]["id"], pid.as_str(), "{b}");
    let (s, _) = ks.on_token(Method::HEAD, &checker, &tok).await;
    assert_eq!(s, 200, "HEAD /auth/tokens");
    let (s, b) = ks.on_token(Method::DELETE, &checker, &tok).await;
    assert_eq!(s, 204, "DELETE /auth/tokens: {b}");

    assert_eq!(
        status(get_account(&tok)).await,
        401,
        "a revoked token on Swift"
    );
    let (s, b) = ks.on_token(Method::GET, &checker, &tok).await;
    assert_eq!(s, 404, "GET /auth/tokens on a revoked token: {b}");
    let (s, _) = ks.on_token(Method::HEAD, &checker, &tok).await;
    assert_eq!(s, 404, "HEAD /auth/tokens on a revoked token");
    let (s, b) = ks.get("/projects", &tok).await;
    assert_eq!(s, 401, "a revoked token on /projects: {b}");
    // The checker was not revoked with it.
    let (s, b) = ks.get("/projects", &checker).await;
    assert_eq!(s, 200, "GET /projects: {b}");
    let names: Vec<&str> = b["projects"]
        .as_array()
        .unwrap_or_else(|| panic!("no projects in {b}"))
        .iter()
        .map(|p| str_of(&p["name"], "project name"))
        .collect();
    assert!(
        names.contains(&"admin") && names.contains(&"demo"),
        "{names:?}"
    );

    // A second proxy with 2 s tokens: its tokens stop working once expired. Tokens of the
    // first proxy work on it too (proxies are stateless; any of them serves a client).
    let p2 = ExtraProxy::start(&c, &["--identity-token-ttl", "2"]);
    assert!(
        (200..300).contains(&status(swift(&http, Method::GET, &p2.url, &pid, "", &checker)).await),
        "a token of the first proxy on the second"
    );
    let ks2 = Keystone::new(&p2.url);
    let issued = Instant::now();
    let (short, b) = ks2.token("admin", &admin_pw, "admin").await;
    check_token(&b, &p2.url, "admin", "admin", &["admin"]);
    let s = status(swift(&http, Method::GET, &p2.url, &pid, "", &short)).await;
    assert!(
        (200..300).contains(&s),
        "a fresh 2 s token on Swift: {s} (after {:?})",
        issued.elapsed()
    );
    let wait = Duration::from_millis(3500).saturating_sub(issued.elapsed());
    tokio::time::sleep(wait).await;
    assert_eq!(
        status(swift(&http, Method::GET, &p2.url, &pid, "", &short)).await,
        401,
        "an expired token on Swift"
    );
    let (s, b) = ks2.get("/projects", &short).await;
    assert_eq!(s, 401, "an expired token on /projects: {b}");
    let (fresh, _) = ks2.token("admin", &admin_pw, "admin").await;
    let (s, b) = ks2.on_token(Method::GET, &fresh, &short).await;
    assert_eq!(s, 404, "GET /auth/tokens on an expired token: {b}");
    drop(p2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reads_the_project_account_but_cannot_write() {
    let c = TestCluster::start(1, 1);
    let ks = Keystone::new(&c.proxy);
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");
    let http = reqwest::Client::new();
    let (admin, body) = ks.token("admin", &admin_pw, "admin").await;
    let admin_uid = str_of(&body["token"]["user"]["id"], "user id").to_string();

    let (s, b) = ks
        .post(
            "/projects",
            &admin,
            &serde_json::json!({"project": {"name": "rp95", "domain_id": "default", "enabled": true}}),
        )
        .await;
    assert_eq!(s, 201, "POST /projects: {b}");
    let rp = str_of(&b["project"]["id"], "project id").to_string();
    let (s, b) = ks
        .post(
            "/users",
            &admin,
            &serde_json::json!({"user": {"name": "r95", "domain_id": "default",
                                         "password": "read-pw-95", "enabled": true}}),
        )
        .await;
    assert_eq!(s, 201, "POST /users: {b}");
    assert!(
        !b.to_string().contains("read-pw-95"),
        "the user body carries the password: {b}"
    );
    let r95 = str_of(&b["user"]["id"], "user id").to_string();
    let reader = ks.role_id(&admin, "reader").await;
    let member = ks.role_id(&admin, "member").await;
    for (user, role) in [(&r95, &reader), (&admin_uid, &member)] {
        let r = ks
            .req(
                Method::PUT,
                &format!("/projects/{rp}/users/{user}/roles/{role}"),
                Some(&admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "PUT role assignment");
    }

    // admin, now member of rp95, fills its account.
    let (writer, _) = ks.token("admin", &admin_pw, "rp95").await;
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &rp, "shelf", &writer)).await,
        201,
        "a member creates a container"
    );
    let book = random_bytes(5000, 195);
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &rp, "shelf/book", &writer).body(book.clone()))
            .await,
        201,
        "a member writes an object"
    );

    let (rt, b) = ks.token("r95", "read-pw-95", "rp95").await;
    check_token(&b, &c.proxy, "r95", "rp95", &["reader"]);
    let roles: Vec<&str> = b["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        !roles.contains(&"member") && !roles.contains(&"admin"),
        "{roles:?}"
    );
    let get = |path: &str| swift(&http, Method::GET, &c.proxy, &rp, path, &rt).send();
    let r = get("").await.unwrap();
    assert_eq!(r.status(), 200, "a reader lists the account");
    assert_eq!(r.text().await.unwrap().trim(), "shelf");
    let r = get("shelf").await.unwrap();
    assert_eq!(r.status(), 200, "a reader lists the container");
    assert_eq!(r.text().await.unwrap().trim(), "book");
    let r = get("shelf/book").await.unwrap();
    assert_eq!(r.status(), 200, "a reader reads an object");
    assert!(r.bytes().await.unwrap() == book);
    assert_eq!(
        status(swift(&http, Method::HEAD, &c.proxy, &rp, "shelf/book", &rt)).await,
        200
    );

    for (m, path, what) in [
        (Method::PUT, "shelf/book", "overwrite an object"),
        (Method::PUT, "shelf/new", "write an object"),
        (Method::PUT, "box", "create a container"),
        (Method::DELETE, "shelf/book", "delete an object"),
        (Method::POST, "shelf/book", "post object metadata"),
    ] {
        let s = status(
            swift(&http, m.clone(), &c.proxy, &rp, path, &rt)
                .header("x-object-meta-t95", "1")
                .body(if m == Method::PUT { "no" } else { "" }),
        )
        .await;
        assert_eq!(s, 403, "a reader may not {what} ({m} {path})");
    }
    let r = swift(&http, Method::GET, &c.proxy, &rp, "shelf/book", &writer)
        .send()
        .await
        .unwrap();
    assert!(
        r.bytes().await.unwrap() == book,
        "the reader changed the object"
    );
    let r = swift(&http, Method::GET, &c.proxy, &rp, "shelf", &writer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "book");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_keystone_errors_and_discovery_answers() {
    let c = TestCluster::start(1, 1);
    let ks = Keystone::new(&c.proxy);
    let http = reqwest::Client::new();
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");

    // Discovery.
    let discover = |path: &str| {
        let r = http
            .get(format!("{}{path}", c.proxy))
            .header("accept", "application/json");
        async move { answer(r.send().await.unwrap()).await }
    };
    let (s, b) = discover("/identity").await;
    assert_eq!(s, 300, "GET /identity: {b}");
    let v = &b["versions"]["values"][0];
    assert!(
        v["id"].as_str().is_some_and(|id| id.starts_with("v3")),
        "versions.values[0].id in {b}"
    );
    for path in ["/identity/v3", "/identity/v3/"] {
        let (s, b) = discover(path).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        assert!(
            b["version"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("v3")),
            "GET {path}: version.id in {b}"
        );
    }

    // Wrong password and unknown user: 401, and the same words for both.
    let (s, tok, wrong_pw) = ks
        .auth(&password_auth("admin", "not-the-password", Some("admin")))
        .await;
    assert_eq!(s, 401, "wrong password: {wrong_pw}");
    assert!(tok.is_none(), "a token for a wrong password");
    let m1 = assert_error(&wrong_pw, 401, "Unauthorized", "wrong password");
    let (s, _, no_user) = ks
        .auth(&password_auth(
            "nobody95",
            "not-the-password",
            Some("admin"),
        ))
        .await;
    assert_eq!(s, 401, "unknown user: {no_user}");
    let m2 = assert_error(&no_user, 401, "Unauthorized", "unknown user");
    assert_eq!(
        m1, m2,
        "the answers tell an unknown user from a wrong password"
    );
    let (s, _, b) = ks
        .auth(&password_auth(
            "admin",
            &admin_pw,
            Some("no-such-project-95"),
        ))
        .await;
    assert_eq!(s, 401, "unknown project in scope: {b}");
    assert_error(&b, 401, "Unauthorized", "unknown project");

    // No token, and a made-up one.
    let (s, b) = answer(ks.req(Method::GET, "/projects", None).send().await.unwrap()).await;
    assert_eq!(s, 401, "GET /projects without a token: {b}");
    let (s, b) = ks.get("/projects", "made-up-token-95").await;
    assert_eq!(s, 401, "GET /projects with a made-up token: {b}");

    // Malformed JSON.
    let (admin, _) = ks.token("admin", &admin_pw, "admin").await;
    for (path, token) in [("/auth/tokens", None), ("/projects", Some(admin.as_str()))] {
        let (s, b) = answer(
            ks.req(Method::POST, path, token)
                .header("content-type", "application/json")
                .body("{\"auth\": {\"identity\": ")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "malformed JSON on POST {path}: {b}");
        assert_error(&b, 400, "Bad Request", &format!("malformed JSON on {path}"));
    }

    // A duplicate project name in one domain, an unknown project.
    let dup = serde_json::json!({"project": {"name": "dup95", "domain_id": "default"}});
    let (s, b) = ks.post("/projects", &admin, &dup).await;
    assert_eq!(s, 201, "POST /projects dup95: {b}");
    let (s, b) = ks.post("/projects", &admin, &dup).await;
    assert_eq!(s, 409, "the same project name again: {b}");
    assert_error(&b, 409, "Conflict", "duplicate project");
    let (s, b) = ks.get("/projects/no-such-project-95", &admin).await;
    assert_eq!(s, 404, "GET an unknown project: {b}");
    assert_error(&b, 404, "Not Found", "unknown project");
}

// ---------------------------------------------------------------------------------------
// Revocations across proxies, the hot path, container ACLs

/// Polls a Swift GET of `AUTH_<project>` on `base` with `token` every 50 ms for at most
/// 10 s until it answers 401: how long that took, or the last status seen.
async fn until_unauthorized(
    http: &reqwest::Client,
    base: &str,
    project: &str,
    token: &str,
) -> Result<Duration, u16> {
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(10) {
        last = status(swift(http, Method::GET, base, project, "", token)).await;
        if last == 401 {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_proxy() {
    let c = TestCluster::start(1, 1);
    let p2 = ExtraProxy::start(&c, &[]);
    let ks1 = Keystone::new(&c.proxy);
    let ks2 = Keystone::new(&p2.url);
    let http = reqwest::Client::new();
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");
    let demo_pw = openrc_var(&c.dir.join(DEMO), "OS_PASSWORD");

    // A token revoked on proxy 1 stops working on proxy 2.
    let (tok, body) = ks1.token("admin", &admin_pw, "admin").await;
    let (_, pid) = check_token(&body, &c.proxy, "admin", "admin", &["admin"]);
    let (checker, _) = ks1.token("admin", &admin_pw, "admin").await;
    let s = status(swift(&http, Method::GET, &p2.url, &pid, "", &tok)).await;
    assert!(
        (200..300).contains(&s),
        "a token of proxy 1 on proxy 2 before revocation: {s}"
    );
    let (s, b) = ks1.on_token(Method::DELETE, &checker, &tok).await;
    assert_eq!(s, 204, "DELETE /auth/tokens on proxy 1: {b}");
    match until_unauthorized(&http, &p2.url, &pid, &tok).await {
        Ok(t) => eprintln!("revoked token refused by proxy 2 after {t:?}"),
        Err(s) => panic!("proxy 2 still answers {s} to a token revoked on proxy 1 after 10 s"),
    }
    let (s, b) = ks2.on_token(Method::GET, &checker, &tok).await;
    assert_eq!(
        s, 404,
        "GET /auth/tokens on proxy 2 for the revoked token: {b}"
    );
    // The revoker's own token was not caught by it.
    let s = status(swift(&http, Method::GET, &p2.url, &pid, "", &checker)).await;
    assert!(
        (200..300).contains(&s),
        "the other admin token on proxy 2: {s}"
    );

    // Disabling a user on proxy 1 voids that user's tokens on proxy 2, and no new token
    // is issued while it stays disabled.
    let (demo_tok, body) = ks1.token("demo", &demo_pw, "demo").await;
    let (demo_uid, demo_pid) = check_token(&body, &c.proxy, "demo", "demo", &["member"]);
    let s = status(swift(&http, Method::GET, &p2.url, &demo_pid, "", &demo_tok)).await;
    assert!((200..300).contains(&s), "demo's token on proxy 2: {s}");
    let set_enabled = |on: bool| {
        ks1.req(Method::PATCH, &format!("/users/{demo_uid}"), Some(&checker))
            .json(&serde_json::json!({"user": {"enabled": on}}))
            .send()
    };
    let (s, b) = answer(set_enabled(false).await.unwrap()).await;
    assert_eq!(s, 200, "PATCH /users/demo enabled=false on proxy 1: {b}");
    assert_eq!(b["user"]["enabled"], false, "{b}");
    match until_unauthorized(&http, &p2.url, &demo_pid, &demo_tok).await {
        Ok(t) => eprintln!("disabled user's token refused by proxy 2 after {t:?}"),
        Err(s) => panic!("proxy 2 still answers {s} to a disabled user's token after 10 s"),
    }
    for ks in [&ks1, &ks2] {
        let (s, tok, b) = ks
            .auth(&password_auth("demo", &demo_pw, Some("demo")))
            .await;
        assert_eq!(s, 401, "a token for disabled demo at {}: {b}", ks.base);
        assert!(tok.is_none(), "a token for disabled demo at {}", ks.base);
    }

    // Enabled again: new tokens work, the voided one stays void.
    let (s, b) = answer(set_enabled(true).await.unwrap()).await;
    assert_eq!(s, 200, "PATCH /users/demo enabled=true: {b}");
    let (fresh, _) = ks2.token("demo", &demo_pw, "demo").await;
    let s = status(swift(&http, Method::GET, &p2.url, &demo_pid, "", &fresh)).await;
    assert!(
        (200..300).contains(&s),
        "demo's new token after re-enabling: {s}"
    );
    assert_eq!(
        status(swift(&http, Method::GET, &p2.url, &demo_pid, "", &demo_tok)).await,
        401,
        "the token voided by disabling works again after re-enabling"
    );
    drop(p2);
}

/// `stratus_rpc_requests_total` of meta node 1, summed over codes, by op (`Meta/Put`).
async fn meta_rpc_counts(
    http: &reqwest::Client,
    c: &TestCluster,
) -> std::collections::BTreeMap<String, f64> {
    let file = c.dir.join("meta-1").join("admin-addr");
    let addr = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let url = format!("http://{}/metrics", addr.trim());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let text = r.text().await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("stratus_rpc_requests_total{") else {
            continue;
        };
        let (labels, value) = rest
            .rsplit_once('}')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        let op = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("op=\""))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no op label in {line:?}"));
        let v: f64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad value in {line:?}"));
        *out.entry(op.to_string()).or_insert(0.0) += v;
    }
    assert!(
        !out.is_empty(),
        "no stratus_rpc_requests_total in {url}:\n{text}"
    );
    out
}

/// The increase of each op from `before` to `after` (ops that moved only).
fn rpc_increase(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    after
        .iter()
        .map(|(op, v)| (op.clone(), v - before.get(op).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_a_keystone_token_makes_no_meta_call() {
    const GETS: usize = 50;
    let c = TestCluster::start(1, 1);
    let ks = Keystone::new(&c.proxy);
    let http = reqwest::Client::new();
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");
    let (tok, body) = ks.token("admin", &admin_pw, "admin").await;
    let pid = str_of(&body["token"]["project"]["id"], "project id").to_string();
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &pid, "hot", &tok)).await,
        201
    );
    assert_eq!(
        status(swift(&http, Method::PUT, &c.proxy, &pid, "hot/o", &tok).body("hot95")).await,
        201
    );
    let get = || swift(&http, Method::GET, &c.proxy, &pid, "hot/o", &tok).send();
    // Warm-up: connections, cached container info.
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200, "warm-up GET");
    assert_eq!(r.text().await.unwrap(), "hot95");

    // The same window without requests: what meta sees anyway (storage-node registrations
    // and replication progress are `Meta/Put`s; ring and revocation watches are open).
    let quiet_before = meta_rpc_counts(&http, &c).await;
    let started = Instant::now();
    for i in 0..GETS {
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200, "GET {i} with a Keystone token");
        assert_eq!(r.text().await.unwrap(), "hot95");
    }
    let window = started.elapsed();
    let during = rpc_increase(&quiet_before, &meta_rpc_counts(&http, &c).await);
    let quiet_start = meta_rpc_counts(&http, &c).await;
    tokio::time::sleep(window).await;
    let quiet = rpc_increase(&quiet_start, &meta_rpc_counts(&http, &c).await);
    eprintln!("{GETS} GETs in {window:?}: meta calls {during:?}; the same time idle: {quiet:?}");

    // A token check that asked meta would be a read (a user, project or revocation
    // lookup: `Meta/Get` or `Meta/Range`), at least one per GET.
    let reads = |d: &std::collections::BTreeMap<String, f64>| -> f64 {
        d.iter()
            .filter(|(op, _)| op.ends_with("/Get") || op.ends_with("/Range"))
            .map(|(_, n)| n)
            .sum()
    };
    // The counters do see the proxy's lookups: issuing a token reads the user and project.
    let before_issue = meta_rpc_counts(&http, &c).await;
    ks.token("admin", &admin_pw, "admin").await;
    let issue = rpc_increase(&before_issue, &meta_rpc_counts(&http, &c).await);
    assert!(
        reads(&issue) >= 1.0,
        "issuing a token made no meta read the metrics show: {issue:?}"
    );
    let reads = reads(&during);
    assert!(
        reads < 5.0,
        "{GETS} Swift GETs with a Keystone token made {reads} meta reads: {during:?}"
    );
    // Nor any other call per request: everything meta answered in the window is less than
    // one call per GET (background writes included).
    let total: f64 = during.values().sum();
    assert!(
        total < GETS as f64,
        "{GETS} Swift GETs with a Keystone token: {total} meta calls in {window:?} \
         ({during:?}; idle for as long: {quiet:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_acls_name_projects_users_and_roles() {
    let c = TestCluster::start(1, 1);
    let ks = Keystone::new(&c.proxy);
    let http = reqwest::Client::new();
    let admin_pw = openrc_var(&c.dir.join(ADMIN), "OS_PASSWORD");
    let demo_pw = openrc_var(&c.dir.join(DEMO), "OS_PASSWORD");
    let (admin, body) = ks.token("admin", &admin_pw, "admin").await;
    let (_, admin_pid) = check_token(&body, &c.proxy, "admin", "admin", &["admin"]);
    let (demo, body) = ks.token("demo", &demo_pw, "demo").await;
    let (demo_uid, demo_pid) = check_token(&body, &c.proxy, "demo", "demo", &["member", "reader"]);
    let on_admin =
        |m: Method, path: &str, token: &str| swift(&http, m, &c.proxy, &admin_pid, path, token);

    // The admin project's account: `shared` readable by demo (by ids), `private` not.
    let s = status(
        on_admin(Method::PUT, "shared", &admin)
            .header("x-container-read", format!("{demo_pid}:{demo_uid}")),
    )
    .await;
    assert_eq!(s, 201, "PUT shared with X-Container-Read");
    for path in ["shared/doc", "private", "private/doc"] {
        assert_eq!(
            status(on_admin(Method::PUT, path, &admin).body("doc95")).await,
            201,
            "PUT {path} as admin"
        );
    }
    assert_eq!(
        status(on_admin(Method::GET, "private/doc", &demo)).await,
        403,
        "demo reads a container with no ACL"
    );
    let read_as_demo = || async {
        let r = on_admin(Method::GET, "shared/doc", &demo)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let body = r.text().await.unwrap();
        if s == 200 {
            assert_eq!(body, "doc95", "the object demo read");
        }
        (s, body)
    };
    let (s, b) = read_as_demo().await;
    assert_eq!(s, 200, "X-Container-Read <project_id>:<user_id>: {b}");
    assert_eq!(
        status(on_admin(Method::PUT, "shared/by-demo", &demo).body("no")).await,
        403,
        "a read ACL lets demo write"
    );

    let set = |header: &'static str, value: String| {
        let r = on_admin(Method::POST, "shared", &admin).header(header, value);
        async move {
            let s = status(r).await;
            assert!((200..300).contains(&s), "POST shared {header}: {s}");
        }
    };
    for (acl, want) in [
        ("demo:*".to_string(), 200),
        ("reader".to_string(), 200),
        ("nobody:*".to_string(), 403),
    ] {
        set("x-container-read", acl.clone()).await;
        let (s, b) = read_as_demo().await;
        assert_eq!(s, want, "demo reads with X-Container-Read {acl}: {b}");
    }

    // A write ACL by project id lets demo write (and still not read).
    set("x-container-write", format!("{demo_pid}:*")).await;
    assert_eq!(
        status(on_admin(Method::PUT, "shared/by-demo", &demo).body("from demo")).await,
        201,
        "demo writes with X-Container-Write <project_id>:*"
    );
    let r = on_admin(Method::GET, "shared/by-demo", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "from demo");
    let (s, b) = read_as_demo().await;
    assert_eq!(s, 403, "a write ACL lets demo read: {b}");
}
