//! NBD (Network Block Device) server: exports one [`BlockDevice`] to QEMU, `nbd-client`,
//! `nbdinfo`/`nbdcopy` and any other client that speaks the fixed-newstyle protocol
//! (<https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>).
//!
//! # Handshake
//! - The server greets with fixed newstyle and `NO_ZEROES`; the client may answer with
//!   `FIXED_NEWSTYLE` and `NO_ZEROES`, and any other client flag closes the connection.
//! - Supported options: `EXPORT_NAME`, `ABORT`, `LIST`, `INFO` and `GO`. `INFO`/`GO`
//!   always answer with the export's size and flags and its block sizes (minimum 512,
//!   preferred 4 KiB, maximum payload [`Export::with_max_block`], 4 MiB by default), and
//!   with its name when asked. An unknown export name is `ERR_UNKNOWN` (for `GO`/`INFO`)
//!   or a closed connection (for `EXPORT_NAME`, which cannot carry an error). The empty
//!   name is the default export, i.e. the only one.
//! - Every other option (`STARTTLS`, `STRUCTURED_REPLY`, `LIST_META_CONTEXT`,
//!   `SET_META_CONTEXT`, `EXTENDED_HEADERS`, ...) is answered `ERR_UNSUP`, so clients fall
//!   back to plain TCP or unix sockets and simple replies.
//! - Malformed input (a bad magic, an option longer than 64 KiB, a truncated message) or
//!   a handshake not finished within [`HANDSHAKE_TIMEOUT`] closes the connection.
//!
//! # Transmission
//! - Simple replies only. Commands: `READ`, `WRITE` (with `FUA`), `DISC`, `FLUSH`, `TRIM`
//!   (with `FUA`: a flush follows the trim) and `WRITE_ZEROES` (with `FUA` and `NO_HOLE`;
//!   the device always writes zeroes, which satisfies both). Every other command, and any
//!   flag a command does not take, is answered `EINVAL`.
//! - Requests are served concurrently, up to [`MAX_IN_FLIGHT`] per connection, and replied
//!   to as they complete, so replies may come out of order (the client matches cookies).
//! - `FLUSH` waits until every write, trim and write-zeroes received before it has
//!   completed, then flushes the device: whatever was acknowledged before the flush is
//!   durable when the flush is acknowledged.
//! - Out-of-range requests get `EINVAL` (reads, trims) or `ENOSPC` (writes, write-zeroes),
//!   mutations of a read-only export `EPERM`, and the connection stays up (a refused
//!   write's payload is read and dropped). Once a client asked for block sizes in `GO`,
//!   requests not aligned to the minimum block size are `EINVAL` too. A write payload
//!   larger than 32 MiB is a protocol violation and closes the connection.
//! - Device errors map to errno: `InvalidInput` → `EINVAL`, `PermissionDenied` and
//!   `ReadOnlyFilesystem` → `EPERM`, `StorageFull`, `QuotaExceeded` and `FileTooLarge` →
//!   `ENOSPC`, everything else `EIO`.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Largest payload a client may read or write in one request, unless configured.
pub const DEFAULT_MAX_BLOCK: u32 = 4 * 1024 * 1024;
/// How long a client may take from connecting to entering transmission.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests of one connection served at the same time; further requests wait.
pub const MAX_IN_FLIGHT: usize = 64;

/// Largest option data accepted during the handshake.
const MAX_OPTION_LEN: u32 = 64 * 1024;
/// The preferred block size advertised, and the smallest maximum payload allowed.
const PREFERRED_BLOCK: u32 = 4096;
/// Write payloads up to this size are read and dropped when refused; the spec says
/// payloads this small must not be treated as a denial of service.
const MAX_DISCARD: u32 = 32 * 1024 * 1024;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
const FLAG_HAS_FLAGS: u16 = 1 << 0;
const FLAG_READ_ONLY: u16 = 1 << 1;
const FLAG_SEND_FLUSH: u16 = 1 << 2;
const FLAG_SEND_FUA: u16 = 1 << 3;
const FLAG_SEND_TRIM: u16 = 1 << 5;
const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Options.
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

// Option replies.
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

// Information types of INFO/GO.
const INFO_EXPORT: u16 = 0;
const INFO_NAME: u16 = 1;
const INFO_BLOCK_SIZE: u16 = 3;

// Commands and command flags.
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1 << 0;
const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

// Error values of replies.
const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;

/// A disk that can be exported over NBD. Offsets and lengths are in bytes and always
/// within [`size`](Self::size); the server checks them before calling.
///
/// Errors become the reply's errno: `InvalidInput` → `EINVAL`, `PermissionDenied` →
/// `EPERM`, `StorageFull` → `ENOSPC`, anything else `EIO` (see the module docs).
pub trait BlockDevice: Send + Sync + 'static {
    /// Size in bytes, read once per connection when the client picks the export. A
    /// multiple of 512 lets clients use 512-byte sectors.
    fn size(&self) -> u64;

    /// Whether the export refuses writes, trims and write-zeroes (with `EPERM`).
    fn read_only(&self) -> bool {
        false
    }

    /// Whether several connections may serve one client at once: a flush on any
    /// connection makes writes acknowledged on every connection durable, and all see
    /// each other's completed writes (advertised as `CAN_MULTI_CONN`).
    fn multi_conn(&self) -> bool {
        false
    }

    /// Reads exactly `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> impl Future<Output = io::Result<Vec<u8>>> + Send;

    /// Writes `data` at `offset`; with `fua`, the data is durable before this returns.
    fn write(
        &self,
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes every completed write durable.
    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Discards `len` bytes at `offset` (they may read back as anything, zeroes ideally).
    fn trim(&self, offset: u64, len: u32) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes `len` bytes at `offset` read back as zeroes; with `fua`, durably.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        fua: bool,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// One named export: a device and how it is offered.
#[derive(Debug)]
pub struct Export<D> {
    name: String,
    device: Arc<D>,
    max_block: u32,
    handshake_timeout: Duration,
}

impl<D: BlockDevice> Export<D> {
    /// Exports `device` as `name`, with a maximum payload of [`DEFAULT_MAX_BLOCK`].
    pub fn new(name: impl Into<String>, device: Arc<D>) -> Self {
        Self {
            name: name.into(),
            device,
            max_block: DEFAULT_MAX_BLOCK,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets the largest payload of one read or write, kept between 4 KiB and 32 MiB.
    /// Each connection buffers at most [`MAX_IN_FLIGHT`] payloads this large.
    pub fn with_max_block(mut self, bytes: u32) -> Self {
        self.max_block = bytes.clamp(PREFERRED_BLOCK, MAX_DISCARD);
        self
    }

    /// Sets how long a client may take to finish the handshake ([`HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Arc<D> {
        &self.device
    }

    pub fn max_block(&self) -> u32 {
        self.max_block
    }

    /// Whether a client naming `name` means this export (the empty name is the default).
    fn answers_to(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.name.as_bytes()
    }

    fn transmission_flags(&self) -> u16 {
        let mut flags = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES;
        if self.device.read_only() {
            flags |= FLAG_READ_ONLY;
        }
        if self.device.multi_conn() {
            flags |= FLAG_CAN_MULTI_CONN;
        }
        flags
    }
}

/// Why a connection ended other than by the client's choice.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("nbd connection: {0}")]
    Io(#[from] io::Error),
    #[error("nbd client did not finish the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("nbd protocol violation: {0}")]
    Protocol(String),
    #[error("nbd client asked for unknown export {0:?}")]
    UnknownExport(String),
}

impl NbdError {
    /// Whether the client broke the protocol (worth a warning), rather than going away.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, NbdError::Io(_))
    }
}

/// Serves one client on `stream`: the handshake, then requests until the client
/// disconnects. Returns `Ok` when the client leaves cleanly (`ABORT`, `DISC`, or closing
/// between requests) after every reply was sent.
pub async fn serve_connection<D, S>(export: Arc<Export<D>>, stream: S) -> Result<(), NbdError>
where
    D: BlockDevice,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = BufReader::new(stream);
    let limit = export.handshake_timeout;
    let session = match tokio::time::timeout(limit, handshake(&export, &mut stream)).await {
        Err(_) => return Err(NbdError::HandshakeTimeout(limit)),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(session))) => session,
        Ok(Err(e)) => return Err(e),
    };
    debug!(
        export = %export.name,
        size = session.size,
        min_block = session.min_block,
        "nbd client entered transmission"
    );
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let conn = Connection {
        export,
        session,
        tx,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        writes: Arc::new(watch::Sender::new(BTreeSet::new())),
        next_write: 0,
    };
    let (read, write) = tokio::join!(conn.run(reader), write_replies(writer, rx));
    read?;
    write?;
    Ok(())
}

/// Serves `export` on a unix socket at `path` until `shutdown` completes, one task per
/// connection. A stale socket file is replaced (a live one is `AddrInUse`, any other file
/// `AlreadyExists`); the socket is made mode 0666 so QEMU can connect whatever user it
/// runs as, and removed on return. Shutdown closes open connections; device operations
/// already started run to completion.
pub async fn serve_unix<D: BlockDevice>(
    export: Arc<Export<D>>,
    path: &Path,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path)?;
    let served = async {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let listener = &listener;
        accept_loop(
            export,
            || async move {
                let (stream, _) = listener.accept().await?;
                Ok((stream, format!("unix:{}", path.display())))
            },
            shutdown,
        )
        .await;
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(path);
    served
}

/// Serves `export` on `listener` until `shutdown` completes, one task per connection
/// (with `TCP_NODELAY`). Shutdown closes open connections; device operations already
/// started run to completion.
pub async fn serve_tcp<D: BlockDevice>(
    export: Arc<Export<D>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = &listener;
    accept_loop(
        export,
        || async move {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((stream, peer.to_string()))
        },
        shutdown,
    )
    .await;
    Ok(())
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if !meta.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another server listens on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
    }
}

async fn accept_loop<D, S, A, F>(
    export: Arc<Export<D>>,
    mut accept: A,
    shutdown: impl Future<Output = ()>,
) where
    D: BlockDevice,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: FnMut() -> F,
    F: Future<Output = io::Result<(S, String)>>,
{
    tokio::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(run_connection(Arc::clone(&export), stream, peer));
                }
                Err(e) => {
                    // Usually transient (out of file descriptors, aborted connection).
                    warn!(error = %e, "nbd: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn run_connection<D, S>(export: Arc<Export<D>>, stream: S, peer: String)
where
    D: BlockDevice,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    debug!(%peer, "nbd client connected");
    match serve_connection(export, stream).await {
        Ok(()) => debug!(%peer, "nbd client disconnected"),
        Err(e) if e.is_protocol_violation() => warn!(%peer, error = %e, "nbd connection closed"),
        Err(e) => warn!(%peer, error = %e, "nbd connection closed on an error"),
    }
}

/// What the handshake settled for the transmission phase.
#[derive(Debug, Clone, Copy)]
struct Session {
    size: u64,
    read_only: bool,
    /// Alignment enforced on requests: 1 unless the client agreed to block sizes.
    min_block: u32,
    max_payload: u32,
}

/// Runs the handshake; `None` means the client aborted it.
async fn handshake<D, S>(export: &Export<D>, io: &mut S) -> Result<Option<Session>, NbdError>
where
    D: BlockDevice,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    io.write_all(&hello).await?;
    io.flush().await?;

    let client_flags = io.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(NbdError::Protocol(format!(
            "unknown client flags {client_flags:#x}"
        )));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;

    loop {
        let magic = io.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(NbdError::Protocol(format!("bad option magic {magic:#x}")));
        }
        let option = io.read_u32().await?;
        let len = io.read_u32().await?;
        if len > MAX_OPTION_LEN {
            return Err(NbdError::Protocol(format!(
                "option {option} has {len} bytes of data"
            )));
        }
        let mut data = vec![0; len as usize];
        io.read_exact(&mut data).await?;

        match option {
            OPT_EXPORT_NAME => {
                if !export.answers_to(&data) {
                    return Err(NbdError::UnknownExport(
                        String::from_utf8_lossy(&data).into_owned(),
                    ));
                }
                let session = export_session(export, false);
                let mut reply = Vec::with_capacity(134);
                reply.extend_from_slice(&session.size.to_be_bytes());
                reply.extend_from_slice(&export.transmission_flags().to_be_bytes());
                if !no_zeroes {
                    reply.resize(reply.len() + 124, 0);
                }
                io.write_all(&reply).await?;
                io.flush().await?;
                return Ok(Some(session));
            }
            OPT_ABORT => {
                // The client may already be gone; it need not wait for the ACK.
                let _ = option_reply(io, option, REP_ACK, &[]).await;
                debug!("nbd client aborted the handshake");
                return Ok(None);
            }
            OPT_LIST if !data.is_empty() => {
                option_reply(io, option, REP_ERR_INVALID, b"LIST takes no data").await?;
            }
            OPT_LIST => {
                let mut server = Vec::with_capacity(4 + export.name.len());
                server.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
                server.extend_from_slice(export.name.as_bytes());
                option_reply(io, option, REP_SERVER, &server).await?;
                option_reply(io, option, REP_ACK, &[]).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, requests)) = parse_info_request(&data) else {
                    warn!(option, "nbd client sent a malformed INFO/GO request");
                    option_reply(io, option, REP_ERR_INVALID, b"malformed request").await?;
                    continue;
                };
                if !export.answers_to(name) {
                    let message = format!("no export named {:?}", String::from_utf8_lossy(name));
                    option_reply(io, option, REP_ERR_UNKNOWN, message.as_bytes()).await?;
                    continue;
                }
                let agreed = requests.contains(&INFO_BLOCK_SIZE);
                let session = export_session(export, agreed);
                send_info(io, option, export, &session, requests.contains(&INFO_NAME)).await?;
                option_reply(io, option, REP_ACK, &[]).await?;
                if option == OPT_GO {
                    return Ok(Some(session));
                }
            }
            _ => {
                debug!(option, "nbd client asked for an unsupported option");
                option_reply(io, option, REP_ERR_UNSUP, &[]).await?;
            }
        }
    }
}

/// The session for `export`; `agreed` is whether the client promised to honour the
/// advertised block sizes.
fn export_session<D: BlockDevice>(export: &Export<D>, agreed: bool) -> Session {
    let size = export.device.size();
    Session {
        size,
        read_only: export.device.read_only(),
        min_block: if agreed { min_block(size) } else { 1 },
        max_payload: export.max_block,
    }
}

/// 512-byte sectors when the size allows them, else bytes.
fn min_block(size: u64) -> u32 {
    if size.is_multiple_of(512) {
        512
    } else {
        1
    }
}

/// Splits INFO/GO data into the export name and the information requests.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let (name_len, rest) = data.split_first_chunk::<4>()?;
    let name_len = usize::try_from(u32::from_be_bytes(*name_len)).ok()?;
    if name_len > rest.len() {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let (count, list) = rest.split_first_chunk::<2>()?;
    if list.len() != 2 * usize::from(u16::from_be_bytes(*count)) {
        return None;
    }
    let requests = list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some((name, requests))
}

async fn send_info<D, S>(
    io: &mut S,
    option: u32,
    export: &Export<D>,
    session: &Session,
    with_name: bool,
) -> io::Result<()>
where
    D: BlockDevice,
    S: AsyncWrite + Unpin,
{
    let mut info = Vec::with_capacity(12);
    info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    info.extend_from_slice(&session.size.to_be_bytes());
    info.extend_from_slice(&export.transmission_flags().to_be_bytes());
    option_reply(io, option, REP_INFO, &info).await?;

    let mut info = Vec::with_capacity(14);
    info.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    info.extend_from_slice(&min_block(session.size).to_be_bytes());
    info.extend_from_slice(&PREFERRED_BLOCK.to_be_bytes());
    info.extend_from_slice(&session.max_payload.to_be_bytes());
    option_reply(io, option, REP_INFO, &info).await?;

    if with_name {
        let mut info = Vec::with_capacity(2 + export.name.len());
        info.extend_from_slice(&INFO_NAME.to_be_bytes());
        info.extend_from_slice(export.name.as_bytes());
        option_reply(io, option, REP_INFO, &info).await?;
    }
    Ok(())
}

async fn option_reply<S: AsyncWrite + Unpin>(
    io: &mut S,
    option: u32,
    reply_type: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut reply = Vec::with_capacity(20 + data.len());
    reply.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    reply.extend_from_slice(&option.to_be_bytes());
    reply.extend_from_slice(&reply_type.to_be_bytes());
    reply.extend_from_slice(&(data.len() as u32).to_be_bytes());
    reply.extend_from_slice(data);
    io.write_all(&reply).await?;
    io.flush().await
}

/// One request header of the transmission phase.
#[derive(Debug, Clone, Copy)]
struct Request {
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u32,
}

impl Request {
    const LEN: usize = 28;

    fn parse(header: &[u8; Self::LEN]) -> Result<Self, NbdError> {
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if magic != REQUEST_MAGIC {
            return Err(NbdError::Protocol(format!("bad request magic {magic:#x}")));
        }
        let mut cookie = [0; 8];
        cookie.copy_from_slice(&header[8..16]);
        let mut offset = [0; 8];
        offset.copy_from_slice(&header[16..24]);
        Ok(Self {
            flags: u16::from_be_bytes([header[4], header[5]]),
            kind: u16::from_be_bytes([header[6], header[7]]),
            cookie: u64::from_be_bytes(cookie),
            offset: u64::from_be_bytes(offset),
            len: u32::from_be_bytes([header[24], header[25], header[26], header[27]]),
        })
    }
}

/// A reply on its way to the writer; its permit frees an in-flight slot once written.
struct Reply {
    cookie: u64,
    error: u32,
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// Removes its write from the pending set when the write completes (or is dropped).
struct PendingWrite {
    pending: Arc<watch::Sender<BTreeSet<u64>>>,
    seq: u64,
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        let seq = self.seq;
        self.pending.send_modify(|pending| {
            pending.remove(&seq);
        });
    }
}

/// The reading side of a connection in transmission: reads requests and starts them.
struct Connection<D> {
    export: Arc<Export<D>>,
    session: Session,
    tx: mpsc::Sender<Reply>,
    permits: Arc<Semaphore>,
    /// Sequence numbers of writes, trims and write-zeroes not yet completed.
    writes: Arc<watch::Sender<BTreeSet<u64>>>,
    next_write: u64,
}

impl<D: BlockDevice> Connection<D> {
    /// Reads requests until the client disconnects or the reply writer fails.
    async fn run<R: AsyncRead + Unpin>(mut self, mut reader: R) -> Result<(), NbdError> {
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Ok(()),
                },
                () = self.tx.closed() => return Ok(()),
            };
            let header = tokio::select! {
                header = read_header(&mut reader) => header?,
                () = self.tx.closed() => return Ok(()),
            };
            let Some(header) = header else {
                debug!("nbd client closed the connection without NBD_CMD_DISC");
                return Ok(());
            };
            let request = Request::parse(&header)?;
            if request.kind == CMD_DISC {
                debug!("nbd client disconnected");
                return Ok(());
            }
            if !self.start(request, permit, &mut reader).await? {
                return Ok(());
            }
        }
    }

    /// Starts one request, or answers it with an error right away. Returns false once
    /// the reply writer is gone.
    async fn start<R: AsyncRead + Unpin>(
        &mut self,
        request: Request,
        permit: OwnedSemaphorePermit,
        reader: &mut R,
    ) -> Result<bool, NbdError> {
        let Request {
            flags,
            kind,
            cookie,
            offset,
            len,
        } = request;
        let checked = self.check(&request);
        let mut payload = Vec::new();
        if kind == CMD_WRITE {
            if checked.is_ok() {
                payload = vec![0; len as usize];
                reader.read_exact(&mut payload).await?;
            } else {
                // Keep the stream in sync: read the refused payload and drop it.
                if len > MAX_DISCARD.max(self.session.max_payload) {
                    return Err(NbdError::Protocol(format!("write payload of {len} bytes")));
                }
                let mut refused = (&mut *reader).take(len.into());
                let skipped = tokio::io::copy(&mut refused, &mut tokio::io::sink()).await?;
                if skipped != u64::from(len) {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
        if let Err(error) = checked {
            debug!(kind, flags, offset, len, error, "nbd request refused");
            let reply = Reply {
                cookie,
                error,
                data: Vec::new(),
                _permit: permit,
            };
            return Ok(self.tx.send(reply).await.is_ok());
        }

        let device = Arc::clone(&self.export.device);
        let fua = flags & CMD_FLAG_FUA != 0;
        match kind {
            CMD_WRITE => {
                self.spawn_write(cookie, permit, async move {
                    device.write(offset, payload, fua).await
                });
            }
            CMD_READ => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let (error, data) = match device.read(offset, len).await {
                        Ok(data) if data.len() == len as usize => (0, data),
                        Ok(data) => {
                            warn!(
                                offset,
                                len,
                                got = data.len(),
                                "nbd: device read returned the wrong length"
                            );
                            (EIO, Vec::new())
                        }
                        Err(e) => {
                            warn!(offset, len, error = %e, "nbd: device read failed");
                            (errno(&e), Vec::new())
                        }
                    };
                    let _ = tx
                        .send(Reply {
                            cookie,
                            error,
                            data,
                            _permit: permit,
                        })
                        .await;
                });
            }
            CMD_FLUSH => {
                let barrier = self.next_write;
                let mut pending = self.writes.subscribe();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    // Closed only once no write is left, so either way none is pending.
                    let _ = pending
                        .wait_for(|p| p.first().is_none_or(|&first| first >= barrier))
                        .await;
                    let error = match device.flush().await {
                        Ok(()) => 0,
                        Err(e) => {
                            warn!(error = %e, "nbd: device flush failed");
                            errno(&e)
                        }
                    };
                    let _ = tx
                        .send(Reply {
                            cookie,
                            error,
                            data: Vec::new(),
                            _permit: permit,
                        })
                        .await;
                });
            }
            CMD_TRIM => {
                self.spawn_write(cookie, permit, async move {
                    if len > 0 {
                        device.trim(offset, len).await?;
                        if fua {
                            device.flush().await?;
                        }
                    }
                    Ok(())
                });
            }
            CMD_WRITE_ZEROES => {
                self.spawn_write(cookie, permit, async move {
                    if len > 0 {
                        device.write_zeroes(offset, len, fua).await?;
                    }
                    Ok(())
                });
            }
            // `check` refuses every other command.
            _ => {}
        }
        Ok(true)
    }

    /// Runs a write-like operation as a pending write that later flushes wait for.
    fn spawn_write(
        &mut self,
        cookie: u64,
        permit: OwnedSemaphorePermit,
        op: impl Future<Output = io::Result<()>> + Send + 'static,
    ) {
        let seq = self.next_write;
        self.next_write += 1;
        self.writes.send_modify(|pending| {
            pending.insert(seq);
        });
        let pending = PendingWrite {
            pending: Arc::clone(&self.writes),
            seq,
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = op.await;
            drop(pending);
            let error = match result {
                Ok(()) => 0,
                Err(e) => {
                    warn!(error = %e, "nbd: device write failed");
                    errno(&e)
                }
            };
            let reply = Reply {
                cookie,
                error,
                data: Vec::new(),
                _permit: permit,
            };
            let _ = tx.send(reply).await;
        });
    }

    /// Checks a request against the export; `Err` is the errno to reply with.
    fn check(&self, request: &Request) -> Result<(), u32> {
        let (allowed_flags, mutates, payload) = match request.kind {
            CMD_READ => (0, false, true),
            CMD_WRITE => (CMD_FLAG_FUA, true, true),
            CMD_FLUSH => (0, false, false),
            CMD_TRIM => (CMD_FLAG_FUA, true, false),
            CMD_WRITE_ZEROES => (CMD_FLAG_FUA | CMD_FLAG_NO_HOLE, true, false),
            _ => return Err(EINVAL),
        };
        if request.flags & !allowed_flags != 0 {
            return Err(EINVAL);
        }
        if mutates && self.session.read_only {
            return Err(EPERM);
        }
        if request.kind == CMD_FLUSH {
            return Ok(());
        }
        if payload && (request.len == 0 || request.len > self.session.max_payload) {
            return Err(EINVAL);
        }
        let end = request.offset.checked_add(request.len.into());
        if end.is_none_or(|end| end > self.session.size) {
            let writes = matches!(request.kind, CMD_WRITE | CMD_WRITE_ZEROES);
            return Err(if writes { ENOSPC } else { EINVAL });
        }
        let align = u64::from(self.session.min_block);
        if !request.offset.is_multiple_of(align) || !u64::from(request.len).is_multiple_of(align) {
            return Err(EINVAL);
        }
        Ok(())
    }
}

/// Reads one request header; `None` if the stream ends cleanly before it.
async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<[u8; Request::LEN]>> {
    let mut header = [0; Request::LEN];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(Some(header))
}

/// Writes replies as they come until every sender is gone, then closes the stream.
async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Reply>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(reply) = rx.recv().await {
        let mut header = [0; 16];
        header[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        header[4..8].copy_from_slice(&reply.error.to_be_bytes());
        header[8..].copy_from_slice(&reply.cookie.to_be_bytes());
        out.write_all(&header).await?;
        if reply.error == 0 {
            out.write_all(&reply.data).await?;
        }
        drop(reply);
        if rx.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    // The client may have closed its end already.
    let _ = out.shutdown().await;
    Ok(())
}

/// The NBD error value for a device error.
fn errno(e: &io::Error) -> u32 {
    use io::ErrorKind::*;
    match e.kind() {
        StorageFull | QuotaExceeded | FileTooLarge => ENOSPC,
        PermissionDenied | ReadOnlyFilesystem => EPERM,
        InvalidInput => EINVAL,
        _ => EIO,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use tokio::io::DuplexStream;
    use tokio::sync::Barrier;
    use tokio::task::JoinHandle;

    use super::*;

    const SIZE: usize = 1024 * 1024;
    const NAME: &str = "disk";
    const STRUCTURED_REPLY: u32 = 8;
    const CMD_BLOCK_STATUS: u16 = 7;
    const CMD_FLAG_DF: u16 = 1 << 2;

    /// A disk in memory that counts what it was asked to do.
    #[derive(Default)]
    struct MemDevice {
        data: Mutex<Vec<u8>>,
        read_only: bool,
        fail: AtomicBool,
        flushes: AtomicUsize,
        fua_writes: AtomicUsize,
        completed_writes: AtomicUsize,
        /// `completed_writes` at each flush.
        writes_at_flush: Mutex<Vec<usize>>,
        /// Reads wait here when set.
        read_barrier: Option<Barrier>,
        /// Writes take a permit from here when set.
        write_gate: Option<Semaphore>,
    }

    impl MemDevice {
        fn new() -> Self {
            Self {
                data: Mutex::new(vec![0; SIZE]),
                ..Self::default()
            }
        }

        fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
            self.data.lock().unwrap()[offset..offset + len].to_vec()
        }

        fn fill(&self, offset: usize, len: usize, byte: u8) {
            self.data.lock().unwrap()[offset..offset + len].fill(byte);
        }

        fn failing(&self) -> io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                Err(io::Error::other("injected failure"))
            } else {
                Ok(())
            }
        }
    }

    impl BlockDevice for MemDevice {
        fn size(&self) -> u64 {
            SIZE as u64
        }

        fn read_only(&self) -> bool {
            self.read_only
        }

        async fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
            if let Some(barrier) = &self.read_barrier {
                barrier.wait().await;
            }
            self.failing()?;
            Ok(self.bytes(offset as usize, len as usize))
        }

        async fn write(&self, offset: u64, data: Vec<u8>, fua: bool) -> io::Result<()> {
            if let Some(gate) = &self.write_gate {
                gate.acquire().await.unwrap().forget();
            }
            self.failing()?;
            let offset = offset as usize;
            self.data.lock().unwrap()[offset..offset + data.len()].copy_from_slice(&data);
            if fua {
                self.fua_writes.fetch_add(1, Ordering::SeqCst);
            }
            self.completed_writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn flush(&self) -> io::Result<()> {
            self.failing()?;
            let completed = self.completed_writes.load(Ordering::SeqCst);
            self.writes_at_flush.lock().unwrap().push(completed);
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn trim(&self, offset: u64, len: u32) -> io::Result<()> {
            self.failing()?;
            self.fill(offset as usize, len as usize, 0);
            Ok(())
        }

        async fn write_zeroes(&self, offset: u64, len: u32, fua: bool) -> io::Result<()> {
            self.failing()?;
            self.fill(offset as usize, len as usize, 0);
            if fua {
                self.fua_writes.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    type ServerTask = JoinHandle<Result<(), NbdError>>;

    /// Fails the test instead of hanging it.
    async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(value) => value,
            Err(_) => panic!("timed out: {what}"),
        }
    }

    fn spawn_server(export: Export<MemDevice>) -> (DuplexStream, ServerTask) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(serve_connection(Arc::new(export), server));
        (client, task)
    }

    /// Reads the greeting and answers with `client_flags`.
    async fn greet<S: AsyncRead + AsyncWrite + Unpin>(c: &mut S, client_flags: u32) {
        assert_eq!(c.read_u64().await.unwrap(), NBDMAGIC);
        assert_eq!(c.read_u64().await.unwrap(), IHAVEOPT);
        assert_eq!(
            c.read_u16().await.unwrap(),
            FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES
        );
        c.write_u32(client_flags).await.unwrap();
    }

    async fn send_option<S: AsyncWrite + Unpin>(c: &mut S, option: u32, data: &[u8]) {
        c.write_u64(IHAVEOPT).await.unwrap();
        c.write_u32(option).await.unwrap();
        c.write_u32(data.len() as u32).await.unwrap();
        c.write_all(data).await.unwrap();
    }

    /// Reads one option reply: (option, reply type, data).
    async fn option_reply<S: AsyncRead + Unpin>(c: &mut S) -> (u32, u32, Vec<u8>) {
        assert_eq!(c.read_u64().await.unwrap(), OPT_REPLY_MAGIC);
        let option = c.read_u32().await.unwrap();
        let reply_type = c.read_u32().await.unwrap();
        let mut data = vec![0; c.read_u32().await.unwrap() as usize];
        c.read_exact(&mut data).await.unwrap();
        (option, reply_type, data)
    }

    fn info_request(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for info in infos {
            data.extend_from_slice(&info.to_be_bytes());
        }
        data
    }

    /// What INFO/GO told about the export.
    #[derive(Debug, Default)]
    struct Info {
        size: u64,
        flags: u16,
        block_sizes: Option<(u32, u32, u32)>,
        name: Option<String>,
    }

    /// Sends INFO or GO for `name` (asking for block sizes and the name) and reads the
    /// replies up to the ACK; an error reply is returned as `Err(reply type)`.
    async fn info<S>(c: &mut S, option: u32, name: &str) -> Result<Info, u32>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = info_request(name, &[INFO_BLOCK_SIZE, INFO_NAME]);
        send_option(c, option, &request).await;
        let mut info = Info::default();
        loop {
            let (replied, reply_type, data) = option_reply(c).await;
            assert_eq!(replied, option);
            match reply_type {
                REP_ACK => return Ok(info),
                REP_INFO => match u16::from_be_bytes([data[0], data[1]]) {
                    INFO_EXPORT => {
                        assert_eq!(data.len(), 12);
                        info.size = u64::from_be_bytes(data[2..10].try_into().unwrap());
                        info.flags = u16::from_be_bytes([data[10], data[11]]);
                    }
                    INFO_BLOCK_SIZE => {
                        assert_eq!(data.len(), 14);
                        let word =
                            |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
                        info.block_sizes = Some((word(2), word(6), word(10)));
                    }
                    INFO_NAME => info.name = Some(String::from_utf8(data[2..].to_vec()).unwrap()),
                    other => panic!("unexpected info type {other}"),
                },
                error => return Err(error),
            }
        }
    }

    /// Connects to a fresh server over `export` and enters transmission with GO.
    async fn open(export: Export<MemDevice>) -> (DuplexStream, ServerTask, Info) {
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        let info = within("GO", info(&mut c, OPT_GO, NAME)).await.unwrap();
        (c, task, info)
    }

    async fn send_request<S: AsyncWrite + Unpin>(
        c: &mut S,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut request = REQUEST_MAGIC.to_be_bytes().to_vec();
        request.extend_from_slice(&flags.to_be_bytes());
        request.extend_from_slice(&kind.to_be_bytes());
        request.extend_from_slice(&cookie.to_be_bytes());
        request.extend_from_slice(&offset.to_be_bytes());
        request.extend_from_slice(&len.to_be_bytes());
        request.extend_from_slice(payload);
        c.write_all(&request).await.unwrap();
    }

    /// Reads one simple reply: (cookie, error); on success reads `data_len` bytes too.
    async fn read_reply<S: AsyncRead + Unpin>(c: &mut S, data_len: usize) -> (u64, u32, Vec<u8>) {
        let magic = within("reply", c.read_u32()).await.unwrap();
        assert_eq!(magic, SIMPLE_REPLY_MAGIC);
        let error = c.read_u32().await.unwrap();
        let cookie = c.read_u64().await.unwrap();
        let mut data = Vec::new();
        if error == 0 {
            data.resize(data_len, 0);
            c.read_exact(&mut data).await.unwrap();
        }
        (cookie, error, data)
    }

    /// Sends one request and reads its reply: (error, data).
    async fn call<S: AsyncRead + AsyncWrite + Unpin>(
        c: &mut S,
        flags: u16,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> (u32, Vec<u8>) {
        static COOKIE: AtomicUsize = AtomicUsize::new(1);
        let cookie = COOKIE.fetch_add(1, Ordering::Relaxed) as u64;
        send_request(c, flags, kind, cookie, offset, len, payload).await;
        let data_len = if kind == CMD_READ { len as usize } else { 0 };
        let (replied, error, data) = read_reply(c, data_len).await;
        assert_eq!(replied, cookie);
        (error, data)
    }

    async fn read_at<S: AsyncRead + AsyncWrite + Unpin>(
        c: &mut S,
        offset: u64,
        len: u32,
    ) -> Vec<u8> {
        let (error, data) = call(c, 0, CMD_READ, offset, len, &[]).await;
        assert_eq!(error, 0);
        data
    }

    /// Sends DISC and checks the server closes and ends cleanly.
    async fn disconnect<S: AsyncRead + AsyncWrite + Unpin>(c: &mut S, task: ServerTask) {
        send_request(c, 0, CMD_DISC, 0, 0, 0, &[]).await;
        assert_closed(c).await;
        within("server end", task).await.unwrap().unwrap();
    }

    async fn assert_closed<S: AsyncRead + Unpin>(c: &mut S) {
        let mut rest = Vec::new();
        // A reset is as good as an end of stream.
        let _ = within("close", c.read_to_end(&mut rest)).await;
        assert!(rest.is_empty(), "unexpected bytes after close: {rest:?}");
    }

    fn mem_export() -> (Arc<MemDevice>, Export<MemDevice>) {
        let device = Arc::new(MemDevice::new());
        (Arc::clone(&device), Export::new(NAME, device))
    }

    #[tokio::test]
    async fn go_then_write_and_read_back() {
        let (device, export) = mem_export();
        let (mut c, task, info) = open(export).await;
        assert_eq!(info.size, SIZE as u64);
        let expected = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES;
        assert_eq!(info.flags, expected);
        assert_eq!(info.block_sizes, Some((512, 4096, DEFAULT_MAX_BLOCK)));
        assert_eq!(info.name.as_deref(), Some(NAME));

        let payload: Vec<u8> = (0..8192).map(|i| (i % 251) as u8).collect();
        let (error, _) = call(&mut c, 0, CMD_WRITE, 4096, 8192, &payload).await;
        assert_eq!(error, 0);
        assert_eq!(device.bytes(4096, 8192), payload);
        assert_eq!(read_at(&mut c, 4096, 8192).await, payload);
        assert_eq!(device.fua_writes.load(Ordering::SeqCst), 0);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn fua_flush_trim_and_write_zeroes() {
        let (device, export) = mem_export();
        let (mut c, task, _) = open(export.with_max_block(4096)).await;

        let (error, _) = call(&mut c, CMD_FLAG_FUA, CMD_WRITE, 0, 4096, &[7; 4096]).await;
        assert_eq!(error, 0);
        assert_eq!(device.fua_writes.load(Ordering::SeqCst), 1);
        assert_eq!(device.bytes(0, 4096), vec![7; 4096]);

        let (error, _) = call(&mut c, 0, CMD_FLUSH, 0, 0, &[]).await;
        assert_eq!(error, 0);
        assert_eq!(device.flushes.load(Ordering::SeqCst), 1);

        // TRIM zeroes the first half; with FUA it is followed by a flush.
        let (error, _) = call(&mut c, CMD_FLAG_FUA, CMD_TRIM, 0, 2048, &[]).await;
        assert_eq!(error, 0);
        assert_eq!(device.bytes(0, 2048), vec![0; 2048]);
        assert_eq!(device.bytes(2048, 2048), vec![7; 2048]);
        assert_eq!(device.flushes.load(Ordering::SeqCst), 2);

        // WRITE_ZEROES takes FUA and NO_HOLE, and may exceed the maximum payload.
        device.fill(0, SIZE, 9);
        let flags = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE;
        let (error, _) = call(&mut c, flags, CMD_WRITE_ZEROES, 0, SIZE as u32, &[]).await;
        assert_eq!(error, 0);
        assert!(device.bytes(0, SIZE).iter().all(|&b| b == 0));
        assert_eq!(device.fua_writes.load(Ordering::SeqCst), 2);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn write_zeroes_clears_a_range() {
        let (device, export) = mem_export();
        let (mut c, task, _) = open(export).await;
        device.fill(0, SIZE, 9);
        let (error, _) = call(&mut c, 0, CMD_WRITE_ZEROES, 4096, 8192, &[]).await;
        assert_eq!(error, 0);
        assert_eq!(device.bytes(0, 4096), vec![9; 4096]);
        assert_eq!(device.bytes(4096, 8192), vec![0; 8192]);
        assert_eq!(device.bytes(12288, 4096), vec![9; 4096]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn flush_waits_for_earlier_writes_but_reads_do_not() {
        let device = Arc::new(MemDevice {
            write_gate: Some(Semaphore::new(0)),
            ..MemDevice::new()
        });
        let (mut c, task, _) = open(Export::new(NAME, Arc::clone(&device))).await;

        send_request(&mut c, 0, CMD_WRITE, 1, 0, 512, &[1; 512]).await;
        send_request(&mut c, 0, CMD_FLUSH, 2, 0, 0, &[]).await;
        send_request(&mut c, 0, CMD_READ, 3, 4096, 512, &[]).await;
        // The read is answered while the write (and so the flush) is held up.
        let (cookie, error, _) = read_reply(&mut c, 512).await;
        assert_eq!((cookie, error), (3, 0));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(device.flushes.load(Ordering::SeqCst), 0);

        device.write_gate.as_ref().unwrap().add_permits(1);
        let (cookie, error, _) = read_reply(&mut c, 0).await;
        assert_eq!((cookie, error), (1, 0));
        let (cookie, error, _) = read_reply(&mut c, 0).await;
        assert_eq!((cookie, error), (2, 0));
        assert_eq!(*device.writes_at_flush.lock().unwrap(), vec![1]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn out_of_range_requests_are_refused_and_the_connection_stays_up() {
        let (device, export) = mem_export();
        let (mut c, task, _) = open(export).await;
        let end = SIZE as u64;

        let (error, _) = call(&mut c, 0, CMD_READ, end - 512, 1024, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_READ, u64::MAX - 511, 1024, &[]).await;
        assert_eq!(error, EINVAL);
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);

        // The refused payload is consumed: the next request parses.
        let (error, _) = call(&mut c, 0, CMD_WRITE, end - 512, 1024, &[5; 1024]).await;
        assert_eq!(error, ENOSPC);
        let (error, _) = call(&mut c, 0, CMD_WRITE, 0, 512, &[6; 512]).await;
        assert_eq!(error, 0);
        assert_eq!(device.bytes(0, 512), vec![6; 512]);
        assert_eq!(device.bytes(SIZE - 512, 512), vec![0; 512]);

        let (error, _) = call(&mut c, 0, CMD_TRIM, end, 512, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_WRITE_ZEROES, end - 512, 1024, &[]).await;
        assert_eq!(error, ENOSPC);

        // Zero-length and oversized reads, unaligned requests after agreeing block sizes.
        let (error, _) = call(&mut c, 0, CMD_READ, 0, 0, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_READ, 0, DEFAULT_MAX_BLOCK + 512, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_READ, 1, 512, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_WRITE, 0, 100, &[1; 100]).await;
        assert_eq!(error, EINVAL);

        assert_eq!(read_at(&mut c, 0, 512).await, vec![6; 512]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn oversized_write_is_skipped_up_to_32_mib_then_closes() {
        let (device, export) = mem_export();
        let (mut c, task, info) = open(export.with_max_block(4096)).await;
        assert_eq!(info.block_sizes, Some((512, 4096, 4096)));

        let (error, _) = call(&mut c, 0, CMD_WRITE, 0, 8192, &[3; 8192]).await;
        assert_eq!(error, EINVAL);
        assert_eq!(device.bytes(0, 8192), vec![0; 8192]);
        assert_eq!(read_at(&mut c, 0, 4096).await, vec![0; 4096]);

        send_request(&mut c, 0, CMD_WRITE, 9, 0, 64 << 20, &[]).await;
        assert_closed(&mut c).await;
        let result = within("server end", task).await.unwrap();
        assert!(matches!(result, Err(NbdError::Protocol(_))), "{result:?}");
    }

    #[tokio::test]
    async fn unknown_commands_and_flags_are_einval() {
        let (_device, export) = mem_export();
        let (mut c, task, _) = open(export).await;
        let (error, _) = call(&mut c, 0, 42, 0, 512, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, 0, CMD_BLOCK_STATUS, 0, 512, &[]).await;
        assert_eq!(error, EINVAL);
        let (error, _) = call(&mut c, CMD_FLAG_DF, CMD_READ, 0, 512, &[]).await;
        assert_eq!(error, EINVAL);
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn unknown_options_are_unsupported_and_go_still_works() {
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        for option in [STRUCTURED_REPLY, 11, 5, 10, 9, 0xdead] {
            send_option(&mut c, option, b"some data").await;
            let (replied, reply_type, _) = within("reply", option_reply(&mut c)).await;
            assert_eq!((replied, reply_type), (option, REP_ERR_UNSUP));
        }
        // INFO leaves the handshake going.
        let shown = info(&mut c, OPT_INFO, NAME).await.unwrap();
        assert_eq!(shown.size, SIZE as u64);
        info(&mut c, OPT_GO, NAME).await.unwrap();
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn unknown_export_in_go_then_the_right_one() {
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        assert_eq!(
            info(&mut c, OPT_GO, "nope").await.unwrap_err(),
            REP_ERR_UNKNOWN
        );
        assert_eq!(
            info(&mut c, OPT_INFO, "nope").await.unwrap_err(),
            REP_ERR_UNKNOWN
        );
        // A malformed GO is invalid, not fatal.
        send_option(&mut c, OPT_GO, &[0, 0, 0, 9, b'x']).await;
        assert_eq!(option_reply(&mut c).await.1, REP_ERR_INVALID);
        // The empty name is the default export.
        let shown = info(&mut c, OPT_GO, "").await.unwrap();
        assert_eq!(shown.size, SIZE as u64);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn list_then_abort() {
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE).await;
        send_option(&mut c, OPT_LIST, &[]).await;
        let (_, reply_type, data) = option_reply(&mut c).await;
        assert_eq!(reply_type, REP_SERVER);
        assert_eq!(data, [&[0, 0, 0, 4][..], NAME.as_bytes()].concat());
        assert_eq!(option_reply(&mut c).await.1, REP_ACK);
        send_option(&mut c, OPT_LIST, b"x").await;
        assert_eq!(option_reply(&mut c).await.1, REP_ERR_INVALID);
        send_option(&mut c, OPT_ABORT, &[]).await;
        assert_eq!(option_reply(&mut c).await, (OPT_ABORT, REP_ACK, Vec::new()));
        assert_closed(&mut c).await;
        within("server end", task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn export_name_with_and_without_zeroes() {
        for no_zeroes in [false, true] {
            let (device, export) = mem_export();
            let (mut c, task) = spawn_server(export);
            let flags = if no_zeroes {
                FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES
            } else {
                FLAG_C_FIXED_NEWSTYLE
            };
            greet(&mut c, flags).await;
            send_option(&mut c, OPT_EXPORT_NAME, NAME.as_bytes()).await;
            assert_eq!(c.read_u64().await.unwrap(), SIZE as u64);
            assert_ne!(c.read_u16().await.unwrap() & FLAG_SEND_FLUSH, 0);
            if !no_zeroes {
                let mut zeroes = [1; 124];
                c.read_exact(&mut zeroes).await.unwrap();
                assert_eq!(zeroes, [0; 124]);
            }
            // Without agreed block sizes, byte-granular requests are fine.
            device.fill(1, 3, 4);
            assert_eq!(read_at(&mut c, 1, 3).await, vec![4; 3]);
            disconnect(&mut c, task).await;
        }
    }

    #[tokio::test]
    async fn unknown_export_name_closes() {
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        send_option(&mut c, OPT_EXPORT_NAME, b"nope").await;
        assert_closed(&mut c).await;
        let result = within("server end", task).await.unwrap();
        assert!(matches!(result, Err(NbdError::UnknownExport(ref name)) if name == "nope"));
    }

    #[tokio::test]
    async fn malformed_handshakes_close_without_panicking() {
        // Bad option magic.
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE).await;
        c.write_u64(0xdead_beef).await.unwrap();
        c.write_all(&[0; 8]).await.unwrap();
        assert_closed(&mut c).await;
        let result = within("server end", task).await.unwrap();
        assert!(matches!(result, Err(NbdError::Protocol(_))), "{result:?}");

        // Unknown client flags.
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, 0x80).await;
        assert_closed(&mut c).await;
        assert!(within("server end", task).await.unwrap().is_err());

        // An option too long to accept.
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE).await;
        c.write_u64(IHAVEOPT).await.unwrap();
        c.write_u32(OPT_GO).await.unwrap();
        c.write_u32(1 << 20).await.unwrap();
        assert_closed(&mut c).await;
        assert!(within("server end", task).await.unwrap().is_err());

        // Truncated option data.
        let (_device, export) = mem_export();
        let (mut c, task) = spawn_server(export);
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE).await;
        c.write_u64(IHAVEOPT).await.unwrap();
        c.write_u32(OPT_GO).await.unwrap();
        c.write_u32(100).await.unwrap();
        c.write_all(&[0; 10]).await.unwrap();
        c.shutdown().await.unwrap();
        assert_closed(&mut c).await;
        let result = within("server end", task).await.unwrap();
        assert!(matches!(result, Err(NbdError::Io(_))), "{result:?}");
    }

    #[tokio::test]
    async fn bad_request_magic_closes() {
        let (_device, export) = mem_export();
        let (mut c, task, _) = open(export).await;
        c.write_all(&[0x11; 28]).await.unwrap();
        assert_closed(&mut c).await;
        let result = within("server end", task).await.unwrap();
        assert!(matches!(result, Err(NbdError::Protocol(_))), "{result:?}");
    }

    #[tokio::test]
    async fn silent_client_times_out() {
        let (_device, export) = mem_export();
        let export = export.with_handshake_timeout(Duration::from_millis(100));
        let (mut c, task) = spawn_server(export);
        let mut hello = [0; 18];
        c.read_exact(&mut hello).await.unwrap();
        let result = within("server end", task).await.unwrap();
        assert!(
            matches!(result, Err(NbdError::HandshakeTimeout(_))),
            "{result:?}"
        );
        assert_closed(&mut c).await;
    }

    #[tokio::test]
    async fn sixteen_reads_in_flight_at_once() {
        // Every read waits until all 16 are in the device: served one by one, they hang.
        let device = Arc::new(MemDevice {
            read_barrier: Some(Barrier::new(16)),
            ..MemDevice::new()
        });
        for i in 0..16 {
            device.fill(i * 4096, 4096, i as u8 + 1);
        }
        let (mut c, task, _) = open(Export::new(NAME, Arc::clone(&device))).await;
        for i in 0..16u64 {
            send_request(&mut c, 0, CMD_READ, 1000 + i, i * 4096, 4096, &[]).await;
        }
        let mut seen = BTreeSet::new();
        for _ in 0..16 {
            let (cookie, error, data) = read_reply(&mut c, 4096).await;
            assert_eq!(error, 0);
            let i = cookie - 1000;
            assert!(i < 16 && seen.insert(i), "unexpected cookie {cookie}");
            assert_eq!(data, vec![i as u8 + 1; 4096]);
        }
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn device_errors_are_eio() {
        let (device, export) = mem_export();
        let (mut c, task, _) = open(export).await;
        device.fail.store(true, Ordering::SeqCst);
        let (error, data) = call(&mut c, 0, CMD_READ, 0, 512, &[]).await;
        assert_eq!((error, data.len()), (EIO, 0));
        let (error, _) = call(&mut c, 0, CMD_WRITE, 0, 512, &[1; 512]).await;
        assert_eq!(error, EIO);
        let (error, _) = call(&mut c, 0, CMD_FLUSH, 0, 0, &[]).await;
        assert_eq!(error, EIO);
        device.fail.store(false, Ordering::SeqCst);
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);
        disconnect(&mut c, task).await;
    }

    #[tokio::test]
    async fn read_only_export_refuses_changes() {
        let device = Arc::new(MemDevice {
            read_only: true,
            ..MemDevice::new()
        });
        let (mut c, task, info) = open(Export::new(NAME, Arc::clone(&device))).await;
        assert_ne!(info.flags & FLAG_READ_ONLY, 0);
        let (error, _) = call(&mut c, 0, CMD_WRITE, 0, 512, &[1; 512]).await;
        assert_eq!(error, EPERM);
        let (error, _) = call(&mut c, 0, CMD_TRIM, 0, 512, &[]).await;
        assert_eq!(error, EPERM);
        let (error, _) = call(&mut c, 0, CMD_WRITE_ZEROES, 0, 512, &[]).await;
        assert_eq!(error, EPERM);
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);
        disconnect(&mut c, task).await;
    }

    #[test]
    fn device_errors_map_to_errno() {
        let kind = |kind: io::ErrorKind| errno(&io::Error::from(kind));
        assert_eq!(kind(io::ErrorKind::InvalidInput), EINVAL);
        assert_eq!(kind(io::ErrorKind::PermissionDenied), EPERM);
        assert_eq!(kind(io::ErrorKind::StorageFull), ENOSPC);
        assert_eq!(kind(io::ErrorKind::Other), EIO);
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), EIO);
        // Linux ENOSPC, EDQUOT, EFBIG, EROFS, EIO.
        assert_eq!(errno(&io::Error::from_raw_os_error(28)), ENOSPC);
        assert_eq!(errno(&io::Error::from_raw_os_error(122)), ENOSPC);
        assert_eq!(errno(&io::Error::from_raw_os_error(27)), ENOSPC);
        assert_eq!(errno(&io::Error::from_raw_os_error(30)), EPERM);
        assert_eq!(errno(&io::Error::from_raw_os_error(5)), EIO);
    }

    #[tokio::test]
    async fn tcp_serves_until_shutdown() {
        let (device, export) = mem_export();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_tcp(Arc::new(export), listener, async move {
            let _ = stopped.await;
        }));

        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        within("GO", info(&mut c, OPT_GO, NAME)).await.unwrap();
        let (error, _) = call(&mut c, 0, CMD_WRITE, 512, 512, &[8; 512]).await;
        assert_eq!(error, 0);
        assert_eq!(device.bytes(512, 512), vec![8; 512]);
        assert_eq!(read_at(&mut c, 512, 512).await, vec![8; 512]);

        // Shutdown closes the connection that is still open.
        stop.send(()).unwrap();
        within("server end", server).await.unwrap().unwrap();
        assert_closed(&mut c).await;
    }

    /// A fresh directory for unix sockets, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("stratus-nbd-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Serves `export` on a unix socket in `dir`; returns the socket path, the shutdown
    /// trigger and the server task.
    fn serve_in(
        dir: &TempDir,
        export: Export<MemDevice>,
    ) -> (
        std::path::PathBuf,
        tokio::sync::oneshot::Sender<()>,
        JoinHandle<io::Result<()>>,
    ) {
        let path = dir.0.join("nbd.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let socket = path.clone();
        let server = tokio::spawn(async move {
            serve_unix(Arc::new(export), &socket, async move {
                let _ = stopped.await;
            })
            .await
        });
        (path, stop, server)
    }

    async fn wait_for_socket(path: &Path) {
        within("socket", async {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn unix_socket_replaces_stale_files_only() {
        let dir = TempDir::new();
        let path = dir.0.join("nbd.sock");
        // A stale socket (nobody listens) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (_device, export) = mem_export();
        let (socket, stop, server) = serve_in(&dir, export);
        wait_for_socket(&socket).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);

        // A live socket is not.
        let (_device, export) = mem_export();
        let err = serve_unix(Arc::new(export), &socket, async {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        let mut c = tokio::net::UnixStream::connect(&socket).await.unwrap();
        greet(&mut c, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        within("GO", info(&mut c, OPT_GO, NAME)).await.unwrap();
        assert_eq!(read_at(&mut c, 0, 512).await, vec![0; 512]);
        stop.send(()).unwrap();
        within("server end", server).await.unwrap().unwrap();
        assert!(!socket.exists());

        // Nor is a file that is not a socket.
        std::fs::write(&path, b"data").unwrap();
        let (_device, export) = mem_export();
        let err = serve_unix(Arc::new(export), &path, async {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    /// Runs a tool against the server with a 60 s bound; `None` if it is not installed.
    async fn run_tool(program: &str, args: &[&str]) -> Option<std::process::Output> {
        if !Path::new(program).exists() {
            eprintln!("skipping: {program} is not installed");
            return None;
        }
        let child = tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), child)
            .await
            .unwrap_or_else(|_| panic!("{program} did not finish within 60 s"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{program} failed: {stdout}\n{stderr}"
        );
        Some(output)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qemu_io_writes_reads_and_flushes() {
        let dir = TempDir::new();
        let (device, export) = mem_export();
        let (socket, stop, server) = serve_in(&dir, export);
        wait_for_socket(&socket).await;
        let uri = format!("nbd+unix:///{NAME}?socket={}", socket.display());
        let args = [
            "-f",
            "raw",
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "read -P 0xab 0 64k",
            "-c",
            "flush",
            &uri,
        ];
        if let Some(output) = run_tool("/usr/bin/qemu-io", &args).await {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(!stdout.contains("Pattern verification failed"), "{stdout}");
            assert_eq!(device.bytes(0, 64 * 1024), vec![0xab; 64 * 1024]);
            assert_eq!(device.bytes(64 * 1024, 512), vec![0; 512]);
            assert!(device.flushes.load(Ordering::SeqCst) >= 1);
        }
        stop.send(()).unwrap();
        within("server end", server).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nbdinfo_lists_and_describes_the_export() {
        let dir = TempDir::new();
        let (_device, export) = mem_export();
        let (socket, stop, server) = serve_in(&dir, export);
        wait_for_socket(&socket).await;
        let uri = format!("nbd+unix:///{NAME}?socket={}", socket.display());
        if let Some(output) = run_tool("/usr/bin/nbdinfo", &["--size", &uri]).await {
            assert_eq!(
                String::from_utf8_lossy(&output.stdout).trim(),
                SIZE.to_string()
            );
        }
        if let Some(output) = run_tool("/usr/bin/nbdinfo", &["--list", &uri]).await {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains(&format!("export=\"{NAME}\"")), "{stdout}");
            assert!(stdout.contains(&format!("export-size: {SIZE}")), "{stdout}");
        }
        stop.send(()).unwrap();
        within("server end", server).await.unwrap().unwrap();
    }
}
