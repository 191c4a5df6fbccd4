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

use strand_proxy_h2::frame::{self, Frame, Reason};
use strand_proxy_h2::hpack::HeaderList;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Forward;
use crate::client::UpstreamIo;
use crate::config::HttpConfig;
use crate::errors::ProxyError;
use crate::metrics::{Classification, ResponseLabels, TargetLabels, TcpConn};

mod fields;
mod peer;
mod pool;

use fields::Kind;
use peer::{CONN_WINDOW, Peer};
pub use pool::Pool;

/// Streams a client may open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
const MAX_STREAMS: u32 = 100;

/// A stream's receive window is given back once half of it was passed on.
const STREAM_UPDATE_AT: u32 = frame::DEFAULT_WINDOW / 2;

/// How long the proxy waits for a client's first request before it sends
/// its SETTINGS anyway (clients may wait for them; most do not, and the
/// first request decides whether the connection stays on this path).
const COMMIT_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// The most read from a client before its first request that is kept for
/// a fallback; past it the connection commits to this path.
const RAW_LIMIT: usize = 64 * 1024;

/// How the lean path ended for a connection.
#[derive(Debug)]
pub enum End {
    Closed,
    /// The first request needs the general path (HTTP/1 carried over
    /// HTTP/2 by another proxy): nothing was written to the client, and
    /// these are the bytes read from it, to be replayed.
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
    /// The final response head was passed on: its status and gRPC status.
    status: Option<u16>,
    grpc_status: Option<u32>,
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
    /// bytes read from the client, and when to commit without one.
    raw: Option<(Vec<u8>, Pin<Box<tokio::time::Sleep>>)>,
    /// The first request must take the general path.
    fallback: bool,
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
        raw: Some((
            Vec::new(),
            Box::pin(tokio::time::sleep(COMMIT_AFTER)),
        )),
        fallback: false,
    };
    let res = std::future::poll_fn(|cx| conn.poll(cx)).await;
    match (res, conn.fallback, conn.raw.take()) {
        (Ok(()), true, Some((raw, _))) => Ok(End::Fallback(raw.into())),
        (res, _, _) => res.map(|()| End::Closed),
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
                self.commit();
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
                                self.commit();
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
                        self.client_closed();
                        if self.error.is_none() && !self.streams.is_empty() {
                            self.error = Some(LeanH2Error::Io(e));
                        }
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
            if self.down.unwritten() > 0 && self.raw.is_none() {
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
                if self.held[i].up.peer.unwritten() > 0 {
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
        if self.down.unwritten() > 0 && !self.down_broken {
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
            let s = self.remove(self.streams.len() - 1);
            self.end_stream_upstream(&s, Reason::CANCEL);
            self.record_end(&s, false);
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

    // --- client frames ---

    fn client_frames(&mut self) -> Result<(), LeanH2Error> {
        if !self.preface {
            let buffered = self.down.buffered();
            if buffered.len() < frame::PREFACE.len() {
                return if frame::PREFACE.starts_with(buffered) {
                    Ok(())
                } else {
                    Err(LeanH2Error::Preface)
                };
            }
            if &buffered[..frame::PREFACE.len()] != frame::PREFACE {
                return Err(LeanH2Error::Preface);
            }
            self.down.consume(frame::PREFACE.len());
            self.preface = true;
        }
        while let Some(f) = self.down.next_frame().map_err(LeanH2Error::Protocol)? {
            let rbuf = self.down.take_rbuf();
            let res = match f.parse(&rbuf) {
                Ok(frame) => self.client_frame(frame),
                Err(frame::Error::Stream { stream, reason, .. }) => {
                    self.reset_client_stream(stream, reason);
                    Ok(())
                }
                Err(e) => Err(LeanH2Error::Protocol(e)),
            };
            self.down.put_rbuf(rbuf);
            res?;
            if self.error.is_some() || self.fallback {
                break;
            }
        }
        Ok(())
    }

    fn client_frame(&mut self, f: Frame<'_>) -> Result<(), LeanH2Error> {
        let protocol = |what| {
            LeanH2Error::Protocol(frame::Error::Connection {
                reason: Reason::PROTOCOL_ERROR,
                what,
            })
        };
        if self.down.block.is_some() && !matches!(f, Frame::Continuation { .. }) {
            return Err(protocol("header block interrupted"));
        }
        match f {
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
            } => {
                if end_headers {
                    self.client_headers(stream, end_stream, block)?;
                } else {
                    if block.len() > self.max_list * 2 {
                        return Err(protocol("header block too large"));
                    }
                    self.down.block = Some((stream, end_stream, block.to_vec()));
                }
            }
            Frame::Continuation {
                stream,
                end_headers,
                block,
            } => {
                if self.down.block.as_ref().map(|b| b.0) != Some(stream) {
                    return Err(protocol("CONTINUATION on another stream"));
                }
                self.down
                    .extend_block(block, self.max_list)
                    .map_err(LeanH2Error::Protocol)?;
                if end_headers && let Some((stream, end, block)) = self.down.block.take() {
                    self.client_headers(stream, end, &block)?;
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.client_data(stream, end_stream, data, flow_len)?,
            Frame::RstStream { stream, reason } => {
                if let Some(i) = self.find(stream) {
                    let s = self.remove(i);
                    self.end_stream_upstream(&s, reason);
                    self.record_end(&s, false);
                } else if stream > self.last_id {
                    return Err(protocol("RST_STREAM on an idle stream"));
                }
            }
            Frame::Settings(s) => {
                let delta = self.down.apply_settings(&s);
                if delta != 0 {
                    for st in &mut self.streams {
                        st.rsp.send_window += delta;
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping(&mut self.down.wbuf, true, data);
                }
            }
            Frame::GoAway { .. } => self.client_goaway = true,
            Frame::WindowUpdate { stream: 0, increment } => self
                .down
                .grow_send_window(increment)
                .map_err(LeanH2Error::Protocol)?,
            Frame::WindowUpdate { stream, increment } => {
                if let Some(i) = self.find(stream) {
                    let w = &mut self.streams[i].rsp.send_window;
                    *w += i64::from(increment);
                    if *w > i64::from(frame::MAX_WINDOW) {
                        self.reset_client_stream(stream, Reason::FLOW_CONTROL_ERROR);
                    }
                }
            }
            Frame::PushPromise { .. } => return Err(protocol("PUSH_PROMISE from a client")),
            Frame::SettingsAck | Frame::Priority | Frame::Unknown => {}
        }
        Ok(())
    }

    fn client_headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), LeanH2Error> {
        let mut list = std::mem::take(&mut self.list);
        let decoded = self.down.decoder.decode(block, &mut list, self.max_list);
        let res = decoded
            .map_err(LeanH2Error::Compression)
            .and_then(|()| self.client_head(stream, end_stream, &list));
        self.list = list;
        res
    }

    fn client_head(
        &mut self,
        stream: u32,
        end_stream: bool,
        list: &HeaderList,
    ) -> Result<(), LeanH2Error> {
        if let Some(i) = self.find(stream) {
            // Trailers.
            let mut block = Vec::new();
            let ok = end_stream
                && !self.streams[i].req.end_received
                && !list.is_oversize()
                && fields::response(list, Kind::Trailers, &mut block).is_ok();
            if !ok {
                self.reset_client_stream(stream, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            let s = &mut self.streams[i];
            s.req.end_received = true;
            s.req.trailers = Some(block);
            return Ok(());
        }
        if stream <= self.last_id || stream % 2 == 0 {
            return Err(LeanH2Error::Protocol(frame::Error::Connection {
                reason: Reason::PROTOCOL_ERROR,
                what: "HEADERS on a closed or server stream",
            }));
        }
        if self.fwd.direction == crate::metrics::Direction::Inbound
            && list.get(super::orig_proto::L5D_ORIG_PROTO.as_bytes()).is_some()
        {
            // HTTP/1 carried over HTTP/2 by another proxy goes back to
            // HTTP/1 on the general path: this whole connection, when this
            // is its first request; the client's next one otherwise.
            if self.raw.is_some() {
                self.fallback = true;
            } else {
                self.down.go_away(self.last_id, Reason::NO_ERROR, "");
                self.goaway_sent = true;
                frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::REFUSED_STREAM);
                self.last_id = stream;
            }
            return Ok(());
        }
        self.commit();
        self.last_id = stream;
        if self.goaway_sent || self.streams.len() >= MAX_STREAMS as usize {
            frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let mut block = Vec::with_capacity(128);
        let req = match fields::request(list, &mut block) {
            Ok(req) => req,
            Err(what) => {
                tracing::debug!(direction = self.fwd.direction.as_str(), stream, what, "malformed HTTP/2 request");
                frame::write_rst_stream(&mut self.down.wbuf, stream, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
        };
        let fwd = self.fwd;
        let authority = req
            .authority
            .and_then(|a| std::str::from_utf8(a).ok())
            .filter(|a| !a.is_empty())
            .map(|a| fwd.handles.authority(a));
        let target = TargetLabels {
            direction: fwd.direction,
            authority,
            target_addr: fwd.target_addr.clone(),
            tls: fwd.tls.clone(),
            dst: Default::default(),
        };
        fwd.metrics.request_cached(&fwd.handles, &target);
        let mut s = Stream {
            id: stream,
            up: None,
            head: Some(block),
            req: Half {
                recv_window: i64::from(frame::DEFAULT_WINDOW),
                end_received: end_stream,
                ..Half::default()
            },
            rsp: Half {
                send_window: i64::from(self.down.initial_window),
                ..Half::default()
            },
            start: Instant::now(),
            target,
            grpc: req.grpc,
            status: None,
            grpc_status: None,
        };
        if list.is_oversize() {
            // As the general path answers: 431, and the stream ends.
            s.head = None;
            s.status = Some(431);
            s.rsp.end_received = true;
            s.rsp.end_sent = true;
            s.req.end_sent = true;
            let mut block = Vec::new();
            strand_proxy_h2::hpack::Encoder::field(b":status", b"431", false, &mut block);
            send_headers(&mut self.down, stream, &block, true);
            self.record_end(&s, true);
            self.streams.push(s);
            return Ok(());
        }
        self.streams.push(s);
        self.ensure_upstream();
        Ok(())
    }

    fn client_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
    ) -> Result<(), LeanH2Error> {
        self.down
            .take_recv(flow_len)
            .map_err(LeanH2Error::Protocol)?;
        let Some(i) = self.find(stream) else {
            // A stream already closed: its bytes go back at once.
            self.down.release_recv(flow_len);
            if stream > self.last_id {
                return Err(LeanH2Error::Protocol(frame::Error::Connection {
                    reason: Reason::PROTOCOL_ERROR,
                    what: "DATA on an idle stream",
                }));
            }
            return Ok(());
        };
        let s = &mut self.streams[i];
        s.req.recv_window -= i64::from(flow_len);
        if s.req.end_received || s.req.recv_window < 0 {
            let reason = if s.req.end_received {
                Reason::STREAM_CLOSED
            } else {
                Reason::FLOW_CONTROL_ERROR
            };
            self.down.release_recv(flow_len);
            self.reset_client_stream(stream, reason);
            return Ok(());
        }
        s.req.end_received = end_stream;
        if s.up.is_none() && s.head.is_none() {
            // Answered by the proxy: the body goes nowhere.
            self.down.release_recv(flow_len);
            return Ok(());
        }
        // Padding is given back now, the data once it has been passed on.
        let padding = flow_len - data.len() as u32;
        s.req.unacked += padding;
        s.req.pending.extend_from_slice(data);
        self.down.release_recv(padding);
        Ok(())
    }

    /// Resets a client stream (and its upstream side).
    fn reset_client_stream(&mut self, stream: u32, reason: Reason) {
        frame::write_rst_stream(&mut self.down.wbuf, stream, reason);
        if let Some(i) = self.find(stream) {
            let s = self.remove(i);
            self.end_stream_upstream(&s, Reason::CANCEL);
            self.record_end(&s, false);
        }
    }

    /// Resets a removed stream's upstream side, if it is still open there.
    /// Frames that arrive for it later are dropped (their bytes given back
    /// to the connection window), so the connection stays fit for reuse.
    fn end_stream_upstream(&mut self, s: &Stream, reason: Reason) {
        let Some((key, up_id)) = s.up else { return };
        if let Some(h) = self.held.iter_mut().find(|h| h.key == key)
            && !(s.req.end_sent && s.rsp.end_received)
        {
            frame::write_rst_stream(&mut h.up.peer.wbuf, up_id, reason);
        }
    }

    fn find(&self, stream: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == stream)
    }

    // --- upstream connections ---

    /// Gets streams waiting for a connection one: a held one that takes new
    /// streams, a pooled one, or a new one.
    fn ensure_upstream(&mut self) {
        if self.streams.iter().all(|s| s.up.is_some() || s.head.is_none()) {
            return;
        }
        if self.held.iter().any(|h| h.going_away.is_none()) || self.connecting.is_some() {
            return;
        }
        let fwd = self.fwd;
        if let Some(up) = fwd.client.lean_h2_pool().take(fwd.target) {
            self.adopt(up);
            return;
        }
        let client = fwd.client.clone();
        let addr = fwd.target;
        let tls = fwd.tls.clone();
        self.connecting = Some(Box::pin(async move {
            let (io, metrics) = client.connector().connect(addr, tls).await?;
            Ok(Upstream::new(io, addr, metrics))
        }));
    }

    fn connected(&mut self, res: Result<Box<Upstream>, ProxyError>) {
        match res {
            Ok(up) => self.adopt(up),
            Err(e) => {
                // Every stream waiting for a connection gets the error.
                let mut waiting = Vec::new();
                let mut i = 0;
                while i < self.streams.len() {
                    if self.streams[i].up.is_none() && self.streams[i].head.is_some() {
                        waiting.push(self.streams.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                for mut s in waiting {
                    self.answer_error(&mut s, &e);
                    self.streams.push(s);
                }
            }
        }
    }

    fn adopt(&mut self, up: Box<Upstream>) {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        self.held.push(Held {
            key,
            up,
            open: 0,
            going_away: None,
        });
    }

    fn upstream_frames(&mut self, i: usize) -> Result<(), String> {
        loop {
            let h = &mut self.held[i];
            let Some(f) = h.up.peer.next_frame().map_err(|e| e.to_string())? else {
                return Ok(());
            };
            let rbuf = h.up.peer.take_rbuf();
            let res = match f.parse(&rbuf) {
                Ok(frame) => self.upstream_frame(i, frame),
                Err(frame::Error::Stream { stream, reason, .. }) => {
                    self.reset_upstream_stream(i, stream, reason);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            self.held[i].up.peer.put_rbuf(rbuf);
            res?;
        }
    }

    fn upstream_frame(&mut self, i: usize, f: Frame<'_>) -> Result<(), String> {
        let h = &mut self.held[i];
        if h.up.peer.block.is_some() && !matches!(f, Frame::Continuation { .. }) {
            return Err("header block interrupted".into());
        }
        match f {
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                block,
            } => {
                if end_headers {
                    self.upstream_headers(i, stream, end_stream, block)?;
                } else {
                    h.up.peer.block = Some((stream, end_stream, block.to_vec()));
                }
            }
            Frame::Continuation {
                stream,
                end_headers,
                block,
            } => {
                if h.up.peer.block.as_ref().map(|b| b.0) != Some(stream) {
                    return Err("CONTINUATION on another stream".into());
                }
                h.up.peer
                    .extend_block(block, self.max_list)
                    .map_err(|e| e.to_string())?;
                if end_headers && let Some((stream, end, block)) = h.up.peer.block.take() {
                    self.upstream_headers(i, stream, end, &block)?;
                }
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => {
                h.up.peer.take_recv(flow_len).map_err(|e| e.to_string())?;
                let key = h.key;
                let Some(si) = self.find_up(key, stream) else {
                    self.held[i].up.peer.release_recv(flow_len);
                    return Ok(());
                };
                let s = &mut self.streams[si];
                s.rsp.recv_window -= i64::from(flow_len);
                if s.rsp.end_received || s.status.is_none() || s.rsp.recv_window < 0 {
                    self.held[i].up.peer.release_recv(flow_len);
                    self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                    return Ok(());
                }
                let padding = flow_len - data.len() as u32;
                s.rsp.unacked += padding;
                s.rsp.pending.extend_from_slice(data);
                s.rsp.end_received = end_stream;
                self.held[i].up.peer.release_recv(padding);
            }
            Frame::RstStream { stream, reason } => {
                let key = h.key;
                if let Some(si) = self.find_up(key, stream) {
                    let s = self.remove(si);
                    self.upstream_reset(s, reason);
                }
            }
            Frame::Settings(s) => {
                let delta = h.up.peer.apply_settings(&s);
                let key = h.key;
                if delta != 0 {
                    for st in self.streams.iter_mut().filter(|s| s.up.is_some_and(|u| u.0 == key)) {
                        st.req.send_window += delta;
                    }
                }
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping(&mut h.up.peer.wbuf, true, data);
                }
            }
            Frame::GoAway {
                last_stream,
                reason,
                ..
            } => {
                h.going_away = Some(last_stream);
                let key = h.key;
                tracing::debug!(target = %self.fwd.target, %reason, last_stream, "upstream sent GOAWAY");
                // Streams it never processed are refused: the client may
                // retry them.
                let mut j = 0;
                while j < self.streams.len() {
                    if self.streams[j].up.is_some_and(|(k, id)| k == key && id > last_stream) {
                        let s = self.remove(j);
                        self.upstream_reset(s, Reason::REFUSED_STREAM);
                    } else {
                        j += 1;
                    }
                }
                self.ensure_upstream();
            }
            Frame::WindowUpdate { stream: 0, increment } => {
                h.up.peer
                    .grow_send_window(increment)
                    .map_err(|e| e.to_string())?;
            }
            Frame::WindowUpdate { stream, increment } => {
                let key = h.key;
                if let Some(si) = self.find_up(key, stream) {
                    self.streams[si].req.send_window += i64::from(increment);
                }
            }
            Frame::PushPromise { .. } => return Err("PUSH_PROMISE with push disabled".into()),
            Frame::SettingsAck | Frame::Priority | Frame::Unknown => {}
        }
        Ok(())
    }

    fn upstream_headers(
        &mut self,
        i: usize,
        stream: u32,
        end_stream: bool,
        block: &[u8],
    ) -> Result<(), String> {
        let mut list = std::mem::take(&mut self.list);
        let res = self.held[i]
            .up
            .peer
            .decoder
            .decode(block, &mut list, self.max_list)
            .map_err(|e| e.to_string());
        let res = res.map(|()| self.upstream_head(i, stream, end_stream, &list));
        self.list = list;
        res
    }

    fn upstream_head(&mut self, i: usize, stream: u32, end_stream: bool, list: &HeaderList) {
        let key = self.held[i].key;
        let Some(si) = self.find_up(key, stream) else {
            return;
        };
        let s = &mut self.streams[si];
        let kind = if s.status.is_some() {
            Kind::Trailers
        } else {
            Kind::Response
        };
        let mut block = Vec::with_capacity(64);
        let rsp = match fields::response(list, kind, &mut block) {
            Ok(rsp) if !list.is_oversize() && (kind == Kind::Response || end_stream) => rsp,
            _ => {
                tracing::debug!(target = %self.fwd.target, stream, "malformed HTTP/2 response");
                self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                return;
            }
        };
        if kind == Kind::Trailers {
            s.grpc_status = rsp.grpc_status.or(s.grpc_status);
            s.rsp.end_received = true;
            s.rsp.trailers = Some(block);
            return;
        }
        let status = rsp.status.unwrap_or(0);
        let fwd = self.fwd;
        if (100..200).contains(&status) {
            // An interim response goes on as it is.
            if end_stream || status == 101 {
                self.reset_upstream_stream(i, stream, Reason::PROTOCOL_ERROR);
                return;
            }
            send_headers(&mut self.down, s.id, &block, false);
            return;
        }
        s.status = Some(status);
        s.grpc_status = rsp.grpc_status;
        let labels = response_labels(s, Classification::Success, None);
        fwd.metrics
            .response_latency_cached(&fwd.handles, &labels, s.start);
        s.rsp.end_received = end_stream;
        send_headers(&mut self.down, s.id, &block, end_stream);
        if end_stream {
            s.rsp.end_sent = true;
            let s = &self.streams[si];
            self.record_end(s, true);
        }
    }

    /// The upstream reset a stream (or refused it): the reset goes on to
    /// the client, and a stream whose response had not begun counts as a
    /// failed request.
    fn upstream_reset(&mut self, s: Stream, reason: Reason) {
        frame::write_rst_stream(&mut self.down.wbuf, s.id, reason);
        if s.status.is_some() {
            if !s.rsp.end_sent {
                self.record_end(&s, false);
            }
        } else if reason != Reason::REFUSED_STREAM {
            let e = ProxyError::UpstreamIo {
                addr: self.fwd.target,
                source: std::io::Error::other(format!("stream reset with {reason}")),
            };
            self.record_error(&s, &e);
        }
    }

    fn reset_upstream_stream(&mut self, i: usize, stream: u32, reason: Reason) {
        let key = self.held[i].key;
        frame::write_rst_stream(&mut self.held[i].up.peer.wbuf, stream, reason);
        if let Some(si) = self.find_up(key, stream) {
            let s = self.remove(si);
            self.upstream_reset(s, Reason::INTERNAL_ERROR);
        }
    }

    /// The upstream connection failed or closed: its streams get a 502
    /// (gRPC: UNAVAILABLE) when their response had not begun, a reset
    /// otherwise.
    fn upstream_failed(&mut self, i: usize, why: &str) {
        let key = self.held[i].key;
        let mut j = 0;
        let mut answered = Vec::new();
        while j < self.streams.len() {
            if self.streams[j].up.is_some_and(|u| u.0 == key) {
                let mut s = self.remove(j);
                s.up = None;
                if s.status.is_some() {
                    frame::write_rst_stream(&mut self.down.wbuf, s.id, Reason::INTERNAL_ERROR);
                    self.record_end(&s, false);
                } else {
                    answered.push(s);
                }
            } else {
                j += 1;
            }
        }
        self.held.swap_remove(i);
        if answered.is_empty() {
            tracing::debug!(target = %self.fwd.target, error = why, "upstream HTTP/2 connection ended");
        }
        let e = ProxyError::UpstreamIo {
            addr: self.fwd.target,
            source: std::io::Error::other(why.to_string()),
        };
        for mut s in answered {
            self.answer_error(&mut s, &e);
            self.streams.push(s);
        }
        self.ensure_upstream();
    }

    fn find_up(&self, key: u32, up_id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.up == Some((key, up_id)))
    }

    // --- moving data ---

    /// Sends waiting request heads, and DATA and ends in both directions
    /// as the windows allow; gives back what was passed on; removes
    /// finished streams.
    fn flush_streams(&mut self) {
        self.ensure_upstream();
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            // The request head, once a connection takes it.
            if s.up.is_none()
                && s.head.is_some()
                && let Some(h) = self
                    .held
                    .iter_mut()
                    .find(|h| h.going_away.is_none() && h.open < h.up.peer.max_streams)
            {
                let head = s.head.take().unwrap_or_default();
                let up_id = h.up.next_id;
                h.up.next_id += 2;
                if h.up.next_id > frame::MAX_WINDOW {
                    h.going_away = Some(up_id);
                }
                h.open += 1;
                s.up = Some((h.key, up_id));
                s.req.send_window = i64::from(h.up.peer.initial_window);
                s.rsp.recv_window = i64::from(frame::DEFAULT_WINDOW);
                let end = s.req.end_received && s.req.pending.is_empty() && s.req.trailers.is_none();
                send_headers(&mut h.up.peer, up_id, &head, end);
                if end {
                    s.req.end_sent = true;
                }
            }
            // Request DATA upstream.
            if let Some((key, up_id)) = s.up
                && let Some(h) = self.held.iter_mut().find(|h| h.key == key)
            {
                let sent = flush_half(&mut s.req, &mut h.up.peer, up_id);
                give_back(&mut self.down, &mut s.req, s.id, sent);
            }
            // Response DATA to the client.
            if s.status.is_some() {
                let had_end = s.rsp.end_sent;
                let sent = flush_half(&mut s.rsp, &mut self.down, s.id);
                if let Some((key, up_id)) = s.up
                    && let Some(h) = self.held.iter_mut().find(|h| h.key == key)
                {
                    give_back(&mut h.up.peer, &mut s.rsp, up_id, sent);
                }
                if !had_end && s.rsp.end_sent {
                    let s = &self.streams[i];
                    self.record_end(s, true);
                }
            }
            let s = &self.streams[i];
            if s.rsp.end_sent && (s.req.end_sent || s.up.is_none()) {
                let s = self.remove(i);
                if !s.req.end_received {
                    // The response ended first: the client may stop sending.
                    frame::write_rst_stream(&mut self.down.wbuf, s.id, Reason::NO_ERROR);
                }
                self.end_stream_upstream(&s, Reason::CANCEL);
                continue;
            }
            i += 1;
        }
    }

    /// Returns upstream connections with no streams to the pool (or drops
    /// them when they are unfit), once they have written everything.
    fn retire(&mut self) {
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            if h.open == 0 && h.up.peer.unwritten() == 0 {
                let h = self.held.swap_remove(i);
                if h.going_away.is_none() && h.up.peer.block.is_none() {
                    self.fwd.client.lean_h2_pool().put(h.up);
                }
                continue;
            }
            i += 1;
        }
    }

    // --- answers and metrics ---

    /// Answers a stream with the proxy's error response.
    fn answer_error(&mut self, s: &mut Stream, e: &ProxyError) {
        let rsp = e.to_response(s.grpc);
        if !e.is_answer() {
            tracing::info!(direction = self.fwd.direction.as_str(), target = %self.fwd.target, error = %e, "request failed");
        }
        let mut block = Vec::with_capacity(128);
        strand_proxy_h2::hpack::Encoder::field(
            b":status",
            rsp.status().as_str().as_bytes(),
            false,
            &mut block,
        );
        for (name, value) in rsp.headers() {
            strand_proxy_h2::hpack::Encoder::field(
                name.as_str().as_bytes(),
                value.as_bytes(),
                false,
                &mut block,
            );
        }
        let code = rsp.status().as_u16();
        let body = rsp.into_body();
        s.head = None;
        s.status = Some(code);
        s.rsp.send_window = i64::from(self.down.initial_window);
        s.rsp.end_received = true;
        s.rsp.pending.extend_from_slice(&body);
        let end = body.is_empty();
        send_headers(&mut self.down, s.id, &block, end);
        s.rsp.end_sent = end;
        // The request's own end no longer matters.
        s.req.end_sent = true;
        self.record_error(s, e);
    }

    fn record_error(&self, s: &Stream, e: &ProxyError) {
        let fwd = self.fwd;
        let rsp = e.to_response(s.grpc);
        let mut labels = response_labels(s, Classification::Failure, Some(e.kind()));
        labels.status_code = Some(rsp.status().as_u16());
        labels.grpc_status = super::headers::grpc_status(rsp.headers());
        if e.is_answer() {
            labels.classification = Classification::Success;
            labels.error = None;
        }
        fwd.metrics
            .response_latency_cached(&fwd.handles, &labels, s.start);
        fwd.metrics.response_end_cached(&fwd.handles, &labels);
    }

    /// Counts a response's end, for a stream whose response head was
    /// passed on and whose end was not counted yet.
    fn record_end(&self, s: &Stream, clean: bool) {
        if s.status.is_none() || (!clean && s.rsp.end_sent) {
            return;
        }
        let failed = !clean
            || s.status.is_some_and(|c| c >= 500)
            || s.grpc_status.is_some_and(|g| g != 0);
        let class = if failed {
            Classification::Failure
        } else {
            Classification::Success
        };
        let labels = response_labels(s, class, None);
        let fwd = self.fwd;
        fwd.metrics.response_end_cached(&fwd.handles, &labels);
    }
}

/// Stop reading from a peer while this much waits to be written to it: it
/// is not reading, and answering its frames would only grow the buffer.
const WRITE_LIMIT: usize = 256 * 1024;

fn response_labels(
    s: &Stream,
    classification: Classification,
    error: Option<&'static str>,
) -> ResponseLabels {
    ResponseLabels {
        target: s.target.clone(),
        status_code: s.status,
        classification,
        grpc_status: s.grpc_status,
        error,
    }
}

/// Writes a header block (with the encoder's table-size announcement when
/// due) as HEADERS and CONTINUATION frames.
fn send_headers<T: AsyncRead + AsyncWrite + Unpin>(
    to: &mut Peer<T>,
    stream: u32,
    block: &[u8],
    end: bool,
) {
    let mut announce = Vec::new();
    to.encoder.begin(&mut announce);
    if announce.is_empty() {
        frame::write_headers(&mut to.wbuf, stream, block, end, to.max_frame);
    } else {
        announce.extend_from_slice(block);
        frame::write_headers(&mut to.wbuf, stream, &announce, end, to.max_frame);
    }
}

/// Sends what `half` holds to `to` as far as the windows allow, then its
/// trailers or end. Returns the DATA bytes sent (to give back).
fn flush_half<T: AsyncRead + AsyncWrite + Unpin>(half: &mut Half, to: &mut Peer<T>, id: u32) -> u32 {
    let mut sent = 0;
    let mut at = 0;
    while at < half.pending.len() {
        let room = half.send_window.min(to.send_window).min(i64::from(to.max_frame));
        if room <= 0 {
            break;
        }
        let n = (half.pending.len() - at).min(room as usize);
        let last = at + n == half.pending.len();
        let end = last && half.end_received && half.trailers.is_none();
        frame::write_data(&mut to.wbuf, id, &half.pending[at..at + n], end);
        at += n;
        half.send_window -= n as i64;
        to.send_window -= n as i64;
        sent += n as u32;
        if end {
            half.end_sent = true;
        }
    }
    half.pending.drain(..at);
    if half.pending.is_empty() && !half.end_sent && half.end_received {
        match half.trailers.take() {
            Some(t) => send_headers(to, id, &t, true),
            None => frame::write_data(&mut to.wbuf, id, &[], true),
        }
        half.end_sent = true;
    }
    sent
}

/// Gives `sent` bytes back to the peer they came from: on the connection
/// always, on the stream (with any padding noted) while it may send more.
fn give_back<T: AsyncRead + AsyncWrite + Unpin>(from: &mut Peer<T>, half: &mut Half, id: u32, sent: u32) {
    if sent == 0 {
        return;
    }
    from.release_recv(sent);
    if half.end_received {
        return;
    }
    half.unacked += sent;
    if half.unacked >= STREAM_UPDATE_AT {
        frame::write_window_update(&mut from.wbuf, id, half.unacked);
        half.recv_window += i64::from(half.unacked);
        half.unacked = 0;
    }
}

// === impl Upstream ===

impl Upstream {
    /// A new connection: the preface, our SETTINGS (no push) and the larger
    /// connection window go out with the first request.
    fn new(io: UpstreamIo, addr: std::net::SocketAddr, metrics: TcpConn) -> Box<Self> {
        let mut peer = Peer::new(io);
        peer.wbuf.extend_from_slice(frame::PREFACE);
        frame::Settings {
            enable_push: Some(false),
            ..Default::default()
        }
        .write(&mut peer.wbuf);
        frame::write_window_update(&mut peer.wbuf, 0, CONN_WINDOW - frame::DEFAULT_WINDOW);
        peer.recv_window = i64::from(CONN_WINDOW);
        Box::new(Upstream {
            peer,
            addr,
            _metrics: metrics,
            next_id: 1,
            idle_since: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests;
