//! Pure functions from HTTPRoutes to what a service port's outbound policy
//! serves: which routes attach to the port, in which order, where each rule
//! sends its requests, its timeouts and retries (the rule's own timeouts
//! and the route's Linkerd annotations) and its filters.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use strand_controller_core::{
    HttpBackendRef, HttpPathMatch, HttpRoute, HttpRouteFilter, HttpRouteMatch, HttpRouteRule,
    OutboundBackend, OutboundHttpRoute, OutboundRouteRule, PathMatchType, RouteAnnotations,
    Service, ServiceKey,
};

/// A backendRef that gets no traffic, and why.
pub(crate) struct Unresolved<'a> {
    pub(crate) backend: &'a HttpBackendRef,
    pub(crate) reason: &'static str,
}

/// The routes of `routes` (the HTTPRoutes of the service's namespace) that
/// attach to port `port` of `parent`, resolved against `services` (the
/// services of that namespace).
///
/// Order is Gateway API's tie-break between routes: the oldest first, then
/// by name (all share the namespace); a route without a creation time (never
/// stored) goes last. The proxy works out the precedence of matches itself.
pub(crate) fn attached<'a>(
    parent: &Service,
    port: u16,
    routes: impl Iterator<Item = &'a HttpRoute>,
    services: &BTreeMap<String, Service>,
    cluster_domain: &str,
) -> Vec<OutboundHttpRoute> {
    let mut attached: Vec<&HttpRoute> = routes
        .filter(|r| r.attaches_to(&parent.metadata.name, port))
        .collect();
    attached.sort_by(|a, b| order(a, b));
    attached
        .into_iter()
        .map(|route| {
            // Refused when applied; a route stored before the annotations
            // were read gets none of them (`State` logs it).
            let annotations = route.annotations().unwrap_or_default();
            let convert =
                |r: &HttpRouteRule| rule(r, &annotations, parent, port, services, cluster_domain);
            OutboundHttpRoute {
                api: route.api,
                namespace: route.metadata.namespace.clone(),
                name: route.metadata.name.clone(),
                rules: match route.spec.rules.as_slice() {
                    // Gateway API's default: one rule for every request.
                    [] => vec![convert(&HttpRouteRule::default())],
                    rules => rules.iter().map(convert).collect(),
                },
            }
        })
        .collect()
}

/// The backendRefs of `route` that name a service or port that does not
/// exist (weight-0 backends, which get nothing anyway, are left out).
pub(crate) fn unresolved<'a>(
    route: &'a HttpRoute,
    services: &'a BTreeMap<String, Service>,
) -> impl Iterator<Item = Unresolved<'a>> {
    route
        .spec
        .rules
        .iter()
        .flat_map(|r| &r.backend_refs)
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

fn order(a: &HttpRoute, b: &HttpRoute) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// RFC 3339 in UTC at a fixed width (as the store writes it) orders as text
/// as it does in time.
fn order_key(r: &HttpRoute) -> (bool, Option<&str>, &str, &str) {
    let created = r.metadata.creation_timestamp.as_deref();
    (
        created.is_none(),
        created,
        &r.metadata.namespace,
        &r.metadata.name,
    )
}

fn rule(
    rule: &HttpRouteRule,
    annotations: &RouteAnnotations,
    parent: &Service,
    port: u16,
    services: &BTreeMap<String, Service>,
    cluster_domain: &str,
) -> OutboundRouteRule {
    let matches = if rule.matches.is_empty() {
        vec![HttpRouteMatch {
            path: Some(root()),
            ..HttpRouteMatch::default()
        }]
    } else {
        rule.matches
            .iter()
            .map(|m| HttpRouteMatch {
                path: Some(m.path.clone().unwrap_or_else(root)),
                ..m.clone()
            })
            .collect()
    };
    let backends = if rule.backend_refs.is_empty() {
        vec![backend(parent, port, 1, cluster_domain)]
    } else {
        rule.backend_refs
            .iter()
            .filter(|b| b.weight() > 0)
            .filter_map(|b| {
                let svc = services.get(&b.name)?;
                let port = svc.port(b.port?)?.port;
                Some(backend(svc, port, b.weight(), cluster_domain))
            })
            .collect()
    };
    OutboundRouteRule {
        matches,
        backends,
        timeouts: annotations.timeouts(rule.timeouts.as_ref()),
        retry: annotations.retry.clone(),
        // Validation refuses a filter without its settings or of a type
        // strand does not implement, so none is left out here.
        filters: rule
            .filters
            .iter()
            .filter_map(HttpRouteFilter::to_route_filter)
            .collect(),
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
