//! Listeners and connection handling: the part of the proxy that accepts a
//! connection, finds where it was going, detects its protocol and hands it
//! to the HTTP or TCP forwarder.
//!
//! ```text
//!  accept ─► orig dst ─► guard (loop, loopback) ─► opaque port? ─► detect
//!                                                     │              │
//!                                          tcp::forward ◄── Opaque/TLS
//!                                          http::serve_h1/h2 ◄── HTTP
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Admin};
use crate::client::{Connector, HttpClient};
use crate::config::{Config, HttpConfig, SideConfig};
use crate::detect::{self, Protocol};
use crate::discovery::{Resolver, Route};
use crate::errors::Guard;
use crate::http::{self, Forward};
use crate::identity::LocalIdentity;
use crate::io::{AsTcp, CountingIo, MaybeTls, PrefixedIo, ResetOnDrop, ServerIo};
use crate::metrics::{Direction, Metrics, NoTlsReason, Peer, PeerId, TcpLabels, Tls};
use crate::orig_dst::{self, OrigDst, SoOriginalDst};
use crate::tap::Taps;
use crate::tcp::{self, TcpError};
use crate::workers::Spread;

/// A proxy, configured but not yet listening.
pub struct Proxy {
    config: Config,
    orig_dst: Arc<dyn OrigDst>,
    allow_loopback_targets: bool,
}

/// A proxy whose listeners are bound.
pub struct Bound {
    config: Config,
    outbound: (Vec<TcpListener>, Arc<Side>),
    inbound: (Vec<TcpListener>, Arc<Side>),
    admin: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    /// The identity and the task renewing its certificate.
    identity: Option<(Arc<LocalIdentity>, tokio::task::JoinHandle<()>)>,
    /// The open taps, shared by both sides.
    taps: Arc<Taps>,
    /// The control listener (tap API), when a tap service is configured.
    control: Option<TcpListener>,
    /// Sends the spans of traced requests, when a collector is configured.
    exporter: Option<crate::trace::Exporter>,
}

/// One direction of the proxy, as one worker thread serves it.
#[derive(Clone)]
struct Side {
    direction: Direction,
    config: SideConfig,
    http: HttpConfig,
    orig_dst: Arc<dyn OrigDst>,
    metrics: Arc<Metrics>,
    client: Arc<HttpClient>,
    refuse_loopback: bool,
    /// Outbound only, when a control plane is configured.
    resolver: Option<Resolver>,
    /// The proxy's identity, when it has one: inbound terminates mesh TLS,
    /// outbound uses it to meshed endpoints.
    identity: Option<Arc<LocalIdentity>>,
    /// Inbound, opaque ports: how long to wait for a mesh ClientHello.
    opaque_tls_wait: Duration,
    taps: Arc<Taps>,
    tracer: Option<Arc<crate::trace::Tracer>>,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(config: Config) -> Self {
        Proxy {
            config,
            orig_dst: Arc::new(SoOriginalDst),
            allow_loopback_targets: false,
        }
    }

    /// Replaces `SO_ORIGINAL_DST` (tests).
    pub fn with_orig_dst(mut self, orig_dst: impl OrigDst) -> Self {
        self.orig_dst = Arc::new(orig_dst);
        self
    }

    /// Lets the outbound side connect to loopback targets, which it refuses
    /// by default as a guard against loops (tests on 127.0.0.1).
    pub fn allow_loopback_targets(mut self, allow: bool) -> Self {
        self.allow_loopback_targets = allow;
        self
    }

    /// Binds the three listeners and, with an identity configured, starts
    /// asking for a certificate. The error names the listener and address,
    /// or the identity setting at fault.
    pub async fn bind(self) -> io::Result<Bound> {
        let identity_metrics = crate::identity::IdentityMetrics::default();
        let identity = match &self.config.identity {
            Some(config) => {
                let (identity, key) = LocalIdentity::new(config).map_err(io::Error::other)?;
                let task = identity
                    .spawn_certify(config.clone(), &key, identity_metrics.clone())
                    .map_err(io::Error::other)?;
                Some((identity, task))
            }
            None => None,
        };
        let metrics = Metrics::with_identity(identity.as_ref().map(|_| &identity_metrics));
        let local_identity = identity.as_ref().map(|(i, _)| i.clone());
        let opaque_tls_wait = self
            .config
            .identity
            .as_ref()
            .map_or(Duration::ZERO, |i| i.opaque_tls_wait);
        let outbound = bind_all("outbound", &self.config.outbound.listen_addrs)?;
        let inbound = bind_all("inbound", &self.config.inbound.listen_addrs)?;
        let admin = bind("admin", self.config.admin_addr)?;
        let control = match &self.config.tap {
            Some(tap) => Some(bind("control (tap)", tap.listen_addr)?),
            None => None,
        };
        let taps = Arc::new(Taps::default());
        let (tracer, exporter) = match &self.config.trace {
            Some(trace) => {
                let (tracer, exporter) = crate::trace::Tracer::new(
                    trace,
                    metrics.trace_spans_exported.clone(),
                    metrics.trace_spans_dropped.clone(),
                )
                .map_err(io::Error::other)?;
                (Some(Arc::new(tracer)), Some(exporter))
            }
            None => (None, None),
        };
        let resolver = self.config.discovery.as_ref().map(Resolver::new);
        let side = |direction, config: &SideConfig, refuse_loopback, resolver| {
            let connector = Arc::new(Connector {
                direction,
                connect_timeout: config.connect_timeout,
                metrics: metrics.clone(),
                identity: local_identity.clone(),
            });
            Arc::new(Side {
                direction,
                config: config.clone(),
                http: self.config.http.clone(),
                orig_dst: self.orig_dst.clone(),
                metrics: metrics.clone(),
                client: HttpClient::new(
                    connector,
                    self.config.http.max_idle_per_target,
                    self.config.http.idle_timeout,
                ),
                refuse_loopback,
                resolver,
                identity: local_identity.clone(),
                opaque_tls_wait,
                taps: taps.clone(),
                tracer: tracer.clone(),
            })
        };
        let out_side = side(
            Direction::Outbound,
            &self.config.outbound,
            !self.allow_loopback_targets,
            resolver,
        );
        let in_side = side(Direction::Inbound, &self.config.inbound, false, None);
        Ok(Bound {
            outbound: (outbound, out_side),
            inbound: (inbound, in_side),
            admin,
            metrics,
            shutdown: CancellationToken::new(),
            config: self.config,
            identity,
            taps,
            control,
            exporter,
        })
    }
}

/// Binds one listener. An IPv6 wildcard is IPv6-only, so that it can sit
/// beside an IPv4 wildcard on the same port.
fn bind(name: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    let bind = || -> io::Result<TcpListener> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        sock.set_reuse_address(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        // The kernel caps this at net.core.somaxconn.
        sock.listen(4096)?;
        TcpListener::from_std(sock.into())
    };
    bind().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind the {name} listener on {addr}: {e}"),
        )
    })
}

/// Binds every address of a side; an address whose family is unavailable
/// (no IPv6 in this namespace) is skipped with a warning, as long as one
/// address binds.
fn bind_all(name: &str, addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut last_err = None;
    for &addr in addrs {
        match bind(name, addr) {
            Ok(l) => listeners.push(l),
            Err(e)
                if addr.is_ipv6() && ipv6_unavailable(&e) && addrs.iter().any(|a| a.is_ipv4()) =>
            {
                tracing::warn!(%addr, "IPv6 is not available here; not listening on {addr}");
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    if listeners.is_empty() {
        return Err(
            last_err.unwrap_or_else(|| io::Error::other(format!("no {name} listen address")))
        );
    }
    Ok(listeners)
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    strand_sys::is_address_family_unavailable(e)
}

fn addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound listener has an address"))
        .collect()
}

// === impl Bound ===

impl Bound {
    /// The first outbound listener's address.
    pub fn outbound_addr(&self) -> SocketAddr {
        addrs(&self.outbound.0)[0]
    }

    /// The first inbound listener's address.
    pub fn inbound_addr(&self) -> SocketAddr {
        addrs(&self.inbound.0)[0]
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The control (tap) listener's address, when the tap API is on.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until shutdown is requested, then stops accepting, lets open
    /// connections finish within the grace period, and returns. Connections
    /// are served on the current runtime.
    pub async fn run(self) {
        self.run_on(&[]).await
    }

    /// Like [`Bound::run`], with accepted connections spread over the
    /// current runtime and `workers` (see [`crate::workers`]): each goes to
    /// the one with the fewest open connections and stays there.
    pub async fn run_on(self, workers: &[tokio::runtime::Handle]) {
        let Bound {
            config,
            outbound,
            inbound,
            admin,
            metrics,
            shutdown,
            identity,
            taps,
            control,
            exporter,
        } = self;
        tracing::info!(
            outbound = ?addrs(&outbound.0),
            inbound = ?addrs(&inbound.0),
            admin = ?addrs(std::slice::from_ref(&admin)),
            "strand-proxy serving"
        );
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            admin,
            Arc::new(Admin {
                metrics,
                shutdown: shutdown.clone(),
                identity: identity.as_ref().map(|(i, _)| i.clone()),
            }),
            admin_stop.clone(),
        ));
        let tap_task = match (control, &config.tap, &identity) {
            (Some(listener), Some(tap), Some((identity, _))) => {
                Some(tokio::spawn(crate::tap::serve(
                    listener,
                    identity.clone(),
                    Arc::from(tap.svc_name.as_str()),
                    taps,
                    admin_stop.clone(),
                )))
            }
            _ => None,
        };
        let trace_stop = CancellationToken::new();
        let trace_task = exporter.map(|e| tokio::spawn(e.run(trace_stop.clone())));
        let tracker = TaskTracker::new();
        for (listeners, side) in [outbound, inbound] {
            let others = workers.iter().map(|h| {
                let _in = h.enter();
                (h.clone(), side.for_worker())
            });
            let spread = Arc::new(Spread::new(side.clone(), others.collect::<Vec<_>>()));
            for listener in listeners {
                tracker.spawn(accept_loop(
                    listener,
                    spread.clone(),
                    tracker.clone(),
                    shutdown.clone(),
                ));
            }
        }
        shutdown.cancelled().await;
        tracing::info!(grace_period = ?config.shutdown_grace_period, "shutting down: no new connections; draining open ones");
        tracker.close();
        if tokio::time::timeout(config.shutdown_grace_period, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "grace period expired; closing the remaining connections"
            );
        }
        // The last requests' spans go out before the proxy exits.
        trace_stop.cancel();
        if let Some(task) = trace_task {
            let flush = crate::trace::EXPORT_TIMEOUT + Duration::from_secs(1);
            if tokio::time::timeout(flush, task).await.is_err() {
                tracing::warn!("the trace collector did not take the last spans in time");
            }
        }
        admin_stop.cancel();
        let _ = admin_task.await;
        if let Some(task) = tap_task {
            let _ = task.await;
        }
        if let Some((_, task)) = identity {
            task.abort();
        }
        tracing::info!("shutdown complete");
    }
}

async fn accept_loop(
    listener: TcpListener,
    spread: Arc<Spread<Arc<Side>>>,
    tracker: TaskTracker,
    drain: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            () = drain.cancelled() => return,
        };
        let (tcp, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                let dir = spread.local().direction.as_str();
                tracing::warn!(direction = dir, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let client = orig_dst::unmap(client);
        let (worker, open) = spread.pick();
        let side = worker.serve.clone();
        let drain = drain.clone();
        let Some(runtime) = &worker.runtime else {
            tracker.spawn(async move {
                let _open = open;
                side.serve(tcp, client, drain).await
            });
            continue;
        };
        // The socket moves to the worker's event loop: its readiness is
        // then reported on the thread that serves it.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(direction = side.direction.as_str(), %client, error = %e, "cannot hand the connection to a worker; closing it");
                continue;
            }
        };
        runtime.spawn(tracker.track_future(async move {
            let _open = open;
            match TcpStream::from_std(tcp) {
                Ok(tcp) => side.serve(tcp, client, drain).await,
                Err(e) => {
                    tracing::warn!(direction = side.direction.as_str(), %client, error = %e, "cannot register the connection with its worker; closing it");
                }
            }
        }));
    }
}

// === impl Side ===

impl Side {
    /// This side for another worker thread: the same configuration and
    /// shared state, its own upstream connection pools. Call it inside the
    /// worker's runtime.
    fn for_worker(&self) -> Arc<Side> {
        Arc::new(Side {
            client: self.client.sibling(),
            ..self.clone()
        })
    }

    async fn serve(self: Arc<Self>, tcp: TcpStream, client: SocketAddr, drain: CancellationToken) {
        let dir = self.direction.as_str();
        let target = match self.orig_dst.orig_dst(&tcp) {
            Ok(a) => orig_dst::unmap(a),
            Err(e) => {
                tracing::warn!(direction = dir, %client, error = %e, "cannot read the original destination; closing (is the iptables redirect from strand-init in place?)");
                return;
            }
        };
        let blocked = self.guard(&tcp, target);
        let opaque_port = self.config.opaque_ports.contains(&target.port());
        let mut buf = BytesMut::new();
        // Inbound with an identity: a ClientHello for this proxy's name is
        // terminated here (mesh TLS); anything else goes on as it came.
        // A connection made straight to the inbound port (blocked as a loop)
        // still gets its handshake, so that a client can read this proxy's
        // certificate (`strand identity`); its requests are then refused.
        let (io, tls, sniffed, detected) = match (&self.identity, self.direction) {
            (Some(identity), Direction::Inbound) => {
                let wait = if opaque_port {
                    self.opaque_tls_wait
                } else {
                    self.config.detect_timeout
                };
                let mut tcp = tcp;
                let detected = match detect::detect(&mut tcp, &mut buf, wait).await {
                    Ok(p) => Some(p),
                    // A stall on an opaque port is just a quiet client; the
                    // bytes read so far are replayed below.
                    Err(_) if opaque_port => None,
                    Err(e) => {
                        self.metrics.protocol_error(self.direction, "detect");
                        tracing::warn!(direction = dir, %client, %target, error = %e, "closing connection: protocol detection failed");
                        return;
                    }
                };
                let for_me = matches!(&detected, Some(Protocol::Tls { sni: Some(sni) }) if **sni == **identity.name());
                if for_me {
                    match self
                        .accept_tls(identity, tcp, std::mem::take(&mut buf))
                        .await
                    {
                        Ok((io, tls)) => {
                            // The client proxy already chose not to inspect
                            // this stream.
                            let opaque = match &io {
                                MaybeTls::Tls(s) => {
                                    s.get_ref().1.alpn_protocol()
                                        == Some(crate::identity::ALPN_OPAQUE)
                                }
                                MaybeTls::Plain(_) => false,
                            };
                            (io, tls, 0, opaque.then_some(Protocol::Opaque))
                        }
                        Err(e) => {
                            self.metrics.protocol_error(self.direction, "tls");
                            tracing::warn!(direction = dir, %client, %target, error = %e, "closing connection: mTLS handshake failed");
                            return;
                        }
                    }
                } else {
                    let n = buf.len() as u64;
                    (MaybeTls::Plain(tcp), self.no_tls(), n, detected)
                }
            }
            _ => (MaybeTls::Plain(tcp), self.no_tls(), 0, None),
        };
        let target_addr: Arc<str> = target.to_string().into();
        let mut conn = self.metrics.tcp_open(TcpLabels {
            direction: self.direction,
            peer: Peer::Src,
            target_addr: target_addr.clone(),
            tls: tls.clone(),
        });
        conn.read.inc_by(sniffed);
        let mut io = CountingIo::new(io, conn.read.clone(), conn.written.clone());

        let route = match blocked {
            Some(_) => Route::Direct,
            None => Route::resolve(self.resolver.as_ref(), target).await,
        };
        let protocol = if opaque_port || route.is_opaque() {
            Protocol::Opaque
        } else if let Some(p) = detected {
            p
        } else {
            match detect::detect(&mut io, &mut buf, self.config.detect_timeout).await {
                Ok(p) => p,
                Err(e) => {
                    conn.set_failed();
                    self.metrics.protocol_error(self.direction, "detect");
                    tracing::warn!(direction = dir, %client, %target, error = %e, "closing connection: protocol detection failed");
                    return;
                }
            }
        };
        tracing::debug!(direction = dir, %client, %target, ?protocol, ?tls, "accepted");
        let io = PrefixedIo::new(buf.freeze(), io);

        match protocol {
            Protocol::Http1 | Protocol::Http2 => {
                let reset_client =
                    (protocol == Protocol::Http1).then(|| Arc::new(AtomicBool::new(false)));
                let forward = Arc::new(Forward {
                    client: self.client.clone(),
                    metrics: self.metrics.clone(),
                    target,
                    target_addr,
                    route,
                    resolver: self.resolver.clone(),
                    tls,
                    direction: self.direction,
                    blocked,
                    reset_client: reset_client.clone(),
                    handles: Default::default(),
                    taps: self.taps.clone(),
                    source: client,
                    tracer: self.tracer.clone(),
                });
                let res = if let Some(flag) = reset_client {
                    let mut io = ResetOnDrop::new(io, flag.clone());
                    let lean = if forward.lean_eligible() {
                        let mut buf = BytesMut::new();
                        let end = http::lean::serve(
                            &mut io, &mut buf, &forward, &self.http, &drain, &flag,
                        )
                        .await;
                        io.get_mut().unread(buf.freeze());
                        end
                    } else {
                        http::lean::Lean::Fallback
                    };
                    match lean {
                        http::lean::Lean::Closed => Ok(()),
                        http::lean::Lean::Fallback => {
                            http::serve_h1(io, forward, &self.http, drain).await
                        }
                    }
                } else if forward.lean_eligible() && forward.tracer.is_none() {
                    let mut io = io;
                    match http::lean_h2::serve(&mut io, &forward, &self.http, drain.clone()).await {
                        Ok(http::lean_h2::End::Closed) => Ok(()),
                        Ok(http::lean_h2::End::Fallback(read)) => {
                            io.unread(read);
                            http::serve_h2(io, forward, &self.http, drain).await
                        }
                        Err(e) => Err(e.into_serve_error()),
                    }
                } else {
                    http::serve_h2(io, forward, &self.http, drain).await
                };
                if let Err(e) = res {
                    if e.is_client_fault() {
                        conn.set_failed();
                        self.metrics.protocol_error(self.direction, e.reason);
                        tracing::warn!(direction = dir, %client, %target, reason = e.reason, error = %e.error, "closing client connection");
                    } else {
                        tracing::debug!(direction = dir, %client, %target, reason = e.reason, error = %e.error, "client connection ended");
                    }
                }
            }
            Protocol::Opaque | Protocol::Tls { .. } => {
                if let Protocol::Tls { sni } = &protocol {
                    tracing::debug!(direction = dir, %client, %target, sni = sni.as_deref().unwrap_or(""), "passing TLS through");
                }
                let mut io = io;
                let mesh = self.identity.is_some();
                let result = match (blocked, &route) {
                    (Some(guard), _) => Err(TcpError::Connect(guard.error())),
                    (None, Route::Direct) => tcp::forward(
                        &mut io,
                        target,
                        self.upstream_tls(&tls),
                        self.client.connector(),
                    )
                    .await
                    .map(|_| ()),
                    (None, Route::Meshed(meta)) => tcp::forward(
                        &mut io,
                        target,
                        crate::discovery::EndpointTls::of(meta, mesh).tls,
                        self.client.connector(),
                    )
                    .await
                    .map(|_| ()),
                    (None, Route::Failed(e)) => Err(TcpError::Connect(e.clone().into())),
                    (None, Route::Balanced(b)) => {
                        tcp::forward_balanced(&mut io, b, mesh, self.client.connector()).await
                    }
                };
                if let Err(e) = result {
                    conn.set_failed();
                    match &e {
                        TcpError::Connect(e) => {
                            tracing::info!(direction = dir, %client, %target, error = %e, "resetting client: target unreachable")
                        }
                        TcpError::Io(e) => {
                            tracing::debug!(direction = dir, %client, %target, error = %e, "opaque connection failed; resetting client")
                        }
                    }
                    // A reset tells the client the connection failed, rather
                    // than an orderly close that looks like a complete reply.
                    let _ = io.get_ref().get_ref().tcp().set_zero_linger();
                }
            }
        }
    }

    /// Terminates mesh TLS on an accepted connection whose first bytes
    /// (a ClientHello naming this proxy) are in `hello`.
    async fn accept_tls(
        &self,
        identity: &LocalIdentity,
        tcp: TcpStream,
        hello: BytesMut,
    ) -> io::Result<(ServerIo, Tls)> {
        if !identity.is_ready() {
            return Err(io::Error::other(
                "this proxy has no certificate yet (the identity service has not answered)",
            ));
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().clone());
        let handshake = acceptor.accept(PrefixedIo::new(hello.freeze(), tcp));
        let stream = tokio::time::timeout(self.config.detect_timeout, handshake)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "handshake not completed in time")
            })??;
        let client_id = crate::identity::peer_identity(stream.get_ref().1.peer_certificates());
        Ok((
            MaybeTls::Tls(Box::new(stream)),
            Tls::Established(PeerId::Client(client_id)),
        ))
    }

    /// The `tls` of a connection the proxy opens to a direct target: the
    /// inbound side keeps its client's label; outbound targets that are not
    /// services are plaintext.
    fn upstream_tls(&self, tls: &Tls) -> Tls {
        match self.direction {
            Direction::Inbound => tls.clone(),
            Direction::Outbound => self.no_tls(),
        }
    }

    /// Refuses targets that would loop back into the proxy, and (outbound)
    /// loopback targets.
    fn guard(&self, tcp: &TcpStream, target: SocketAddr) -> Option<Guard> {
        if tcp.local_addr().ok().map(orig_dst::unmap) == Some(target) {
            return Some(Guard::Loop(target));
        }
        if self.refuse_loopback && target.ip().is_loopback() {
            return Some(Guard::Loopback(target));
        }
        None
    }

    fn no_tls(&self) -> Tls {
        Tls::NoIdentity(match self.direction {
            Direction::Inbound => NoTlsReason::NoTlsFromRemote,
            Direction::Outbound => NoTlsReason::NotProvidedByServiceDiscovery,
        })
    }
}
