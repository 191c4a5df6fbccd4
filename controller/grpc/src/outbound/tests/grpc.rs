//! GRPCRoutes in the outbound policy: the gRPC protocol with the routes
//! and then the default one, their matches, filters and retries, and what
//! they override.

use super::*;
use linkerd2_proxy_api::grpc_route::{GrpcRouteMatch, GrpcRpcMatch};
use linkerd2_proxy_api::http_route::{HeaderMatch, RequestHeaderModifier, header_match};
use linkerd2_proxy_api::http_types::{Headers, headers::Header};
use linkerd2_proxy_api::outbound::{GrpcRoute, grpc_route};
use std::time::Duration;
use strand_controller_core::{
    GrpcMethodMatch, GrpcRetryConditions, GrpcRouteApi, HttpHeader, HttpHeaderFilter,
    HttpHeaderMatch, OutboundBackend, OutboundGrpcRoute, OutboundGrpcRouteRule, RouteFilter,
    RouteRetry, RouteTimeouts, ValueMatchType,
};

fn backend(name: &str, weight: u32) -> OutboundBackend {
    OutboundBackend {
        service: ServiceKey::new("default", name),
        port: 8080,
        fqdn: format!("{name}.default.svc.cluster.local"),
        weight,
    }
}

/// A GRPCRoute `name` with one rule: `ListAll` of the emoji service with
/// an exact and a regex header match, to `backends`.
fn route(name: &str, backends: Vec<OutboundBackend>) -> OutboundGrpcRoute {
    let header = |name: &str, value: &str, kind| HttpHeaderMatch {
        kind,
        name: name.into(),
        value: value.into(),
    };
    OutboundGrpcRoute {
        api: GrpcRouteApi::GatewayV1alpha2,
        namespace: "default".into(),
        name: name.into(),
        rules: vec![OutboundGrpcRouteRule {
            matches: vec![
                strand_controller_core::GrpcRouteMatch {
                    method: Some(GrpcMethodMatch {
                        kind: ValueMatchType::Exact,
                        service: Some("emojivoto.v1.EmojiService".into()),
                        method: Some("ListAll".into()),
                    }),
                    headers: vec![
                        header("x-canary", "true", ValueMatchType::Exact),
                        header("x-user", "a[0-9]+", ValueMatchType::RegularExpression),
                    ],
                },
                strand_controller_core::GrpcRouteMatch {
                    method: Some(GrpcMethodMatch {
                        kind: ValueMatchType::Exact,
                        service: None,
                        method: Some("Vote".into()),
                    }),
                    headers: Vec::new(),
                },
                strand_controller_core::GrpcRouteMatch::default(),
            ],
            backends,
            timeouts: RouteTimeouts {
                request: Some(Duration::from_secs(2)),
                response: Some(Duration::from_millis(500)),
                idle: None,
            },
            retry: None,
            filters: vec![RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
                set: vec![HttpHeader {
                    name: "X-Env".into(),
                    value: "canary".into(),
                }],
                ..HttpHeaderFilter::default()
            })],
        }],
    }
}

fn with_grpc_routes(protocol: Protocol, routes: Vec<OutboundGrpcRoute>) -> policy::Inputs {
    policy::Inputs {
        grpc_routes: routes,
        ..inputs(protocol)
    }
}

/// The gRPC routes of a policy, which must be gRPC's.
fn grpc_routes(inputs: &policy::Inputs) -> Vec<GrpcRoute> {
    let Some(proxy_protocol::Kind::Grpc(g)) = policy::build(inputs).protocol.and_then(|p| p.kind)
    else {
        panic!("gRPC");
    };
    assert_eq!(g.failure_accrual, None, "as the HTTP kinds");
    g.routes
}

#[test]
fn grpc_routes_make_the_policy_grpc_with_the_default_route_last() {
    for protocol in [
        Protocol::Detect,
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Grpc,
    ] {
        let routed = with_grpc_routes(
            protocol,
            vec![
                route("first", vec![backend("a", 3), backend("b", 1)]),
                route("second", Vec::new()),
            ],
        );
        let routes = grpc_routes(&routed);
        let [first, second, default] = &routes[..] else {
            panic!("two routes and the default: {routes:?}");
        };
        for (route, name) in [(first, "first"), (second, "second")] {
            let Some(metadata::Kind::Resource(r)) = route.metadata.clone().and_then(|m| m.kind)
            else {
                panic!("resource metadata");
            };
            assert_eq!(
                (&*r.group, &*r.kind, &*r.name, &*r.namespace, r.port),
                ("gateway.networking.k8s.io", "GRPCRoute", name, "default", 0)
            );
            assert!(route.hosts.is_empty());
        }
        let Some(grpc_route::distribution::Kind::RandomAvailable(random)) = first.rules[0]
            .backends
            .as_ref()
            .and_then(|d| d.kind.as_ref())
        else {
            panic!("random-available: {first:?}");
        };
        let got = random.backends.iter().map(|w| {
            (
                w.backend.as_ref().and_then(|b| b.backend.as_ref()),
                w.weight,
            )
        });
        assert_eq!(weighted(got), A3_B1);
        assert!(matches!(
            second.rules[0]
                .backends
                .as_ref()
                .and_then(|d| d.kind.as_ref()),
            Some(grpc_route::distribution::Kind::Empty(_))
        ));

        // The default: Default("grpc") metadata, no matches, and the
        // service's own balancer exactly as the HTTP default route has it.
        assert_eq!(
            default.metadata.clone().and_then(|m| m.kind),
            Some(metadata::Kind::Default("grpc".into()))
        );
        let [rule] = &default.rules[..] else {
            panic!("one rule");
        };
        assert!(rule.matches.is_empty());
        let Some(grpc_route::distribution::Kind::FirstAvailable(first)) =
            rule.backends.as_ref().and_then(|d| d.kind.as_ref())
        else {
            panic!("first-available: {rule:?}");
        };
        let own = first.backends[0].backend.as_ref().expect("backend");
        let without_routes = policy::build(&inputs(Protocol::Http1));
        let Some(proxy_protocol::Kind::Http1(h1)) = without_routes.protocol.and_then(|p| p.kind)
        else {
            panic!("HTTP/1");
        };
        assert_eq!(own, http_backend(&h1.routes));
    }
}

#[test]
fn rules_take_linkerds_shape() {
    let routes = grpc_routes(&with_grpc_routes(
        Protocol::Detect,
        vec![route("split", vec![backend("a", 1)])],
    ));
    let rule = &routes[0].rules[0];
    let header = |name: &str, value| HeaderMatch {
        name: name.into(),
        value: Some(value),
    };
    assert_eq!(
        rule.matches,
        [
            GrpcRouteMatch {
                rpc: Some(GrpcRpcMatch {
                    service: "emojivoto.v1.EmojiService".into(),
                    method: "ListAll".into(),
                }),
                headers: vec![
                    header("x-canary", header_match::Value::Exact(b"true".to_vec())),
                    header("x-user", header_match::Value::Regex("a[0-9]+".into())),
                ],
            },
            // An unset part is "".
            GrpcRouteMatch {
                rpc: Some(GrpcRpcMatch {
                    service: String::new(),
                    method: "Vote".into(),
                }),
                headers: Vec::new(),
            },
            // No method match: no rpc.
            GrpcRouteMatch::default(),
        ]
    );
    assert_eq!(
        rule.filters,
        [grpc_route::Filter {
            kind: Some(grpc_route::filter::Kind::RequestHeaderModifier(
                RequestHeaderModifier {
                    add: Some(Headers::default()),
                    set: Some(Headers {
                        headers: vec![Header {
                            name: "x-env".into(),
                            value: b"canary".to_vec(),
                        }],
                    }),
                    remove: Vec::new(),
                }
            )),
        }]
    );
    let t = rule.timeouts.expect("timeouts");
    let pb = crate::convert::duration;
    assert_eq!(t.request, pb(Duration::from_secs(2)));
    assert_eq!(t.response, pb(Duration::from_millis(500)));
    assert_eq!(t.idle, None);
    #[expect(deprecated, reason = "checking what older proxies read")]
    let legacy = rule.request_timeout;
    assert_eq!(legacy, t.response);
    assert_eq!(rule.retry, None, "no retry.linkerd.io/grpc, no retries");
    assert!(!rule.allow_l5d_request_headers);
}

#[test]
fn retries_take_linkerds_shape() {
    use linkerd2_proxy_api::outbound::ExponentialBackoff;
    let mut r = route("retried", vec![backend("a", 1)]);
    r.rules[0].retry = Some(RouteRetry {
        limit: 2,
        statuses: GrpcRetryConditions {
            deadline_exceeded: true,
            unavailable: true,
            ..GrpcRetryConditions::default()
        },
        timeout: Some(Duration::from_millis(300)),
    });
    let routes = grpc_routes(&with_grpc_routes(Protocol::Grpc, vec![r.clone()]));
    let pb = crate::convert::duration;
    assert_eq!(
        routes[0].rules[0].retry,
        Some(grpc_route::Retry {
            max_retries: 2,
            max_request_bytes: 65_536,
            conditions: Some(grpc_route::retry::Conditions {
                cancelled: false,
                deadine_exceeded: true,
                internal: false,
                resource_exhausted: false,
                unavailable: true,
            }),
            timeout: pb(Duration::from_millis(300)),
            backoff: Some(ExponentialBackoff {
                min_backoff: pb(Duration::from_millis(25)),
                max_backoff: pb(Duration::from_millis(250)),
                jitter_ratio: 1.0,
                respect_retry_after_hint: false,
            }),
        })
    );

    // Every condition, and no per-try timeout.
    let retry = r.rules[0].retry.as_mut().expect("retry");
    retry.statuses = GrpcRetryConditions {
        cancelled: true,
        deadline_exceeded: true,
        internal: true,
        resource_exhausted: true,
        unavailable: true,
    };
    retry.timeout = None;
    let routes = grpc_routes(&with_grpc_routes(Protocol::Grpc, vec![r]));
    let got = routes[0].rules[0].retry.expect("retry");
    assert_eq!(got.timeout, None);
    let c = got.conditions.expect("conditions");
    assert!(
        c.cancelled && c.deadine_exceeded && c.internal && c.resource_exhausted && c.unavailable
    );
}

#[test]
fn http_routes_are_ignored_while_a_grpc_route_is_attached() {
    let mut inputs = with_route(Protocol::Detect, &[("a", 1)]);
    inputs.grpc_routes = vec![route("split", vec![backend("b", 1)])];
    let routes = grpc_routes(&inputs);
    let kinds: Vec<_> = routes
        .iter()
        .map(|r| match r.metadata.clone().and_then(|m| m.kind) {
            Some(metadata::Kind::Resource(r)) => r.kind,
            Some(metadata::Kind::Default(d)) => format!("default {d}"),
            None => "none".into(),
        })
        .collect();
    assert_eq!(kinds, ["GRPCRoute", "default grpc"]);

    // Without the GRPCRoute, the HTTPRoute is back.
    inputs.grpc_routes.clear();
    let Some(proxy_protocol::Kind::Detect(detect)) =
        policy::build(&inputs).protocol.and_then(|p| p.kind)
    else {
        panic!("detect");
    };
    let h1 = detect.http1.expect("http1");
    assert_eq!(h1.routes.len(), 1);
    assert!(matches!(
        h1.routes[0].metadata.clone().and_then(|m| m.kind),
        Some(metadata::Kind::Resource(r)) if r.kind == "HTTPRoute"
    ));
}

#[test]
fn without_grpc_routes_nothing_changes_and_opaque_stays_opaque() {
    // The default gRPC route of a gRPC port keeps its match of every call.
    let routes = grpc_routes(&inputs(Protocol::Grpc));
    let [default] = &routes[..] else {
        panic!("the default alone: {routes:?}");
    };
    assert_eq!(default.rules[0].matches, [GrpcRouteMatch::default()]);
    for protocol in [
        Protocol::Detect,
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Opaque,
    ] {
        assert_eq!(
            policy::build(&with_grpc_routes(protocol, Vec::new())),
            policy::build(&inputs(protocol)),
        );
    }
    // An opaque port has no requests to route.
    let opaque = with_grpc_routes(Protocol::Opaque, vec![route("split", Vec::new())]);
    assert!(matches!(
        policy::build(&opaque).protocol.and_then(|p| p.kind),
        Some(proxy_protocol::Kind::Opaque(_))
    ));
}
