//! GRPCRoutes as `outbound::GrpcRoute`s, as Linkerd's policy controller
//! serves them for a Service parent, sharing the HTTP routes' parts:
//!
//! - `metadata`: `Resource{group: gateway.networking.k8s.io, kind:
//!   GRPCRoute, name, namespace}`; no `hosts`.
//! - one `Rule` per rule; each match `GrpcRouteMatch{rpc, headers}`, `rpc`
//!   `GrpcRpcMatch{service, method}` (`""` for a part left out) when the
//!   match names a method, else unset; headers `Exact` or `Regex` (a rule
//!   without matches has one empty match: every call).
//! - backends and timeouts as for HTTP routes (`timeout.linkerd.io/*`, as
//!   a GRPCRoute rule has no timeouts of its own).
//! - retries, from `retry.linkerd.io/grpc` (and `/limit`, `/timeout`):
//!   `Retry{max_retries, max_request_bytes: 64 KiB, conditions:
//!   {cancelled, deadine_exceeded, internal, resource_exhausted,
//!   unavailable}, timeout, backoff}` with HTTP's backoff.
//! - filters: `RequestHeaderModifier` only (all a GRPCRoute takes), encoded
//!   as for HTTP routes.

use super::{
    RETRY_MAX_REQUEST_BYTES, backoff, header, request_header_modifier, route_metadata, route_rule,
};
use crate::convert;
use linkerd2_proxy_api::grpc_route::{GrpcRouteMatch, GrpcRpcMatch};
use linkerd2_proxy_api::outbound::{GrpcRoute, grpc_route};
use strand_controller_core::{
    GrpcRouteRetry, OutboundGrpcRoute, OutboundGrpcRouteRule, RouteFilter,
};

/// The route's kind in `Metadata`.
const GRPC_ROUTE_KIND: &str = "GRPCRoute";

pub(in crate::outbound) fn grpc_route(route: &OutboundGrpcRoute) -> GrpcRoute {
    GrpcRoute {
        metadata: Some(route_metadata(
            route.api.group(),
            GRPC_ROUTE_KIND,
            &route.name,
            &route.namespace,
        )),
        hosts: Vec::new(),
        rules: route.rules.iter().map(rule).collect(),
    }
}

fn rule(r: &OutboundGrpcRouteRule) -> grpc_route::Rule {
    route_rule!(
        grpc_route,
        r,
        r.matches.iter().map(route_match).collect(),
        r.filters.iter().filter_map(filter).collect(),
        r.retry.as_ref().map(retry)
    )
}

fn route_match(m: &strand_controller_core::GrpcRouteMatch) -> GrpcRouteMatch {
    GrpcRouteMatch {
        rpc: m.method.as_ref().map(|rpc| GrpcRpcMatch {
            service: rpc.service.clone().unwrap_or_default(),
            method: rpc.method.clone().unwrap_or_default(),
        }),
        headers: m.headers.iter().map(header).collect(),
    }
}

fn retry(r: &GrpcRouteRetry) -> grpc_route::Retry {
    let c = r.statuses;
    grpc_route::Retry {
        max_retries: r.limit,
        max_request_bytes: RETRY_MAX_REQUEST_BYTES,
        conditions: Some(grpc_route::retry::Conditions {
            cancelled: c.cancelled,
            deadine_exceeded: c.deadline_exceeded,
            internal: c.internal,
            resource_exhausted: c.resource_exhausted,
            unavailable: c.unavailable,
        }),
        timeout: r.timeout.and_then(convert::duration),
        backoff: Some(backoff()),
    }
}

/// Validation refuses every other filter in a GRPCRoute, so none is left
/// out here.
fn filter(f: &RouteFilter) -> Option<grpc_route::Filter> {
    match f {
        RouteFilter::RequestHeaderModifier(h) => Some(grpc_route::Filter {
            kind: Some(grpc_route::filter::Kind::RequestHeaderModifier(
                request_header_modifier(h),
            )),
        }),
        RouteFilter::ResponseHeaderModifier(_) | RouteFilter::RequestRedirect(_) => None,
    }
}
