//! Prometheus metrics with Linkerd's names and labels, so Linkerd's Grafana
//! dashboards and PromQL work unchanged.
//!
//! ```text
//!  accept ──► TcpConn (peer="src") ─┐            ┌─ request_total
//!  connect ─► TcpConn (peer="dst") ─┼─ tcp_* ... │  response_total
//!                                   │            └─ response_latency_ms
//!  HTTP request ─► RequestMetrics ──┘
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod labels;
mod process;

pub use labels::{
    Classification, Direction, DstLabels, EndpointLabels, NoTlsReason, Peer, PeerId,
    ResponseLabels, TargetLabels, TcpCloseLabels, TcpLabels, Tls,
};

/// Linkerd's `response_latency_ms` buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// Linkerd's `tcp_connection_duration_ms` buckets: decades from 1 ms to
/// about a day.
pub const CONNECTION_DURATION_BUCKETS_MS: [f64; 9] = [
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    request_total: Family<TargetLabels, Counter>,
    response_total: Family<ResponseLabels, Counter>,
    response_latency_ms: HistogramFamily<ResponseLabels>,
    tcp_open_total: Family<TcpLabels, Counter>,
    tcp_close_total: Family<TcpCloseLabels, Counter>,
    tcp_open_connections: Family<TcpLabels, Gauge>,
    tcp_read_bytes_total: Family<TcpLabels, Counter>,
    tcp_write_bytes_total: Family<TcpLabels, Counter>,
    tcp_connection_duration_ms: HistogramFamily<TcpCloseLabels>,
    /// Connections closed by the proxy because of bad input, by reason.
    pub protocol_errors: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Retries of HTTP route rules, by route: sent, requests that
    /// succeeded after retrying, and requests that ran out of retries.
    pub route_retry_requests: Family<RouteLabels, Counter>,
    pub route_retry_successes: Family<RouteLabels, Counter>,
    pub route_retry_limit_exceeded: Family<RouteLabels, Counter>,
    /// Requests that took an HTTPRoute's rule: their statuses (with the
    /// proxy's error, if it answered) and their duration to the response
    /// head, retries included (Linkerd's `outbound_http_route_request_*`).
    pub http_route_statuses: Family<RouteLabels, Counter>,
    pub http_route_duration: HistogramFamily<RouteLabels>,
    /// ServiceProfile routes (Linkerd's `route_*` families): requests as
    /// the client sent them, their responses and latency, and every
    /// attempt (`route_actual_*`, retries included).
    pub profile_route: ProfileRouteMetrics,
    /// Spans of traced requests sent to the collector, and spans dropped
    /// (queue full, or the collector refused or could not be reached).
    pub trace_spans_exported: Counter,
    pub trace_spans_dropped: Counter,
}

/// Linkerd's per-route families of ServiceProfile routes.
#[derive(Debug)]
pub struct ProfileRouteMetrics {
    pub requests: Family<RouteLabels, Counter>,
    pub responses: Family<RouteLabels, Counter>,
    pub latency: HistogramFamily<RouteLabels>,
    pub actual_requests: Family<RouteLabels, Counter>,
    pub actual_responses: Family<RouteLabels, Counter>,
}

/// [`route_labels`] with the status the client got and, when the proxy
/// answered itself, its error kind (`""` otherwise).
pub fn route_status_labels(route: &RouteLabels, status: u16, error: &str) -> RouteLabels {
    let mut labels = route.clone();
    labels.push(("http_status", status.to_string()));
    labels.push(("error", error.to_string()));
    labels
}

/// Requests to a profiled service that match none of its routes.
pub const DEFAULT_PROFILE_ROUTE: &str = "[DEFAULT]";

/// A ServiceProfile route's labels, as Linkerd's `route_*` metrics carry
/// them: `dst` is the service's `<fqdn>:<port>`, `rt_route` the route's
/// name.
pub fn profile_route_labels(dst: &str, route: &str) -> RouteLabels {
    vec![
        ("direction", Direction::Outbound.as_str().to_string()),
        ("dst", dst.to_string()),
        ("rt_route", route.to_string()),
    ]
}

/// [`profile_route_labels`] with a response's `status_code` and
/// `classification`.
pub fn profile_response_labels(route: &RouteLabels, status: u16, failure: bool) -> RouteLabels {
    let mut labels = route.clone();
    labels.push(("status_code", status.to_string()));
    let class = if failure { "failure" } else { "success" };
    labels.push(("classification", class.to_string()));
    labels
}

/// An HTTP route's labels, as Linkerd's `outbound_http_route_*` metrics
/// carry them.
pub type RouteLabels = Vec<(&'static str, String)>;

/// The labels of the route `<namespace>/<name>` (an HTTPRoute or a
/// GRPCRoute: `kind`) of the service `parent` (its `<fqdn>:<port>`).
pub fn route_labels(parent: &str, route: &str, kind: &str) -> RouteLabels {
    let (namespace, name) = route.split_once('/').unwrap_or(("", route));
    vec![
        ("parent", parent.to_string()),
        ("route_kind", kind.to_string()),
        ("route_namespace", namespace.to_string()),
        ("route_name", name.to_string()),
    ]
}

/// An open connection's metric handles. Dropping it records the close.
#[derive(Debug)]
pub struct TcpConn {
    metrics: Arc<Metrics>,
    labels: TcpLabels,
    opened: Instant,
    open: Gauge,
    pub read: Counter,
    pub written: Counter,
    failed: bool,
}

/// One connection's recently used HTTP metric handles. A request like the
/// ones before it (the usual case: same authority, target and endpoint)
/// finds its counters here by comparing label sets, most of whose strings
/// are the same `Arc`s, instead of SipHashing every label into the shared
/// families; and its authority reuses the string of the request before.
/// Families never drop series, so a cached handle stays the one the
/// registry encodes.
#[derive(Debug, Default)]
pub struct HandleCache {
    inner: std::sync::Mutex<CacheSlots>,
}

#[derive(Debug, Default)]
struct CacheSlots {
    authority: Option<Arc<str>>,
    requests: Vec<(TargetLabels, Counter)>,
    latencies: Vec<(ResponseLabels, Histogram)>,
    responses: Vec<(ResponseLabels, Counter)>,
}

/// Label sets kept per metric and connection; a connection that sees more
/// (many authorities, say) evicts the oldest and still counts correctly.
const CACHED_LABEL_SETS: usize = 4;

fn lookup<L: Clone + PartialEq, M: Clone>(
    slots: &mut Vec<(L, M)>,
    labels: &L,
    create: impl FnOnce() -> M,
) -> M {
    if let Some((_, m)) = slots.iter().find(|(l, _)| l == labels) {
        return m.clone();
    }
    let m = create();
    if slots.len() == CACHED_LABEL_SETS {
        slots.remove(0);
    }
    slots.push((labels.clone(), m.clone()));
    m
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// `outbound_http_route_request_duration_seconds` buckets, in seconds.
pub const ROUTE_DURATION_BUCKETS_S: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn route_duration_histogram() -> Histogram {
    Histogram::new(ROUTE_DURATION_BUCKETS_S)
}

fn duration_histogram() -> Histogram {
    Histogram::new(CONNECTION_DURATION_BUCKETS_MS)
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Arc<Self> {
        Self::with_identity(None)
    }

    /// The proxy's metrics, with its identity's when it has one.
    pub fn with_identity(identity: Option<&crate::identity::IdentityMetrics>) -> Arc<Self> {
        let mut m = Metrics {
            registry: Registry::default(),
            request_total: Family::default(),
            response_total: Family::default(),
            response_latency_ms: Family::new_with_constructor(latency_histogram),
            tcp_open_total: Family::default(),
            tcp_close_total: Family::default(),
            tcp_open_connections: Family::default(),
            tcp_read_bytes_total: Family::default(),
            tcp_write_bytes_total: Family::default(),
            tcp_connection_duration_ms: Family::new_with_constructor(duration_histogram),
            protocol_errors: Family::default(),
            route_retry_requests: Family::default(),
            route_retry_successes: Family::default(),
            route_retry_limit_exceeded: Family::default(),
            http_route_statuses: Family::default(),
            http_route_duration: Family::new_with_constructor(route_duration_histogram),
            profile_route: ProfileRouteMetrics {
                requests: Family::default(),
                responses: Family::default(),
                latency: Family::new_with_constructor(latency_histogram),
                actual_requests: Family::default(),
                actual_responses: Family::default(),
            },
            trace_spans_exported: Counter::default(),
            trace_spans_dropped: Counter::default(),
        };
        let r = &mut m.registry;
        r.register(
            "request",
            "Total count of HTTP requests",
            m.request_total.clone(),
        );
        r.register(
            "response",
            "Total count of HTTP responses",
            m.response_total.clone(),
        );
        r.register(
            "response_latency_ms",
            "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds",
            m.response_latency_ms.clone(),
        );
        r.register(
            "tcp_open",
            "Total count of opened connections",
            m.tcp_open_total.clone(),
        );
        r.register(
            "tcp_close",
            "Total count of closed connections",
            m.tcp_close_total.clone(),
        );
        r.register(
            "tcp_open_connections",
            "Number of currently-open connections",
            m.tcp_open_connections.clone(),
        );
        r.register(
            "tcp_read_bytes",
            "Total count of bytes read from peers",
            m.tcp_read_bytes_total.clone(),
        );
        r.register(
            "tcp_write_bytes",
            "Total count of bytes written to peers",
            m.tcp_write_bytes_total.clone(),
        );
        r.register(
            "tcp_connection_duration_ms",
            "Connection lifetimes, in milliseconds",
            m.tcp_connection_duration_ms.clone(),
        );
        r.register(
            "outbound_http_route_retry_requests",
            "Requests an HTTP route's rule sent again after a retryable failure",
            m.route_retry_requests.clone(),
        );
        r.register(
            "outbound_http_route_retry_successes",
            "Requests that succeeded after one or more retries",
            m.route_retry_successes.clone(),
        );
        r.register(
            "outbound_http_route_retry_limit_exceeded",
            "Requests whose last permitted retry failed too",
            m.route_retry_limit_exceeded.clone(),
        );
        r.register(
            "outbound_http_route_request_statuses",
            "Requests that took an HTTPRoute rule, by the status the client got and the proxy's error when it answered itself",
            m.http_route_statuses.clone(),
        );
        r.register(
            "outbound_http_route_request_duration_seconds",
            "Time from a request taking an HTTPRoute rule to its response head, retries included, in seconds",
            m.http_route_duration.clone(),
        );
        let pr = &m.profile_route;
        r.register(
            "route_request",
            "Total count of HTTP requests on ServiceProfile routes",
            pr.requests.clone(),
        );
        r.register(
            "route_response",
            "Total count of HTTP responses on ServiceProfile routes, classified by the route's response classes",
            pr.responses.clone(),
        );
        r.register(
            "route_response_latency_ms",
            "Elapsed times between a request's headers being received and its final response's headers, retries included, per ServiceProfile route, in milliseconds",
            pr.latency.clone(),
        );
        r.register(
            "route_actual_request",
            "Total count of attempts sent on ServiceProfile routes, retries included",
            pr.actual_requests.clone(),
        );
        r.register(
            "route_actual_response",
            "Total count of responses to attempts on ServiceProfile routes, retries included",
            pr.actual_responses.clone(),
        );
        r.register(
            "inbound_protocol_errors",
            "Connections closed because the client sent input the proxy could not accept, by reason",
            m.protocol_errors.clone(),
        );
        r.register(
            "trace_spans_exported",
            "Spans of traced requests the trace collector accepted",
            m.trace_spans_exported.clone(),
        );
        r.register(
            "trace_spans_dropped",
            "Spans of traced requests dropped: the export queue was full, or the collector refused them or could not be reached",
            m.trace_spans_dropped.clone(),
        );
        r.register_collector(Box::new(process::ProcessCollector));
        if let Some(identity) = identity {
            identity.register(r);
        }
        Arc::new(m)
    }

    /// Renders every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Only a formatter error can land here; report it in-band.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }

    /// Records an accepted (`Peer::Src`) or established (`Peer::Dst`)
    /// connection.
    pub fn tcp_open(self: &Arc<Self>, labels: TcpLabels) -> TcpConn {
        self.tcp_open_total.get_or_create(&labels).inc();
        let open = self.tcp_open_connections.get_or_create(&labels).clone();
        open.inc();
        TcpConn {
            read: self.tcp_read_bytes_total.get_or_create(&labels).clone(),
            written: self.tcp_write_bytes_total.get_or_create(&labels).clone(),
            metrics: self.clone(),
            labels,
            opened: Instant::now(),
            open,
            failed: false,
        }
    }

    pub fn request(&self, labels: &TargetLabels) {
        self.request_total.get_or_create(labels).inc();
    }

    /// Records response headers: the latency part of a response.
    pub fn response_latency(&self, labels: &ResponseLabels, since: Instant) {
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        self.response_latency_ms.get_or_create(labels).observe(ms);
    }

    /// Records the end of a response (after its trailers, if any).
    pub fn response_end(&self, labels: &ResponseLabels) {
        self.response_total.get_or_create(labels).inc();
    }

    /// [`Metrics::request`] through a connection's cache.
    pub fn request_cached(&self, cache: &HandleCache, labels: &TargetLabels) {
        let mut slots = cache.lock();
        lookup(&mut slots.requests, labels, || {
            self.request_total.get_or_create(labels).clone()
        })
        .inc();
    }

    /// [`Metrics::response_latency`] through a connection's cache.
    pub fn response_latency_cached(
        &self,
        cache: &HandleCache,
        labels: &ResponseLabels,
        since: Instant,
    ) {
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        let mut slots = cache.lock();
        lookup(&mut slots.latencies, labels, || {
            self.response_latency_ms.get_or_create(labels).clone()
        })
        .observe(ms);
    }

    /// [`Metrics::response_end`] through a connection's cache.
    pub fn response_end_cached(&self, cache: &HandleCache, labels: &ResponseLabels) {
        let mut slots = cache.lock();
        lookup(&mut slots.responses, labels, || {
            self.response_total.get_or_create(labels).clone()
        })
        .inc();
    }

    pub fn protocol_error(&self, direction: Direction, reason: &'static str) {
        self.protocol_errors
            .get_or_create(&vec![("direction", direction.as_str()), ("reason", reason)])
            .inc();
    }
}

// === impl HandleCache ===

impl HandleCache {
    /// The authority as a shared string: the previous request's when it is
    /// the same, so that neither an allocation nor a string comparison of
    /// the label sets is needed.
    pub fn authority(&self, authority: &str) -> Arc<str> {
        let mut slots = self.lock();
        match &slots.authority {
            Some(a) if **a == *authority => a.clone(),
            _ => {
                let a: Arc<str> = Arc::from(authority);
                slots.authority = Some(a.clone());
                a
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheSlots> {
        // The slots are only ever replaced whole; a panic elsewhere while
        // holding the lock cannot leave them half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl TcpConn ===

impl TcpConn {
    /// Marks the connection as having ended in an error, for the
    /// `classification` label when it closes.
    pub fn set_failed(&mut self) {
        self.failed = true;
    }
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        self.open.dec();
        let labels = TcpCloseLabels {
            tcp: self.labels.clone(),
            classification: if self.failed {
                Classification::Failure
            } else {
                Classification::Success
            },
        };
        self.metrics.tcp_close_total.get_or_create(&labels).inc();
        let ms = self.opened.elapsed().as_secs_f64() * 1000.0;
        self.metrics
            .tcp_connection_duration_ms
            .get_or_create(&labels)
            .observe(ms);
    }
}

#[cfg(test)]
mod tests;
