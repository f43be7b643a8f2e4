//! Request targets that are not UTF-8, quoted before hyper parses them.
//!
//! hyper (through `httparse`) refuses an HTTP/1 request line whose target holds bytes that
//! are not UTF-8 with a bare `400` and closes the connection, before any service sees the
//! request. Swift answers such a path `412 Invalid UTF8 or contains NULL`, which clients and
//! Swift's own tests expect. [`QuotedTargets`] sits between the connection and hyper: it
//! follows HTTP/1 framing (request line, headers, a `Content-Length` or chunked body) and
//! percent-encodes the bytes from 0x80 up in a request target that is not UTF-8, so the
//! request reaches the service, whose path decoding refuses it properly. A target that is
//! UTF-8 passes unchanged, as does every other byte.
//!
//! Anything it does not follow (the HTTP/2 preface, `CONNECT`, an upgrade, framing it cannot
//! read, a line longer than [`MAX_LINE`]) switches it to passing the rest of the connection
//! through untouched, for hyper to judge. Body bytes are read straight into hyper's buffer.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request or header line it collects before giving up (hyper's own limit on
/// a whole head is lower).
pub const MAX_LINE: usize = 64 * 1024;

/// Where in the connection's byte stream the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The request line of the next request (or an empty line before it).
    RequestLine,
    /// The header lines, with the body's framing as read so far.
    Headers(Framing),
    /// This many bytes of a `Content-Length` body.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data and the CRLF after it.
    ChunkData(u64),
    /// The trailer section, up to its empty line.
    Trailers,
    /// Everything from here on, untouched.
    Through,
}

/// A request's body framing, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
    /// An upgrade, or headers it cannot read: pass the rest through.
    through: bool,
}

/// A connection whose request targets that are not UTF-8 are percent-encoded on the way
/// in (see the module's documentation); writes pass straight through.
pub struct QuotedTargets<S> {
    inner: S,
    state: State,
    /// The line being collected.
    line: Vec<u8>,
    /// Bytes ready for the reader, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    buf: Box<[u8]>,
}

impl<S> QuotedTargets<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::RequestLine,
            line: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            buf: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Takes in `bytes` read from the connection.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Through => {
                    self.out.extend_from_slice(bytes);
                    return;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let k = bytes.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&bytes[..k]);
                    bytes = &bytes[k..];
                    self.consumed(k as u64);
                }
                _ => match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.line.extend_from_slice(&bytes[..=i]);
                        bytes = &bytes[i + 1..];
                        let line = std::mem::take(&mut self.line);
                        self.on_line(line);
                    }
                    None => {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > MAX_LINE {
                            self.out.append(&mut self.line);
                            self.state = State::Through;
                        }
                        return;
                    }
                },
            }
        }
    }

    /// `k` bytes of a body or chunk were passed on.
    fn consumed(&mut self, k: u64) {
        self.state = match self.state {
            State::Body(n) if n > k => State::Body(n - k),
            State::Body(_) => State::RequestLine,
            State::ChunkData(n) if n > k => State::ChunkData(n - k),
            State::ChunkData(_) => State::ChunkSize,
            s => s,
        };
    }

    /// A whole line (with its `\n`) in the current state.
    fn on_line(&mut self, line: Vec<u8>) {
        let text = trim_eol(&line);
        self.state = match self.state {
            // An empty line before a request line (RFC 9112 allows it).
            State::RequestLine if text.is_empty() => {
                self.out.extend_from_slice(&line);
                State::RequestLine
            }
            State::RequestLine => {
                let through = text.starts_with(b"PRI * HTTP/2") || text.starts_with(b"CONNECT ");
                self.out.extend_from_slice(&quote_target(&line));
                if through {
                    State::Through
                } else {
                    State::Headers(Framing::default())
                }
            }
            State::Headers(f) if text.is_empty() => {
                self.out.extend_from_slice(&line);
                match (f.through, f.chunked, f.length) {
                    (true, _, _) => State::Through,
                    (_, true, _) => State::ChunkSize,
                    (_, _, Some(n)) if n > 0 => State::Body(n),
                    _ => State::RequestLine,
                }
            }
            State::Headers(f) => {
                self.out.extend_from_slice(&line);
                State::Headers(header(f, text))
            }
            State::ChunkSize => {
                self.out.extend_from_slice(&line);
                match chunk_size(text) {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n.saturating_add(2)),
                    None => State::Through,
                }
            }
            State::Trailers => {
                self.out.extend_from_slice(&line);
                if text.is_empty() {
                    State::RequestLine
                } else {
                    State::Trailers
                }
            }
            State::Body(_) | State::ChunkData(_) | State::Through => {
                unreachable!("lines are only collected outside bodies")
            }
        };
    }
}

/// `line` without its line ending.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The framing after one more header line.
fn header(mut f: Framing, text: &[u8]) -> Framing {
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        f.through = true;
        return f;
    };
    let (name, value) = (&text[..colon], text[colon + 1..].trim_ascii());
    if name.eq_ignore_ascii_case(b"content-length") {
        match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
            Some(n) if f.length.is_none_or(|l| l == n) => f.length = Some(n),
            _ => f.through = true,
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            f.chunked = true;
        } else {
            f.through = true;
        }
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        f.through = true;
    }
    f
}

/// The size on a chunk-size line (hex, before any `;` extension).
fn chunk_size(text: &[u8]) -> Option<u64> {
    let hex = text.split(|&b| b == b';').next()?.trim_ascii();
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// A request line with the bytes from 0x80 up of its target percent-encoded, if the target
/// is not UTF-8; otherwise the line as it is.
fn quote_target(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let text = trim_eol(line);
    let (Some(a), Some(b)) = (
        text.iter().position(|&c| c == b' '),
        text.iter().rposition(|&c| c == b' '),
    ) else {
        return line.into();
    };
    if b <= a || std::str::from_utf8(&text[a + 1..b]).is_ok() {
        return line.into();
    }
    let mut out = Vec::with_capacity(line.len() + 32);
    out.extend_from_slice(&line[..=a]);
    for &c in &text[a + 1..b] {
        if c >= 0x80 {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out.extend_from_slice(&line[b..]);
    out.into()
}

impl<S: AsyncRead + Unpin> AsyncRead for QuotedTargets<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.out_at < me.out.len() {
                let k = buf.remaining().min(me.out.len() - me.out_at);
                buf.put_slice(&me.out[me.out_at..me.out_at + k]);
                me.out_at += k;
                if me.out_at == me.out.len() {
                    me.out.clear();
                    me.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match me.state {
                State::Through => return Pin::new(&mut me.inner).poll_read(cx, buf),
                State::Body(n) | State::ChunkData(n) => {
                    // Body bytes go straight into the reader's buffer.
                    let limit = buf
                        .remaining()
                        .min(usize::try_from(n).unwrap_or(usize::MAX));
                    let mut part = buf.take(limit);
                    ready!(Pin::new(&mut me.inner).poll_read(cx, &mut part))?;
                    let k = part.filled().len();
                    // SAFETY: `part` is the start of `buf`'s unfilled part, and the read
                    // initialised and filled its first `k` bytes.
                    unsafe { buf.assume_init(k) };
                    buf.advance(k);
                    me.consumed(k as u64);
                    return Poll::Ready(Ok(()));
                }
                _ => {}
            }
            let mut chunk = std::mem::take(&mut me.buf);
            let mut rb = ReadBuf::new(&mut chunk);
            let read = Pin::new(&mut me.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            let pending = read.is_pending();
            let result = match read {
                Poll::Pending => None,
                Poll::Ready(Err(e)) => Some(Err(e)),
                Poll::Ready(Ok(())) if n == 0 => {
                    // End of the stream: a partial line goes on as it is, for hyper to judge.
                    me.out.append(&mut me.line);
                    me.state = State::Through;
                    if me.out.is_empty() {
                        Some(Ok(()))
                    } else {
                        None
                    }
                }
                Poll::Ready(Ok(())) => {
                    me.feed(&chunk[..n]);
                    None
                }
            };
            me.buf = chunk;
            match result {
                Some(r) => return Poll::Ready(r),
                None if pending => return Poll::Pending,
                None => continue,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for QuotedTargets<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// What hyper would read when `wire` arrives in pieces of `step` bytes.
    async fn through(wire: &[u8], step: usize) -> Vec<u8> {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let pieces: Vec<Vec<u8>> = wire.chunks(step).map(<[u8]>::to_vec).collect();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for p in pieces {
                tx.write_all(&p).await.unwrap();
                tx.flush().await.unwrap();
            }
        });
        let mut out = Vec::new();
        QuotedTargets::new(rx).read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn only_targets_that_are_not_utf8_are_quoted() {
        let wire = b"PUT /v1/a/\xa9\xc3x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n\
GET /v1/a/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n";
        let want = b"PUT /v1/a/%A9%C3x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n\
GET /v1/a/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n";
        for step in [1, 3, 7, wire.len()] {
            assert_eq!(through(wire, step).await, want, "in pieces of {step}");
        }
    }

    #[tokio::test]
    async fn bodies_are_never_rewritten() {
        // A body that looks like a request line, by length and then chunked, then a
        // request whose target must be quoted.
        let body = b"GET /\xff HTTP/1.1\r\n\r\n";
        let mut wire =
            format!("PUT /o HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"PUT /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        wire.extend_from_slice(format!("{:x};ext=1\r\n", body.len()).as_bytes());
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"\r\n0\r\nx-trailer: 1\r\n\r\n");
        let mut want = wire.clone();
        wire.extend_from_slice(b"DELETE /\xff HTTP/1.1\r\n\r\n");
        want.extend_from_slice(b"DELETE /%FF HTTP/1.1\r\n\r\n");
        for step in [1, 5, wire.len()] {
            assert_eq!(through(&wire, step).await, want, "in pieces of {step}");
        }
    }

    #[tokio::test]
    async fn what_it_cannot_follow_passes_untouched() {
        for wire in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /\xff HTTP/1.1\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET /\xff HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /\xff HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET /\xff HTTP/1.1\r\n",
            b"GET /\xff",
        ] {
            assert_eq!(through(wire, 4).await, wire);
        }
    }
}
