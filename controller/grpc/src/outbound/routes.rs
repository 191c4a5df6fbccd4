//! HTTPRoutes as `outbound::HttpRoute`s, as Linkerd's policy controller
//! serves them for a Service parent:
//!
//! - `metadata`: `Resource{group: gateway.networking.k8s.io | policy.linkerd.io,
//!   kind: HTTPRoute, name, namespace}`; no `hosts`.
//! - one `Rule` per rule, its matches as written (the index fills in
//!   Gateway API's defaults: prefix `/` for a rule or match without a path).
//! - backends: `RandomAvailable` over one balancer per backend Service port
//!   (weighted), or `Empty` when no backend is left (the proxy answers 500).
//! - timeouts: Gateway API's `request` is `Timeouts.request` (the whole
//!   request, from its start to the response's end); `backendRequest` is
//!   `Timeouts.response` (one request to a backend, until its response
//!   ends), also written to the deprecated `Rule.request_timeout`, as the
//!   API asks. The route's `timeout.linkerd.io/request`, `/response` and
//!   `/idle` annotations win over the rule's fields (the index combines
//!   them). `0s` or absent: no timeout.
//! - retries, from the route's `retry.linkerd.io/*` annotations, as
//!   Linkerd's policy controller serves them: `Retry{max_retries: limit,
//!   max_request_bytes: 64 KiB, conditions: {status_ranges}, timeout:
//!   per-try timeout, backoff: 25 ms to 250 ms, jitter 1.0}`; no `Retry`
//!   without annotations.
//! - filters, in the rule's order, as `Rule.filters`:
//!   `RequestHeaderModifier` and `ResponseHeaderModifier` as the filter
//!   kinds of those names, `{add, set: Headers (always present, maybe
//!   empty), remove}`, header names lower-cased as Linkerd's policy
//!   controller sends them; `RequestRedirect` as `Redirect{scheme:
//!   registered HTTP | HTTPS or absent, host: "" for the request's,
//!   path: PathModifier{full | prefix} or absent, port: 0 for unset,
//!   status}`. The status is always set (Gateway API's default 302
//!   filled in): the API reads 0 as 301.
//!
//! GRPCRoutes (module `grpc`) share the metadata, backends, timeouts,
//! backoff, header matches and header modifiers.

use crate::convert;
use linkerd2_proxy_api::http_route::{
    self as api, HeaderMatch, PathMatch, QueryParamMatch, header_match, path_match,
    query_param_match,
};
use linkerd2_proxy_api::http_types::{Headers, HttpMethod, Scheme, headers, http_method, scheme};
use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};
use linkerd2_proxy_api::outbound::{ExponentialBackoff, HttpRoute, http_route};
use std::time::Duration;
use strand_controller_core::{
    HttpHeader, HttpHeaderFilter, HttpHeaderMatch, HttpRouteMatch, OutboundHttpRoute,
    OutboundRouteRule, PathMatchType, PathModifier, RedirectScheme, RouteFilter, RouteRedirect,
    RouteRetry, RouteTimeouts, ValueMatchType,
};

mod grpc;

pub(super) use self::grpc::grpc_route;

/// The route's kind in `Metadata`.
const HTTP_ROUTE_KIND: &str = "HTTPRoute";

/// Requests with a longer body are sent once: the proxy must keep a body
/// to send it again. Linkerd's policy controller's value (and its docs':
/// "a request with a body larger than 64KiB will not be retried").
const RETRY_MAX_REQUEST_BYTES: u32 = 64 * 1024;

/// The wait before the first retry, doubling up to the maximum, with up to
/// as much again added at random so that clients that failed together do
/// not retry together: Linkerd's policy controller's values.
const RETRY_MIN_BACKOFF: Duration = Duration::from_millis(25);
const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(250);
const RETRY_JITTER_RATIO: f32 = 1.0;

/// A rule of `$route` (`http_route` or `grpc_route`, whose types differ
/// and whose shapes are the same) with `matches`, `filters` and `retry` of
/// its kind, and the backends and timeouts of `rule`, an
/// `OutboundRouteRule`: `RandomAvailable` over a balancer per backend
/// (weighted), or `Empty` without any.
macro_rules! route_rule {
    ($route:ident, $rule:expr, $matches:expr, $filters:expr, $retry:expr) => {{
        use $route::distribution::{Empty, Kind, RandomAvailable};
        let rule = $rule;
        let backends = if rule.backends.is_empty() {
            Kind::Empty(Empty {})
        } else {
            Kind::RandomAvailable(RandomAvailable {
                backends: rule
                    .backends
                    .iter()
                    .map(|b| $route::WeightedRouteBackend {
                        weight: b.weight,
                        backend: Some($route::RouteBackend {
                            backend: Some($crate::outbound::policy::balancer(
                                &b.service, b.port, &b.fqdn,
                            )),
                            ..Default::default()
                        }),
                    })
                    .collect(),
            })
        };
        let timeouts = $crate::outbound::routes::timeouts(&rule.timeouts);
        #[expect(
            deprecated,
            reason = "the API asks servers to keep setting it, to timeouts.response, for older proxies"
        )]
        let legacy = $route::Rule {
            request_timeout: timeouts.response,
            ..Default::default()
        };
        $route::Rule {
            matches: $matches,
            filters: $filters,
            backends: Some($route::Distribution {
                kind: Some(backends),
            }),
            timeouts: Some(timeouts),
            retry: $retry,
            allow_l5d_request_headers: false,
            ..legacy
        }
    }};
}

use route_rule;

pub(super) fn http_route(route: &OutboundHttpRoute) -> HttpRoute {
    HttpRoute {
        metadata: Some(route_metadata(
            route.api.group(),
            HTTP_ROUTE_KIND,
            &route.name,
            &route.namespace,
        )),
        hosts: Vec::new(),
        rules: route.rules.iter().map(rule).collect(),
    }
}

/// A route resource as Linkerd's policy controller names it.
fn route_metadata(group: &str, kind: &str, name: &str, namespace: &str) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Resource(Resource {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            section: String::new(),
            port: 0,
        })),
    }
}

fn timeouts(t: &RouteTimeouts) -> api::Timeouts {
    api::Timeouts {
        request: t.request.and_then(convert::duration),
        response: t.response.and_then(convert::duration),
        idle: t.idle.and_then(convert::duration),
    }
}

fn rule(r: &OutboundRouteRule) -> http_route::Rule {
    route_rule!(
        http_route,
        r,
        r.matches.iter().map(route_match).collect(),
        r.filters.iter().map(filter).collect(),
        r.retry.as_ref().map(retry)
    )
}

fn retry(r: &RouteRetry) -> http_route::Retry {
    use http_route::retry::{Conditions, conditions::StatusRange};
    http_route::Retry {
        max_retries: r.limit,
        max_request_bytes: RETRY_MAX_REQUEST_BYTES,
        conditions: Some(Conditions {
            status_ranges: r
                .statuses
                .iter()
                .map(|s| StatusRange {
                    start: (*s.start()).into(),
                    end: (*s.end()).into(),
                })
                .collect(),
        }),
        timeout: r.timeout.and_then(convert::duration),
        backoff: Some(backoff()),
    }
}

fn backoff() -> ExponentialBackoff {
    ExponentialBackoff {
        min_backoff: convert::duration(RETRY_MIN_BACKOFF),
        max_backoff: convert::duration(RETRY_MAX_BACKOFF),
        jitter_ratio: RETRY_JITTER_RATIO,
        // Linkerd's policy controller leaves it off.
        respect_retry_after_hint: false,
    }
}

fn filter(f: &RouteFilter) -> http_route::Filter {
    use http_route::filter::Kind;
    let kind = match f {
        RouteFilter::RequestHeaderModifier(h) => {
            Kind::RequestHeaderModifier(request_header_modifier(h))
        }
        RouteFilter::ResponseHeaderModifier(h) => {
            Kind::ResponseHeaderModifier(api::ResponseHeaderModifier {
                add: Some(header_list(&h.add)),
                set: Some(header_list(&h.set)),
                remove: remove_list(h),
            })
        }
        RouteFilter::RequestRedirect(r) => Kind::Redirect(redirect(r)),
    };
    http_route::Filter { kind: Some(kind) }
}

fn request_header_modifier(h: &HttpHeaderFilter) -> api::RequestHeaderModifier {
    api::RequestHeaderModifier {
        add: Some(header_list(&h.add)),
        set: Some(header_list(&h.set)),
        remove: remove_list(h),
    }
}

fn header_list(list: &[HttpHeader]) -> Headers {
    Headers {
        headers: list
            .iter()
            .map(|h| headers::Header {
                name: h.name.to_ascii_lowercase(),
                value: h.value.clone().into_bytes(),
            })
            .collect(),
    }
}

fn remove_list(h: &HttpHeaderFilter) -> Vec<String> {
    h.remove.iter().map(|n| n.to_ascii_lowercase()).collect()
}

fn redirect(r: &RouteRedirect) -> api::RequestRedirect {
    use api::path_modifier::Replace;
    api::RequestRedirect {
        scheme: r.scheme.map(|s| Scheme {
            r#type: Some(scheme::Type::Registered(
                match s {
                    RedirectScheme::Http => scheme::Registered::Http,
                    RedirectScheme::Https => scheme::Registered::Https,
                }
                .into(),
            )),
        }),
        host: r.hostname.clone().unwrap_or_default(),
        path: r.path.as_ref().map(|p| api::PathModifier {
            replace: Some(match p {
                PathModifier::ReplaceFullPath(v) => Replace::Full(v.clone()),
                PathModifier::ReplacePrefixMatch(v) => Replace::Prefix(v.clone()),
            }),
        }),
        port: r.port.map_or(0, u32::from),
        status: r.status.into(),
    }
}

fn route_match(m: &HttpRouteMatch) -> api::HttpRouteMatch {
    api::HttpRouteMatch {
        path: m.path.as_ref().map(|p| PathMatch {
            kind: Some(match p.kind {
                PathMatchType::Exact => path_match::Kind::Exact(p.value.clone()),
                PathMatchType::PathPrefix => path_match::Kind::Prefix(p.value.clone()),
                // Refused when the route is applied; never reaches here.
                PathMatchType::RegularExpression => path_match::Kind::Regex(p.value.clone()),
            }),
        }),
        headers: m.headers.iter().map(header).collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| QueryParamMatch {
                name: q.name.clone(),
                value: Some(query_param_match::Value::Exact(q.value.clone())),
            })
            .collect(),
        method: m.method.map(|method| HttpMethod {
            r#type: Some(http_method::Type::Registered(method_of(method).into())),
        }),
    }
}

/// A header match; a regular expression only from a GRPCRoute (HTTPRoutes
/// refuse them).
fn header(h: &HttpHeaderMatch) -> HeaderMatch {
    HeaderMatch {
        name: h.name.clone(),
        value: Some(match h.kind {
            ValueMatchType::Exact => header_match::Value::Exact(h.value.clone().into_bytes()),
            ValueMatchType::RegularExpression => header_match::Value::Regex(h.value.clone()),
        }),
    }
}

fn method_of(m: strand_controller_core::HttpMethod) -> http_method::Registered {
    use http_method::Registered;
    use strand_controller_core::HttpMethod as M;
    match m {
        M::Get => Registered::Get,
        M::Head => Registered::Head,
        M::Post => Registered::Post,
        M::Put => Registered::Put,
        M::Delete => Registered::Delete,
        M::Connect => Registered::Connect,
        M::Options => Registered::Options,
        M::Trace => Registered::Trace,
        M::Patch => Registered::Patch,
    }
}
