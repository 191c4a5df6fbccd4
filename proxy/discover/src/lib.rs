//! Outbound service discovery for the proxy: for each target (an original
//! destination address or an HTTP authority) ask the control plane whether
//! it is a mesh service and, if so, keep its live endpoint set, the way the
//! upstream linkerd2-proxy does with the same gRPC API.
//!
//! ```text
//!  resolve_addr(orig_dst) ──┐
//!  resolve_name(authority) ─┴─► cache: one entry per target ──► first answer, within fail_fast
//!                                  │ new target: spawn its task
//!                                  ▼
//!  OutboundPolicies/Watch{target} ──► classify ─┬─ forward / NotFound ──► Resolution::Forward
//!                                               └─ balancer backend {path}
//!                                                     ▼
//!  Destination/Get{path} ──► add / remove / no-endpoints ──► watch<Endpoints>
//!  Destination/GetProfile{path} ──► routes, budget, overrides ──► watch<Profile>
//!                                                     ──► Resolution::Service(Service)
//! ```
//!
//! A resolution waits for the first answer at most `fail_fast`. Streams
//! that fail are retried with jittered backoff while the last known state
//! stays published; a fresh stream's first update replaces it. A target
//! nobody has resolved for `idle_timeout`, and that no live [`Service`]
//! references, has its streams cancelled. Dropping the [`Discovery`] ends
//! every task it started.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::cache::{Key, Target, Targets, TaskGuard};
use crate::policy::State;
use crate::reconnect::Health;

mod cache;
mod destination;
mod policy;
mod profile;
mod reconnect;
mod routes;

pub use crate::destination::{EndpointMeta, Endpoints};
pub use crate::policy::Protocol;
pub use crate::profile::{
    DstOverride, PathRegex, Profile, ProfileRoute, RequestMatch, ResponseClass, ResponseMatch,
    RetryBudget, compile_path_regex,
};
pub use crate::routes::{
    HeaderModifier, HeaderValueMatch, HttpRoute, HttpRoutes, HttpRule, PathMatch, PathRewrite,
    Redirect, RetryPolicy, RouteFilter, RouteKind, RouteMatch, WeightedBackend,
};

/// Where the control plane is and how patient to be with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The destination service (and the policy service unless `policy` is
    /// set), spoken to in plaintext HTTP/2.
    pub control_plane: SocketAddr,
    /// The policy service, when it is not at `control_plane`.
    pub policy: Option<SocketAddr>,
    /// `GetDestination.context_token`: JSON `{"ns":..,"nodeName":..,"pod":..}`.
    pub context_token: String,
    /// `TrafficSpec.source_workload`: the same JSON.
    pub source_workload: String,
    /// How long a resolution waits for the control plane's first answer.
    pub fail_fast: Duration,
    /// How long an unused target's streams are kept, and how long a
    /// refusal (`NotFound`, `InvalidArgument`, `Unimplemented`) is cached.
    pub idle_timeout: Duration,
    /// Reconnection backoff (min, max); jittered.
    pub backoff: (Duration, Duration),
}

/// The discovery client: cheap to clone, all clones share one cache.
#[derive(Clone, Debug)]
pub struct Discovery {
    inner: Arc<Inner>,
}

/// What to do with connections to a target.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// Not a mesh service: connect to the original destination as is.
    Forward,
    /// Not a service but a meshed workload's address: connect to the
    /// original destination, with the endpoint's identity (mTLS).
    Endpoint(Arc<EndpointMeta>),
    /// A service: balance over its endpoints.
    Service(Arc<Service>),
}

/// A mesh service. Holding it (or a clone) keeps its streams alive.
#[derive(Clone, Debug)]
pub struct Service {
    /// The destination path (`fqdn:port`), for metrics and logs.
    pub name: String,
    /// The protocol the policy asks for; changes when the policy does.
    pub protocol: watch::Receiver<Protocol>,
    /// The live endpoints. The last known set stays here while the control
    /// plane is unreachable. `changed()` fails once discovery of the target
    /// has stopped (the [`Discovery`] was dropped, or the control plane now
    /// refuses the target); the last value stays readable.
    pub endpoints: watch::Receiver<Endpoints>,
    /// The HTTP routes attached to the service (empty: none, the
    /// endpoints above serve every request); changes when the policy does.
    pub routes: watch::Receiver<Arc<HttpRoutes>>,
    /// The service's ServiceProfile (`Destination/GetProfile`; empty while
    /// it has none). When it has routes or overrides it takes precedence
    /// over `routes`, as in Linkerd. A resolved service always has one
    /// (`Some`): resolution waits for the first answer.
    pub profile: watch::Receiver<Option<Arc<Profile>>>,
    _target: Arc<Target>,
}

/// Why a target could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The control plane did not answer in time (the proxy answers 503,
    /// retryable). Discovery goes on in the background.
    #[error("discovery of {target} did not complete within {after:?}")]
    Timeout {
        /// The address or authority.
        target: String,
        /// The configured `fail_fast`.
        after: Duration,
    },
    /// The authority cannot be discovered (the proxy answers 400).
    #[error("{authority:?} cannot be discovered: {reason}")]
    InvalidAuthority {
        authority: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The control plane's policy for the target is unusable (the proxy
    /// answers 502: a control-plane fault).
    #[error("the outbound policy for {target} is unusable: {reason}")]
    InvalidPolicy {
        /// The address or authority.
        target: String,
        /// What is missing from the policy.
        reason: Arc<str>,
    },
}

#[derive(Debug)]
struct Inner {
    targets: Arc<Targets>,
    fail_fast: Duration,
    _sweeper: TaskGuard,
    /// Dropped with the last `Discovery` clone, which ends every target task.
    _shutdown: watch::Sender<()>,
}

/// What every task needs: clients and settings. Holds no reference to the
/// cache, so tasks never keep it alive.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    policy: OutboundPoliciesClient<Channel>,
    destination: DestinationClient<Channel>,
    context_token: Arc<str>,
    source_workload: Arc<str>,
    backoff: (Duration, Duration),
    policy_health: Arc<Health>,
    destination_health: Arc<Health>,
}

/// Upstream's fail-fast timeout: long enough for a control plane under
/// load, short enough that a client sees an error rather than hanging.
pub const DEFAULT_FAIL_FAST: Duration = Duration::from_secs(3);

/// Upstream drops unused discovery after 5 s. We keep it for 60 s: a client
/// that connects every few seconds to tens of seconds (health checks, cron
/// jobs, polling) then never waits for discovery again, and a target used
/// within the last minute keeps working through a control-plane outage
/// instead of failing fast. The cost is two idle gRPC streams per such
/// target on the control plane, which are cheap.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// 100 ms to 10 s: the first retry is nearly immediate (most failures are a
/// control-plane pod restarting); the cap bounds both the load a fleet puts
/// on a recovering control plane and the wait after it recovers.
pub const DEFAULT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(10));

/// Upstream's outbound connect timeout: a control plane that does not
/// accept within a second is treated as down and retried with backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// HTTP/2 PINGs find a control plane that vanished without closing the
/// connection (a partitioned node) within interval + timeout, rather than
/// after TCP gives up minutes later.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

// === impl Config ===

impl Config {
    /// The defaults, with the control plane at `control_plane` and empty
    /// workload tokens.
    pub fn new(control_plane: SocketAddr) -> Self {
        Self {
            control_plane,
            policy: None,
            context_token: String::new(),
            source_workload: String::new(),
            fail_fast: DEFAULT_FAIL_FAST,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            backoff: DEFAULT_BACKOFF,
        }
    }
}

// === impl Discovery ===

impl Discovery {
    /// Starts discovery against `config.control_plane`. Connects lazily;
    /// spawns its tasks on the current tokio runtime (panics outside one).
    pub fn new(config: Config) -> Discovery {
        let ctx = Ctx::new(&config);
        let (shutdown, shutdown_rx) = watch::channel(());
        let targets = Arc::new(Targets::new(ctx, config.idle_timeout, shutdown_rx));
        let sweeper = cache::sweep(Arc::downgrade(&targets), config.idle_timeout);
        let inner = Inner {
            targets,
            fail_fast: config.fail_fast,
            _sweeper: TaskGuard::spawn(sweeper),
            _shutdown: shutdown,
        };
        Discovery {
            inner: Arc::new(inner),
        }
    }

    /// Resolves an original destination address (what the iptables
    /// redirect preserved).
    pub async fn resolve_addr(&self, orig_dst: SocketAddr) -> Result<Resolution, DiscoveryError> {
        self.resolve(Key::Addr(orig_dst)).await
    }

    /// Resolves an HTTP authority `host:port` (e.g.
    /// `web.default.svc.cluster.local:8080`).
    pub async fn resolve_name(&self, authority: &str) -> Result<Resolution, DiscoveryError> {
        self.resolve(Key::authority(authority)?).await
    }

    /// The number of targets in the cache (for metrics).
    pub fn cached_targets(&self) -> usize {
        self.inner.targets.len()
    }

    async fn resolve(&self, key: Key) -> Result<Resolution, DiscoveryError> {
        let target = self.inner.targets.get(key);
        let after = self.inner.fail_fast;
        match tokio::time::timeout(after, answer(&target)).await {
            Ok(Some(resolution)) => resolution,
            Ok(None) | Err(_) => Err(DiscoveryError::Timeout {
                target: target.key().to_string(),
                after,
            }),
        }
    }
}

// === impl Ctx ===

impl Ctx {
    /// Clients for `config`'s addresses (connecting lazily) and its settings.
    fn new(config: &Config) -> Self {
        let policy_addr = config.policy.unwrap_or(config.control_plane);
        // One HTTP/2 connection carries both services when they share an
        // address, as upstream's control client does.
        let destination = channel(config.control_plane);
        let policy = if policy_addr == config.control_plane {
            destination.clone()
        } else {
            channel(policy_addr)
        };
        Self {
            policy: OutboundPoliciesClient::new(policy),
            destination: DestinationClient::new(destination),
            context_token: config.context_token.as_str().into(),
            source_workload: config.source_workload.as_str().into(),
            backoff: config.backoff,
            policy_health: Health::new("policy", policy_addr),
            destination_health: Health::new("destination", config.control_plane),
        }
    }
}

/// Waits for the target's first usable answer: a policy, and for a service
/// its first endpoint update and its profile. `None` if its task ended without one, which
/// only happens when the runtime is shutting down.
async fn answer(target: &Arc<Target>) -> Option<Result<Resolution, DiscoveryError>> {
    let mut state = target.subscribe();
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            State::Pending => state.changed().await.ok()?,
            State::Forward {
                endpoint: Some(meta),
                ..
            } => return Some(Ok(Resolution::Endpoint(meta))),
            State::Forward { endpoint: None, .. } => return Some(Ok(Resolution::Forward)),
            State::Invalid(reason) => {
                let target = target.key().to_string();
                return Some(Err(DiscoveryError::InvalidPolicy { target, reason }));
            }
            State::Service {
                name,
                protocol,
                mut endpoints,
                routes,
                mut profile,
            } => {
                // The policy may change again before the endpoints (and the
                // profile) arrive; then the new answer is the one to wait for.
                let first = async {
                    endpoints.wait_for(|e| e.version > 0).await.map(drop)?;
                    profile.wait_for(Option::is_some).await.map(drop)
                };
                tokio::select! {
                    ready = first => {
                        // Closed: the task stopped, having published why (a
                        // refusal) first.
                        if ready.is_err() {
                            if state.has_changed().ok()? {
                                continue;
                            }
                            return None;
                        }
                    }
                    changed = state.changed() => {
                        changed.ok()?;
                        continue;
                    }
                }
                return Some(Ok(Resolution::Service(Arc::new(Service {
                    name: name.to_string(),
                    protocol,
                    endpoints,
                    routes,
                    profile,
                    _target: target.clone(),
                }))));
            }
        }
    }
}

/// A lazily connecting plaintext HTTP/2 channel to `addr`.
fn channel(addr: SocketAddr) -> Channel {
    let uri = format!("http://{addr}");
    Endpoint::from_shared(uri)
        .expect("a socket address is a valid URI authority")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .connect_lazy()
}
