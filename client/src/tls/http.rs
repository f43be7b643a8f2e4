//! HTTP over TLS: the proxy's public port with `--tls-cert`/`--tls-key`, and the compute
//! agents' port (mutual TLS, for the proxy and operators only); and the HTTP client side
//! that checks a server's role rather than its address.

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use super::request_target::QuotedTargets;
use super::{Identity, Role, TlsError};

/// A server configuration for a public HTTPS port: `cert` (a PEM chain) and `key`, no client
/// certificates; HTTP/1.1 (and HTTP/2 by ALPN).
pub fn public_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|err| TlsError::Read {
            path: p.to_path_buf(),
            err,
        })
    };
    let bad = |p: &std::path::Path, e: &dyn std::fmt::Display| TlsError::Bad {
        path: p.to_path_buf(),
        what: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad(key, &e))?;
    let mut c = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, &e))?;
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// The compute agents' port: this identity, client certificates from the cluster CA
/// required, HTTP/1.1.
pub fn cluster_server_config(identity: &Identity) -> Arc<ServerConfig> {
    let mut c = (*identity.server_config()).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves; a connection whose
/// client certificate names a role outside `roles` is dropped after the handshake (with
/// no client authentication configured, `roles` is not checked).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: Arc<ServerConfig>,
    roles: Option<&'static [Role]>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    // Handlers that write their own URLs (a storage URL, a catalog) see `https`.
    let app = app.layer(axum::Extension(http::uri::Scheme::HTTPS));
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            x = super::net::accept_tcp(&listener) => x,
            _ = &mut shutdown => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream = tokio::io::BufReader::with_capacity(super::net::READ_BUFFER, stream);
            let tls =
                match tokio::time::timeout(super::net::HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            if let Some(roles) = roles {
                let role = super::net::peer_role(tls.get_ref().1);
                if !role.is_some_and(|r| roles.contains(&r)) {
                    tracing::warn!(%remote, ?role, "refused: role may not call this port");
                    return;
                }
            }
            let svc = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// How a public HTTP port treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Longest a client may take to send a request's headers (a client that trickles
    /// them, or opens connections and says nothing, is dropped).
    pub header_timeout: std::time::Duration,
}

/// Most headers one request may carry on the public port.
pub const MAX_HEADERS: usize = 512;

/// Serves `app` on a public port, over TLS with `config` (no client certificates) or plain
/// HTTP without, until `shutdown` resolves. A client that half-closes its side after a
/// complete request still gets its answer (HTTP/1.1 half-close, as Swift's eventlet
/// server allows). Request targets that are not UTF-8 reach `app` percent-encoded (see
/// [`QuotedTargets`]) rather than being refused by hyper with a bare 400.
pub async fn serve_public(
    listener: TcpListener,
    app: axum::Router,
    config: Option<Arc<ServerConfig>>,
    opts: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = config.map(TlsAcceptor::from);
    let app = match acceptor {
        Some(_) => app.layer(axum::Extension(http::uri::Scheme::HTTPS)),
        None => app,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Header names as Swift writes them (`X-Object-Meta-Color`, `Etag`): clients
        // that compare them as written see what they would from Swift.
        .title_case_headers(true)
        // Swift takes up to 90 metadata items plus the usual headers, and answers 400
        // past its limits; hyper's default of 100 headers would answer 431 first.
        .max_headers(MAX_HEADERS)
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            x = super::net::accept_tcp(&listener) => x,
            _ = &mut shutdown => return Ok(()),
        };
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(app);
            let Some(acceptor) = acceptor else {
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(QuotedTargets::new(stream)), svc)
                    .await;
                return;
            };
            let stream = tokio::io::BufReader::with_capacity(super::net::READ_BUFFER, stream);
            match tokio::time::timeout(super::net::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(QuotedTargets::new(tls)), svc)
                        .await;
                }
                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => {}
            }
        });
    }
}

/// Verifies a server's certificate against the cluster CA for a role's name, whatever
/// address the URL gave (agents are reached by IP address).
#[derive(Debug)]
struct RoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client configuration (for reqwest) that presents `identity` and accepts only a
/// server whose certificate from the cluster CA names `role`.
pub fn client_config_for(identity: &Identity, role: Role) -> Result<ClientConfig, TlsError> {
    let inner = WebPkiServerVerifier::builder_with_provider(identity.roots(), super::provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let name =
        ServerName::try_from(role.dns_name()).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut c = identity.http_client_config();
    c.dangerous()
        .set_certificate_verifier(Arc::new(RoleVerifier { inner, name }));
    Ok(c)
}
