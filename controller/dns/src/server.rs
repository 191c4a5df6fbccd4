//! The sockets: one UDP socket and one TCP listener on the same address.
//!
//! In-zone answers are computed inline on the receive path (a trait call
//! and an encode); forwarded queries each get a task, bounded by a
//! semaphore shared by both transports. TCP connections are served one
//! message at a time, each connection in its own task.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_proto::op::{Message, ResponseCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::timeout,
};

use crate::{
    Config, Records,
    answer::{self, Action, Responder, Transport},
    forward,
};

/// A bound DNS server; [`Server::run`] serves it.
pub struct Server {
    local: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

/// Counters since the server was bound, for the control plane's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received: UDP datagrams and TCP frames, good or bad.
    pub queries: u64,
    /// In-zone queries answered NOERROR, with addresses or without (NODATA).
    pub answered: u64,
    /// In-zone queries answered NXDOMAIN.
    pub nxdomain: u64,
    /// Queries relayed from an upstream.
    pub forwarded: u64,
    /// Queries REFUSED: outside the zone with no upstream, or not class IN.
    pub refused: u64,
    /// Queries answered SERVFAIL: no upstream answered in time, or too
    /// many forwarded queries were already in flight.
    pub servfail: u64,
    /// Messages dropped as garbage or answered FORMERR, NOTIMP or BADVERS.
    pub malformed: u64,
}

/// Reads a running server's [`Stats`]; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    answered: AtomicU64,
    nxdomain: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    servfail: AtomicU64,
    malformed: AtomicU64,
}

/// What every socket task needs.
struct Shared {
    responder: Responder,
    upstreams: Vec<SocketAddr>,
    forward_timeout: Duration,
    forwards: Arc<Semaphore>,
    max_tcp_connections: usize,
    tcp_idle_timeout: Duration,
    stats: StatsHandle,
}

/// What to send back for one message.
enum Step {
    Reply(Vec<u8>),
    Forward(Message, OwnedSemaphorePermit),
    Drop,
}

/// With port 0, how many times to look for a port free for both UDP and
/// TCP: a collision needs another process to take the TCP port in the
/// instant between the two binds, so a few tries are plenty.
const BIND_ATTEMPTS: usize = 16;

/// Pause after a failed accept (usually EMFILE) so the loop does not spin
/// while file descriptors are exhausted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Client queries are small; a larger datagram is cut and then fails to
/// parse, which is the right outcome for it.
const UDP_QUERY_BUFFER: usize = 4096;

// === impl Server ===

impl Server {
    /// Binds UDP and TCP on `addr`. With port 0, both get the same port.
    pub async fn bind(
        addr: SocketAddr,
        config: Config,
        records: Arc<dyn Records>,
    ) -> io::Result<Server> {
        let (udp, tcp) = bind_pair(addr).await?;
        let local = udp.local_addr()?;
        let upstreams: Vec<_> = (config.upstreams.iter().copied())
            .filter(|upstream| {
                let own = *upstream == local
                    || (local.ip().is_unspecified()
                        && upstream.ip().is_loopback()
                        && upstream.port() == local.port());
                if own {
                    tracing::warn!(%upstream, "ignoring an upstream that is this server");
                }
                !own
            })
            .collect();
        let responder = Responder::new(
            config.zone,
            secs(config.ttl),
            secs(config.negative_ttl),
            records,
            !upstreams.is_empty(),
        );
        let shared = Shared {
            responder,
            upstreams,
            forward_timeout: config.forward_timeout,
            forwards: Arc::new(Semaphore::new(
                config.max_forwards.min(Semaphore::MAX_PERMITS),
            )),
            max_tcp_connections: config.max_tcp_connections,
            tcp_idle_timeout: config.tcp_idle_timeout,
            stats: StatsHandle::default(),
        };
        Ok(Server {
            local,
            udp,
            tcp,
            shared: Arc::new(shared),
        })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle on the counters, valid after `run` takes the server.
    pub fn stats(&self) -> StatsHandle {
        self.shared.stats.clone()
    }

    /// Serves until `shutdown` completes, then closes the sockets and
    /// abandons queries and connections in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            udp, tcp, shared, ..
        } = self;
        tokio::select! {
            () = shutdown => tracing::debug!("DNS server shutting down"),
            () = serve_udp(Arc::new(udp), shared.clone()) => {}
            () = serve_tcp(tcp, shared) => {}
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        let same = SocketAddr::new(addr.ip(), udp.local_addr()?.port());
        match TcpListener::bind(same).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts < BIND_ATTEMPTS => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0; UDP_QUERY_BUFFER];
    let mut forwards = JoinSet::new();
    loop {
        let (n, client) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "UDP receive failed");
                    continue;
                }
            },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let query = &buf[..n];
        let reply = match shared.step(query, Transport::Udp) {
            Step::Reply(reply) => reply,
            Step::Drop => continue,
            Step::Forward(request, permit) => {
                let (socket, shared, query) = (socket.clone(), shared.clone(), query.to_vec());
                forwards.spawn(async move {
                    let reply = shared.forward(&request, &query, Transport::Udp).await;
                    drop(permit);
                    send_udp(&socket, reply, client).await;
                });
                continue;
            }
        };
        send_udp(&socket, Some(reply), client).await;
    }
}

async fn send_udp(socket: &UdpSocket, reply: Option<Vec<u8>>, client: SocketAddr) {
    if let Some(reply) = reply
        && let Err(error) = socket.send_to(&reply, client).await
    {
        tracing::debug!(%client, %error, "UDP send failed");
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) if connections.len() < shared.max_tcp_connections => {
                    connections.spawn(serve_connection(stream, client, shared.clone()));
                }
                Ok((_, client)) => tracing::debug!(%client, "too many TCP connections; closing"),
                Err(error) => {
                    tracing::warn!(%error, "TCP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves queries on one connection in order, until the client closes it,
/// idles past the timeout, or sends something unparseable (after which
/// the framing cannot be trusted).
async fn serve_connection(mut stream: TcpStream, client: SocketAddr, shared: Arc<Shared>) {
    let idle = shared.tcp_idle_timeout;
    loop {
        let Ok(Ok(len)) = timeout(idle, stream.read_u16()).await else {
            return;
        };
        // At most 64 KiB per connection, bounded by the connection cap.
        let mut query = vec![0; usize::from(len)];
        let Ok(Ok(_)) = timeout(idle, stream.read_exact(&mut query)).await else {
            tracing::debug!(%client, "TCP client closed or stalled mid-message");
            return;
        };
        let reply = match shared.step(&query, Transport::Tcp) {
            Step::Reply(reply) => Some(reply),
            Step::Forward(request, permit) => {
                let reply = shared.forward(&request, &query, Transport::Tcp).await;
                drop(permit);
                reply
            }
            Step::Drop => return,
        };
        let Some(reply) = reply else { return };
        let Ok(framed) = forward::framed(&reply) else {
            return;
        };
        // A client that does not read its answers must not pin the task.
        if !matches!(timeout(idle, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

// === impl Shared ===

impl Shared {
    /// Decides on `query`, encodes local answers, and reserves a forwarding
    /// slot (or answers SERVFAIL when none is free). Counts the outcome.
    fn step(&self, query: &[u8], transport: Transport) -> Step {
        let stats = &self.stats.0;
        stats.queries.fetch_add(1, Ordering::Relaxed);
        let reply = match self.responder.handle(query) {
            Action::Drop => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                return Step::Drop;
            }
            Action::Reply(reply) => reply,
            Action::Forward(request) => match self.forwards.clone().try_acquire_owned() {
                Ok(permit) => return Step::Forward(request, permit),
                Err(_) => {
                    tracing::debug!("too many forwarded queries in flight");
                    self.responder.reply(&request, ResponseCode::ServFail)
                }
            },
        };
        stats.count(reply.message.response_code);
        match reply.encode(transport) {
            Some(bytes) => Step::Reply(bytes),
            None => Step::Drop,
        }
    }

    /// Relays `query` upstream; SERVFAIL if no upstream answers, a
    /// truncated reply if the answer is too big for the client.
    async fn forward(
        &self,
        request: &Message,
        query: &[u8],
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let stats = &self.stats.0;
        match forward::exchange(&self.upstreams, query, transport, self.forward_timeout).await {
            Ok(answer) => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                if answer.len() <= answer::size_limit(request, transport) {
                    return Some(answer);
                }
                let mut truncated = self.responder.reply(request, ResponseCode::NoError);
                truncated.message.metadata.truncation = true;
                truncated.encode(transport)
            }
            Err(error) => {
                tracing::debug!(%error, "forwarding failed");
                stats.servfail.fetch_add(1, Ordering::Relaxed);
                let reply = self.responder.reply(request, ResponseCode::ServFail);
                reply.encode(transport)
            }
        }
    }
}

// === impl StatsHandle ===

impl StatsHandle {
    /// The counters as of now.
    pub fn snapshot(&self) -> Stats {
        let c = &self.0;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            queries: get(&c.queries),
            answered: get(&c.answered),
            nxdomain: get(&c.nxdomain),
            forwarded: get(&c.forwarded),
            refused: get(&c.refused),
            servfail: get(&c.servfail),
            malformed: get(&c.malformed),
        }
    }
}

// === impl Counters ===

impl Counters {
    fn count(&self, code: ResponseCode) {
        let counter = match code {
            ResponseCode::NoError => &self.answered,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::ServFail => &self.servfail,
            _ => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
