use crate::{
    GrpcRouteApi, GrpcRouteMatch, GrpcRouteRetry, HttpRouteApi, HttpRouteMatch, IdentityName,
    RouteFilter, RouteRetry, RouteTimeouts, ServiceProfile,
};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;

/// What a proxy asks about: a name from an authority, or an original destination address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Name { host: String, port: u16 },
    Addr(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

/// One ready backend of a service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub pod: String,
    pub namespace: String,
    pub workload: String,
    pub service_account: String,
    /// Set when a proxy runs beside the pod: peers then expect this TLS
    /// identity and may carry HTTP/1 over HTTP/2.
    pub identity: Option<IdentityName>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
}

/// One port of a service, as discovery serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePortView {
    pub service: ServiceKey,
    /// `<name>.<namespace>.svc.<cluster-domain>`
    pub fqdn: String,
    pub cluster_ip: Option<IpAddr>,
    pub port: u16,
    /// Marked with `config.linkerd.io/opaque-ports`: no protocol detection.
    pub opaque: bool,
    pub app_protocol: Option<String>,
    /// Ready endpoints only, by address.
    pub endpoints: BTreeMap<SocketAddr, Endpoint>,
    /// The HTTPRoutes of the service's namespace attached to this port, in
    /// Gateway API's order (oldest first, then by name). Empty: clients
    /// route every request to the service itself.
    pub http_routes: Vec<OutboundHttpRoute>,
    /// The GRPCRoutes attached to this port, in the same order. Not empty:
    /// clients route the port's calls by these (and its HTTPRoutes do not
    /// apply).
    pub grpc_routes: Vec<OutboundGrpcRoute>,
    /// The ServiceProfile named after the service's FQDN in its namespace,
    /// shared by every port's view (`Destination/GetProfile` serves it).
    pub profile: Option<Arc<ServiceProfile>>,
}

/// A route as the outbound policy of one service port serves it: its rules
/// with Gateway API's defaults filled in and its backends resolved against
/// the services that exist. An HTTPRoute's by default; a GRPCRoute's as
/// [`OutboundGrpcRoute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRoute<A = HttpRouteApi, M = HttpRouteMatch, R = RouteRetry> {
    pub api: A,
    pub namespace: String,
    pub name: String,
    pub rules: Vec<OutboundRouteRule<M, R>>,
}

/// An HTTPRoute as a port's outbound policy serves it.
pub type OutboundHttpRoute = OutboundRoute;

/// A GRPCRoute as a port's outbound policy serves it.
pub type OutboundGrpcRoute = OutboundRoute<GrpcRouteApi, GrpcRouteMatch, GrpcRouteRetry>;

/// A GRPCRoute's rule.
pub type OutboundGrpcRouteRule = OutboundRouteRule<GrpcRouteMatch, GrpcRouteRetry>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRouteRule<M = HttpRouteMatch, R = RouteRetry> {
    /// Never empty. HTTPRoutes: every match has a path (a rule without
    /// matches gets one match of prefix `/`, a match without a path that
    /// prefix). GRPCRoutes: a rule without matches gets one empty match
    /// (every call).
    pub matches: Vec<M>,
    /// Backends with a weight above zero whose service and port exist, in
    /// the route's order; a rule without backendRefs has the parent service
    /// port (weight 1). Empty when none is left: requests get 500.
    pub backends: Vec<OutboundBackend>,
    /// The rule's Gateway API timeouts (HTTPRoutes), overridden by the
    /// route's `timeout.linkerd.io/*` annotations.
    pub timeouts: RouteTimeouts,
    /// From the route's `retry.linkerd.io/*` annotations; `None`: each
    /// request is sent once.
    pub retry: Option<R>,
    /// The rule's filters, in its order. A rule with a `RequestRedirect`
    /// has no backendRefs (its backend is the parent's, and gets nothing):
    /// the client's proxy answers the redirect. GRPCRoutes have
    /// `RequestHeaderModifier`s only.
    pub filters: Vec<RouteFilter>,
}

/// One port of a service that a rule sends a share of its requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundBackend {
    pub service: ServiceKey,
    pub port: u16,
    /// `<name>.<namespace>.svc.<cluster-domain>`
    pub fqdn: String,
    /// 1..=1,000,000, relative to the rule's other backends.
    pub weight: u32,
}

/// The latest view of a service port; `None` while it does not exist.
pub type ServiceWatch = watch::Receiver<Option<Arc<ServicePortView>>>;

/// What the discovery APIs need from an index.
pub trait DiscoverServices: Send + Sync + 'static {
    /// Which service port a target names: `<svc>.<ns>.svc.<domain>:<port>`
    /// (with or without a trailing dot) or `<virtual-ip>:<port>`.
    fn lookup(&self, target: &Target) -> Option<(ServiceKey, u16)>;

    /// Watches one port of a service. Works for a service that does not
    /// exist yet: the value is `None` until it does.
    fn watch(&self, service: &ServiceKey, port: u16) -> ServiceWatch;

    /// The cluster domain, e.g. `cluster.local`.
    fn cluster_domain(&self) -> &str;

    /// The meshed, ready pod at `addr`'s IP (any port), as an endpoint on
    /// that port: traffic to a pod's own address is mTLS too.
    fn pod_endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        let _ = addr;
        None
    }
}

// === impl Target ===

impl Target {
    /// Parses `host:port` or `[v6]:port` as a proxy sends it.
    pub fn parse(s: &str) -> Option<Target> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(Target::Addr(addr));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse().ok()?;
        if host.is_empty() || host.contains(':') {
            return None;
        }
        Some(Target::Name {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name { host, port } => write!(f, "{host}:{port}"),
            Self::Addr(a) => write!(f, "{a}"),
        }
    }
}

// === impl ServiceKey ===

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Splits a name of the form `<svc>.<ns>.svc.<cluster-domain>`.
    pub fn from_fqdn(host: &str, cluster_domain: &str) -> Option<ServiceKey> {
        let host = host.trim_end_matches('.');
        let rest = host.strip_suffix(cluster_domain)?.strip_suffix(".svc.")?;
        let (name, ns) = rest.split_once('.')?;
        (!name.is_empty() && !ns.is_empty() && !ns.contains('.')).then(|| ServiceKey::new(ns, name))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
