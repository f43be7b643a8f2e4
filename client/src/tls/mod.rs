//! Mutual TLS inside the cluster: who a process is, and who is calling it.
//!
//! A cluster CA signs one certificate per process. The certificate names the process's
//! **role** as a DNS name `<role>.stratus` ([`Role::dns_name`]), so:
//! - a client checks that the server it reached holds the role it meant to reach (it
//!   verifies the server's certificate for `meta.stratus`, `storage.stratus`, …);
//! - a server learns the caller's role from the verified client certificate
//!   ([`role_of`]) and authorizes each call by it ([`Authorize`]).
//!
//! Each process loads its identity from one folder ([`Identity::load`]): `ca.pem` (the
//! cluster CA), `cert.pem` and `key.pem`. [`certs`] creates CAs and issues certificates
//! (`stratus cert`, `stratus dev up`). [`net`] holds the TLS listener, the gRPC connector and
//! the authorization layer.
//!
//! The process's identity is installed once at start ([`install`]); every channel made by
//! this crate ([`crate::meta::channel`], [`crate::peers::Peers`]) then speaks TLS with it. A
//! process started without one (`--insecure`, for measuring what TLS costs) speaks plain
//! HTTP/2, and a TLS server refuses it.

pub mod certs;
pub mod http;
pub mod net;
pub mod request_target;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use net::{Authorize, Peer, PeerIo};

/// The DNS suffix of role names in certificates: a `storage` certificate names
/// `storage.stratus`.
pub const ROLE_DOMAIN: &str = "stratus";

/// ALPN protocol of gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol of the Raft transport between meta nodes (beside gRPC on one port).
pub const ALPN_RAFT: &[u8] = b"stratus-raft/1";

/// File names in an identity folder.
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A meta node: the only role that may speak Raft.
    Meta,
    /// A storage node: replication between storage nodes.
    Storage,
    /// A proxy: the only role that reads identity secrets.
    Proxy,
    /// A compute agent: volume I/O and its own host records.
    Compute,
    /// An operator (the `stratus` CLI): membership, rings, users, worker settings.
    Admin,
}

impl Role {
    /// Every role, in the order [`role_of`] tries them.
    pub const ALL: [Role; 5] = [
        Role::Meta,
        Role::Storage,
        Role::Proxy,
        Role::Compute,
        Role::Admin,
    ];

    /// The role's name (`meta`, `storage`, `proxy`, `compute`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Meta => "meta",
            Role::Storage => "storage",
            Role::Proxy => "proxy",
            Role::Compute => "compute",
            Role::Admin => "admin",
        }
    }

    /// The DNS name a certificate of this role carries (`meta.stratus`).
    pub fn dns_name(self) -> String {
        format!("{}.{ROLE_DOMAIN}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| TlsError::BadRole(s.to_string()))
    }
}

/// Why an identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
    #[error("unknown role {0:?} (meta, storage, proxy, compute or admin)")]
    BadRole(String),
    #[error("certificate for {0:?} names no Stratus role (a DNS name <role>.stratus)")]
    NoRole(PathBuf),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("making a certificate: {0}")]
    Generate(String),
}

/// A process's TLS identity: the cluster CA it trusts, its certificate and key, and the
/// rustls configurations built from them.
pub struct Identity {
    role: Role,
    dir: PathBuf,
    roots: Arc<RootCertStore>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("dir", &self.dir)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError::Read {
        path: path.to_path_buf(),
        err,
    })
}

fn bad(path: &Path, what: impl fmt::Display) -> TlsError {
    TlsError::Bad {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

impl Identity {
    /// Loads `ca.pem`, `cert.pem` and `key.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Arc<Identity>, TlsError> {
        let (ca_path, cert_path, key_path) =
            (dir.join(CA_FILE), dir.join(CERT_FILE), dir.join(KEY_FILE));
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&ca_path)?)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&ca_path, e))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&cert_path)?)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&cert_path, e))?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|e| bad(&key_path, e))?;
        if ca.is_empty() {
            return Err(bad(&ca_path, "no certificate in it"));
        }
        let leaf = chain
            .first()
            .ok_or_else(|| bad(&cert_path, "no certificate in it"))?;
        let role = role_of(leaf).ok_or_else(|| TlsError::NoRole(cert_path.clone()))?;
        let mut roots = RootCertStore::empty();
        for c in &ca {
            roots.add(c.clone()).map_err(|e| bad(&ca_path, e))?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| bad(&key_path, e))?;
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_RAFT.to_vec()];
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(&key_path, e))?;
        Ok(Arc::new(Identity {
            role,
            dir: dir.to_path_buf(),
            roots,
            server: Arc::new(server),
            client: Arc::new(client),
        }))
    }

    /// The role this process's certificate names.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The cluster CA this process trusts.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// The folder the identity was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server configuration: this certificate, and a client certificate from the
    /// cluster CA required of every caller (ALPN `h2` and the Raft protocol).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// A client configuration offering `alpn` (e.g. [`ALPN_H2`]).
    pub fn client_config(&self, alpn: &[u8]) -> Arc<ClientConfig> {
        let mut c = (*self.client).clone();
        c.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(c)
    }

    /// A client configuration for HTTP/1.1 that presents this identity and trusts only the
    /// cluster CA (see [`http::client_config_for`]).
    pub fn http_client_config(&self) -> ClientConfig {
        let mut c = (*self.client).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }
}

/// The crypto every Stratus TLS configuration uses: ring, with AES-128-GCM first (on this
/// machine's AES-NI it moves a byte for less CPU than AES-256-GCM, rustls's first choice;
/// ChaCha20-Poly1305 follows for CPUs without AES instructions).
pub fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    use tokio_rustls::rustls::crypto::ring::{cipher_suite as cs, default_provider};
    static PROVIDER: OnceLock<Arc<tokio_rustls::rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(tokio_rustls::rustls::crypto::CryptoProvider {
                cipher_suites: vec![
                    cs::TLS13_AES_128_GCM_SHA256,
                    cs::TLS13_CHACHA20_POLY1305_SHA256,
                    cs::TLS13_AES_256_GCM_SHA384,
                    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                ],
                ..default_provider()
            })
        })
        .clone()
}

/// The role a certificate (already verified against the cluster CA) names: the first of
/// [`Role::ALL`] whose DNS name it is valid for.
pub fn role_of(cert: &CertificateDer<'_>) -> Option<Role> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    Role::ALL.into_iter().find(|r| {
        let Ok(name) = ServerName::try_from(r.dns_name()) else {
            return false;
        };
        ee.verify_is_valid_for_subject_name(&name).is_ok()
    })
}

/// The TLS flags every Stratus process takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Folder with this process's TLS identity: ca.pem, cert.pem, key.pem (made by `stratus
    /// cert issue` or `stratus dev up`).
    #[arg(long = "tls", value_name = "DIR")]
    pub tls: Option<PathBuf>,
    /// Run without TLS: no caller is authenticated and any caller may do anything. Only for
    /// measuring what TLS costs; a node with TLS refuses a node without.
    #[arg(long)]
    pub insecure: bool,
}

impl TlsArgs {
    /// Loads and installs the identity the flags name (see [`install_from`]).
    pub fn install(&self) -> Result<(), TlsError> {
        install_from(self.tls.as_deref(), self.insecure)
    }
}

static INSTALLED: OnceLock<Option<Arc<Identity>>> = OnceLock::new();

/// Sets this process's identity (or, with `None`, plain connections) for every channel
/// made afterwards. The first call wins; later ones are ignored.
pub fn install(identity: Option<Arc<Identity>>) {
    if let Some(id) = &identity {
        tracing::debug!(role = %id.role(), dir = %id.dir().display(), "TLS identity");
    }
    let _ = INSTALLED.set(identity);
}

/// This process's identity, if one was installed.
pub fn current() -> Option<Arc<Identity>> {
    INSTALLED.get().cloned().flatten()
}

/// Loads the identity in `dir` (when given) and installs it; `None` with `insecure`
/// installs plain connections; `None` without `insecure` is an error a server reports at
/// start (nothing in the cluster answers a caller that cannot prove who it is).
pub fn install_from(dir: Option<&Path>, insecure: bool) -> Result<(), TlsError> {
    match (dir, insecure) {
        (Some(d), _) => install(Some(Identity::load(d)?)),
        (None, true) => install(None),
        (None, false) => {
            return Err(TlsError::Config(
                "no TLS identity: give --tls DIR (ca.pem, cert.pem, key.pem; see `stratus \
                 cert issue`), or --insecure to run without TLS"
                    .into(),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_load_and_name_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let ca = certs::Ca::create(&dir.path().join("ca")).unwrap();
        for role in Role::ALL {
            let out = dir.path().join(role.as_str());
            ca.issue(role, "x-1", &out, certs::Validity::default())
                .unwrap();
            let id = Identity::load(&out).unwrap();
            assert_eq!(id.role(), role);
        }
        assert!("bogus".parse::<Role>().is_err());
        assert_eq!("proxy".parse::<Role>().unwrap(), Role::Proxy);
        // A missing or broken file names itself.
        std::fs::write(dir.path().join("admin").join(KEY_FILE), "junk").unwrap();
        let e = Identity::load(&dir.path().join("admin")).unwrap_err();
        assert!(e.to_string().contains(KEY_FILE), "{e}");
    }
}
