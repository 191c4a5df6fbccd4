//! GRPCRoutes: attached to a port like HTTPRoutes (same order, same
//! backend resolution), their matches, annotations and filters, and which
//! changes wake the port's watchers.

use super::*;
use std::time::Duration;
use strand_controller_core::{
    GrpcRetryConditions, GrpcRoute, GrpcRouteMatch, Kind, RouteFilter, RouteRetry, RouteTimeouts,
    parse_manifests,
};

/// A GRPCRoute `name` in [`NS`] created at second `created` of a day, with
/// the given `parentRefs` and `rules` (YAML flow sequences) and
/// annotations.
fn grpc_route(
    name: &str,
    created: u32,
    parents: &str,
    rules: &str,
    annotations: &[(&str, &str)],
) -> Resource {
    let text = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: {parents}\n  rules: {rules}\n"
    );
    let mut r: GrpcRoute = match parse_manifests(&text).expect("a valid route").pop() {
        Some(Resource::GrpcRoute(r)) => r,
        other => panic!("not a GRPCRoute: {other:?}"),
    };
    r.metadata.creation_timestamp = Some(format!("2026-01-01T00:00:{created:02}Z"));
    r.metadata.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Resource::GrpcRoute(r)
}

const EMOJI_80: &str = "[{name: emoji, group: core, kind: Service, port: 80}]";

/// `ListAll` split between emoji-v1 and emoji-v2.
fn split(v1: u32, v2: u32) -> Resource {
    grpc_route(
        "split",
        1,
        EMOJI_80,
        &format!(
            "[{{matches: [{{method: {{service: emojivoto.v1.EmojiService, method: ListAll}}}}], backendRefs: [{{name: emoji-v1, port: 80, weight: {v1}}}, {{name: emoji-v2, port: 80, weight: {v2}}}]}}]"
        ),
        &[],
    )
}

fn route_key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::GrpcRoute, NS, name)
}

/// Each rule's backends as `name:port=weight`.
fn backends(rx: &mut ServiceWatch) -> Vec<Vec<String>> {
    let view = seen(rx).expect("a view");
    rule_backends(view.grpc_routes.iter().flat_map(|r| &r.rules))
}

#[test]
fn a_route_attaches_to_its_port_and_detaches() {
    let index = with_services(&["emoji", "emoji-v1", "emoji-v2"]);
    let mut grpc = index.watch(&key("emoji"), 80);
    let mut admin = index.watch(&key("emoji"), 9990);
    let mut v1 = index.watch(&key("emoji-v1"), 80);
    assert!(seen(&mut grpc).expect("view").grpc_routes.is_empty());
    seen(&mut admin);
    seen(&mut v1);

    index.apply(split(90, 10));
    assert!(changed(&grpc));
    assert!(!changed(&admin), "the route names port 80 only");
    assert!(!changed(&v1), "a backend's own view is unchanged");
    let view = seen(&mut grpc).expect("view");
    assert!(view.http_routes.is_empty());
    let [r] = &view.grpc_routes[..] else {
        panic!("one route: {:?}", view.grpc_routes);
    };
    assert_eq!(
        (r.api.group(), &*r.namespace, &*r.name),
        ("gateway.networking.k8s.io", NS, "split")
    );
    let [rule] = &r.rules[..] else {
        panic!("one rule");
    };
    let method = rule.matches[0].method.as_ref().expect("a method match");
    assert_eq!(method.method.as_deref(), Some("ListAll"));
    assert_eq!(rule.backends[0].fqdn, "emoji-v1.shop.svc.cluster.local");
    assert_eq!(backends(&mut grpc), [["emoji-v1:80=90", "emoji-v2:80=10"]]);

    // The same route again wakes nobody; a change does.
    index.apply(split(90, 10));
    assert!(!changed(&grpc));
    index.apply(split(0, 100));
    assert!(changed(&grpc));
    assert_eq!(
        backends(&mut grpc),
        [["emoji-v2:80=100"]],
        "weight 0 is left out"
    );

    // Deleting an HTTPRoute of the same name leaves it alone.
    index.delete(&ResourceKey::new(Kind::HttpRoute, NS, "split"));
    assert!(!changed(&grpc));
    index.delete(&route_key("split"));
    assert!(changed(&grpc));
    assert!(seen(&mut grpc).expect("view").grpc_routes.is_empty());
}

#[test]
fn backends_resolve_as_for_http_routes() {
    let index = with_services(&["emoji", "emoji-v1"]);
    index.apply(split(90, 10));
    let mut grpc = index.watch(&key("emoji"), 80);
    assert_eq!(backends(&mut grpc), [["emoji-v1:80=90"]]);

    index.apply(Resource::Service(service(
        "emoji-v2",
        "emoji-v2",
        "10.96.0.20",
    )));
    assert!(changed(&grpc), "the backend's service appeared");
    assert_eq!(backends(&mut grpc), [["emoji-v1:80=90", "emoji-v2:80=10"]]);

    index.delete(&svc_key("emoji-v1"));
    assert!(changed(&grpc), "the backend's service went");
    assert_eq!(backends(&mut grpc), [["emoji-v2:80=10"]]);
    index.delete(&svc_key("emoji-v2"));
    assert_eq!(backends(&mut grpc), [Vec::<String>::new()], "nothing left");
}

#[test]
fn defaults_order_and_both_kinds_side_by_side() {
    let index = with_services(&["emoji"]);
    // No rules; a rule without matches or backendRefs; on every port.
    let every_port = "[{name: emoji, group: core}]";
    index.apply(grpc_route("b", 2, every_port, "[]", &[]));
    index.apply(grpc_route("a", 2, every_port, "[{}]", &[]));
    index.apply(grpc_route("c", 1, every_port, "[{}]", &[]));
    let http = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: shop}\nspec: {parentRefs: [{name: emoji, group: core}]}\n";
    let http = parse_manifests(http).expect("valid").remove(0);
    index.apply(http);
    let mut admin = index.watch(&key("emoji"), 9990);
    let view = seen(&mut admin).expect("view");
    let names: Vec<_> = view.grpc_routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["c", "a", "b"], "oldest first, then by name");
    assert_eq!(view.http_routes.len(), 1, "both kinds are in the view");
    for r in &view.grpc_routes {
        let [rule] = &r.rules[..] else {
            panic!("one rule: {r:?}");
        };
        assert_eq!(rule.matches, [GrpcRouteMatch::default()], "every call");
        let [b] = &rule.backends[..] else {
            panic!("the parent alone: {rule:?}");
        };
        assert_eq!((&*b.service.name, b.port, b.weight), ("emoji", 9990, 1));
        assert_eq!(
            (rule.retry.clone(), rule.timeouts),
            (None, RouteTimeouts::default())
        );
    }

    // A resync without the GRPCRoutes removes them, and only them.
    let emoji = Resource::Service(service("emoji", "emoji", "10.96.0.10"));
    let http = parse_manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: shop}\nspec: {parentRefs: [{name: emoji, group: core}]}\n",
    )
    .expect("valid")
    .remove(0);
    index.reset(vec![emoji, http]);
    let view = seen(&mut admin).expect("view");
    assert!(view.grpc_routes.is_empty());
    assert_eq!(view.http_routes.len(), 1);
}

#[test]
fn annotations_filters_and_their_changes_reach_the_view() {
    use strand_controller_core::{HttpHeader, HttpHeaderFilter};
    let index = with_services(&["emoji"]);
    let mut grpc = index.watch(&key("emoji"), 80);
    seen(&mut grpc);
    let route = |value: &str, annotations: &[(&str, &str)]| {
        grpc_route(
            "retried",
            1,
            EMOJI_80,
            &format!(
                "[{{filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-env, value: {value}}}]}}}}]}}]"
            ),
            annotations,
        )
    };
    let retried = [
        ("retry.linkerd.io/grpc", "unavailable,internal"),
        ("retry.linkerd.io/limit", "3"),
        ("retry.linkerd.io/timeout", "300ms"),
        ("timeout.linkerd.io/request", "5s"),
        ("timeout.linkerd.io/response", "1s"),
    ];
    index.apply(route("a", &retried));
    assert!(changed(&grpc));
    let view = seen(&mut grpc).expect("view");
    let rule = &view.grpc_routes[0].rules[0];
    let ms = |ms| Some(Duration::from_millis(ms));
    assert_eq!(
        rule.retry,
        Some(RouteRetry {
            limit: 3,
            statuses: GrpcRetryConditions {
                unavailable: true,
                internal: true,
                ..GrpcRetryConditions::default()
            },
            timeout: ms(300),
        })
    );
    assert_eq!(
        rule.timeouts,
        RouteTimeouts {
            request: ms(5000),
            response: ms(1000),
            idle: None,
        }
    );
    assert_eq!(
        rule.filters,
        [RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
            set: vec![HttpHeader {
                name: "x-env".into(),
                value: "a".into(),
            }],
            ..HttpHeaderFilter::default()
        })]
    );

    // A filter's change alone, then the annotations' alone, wake watchers.
    index.apply(route("b", &retried));
    assert!(changed(&grpc));
    seen(&mut grpc);
    index.apply(route("b", &[]));
    assert!(changed(&grpc));
    assert_eq!(
        seen(&mut grpc).expect("view").grpc_routes[0].rules[0].retry,
        None
    );
    index.apply(route("b", &[]));
    assert!(!changed(&grpc));
}

#[test]
fn unrelated_route_changes_do_not_wake_watchers() {
    let index = with_services(&["emoji", "voting", "emoji-v1"]);
    let rx = index.watch(&key("emoji"), 80);
    index.apply(grpc_route(
        "other",
        1,
        "[{name: voting, group: core}]",
        "[{backendRefs: [{name: emoji-v1, port: 80}]}]",
        &[],
    ));
    index.delete(&route_key("missing"));
    // A backend of another service's route changes.
    index.apply(Resource::Service(service(
        "emoji-v1",
        "emoji-v1",
        "10.96.0.30",
    )));
    assert!(!changed(&rx));
}
