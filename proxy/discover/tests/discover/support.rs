//! A fake control plane: a real tonic server serving `OutboundPolicies` and
//! `Destination` on 127.0.0.1, in its own runtime on its own thread so that
//! killing it closes every connection the way a process exit does. Each
//! call is handed to the test, which answers (or not) through [`Call`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use linkerd2_proxy_api::destination::{
    DestinationProfile, GetDestination, Update,
    destination_server::{Destination, DestinationServer},
};
use linkerd2_proxy_api::outbound::{
    OutboundPolicy, TrafficSpec,
    outbound_policies_server::{OutboundPolicies, OutboundPoliciesServer},
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::codegen::{BoxFuture, Service};
use tonic::{Request, Response, Status};

/// How long a test waits for something that should happen: 10 s unless
/// `STRAND_TEST_PATIENCE_MS` says otherwise (the testkit's variable).
pub fn patience() -> Duration {
    std::env::var("STRAND_TEST_PATIENCE_MS")
        .ok()
        .map(|v| Duration::from_millis(v.parse().expect("STRAND_TEST_PATIENCE_MS is a number")))
        .unwrap_or(Duration::from_secs(10))
}

/// Awaits `fut`, failing the test if it takes longer than [`patience`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let patience = patience();
    tokio::time::timeout(patience, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {patience:?}"))
}

/// Calls seen by one server instance.
#[derive(Debug, Default)]
pub struct Stats {
    pub watch_calls: AtomicUsize,
    pub get_calls: AtomicUsize,
    /// Response streams the server is currently sending on.
    pub active_watches: AtomicUsize,
    pub active_gets: AtomicUsize,
    /// Calls the fake does not serve (`OutboundPolicies/Get`).
    pub unexpected: AtomicUsize,
    /// `Destination/GetProfile` calls, answered `Unimplemented` (no
    /// profiles: the client goes on without one).
    pub profiles: AtomicUsize,
}

/// A running fake; killed when dropped.
pub struct ControlPlane {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    watches: mpsc::UnboundedReceiver<Call<TrafficSpec, OutboundPolicy>>,
    gets: mpsc::UnboundedReceiver<Call<GetDestination, Update>>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One server-streaming call, held by the test. The server's handler waits
/// until the test [`send`](Call::send)s (response headers go out then) or
/// [`reject`](Call::reject)s; dropping the `Call` ends the stream cleanly.
pub struct Call<Req, Rsp> {
    pub request: Req,
    start: Option<oneshot::Sender<Result<(), Status>>>,
    tx: mpsc::UnboundedSender<Result<Rsp, Status>>,
}

/// The response stream; counts itself in a `Stats` gauge while alive.
pub struct CallStream<T> {
    rx: mpsc::UnboundedReceiver<Result<T, Status>>,
    active: Arc<Stats>,
    gauge: fn(&Stats) -> &AtomicUsize,
}

#[derive(Clone)]
struct Fake {
    watches: mpsc::UnboundedSender<Call<TrafficSpec, OutboundPolicy>>,
    gets: mpsc::UnboundedSender<Call<GetDestination, Update>>,
    stats: Arc<Stats>,
}

/// Both services on one port (tonic's router needs a feature we do not
/// build with).
#[derive(Clone)]
struct Mux {
    policy: OutboundPoliciesServer<Fake>,
    destination: DestinationServer<Fake>,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts on an ephemeral port.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (SO_REUSEADDR, so a killed instance's port can be
    /// bound again at once).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let (watch_tx, watches) = mpsc::unbounded_channel();
        let (get_tx, gets) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let fake = Fake {
            watches: watch_tx,
            gets: get_tx,
            stats: stats.clone(),
        };
        let (kill, killed) = oneshot::channel();
        let (bound_tx, bound) = oneshot::channel();
        let thread = std::thread::spawn(move || serve(addr, fake, bound_tx, killed));
        let addr = within("the fake binds", bound)
            .await
            .expect("the server thread reports its address")
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        Self {
            addr,
            stats,
            watches,
            gets,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    pub async fn next_watch(&mut self) -> Call<TrafficSpec, OutboundPolicy> {
        within("an OutboundPolicies/Watch call", self.watches.recv())
            .await
            .expect("the server is running")
    }

    pub async fn next_get(&mut self) -> Call<GetDestination, Update> {
        within("a Destination/Get call", self.gets.recv())
            .await
            .expect("the server is running")
    }

    /// Fails unless every call so far was taken by the test.
    pub fn assert_no_more_calls(&mut self) {
        assert!(self.watches.try_recv().is_err(), "an unexpected Watch call");
        assert!(self.gets.try_recv().is_err(), "an unexpected Get call");
        assert_eq!(self.stats.unexpected.load(Ordering::SeqCst), 0);
    }

    pub fn count(&self, gauge: fn(&Stats) -> &AtomicUsize) -> usize {
        gauge(&self.stats).load(Ordering::SeqCst)
    }

    /// Stops the server's runtime, closing every connection, and waits for
    /// it to be gone.
    pub async fn kill(mut self) {
        self.kill.take();
        let thread = self.thread.take().expect("running");
        within(
            "the fake stops",
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("join")
        .expect("the server thread does not panic");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The thread ends on its own once `kill` is dropped.
        self.kill.take();
    }
}

fn serve(
    addr: SocketAddr,
    fake: Fake,
    bound: oneshot::Sender<std::io::Result<SocketAddr>>,
    killed: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the fake");
    rt.block_on(async move {
        let listener = match listen(addr) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = bound.send(Err(e));
                return;
            }
        };
        let _ = bound.send(listener.local_addr());
        let svc = Mux {
            policy: OutboundPoliciesServer::new(fake.clone()),
            destination: DestinationServer::new(fake),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder().serve_with_incoming(svc, incoming);
        tokio::select! {
            res = server => res.expect("the fake serves"),
            _ = killed => {}
        }
    });
    // Dropping the runtime drops every connection task: the client sees
    // its connection close, as when a control-plane process dies.
    drop(rt);
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

/// Hands a call to the test and waits for its decision.
async fn serve_call<Req, Rsp>(
    calls: &mpsc::UnboundedSender<Call<Req, Rsp>>,
    request: Req,
    stats: &Arc<Stats>,
    gauge: fn(&Stats) -> &AtomicUsize,
) -> Result<Response<CallStream<Rsp>>, Status> {
    let (start, started) = oneshot::channel();
    let (tx, rx) = mpsc::unbounded_channel();
    calls
        .send(Call {
            request,
            start: Some(start),
            tx,
        })
        .map_err(|_| Status::internal("the test is gone"))?;
    match started.await {
        Ok(Ok(())) => {
            gauge(stats).fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(CallStream {
                rx,
                active: stats.clone(),
                gauge,
            }))
        }
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::unavailable("the test dropped the call")),
    }
}

// === impl Call ===

impl<Req, Rsp> Call<Req, Rsp> {
    /// Answers the call with an error status (no stream).
    pub fn reject(mut self, status: Status) {
        if let Some(start) = self.start.take() {
            let _ = start.send(Err(status));
        }
    }

    /// Sends one message, starting the stream if needed.
    pub fn send(&mut self, msg: Rsp) {
        if let Some(start) = self.start.take() {
            let _ = start.send(Ok(()));
        }
        let _ = self.tx.send(Ok(msg));
    }

    /// Starts the stream and ends it with `status`.
    pub fn fail(&mut self, status: Status) {
        if let Some(start) = self.start.take() {
            let _ = start.send(Ok(()));
        }
        let _ = self.tx.send(Err(status));
    }

    /// Resolves once the server dropped the stream: the client cancelled
    /// it, or the server died.
    pub async fn cancelled(&self) {
        self.tx.closed().await;
    }
}

// === impl CallStream ===

impl<T> Stream for CallStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for CallStream<T> {
    fn drop(&mut self) {
        (self.gauge)(&self.active).fetch_sub(1, Ordering::SeqCst);
    }
}

// === impl Fake ===

#[tonic::async_trait]
impl OutboundPolicies for Fake {
    async fn get(&self, _: Request<TrafficSpec>) -> Result<Response<OutboundPolicy>, Status> {
        self.stats.unexpected.fetch_add(1, Ordering::SeqCst);
        Err(Status::unimplemented("the fake serves Watch only"))
    }

    type WatchStream = CallStream<OutboundPolicy>;

    async fn watch(
        &self,
        req: Request<TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.stats.watch_calls.fetch_add(1, Ordering::SeqCst);
        serve_call(&self.watches, req.into_inner(), &self.stats, |s| {
            &s.active_watches
        })
        .await
    }
}

#[tonic::async_trait]
impl Destination for Fake {
    type GetStream = CallStream<Update>;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        self.stats.get_calls.fetch_add(1, Ordering::SeqCst);
        serve_call(&self.gets, req.into_inner(), &self.stats, |s| {
            &s.active_gets
        })
        .await
    }

    type GetProfileStream = CallStream<DestinationProfile>;

    async fn get_profile(
        &self,
        _: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        self.stats.profiles.fetch_add(1, Ordering::SeqCst);
        Err(Status::unimplemented("the fake has no profiles"))
    }
}

// === impl Mux ===

impl Service<http::Request<tonic::body::Body>> for Mux {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path().starts_with("/io.linkerd.proxy.outbound.") {
            self.policy.call(req)
        } else {
            self.destination.call(req)
        }
    }
}
