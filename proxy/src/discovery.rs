//! Outbound discovery: which original destinations are mesh services, and
//! which endpoint each request (or connection) to one goes to.
//!
//! ```text
//!  orig dst ──resolve──▶ Forward (not a service: connect to it as is)
//!                    └──▶ Service ──endpoints watch──▶ Balancer (P2C, peak-EWMA)
//!                                                        └─ pick() per request / connection
//! ```
//!
//! A service with HTTP routes attached (Gateway API HTTPRoutes) sends each
//! request to the backend its matching rule picks by weight; each backend
//! is a service of its own with its own balancer (its own routes, if any,
//! do not apply: backends are leaves, as in Linkerd).
//!
//! ```text
//!  Balanced(web) ──routes watch──▶ RouteTable { routes, backends: path ─▶ Balanced(web-v1), Balanced(web-v2) }
//!  request ──route()──▶ rule (match precedence) ──weights──▶ backend ──pick()──▶ endpoint
//! ```
//!
//! A service with a ServiceProfile that has routes or `dstOverrides` uses
//! the profile instead (module `profile`), as Linkerd does: its routes
//! name requests for metrics, timeouts and retries, and its overrides
//! split them by weight.
//!
//! The control-plane conversation (policy and destination streams, caching,
//! fail-fast, last-known endpoints) lives in `strand-proxy-discover`; this
//! module keeps one balancer per service and hands out endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};

use strand_proxy_balance::{Balancer, ConnectionHandle, RequestHandle};

mod profile;

pub use self::profile::{Budget, ProfileTable};
use strand_proxy_discover::{self as discover, Discovery, DiscoveryError, Protocol};

use crate::config::DiscoveryConfig;
use crate::metrics::{DstLabels, EndpointLabels, NoTlsReason, PeerId, Tls};

/// Resolves outbound targets; cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    discovery: Discovery,
    /// `.svc.<cluster domain>`: authorities with this suffix name services.
    service_suffix: Arc<str>,
    /// One balancer per service (and whether its routes apply), shared by
    /// every connection to it.
    services: Arc<Mutex<BalancerCache>>,
    /// Route requests by name on every connection (`STRAND_PROXY_INGRESS_MODE`).
    ingress_mode: bool,
}

/// Balancers by service name and whether its routes apply.
type BalancerCache = HashMap<(String, bool), Weak<Balanced>>;

/// Where an outbound connection goes.
#[derive(Clone)]
pub enum Dst {
    /// Not a mesh service: its original destination.
    Forward,
    /// A meshed workload's address: its original destination, over mTLS.
    Endpoint(Arc<discover::EndpointMeta>),
    Service(Arc<Balanced>),
}

/// A service's endpoints and the balancer over them.
pub struct Balanced {
    name: String,
    service: Arc<discover::Service>,
    balancer: Arc<Balancer<SocketAddr>>,
    /// How to reach and label each endpoint, kept in step with the balancer.
    meshed: Arc<RwLock<Arc<Meshed>>>,
    updater: tokio::task::JoinHandle<()>,
    /// The attached routes and their backends; `None` for a backend (whose
    /// routes do not apply) and while no route is attached.
    routes: Arc<RwLock<Option<Arc<RouteTable>>>>,
    routes_updater: Option<tokio::task::JoinHandle<()>>,
    /// The service's ServiceProfile when it has routes or overrides (it
    /// then takes precedence over `routes`); `None` for a backend.
    profile: Arc<RwLock<Option<Arc<ProfileTable>>>>,
    profile_updater: Option<tokio::task::JoinHandle<()>>,
}

/// A service's routes with a balancer for every backend they name.
struct RouteTable {
    routes: Arc<discover::HttpRoutes>,
    backends: HashMap<Arc<str>, Result<Arc<Balanced>, Arc<str>>>,
}

/// Where one request to a service goes, by its routes.
#[derive(Default)]
pub struct Routed {
    /// The backend the request's rule picked; `None`: the service itself
    /// (no route attached).
    pub backend: Option<Arc<Balanced>>,
    /// The rule's request timeout (retries included).
    pub timeout: Option<std::time::Duration>,
    /// The rule's timeout of one attempt.
    pub backend_timeout: Option<std::time::Duration>,
    /// The route's `<namespace>/<name>`.
    pub route: Option<Arc<str>>,
    /// The route's kind (HTTPRoute or GRPCRoute).
    pub route_kind: discover::RouteKind,
    /// The rule's retries.
    pub retry: Option<discover::RetryPolicy>,
    /// The rule's header filters, when it has any.
    pub filters: Option<Arc<[discover::RouteFilter]>>,
    /// The rule answers with this redirect (status, `Location`) instead.
    pub redirect: Option<(http::StatusCode, http::HeaderValue)>,
}

/// Each endpoint: the identity it proves when meshed, whether it takes
/// HTTP/2 from proxies (so HTTP/1 may travel upgraded), and its metric
/// labels.
type Meshed = HashMap<SocketAddr, EndpointInfo>;

struct EndpointInfo {
    identity: Option<Arc<str>>,
    http2: bool,
    dst: DstLabels,
}

fn meshed(endpoints: &discover::Endpoints) -> Arc<Meshed> {
    Arc::new(
        endpoints
            .addrs
            .iter()
            .map(|(a, m)| {
                let info = EndpointInfo {
                    identity: m.identity.as_deref().map(Arc::from),
                    http2: m.http2,
                    dst: DstLabels::from_discovery(&m.labels),
                };
                (*a, info)
            })
            .collect(),
    )
}

/// How a connection to one endpoint is made, and its metric labels.
#[derive(Clone, Debug)]
pub struct EndpointTls {
    /// The `tls` label, naming the server identity when mTLS is used.
    pub tls: Tls,
    /// mTLS to a proxy that accepts HTTP/2: HTTP/1 requests are carried
    /// over HTTP/2 (`l5d-orig-proto`).
    pub upgrade_h1: bool,
    /// The endpoint's `dst_*` labels.
    pub dst: DstLabels,
}

impl EndpointTls {
    /// How to reach an endpoint discovery described: mTLS when it names an
    /// identity and this proxy has one (`mesh`).
    pub fn of(meta: &discover::EndpointMeta, mesh: bool) -> Self {
        let dst = DstLabels::from_discovery(&meta.labels);
        match &meta.identity {
            Some(id) => Self::meshed(id.as_str().into(), meta.http2, mesh, dst),
            None => EndpointTls::plain(dst),
        }
    }

    /// A meshed endpoint (a proxy with identity `id`): mTLS when this proxy
    /// has an identity too. HTTP/1 is carried over HTTP/2 whenever the
    /// endpoint's proxy takes it (the H2 hint), with or without TLS, as
    /// Linkerd does: the protocol between proxies does not depend on TLS.
    fn meshed(id: Arc<str>, h2: bool, mesh: bool, dst: DstLabels) -> Self {
        EndpointTls {
            tls: if mesh {
                Tls::Established(PeerId::Server(id))
            } else {
                Tls::NoIdentity(NoTlsReason::Disabled)
            },
            upgrade_h1: h2,
            dst,
        }
    }

    /// Plaintext, because discovery named no identity.
    pub fn plain(dst: DstLabels) -> Self {
        EndpointTls {
            tls: Tls::NoIdentity(NoTlsReason::NotProvidedByServiceDiscovery),
            upgrade_h1: false,
            dst,
        }
    }

    /// The labels a request's metrics carry.
    pub fn labels(&self) -> EndpointLabels {
        EndpointLabels {
            tls: self.tls.clone(),
            dst: self.dst.clone(),
        }
    }
}

// === impl Resolver ===

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("service_suffix", &self.service_suffix)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(config: &DiscoveryConfig) -> Resolver {
        let token = serde_context(&config.pod_namespace, &config.pod_name);
        let mut c = discover::Config::new(config.destination_addr);
        c.policy = Some(config.policy_addr);
        c.context_token = token.clone();
        c.source_workload = token;
        c.fail_fast = config.fail_fast;
        Resolver {
            discovery: Discovery::new(c),
            service_suffix: format!(".svc.{}", config.cluster_domain).into(),
            services: Arc::default(),
            ingress_mode: config.ingress_mode,
        }
    }

    /// Whether requests are routed by name whatever address their
    /// connection went to (a proxy beside an ingress).
    pub fn ingress_mode(&self) -> bool {
        self.ingress_mode
    }

    pub async fn resolve(&self, orig_dst: SocketAddr) -> Result<Dst, DiscoveryError> {
        match self.discovery.resolve_addr(orig_dst).await? {
            discover::Resolution::Forward => Ok(Dst::Forward),
            discover::Resolution::Endpoint(meta) => Ok(Dst::Endpoint(meta)),
            discover::Resolution::Service(svc) => Ok(Dst::Service(self.balanced(svc, true).await)),
        }
    }

    /// Resolves an HTTP authority when it names a service (or when the
    /// client asked for it with `l5d-dst-override`); `None` otherwise.
    pub async fn resolve_authority(&self, authority: &str, overridden: bool) -> Option<Route> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !overridden && !host.ends_with(&*self.service_suffix) {
            return None;
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Some(match self.discovery.resolve_name(&authority).await {
            Ok(discover::Resolution::Forward) => Route::Direct,
            Ok(discover::Resolution::Endpoint(meta)) => Route::Meshed(meta),
            Ok(discover::Resolution::Service(svc)) => {
                Route::Balanced(self.balanced(svc, true).await)
            }
            Err(e) => Route::Failed(e),
        })
    }

    /// A backend of a route: its balancer, or why there is none. Boxed:
    /// [`Resolver::balanced`] awaits this, and this awaits it.
    fn backend<'a>(
        &'a self,
        path: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Arc<Balanced>, Arc<str>>> {
        Box::pin(async move {
            match self.discovery.resolve_name(path).await {
                Ok(discover::Resolution::Service(svc)) => Ok(self.balanced(svc, false).await),
                Ok(_) => Err(format!("backend {path} is not a mesh service").into()),
                Err(e) => Err(e.to_string().into()),
            }
        })
    }

    /// The balancer of `service`; with `routed`, following the routes
    /// attached to it (resolved before this returns, so a first request
    /// already goes where its route says).
    async fn balanced(&self, service: Arc<discover::Service>, routed: bool) -> Arc<Balanced> {
        let key = (service.name.clone(), routed);
        let existing = {
            let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
            services.get(&key).and_then(Weak::upgrade)
        };
        if let Some(b) = existing {
            return b;
        }
        let (profile, profile_updater) = if routed {
            self.follow_profile(&service).await
        } else {
            (Arc::default(), None)
        };
        let routes = Arc::new(RwLock::new(None));
        let routes_updater = if routed {
            let mut rx = service.routes.clone();
            let first = rx.borrow_and_update().clone();
            *routes.write().unwrap_or_else(|p| p.into_inner()) = self.route_table(first).await;
            let (resolver, table) = (self.clone(), Arc::clone(&routes));
            Some(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let current = rx.borrow_and_update().clone();
                    let next = resolver.route_table(current).await;
                    *table.write().unwrap_or_else(|p| p.into_inner()) = next;
                }
            }))
        } else {
            None
        };
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        // Another connection may have built it meanwhile: one balancer.
        if let Some(b) = services.get(&key).and_then(Weak::upgrade) {
            for t in [routes_updater, profile_updater].into_iter().flatten() {
                t.abort();
            }
            return b;
        }
        services.retain(|_, w| w.strong_count() > 0);
        let balancer = Arc::new(Balancer::new(strand_proxy_balance::Config::default()));
        let mut rx = service.endpoints.clone();
        let meshed_now = {
            let eps = rx.borrow_and_update();
            balancer.update(eps.addrs.keys().copied());
            meshed(&eps)
        };
        let meshed_map = Arc::new(RwLock::new(meshed_now));
        let updater = {
            let balancer = Arc::clone(&balancer);
            let meshed_map = Arc::clone(&meshed_map);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let (keys, m) = {
                        let eps = rx.borrow_and_update();
                        let keys: Vec<SocketAddr> = eps.addrs.keys().copied().collect();
                        (keys, meshed(&eps))
                    };
                    *meshed_map.write().unwrap_or_else(|p| p.into_inner()) = m;
                    balancer.update(keys);
                }
            })
        };
        let b = Arc::new(Balanced {
            name: service.name.clone(),
            service,
            balancer,
            meshed: meshed_map,
            updater,
            routes,
            routes_updater,
            profile,
            profile_updater,
        });
        services.insert(key, Arc::downgrade(&b));
        b
    }

    /// The service's profile as a [`ProfileTable`], kept current by a task.
    async fn follow_profile(
        &self,
        service: &discover::Service,
    ) -> (
        Arc<RwLock<Option<Arc<ProfileTable>>>>,
        Option<tokio::task::JoinHandle<()>>,
    ) {
        let mut rx = service.profile.clone();
        let first = rx.borrow_and_update().clone();
        let table = Arc::new(RwLock::new(self.profile_table(first).await));
        let (resolver, shared) = (self.clone(), Arc::clone(&table));
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let current = rx.borrow_and_update().clone();
                let next = resolver.profile_table(current).await;
                *shared.write().unwrap_or_else(|p| p.into_inner()) = next;
            }
        });
        (table, Some(task))
    }

    /// `profile` with its overrides' balancers; `None` when it changes
    /// nothing.
    async fn profile_table(
        &self,
        profile: Option<Arc<discover::Profile>>,
    ) -> Option<Arc<ProfileTable>> {
        let profile = profile.filter(|p| p.is_active())?;
        let authorities: Vec<_> = profile
            .dst_overrides
            .iter()
            .map(|d| (d.weight, d.authority.clone()))
            .collect();
        let resolved =
            futures_util::future::join_all(authorities.iter().map(|(_, a)| self.backend(a))).await;
        let overrides = authorities
            .into_iter()
            .zip(resolved)
            .map(|((w, a), b)| (w, a, b))
            .collect();
        Some(Arc::new(ProfileTable::new(profile, overrides)))
    }

    /// The backends' balancers of `routes`; `None` when none is attached.
    async fn route_table(&self, routes: Arc<discover::HttpRoutes>) -> Option<Arc<RouteTable>> {
        if routes.is_empty() {
            return None;
        }
        let paths = routes.backend_paths();
        let resolved = futures_util::future::join_all(paths.iter().map(|p| self.backend(p))).await;
        let backends = paths.into_iter().zip(resolved).collect();
        Some(Arc::new(RouteTable { routes, backends }))
    }
}

/// Linkerd's context token: `{"ns":"..","nodeName":"..","pod":".."}`.
fn serde_context(ns: &str, pod: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{\"ns\":\"{}\",\"nodeName\":\"localhost\",\"pod\":\"{}\"}}",
        esc(ns),
        esc(pod)
    )
}

// === impl Balanced ===

impl Balanced {
    /// The service's discovery name (`<fqdn>:<port>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn protocol(&self) -> Protocol {
        *self.service.protocol.borrow()
    }

    /// The service's ServiceProfile, when it has routes or overrides.
    pub fn profile(&self) -> Option<Arc<ProfileTable>> {
        self.profile
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where a request goes by the service's routes: the backend its
    /// rule picks by weight, with the rule's timeout.
    pub fn route<B>(&self, req: &http::Request<B>) -> Result<Routed, crate::errors::ProxyError> {
        self.route_head(req.method(), req.uri(), req.headers())
    }

    /// [`Balanced::route`] for a request's head.
    pub fn route_head(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<Routed, crate::errors::ProxyError> {
        use crate::errors::ProxyError;
        let table = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(table) = table else {
            return Ok(Routed::default());
        };
        let Some((route, rule)) = table.routes.select(method, uri, headers) else {
            if table.routes.fallback {
                return Ok(Routed::default());
            }
            return Err(ProxyError::NoRoute(self.name.clone()));
        };
        let filter_error = |reason: &str| ProxyError::RouteFilter {
            route: route.name.clone(),
            reason: reason.into(),
        };
        for f in rule.filters.iter() {
            match f {
                discover::RouteFilter::Redirect(r) => {
                    let authority = uri
                        .authority()
                        .map(|a| a.as_str())
                        .or_else(|| headers.get(http::header::HOST)?.to_str().ok());
                    let location = r
                        .location(uri, authority, rule.matched_prefix(uri.path()))
                        .map_err(|why| filter_error(&why))?;
                    return Ok(Routed {
                        route: Some(route.name.clone()),
                        route_kind: route.kind,
                        redirect: Some((r.status, location)),
                        ..Routed::default()
                    });
                }
                discover::RouteFilter::Invalid(why) => return Err(filter_error(why)),
                discover::RouteFilter::RequestHeaders(_)
                | discover::RouteFilter::ResponseHeaders(_) => {}
            }
        }
        let total: u64 = rule.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return Err(ProxyError::NoBackends(route.name.clone()));
        }
        let mut n = fastrand::u64(0..total);
        let picked = rule
            .backends
            .iter()
            .find(|b| {
                let w = u64::from(b.weight);
                if n < w {
                    return true;
                }
                n -= w;
                false
            })
            .unwrap_or(&rule.backends[0]);
        match table.backends.get(&picked.path) {
            Some(Ok(backend)) => Ok(Routed {
                backend: Some(Arc::clone(backend)),
                timeout: rule.request_timeout,
                backend_timeout: rule.backend_timeout,
                route: Some(route.name.clone()),
                route_kind: route.kind,
                retry: rule.retry.clone(),
                filters: (!rule.filters.is_empty()).then(|| rule.filters.clone()),
                redirect: None,
            }),
            Some(Err(why)) => Err(ProxyError::Backend {
                path: picked.path.clone(),
                reason: why.clone(),
            }),
            None => Err(ProxyError::NoBackends(route.name.clone())),
        }
    }

    /// An endpoint for one request, or `None` when the service has none.
    pub fn pick(&self) -> Option<RequestHandle<SocketAddr>> {
        self.balancer.pick()
    }

    /// An endpoint for one opaque connection.
    pub fn pick_connection(&self) -> Option<ConnectionHandle<SocketAddr>> {
        self.balancer.pick_connection()
    }

    /// How to connect to `addr`: mTLS when discovery names its identity and
    /// this proxy has one (`mesh`).
    pub fn endpoint_tls(&self, addr: &SocketAddr, mesh: bool) -> EndpointTls {
        let meshed = self.meshed.read().unwrap_or_else(|p| p.into_inner());
        match meshed.get(addr) {
            Some(EndpointInfo {
                identity: Some(id),
                http2,
                dst,
            }) => EndpointTls::meshed(id.clone(), *http2, mesh, dst.clone()),
            Some(info) => EndpointTls::plain(info.dst.clone()),
            None => EndpointTls::plain(DstLabels::default()),
        }
    }

    /// The endpoint's labels from discovery (pod, namespace, ...).
    pub fn labels(&self, addr: &SocketAddr) -> Option<BTreeMap<String, String>> {
        self.service
            .endpoints
            .borrow()
            .addrs
            .get(addr)
            .map(|m| m.labels.clone())
    }
}

impl Drop for Balanced {
    fn drop(&mut self) {
        self.updater.abort();
        for t in [&self.routes_updater, &self.profile_updater]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
    }
}

/// How a connection's requests find their upstream.
#[derive(Clone)]
pub enum Route {
    /// To the original destination.
    Direct,
    /// To the original destination, a meshed workload (mTLS when this
    /// proxy has an identity).
    Meshed(Arc<discover::EndpointMeta>),
    /// Per request (or per connection) across a service's endpoints.
    Balanced(Arc<Balanced>),
    /// Discovery failed: every request gets this error.
    Failed(DiscoveryError),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct => f.write_str("Direct"),
            Route::Meshed(m) => write!(f, "Meshed({:?})", m.identity),
            Route::Balanced(b) => write!(f, "Balanced({})", b.name()),
            Route::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

impl Route {
    /// The route for an outbound original destination.
    pub async fn resolve(resolver: Option<&Resolver>, orig_dst: SocketAddr) -> Route {
        let Some(resolver) = resolver else {
            return Route::Direct;
        };
        match resolver.resolve(orig_dst).await {
            Ok(Dst::Forward) => Route::Direct,
            Ok(Dst::Endpoint(meta)) => Route::Meshed(meta),
            Ok(Dst::Service(b)) => Route::Balanced(b),
            Err(e) => Route::Failed(e),
        }
    }

    /// Whether the service's policy says to skip protocol detection.
    pub fn is_opaque(&self) -> bool {
        matches!(self, Route::Balanced(b) if b.protocol() == Protocol::Opaque)
    }
}
