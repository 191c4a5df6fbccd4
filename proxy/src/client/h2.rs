//! Upstream HTTP/2 connections, on the `h2` crate directly.
//!
//! A request's headers and the part of its body already at hand are queued
//! on the stream together, before the connection's task next writes: they
//! leave in one write (one packet, and over mTLS one TLS record). A client
//! that waits for send capacity before the first DATA frame, as hyper's
//! does, cannot get any until the connection task has opened the stream,
//! so its HEADERS always leave alone. The rest of a streaming body follows
//! as the stream's window allows, from a task of its own.
//!
//! ```text
//!  send ── HEADERS + first DATA queued ──► connection task: one write
//!   └─ body not ended: Pipe task ── DATA as the window allows
//!  keep-alive task ── PING every 10 s while streams are open; no PONG
//!                     within 10 s aborts the connection
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::errors::ProxyError;
use crate::http::RequestBody;
use crate::metrics::TcpConn;

/// How often a connection with open streams is pinged, and how long its
/// peer has to answer before the connection is dropped.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What the proxy's end of a connection advertises (the same as hyper's
/// client defaults, which this replaces).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams opened before the server's SETTINGS say how many it takes
/// (h2's own default is unlimited). RFC 9113 §6.5.2 recommends servers
/// allow at least 100, and the proxy's inbound announces exactly 100, so
/// a burst at connection start is never refused.
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// A handle on one upstream HTTP/2 connection; clones share it.
#[derive(Clone, Debug)]
pub struct H2Conn {
    tx: h2::client::SendRequest<Bytes>,
    shared: Arc<Shared>,
    addr: SocketAddr,
}

#[derive(Debug, Default)]
struct Shared {
    /// The connection ended, or takes no new streams (GOAWAY).
    closed: AtomicBool,
    /// Streams whose response has not ended: the connection is pinged
    /// only while there are some.
    open: AtomicUsize,
}

/// Why [`H2Conn::send`] did not send.
#[derive(Debug)]
pub enum SendError {
    /// The connection takes no new streams; the request, untouched, can
    /// go on another connection.
    Closed(Box<Request<RequestBody>>),
    Failed(ProxyError),
}

/// Makes an HTTP/2 client connection on `io` and starts its task.
/// `on_close` runs when the connection has ended.
pub async fn handshake<I>(
    io: I,
    addr: SocketAddr,
    metrics: TcpConn,
    on_close: impl FnOnce() + Send + 'static,
) -> Result<H2Conn, ProxyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| ProxyError::Handshake {
            addr,
            version: 2,
            source: e.into(),
        })?;
    let shared = Arc::new(Shared::default());
    let ping = conn.ping_pong();
    let ended = Ended {
        shared: shared.clone(),
        metrics,
        failed: true,
        on_close: Some(Box::new(on_close)),
    };
    let task = tokio::spawn(async move {
        let mut ended = ended;
        match conn.await {
            Ok(()) => ended.failed = false,
            Err(e) => tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection failed"),
        }
    });
    if let Some(ping) = ping {
        tokio::spawn(keep_alive(ping, shared.clone(), task.abort_handle(), addr));
    }
    Ok(H2Conn { tx, shared, addr })
}

/// Pings the connection every [`KEEP_ALIVE`] while it has open streams,
/// and aborts its task (failing those streams) when a ping goes
/// unanswered, so that requests do not wait on a peer that is gone.
async fn keep_alive(
    mut ping: h2::PingPong,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
    addr: SocketAddr,
) {
    loop {
        tokio::time::sleep(KEEP_ALIVE).await;
        if task.is_finished() {
            return;
        }
        if shared.open.load(Ordering::Relaxed) == 0 {
            continue;
        }
        if ping.send_ping(h2::Ping::opaque()).is_err() {
            return;
        }
        match tokio::time::timeout(KEEP_ALIVE, std::future::poll_fn(|cx| ping.poll_pong(cx))).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!(%addr, "upstream HTTP/2 connection did not answer a ping within {KEEP_ALIVE:?}; closing it");
                task.abort();
                return;
            }
        }
    }
}

/// Runs when the connection's task ends (or is aborted): marks the
/// connection closed, records how it ended and tells the pool.
struct Ended {
    shared: Arc<Shared>,
    metrics: TcpConn,
    failed: bool,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if self.failed {
            self.metrics.set_failed();
        }
        if let Some(f) = self.on_close.take() {
            f();
        }
    }
}

// === impl H2Conn ===

impl H2Conn {
    /// Whether the connection can no longer take requests.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `req` and waits for the response's head. Hop-by-hop fields
    /// must be gone already (`Forward::call_with` strips them from every
    /// request): h2 refuses a request that has them.
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<H2Body>, SendError> {
        let addr = self.addr;
        let failed = |source| SendError::Failed(ProxyError::UpstreamH2 { addr, source });
        // A fresh handle has no stream waiting to open, so this does not
        // wait: it fails only once the connection has failed or received
        // a GOAWAY, before anything of the request was sent.
        let mut tx = self.tx.clone();
        let ready = tx.poll_ready(&mut Context::from_waker(Waker::noop()));
        match ready {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {
                self.shared.closed.store(true, Ordering::Release);
                return Err(SendError::Closed(Box::new(req)));
            }
            Poll::Pending => {
                std::future::poll_fn(|cx| tx.poll_ready(cx))
                    .await
                    .map_err(failed)?;
            }
        }
        let (mut head, body) = req.into_parts();
        if let Some(len) = body.size_hint().exact()
            && (len != 0 || !matches!(head.method, Method::GET | Method::HEAD | Method::DELETE))
        {
            head.headers
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(len));
        }
        let eos = body.is_end_stream();
        let open = Open::new(&self.shared);
        let (response, send) = tx
            .send_request(Request::from_parts(head, ()), eos)
            .map_err(failed)?;
        let mut cancel = None;
        if !eos {
            let mut pipe = Pipe {
                body,
                send,
                cancel: None,
                sent: false,
            };
            // Usually the body's first frame is here already: queued now,
            // it leaves with the headers.
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut pipe).poll(cx).is_pending()))
                    .await;
            if pending {
                // The client going away (the response future or body
                // dropped) resets a stream whose body is still streaming.
                let (tx, rx) = oneshot::channel();
                pipe.cancel = Some(rx);
                cancel = Some(tx);
                tokio::spawn(pipe);
            }
        }
        let rsp = response.await.map_err(failed)?;
        let remaining = rsp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(rsp.map(|recv| H2Body {
            recv,
            remaining,
            data_done: false,
            _open: open,
            _cancel: cancel,
        }))
    }
}

/// Counts a stream as open (for keep-alive) while alive.
#[derive(Debug)]
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends a request's body on its stream: each frame as it arrives, but
/// (after the first) only once the stream has window for it, so the
/// proxy holds at most one frame more than the peer allows.
struct Pipe {
    body: RequestBody,
    send: h2::SendStream<Bytes>,
    /// Fires (or is dropped) when nobody waits for the response any more.
    cancel: Option<oneshot::Receiver<()>>,
    /// A DATA frame was sent.
    sent: bool,
}

impl Future for Pipe {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        loop {
            if let Some(c) = &mut me.cancel
                && Pin::new(c).poll(cx).is_ready()
            {
                me.send.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(());
            }
            // The server reset the stream (or answered and closed it).
            if me.send.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            // The first frame goes without waiting (the stream has no
            // window before it opens); later ones once what was sent
            // before has window and one byte more.
            if me.sent {
                me.send.reserve_capacity(1);
                if me.send.capacity() == 0 {
                    match std::task::ready!(me.send.poll_capacity(cx)) {
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            }
            let frame = match std::task::ready!(Pin::new(&mut me.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "request body failed; resetting the upstream stream");
                    me.send.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(());
                }
                None => {
                    let _ = me.send.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    me.sent = true;
                    let eos = me.body.is_end_stream();
                    if me.send.send_data(data, eos).is_err() || eos {
                        return Poll::Ready(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = me.send.send_trailers(trailers);
                    }
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// A response body from an HTTP/2 upstream connection. Window is given
/// back as the data is read, so the peer sends as fast as the client
/// downstream reads.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    /// The bytes `content-length` says are still to come.
    remaining: Option<u64>,
    data_done: bool,
    _open: Open,
    _cancel: Option<oneshot::Sender<()>>,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let me = self.get_mut();
        if !me.data_done {
            match std::task::ready!(me.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = me.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = &mut me.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => me.data_done = true,
            }
        }
        match std::task::ready!(me.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests;
