//! Every port of a `dev up` cluster refuses a caller that cannot prove who it is, and
//! authorizes by the role its certificate names: no certificate (plain, or TLS without a
//! client certificate), a certificate from another CA and an expired one are refused on
//! the meta and storage ports; a `storage` certificate cannot speak Raft, change
//! membership, write users or publish rings; a `proxy` certificate cannot change
//! membership; only the proxy (and an admin that asks with `--reveal`) reads the token
//! secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stratus_client::tls::certs::{Ca, Validity};
use stratus_client::tls::{self, Identity, Role};
use stratus_proto::meta as mpb;
use stratus_proto::meta::meta_client::MetaClient;
use stratus_proto::storage as spb;
use stratus_proto::storage::admin_client::AdminClient;
use stratus_proto::storage::replication_client::ReplicationClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::common::*;

fn endpoint(addr: &str) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
}

fn as_role(id: &Arc<Identity>, addr: &str, role: Role) -> Channel {
    tls::net::channel_as(id.clone(), endpoint(addr), role)
}

fn first_meta(c: &TestCluster) -> String {
    let eps = std::fs::read_to_string(c.dir.join("endpoints")).unwrap();
    eps.split(',').next().unwrap().trim().to_string()
}

fn listen_of(node_dir: &Path) -> String {
    let text = std::fs::read_to_string(node_dir.join("storage.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// An identity folder that trusts the cluster's CA but holds a certificate from `other`.
fn foreign_identity(cluster_tls: &Path, other: &Ca, out: &Path) -> Arc<Identity> {
    other
        .issue(Role::Admin, "intruder", out, Validity::default())
        .unwrap();
    std::fs::copy(cluster_tls.join("ca/ca.pem"), out.join(tls::CA_FILE)).unwrap();
    Identity::load(out).unwrap()
}

/// Opens a Raft connection to `addr` as `id`, sends one junk AppendEntries frame and
/// returns the answer's status byte and message.
async fn raft_answer(id: &Arc<Identity>, addr: &str) -> (u8, String) {
    let mut s = tls::net::connect(id, addr, Role::Meta, tls::ALPN_RAFT)
        .await
        .unwrap();
    s.write_all(b"STRAFT1\n").await.unwrap();
    s.write_all(&[0, 0, 0, 2, 1, 0]).await.unwrap();
    s.flush().await.unwrap();
    let len = s.read_u32().await.unwrap() as usize;
    let mut answer = vec![0u8; len];
    s.read_exact(&mut answer).await.unwrap();
    (answer[0], String::from_utf8_lossy(&answer[1..]).to_string())
}

fn request_id() -> Vec<u8> {
    (0..16).map(|_| rand_byte()).collect()
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    // SAFETY: getrandom writes at most one byte into the buffer it is given.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
    b[0]
}

async fn meta_get(ch: Channel, key: &str, reveal: bool) -> Result<mpb::GetResponse, tonic::Status> {
    let mut req = tonic::Request::new(mpb::GetRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    if reveal {
        req.metadata_mut()
            .insert("x-stratus-reveal", "1".parse().unwrap());
    }
    MetaClient::new(ch).get(req).await.map(|r| r.into_inner())
}

async fn meta_put(ch: Channel, key: &str) -> Result<(), tonic::Status> {
    MetaClient::new(ch)
        .put(mpb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"planted".to_vec(),
            request_id: request_id(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn change_membership(ch: Channel) -> Result<(), tonic::Status> {
    MetaClient::new(ch)
        .change_membership(mpb::ChangeMembershipRequest {
            add_voters: vec![],
            remove: vec![1],
        })
        .await
        .map(|_| ())
}

fn denied<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str) {
    match r {
        Err(s) if s.code() == Code::PermissionDenied => {
            assert!(
                s.message().contains("needs role"),
                "{what}: {}",
                s.message()
            )
        }
        other => panic!("{what}: expected PERMISSION_DENIED, got {other:?}"),
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str) {
    match r {
        Err(s) => assert!(
            !matches!(s.code(), Code::PermissionDenied | Code::NotFound | Code::Ok),
            "{what}: refused at the connection, not by a handler: {s:?}"
        ),
        Ok(v) => panic!("{what}: a caller without a valid certificate was answered: {v:?}"),
    }
}

/// A TLS connection that trusts the cluster CA but presents no client certificate gets
/// nothing back.
async fn no_client_cert_refused(ca: &Arc<Identity>, addr: &str, role: Role) {
    let cfg = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(role.dns_name()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = connector.connect(name, tcp).await?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        s.read(&mut buf).await
    })
    .await
    .expect("the server answered or closed within 10 s");
    assert!(
        matches!(got, Err(_) | Ok(0)),
        "{addr}: a client without a certificate got {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_refuses_strangers_and_authorizes_by_role() {
    let c = TestCluster::start(2, 1);
    let tls_dir = c.dir.join("tls");
    let id = |name: &str| Identity::load(&tls_dir.join(name)).unwrap();
    let (admin, proxy, storage, meta) = (id("admin"), id("proxy"), id("storage-1"), id("meta-1"));
    let meta_addr = first_meta(&c);
    let storage_addrs: Vec<String> = (1..=2)
        .map(|n| listen_of(&c.dir.join(format!("storage-{n}"))))
        .collect();

    // Strangers: a second CA's certificate, an expired one from the right CA.
    let tmp = tempfile::tempdir().unwrap();
    let other = Ca::create(&tmp.path().join("other-ca")).unwrap();
    let foreign = foreign_identity(&tls_dir, &other, &tmp.path().join("foreign"));
    let expired_dir: PathBuf = tmp.path().join("expired");
    Ca::open(&tls_dir.join("ca"))
        .unwrap()
        .issue(Role::Admin, "old", &expired_dir, Validity::Expired)
        .unwrap();
    let expired = Identity::load(&expired_dir).unwrap();

    // Meta: the legitimate admin reads rings; strangers get nothing.
    assert!(meta_get(
        as_role(&admin, &meta_addr, Role::Meta),
        "/rings/object/current",
        false
    )
    .await
    .unwrap()
    .kv
    .is_some());
    let strangers = [
        (endpoint(&meta_addr).connect_lazy(), "plain HTTP/2"),
        (as_role(&foreign, &meta_addr, Role::Meta), "another CA"),
        (
            as_role(&expired, &meta_addr, Role::Meta),
            "an expired certificate",
        ),
    ];
    for (ch, what) in strangers {
        refused(meta_get(ch, "/rings/object/current", false).await, what);
    }
    no_client_cert_refused(&admin, &meta_addr, Role::Meta).await;

    // Meta by role.
    let as_storage = || as_role(&storage, &meta_addr, Role::Meta);
    denied(
        change_membership(as_storage()).await,
        "storage changes membership",
    );
    denied(
        change_membership(as_role(&proxy, &meta_addr, Role::Meta)).await,
        "proxy changes membership",
    );
    denied(
        meta_put(as_storage(), "/auth/users/test/planted").await,
        "storage writes a user",
    );
    denied(
        meta_put(as_storage(), "/rings/object/current").await,
        "storage publishes a ring",
    );
    denied(
        meta_get(as_storage(), "/auth/token-secret", false).await,
        "storage reads the secret",
    );
    denied(
        meta_get(as_storage(), "/auth/token-secret", true).await,
        "storage asks to reveal",
    );
    denied(
        meta_get(
            as_role(&admin, &meta_addr, Role::Meta),
            "/auth/token-secret",
            false,
        )
        .await,
        "admin reads the secret without --reveal",
    );
    let secret = meta_get(
        as_role(&proxy, &meta_addr, Role::Meta),
        "/auth/token-secret",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        secret.kv.unwrap().value.len(),
        32,
        "the proxy reads the token secret"
    );
    assert!(meta_get(
        as_role(&admin, &meta_addr, Role::Meta),
        "/auth/token-secret",
        true
    )
    .await
    .unwrap()
    .kv
    .is_some());
    // Nothing the denied calls tried was written.
    let planted = meta_get(
        as_role(&proxy, &meta_addr, Role::Meta),
        "/auth/users/test/planted",
        false,
    )
    .await
    .unwrap();
    assert!(planted.kv.is_none());

    // Raft: only `meta` may speak it; a storage certificate gets one error frame.
    let (status, msg) = raft_answer(&storage, &meta_addr).await;
    assert_eq!(status, 1, "an error frame");
    assert!(
        msg.contains("permission denied") && msg.contains("meta"),
        "{msg}"
    );
    // A meta certificate is let in (the frame is junk, so it is told so, not refused).
    let (_, msg) = raft_answer(&meta, &meta_addr).await;
    assert!(!msg.contains("permission denied"), "{msg}");

    // Storage nodes.
    for addr in &storage_addrs {
        let workers = |ch: Channel| async move {
            AdminClient::new(ch)
                .workers(spb::WorkersRequest::default())
                .await
                .map(|r| r.into_inner())
        };
        assert!(workers(as_role(&admin, addr, Role::Storage)).await.is_ok());
        let strangers = [
            (endpoint(addr).connect_lazy(), "plain HTTP/2"),
            (as_role(&foreign, addr, Role::Storage), "another CA"),
            (
                as_role(&expired, addr, Role::Storage),
                "an expired certificate",
            ),
        ];
        for (ch, what) in strangers {
            refused(workers(ch).await, what);
        }
        no_client_cert_refused(&admin, addr, Role::Storage).await;
        denied(
            workers(as_role(&proxy, addr, Role::Storage)).await,
            "proxy reads worker settings",
        );
        let set = AdminClient::new(as_role(&proxy, addr, Role::Storage))
            .set_worker(spb::SetWorkerRequest {
                worker: "replicator".into(),
                setting: "paused".into(),
                value: 1.0,
            })
            .await;
        denied(set, "proxy changes worker settings");
        let sums = ReplicationClient::new(as_role(&proxy, addr, Role::Storage))
            .summaries(spb::SummariesRequest::default())
            .await;
        denied(sums, "proxy calls replication");
        let sums = ReplicationClient::new(as_role(&meta, addr, Role::Storage))
            .summaries(spb::SummariesRequest::default())
            .await;
        denied(sums, "meta calls replication");
    }
}

/// The token secret as the proxy reads it.
async fn secret(c: &TestCluster) -> [u8; 32] {
    let proxy = Identity::load(&c.dir.join("tls/proxy")).unwrap();
    let meta_addr = first_meta(c);
    let kv = meta_get(
        as_role(&proxy, &meta_addr, Role::Meta),
        "/auth/token-secret",
        false,
    )
    .await
    .unwrap()
    .kv
    .unwrap();
    kv.value.as_slice().try_into().unwrap()
}

fn tester_claims(expires: u64) -> stratus_core::token::Claims {
    stratus_core::token::Claims {
        account: "test".into(),
        user: "tester".into(),
        roles: vec!["admin".into()],
        expires,
    }
}

async fn status_with(s: &Session, token: &str) -> u16 {
    s.http
        .get(&s.url)
        .header("x-auth-token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls (bounded) until a fresh login's token is signed with `secret`: the proxy has
/// followed the rotation.
async fn wait_signed_with(c: &TestCluster, secret: &[u8; 32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = c.tester().await.token;
        if stratus_core::token::verify(secret, &t, 0).is_ok() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy did not follow the rotation in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Tokens are only as good as the secret: one minted with a guessed secret, one with the
/// real secret but an expiry beyond any lifetime a proxy issues, and one signed with a
/// secret rotated away (grace 0) are all refused; a rotation with a grace period keeps old
/// tokens working until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_guessed_long_lived_or_rotated_secrets_are_refused() {
    let c = TestCluster::start(1, 1);
    let s = c.tester().await;
    assert_eq!(status_with(&s, &s.token).await / 100, 2);
    let now = stratus_core::time::now_secs();

    let guessed = stratus_core::token::mint(&[7u8; 32], &tester_claims(now + 600));
    assert_eq!(status_with(&s, &guessed).await, 401, "a guessed secret");
    let real = secret(&c).await;
    let fine = stratus_core::token::mint(&real, &tester_claims(now + 600));
    assert_eq!(
        status_with(&s, &fine).await / 100,
        2,
        "the real secret, a normal expiry"
    );
    let forever = stratus_core::token::mint(&real, &tester_claims(1 << 63));
    assert_eq!(status_with(&s, &forever).await, 401, "an expiry of 2^63");

    // Rotation with no grace: the old token is refused once the proxy follows.
    let rotate = |grace: &str| {
        ok(&[
            "auth",
            "--dir",
            c.dir_str(),
            "rotate-secret",
            "--grace",
            grace,
        ])
    };
    let out = rotate("0");
    assert!(out.contains("rotated"), "{out}");
    let second = secret(&c).await;
    assert_ne!(second, real);
    wait_signed_with(&c, &second).await;
    assert_eq!(
        status_with(&s, &s.token).await,
        401,
        "signed with the rotated secret"
    );
    assert_eq!(status_with(&s, &fine).await, 401);

    // Rotation with a grace period: tokens of the previous secret still work.
    let before = c.tester().await;
    rotate("600");
    let third = secret(&c).await;
    wait_signed_with(&c, &third).await;
    assert_eq!(
        status_with(&before, &before.token).await / 100,
        2,
        "within the grace period"
    );
    let after = c.tester().await;
    assert_eq!(status_with(&after, &after.token).await / 100, 2);
}

/// The proxy's public port over HTTPS (`--tls-cert`, `--tls-key`): a client that trusts
/// the certificate logs in, uploads and reads back; plain HTTP to that port gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_serves_https() {
    use std::io::BufRead;
    let c = TestCluster::start(1, 1);
    // A server certificate for the name the client uses (any CA would do: here a fresh one).
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web");
    Ca::create(&tmp.path().join("web-ca"))
        .unwrap()
        .issue(Role::Proxy, "public", &web, Validity::default())
        .unwrap();
    let endpoints = std::fs::read_to_string(c.dir.join("endpoints")).unwrap();
    let bin = STRATUS.parent().unwrap().join("stratus-proxy");
    let mut child = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--meta", endpoints.trim()])
        .arg("--tls")
        .arg(c.dir.join("tls/proxy"))
        .arg("--tls-cert")
        .arg(web.join(tls::CERT_FILE))
        .arg("--tls-key")
        .arg(web.join(tls::KEY_FILE))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("listening on"))
    })
    .await
    .unwrap()
    .expect("the proxy says where it listens");
    let addr = line.rsplit("https://").next().unwrap().trim().to_string();
    assert!(line.contains("https://"), "{line}");
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(web.join(tls::CA_FILE)).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("proxy.stratus", sock)
        .build()
        .unwrap();
    let base = format!("https://proxy.stratus:{}", sock.port());
    let r = http
        .get(format!("{base}/auth/v1.0"))
        .header("x-auth-user", "test:tester")
        .header("x-auth-key", "testing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    // The storage URL names the scheme the client came in on (the real `swift` client
    // follows it).
    let url = r.headers()["x-storage-url"].to_str().unwrap().to_string();
    assert_eq!(url, format!("{base}/v1/AUTH_test"));
    let put =
        |p: String, body: Vec<u8>| http.put(p).header("x-auth-token", &token).body(body).send();
    assert_eq!(
        put(format!("{url}/secure"), vec![]).await.unwrap().status(),
        201
    );
    let body = random_bytes(300_000, 9);
    assert_eq!(
        put(format!("{url}/secure/o"), body.clone())
            .await
            .unwrap()
            .status(),
        201
    );
    let got = http
        .get(format!("{url}/secure/o"))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);
    // Plain HTTP to the HTTPS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/info"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP answered: {plain:?}"
    );
}
