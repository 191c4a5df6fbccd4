//! The lean HTTP/1 path: requests without a body, going to a plaintext
//! upstream on the connection's own target, are forwarded as bytes. The
//! request head is parsed in place (httparse), written on with its
//! hop-by-hop fields left out, and the response head is parsed and written
//! back the same way, its body streamed as it comes (by length, chunk by
//! chunk, or until the upstream closes). No request or response objects,
//! no header map, no channel to an upstream connection task: about a third
//! of the instructions of the general path for the most common request.
//!
//! Anything else is handed to the general (hyper) path for the rest of the
//! connection, with the bytes read so far: a request with a body, an
//! upgrade, `CONNECT`, `Expect`, HTTP/1.0, a head split over several
//! reads (slow or huge), one that does not parse (hyper answers 400 or
//! 431), gRPC, and `Connection` naming other fields. The general path
//! keeps every rule it has (timeouts, limits, errors, logging).
//!
//! ```text
//!  client ─► read ─► head complete & eligible? ─no─► Lean::Fallback(bytes) ─► serve_h1
//!                         │yes
//!                         ▼
//!            upstream (pooled, most recent first) ◄── head minus hop-by-hop
//!            response head ─► client, body streamed (length | chunked | close)
//! ```

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::Forward;
use super::headers::is_hop_by_hop_name as is_hop_by_hop;
use crate::client::LeanConn;
use crate::config::HttpConfig;
use crate::errors::ProxyError;
use crate::metrics::{Classification, ResponseLabels, TargetLabels};

/// Headers parsed per message; a message with more goes to the general path
/// (requests) or fails (responses).
const MAX_HEADERS: usize = 64;

/// Read size for heads and bodies.
const READ_CHUNK: usize = 16 * 1024;

/// How long the rest of a request head that arrived in part may take before
/// the connection goes to the general path.
const PARTIAL_HEAD_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// How the lean path ended for a connection.
#[derive(Debug)]
pub enum Lean {
    /// The connection is finished (closed by the client, by a response that
    /// required it, by shutdown, or after an upstream failure mid-response,
    /// in which case the caller's reset flag is raised).
    Closed,
    /// Hand the connection to the general path; `buf` holds the bytes read
    /// and not yet forwarded.
    Fallback,
}

/// What a request head says, when the lean path can take it.
struct RequestHead {
    /// Length of the head in the buffer.
    len: usize,
    /// The head to send upstream.
    out: Vec<u8>,
    authority: Option<(usize, usize)>,
    head_method: bool,
    idempotent: bool,
    close: bool,
    /// It carries a trace context (W3C or B3): a proxy that traces serves
    /// it on the general path, which starts the span.
    traced: bool,
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

// === impl Forward ===

impl Forward {
    /// Whether this connection's requests may take the lean path: to the
    /// original destination itself, in plaintext, with no routing by name.
    pub fn lean_eligible(&self) -> bool {
        self.blocked.is_none()
            && self.resolver.is_none()
            && matches!(self.route, crate::discovery::Route::Direct)
            && self.tls.server_id().is_none()
            && !self.taps.is_active()
    }

    /// Counts a request of the lean paths (`authority` as sent, if any)
    /// and returns its labels: the connection's own target, no endpoint.
    pub(crate) fn lean_request(&self, authority: Option<&[u8]>) -> TargetLabels {
        let authority = authority
            .and_then(|a| std::str::from_utf8(a).ok())
            .filter(|a| !a.is_empty())
            .map(|a| self.handles.authority(a));
        let target = TargetLabels {
            direction: self.direction,
            authority,
            target_addr: self.target_addr.clone(),
            tls: self.tls.clone(),
            dst: Default::default(),
        };
        self.metrics.request_cached(&self.handles, &target);
        target
    }
}

/// Serves requests on an HTTP/1 client connection while they are eligible.
/// `buf` collects what was read from the client and not yet forwarded; on
/// [`Lean::Fallback`] the caller replays it to the general path. `reset`
/// is raised when the client connection must be reset rather than closed.
pub async fn serve<I>(
    io: &mut I,
    buf: &mut BytesMut,
    fwd: &Forward,
    config: &HttpConfig,
    drain: &CancellationToken,
    reset: &std::sync::atomic::AtomicBool,
) -> Lean
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // Upstream bytes, kept across requests to reuse the allocation.
    let mut rsp_buf = BytesMut::new();
    loop {
        if buf.is_empty() {
            // Idle between requests: as on the general path, the header
            // read timeout counts from the end of the last response.
            if drain.is_cancelled() {
                break Lean::Closed;
            }
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                r = tokio::time::timeout(config.header_read_timeout, io.read_buf(buf)) => r,
                () = drain.cancelled() => break Lean::Closed,
            };
            match read {
                Ok(Ok(0) | Err(_)) => break Lean::Closed,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!(direction = fwd.direction.as_str(), target = %fwd.target, "idle client connection closed after the header read timeout");
                    break Lean::Closed;
                }
            }
        }
        let head = match parse_request(buf, config.max_header_bytes) {
            Parsed::Lean(head) => head,
            Parsed::Partial => {
                // One more short read: a head split over two segments is
                // common enough; anything slower goes to the general path,
                // with its header read timeout.
                buf.reserve(READ_CHUNK);
                match tokio::time::timeout(PARTIAL_HEAD_WAIT, io.read_buf(buf)).await {
                    Ok(Ok(0) | Err(_)) => break Lean::Closed,
                    Ok(Ok(_)) => match parse_request(buf, config.max_header_bytes) {
                        Parsed::Lean(head) => head,
                        _ => break Lean::Fallback,
                    },
                    Err(_) => break Lean::Fallback,
                }
            }
            Parsed::Other => break Lean::Fallback,
        };
        if fwd.taps.is_active() || head.traced && fwd.tracer.is_some() {
            // A tap opened, or the request is traced: its events and its
            // span come from the general path.
            break Lean::Fallback;
        }
        match forward_one(io, buf, &mut rsp_buf, fwd, head, drain).await {
            Ok(true) => {}
            Ok(false) => break Lean::Closed,
            Err(Broken) => {
                reset.store(true, Ordering::Release);
                break Lean::Closed;
            }
        }
    }
}

/// The upstream failed mid-response: the client connection must be reset.
struct Broken;

/// Forwards one request and its response. `Ok(true)`: the client
/// connection may carry another request.
async fn forward_one<I>(
    io: &mut I,
    buf: &mut BytesMut,
    rsp_buf: &mut BytesMut,
    fwd: &Forward,
    head: RequestHead,
    drain: &CancellationToken,
) -> Result<bool, Broken>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let target = fwd.lean_request(head.authority.map(|(a, b)| &buf[a..b]));
    buf.advance(head.len);

    rsp_buf.clear();
    let sent = send_head(fwd, &head, rsp_buf).await;
    let (mut conn, mut rsp_head) = match sent {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(direction = fwd.direction.as_str(), target = %fwd.target, error = %e, "request failed");
            let labels = ResponseLabels {
                target,
                status_code: Some(e.http_status().as_u16()),
                classification: Classification::Failure,
                grpc_status: None,
                error: Some(e.kind()),
            };
            fwd.metrics
                .response_latency_cached(&fwd.handles, &labels, start);
            fwd.metrics.response_end_cached(&fwd.handles, &labels);
            let close = head.close || drain.is_cancelled();
            let out = error_response(&e, close);
            return match io.write_all(&out).await {
                Ok(()) => Ok(!close),
                Err(_) => Ok(false),
            };
        }
    };
    let status = rsp_head.status;
    let upstream_close = rsp_head.close;
    let framing = if head.head_method || matches!(status, 204 | 304) {
        Framing::None
    } else {
        rsp_head.framing
    };
    let mut labels = ResponseLabels {
        target,
        status_code: Some(status),
        classification: Classification::Success,
        grpc_status: None,
        error: None,
    };
    fwd.metrics
        .response_latency_cached(&fwd.handles, &labels, start);
    let close = head.close || framing == Framing::Close || drain.is_cancelled();
    if close {
        rsp_head.out.extend_from_slice(b"connection: close\r\n");
    }
    rsp_head.out.extend_from_slice(b"\r\n");
    rsp_buf.advance(rsp_head.len);
    let clean = copy_body(io, &mut conn, rsp_buf, rsp_head.out, framing).await;
    let failed = clean.is_err() || status >= 500;
    labels.classification = if failed {
        Classification::Failure
    } else {
        Classification::Success
    };
    fwd.metrics.response_end_cached(&fwd.handles, &labels);
    // The upstream connection goes back to the pool after every clean
    // response, rather than staying with this client connection, and is
    // closed after any other. The pool hands out the most recently used
    // connection first, so at a moderate rate a few upstream connections
    // carry every request, each busy enough for the kernel to fold its ACKs
    // into the next request instead of sending one packet more per response.
    match clean {
        Ok(reusable) => {
            if reusable && !upstream_close && framing != Framing::Close && rsp_buf.is_empty() {
                fwd.client.release_lean(conn);
            }
            Ok(!close)
        }
        Err(BodyError::Client) => Ok(false),
        Err(BodyError::Upstream) => Err(Broken),
    }
}

/// Sends the request head upstream (on a pooled connection or a new one)
/// and reads the response head into `rsp`. A pooled connection that turns
/// out closed before any response byte is replaced once, for idempotent
/// requests or when the head could not be written.
async fn send_head(
    fwd: &Forward,
    head: &RequestHead,
    rsp: &mut BytesMut,
) -> Result<(Box<LeanConn>, ResponseHead), ProxyError> {
    let addr = fwd.target;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut conn, reused) = fwd.client.lean_conn(addr, &fwd.tls).await?;
        let written = conn.io.write_all(&head.out).await;
        let read = match written {
            Ok(()) => read_response_head(&mut conn, rsp).await,
            Err(e) => Err(HeadError::Io(e, false)),
        };
        // A connection that failed is dropped (closed) here.
        match read {
            Ok(h) => return Ok((conn, h)),
            Err(HeadError::Io(e, got_bytes)) => {
                rsp.clear();
                let retry = reused && attempt == 1 && !got_bytes && head.idempotent;
                if !retry {
                    return Err(ProxyError::UpstreamIo { addr, source: e });
                }
            }
            Err(HeadError::Invalid(why)) => {
                return Err(ProxyError::UpstreamIo {
                    addr,
                    source: io::Error::new(io::ErrorKind::InvalidData, why),
                });
            }
        }
    }
}

enum HeadError {
    /// I/O failed; `true` when some response bytes had arrived.
    Io(io::Error, bool),
    Invalid(&'static str),
}

/// Reads until `rsp` holds a complete final response head and parses it,
/// forwarding nothing: informational (1xx) responses other than 101 are
/// dropped (the client sent no `Expect`, so a `100 Continue` means nothing
/// to it; `103 Early Hints` is optional).
async fn read_response_head(
    conn: &mut LeanConn,
    rsp: &mut BytesMut,
) -> Result<ResponseHead, HeadError> {
    loop {
        if !rsp.is_empty() {
            match parse_response(rsp).map_err(HeadError::Invalid)? {
                Some(h) if h.status == 101 => {
                    return Err(HeadError::Invalid(
                        "101 Switching Protocols without an upgrade request",
                    ));
                }
                Some(h) if (100..200).contains(&h.status) => {
                    rsp.advance(h.len);
                    continue;
                }
                Some(h) => return Ok(h),
                None if rsp.len() > MAX_RESPONSE_HEAD => {
                    return Err(HeadError::Invalid("response head too large"));
                }
                None => {}
            }
        }
        rsp.reserve(READ_CHUNK);
        let had = !rsp.is_empty();
        match conn.io.read_buf(rsp).await {
            Ok(0) => {
                return Err(HeadError::Io(
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    ),
                    had,
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e, had)),
        }
    }
}

/// The largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A final response head, parsed once.
#[derive(Debug, PartialEq, Eq)]
struct ResponseHead {
    status: u16,
    /// Length of the upstream's head in the buffer.
    len: usize,
    framing: Framing,
    /// The upstream will close the connection after this response.
    close: bool,
    /// The head for the client: the upstream's status line and fields,
    /// hop-by-hop fields (and those `Connection` names) left out, without
    /// the blank line that ends it.
    out: Vec<u8>,
}

/// Parses the response head at the start of `rsp`; `None` while it is
/// incomplete.
fn parse_response(rsp: &[u8]) -> Result<Option<ResponseHead>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(rsp) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed HTTP/1 response head"),
    };
    let status = r.code.unwrap_or(0);
    let http10 = r.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = http10;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("invalid content-length in response")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length in response");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else {
                other_coding = true;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if other_coding {
        Framing::Close
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let mut out = Vec::with_capacity(len + 24);
    // HTTP/1.0 upstreams are answered to the client as HTTP/1.1.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let listed = connection_tokens(r.headers);
    for h in r.headers.iter() {
        if is_hop_by_hop(h.name) && !h.name.eq_ignore_ascii_case("transfer-encoding")
            || listed
                .iter()
                .any(|l| h.name.as_bytes().eq_ignore_ascii_case(l))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(ResponseHead {
        status,
        len,
        framing,
        close,
        out,
    }))
}

/// Field names a `Connection` header lists, besides `close`/`keep-alive`.
fn connection_tokens<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && !t.eq_ignore_ascii_case(b"keep-alive")
        })
        .collect()
}

enum BodyError {
    /// The client went away: close quietly.
    Client,
    /// The upstream failed before the end of the body.
    Upstream,
}

/// Writes the response head and streams the body. `Ok(true)` when the
/// upstream connection ended the response cleanly and may carry another.
async fn copy_body<I>(
    io: &mut I,
    conn: &mut LeanConn,
    rsp: &mut BytesMut,
    head: Vec<u8>,
    framing: Framing,
) -> Result<bool, BodyError>
where
    I: AsyncWrite + Unpin,
{
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut chunks = ChunkedDecoder::default();
    let mut pending_head = Some(head);
    loop {
        // How much of what is buffered belongs to this body.
        let take = match framing {
            Framing::None => 0,
            Framing::Length(_) => usize::try_from(remaining.min(rsp.len() as u64)).unwrap_or(0),
            Framing::Chunked => chunks.feed(rsp).map_err(|()| BodyError::Upstream)?,
            Framing::Close => rsp.len(),
        };
        let body = rsp.split_to(take);
        if let Framing::Length(_) = framing {
            remaining -= take as u64;
        }
        match pending_head.take() {
            Some(mut h) => {
                // Head and the body bytes at hand in one write.
                h.extend_from_slice(&body);
                io.write_all(&h).await.map_err(|_| BodyError::Client)?;
            }
            None if !body.is_empty() => io.write_all(&body).await.map_err(|_| BodyError::Client)?,
            None => {}
        }
        let done = match framing {
            Framing::None => true,
            Framing::Length(_) => remaining == 0,
            Framing::Chunked => chunks.is_done(),
            Framing::Close => false,
        };
        if done {
            return Ok(true);
        }
        rsp.reserve(READ_CHUNK);
        match conn.io.read_buf(rsp).await {
            Ok(0) if framing == Framing::Close => return Ok(false),
            Ok(0) | Err(_) => return Err(BodyError::Upstream),
            Ok(_) => {}
        }
    }
}

/// Finds the end of a chunked body (RFC 9112 §7.1) while its bytes pass
/// through unchanged, trailers included.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of the current size line's extension or trailer section.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size(u64),
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Limit on a chunk extension and on the trailer section, in bytes.
const MAX_CHUNK_LINE: usize = 64 * 1024;

impl ChunkedDecoder {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// How many bytes at the start of `buf` belong to the body (all of them
    /// until the end is reached). Errors on a malformed body.
    fn feed(&mut self, buf: &[u8]) -> Result<usize, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < buf.len() && self.state != Done {
            let b = buf[i];
            self.state = match self.state {
                SizeStart => Size(u64::from(hex(b).ok_or(())?)),
                Size(n) => match (b, hex(b)) {
                    (_, Some(d)) => {
                        if n >> 60 != 0 {
                            return Err(());
                        }
                        Size(n << 4 | u64::from(d))
                    }
                    (b';' | b' ' | b'\t', _) => {
                        self.line = 0;
                        Ext(n)
                    }
                    (b'\r', _) => SizeLf(n),
                    _ => return Err(()),
                },
                Ext(n) => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(());
                    }
                    if b == b'\r' { SizeLf(n) } else { Ext(n) }
                }
                SizeLf(0) if b == b'\n' => {
                    self.line = 0;
                    TrailerStart
                }
                SizeLf(n) if b == b'\n' => Data(n),
                SizeLf(_) => return Err(()),
                Data(n) => {
                    let avail = (buf.len() - i) as u64;
                    let step = n.min(avail);
                    // `step` fits in usize: it is at most `avail`.
                    i += usize::try_from(step).map_err(|_| ())?;
                    self.state = if step == n { DataCr } else { Data(n - step) };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => SizeStart,
                DataCr | DataLf => return Err(()),
                TrailerStart if b == b'\r' => EndLf,
                TrailerStart | Trailer => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(());
                    }
                    if b == b'\r' { TrailerLf } else { Trailer }
                }
                TrailerLf if b == b'\n' => TrailerStart,
                EndLf if b == b'\n' => Done,
                TrailerLf | EndLf => return Err(()),
                Done => Done,
            };
            i += 1;
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

enum Parsed {
    Lean(RequestHead),
    /// Not complete yet.
    Partial,
    /// Complete (or invalid) but not for the lean path.
    Other,
}

/// Parses the request head at the start of `buf` and decides whether the
/// lean path takes it.
fn parse_request(buf: &[u8], max_head: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    if method == "CONNECT" || !path.starts_with('/') {
        return Parsed::Other;
    }
    let mut authority = None;
    let mut close = false;
    let mut te_trailers = false;
    let mut traced = false;
    for h in req.headers.iter() {
        let name = h.name;
        traced |=
            name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("x-b3-traceid");
        if name.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("host") {
            if authority.is_some() {
                return Parsed::Other;
            }
            let start = h.value.as_ptr() as usize - buf.as_ptr() as usize;
            authority = Some((start, start + h.value.len()));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                    return Parsed::Other;
                }
            }
        } else if name.eq_ignore_ascii_case("te") {
            te_trailers |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        } else if ["transfer-encoding", "upgrade", "expect", "l5d-orig-proto"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
            || name.eq_ignore_ascii_case("content-type") && h.value.starts_with(b"application/grpc")
        {
            return Parsed::Other;
        }
    }
    let mut out = Vec::with_capacity(len + 16);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if is_hop_by_hop(h.name) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if te_trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Lean(RequestHead {
        len,
        out,
        authority,
        head_method: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        ),
        close,
        traced,
    })
}

/// The proxy's own error response, as HTTP/1.1 bytes.
fn error_response(e: &ProxyError, close: bool) -> Vec<u8> {
    let rsp = e.to_response(false);
    let mut out = Vec::with_capacity(256);
    let status = rsp.status();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in rsp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", rsp.body().len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(rsp.body());
    out
}

#[cfg(test)]
mod tests;
