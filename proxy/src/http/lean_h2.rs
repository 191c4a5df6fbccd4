//! The lean HTTP/2 path: an HTTP/2 client connection whose requests all go
//! to the original destination in plaintext is forwarded frame by frame,
//! by one task, with the proxy's own HTTP/2 wire code (`strand-proxy-h2`).
//! No request or response objects, no per-stream tasks, no channel to an
//! upstream connection task: each stream's header block is decoded,
//! checked and encoded again for the other connection, and its DATA is
//! copied across as flow control allows.
//!
//! ```text
//!  client conn ─► frames ─► streams (client id ⇄ upstream id) ─► upstream conn
//!        ▲                    │ windows: DATA waits here when the          │
//!        └──── frames ◄───────┘ receiver's window is closed ◄──── frames ◄─┘
//! ```
//!
//! The upstream connection is held only while this connection has streams
//! on it; then it goes back to a per-target pool (most recently used
//! first), as on the lean HTTP/1 path, so at a moderate rate a few
//! upstream connections carry every client connection's requests.
//!
//! Eligibility is decided per connection ([`Forward::lean_eligible`], and
//! no tracing): when a tap opens meanwhile, the connection finishes its
//! streams and sends GOAWAY, and the client's next connection takes the
//! general path.
//!
//! Flow control: the proxy grants each sender the default stream window
//! and a 1 MiB connection window, and gives bytes back only once it has
//! passed them on, so what it holds per connection is bounded by those.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use strand_proxy_h2::frame::{self, Reason};
use strand_proxy_h2::hpack::HeaderList;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Forward;
use crate::client::UpstreamIo;
use crate::config::HttpConfig;
use crate::errors::ProxyError;
use crate::metrics::{TargetLabels, TcpConn};

mod client;
mod fields;
mod peer;
mod pool;
mod streams;
mod upstream;

use peer::{CONN_WINDOW, Peer};
pub use pool::Pool;

/// Streams a client may open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
const MAX_STREAMS: u32 = 100;

/// A stream's receive window is given back once half of it was passed on.
const STREAM_UPDATE_AT: u32 = frame::DEFAULT_WINDOW / 2;

/// How long the proxy waits for a client's first request, which decides
/// whether the connection stays on this path, before it hands the
/// connection to the general path anyway (a client may wait for the
/// server's SETTINGS first; most do not).
const FIRST_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The most read from a client before its first request; past it the
/// connection goes to the general path.
const RAW_LIMIT: usize = 64 * 1024;

/// How the lean path ended for a connection.
#[derive(Debug)]
pub enum End {
    Closed,
    /// The first request needs the general path (HTTP/1 carried over
    /// HTTP/2 by another proxy), or none came in time: nothing was written
    /// to the client, and these are the bytes read from it, to be replayed.
    Fallback(bytes::Bytes),
}

/// How a lean HTTP/2 connection failed.
#[derive(Debug, thiserror::Error)]
pub enum LeanH2Error {
    /// The client broke the protocol; the connection ended with GOAWAY.
    #[error("HTTP/2 protocol error: {0}")]
    Protocol(frame::Error),
    #[error("HTTP/2 header compression error: {0}")]
    Compression(strand_proxy_h2::hpack::HpackError),
    #[error("client connection preface not received")]
    Preface,
    #[error("client connection failed: {0}")]
    Io(std::io::Error),
}

/// An upstream HTTP/2 connection of the lean path.
#[derive(Debug)]
pub struct Upstream {
    peer: Peer<UpstreamIo>,
    addr: std::net::SocketAddr,
    _metrics: TcpConn,
    /// The next stream id to open.
    next_id: u32,
    /// When it was last put back in the pool.
    idle_since: Instant,
}

/// An upstream connection in use by this client connection.
struct Held {
    /// Streams refer to their upstream connection by this number.
    key: u32,
    up: Box<Upstream>,
    /// Streams open on it.
    open: u32,
    /// It sent GOAWAY (streams above this id were not processed), or
    /// failed: no new streams.
    going_away: Option<u32>,
}

/// A connection attempt in progress.
type Connecting = Pin<Box<dyn Future<Output = Result<Box<Upstream>, ProxyError>> + Send>>;

/// One direction of a stream.
#[derive(Debug, Default)]
struct Half {
    /// What the receiving side lets us send on the stream.
    send_window: i64,
    /// What the sending side may still send us on the stream.
    recv_window: i64,
    /// Bytes received and passed on, not yet given back to the sender.
    unacked: u32,
    /// DATA waiting for the receiver's windows.
    pending: Vec<u8>,
    /// Trailers waiting behind `pending`, encoded.
    trailers: Option<Vec<u8>>,
    /// The sender ended the stream.
    end_received: bool,
    /// The end was passed on.
    end_sent: bool,
    /// DATA still due by the message's `content-length`.
    remaining: Option<u64>,
}

/// A request and its response.
#[derive(Debug)]
struct Stream {
    /// The client's stream id.
    id: u32,
    /// The upstream connection (`Held::key`) and its stream id, once the
    /// request head was sent; the head waits in `head` until then.
    up: Option<(u32, u32)>,
    head: Option<Vec<u8>>,
    req: Half,
    rsp: Half,
    start: Instant,
    target: TargetLabels,
    grpc: bool,
    /// A `HEAD` request: its response's `content-length` describes no DATA.
    head_request: bool,
    /// The final response head was passed on: its status and gRPC status.
    status: Option<u16>,
    grpc_status: Option<u32>,
    /// The response's end was counted.
    counted: bool,
}

/// One client connection on the lean path.
struct Conn<'a, I> {
    fwd: &'a Forward,
    max_list: usize,
    down: Peer<I>,
    preface: bool,
    held: Vec<Held>,
    next_key: u32,
    connecting: Option<Connecting>,
    streams: Vec<Stream>,
    /// The highest client stream id seen.
    last_id: u32,
    /// GOAWAY was sent to the client: no new streams.
    goaway_sent: bool,
    /// The client sent GOAWAY.
    client_goaway: bool,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Why the connection is ending, once it is.
    error: Option<LeanH2Error>,
    /// Writing to the client failed.
    down_broken: bool,
    /// Decoded fields, reused.
    list: HeaderList,
    /// Until the first request commits the connection to this path: the
    /// bytes read from the client, and when to give up waiting for it.
    raw: Option<(Vec<u8>, Pin<Box<tokio::time::Sleep>>)>,
    /// The connection goes to the general path (its first request needs
    /// it, or none came in time).
    fallback: bool,
    /// Streams the client opened, and reset before their response began.
    opened: u32,
    early_resets: u32,
}

/// Serves an HTTP/2 client connection (its preface not yet read) until it
/// closes, fails, or `drain` fires and its streams have finished.
pub async fn serve<I>(
    io: &mut I,
    fwd: &Forward,
    config: &HttpConfig,
    drain: CancellationToken,
) -> Result<End, LeanH2Error>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        fwd,
        max_list: config.max_header_bytes,
        down: Peer::new(io),
        preface: false,
        held: Vec::new(),
        next_key: 0,
        connecting: None,
        streams: Vec::new(),
        last_id: 0,
        goaway_sent: false,
        client_goaway: false,
        drain: Box::pin(drain.cancelled_owned()),
        error: None,
        down_broken: false,
        list: HeaderList::default(),
        raw: Some((Vec::new(), Box::pin(tokio::time::sleep(FIRST_REQUEST_WAIT)))),
        fallback: false,
        opened: 0,
        early_resets: 0,
    };
    let res = std::future::poll_fn(|cx| conn.poll(cx)).await;
    match (res, conn.fallback, conn.raw.take()) {
        (Ok(()), true, Some((raw, _))) => Ok(End::Fallback(raw.into())),
        (res, _, _) => res.map(|()| End::Closed),
    }
}

// === impl Half ===

impl Half {
    /// Counts `n` bytes of DATA (`end`: the last) against the message's
    /// `content-length`; false when they do not add up (RFC 9113 §8.1.1:
    /// the message is malformed).
    fn count(&mut self, n: usize, end: bool) -> bool {
        let Some(left) = self.remaining.as_mut() else {
            return true;
        };
        let n = n as u64;
        if n > *left {
            return false;
        }
        *left -= n;
        !end || *left == 0
    }
}

// === impl LeanH2Error ===

impl LeanH2Error {
    /// The connection's end, for the accept loop's log line.
    pub fn into_serve_error(self) -> super::ServeError {
        let reason = match &self {
            LeanH2Error::Protocol(_) | LeanH2Error::Compression(_) | LeanH2Error::Preface => {
                "HTTP/2 protocol error"
            }
            LeanH2Error::Io(_) => "connection error",
        };
        super::ServeError {
            reason,
            error: Box::new(self),
        }
    }
}

// === impl Conn ===

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<'_, I> {
    /// Commits the connection to this path: our SETTINGS (the first frame
    /// of the server's preface, ahead of anything answered meanwhile) and
    /// the larger connection window.
    fn commit(&mut self) {
        if self.raw.take().is_none() {
            return;
        }
        let mut preface = Vec::with_capacity(64);
        frame::Settings {
            max_concurrent_streams: Some(MAX_STREAMS),
            max_header_list_size: Some(u32::try_from(self.max_list).unwrap_or(u32::MAX)),
            ..Default::default()
        }
        .write(&mut preface);
        frame::write_window_update(&mut preface, 0, CONN_WINDOW - frame::DEFAULT_WINDOW);
        self.down.wbuf.splice(0..0, preface);
        self.down.recv_window += i64::from(CONN_WINDOW - frame::DEFAULT_WINDOW);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LeanH2Error>> {
        loop {
            let mut progress = false;
            if !self.goaway_sent && self.drain.as_mut().poll(cx).is_ready() {
                self.go_away(Reason::NO_ERROR, "");
            }
            if !self.goaway_sent && self.fwd.taps.is_active() {
                // A tap opened: the next connection takes the general path.
                self.go_away(Reason::NO_ERROR, "");
            }
            if let Some((_, timer)) = self.raw.as_mut()
                && timer.as_mut().poll(cx).is_ready()
            {
                self.fallback = true;
                return Poll::Ready(Ok(()));
            }
            if let Some(c) = self.connecting.as_mut()
                && let Poll::Ready(res) = c.as_mut().poll(cx)
            {
                self.connecting = None;
                self.connected(res);
                progress = true;
            }
            // Client frames.
            if self.error.is_none() && !self.down.eof && self.down.unwritten() < WRITE_LIMIT {
                match self.down.poll_read(cx) {
                    Poll::Ready(Ok(0)) => {
                        progress = true;
                        self.client_closed();
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        if let Some((raw, _)) = self.raw.as_mut() {
                            raw.extend_from_slice(self.down.last_read(n));
                            if raw.len() > RAW_LIMIT {
                                self.fallback = true;
                                return Poll::Ready(Ok(()));
                            }
                        }
                        if let Err(e) = self.client_frames() {
                            self.commit();
                            self.fail(e);
                        }
                        if self.fallback {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        progress = true;
                        if self.error.is_none() && !self.streams.is_empty() {
                            self.error = Some(LeanH2Error::Io(e));
                        }
                        self.client_closed();
                    }
                    Poll::Pending => {}
                }
            }
            // Upstream frames.
            let mut i = 0;
            while i < self.held.len() {
                let h = &mut self.held[i];
                if h.up.peer.eof || h.up.peer.unwritten() >= WRITE_LIMIT {
                    i += 1;
                    continue;
                }
                match h.up.peer.poll_read(cx) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        progress = true;
                        if let Err(e) = self.upstream_frames(i) {
                            self.upstream_failed(i, &e);
                        }
                    }
                    Poll::Ready(res) => {
                        progress = true;
                        let e = match res {
                            Err(e) => e,
                            Ok(_) => std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "connection closed",
                            ),
                        };
                        self.upstream_failed(i, &e.to_string());
                    }
                    Poll::Pending => {}
                }
                i += 1;
            }
            self.flush_streams();
            self.retire();
            // Writes (none before the connection is committed).
            if self.down.wants_flush() && self.raw.is_none() {
                match self.down.poll_flush(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(e)) => {
                        self.down_broken = true;
                        let busy = !self.streams.is_empty();
                        self.client_closed();
                        return Poll::Ready(if busy {
                            Err(LeanH2Error::Io(e))
                        } else {
                            Ok(())
                        });
                    }
                    Poll::Pending => {}
                }
            }
            let mut i = 0;
            while i < self.held.len() {
                if self.held[i].up.peer.wants_flush() {
                    match self.held[i].up.peer.poll_flush(cx) {
                        Poll::Ready(Ok(())) => progress = true,
                        Poll::Ready(Err(e)) => {
                            progress = true;
                            self.upstream_failed(i, &e.to_string());
                        }
                        Poll::Pending => {}
                    }
                }
                i += 1;
            }
            self.retire();
            if let Some(done) = self.finished() {
                return Poll::Ready(done);
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// The connection's end, once nothing is left to do.
    fn finished(&mut self) -> Option<Result<(), LeanH2Error>> {
        if self.down.eof && self.raw.is_some() {
            // Closed before a request: nothing to say.
            return Some(Ok(()));
        }
        if self.down.wants_flush() && !self.down_broken {
            return None;
        }
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let idle = self.streams.is_empty() && self.connecting.is_none();
        (idle && (self.down.eof || self.goaway_sent || self.client_goaway)).then_some(Ok(()))
    }

    /// A connection error: GOAWAY to the client, every stream reset.
    fn fail(&mut self, e: LeanH2Error) {
        let reason = match &e {
            LeanH2Error::Protocol(frame::Error::Connection { reason, .. }) => *reason,
            LeanH2Error::Compression(_) => Reason::COMPRESSION_ERROR,
            _ => Reason::PROTOCOL_ERROR,
        };
        let last = self.last_id;
        self.down.go_away(last, reason, &e.to_string());
        self.goaway_sent = true;
        self.cancel_all();
        self.error = Some(e);
    }

    /// The client is gone: its streams are cancelled upstream.
    fn client_closed(&mut self) {
        self.down.eof = true;
        self.cancel_all();
    }

    fn cancel_all(&mut self) {
        while !self.streams.is_empty() {
            let mut s = self.remove(self.streams.len() - 1);
            self.end_stream_upstream(&s, Reason::CANCEL);
            Self::record_end(self.fwd, &mut s, false);
        }
    }

    /// Takes a stream out of the table: the bytes it still held go back
    /// to their senders' connection windows, and its upstream connection
    /// counts one stream less.
    fn remove(&mut self, i: usize) -> Stream {
        let s = self.streams.swap_remove(i);
        self.down.release_recv(s.req.pending.len() as u32);
        if let Some((key, _)) = s.up
            && let Some(h) = self.held.iter_mut().find(|h| h.key == key)
        {
            h.open -= 1;
            h.up.peer.release_recv(s.rsp.pending.len() as u32);
        }
        s
    }

    /// Graceful GOAWAY: streams already open finish.
    fn go_away(&mut self, reason: Reason, debug: &str) {
        self.down.go_away(self.last_id, reason, debug);
        self.goaway_sent = true;
    }
}

/// Stop reading from a peer while this much waits to be written to it: it
/// is not reading, and answering its frames would only grow the buffer.
const WRITE_LIMIT: usize = 256 * 1024;

#[cfg(test)]
mod tests;
