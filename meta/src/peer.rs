//! The Raft transport between meta nodes: length-prefixed frames on one plain TCP connection
//! per peer and purpose, on the node's one port beside gRPC.
//!
//! Why not the `Raft` gRPC service: a unary gRPC call hands each message through several
//! tasks on each side (the channel's buffer, the HTTP/2 connection, a task per stream). A
//! probe on this 2-core machine put the leader's AppendEntries round trip at 880 µs against
//! 470 µs of work on the follower (most of it the fsync), and with one write in flight that
//! round trip is most of a write's latency. Here the replication task writes its frame to
//! the socket and reads the answer itself, and the follower's connection task hands the
//! message straight to its Raft core.
//!
//! A connection opens with [`MAGIC`]; the server tells it from an HTTP/2 client (which
//! opens with `PRI * HTTP/2.0`) by peeking at those bytes. Then, in turn:
//! - request: `u32` BE length of the rest, one kind byte ([`APPEND`], [`VOTE`],
//!   [`SNAPSHOT`]), the bincode-encoded openraft request;
//! - answer: `u32` BE length of the rest, one status byte (0: the bincode-encoded
//!   `Result<Response, RaftError>`; 1: a UTF-8 error message, and the server closes).
//!
//! One request at a time per connection: openraft's replication of one peer sends one
//! request and waits for its answer. Frames over [`MAX_FRAME_BYTES`] close the connection.
//!
//! With TLS (the process's identity, [`stratus_client::tls`]), the connection is TLS with
//! ALPN [`tls::ALPN_RAFT`] instead of the peeked magic telling it apart, and the server
//! answers a caller whose certificate is not `meta` with one error frame ([`refuse`]).

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use stratus_client::tls::{self, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::Raft;

/// The first bytes of a Raft peer connection.
pub const MAGIC: &[u8; 8] = b"STRAFT1\n";
/// Request kinds.
pub const APPEND: u8 = 1;
pub const VOTE: u8 = 2;
pub const SNAPSHOT: u8 = 3;
/// Largest frame either way (a batch of entries or a 1 MiB snapshot chunk, with room).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// How long a new connection may take to send its first bytes before it is dropped.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that sent part of [`MAGIC`] may take to send the rest.
const PARTIAL_MAGIC_TIMEOUT: Duration = Duration::from_secs(1);
/// A served connection that sends nothing for this long is closed (a leader sends
/// heartbeats many times a second; a vote connection is dropped after its election).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `stream` opens with [`MAGIC`] (without consuming anything); `false` for anything
/// else, including a connection that sends fewer bytes before closing or the timeout.
pub async fn is_peer(stream: &TcpStream) -> bool {
    let mut buf = [0u8; MAGIC.len()];
    let n = match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.peek(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => return false,
    };
    if n == 0 || buf[..n] != MAGIC[..n] {
        return false;
    }
    // A prefix of the magic so far (peek returns what has arrived): give the rest a moment.
    let rest = async {
        loop {
            if stream.peek(&mut buf).await? >= MAGIC.len() {
                return Ok::<_, io::Error>(&buf == MAGIC);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    matches!(
        tokio::time::timeout(PARTIAL_MAGIC_TIMEOUT, rest).await,
        Ok(Ok(true))
    )
}

/// Write one frame: length, tag byte, body.
async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, tag: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1)
        .ok()
        .filter(|l| *l as usize <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&[tag]).await?;
    w.write_all(body).await?;
    w.flush().await
}

/// Read one frame: its tag byte and body.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let len = r.read_u32().await? as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    let tag = r.read_u8().await?;
    // Grown as bytes arrive, not allocated up front from a length anybody can claim.
    let mut body = Vec::new();
    (&mut *r)
        .take(len as u64 - 1)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len - 1 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "frame cut short",
        ));
    }
    Ok((tag, body))
}

/// A connection the transport runs on: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Answers a peer that may not speak Raft with one error frame, and closes.
pub async fn refuse<S: Stream>(mut stream: S, why: &str) {
    tracing::warn!(why, "refused a Raft peer");
    let _ = write_frame(
        &mut stream,
        1,
        format!("permission denied: {why}").as_bytes(),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// Serve one peer connection (after [`is_peer`], or TLS with the Raft ALPN) until it closes
/// or sends garbage.
pub async fn serve<S: Stream>(stream: S, raft: Raft) {
    let (r, w) = tokio::io::split(stream);
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).await.is_err() || &magic != MAGIC {
        return;
    }
    loop {
        let Ok(Ok((kind, body))) = tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut r)).await
        else {
            return;
        };
        let answer = match kind {
            APPEND => handle(&body, |req| raft.append_entries(req)).await,
            VOTE => handle(&body, |req| raft.vote(req)).await,
            SNAPSHOT => handle(&body, |req| raft.install_snapshot(req)).await,
            other => Err(format!("unknown request kind {other}")),
        };
        let sent = match &answer {
            Ok(bytes) => write_frame(&mut w, 0, bytes).await,
            Err(msg) => write_frame(&mut w, 1, msg.as_bytes()).await,
        };
        if sent.is_err() || answer.is_err() {
            return;
        }
    }
}

/// Decode a request, run it, encode its result.
async fn handle<Req, Resp, E, F, Fut>(body: &[u8], f: F) -> Result<Vec<u8>, String>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, E>>,
{
    let req: Req = bincode::deserialize(body).map_err(|e| format!("bad raft payload: {e}"))?;
    let res = f(req).await;
    bincode::serialize(&res).map_err(|e| format!("encoding raft answer: {e}"))
}

type Halves = (
    BufReader<ReadHalf<Box<dyn Stream>>>,
    BufWriter<WriteHalf<Box<dyn Stream>>>,
);

/// One client connection to a peer; reconnects on the next call after any failure.
///
/// Cancellation-safe: a call takes the connection out for its exchange and puts it back
/// only after reading the whole answer. openraft drops a call that outlives its own
/// deadline; the connection, with the request's answer perhaps still unread, goes with it,
/// so a later request can never read an earlier request's answer.
pub struct PeerConn {
    addr: String,
    stream: Option<Halves>,
}

/// Why a call failed: the peer could not be reached, or the exchange broke off.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Network(String),
}

impl PeerConn {
    /// A connection to `addr` (`host:port`), opened on first use.
    pub fn new(addr: String) -> Self {
        PeerConn { addr, stream: None }
    }

    /// Send a `kind` request and wait for its answer's body (status 0), within `ttl`.
    pub async fn call(
        &mut self,
        kind: u8,
        body: &[u8],
        ttl: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let exchange = async {
            let mut halves = match self.stream.take() {
                Some(h) => h,
                None => connect(&self.addr).await?,
            };
            let answer = exchange(&mut halves, kind, body)
                .await
                .map_err(|e| CallError::Network(format!("{}: {e}", self.addr)))?;
            Ok::<_, CallError>((halves, answer))
        };
        let (halves, (status, answer)) = tokio::time::timeout(ttl, exchange)
            .await
            .map_err(|_| CallError::Network(format!("{}: no answer in {ttl:?}", self.addr)))??;
        if status != 0 {
            // The server closes after an error answer.
            return Err(CallError::Network(format!(
                "{}: {}",
                self.addr,
                String::from_utf8_lossy(&answer)
            )));
        }
        self.stream = Some(halves);
        Ok(answer)
    }
}

async fn connect(addr: &str) -> Result<Halves, CallError> {
    let unreachable = |e: io::Error| CallError::Unreachable(format!("{addr}: {e}"));
    let stream: Box<dyn Stream> = match tls::current() {
        Some(id) => Box::new(
            tls::net::connect(&id, addr, Role::Meta, tls::ALPN_RAFT)
                .await
                .map_err(unreachable)?,
        ),
        None => {
            let s = TcpStream::connect(addr).await.map_err(unreachable)?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
    };
    let (r, w) = tokio::io::split(stream);
    let mut w = BufWriter::new(w);
    // Flushed with the first request.
    w.write_all(MAGIC).await.map_err(unreachable)?;
    Ok((BufReader::new(r), w))
}

async fn exchange(halves: &mut Halves, kind: u8, body: &[u8]) -> io::Result<(u8, Vec<u8>)> {
    let (r, w) = halves;
    write_frame(w, kind, body).await?;
    read_frame(r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_lengths_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, APPEND, b"hello").await.unwrap();
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            (APPEND, b"hello".to_vec())
        );
        // A zero length and one over the limit both close the exchange with an error.
        a.write_all(&0u32.to_be_bytes()).await.unwrap();
        assert!(read_frame(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(read_frame(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn peers_are_told_from_http2_clients() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (first, peer) in [
            (&b"STRAFT1\nrest"[..], true),
            (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], false),
            (&b"STR"[..], false),
        ] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(first).await.unwrap();
            c.shutdown().await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            assert_eq!(is_peer(&s).await, peer, "{first:?}");
        }
    }

    /// A call dropped by its caller's deadline (as openraft drops one) must not leave its
    /// answer to be read by the next call on the same connection.
    #[tokio::test]
    async fn a_cancelled_call_never_hands_its_answer_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (r, w) = s.into_split();
                    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
                    let mut magic = [0u8; 8];
                    r.read_exact(&mut magic).await.unwrap();
                    while let Ok((_, body)) = read_frame(&mut r).await {
                        if body == b"slow" {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        if write_frame(&mut w, 0, &body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let mut conn = PeerConn::new(addr);
        assert_eq!(
            conn.call(APPEND, b"first", Duration::from_secs(5))
                .await
                .unwrap(),
            b"first"
        );
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            conn.call(APPEND, b"slow", Duration::from_secs(5)),
        )
        .await;
        assert!(dropped.is_err(), "the caller gave up first");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            conn.call(APPEND, b"next", Duration::from_secs(5))
                .await
                .unwrap(),
            b"next",
            "the next call reads its own answer"
        );
    }
}
