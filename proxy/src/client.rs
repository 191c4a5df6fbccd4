//! Connections from the proxy to its targets: plain TCP connects with a
//! timeout and metrics, and pools of upstream HTTP connections (idle
//! HTTP/1 connections per target, one multiplexed HTTP/2 connection per
//! target).
//!
//! An HTTP/1 upstream connection has no task of its own: the client
//! connection that uses it drives it ([`StickyH1`]), so a request, its
//! response and both bodies never cross tasks or threads. It goes back to
//! the idle pool as soon as its response has ended, where it waits
//! unpolled until the next request to its target, on whichever client
//! connection, takes it. The pool hands out the most recently used
//! connection first, so at a moderate rate a few busy upstream connections
//! carry every request (their ACKs ride on the next request rather than
//! costing a packet each). The lean HTTP/1 path (`http::lean`) pools its
//! raw connections the same way.
//!
//! ```text
//!  client conn task ──┬─ hyper server conn ── Forward::call ─┐ try_send_request
//!                     └─ StickyH1::poll_driver ── hyper client conn ◄┘
//!  response ends ──► idle pool (per target, LIFO) ──► next request
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;

use crate::http::{RequestBody, UpstreamBody};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::errors::ProxyError;
use crate::identity::LocalIdentity;
use crate::io::{ClientIo, CountingIo, MaybeTls};
use crate::metrics::{Direction, Metrics, Peer, TcpConn, TcpLabels, Tls};

mod h2;
pub use self::h2::{H2Body, H2Conn};

/// A connection the proxy opened, with its metrics (bytes are counted
/// above TLS).
pub type UpstreamIo = CountingIo<ClientIo>;

/// Opens connections to targets for one direction of the proxy.
#[derive(Debug)]
pub struct Connector {
    pub direction: Direction,
    pub connect_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// With an identity, targets whose `tls` names a server identity are
    /// reached over mTLS.
    pub identity: Option<Arc<LocalIdentity>>,
}

/// Upstream HTTP connections shared by all client connections of one
/// direction.
#[derive(Debug)]
pub struct HttpClient {
    connector: Arc<Connector>,
    max_idle: usize,
    idle_timeout: Duration,
    h1_idle: Mutex<HashMap<SocketAddr, Vec<H1Conn>>>,
    /// Idle connections of the lean HTTP/1 path (`http::lean`).
    lean_idle: Mutex<LeanIdle>,
    /// Idle connections of the lean HTTP/2 path (`http::lean_h2`).
    lean_h2: crate::http::lean_h2::Pool,
    /// Shared HTTP/2 connections, by target and by whether they carry
    /// HTTP/1 upgraded between proxies (`l5d-orig-proto`): the two kinds
    /// never share a connection, as in Linkerd, so a server proxy can tell
    /// from a connection's first request how to serve all of it.
    h2: Mutex<HashMap<(SocketAddr, bool), H2Slot>>,
}

/// A plaintext upstream connection of the lean HTTP/1 path: raw bytes,
/// with its metrics. Taken from the pool for one request and put back
/// when its response has ended cleanly.
#[derive(Debug)]
pub struct LeanConn {
    pub io: UpstreamIo,
    addr: SocketAddr,
    _metrics: TcpConn,
    /// When its last response ended.
    idle_since: Instant,
}

/// Idle connections of the lean HTTP/1 path, most recently used first.
#[derive(Debug, Default)]
struct LeanIdle {
    /// The connection put back last: at a moderate rate to one target, the
    /// next request takes it without a lookup.
    recent: Option<Box<LeanConn>>,
    /// The others, per target, each list in the order they were put back.
    /// A list stays when it empties (the sweeper removes it), so that a
    /// connection taken and put back does not reallocate it. Boxed: a
    /// connection moves in and out once per request.
    #[expect(clippy::vec_box, reason = "moved per request; a box is one word")]
    by_target: HashMap<SocketAddr, Vec<Box<LeanConn>>>,
}

/// The HTTP/2 connection to one target. `connecting` serialises connection
/// attempts so that concurrent first requests share one connection.
#[derive(Debug, Default)]
struct H2Slot {
    tx: Option<H2Conn>,
    connecting: Arc<tokio::sync::Mutex<()>>,
}

/// An HTTP/1 upstream connection: the handle requests are sent on, and the
/// connection itself, which whoever holds it must poll.
#[derive(Debug)]
struct H1Conn {
    addr: SocketAddr,
    tx: http1::SendRequest<RequestBody>,
    conn: Pin<Box<H1Driver>>,
    /// When the last request on it started: the connection has been idle
    /// at most this long once its response ended.
    used: Instant,
    /// The connection has ended (`conn` must not be polled again).
    done: bool,
}

type H1Connection = http1::Connection<TokioIo<UpstreamIo>, RequestBody>;

/// hyper's connection future with the connection's metrics.
#[derive(Debug)]
struct H1Driver {
    conn: H1Connection,
    addr: SocketAddr,
    metrics: TcpConn,
}

/// The HTTP/1 upstream connection of one HTTP/1 client connection, driven
/// by that connection's task: requests are answered one at a time on an
/// HTTP/1 connection, so one upstream connection is enough. It is kept
/// while requests go to the same target; a request to another target
/// swaps it for a connection to that one.
#[derive(Debug)]
pub struct StickyH1 {
    client: Arc<HttpClient>,
    conn: Mutex<Option<H1Conn>>,
    /// Set when a request put a new connection in `conn`, which the task
    /// must then poll (nothing else would wake it).
    replaced: AtomicBool,
    /// Set when a response ended cleanly: once hyper has seen that end,
    /// the connection goes back to the pool rather than staying here.
    return_to_pool: AtomicBool,
}

// === impl Connector ===

impl Connector {
    /// Connects to `addr`, recording the connection as `peer="dst"`. When
    /// `tls` names a server identity (and the proxy has one), the
    /// connection is mTLS and the server must prove that identity.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tls: Tls,
    ) -> Result<(UpstreamIo, TcpConn), ProxyError> {
        self.connect_with(addr, tls, false).await
    }

    /// [`Connector::connect`] for a stream the proxy forwards as opaque TCP
    /// (`opaque`): a server proxy is told so and skips detection.
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        tls: Tls,
        opaque: bool,
    ) -> Result<(UpstreamIo, TcpConn), ProxyError> {
        let tcp = self.connect_tcp(addr).await?;
        let io = match (tls.server_id(), &self.identity) {
            (Some(id), Some(identity)) => {
                let fail = |source| ProxyError::Tls {
                    addr,
                    identity: id.clone(),
                    source,
                };
                let name = crate::identity::server_name(id).ok_or_else(|| {
                    fail(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "not a DNS-like identity",
                    ))
                })?;
                let connector =
                    tokio_rustls::TlsConnector::from(identity.client_config(opaque).clone());
                let handshake = connector.connect(name, tcp);
                let tls = match tokio::time::timeout(self.connect_timeout, handshake).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(%addr, identity = %id, error = %e, "mTLS handshake failed; refusing the connection");
                        return Err(fail(e));
                    }
                    Err(_) => {
                        return Err(fail(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no handshake within {:?}", self.connect_timeout),
                        )));
                    }
                };
                MaybeTls::Tls(Box::new(tls))
            }
            _ => MaybeTls::Plain(tcp),
        };
        let conn = self.metrics.tcp_open(TcpLabels {
            direction: self.direction,
            peer: Peer::Dst,
            target_addr: addr.to_string().into(),
            tls,
        });
        let io = CountingIo::new(io, conn.read.clone(), conn.written.clone());
        Ok((io, conn))
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> Result<TcpStream, ProxyError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
            Err(_) => {
                return Err(ProxyError::ConnectTimeout {
                    addr,
                    timeout: self.connect_timeout,
                });
            }
        };
        // Proxied requests are small and latency-sensitive; the client's own
        // Nagle behaviour (if any) already happened on its side.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

// === impl HttpClient ===

impl HttpClient {
    /// Creates the pool and starts its idle sweeper (which stops when the
    /// pool is dropped). Must be called inside a tokio runtime.
    pub fn new(connector: Arc<Connector>, max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        let client = Arc::new(HttpClient {
            connector,
            max_idle,
            idle_timeout,
            h1_idle: Mutex::default(),
            lean_idle: Mutex::default(),
            lean_h2: crate::http::lean_h2::Pool::new(max_idle, idle_timeout),
            h2: Mutex::default(),
        });
        let weak = Arc::downgrade(&client);
        // Idle connections are also checked on checkout; the sweeper closes
        // the ones nobody asks for again, so a burst does not leave its
        // connections open forever.
        let period = (idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(client) = weak.upgrade() else { return };
                client.sweep_idle();
            }
        });
        client
    }

    /// An empty pool like this one, for another worker thread (its sweeper
    /// runs on the runtime this is called in).
    pub fn sibling(&self) -> Arc<Self> {
        HttpClient::new(self.connector.clone(), self.max_idle, self.idle_timeout)
    }

    /// Drops idle HTTP/1 connections past the idle timeout or closed by
    /// their server.
    fn sweep_idle(&self) {
        self.lean_h2.sweep();
        {
            let mut lean = self.lean_idle.lock().unwrap_or_else(|e| e.into_inner());
            if lean
                .recent
                .as_mut()
                .is_some_and(|c| !c.is_usable(self.idle_timeout))
            {
                lean.recent = None;
            }
            lean.by_target.retain(|_, list| {
                list.retain_mut(|c| c.is_usable(self.idle_timeout));
                !list.is_empty()
            });
        }
        let mut idle = self.h1_idle.lock().unwrap_or_else(|e| e.into_inner());
        // Nobody polls an idle connection; polling it here (nobody needs a
        // wakeup) lets hyper read a close its server sent meanwhile.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        idle.retain(|_, list| {
            list.retain_mut(|c| c.is_fresh(self.idle_timeout) && c.poll_open(&mut cx));
            !list.is_empty()
        });
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Idle upstream connections of the lean HTTP/2 path.
    pub fn lean_h2_pool(&self) -> &crate::http::lean_h2::Pool {
        &self.lean_h2
    }

    /// A connection to `addr` for the lean HTTP/1 path: a pooled one that
    /// is still open and fresh (`true`), else a new one.
    pub async fn lean_conn(
        &self,
        addr: SocketAddr,
        tls: &Tls,
    ) -> Result<(Box<LeanConn>, bool), ProxyError> {
        loop {
            let popped = self
                .lean_idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(addr);
            match popped {
                Some(mut c) => {
                    if c.is_usable(self.idle_timeout) {
                        return Ok((c, true));
                    }
                }
                None => break,
            }
        }
        let (io, metrics) = self.connector.connect(addr, tls.clone()).await?;
        Ok((
            Box::new(LeanConn {
                io,
                addr,
                _metrics: metrics,
                idle_since: Instant::now(),
            }),
            false,
        ))
    }

    /// Pools a lean connection whose last response ended cleanly.
    pub fn release_lean(&self, mut conn: Box<LeanConn>) {
        if self.max_idle == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        self.lean_idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(conn, self.max_idle);
    }

    /// An HTTP/1 connection to `addr` for `cx`'s task to drive: an idle
    /// pooled one that is still open, else a new one (`true` when new).
    async fn h1(&self, addr: SocketAddr, tls: &Tls) -> Result<(H1Conn, bool), ProxyError> {
        while let Some(mut idle) = self.pop_idle(addr) {
            let open = std::future::poll_fn(|cx| Poll::Ready(idle.poll_open(cx))).await;
            if open && idle.is_fresh(self.idle_timeout) && idle.tx.is_ready() {
                return Ok((idle, false));
            }
        }
        Ok((self.h1_connect(addr, tls).await?, true))
    }

    /// A new HTTP/1 connection to `addr` for the caller's task to drive.
    async fn h1_connect(&self, addr: SocketAddr, tls: &Tls) -> Result<H1Conn, ProxyError> {
        let (tx, conn, metrics) = self.h1_handshake(addr, tls.clone()).await?;
        let conn = Box::pin(H1Driver {
            conn,
            addr,
            metrics,
        });
        Ok(H1Conn {
            addr,
            tx,
            conn,
            used: Instant::now(),
            done: false,
        })
    }

    /// Connects to `addr` and makes an HTTP/1 client connection on it.
    async fn h1_handshake(
        &self,
        addr: SocketAddr,
        tls: Tls,
    ) -> Result<(http1::SendRequest<RequestBody>, H1Connection, TcpConn), ProxyError> {
        let (io, metrics) = self.connector.connect(addr, tls).await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ProxyError::Handshake {
                addr,
                version: 1,
                source: source.into(),
            })?;
        Ok((tx, conn, metrics))
    }

    /// Keeps a connection for the next client connection to its target if
    /// it is idle (its last response was read to the end) and fresh; else
    /// closes it.
    fn release_if_idle(&self, conn: H1Conn) {
        if conn.done || !conn.tx.is_ready() || !conn.is_fresh(self.idle_timeout) {
            return;
        }
        let mut idle = self.h1_idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(conn.addr).or_default();
        if list.len() < self.max_idle {
            list.push(conn);
        }
    }

    /// Sends an HTTP/1 request on a pooled connection that a task of its own
    /// drives until the response has ended, then returns to the pool. For
    /// requests with no HTTP/1 client connection to drive their upstream:
    /// HTTP/1 that another proxy carried over HTTP/2 (`l5d-orig-proto`).
    pub async fn send_h1_detached(
        self: &Arc<Self>,
        addr: SocketAddr,
        tls: &Tls,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<UpstreamBody>, ProxyError> {
        let mut req = req;
        let mut fresh = false;
        loop {
            let (mut c, new) = if fresh {
                (self.h1_connect(addr, tls).await?, true)
            } else {
                self.h1(addr, tls).await?
            };
            let ready = std::future::poll_fn(|cx| {
                c.poll_open(cx);
                c.tx.poll_ready(cx)
            })
            .await;
            if let Err(source) = ready {
                if new {
                    return Err(ProxyError::Upstream { addr, source });
                }
                continue;
            }
            c.used = Instant::now();
            let sent = c.tx.try_send_request(req);
            let client = Arc::clone(self);
            tokio::spawn(async move {
                // Done once hyper wants another request (the response ended)
                // or the connection closed.
                std::future::poll_fn(|cx| {
                    if !c.poll_open(cx) || c.tx.is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                client.release_if_idle(c);
            });
            match sent.await {
                Ok(rsp) => return Ok(rsp.map(UpstreamBody::H1)),
                Err(mut e) => match e.take_message() {
                    // Closed before the request went out: once more, on a
                    // new connection.
                    Some(r) if !fresh => {
                        req = r;
                        fresh = true;
                    }
                    _ => {
                        return Err(ProxyError::Upstream {
                            addr,
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
    }

    /// A new HTTP/1 connection that supports `Upgrade` and `CONNECT`; never
    /// pooled, since after an upgrade it carries raw bytes.
    pub async fn h1_upgradable(
        &self,
        addr: SocketAddr,
        tls: &Tls,
    ) -> Result<http1::SendRequest<RequestBody>, ProxyError> {
        let (tx, c, mut metrics) = self.h1_handshake(addr, tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = c.with_upgrades().await {
                metrics.set_failed();
                tracing::debug!(%addr, error = %e, "upstream HTTP/1 connection failed");
            }
        });
        Ok(tx)
    }

    /// The shared HTTP/2 connection to `addr` for native HTTP/2 requests
    /// or (`upgraded`) for HTTP/1 carried as HTTP/2, made on first use and
    /// replaced when it closes.
    pub async fn h2(
        self: &Arc<Self>,
        addr: SocketAddr,
        tls: &Tls,
        upgraded: bool,
    ) -> Result<H2Conn, ProxyError> {
        let key = (addr, upgraded);
        let connecting = {
            let mut h2 = self.lock_h2();
            let slot = h2.entry(key).or_default();
            match &slot.tx {
                Some(tx) if !tx.is_closed() => return Ok(tx.clone()),
                _ => slot.connecting.clone(),
            }
        };
        let _connecting = connecting.lock().await;
        if let Some(tx) = self.lock_h2().get(&key).and_then(|s| s.tx.clone())
            && !tx.is_closed()
        {
            return Ok(tx);
        }
        let (io, metrics) = self.connector.connect(addr, tls.clone()).await?;
        let client = Arc::downgrade(self);
        // Forget targets whose connection is gone, so the map does not grow
        // with every address ever contacted.
        let on_close = move || {
            if let Some(client) = client.upgrade() {
                let mut h2 = client.lock_h2();
                if h2
                    .get(&key)
                    .is_some_and(|s| s.tx.as_ref().is_none_or(H2Conn::is_closed))
                {
                    h2.remove(&key);
                }
            }
        };
        let tx = h2::handshake(io, addr, metrics, on_close).await?;
        self.lock_h2().entry(key).or_default().tx = Some(tx.clone());
        Ok(tx)
    }

    /// Sends `req` on `conn` (from [`HttpClient::h2`]), or, when that
    /// connection stopped taking streams (a GOAWAY) before the request went
    /// out, on a new one.
    pub async fn send_h2(
        self: &Arc<Self>,
        conn: H2Conn,
        tls: &Tls,
        upgraded: bool,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<UpstreamBody>, ProxyError> {
        let addr = conn.addr();
        let req = match conn.send(req).await {
            Ok(rsp) => return Ok(rsp.map(UpstreamBody::H2)),
            Err(h2::SendError::Failed(e)) => return Err(e),
            Err(h2::SendError::Closed(req)) => *req,
        };
        match self.h2(addr, tls, upgraded).await?.send(req).await {
            Ok(rsp) => Ok(rsp.map(UpstreamBody::H2)),
            Err(h2::SendError::Failed(e)) => Err(e),
            Err(h2::SendError::Closed(_)) => Err(ProxyError::UpstreamIo {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the new HTTP/2 connection closed before the request went out",
                ),
            }),
        }
    }

    fn pop_idle(&self, addr: SocketAddr) -> Option<H1Conn> {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let conn = list.pop();
        if list.is_empty() {
            idle.remove(&addr);
        }
        conn
    }

    fn lock_h2(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, bool), H2Slot>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl H1Conn ===

impl H1Conn {
    /// Polls the connection; `false` once it has closed.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && self.conn.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
        !self.done
    }

    fn is_fresh(&self, idle_timeout: Duration) -> bool {
        self.used.elapsed() <= idle_timeout
    }
}

impl Future for H1Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let res = std::task::ready!(Pin::new(&mut self.conn).poll(cx));
        if let Err(e) = res {
            self.metrics.set_failed();
            tracing::debug!(addr = %self.addr, error = %e, "upstream HTTP/1 connection failed");
        }
        Poll::Ready(())
    }
}

// === impl LeanIdle ===

impl LeanIdle {
    /// The most recently put back connection to `addr`.
    fn take(&mut self, addr: SocketAddr) -> Option<Box<LeanConn>> {
        if self.recent.as_ref().is_some_and(|c| c.addr == addr) {
            return self.recent.take();
        }
        self.by_target.get_mut(&addr).and_then(Vec::pop)
    }

    /// Keeps `conn` as the most recent; the one it displaces joins its
    /// target's list unless that list already holds `max_idle`.
    fn put(&mut self, conn: Box<LeanConn>, max_idle: usize) {
        if let Some(older) = self.recent.replace(conn) {
            let list = self.by_target.entry(older.addr).or_default();
            if list.len() < max_idle {
                list.push(older);
            }
        }
    }
}

// === impl LeanConn ===

impl LeanConn {
    /// Fresh, and neither closed by its server nor holding unexpected
    /// bytes: a read that would block is the only good answer.
    fn is_usable(&mut self, idle_timeout: Duration) -> bool {
        if self.idle_since.elapsed() >= idle_timeout {
            return false;
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        matches!(
            tokio::io::AsyncRead::poll_read(Pin::new(&mut self.io), &mut cx, &mut buf),
            Poll::Pending
        )
    }
}

// === impl StickyH1 ===

impl StickyH1 {
    pub fn new(client: Arc<HttpClient>) -> Self {
        StickyH1 {
            client,
            conn: Mutex::new(None),
            replaced: AtomicBool::new(false),
            return_to_pool: AtomicBool::new(false),
        }
    }

    /// Sends `req` on this client connection's upstream connection, taking
    /// one from the pool or opening one first if needed. A pooled
    /// connection that turns out closed is replaced; a request that a
    /// connection closed under before it went out is sent once more on a
    /// new connection (hyper hands the unsent request back).
    pub async fn send(
        &self,
        addr: SocketAddr,
        tls: &Tls,
        req: http::Request<RequestBody>,
    ) -> Result<http::Response<UpstreamBody>, ProxyError> {
        let upstream = |source| ProxyError::Upstream { addr, source };
        self.ready(addr, tls, false).await?;
        match self.try_send(req).await {
            Ok(rsp) => Ok(rsp.map(UpstreamBody::H1)),
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    self.ready(addr, tls, true).await?;
                    self.try_send(req)
                        .await
                        .map(|rsp| rsp.map(UpstreamBody::H1))
                        .map_err(|e| upstream(e.into_error()))
                }
                None => Err(upstream(e.into_error())),
            },
        }
    }

    /// Waits until the upstream connection can take a request, replacing
    /// one that closed or sat idle too long (or any, with `fresh`).
    async fn ready(&self, addr: SocketAddr, tls: &Tls, fresh: bool) -> Result<(), ProxyError> {
        let mut fresh = fresh;
        loop {
            // Still here: reuse it rather than send it to the pool.
            self.return_to_pool.store(false, Ordering::Relaxed);
            let usable = {
                let mut slot = self.lock();
                if slot.as_ref().is_some_and(|c| c.addr != addr)
                    && let Some(other) = slot.take()
                {
                    self.client.release_if_idle(other);
                }
                if fresh
                    || slot
                        .as_ref()
                        .is_some_and(|c| c.done || !c.is_fresh(self.client.idle_timeout))
                {
                    *slot = None;
                }
                slot.is_some()
            };
            // A connection made for this request that cannot take it is an
            // error; a reused one is replaced.
            let mut new = false;
            if !usable {
                let (conn, is_new) = if fresh {
                    (self.client.h1_connect(addr, tls).await?, true)
                } else {
                    self.client.h1(addr, tls).await?
                };
                new = is_new;
                fresh = false;
                *self.lock() = Some(conn);
                self.replaced.store(true, Ordering::Relaxed);
            }
            let ready = std::future::poll_fn(|cx| match self.lock().as_mut() {
                Some(c) => c.tx.poll_ready(cx).map(Some),
                None => Poll::Ready(None),
            })
            .await;
            match ready {
                Some(Ok(())) => return Ok(()),
                Some(Err(source)) if new => {
                    *self.lock() = None;
                    return Err(ProxyError::Upstream { addr, source });
                }
                _ => *self.lock() = None,
            }
        }
    }

    fn try_send(
        &self,
        req: http::Request<RequestBody>,
    ) -> impl Future<
        Output = Result<
            http::Response<Incoming>,
            hyper::client::conn::TrySendError<http::Request<RequestBody>>,
        >,
    > + use<> {
        let mut slot = self.lock();
        let c = slot
            .as_mut()
            .expect("ready() left a connection in the slot");
        c.used = Instant::now();
        c.tx.try_send_request(req)
    }

    /// Drives the upstream connection; called from the client connection's
    /// task every time it is polled.
    pub fn poll_driver(&self, cx: &mut Context<'_>) {
        let mut slot = self.lock();
        if let Some(c) = slot.as_mut() {
            // A closed connection stays in the slot until the next request,
            // whose readiness check then reports hyper's error.
            let open = c.poll_open(cx);
            if self.return_to_pool.load(Ordering::Relaxed) && (!open || c.tx.is_ready()) {
                self.return_to_pool.store(false, Ordering::Relaxed);
                if let Some(conn) = slot.take() {
                    self.client.release_if_idle(conn);
                }
            }
        }
    }

    /// Called when a response on this connection ended cleanly: the
    /// connection returns to the pool as soon as hyper is ready for another
    /// request on it, so that at low concurrency a few hot connections
    /// carry all requests (as with a plain LIFO pool) instead of one per
    /// client connection.
    pub fn response_done(&self) {
        self.return_to_pool.store(true, Ordering::Relaxed);
        self.replaced.store(true, Ordering::Relaxed);
    }

    /// Whether a request put a new connection in place since the last call.
    pub fn take_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed) && self.replaced.swap(false, Ordering::Relaxed)
    }

    /// Hands an idle upstream connection back to the pool when the client
    /// connection ends; one still busy with a request is closed.
    pub fn release(&self) {
        if let Some(conn) = self.lock().take() {
            self.client.release_if_idle(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<H1Conn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}
