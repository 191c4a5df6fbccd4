//! A service's HTTP routes, as the outbound policy gives them (Gateway API
//! HTTPRoutes attached to the service): which rule a request matches, and
//! the weighted backends and timeouts of that rule.
//!
//! ```text
//!  policy ──from_policy──▶ HttpRoutes ──select(method, uri, headers)──▶ HttpRule
//!                           (empty: no routes attached,                 ├─ backends: [(weight, dst path)]
//!                            the service's own endpoints serve)         └─ timeouts
//! ```
//!
//! A rule is chosen as the Gateway API orders matches: an exact path over
//! a prefix, a longer prefix over a shorter one, then a method, then more
//! header matches, then more query matches; ties go to the earlier route
//! (the control plane lists routes oldest first) and the earlier rule.

use std::sync::Arc;
use std::time::Duration;

mod filter;

pub use self::filter::{HeaderModifier, PathRewrite, Redirect, RouteFilter};

use linkerd2_proxy_api::http_route as api;
use linkerd2_proxy_api::meta::{Metadata, metadata};
use linkerd2_proxy_api::outbound::{
    Backend, OutboundPolicy, backend, http_route::distribution::Kind as Dist, proxy_protocol,
};

/// The routes of a service; empty when none is attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRoutes {
    pub routes: Vec<HttpRoute>,
    /// The policy also lists the control plane's default route: a request
    /// that matches no rule goes to the service itself (as the strand
    /// control plane sends GRPCRoutes) rather than failing (as it sends
    /// HTTPRoutes, Linkerd's way).
    pub fallback: bool,
}

/// One attached route (an HTTPRoute or a GRPCRoute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// `<namespace>/<name>`, for logs and errors.
    pub name: Arc<str>,
    pub kind: RouteKind,
    pub rules: Vec<HttpRule>,
}

/// Which Gateway API kind a route is (its metrics' `route_kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteKind {
    #[default]
    Http,
    Grpc,
}

impl RouteKind {
    /// The kind's name: `HTTPRoute` or `GRPCRoute`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

/// One rule of a route: when it applies and where its requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRule {
    /// Any one of these must match; the policy always lists at least one.
    pub matches: Vec<RouteMatch>,
    /// The backends, by weight (none: the proxy answers with an error).
    pub backends: Vec<WeightedBackend>,
    /// The longest a request may wait for its response, retries
    /// included (`Timeouts.request`).
    pub request_timeout: Option<Duration>,
    /// The longest one attempt may wait (`Timeouts.response`: Gateway
    /// API's `backendRequest`).
    pub backend_timeout: Option<Duration>,
    /// When and how often a failed request is sent again.
    pub retry: Option<RetryPolicy>,
    /// Header changes and redirects, in the rule's order.
    pub filters: Arc<[RouteFilter]>,
}

/// A rule's retries (Linkerd's `retry.linkerd.io/*` annotations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Requests with longer bodies are sent once (the body is not kept).
    pub max_request_bytes: u32,
    /// Response statuses that are retried (inclusive ranges).
    pub statuses: Vec<(u16, u16)>,
    /// gRPC statuses that are retried, when the response head carries one
    /// (a trailers-only response: how gRPC servers answer an error).
    pub grpc_codes: Vec<u32>,
    /// The longest one attempt may wait for its response.
    pub timeout: Option<Duration>,
    /// The wait before the first retry, doubling up to the second.
    pub backoff: (Duration, Duration),
}

impl RetryPolicy {
    /// Whether a response with `status` (and `grpc_status` in its head,
    /// if any) is retried.
    pub fn retries(&self, status: u16, grpc_status: Option<u32>) -> bool {
        self.statuses
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
            || grpc_status.is_some_and(|g| self.grpc_codes.contains(&g))
    }

    /// The wait before retry number `n` (1-based): the backoff doubled
    /// each time up to its maximum, then scaled into its upper half by
    /// `jitter` (0 to 1), so that clients that failed together do not
    /// retry together.
    pub fn delay(&self, n: u32, jitter: f64) -> Duration {
        let (min, max) = self.backoff;
        let exp = min
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(max);
        exp.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// What a request must look like; every part given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: Option<PathMatch>,
    /// Header name (lowercase) and what its value must be.
    pub headers: Vec<(String, HeaderValueMatch)>,
    /// Query parameter name and exact value.
    pub query: Vec<(String, String)>,
    pub method: Option<String>,
}

/// A header match's value: exact, or a regular expression over the whole
/// value (as ServiceProfile path regexes are compiled: bounded DFAs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValueMatch {
    Exact(Vec<u8>),
    Regex(crate::profile::PathRegex),
}

impl HeaderValueMatch {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            HeaderValueMatch::Exact(v) => v == value,
            HeaderValueMatch::Regex(re) => re.is_match(value),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// A prefix of whole path segments: `/api` matches `/api` and
    /// `/api/x`, not `/apix`.
    Prefix(String),
    /// A gRPC method of any service: `/<service>/<method>` (a GRPCRoute
    /// match that names only the method).
    GrpcMethod(String),
    /// A regular expression, which this proxy does not evaluate: the match
    /// never applies.
    Unsupported,
}

/// A backend of a rule: a service's destination path and its share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedBackend {
    pub weight: u32,
    /// The destination path of its endpoints (`<fqdn>:<port>`).
    pub path: Arc<str>,
}

/// How specific a match is, compared field by field (greater wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Precedence {
    exact_path: bool,
    prefix_len: usize,
    method: bool,
    headers: usize,
    query: usize,
}

// === impl HttpRoutes ===

impl HttpRoutes {
    /// The routes the control plane attached to the target: its HTTP
    /// routes that are resources (the routes it synthesises by default
    /// stand for "no route attached"). The same route listed for HTTP/1
    /// and HTTP/2 counts once.
    pub fn from_policy(policy: &OutboundPolicy) -> HttpRoutes {
        use proxy_protocol::Kind;
        let lists = match policy.protocol.as_ref().and_then(|p| p.kind.as_ref()) {
            Some(Kind::Detect(d)) => vec![
                d.http1.as_ref().map(|h| &h.routes),
                d.http2.as_ref().map(|h| &h.routes),
            ],
            Some(Kind::Http1(h)) => vec![Some(&h.routes)],
            Some(Kind::Http2(h)) => vec![Some(&h.routes)],
            Some(Kind::Grpc(g)) => return Self::from_grpc(&g.routes),
            _ => Vec::new(),
        };
        let mut routes: Vec<HttpRoute> = Vec::new();
        let mut default = false;
        for route in lists.into_iter().flatten().flatten() {
            let Some(name) = resource_name(&route.metadata) else {
                default = true;
                continue;
            };
            if routes.iter().any(|r| r.name == name) {
                continue;
            }
            let rules = route.rules.iter().map(rule).collect();
            routes.push(HttpRoute {
                name,
                kind: RouteKind::Http,
                rules,
            });
        }
        let fallback = default && !routes.is_empty();
        HttpRoutes { routes, fallback }
    }

    /// GRPCRoutes, as rules over the request's path (`/<service>/<method>`).
    fn from_grpc(list: &[linkerd2_proxy_api::outbound::GrpcRoute]) -> HttpRoutes {
        let routes: Vec<HttpRoute> = list
            .iter()
            .filter_map(|route| {
                Some(HttpRoute {
                    name: resource_name(&route.metadata)?,
                    kind: RouteKind::Grpc,
                    rules: route.rules.iter().map(grpc_rule).collect(),
                })
            })
            .collect();
        let default = list.iter().any(|r| resource_name(&r.metadata).is_none());
        HttpRoutes {
            fallback: default && !routes.is_empty(),
            routes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every backend path any rule names, once each.
    pub fn backend_paths(&self) -> Vec<Arc<str>> {
        let mut paths: Vec<Arc<str>> = Vec::new();
        for b in self
            .routes
            .iter()
            .flat_map(|r| &r.rules)
            .flat_map(|r| &r.backends)
        {
            if !paths.contains(&b.path) {
                paths.push(b.path.clone());
            }
        }
        paths
    }

    /// The rule a request matches (and its route), by the Gateway API's
    /// precedence; `None` when no rule matches.
    pub fn select(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<(&HttpRoute, &HttpRule)> {
        let mut best: Option<(Precedence, &HttpRoute, &HttpRule)> = None;
        for route in &self.routes {
            for rule in &route.rules {
                for m in &rule.matches {
                    let Some(p) = m.matches(method, uri, headers) else {
                        continue;
                    };
                    // Strictly greater: earlier routes and rules win ties.
                    if best.as_ref().is_none_or(|(b, _, _)| p > *b) {
                        best = Some((p, route, rule));
                    }
                }
            }
        }
        best.map(|(_, route, rule)| (route, rule))
    }
}

// === impl HttpRule ===

impl HttpRule {
    /// The longest path prefix among this rule's matches that `path` is
    /// under (what a redirect's prefix rewrite replaces).
    pub fn matched_prefix(&self, path: &str) -> Option<&str> {
        self.matches
            .iter()
            .filter_map(|m| match &m.path {
                Some(PathMatch::Prefix(p)) if prefix_matches(p.trim_end_matches('/'), path) => {
                    Some(p.as_str())
                }
                _ => None,
            })
            .max_by_key(|p| p.trim_end_matches('/').len())
    }
}

// === impl RouteMatch ===

impl RouteMatch {
    /// This match's precedence when the request matches it.
    fn matches(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<Precedence> {
        let path = uri.path();
        let (exact_path, prefix_len) = match &self.path {
            None => (false, 0),
            Some(PathMatch::Exact(p)) => (p == path).then_some((true, p.len()))?,
            Some(PathMatch::Prefix(p)) => {
                // `/a/` is the prefix `/a`, and as specific.
                let p = p.trim_end_matches('/');
                prefix_matches(p, path).then_some((false, p.len()))?
            }
            Some(PathMatch::GrpcMethod(m)) => {
                let (service, method) = path.strip_prefix('/')?.split_once('/')?;
                (!service.is_empty() && method == m).then_some((false, 0))?
            }
            Some(PathMatch::Unsupported) => return None,
        };
        if self.method.as_deref().is_some_and(|m| m != method.as_str()) {
            return None;
        }
        for (name, value) in &self.headers {
            if !headers
                .get_all(name.as_str())
                .iter()
                .any(|v| value.matches(v.as_bytes()))
            {
                return None;
            }
        }
        for (name, value) in &self.query {
            let query = uri.query().unwrap_or("");
            let found = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .any(|(k, v)| k == name && v == value);
            if !found {
                return None;
            }
        }
        Some(Precedence {
            exact_path,
            prefix_len,
            method: self.method.is_some(),
            headers: self.headers.len(),
            query: self.query.len(),
        })
    }
}

/// A prefix match of whole segments (`prefix` without a trailing `/`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `<namespace>/<name>` of a route that is a resource; `None` for the
/// control plane's default routes.
fn resource_name(meta: &Option<Metadata>) -> Option<Arc<str>> {
    match meta.as_ref()?.kind.as_ref()? {
        metadata::Kind::Resource(r) => Some(format!("{}/{}", r.namespace, r.name).into()),
        metadata::Kind::Default(_) => None,
    }
}

/// An HTTPRoute's or a GRPCRoute's rule, whose proto types have the same
/// shape: its matches (through `$matched`), backends, timeouts, retry
/// (`$retry`) and filters (`$filters`).
macro_rules! route_rule {
    ($rule:expr, $dist:path, $matched:expr, $retry:expr, $filters:expr) => {{
        use $dist as D;
        let rule = $rule;
        let matches = if rule.matches.is_empty() {
            // The Gateway API's default: every request.
            vec![RouteMatch::default()]
        } else {
            rule.matches.iter().map($matched).collect()
        };
        let backends = match rule.backends.as_ref().and_then(|d| d.kind.as_ref()) {
            Some(D::RandomAvailable(r)) => weighted(
                r.backends
                    .iter()
                    .filter_map(|w| Some((w.weight, w.backend.as_ref()?.backend.as_ref()?))),
            ),
            Some(D::FirstAvailable(f)) => weighted(
                f.backends
                    .iter()
                    .filter_map(|b| b.backend.as_ref())
                    .map(|b| (1, b))
                    .take(1),
            ),
            Some(D::Empty(_)) | None => Vec::new(),
        };
        let (request_timeout, backend_timeout) = timeouts(rule.timeouts.as_ref());
        HttpRule {
            matches,
            backends,
            request_timeout,
            backend_timeout,
            retry: rule.retry.as_ref().and_then($retry),
            filters: $filters(&rule.filters).into(),
        }
    }};
}

fn rule(rule: &linkerd2_proxy_api::outbound::http_route::Rule) -> HttpRule {
    route_rule!(rule, Dist, route_match, retry, filter::filters)
}

/// A GRPCRoute rule: its method matches as path matches.
fn grpc_rule(rule: &linkerd2_proxy_api::outbound::grpc_route::Rule) -> HttpRule {
    route_rule!(
        rule,
        linkerd2_proxy_api::outbound::grpc_route::distribution::Kind,
        grpc_match,
        grpc_retry,
        filter::grpc_filters
    )
}

/// The balancer backends among `(weight, backend)`, without those of no
/// weight.
fn weighted<'a>(backends: impl Iterator<Item = (u32, &'a Backend)>) -> Vec<WeightedBackend> {
    backends
        .filter(|(weight, _)| *weight > 0)
        .filter_map(|(weight, b)| {
            Some(WeightedBackend {
                weight,
                path: balancer_path(b)?,
            })
        })
        .collect()
}

/// A rule's request and backend (one attempt's) timeouts; zero is none.
fn timeouts(t: Option<&api::Timeouts>) -> (Option<Duration>, Option<Duration>) {
    (
        t.and_then(|t| duration(t.request)),
        t.and_then(|t| duration(t.response)),
    )
}

/// A policy duration; absent, invalid or zero is none.
fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
}

/// `cancelled`, `deadline-exceeded`, ... as gRPC status codes.
fn grpc_retry(r: &linkerd2_proxy_api::outbound::grpc_route::Retry) -> Option<RetryPolicy> {
    let c = r.conditions.as_ref()?;
    let grpc_codes: Vec<u32> = [
        (c.cancelled, 1),
        (c.deadine_exceeded, 4),
        (c.resource_exhausted, 8),
        (c.internal, 13),
        (c.unavailable, 14),
    ]
    .into_iter()
    .filter_map(|(on, code)| on.then_some(code))
    .collect();
    retry_policy(
        (r.max_retries, r.max_request_bytes),
        (Vec::new(), grpc_codes),
        r.timeout,
        r.backoff.as_ref(),
    )
}

/// A GRPCRoute match: the service and method (either may be empty) as a
/// path match, and its header matches.
fn grpc_match(m: &linkerd2_proxy_api::grpc_route::GrpcRouteMatch) -> RouteMatch {
    let (service, method) = m
        .rpc
        .as_ref()
        .map_or(("", ""), |r| (r.service.as_str(), r.method.as_str()));
    let path = match (service, method) {
        ("", "") => None,
        (s, "") => Some(PathMatch::Prefix(format!("/{s}"))),
        ("", m) => Some(PathMatch::GrpcMethod(m.to_string())),
        (s, m) => Some(PathMatch::Exact(format!("/{s}/{m}"))),
    };
    let (headers, unsupported) = header_matches(&m.headers);
    RouteMatch {
        path: unless_unsupported(path, unsupported),
        headers,
        ..RouteMatch::default()
    }
}

/// Linkerd's backoff when the policy names none.
const DEFAULT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(25), Duration::from_millis(250));

fn retry(r: &linkerd2_proxy_api::outbound::http_route::Retry) -> Option<RetryPolicy> {
    let statuses: Vec<(u16, u16)> = r
        .conditions
        .as_ref()
        .map(|c| {
            c.status_ranges
                .iter()
                .filter_map(|s| {
                    let start = u16::try_from(s.start).ok()?;
                    let end = u16::try_from(s.end).ok()?;
                    (start <= end).then_some((start, end))
                })
                .collect()
        })
        .unwrap_or_default();
    retry_policy(
        (r.max_retries, r.max_request_bytes),
        (statuses, Vec::new()),
        r.timeout,
        r.backoff.as_ref(),
    )
}

/// A retry policy from either route kind's `Retry`: none without retries
/// or without a condition (`(HTTP status ranges, gRPC codes)`).
fn retry_policy(
    (max_retries, max_request_bytes): (u32, u32),
    (statuses, grpc_codes): (Vec<(u16, u16)>, Vec<u32>),
    timeout: Option<prost_types::Duration>,
    backoff_policy: Option<&linkerd2_proxy_api::outbound::ExponentialBackoff>,
) -> Option<RetryPolicy> {
    if max_retries == 0 || statuses.is_empty() && grpc_codes.is_empty() {
        return None;
    }
    Some(RetryPolicy {
        max_retries,
        max_request_bytes,
        statuses,
        grpc_codes,
        timeout: duration(timeout),
        backoff: backoff(backoff_policy),
    })
}

/// The policy's backoff, or Linkerd's.
fn backoff(b: Option<&linkerd2_proxy_api::outbound::ExponentialBackoff>) -> (Duration, Duration) {
    b.map_or(DEFAULT_BACKOFF, |b| {
        let min = duration(b.min_backoff).unwrap_or(DEFAULT_BACKOFF.0);
        let max = duration(b.max_backoff)
            .unwrap_or(DEFAULT_BACKOFF.1)
            .max(min);
        (min, max)
    })
}

fn route_match(m: &api::HttpRouteMatch) -> RouteMatch {
    use api::{path_match, query_param_match};
    let path = m
        .path
        .as_ref()
        .and_then(|p| p.kind.as_ref())
        .map(|k| match k {
            path_match::Kind::Exact(p) => PathMatch::Exact(p.clone()),
            path_match::Kind::Prefix(p) => PathMatch::Prefix(p.clone()),
            path_match::Kind::Regex(_) => PathMatch::Unsupported,
        });
    let (headers, mut unsupported) = header_matches(&m.headers);
    let query = m
        .query_params
        .iter()
        .filter_map(|q| match &q.value {
            Some(query_param_match::Value::Exact(v)) => Some((q.name.clone(), v.clone())),
            _ => {
                unsupported = true;
                None
            }
        })
        .collect();
    let method = m.method.as_ref().and_then(|m| {
        use linkerd2_proxy_api::http_types::http_method::{Registered, Type};
        match m.r#type.as_ref()? {
            Type::Registered(r) => Registered::try_from(*r)
                .ok()
                .map(|r| r.as_str_name().to_string()),
            Type::Unregistered(s) => Some(s.clone()),
        }
    });
    RouteMatch {
        path: unless_unsupported(path, unsupported),
        headers,
        query,
        method,
    }
}

/// `path`, or [`PathMatch::Unsupported`] when another part of the match
/// could not be read: a match this proxy cannot evaluate must not match
/// everything.
fn unless_unsupported(path: Option<PathMatch>, unsupported: bool) -> Option<PathMatch> {
    if unsupported {
        Some(PathMatch::Unsupported)
    } else {
        path
    }
}

/// Header matches (names lower-cased), and whether one could not be read
/// (no value, or a regex that does not compile within the proxy's limits).
fn header_matches(headers: &[api::HeaderMatch]) -> (Vec<(String, HeaderValueMatch)>, bool) {
    use api::header_match;
    let mut unsupported = false;
    let parsed = headers
        .iter()
        .filter_map(|h| {
            let value = match &h.value {
                Some(header_match::Value::Exact(v)) => Some(HeaderValueMatch::Exact(v.clone())),
                Some(header_match::Value::Regex(re)) => crate::profile::PathRegex::new(re)
                    .ok()
                    .map(HeaderValueMatch::Regex),
                None => None,
            };
            if value.is_none() {
                unsupported = true;
            }
            Some((h.name.to_ascii_lowercase(), value?))
        })
        .collect();
    (parsed, unsupported)
}

/// The destination path of a balancer backend.
fn balancer_path(b: &Backend) -> Option<Arc<str>> {
    match b.kind.as_ref()? {
        backend::Kind::Balancer(bal) => match bal.discovery.as_ref()?.kind.as_ref()? {
            backend::endpoint_discovery::Kind::Dst(dst) if !dst.path.is_empty() => {
                Some(dst.path.as_str().into())
            }
            _ => None,
        },
        backend::Kind::Forward(_) => None,
    }
}

#[cfg(test)]
mod tests;
