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

use super::policy;
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
    HttpHeader, HttpHeaderFilter, HttpRouteMatch, OutboundBackend, OutboundHttpRoute,
    OutboundRouteRule, PathMatchType, PathModifier, RedirectScheme, RouteFilter, RouteRedirect,
    RouteRetry,
};

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

pub(super) fn http_route(route: &OutboundHttpRoute) -> HttpRoute {
    HttpRoute {
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Resource(Resource {
                group: route.api.group().to_string(),
                kind: HTTP_ROUTE_KIND.to_string(),
                name: route.name.clone(),
                namespace: route.namespace.clone(),
                section: String::new(),
                port: 0,
            })),
        }),
        hosts: Vec::new(),
        rules: route.rules.iter().map(rule).collect(),
    }
}

fn rule(rule: &OutboundRouteRule) -> http_route::Rule {
    let distribution = if rule.backends.is_empty() {
        http_route::distribution::Kind::Empty(http_route::distribution::Empty {})
    } else {
        http_route::distribution::Kind::RandomAvailable(http_route::distribution::RandomAvailable {
            backends: rule.backends.iter().map(backend).collect(),
        })
    };
    let timeouts = api::Timeouts {
        request: rule.timeouts.request.and_then(convert::duration),
        response: rule.timeouts.response.and_then(convert::duration),
        idle: rule.timeouts.idle.and_then(convert::duration),
    };
    #[expect(
        deprecated,
        reason = "the API asks servers to keep setting it, to timeouts.response, for older proxies"
    )]
    let legacy = http_route::Rule {
        request_timeout: timeouts.response,
        ..Default::default()
    };
    http_route::Rule {
        matches: rule.matches.iter().map(route_match).collect(),
        filters: rule.filters.iter().map(filter).collect(),
        backends: Some(http_route::Distribution {
            kind: Some(distribution),
        }),
        timeouts: Some(timeouts),
        retry: rule.retry.as_ref().map(retry),
        allow_l5d_request_headers: false,
        ..legacy
    }
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
        backoff: Some(ExponentialBackoff {
            min_backoff: convert::duration(RETRY_MIN_BACKOFF),
            max_backoff: convert::duration(RETRY_MAX_BACKOFF),
            jitter_ratio: RETRY_JITTER_RATIO,
            // Linkerd's policy controller leaves it off.
            respect_retry_after_hint: false,
        }),
    }
}

fn filter(f: &RouteFilter) -> http_route::Filter {
    use http_route::filter::Kind;
    let kind = match f {
        RouteFilter::RequestHeaderModifier(h) => {
            Kind::RequestHeaderModifier(api::RequestHeaderModifier {
                add: Some(header_list(&h.add)),
                set: Some(header_list(&h.set)),
                remove: remove_list(h),
            })
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

fn backend(b: &OutboundBackend) -> http_route::WeightedRouteBackend {
    http_route::WeightedRouteBackend {
        weight: b.weight,
        backend: Some(http_route::RouteBackend {
            backend: Some(policy::balancer(&b.service, b.port, &b.fqdn)),
            ..Default::default()
        }),
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
        headers: m
            .headers
            .iter()
            .map(|h| HeaderMatch {
                name: h.name.clone(),
                value: Some(header_match::Value::Exact(h.value.clone().into_bytes())),
            })
            .collect(),
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
