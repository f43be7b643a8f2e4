//! TLS on the wire: the listener side ([`incoming`], [`accept`], [`PeerIo`]), the gRPC
//! client side ([`channel`]) and per-call authorization by role ([`Authorize`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{current, role_of, Identity, Role, ALPN_H2};

/// How long a new connection may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to connect and finish its handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Read buffer under every TLS connection. rustls reads the socket 4 KiB at a time, so a
/// 1 MiB message took 256 reads; through this buffer it takes 16.
pub const READ_BUFFER: usize = 64 * 1024;

/// A TCP stream with a read buffer (writes pass straight through).
pub type Buffered = BufReader<TcpStream>;

/// Who is on the other end of a served connection (in every request's extensions).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The caller's address.
    pub remote: Option<SocketAddr>,
    /// The role its verified certificate names; `None` on a plain (`--insecure`) server.
    pub role: Option<Role>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<Buffered>>),
}

/// A served connection: TLS (or plain on an `--insecure` server) and who is calling.
pub struct PeerIo {
    io: Io,
    peer: Peer,
}

impl PeerIo {
    /// The caller.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The protocol the caller chose by ALPN (`None` on a plain connection).
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.io {
            Io::Plain(_) => None,
            Io::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The plain TCP stream under the connection (to peek at its first bytes).
    pub fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0.get_ref(),
        }
    }
}

impl tonic::transport::server::Connected for PeerIo {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Completes the server side of a new connection: the TLS handshake with `identity`
/// (refusing a caller without a certificate from the cluster CA), or nothing on a plain
/// server.
pub async fn accept(stream: TcpStream, identity: Option<&Identity>) -> io::Result<PeerIo> {
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().ok();
    let Some(id) = identity else {
        return Ok(PeerIo {
            io: Io::Plain(stream),
            peer: Peer { remote, role: None },
        });
    };
    let acceptor = TlsAcceptor::from(id.server_config());
    let stream = BufReader::with_capacity(READ_BUFFER, stream);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let role = peer_role(tls.get_ref().1);
    if role.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "client certificate names no Stratus role",
        ));
    }
    Ok(PeerIo {
        io: Io::Tls(Box::new(tls)),
        peer: Peer { remote, role },
    })
}

/// The next connection on `listener`; an accept error (out of file descriptors, a
/// connection reset before it was taken) is logged and retried after 50 ms.
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => return x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The role the verified client certificate of a server-side TLS connection names.
pub fn peer_role(conn: &tokio_rustls::rustls::ServerConnection) -> Option<Role> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(role_of)
}

/// Accepts connections on `listener` and completes each one's handshake in its own task
/// (a slow or hostile client holds up nobody); failed handshakes are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    identity: Option<Arc<Identity>>,
) -> ReceiverStream<io::Result<PeerIo>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, addr) = tokio::select! {
                x = accept_tcp(&listener) => x,
                _ = tx.closed() => return,
            };
            let (tx, id) = (tx.clone(), identity.clone());
            tokio::spawn(async move {
                match accept(stream, id.as_deref()).await {
                    Ok(io) => {
                        let _ = tx.send(Ok(io)).await;
                    }
                    Err(e) => tracing::info!(%addr, error = %e, "refused a connection"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Opens a TLS connection to `addr` as this process, verifying the server holds `role`
/// and offering `alpn`.
pub async fn connect(
    identity: &Identity,
    addr: &str,
    role: Role,
    alpn: &[u8],
) -> io::Result<tokio_rustls::client::TlsStream<Buffered>> {
    let name = ServerName::try_from(role.dns_name())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let connector = TlsConnector::from(identity.client_config(alpn));
    let go = async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(name, BufReader::with_capacity(READ_BUFFER, tcp))
            .await
    };
    tokio::time::timeout(CONNECT_TIMEOUT, go)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}")))?
}

/// The tonic connector for TLS channels: connects to the URI's authority as a server of
/// `role`.
#[derive(Clone)]
struct Connector {
    identity: Arc<Identity>,
    role: Role,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<Buffered>>;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (identity, role) = (self.identity.clone(), self.role);
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
            Ok(TokioIo::new(
                connect(&identity, &addr, role, ALPN_H2).await?,
            ))
        })
    }
}

/// A lazily connected channel from `endpoint` (`http://host:port`) to a server of `role`:
/// TLS with this process's identity when one is installed, plain otherwise.
pub fn channel(endpoint: Endpoint, role: Role) -> Channel {
    match current() {
        Some(identity) => channel_as(identity, endpoint, role),
        None => endpoint.connect_lazy(),
    }
}

/// A lazily connected TLS channel to a server of `role`, as `identity` (not necessarily
/// this process's: tests and tools that act as several roles).
pub fn channel_as(identity: Arc<Identity>, endpoint: Endpoint, role: Role) -> Channel {
    endpoint.connect_with_connector_lazy(Connector { identity, role })
}

/// Which roles may make a call: the policy [`Authorize`] asks, with the gRPC path
/// (`/stratus.meta.Meta/Put`) and the caller's role; `Err` names the role(s) needed.
pub type Policy = fn(path: &str, role: Role) -> Result<(), String>;

/// A tower layer that refuses, with `PERMISSION_DENIED`, a call the caller's role may not
/// make. A plain (`--insecure`) server has no roles and lets every call through.
#[derive(Clone, Copy)]
pub struct Authorize(pub Policy);

impl<S> tower_layer::Layer<S> for Authorize {
    type Service = AuthorizeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeService {
            inner,
            policy: self.0,
        }
    }
}

/// The service [`Authorize`] wraps around a server's routes.
#[derive(Clone)]
pub struct AuthorizeService<S> {
    inner: S,
    policy: Policy,
}

impl<S, B> tower_service::Service<http::Request<B>> for AuthorizeService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::BoxBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let role = req.extensions().get::<Peer>().and_then(|p| p.role);
        if let Some(role) = role {
            if let Err(need) = (self.policy)(req.uri().path(), role) {
                let path = req.uri().path().to_string();
                tracing::warn!(%role, %path, "permission denied");
                let status = tonic::Status::permission_denied(format!(
                    "{path} needs role {need}; the caller's certificate is {role}"
                ));
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(req))
    }
}

/// The caller's role in a gRPC request (`None` on a plain server).
pub fn caller_role<T>(req: &tonic::Request<T>) -> Option<Role> {
    req.extensions().get::<Peer>().and_then(|p| p.role)
}
