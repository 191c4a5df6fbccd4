//! Connections from the proxy to its targets: plain TCP connects with a
//! timeout and metrics, and pools of upstream HTTP connections (idle
//! HTTP/1 connections per target, one multiplexed HTTP/2 connection per
//! target).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::errors::ProxyError;
use crate::io::CountingIo;
use crate::metrics::{Direction, Metrics, Peer, TcpConn, TcpLabels, Tls};

/// A connection the proxy opened, with its metrics.
pub type UpstreamIo = CountingIo<TcpStream>;

/// Opens connections to targets for one direction of the proxy.
#[derive(Debug)]
pub struct Connector {
    pub direction: Direction,
    pub connect_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Upstream HTTP connections shared by all client connections of one
/// direction.
#[derive(Debug)]
pub struct HttpClient {
    connector: Arc<Connector>,
    max_idle: usize,
    idle_timeout: Duration,
    h1_idle: Mutex<HashMap<SocketAddr, Vec<IdleH1>>>,
    h2: Mutex<HashMap<SocketAddr, H2Slot>>,
}

/// The HTTP/2 connection to one target. `connecting` serialises connection
/// attempts so that concurrent first requests share one connection.
#[derive(Debug, Default)]
struct H2Slot {
    tx: Option<http2::SendRequest<Incoming>>,
    connecting: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct IdleH1 {
    tx: http1::SendRequest<Incoming>,
    since: Instant,
}

/// Returns an HTTP/1 connection to the pool once its response is complete.
#[derive(Debug)]
pub struct Checkin {
    client: Arc<HttpClient>,
    addr: SocketAddr,
    tx: http1::SendRequest<Incoming>,
}

// === impl Connector ===

impl Connector {
    /// Connects to `addr`, recording the connection as `peer="dst"`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tls: Tls,
    ) -> Result<(UpstreamIo, TcpConn), ProxyError> {
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
        let conn = self.metrics.tcp_open(TcpLabels {
            direction: self.direction,
            peer: Peer::Dst,
            target_addr: addr.to_string().into(),
            tls,
        });
        let io = CountingIo::new(tcp, conn.read.clone(), conn.written.clone());
        Ok((io, conn))
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

    /// Drops idle HTTP/1 connections past the idle timeout or closed by
    /// their server.
    fn sweep_idle(&self) {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| !c.tx.is_closed() && c.since.elapsed() <= self.idle_timeout);
            !list.is_empty()
        });
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A ready HTTP/1 connection to `addr`: an idle pooled one, or a new one.
    pub async fn h1(self: &Arc<Self>, addr: SocketAddr, tls: &Tls) -> Result<Checkin, ProxyError> {
        while let Some(mut idle) = self.pop_idle(addr) {
            if idle.tx.is_closed() || idle.since.elapsed() > self.idle_timeout {
                continue;
            }
            // A pooled connection finished its last response; `ready` only
            // waits for hyper to notice that.
            if idle.tx.ready().await.is_ok() {
                return Ok(Checkin {
                    client: self.clone(),
                    addr,
                    tx: idle.tx,
                });
            }
        }
        let tx = self.connect_h1(addr, tls.clone(), false).await?;
        Ok(Checkin {
            client: self.clone(),
            addr,
            tx,
        })
    }

    /// A new HTTP/1 connection that supports `Upgrade` and `CONNECT`; never
    /// pooled, since after an upgrade it carries raw bytes.
    pub async fn h1_upgradable(
        &self,
        addr: SocketAddr,
        tls: &Tls,
    ) -> Result<http1::SendRequest<Incoming>, ProxyError> {
        self.connect_h1(addr, tls.clone(), true).await
    }

    async fn connect_h1(
        &self,
        addr: SocketAddr,
        tls: Tls,
        upgrades: bool,
    ) -> Result<http1::SendRequest<Incoming>, ProxyError> {
        let (io, conn) = self.connector.connect(addr, tls).await?;
        let (tx, c) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ProxyError::Handshake {
                addr,
                version: 1,
                source,
            })?;
        tokio::spawn(async move {
            let mut conn = conn;
            let res = if upgrades {
                c.with_upgrades().await
            } else {
                c.await
            };
            if let Err(e) = res {
                conn.set_failed();
                tracing::debug!(%addr, error = %e, "upstream HTTP/1 connection failed");
            }
        });
        Ok(tx)
    }

    /// The shared HTTP/2 connection to `addr`, made on first use and
    /// replaced when it closes.
    pub async fn h2(
        self: &Arc<Self>,
        addr: SocketAddr,
        tls: &Tls,
    ) -> Result<http2::SendRequest<Incoming>, ProxyError> {
        let connecting = {
            let mut h2 = self.lock_h2();
            let slot = h2.entry(addr).or_default();
            match &slot.tx {
                Some(tx) if !tx.is_closed() => return Ok(tx.clone()),
                _ => slot.connecting.clone(),
            }
        };
        let _connecting = connecting.lock().await;
        if let Some(tx) = self.lock_h2().get(&addr).and_then(|s| s.tx.clone())
            && !tx.is_closed()
        {
            return Ok(tx);
        }
        let (io, mut conn) = self.connector.connect(addr, tls.clone()).await?;
        let (tx, c) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // Detect dead peers on long-lived multiplexed connections.
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ProxyError::Handshake {
                addr,
                version: 2,
                source,
            })?;
        let client = Arc::downgrade(self);
        tokio::spawn(async move {
            if let Err(e) = c.await {
                conn.set_failed();
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection failed");
            }
            // Forget targets whose connection is gone, so the map does not
            // grow with every address ever contacted.
            if let Some(client) = client.upgrade() {
                let mut h2 = client.lock_h2();
                if h2
                    .get(&addr)
                    .is_some_and(|s| s.tx.as_ref().is_none_or(|tx| tx.is_closed()))
                {
                    h2.remove(&addr);
                }
            }
        });
        self.lock_h2().entry(addr).or_default().tx = Some(tx.clone());
        Ok(tx)
    }

    fn pop_idle(&self, addr: SocketAddr) -> Option<IdleH1> {
        let mut idle = self.h1_idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let conn = list.pop();
        if list.is_empty() {
            idle.remove(&addr);
        }
        conn
    }

    fn lock_h2(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, H2Slot>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Checkin ===

impl Checkin {
    pub fn sender(&mut self) -> &mut http1::SendRequest<Incoming> {
        &mut self.tx
    }

    /// Puts the connection back into the pool (called when the response
    /// body has ended cleanly).
    pub fn release(self) {
        if self.tx.is_closed() {
            return;
        }
        let mut idle = self
            .client
            .h1_idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(self.addr).or_default();
        if list.len() < self.client.max_idle {
            list.push(IdleH1 {
                tx: self.tx,
                since: Instant::now(),
            });
        }
    }
}
