//! Making a cluster CA and issuing certificates (`stratus cert init|issue`, `stratus dev up`).
//!
//! # Files
//! - a CA folder: `ca.pem` (the CA certificate, what every process trusts) and `ca.key`
//!   (its private key, mode 0600; keep it off the servers in a real deployment);
//! - an identity folder ([`super::Identity::load`]): `ca.pem`, `cert.pem`, `key.pem` (0600).
//!
//! Keys are ECDSA P-256. A certificate names its role as the DNS name `<role>.stratus`, its
//! process name as the subject's common name, and is valid for client and server use.
//! Issuing rebuilds the CA's subject from fixed parameters and signs with `ca.key`, so a
//! certificate issued later chains to the same `ca.pem`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::{Role, TlsError, CA_FILE, CERT_FILE, KEY_FILE};

/// The CA's private key file in a CA folder.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From an hour ago for this many days.
    Days(u32),
    /// Already expired (for tests of refusal).
    Expired,
}

impl Default for Validity {
    fn default() -> Self {
        Validity::Days(365)
    }
}

/// A cluster CA: its key and the certificate every process trusts.
pub struct Ca {
    dir: PathBuf,
    key: KeyPair,
    cert: rcgen::Certificate,
}

fn gen(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn write(path: &Path, data: &str, private: bool) -> Result<(), TlsError> {
    let err = |err| TlsError::Write {
        path: path.to_path_buf(),
        err,
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = o.open(path).map_err(err)?;
    std::io::Write::write_all(&mut f, data.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

fn mkdir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|err| TlsError::Write {
        path: dir.to_path_buf(),
        err,
    })
}

/// `t` as the certificate time type (`time::OffsetDateTime`, which rcgen does not name).
macro_rules! at {
    ($t:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + $t.duration_since(UNIX_EPOCH).unwrap_or_default()
    };
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Stratus");
    dn.push(DnType::CommonName, "Stratus cluster CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl Ca {
    /// Makes a new CA in `dir` (created if missing); refuses to replace an existing one.
    pub fn create(dir: &Path) -> Result<Ca, TlsError> {
        mkdir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.exists() {
            return Err(TlsError::Bad {
                path: key_path,
                what: "a CA is already here; refusing to replace it".into(),
            });
        }
        let key = KeyPair::generate().map_err(gen)?;
        let mut p = ca_params();
        let now = SystemTime::now();
        p.not_before = at!(now - Duration::from_secs(3600));
        p.not_after = at!(now + Duration::from_secs(20 * 365 * 86_400));
        let cert = p.self_signed(&key).map_err(gen)?;
        write(&key_path, &key.serialize_pem(), true)?;
        write(&dir.join(CA_FILE), &cert.pem(), false)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            key,
            cert,
        })
    }

    /// Opens the CA in `dir` (made by [`Ca::create`]).
    pub fn open(dir: &Path) -> Result<Ca, TlsError> {
        let key_path = dir.join(CA_KEY_FILE);
        let pem = std::fs::read_to_string(&key_path).map_err(|err| TlsError::Read {
            path: key_path.clone(),
            err,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|e| TlsError::Bad {
            path: key_path,
            what: e.to_string(),
        })?;
        // Only the subject, key identifier and key usages of the issuer go into what it
        // signs: the same fixed parameters give certificates that chain to `ca.pem`.
        let cert = ca_params().self_signed(&key).map_err(gen)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            key,
            cert,
        })
    }

    /// Opens the CA in `dir`, or makes one there if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Ca, TlsError> {
        if dir.join(CA_KEY_FILE).exists() {
            Ca::open(dir)
        } else {
            Ca::create(dir)
        }
    }

    /// Issues a certificate for a process `name` of `role` into the identity folder `out`
    /// (created if missing): `ca.pem`, `cert.pem`, `key.pem`.
    pub fn issue(
        &self,
        role: Role,
        name: &str,
        out: &Path,
        validity: Validity,
    ) -> Result<(), TlsError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TlsError::Generate(format!(
                "bad name {name:?}: 1 to 64 printable ASCII characters"
            )));
        }
        let mut p = CertificateParams::new(vec![role.dns_name()]).map_err(gen)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Stratus");
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let (from, to) = match validity {
            Validity::Days(d) => (
                now - Duration::from_secs(3600),
                now + Duration::from_secs(u64::from(d) * 86_400),
            ),
            Validity::Expired => (
                now - Duration::from_secs(2 * 86_400),
                now - Duration::from_secs(86_400),
            ),
        };
        p.not_before = at!(from);
        p.not_after = at!(to);
        let key = KeyPair::generate().map_err(gen)?;
        let cert = p.signed_by(&key, &self.cert, &self.key).map_err(gen)?;
        mkdir(out)?;
        write(&out.join(KEY_FILE), &key.serialize_pem(), true)?;
        write(&out.join(CERT_FILE), &cert.pem(), false)?;
        let ca = std::fs::read_to_string(self.dir.join(CA_FILE)).map_err(|err| TlsError::Read {
            path: self.dir.join(CA_FILE),
            err,
        })?;
        write(&out.join(CA_FILE), &ca, false)
    }
}
