//! Pure functions from HTTPRoutes and GRPCRoutes to what a service port's
//! outbound policy serves: which routes attach to the port, in which order,
//! where each rule sends its requests, its timeouts and retries (the rule's
//! own timeouts and the route's Linkerd annotations) and its filters.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use strand_controller_core::{
    GrpcRoute, GrpcRouteMatch, GrpcRouteRule, HttpBackendRef, HttpPathMatch, HttpRoute,
    HttpRouteFilter, HttpRouteMatch, HttpRouteRule, OutboundBackend, OutboundGrpcRoute,
    OutboundHttpRoute, OutboundRoute, OutboundRouteRule, PathMatchType, RouteTimeouts, Service,
    ServiceKey, ServiceRoute,
};

/// A backendRef that gets no traffic, and why.
pub(crate) struct Unresolved<'a> {
    pub(crate) backend: &'a HttpBackendRef,
    pub(crate) reason: &'static str,
}

/// What a rule's backends are resolved against: the parent service port
/// (for a rule without backendRefs) and the services of its namespace.
#[derive(Clone, Copy)]
pub(crate) struct Resolve<'a> {
    pub(crate) parent: &'a Service,
    pub(crate) port: u16,
    pub(crate) services: &'a BTreeMap<String, Service>,
    pub(crate) cluster_domain: &'a str,
}

/// The HTTPRoutes of `routes` (those of the service's namespace) that
/// attach to the port, resolved.
pub(crate) fn attached_http<'a>(
    at: Resolve<'_>,
    routes: impl Iterator<Item = &'a HttpRoute>,
) -> Vec<OutboundHttpRoute> {
    attached(at, routes)
        .map(|route| {
            // Refused when applied; a route stored before the annotations
            // were read gets none of them (`State` logs it).
            let annotations = route.annotations().unwrap_or_default();
            outbound(route, route.api, &route.spec.rules, |r: &HttpRouteRule| {
                at.rule(
                    http_matches(&r.matches),
                    &r.backend_refs,
                    annotations.timeouts(r.timeouts.as_ref()),
                    annotations.retry.clone(),
                    &r.filters,
                )
            })
        })
        .collect()
}

/// The GRPCRoutes of `routes` that attach to the port, resolved.
pub(crate) fn attached_grpc<'a>(
    at: Resolve<'_>,
    routes: impl Iterator<Item = &'a GrpcRoute>,
) -> Vec<OutboundGrpcRoute> {
    attached(at, routes)
        .map(|route| {
            let annotations = route.annotations().unwrap_or_default();
            outbound(route, route.api, &route.spec.rules, |r: &GrpcRouteRule| {
                at.rule(
                    grpc_matches(&r.matches),
                    &r.backend_refs,
                    // A GRPCRoute rule has no timeouts of its own.
                    annotations.timeouts(None),
                    annotations.retry.clone(),
                    &r.filters,
                )
            })
        })
        .collect()
}

/// `route` with its `rules` converted; without rules, Gateway API's
/// default: one rule for every request.
fn outbound<A, Rule: Default, M, R>(
    route: &impl ServiceRoute,
    api: A,
    rules: &[Rule],
    convert: impl Fn(&Rule) -> OutboundRouteRule<M, R>,
) -> OutboundRoute<A, M, R> {
    OutboundRoute {
        api,
        namespace: route.meta().namespace.clone(),
        name: route.meta().name.clone(),
        rules: match rules {
            [] => vec![convert(&Rule::default())],
            rules => rules.iter().map(convert).collect(),
        },
    }
}

/// The routes of `routes` that attach to the port.
///
/// Order is Gateway API's tie-break between routes: the oldest first, then
/// by name (all share the namespace); a route without a creation time (never
/// stored) goes last. The proxy works out the precedence of matches itself.
fn attached<'a, R: ServiceRoute + 'a>(
    at: Resolve<'_>,
    routes: impl Iterator<Item = &'a R>,
) -> impl Iterator<Item = &'a R> {
    let mut attached: Vec<&R> = routes
        .filter(|r| r.attaches_to(&at.parent.metadata.name, at.port))
        .collect();
    attached.sort_by(|a, b| order(*a, *b));
    attached.into_iter()
}

/// The backendRefs of `route` that name a service or port that does not
/// exist (weight-0 backends, which get nothing anyway, are left out).
pub(crate) fn unresolved<'a>(
    route: &'a impl ServiceRoute,
    services: &'a BTreeMap<String, Service>,
) -> impl Iterator<Item = Unresolved<'a>> {
    route
        .backend_refs()
        .filter(|b| b.weight() > 0)
        .filter_map(|backend| {
            let reason = match services.get(&backend.name) {
                None => "no such service",
                Some(svc) if backend.port.and_then(|p| svc.port(p)).is_none() => {
                    "the service has no such port"
                }
                Some(_) => return None,
            };
            Some(Unresolved { backend, reason })
        })
}

fn order(a: &impl ServiceRoute, b: &impl ServiceRoute) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// RFC 3339 in UTC at a fixed width (as the store writes it) orders as text
/// as it does in time.
fn order_key(r: &impl ServiceRoute) -> (bool, Option<&str>, &str, &str) {
    let meta = r.meta();
    let created = meta.creation_timestamp.as_deref();
    (created.is_none(), created, &meta.namespace, &meta.name)
}

/// Gateway API's defaults: a rule without matches matches every path, and
/// so does a match without a path.
fn http_matches(matches: &[HttpRouteMatch]) -> Vec<HttpRouteMatch> {
    if matches.is_empty() {
        return vec![HttpRouteMatch {
            path: Some(root()),
            ..HttpRouteMatch::default()
        }];
    }
    matches
        .iter()
        .map(|m| HttpRouteMatch {
            path: Some(m.path.clone().unwrap_or_else(root)),
            ..m.clone()
        })
        .collect()
}

/// Gateway API's default: a rule without matches matches every call.
fn grpc_matches(matches: &[GrpcRouteMatch]) -> Vec<GrpcRouteMatch> {
    if matches.is_empty() {
        return vec![GrpcRouteMatch::default()];
    }
    matches.to_vec()
}

// === impl Resolve ===

impl Resolve<'_> {
    fn rule<M, R>(
        &self,
        matches: Vec<M>,
        backend_refs: &[HttpBackendRef],
        timeouts: RouteTimeouts,
        retry: Option<R>,
        filters: &[HttpRouteFilter],
    ) -> OutboundRouteRule<M, R> {
        let backends = if backend_refs.is_empty() {
            vec![backend(self.parent, self.port, 1, self.cluster_domain)]
        } else {
            backend_refs
                .iter()
                .filter(|b| b.weight() > 0)
                .filter_map(|b| {
                    let svc = self.services.get(&b.name)?;
                    let port = svc.port(b.port?)?.port;
                    Some(backend(svc, port, b.weight(), self.cluster_domain))
                })
                .collect()
        };
        OutboundRouteRule {
            matches,
            backends,
            timeouts,
            retry,
            // Validation refuses a filter without its settings or of a type
            // strand does not implement, so none is left out here.
            filters: filters
                .iter()
                .filter_map(HttpRouteFilter::to_route_filter)
                .collect(),
        }
    }
}

fn backend(svc: &Service, port: u16, weight: u32, cluster_domain: &str) -> OutboundBackend {
    OutboundBackend {
        service: ServiceKey::new(&svc.metadata.namespace, &svc.metadata.name),
        port,
        fqdn: svc.fqdn(cluster_domain),
        weight,
    }
}

/// Gateway API's default path match: every path.
fn root() -> HttpPathMatch {
    HttpPathMatch {
        kind: PathMatchType::PathPrefix,
        value: "/".to_string(),
    }
}
