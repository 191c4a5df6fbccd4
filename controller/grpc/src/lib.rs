//! The control plane's gRPC servers for proxies: destination (`Get`,
//! `GetProfile`), outbound policy (`OutboundPolicies`) and inbound policy
//! (`InboundServerPolicies`), speaking the published `linkerd2-proxy-api` so
//! that the upstream linkerd2-proxy and strand's proxy can both use them.
//!
//! Everything here is a thin translation over [`DiscoverServices`]: each
//! request is resolved to a service port once, then its watch is turned into
//! a stream of protobuf updates. Endpoint streams on the same service port
//! share one cache (module `fanout`), so a change is converted, diffed and
//! encoded once however many proxies watch it; each stream sends
//! reference-counted copies of the same bytes (module `raw`).
//!
//! ```text
//!                          ┌─ Destination/Get ────► fanout (diff, encode once) ──► Add / Remove / NoEndpoints
//!   proxy ──HTTP/2 gRPC──► ├─ Destination/GetProfile ─────────────────────► DestinationProfile
//!                          ├─ OutboundPolicies/Watch ─────────────────────► OutboundPolicy (balancer -> Get)
//!                          └─ InboundServerPolicies/WatchPort ────────────► default Server
//!                                   │
//!                  DiscoverServices::lookup / watch (index, tokio::sync::watch)
//! ```
//!
//! Every stream ends when its client goes away (the response body is
//! dropped with everything it holds) or when [`Discovery::shutdown`] is
//! called, so that a graceful server shutdown does not wait on watches that
//! never end. [`Stats`] counts open streams and updates sent per API.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::DiscoverServices;
use tokio::sync::watch;

mod convert;
mod destination;
mod fanout;
mod inbound;
mod outbound;
mod raw;
mod stats;
mod stream;
mod target;

pub use self::destination::{DestinationRoutes, DestinationService};
pub use self::inbound::InboundPolicyService;
pub use self::outbound::OutboundPolicyService;
pub use self::stats::{ApiStats, Stats, StreamApi};

use linkerd2_proxy_api::inbound::inbound_server_policies_server::InboundServerPoliciesServer;
use linkerd2_proxy_api::outbound::outbound_policies_server::OutboundPoliciesServer;

/// How many concurrent streams one proxy connection may hold.
///
/// A proxy keeps up to three watches per outbound target (policy, profile,
/// endpoints) and one per inbound port, all multiplexed on one connection;
/// 10,000 leaves room for ~3,000 targets while still bounding what a single
/// misbehaving client can pin (tonic sets no limit by default).
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 10_000;

/// HTTP/2 keepalive ping interval: a proxy whose node vanished without a FIN
/// is noticed within interval + timeout (30 s), and its streams released.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keepalive ping may go unanswered (tonic's default).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The three discovery services over one index, with shared stats and a
/// shutdown signal for their streams. Cheap to clone.
pub struct Discovery<D: ?Sized> {
    discover: Arc<D>,
    /// Shared by every destination server made from this value and its clones.
    topics: fanout::Topics,
    shared: Shared,
}

/// What every service holds besides the index.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) stats: Arc<Stats>,
    pub(crate) shutdown: stream::Shutdown,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

/// Mounts the destination, outbound and inbound policy services on one
/// router. Keep a [`Discovery`] instead when you need stats or shutdown.
pub fn router<D>(discover: Arc<D>) -> tonic::service::Routes
where
    D: DiscoverServices + ?Sized,
{
    Discovery::new(discover).routes()
}

/// A tonic server builder tuned for many long-lived watch streams per
/// connection (see [`MAX_CONCURRENT_STREAMS_PER_CONNECTION`]) and for
/// noticing dead peers.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true)
}

// === impl Discovery ===

impl<D: DiscoverServices + ?Sized> Discovery<D> {
    pub fn new(discover: Arc<D>) -> Self {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        Self {
            discover,
            topics: fanout::Topics::default(),
            shared: Shared {
                stats: Arc::default(),
                shutdown: stream::Shutdown::new(shutdown_rx),
                shutdown_tx: Arc::new(shutdown_tx),
            },
        }
    }

    /// Counters of the streams served (shared by every clone).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Ends every open stream (and every stream opened later) cleanly.
    ///
    /// Call it from the future given to `serve_with_shutdown`, so that
    /// tonic's graceful shutdown is not held open by watches that would
    /// otherwise never end:
    ///
    /// ```ignore
    /// server().add_routes(d.routes())
    ///     .serve_with_shutdown(addr, async move { signal.await; d.shutdown() })
    /// ```
    pub fn shutdown(&self) {
        self.shared.shutdown_tx.send_replace(true);
    }

    /// All three services on one router.
    pub fn routes(&self) -> tonic::service::Routes {
        tonic::service::Routes::new(self.destination_server())
            .add_service(self.outbound_server())
            .add_service(self.inbound_server())
    }

    /// `Destination`: `Get` from pre-encoded updates, `GetProfile` by the
    /// generated server.
    pub fn destination_server(&self) -> DestinationRoutes<D> {
        DestinationRoutes::new(DestinationService::new(
            self.discover.clone(),
            self.topics.clone(),
            self.shared.clone(),
        ))
    }

    pub fn outbound_server(&self) -> OutboundPoliciesServer<OutboundPolicyService<D>> {
        OutboundPoliciesServer::new(OutboundPolicyService::new(
            self.discover.clone(),
            self.shared.clone(),
        ))
    }

    pub fn inbound_server(&self) -> InboundServerPoliciesServer<InboundPolicyService> {
        InboundServerPoliciesServer::new(InboundPolicyService::new(self.shared.clone()))
    }
}

impl<D: ?Sized> Clone for Discovery<D> {
    fn clone(&self) -> Self {
        Self {
            discover: self.discover.clone(),
            topics: self.topics.clone(),
            shared: self.shared.clone(),
        }
    }
}
