//! HTTPRoutes: which attach to a port, in what order, where their rules
//! send, and which changes wake the port's watchers.

use super::*;
use std::time::Duration;
use strand_controller_core::{
    HttpRoute, Kind, OutboundRouteRule, RouteRetry, RouteTimeouts, parse_manifests,
};

/// An HTTPRoute `name` in [`NS`] created at second `created` of a day,
/// with the given `parentRefs` and `rules` (YAML flow sequences).
fn route(name: &str, created: u32, parents: &str, rules: &str) -> HttpRoute {
    let text = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: {parents}\n  rules: {rules}\n"
    );
    let mut r = match parse_manifests(&text).expect("a valid route").pop() {
        Some(Resource::HttpRoute(r)) => r,
        other => panic!("not a route: {other:?}"),
    };
    r.metadata.creation_timestamp = Some(format!("2026-01-01T00:00:{created:02}Z"));
    r
}

const WEB_80: &str = "[{name: web, group: core, kind: Service, port: 80}]";

fn canary(v1: u32, v2: u32) -> HttpRoute {
    route(
        "canary",
        1,
        WEB_80,
        &format!(
            "[{{backendRefs: [{{name: web-v1, port: 80, weight: {v1}}}, {{name: web-v2, port: 80, weight: {v2}}}]}}]"
        ),
    )
}

fn route_key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::HttpRoute, NS, name)
}

/// Each rule's backends as `name:port=weight`.
fn backends(rx: &mut ServiceWatch) -> Vec<Vec<String>> {
    let view = seen(rx).expect("a view");
    rule_backends(view.http_routes.iter().flat_map(|r| &r.rules))
}

#[test]
fn a_route_attaches_to_its_port_with_resolved_backends() {
    let index = with_services(&["web", "web-v1", "web-v2"]);
    let mut http = index.watch(&key("web"), 80);
    let mut admin = index.watch(&key("web"), 9990);
    let mut v1 = index.watch(&key("web-v1"), 80);
    assert!(seen(&mut http).expect("view").http_routes.is_empty());
    seen(&mut admin);
    seen(&mut v1);

    index.apply(Resource::HttpRoute(canary(90, 10)));
    assert!(changed(&http));
    assert!(!changed(&admin), "the route names port 80 only");
    assert!(!changed(&v1), "a backend's own view is unchanged");
    let view = seen(&mut http).expect("view");
    let [r] = &view.http_routes[..] else {
        panic!("one route: {:?}", view.http_routes);
    };
    assert_eq!(
        (r.api.group(), &*r.namespace, &*r.name),
        ("gateway.networking.k8s.io", NS, "canary")
    );
    let [rule] = &r.rules[..] else {
        panic!("one rule");
    };
    assert_eq!(rule.backends[0].fqdn, "web-v1.shop.svc.cluster.local");
    // No matches: one of every path.
    let path = rule.matches[0].path.as_ref().expect("a path");
    assert_eq!((&*path.value, rule.matches.len()), ("/", 1));
    assert_eq!(backends(&mut http), [["web-v1:80=90", "web-v2:80=10"]]);

    // The same route again wakes nobody; new weights do.
    index.apply(Resource::HttpRoute(canary(90, 10)));
    assert!(!changed(&http));
    index.apply(Resource::HttpRoute(canary(0, 100)));
    assert_eq!(
        backends(&mut http),
        [["web-v2:80=100"]],
        "weight 0 is left out"
    );

    index.delete(&route_key("canary"));
    assert!(changed(&http));
    assert!(seen(&mut http).expect("view").http_routes.is_empty());
}

#[test]
fn a_missing_backend_is_left_out_until_it_exists() {
    let index = with_services(&["web", "web-v1"]);
    index.apply(Resource::HttpRoute(canary(90, 10)));
    let mut http = index.watch(&key("web"), 80);
    assert_eq!(backends(&mut http), [["web-v1:80=90"]]);

    index.apply(Resource::Service(service("web-v2", "web-v2", "10.96.0.20")));
    assert!(changed(&http), "the backend's service appeared");
    assert_eq!(backends(&mut http), [["web-v1:80=90", "web-v2:80=10"]]);

    // A port the service lacks is left out too.
    let mut v2 = service("web-v2", "web-v2", "10.96.0.20");
    v2.spec.ports.remove(0);
    index.apply(Resource::Service(v2));
    assert_eq!(backends(&mut http), [["web-v1:80=90"]]);

    index.delete(&svc_key("web-v1"));
    index.delete(&svc_key("web-v2"));
    assert_eq!(
        backends(&mut http),
        [Vec::<String>::new()],
        "nothing left: the rule has no backends"
    );
}

#[test]
fn defaults_send_to_the_parent() {
    let index = with_services(&["web"]);
    // No rules at all, and a rule without backendRefs, on every port.
    index.apply(Resource::HttpRoute(route(
        "all",
        1,
        "[{name: web, group: core}]",
        "[]",
    )));
    index.apply(Resource::HttpRoute(route(
        "api",
        2,
        "[{name: web, group: core}]",
        "[{matches: [{path: {type: Exact, value: /api}}, {method: POST}], timeouts: {request: 2s, backendRequest: 0s}}]",
    )));
    let mut admin = index.watch(&key("web"), 9990);
    let view = seen(&mut admin).expect("view");
    let names: Vec<_> = view.http_routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["all", "api"]);
    for r in &view.http_routes {
        let rule: &OutboundRouteRule = &r.rules[0];
        let [b] = &rule.backends[..] else {
            panic!("the parent alone: {rule:?}");
        };
        assert_eq!(
            (&*b.service.name, b.port, b.weight, &*b.fqdn),
            ("web", 9990, 1, "web.shop.svc.cluster.local")
        );
    }
    let api = &view.http_routes[1].rules[0];
    assert_eq!(api.timeouts.request, Some(Duration::from_secs(2)));
    assert_eq!(api.timeouts.response, None, "0s disables it");
    assert_eq!(api.retry, None, "no retry annotation, no retries");
    // A match without a path gets every path.
    let paths: Vec<_> = api
        .matches
        .iter()
        .map(|m| m.path.as_ref().map(|p| (p.kind, p.value.clone())))
        .collect();
    assert_eq!(
        paths,
        [
            Some((strand_controller_core::PathMatchType::Exact, "/api".into())),
            Some((
                strand_controller_core::PathMatchType::PathPrefix,
                "/".into()
            )),
        ]
    );
}

#[test]
fn routes_are_ordered_by_age_then_name() {
    let index = with_services(&["web"]);
    let rules = "[{}]";
    index.apply(Resource::HttpRoute(route("c", 5, WEB_80, rules)));
    index.apply(Resource::HttpRoute(route("b", 7, WEB_80, rules)));
    index.apply(Resource::HttpRoute(route("a", 7, WEB_80, rules)));
    let mut unstored = route("0a", 0, WEB_80, rules);
    unstored.metadata.creation_timestamp = None;
    index.apply(Resource::HttpRoute(unstored));
    let mut rx = index.watch(&key("web"), 80);
    let names: Vec<_> = seen(&mut rx)
        .expect("view")
        .http_routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, ["c", "a", "b", "0a"]);
}

#[test]
fn unrelated_route_changes_do_not_wake_watchers() {
    let index = with_services(&["web", "api", "web-v1"]);
    let rx = index.watch(&key("web"), 80);
    index.apply(Resource::HttpRoute(route(
        "other",
        1,
        "[{name: api, group: core}]",
        "[{backendRefs: [{name: web-v1, port: 80}]}]",
    )));
    let mut elsewhere = canary(1, 1);
    elsewhere.metadata.namespace = "other".into();
    index.apply(Resource::HttpRoute(elsewhere));
    index.delete(&route_key("missing"));
    // A backend of another service's route changes.
    index.apply(Resource::Service(service("web-v1", "web-v1", "10.96.0.30")));
    assert!(!changed(&rx));
}

#[test]
fn a_route_before_its_service_and_reset() {
    let index = index();
    index.apply(Resource::HttpRoute(canary(90, 10)));
    let mut http = index.watch(&key("web"), 80);
    assert!(seen(&mut http).is_none());
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    assert_eq!(backends(&mut http), [Vec::<String>::new()]);

    // A resync without the route removes it; with it, restores it.
    let web = Resource::Service(service("web", "web", "10.96.0.10"));
    let v1 = Resource::Service(service("web-v1", "web-v1", "10.96.0.11"));
    index.reset(vec![web.clone(), v1.clone()]);
    assert!(seen(&mut http).expect("view").http_routes.is_empty());
    index.reset(vec![web, v1, Resource::HttpRoute(canary(90, 10))]);
    assert_eq!(backends(&mut http), [["web-v1:80=90"]]);
}

#[test]
fn annotations_give_every_rule_retries_and_timeouts() {
    let index = with_services(&["web", "web-v1"]);
    let mut http = index.watch(&key("web"), 80);
    seen(&mut http);
    let annotated = |annotations: &[(&str, &str)]| {
        let mut r = route(
            "retried",
            1,
            WEB_80,
            "[{timeouts: {request: 2s, backendRequest: 1s}}, {backendRefs: [{name: web-v1, port: 80}]}]",
        );
        r.metadata.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Resource::HttpRoute(r)
    };
    let rules = |rx: &mut ServiceWatch| -> Vec<(RouteTimeouts, Option<RouteRetry>)> {
        seen(rx).expect("view").http_routes[0]
            .rules
            .iter()
            .map(|r| (r.timeouts, r.retry.clone()))
            .collect()
    };
    let ms = |ms| Some(Duration::from_millis(ms));

    index.apply(annotated(&[
        ("retry.linkerd.io/http", "gateway-error,429"),
        ("retry.linkerd.io/limit", "3"),
        ("retry.linkerd.io/timeout", "300ms"),
        ("timeout.linkerd.io/request", "5s"),
    ]));
    assert!(changed(&http));
    let retry = RouteRetry {
        limit: 3,
        statuses: vec![502..=504, 429..=429],
        timeout: ms(300),
    };
    assert_eq!(
        rules(&mut http),
        [
            // The annotation's request timeout wins over the rule's; the
            // rule keeps its backendRequest.
            (
                RouteTimeouts {
                    request: ms(5000),
                    response: ms(1000),
                    idle: None,
                },
                Some(retry.clone()),
            ),
            (
                RouteTimeouts {
                    request: ms(5000),
                    response: None,
                    idle: None,
                },
                Some(retry),
            ),
        ]
    );

    // A change of annotations alone reaches the watchers; `0s` turns the
    // rule's timeout off.
    index.apply(annotated(&[("timeout.linkerd.io/response", "0s")]));
    assert!(changed(&http));
    assert_eq!(
        rules(&mut http)[0],
        (
            RouteTimeouts {
                request: ms(2000),
                response: None,
                idle: None,
            },
            None
        )
    );
}

#[test]
fn filters_reach_the_view_and_their_changes_wake_watchers() {
    use strand_controller_core::{
        HttpHeader, HttpHeaderFilter, PathModifier, RouteFilter, RouteRedirect,
    };
    let index = with_services(&["web"]);
    let mut http = index.watch(&key("web"), 80);
    seen(&mut http);
    let filtered = |value: &str| {
        Resource::HttpRoute(route(
            "filtered",
            1,
            WEB_80,
            &format!(
                "[{{filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-env, value: {value}}}]}}}}]}}, {{matches: [{{path: {{value: /old}}}}], filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}}}}}]}}]"
            ),
        ))
    };
    let filters = |rx: &mut ServiceWatch| -> Vec<Vec<RouteFilter>> {
        seen(rx).expect("view").http_routes[0]
            .rules
            .iter()
            .map(|r| r.filters.clone())
            .collect()
    };
    let set = |value: &str| {
        RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
            set: vec![HttpHeader {
                name: "x-env".into(),
                value: value.into(),
            }],
            ..HttpHeaderFilter::default()
        })
    };
    let redirect = RouteFilter::RequestRedirect(RouteRedirect {
        scheme: None,
        hostname: None,
        path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
        port: None,
        status: 302,
    });

    index.apply(filtered("a"));
    assert!(changed(&http));
    assert_eq!(filters(&mut http), [vec![set("a")], vec![redirect.clone()]]);
    // The redirect rule keeps the parent as its backend.
    assert_eq!(backends(&mut http), [["web:80=1"], ["web:80=1"]]);

    // A filter's change alone reaches the watchers; the same again does not.
    index.apply(filtered("b"));
    assert!(changed(&http));
    assert_eq!(filters(&mut http), [vec![set("b")], vec![redirect]]);
    index.apply(filtered("b"));
    assert!(!changed(&http));
}
