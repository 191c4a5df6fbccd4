use linkerd2_proxy_api::destination::WeightedAddr;
use linkerd2_proxy_api::outbound::{
    GrpcRoute, HttpRoute, OpaqueRoute, ProxyProtocol, TlsRoute,
    backend::{BalanceP2c, EndpointDiscovery, endpoint_discovery},
    grpc_route, http_route, opaque_route, tls_route,
};

use super::*;

const WEB: &str = "web.default.svc.cluster.local:8080";
const API: &str = "api.default.svc.cluster.local:80";

fn meta(default: bool) -> Option<Metadata> {
    let kind = if default {
        metadata::Kind::Default("http".into())
    } else {
        metadata::Kind::Resource(Default::default())
    };
    Some(Metadata { kind: Some(kind) })
}

fn balancer(path: &str) -> Backend {
    let dst =
        endpoint_discovery::Kind::Dst(endpoint_discovery::DestinationGet { path: path.into() });
    Backend {
        kind: Some(backend::Kind::Balancer(BalanceP2c {
            discovery: Some(EndpointDiscovery { kind: Some(dst) }),
            load: None,
        })),
        ..Default::default()
    }
}

fn forward() -> Backend {
    let addr = "10.0.0.1:80"
        .parse::<std::net::SocketAddr>()
        .expect("valid");
    Backend {
        kind: Some(backend::Kind::Forward(WeightedAddr {
            addr: Some(addr.into()),
            weight: 1,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn http(default: bool, backends: Vec<Backend>) -> HttpRoute {
    use http_route::{Distribution, RouteBackend, Rule, distribution};
    let backends = backends
        .into_iter()
        .map(|b| RouteBackend {
            backend: Some(b),
            ..Default::default()
        })
        .collect();
    HttpRoute {
        metadata: meta(default),
        rules: vec![Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable { backends },
                )),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn opaque(backends: Vec<Backend>) -> OpaqueRoute {
    use opaque_route::{Distribution, RouteBackend, Rule, WeightedRouteBackend, distribution};
    let backends = backends
        .into_iter()
        .map(|b| WeightedRouteBackend {
            backend: Some(RouteBackend {
                backend: Some(b),
                ..Default::default()
            }),
            weight: 1,
        })
        .collect();
    OpaqueRoute {
        metadata: meta(true),
        rules: vec![Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::RandomAvailable(
                    distribution::RandomAvailable { backends },
                )),
            }),
            ..Default::default()
        }],
    }
}

fn policy(kind: proxy_protocol::Kind) -> OutboundPolicy {
    OutboundPolicy {
        protocol: Some(ProxyProtocol { kind: Some(kind) }),
        metadata: None,
    }
}

fn detect(http1: Vec<HttpRoute>, opaque_routes: Vec<OpaqueRoute>) -> proxy_protocol::Kind {
    proxy_protocol::Kind::Detect(proxy_protocol::Detect {
        timeout: None,
        opaque: Some(proxy_protocol::Opaque {
            routes: opaque_routes,
        }),
        http1: Some(proxy_protocol::Http1 {
            routes: http1.clone(),
            failure_accrual: None,
        }),
        http2: Some(proxy_protocol::Http2 {
            routes: http1,
            failure_accrual: None,
        }),
    })
}

fn balance(path: &str, protocol: Protocol) -> Decision {
    Decision::Balance {
        path: path.into(),
        protocol,
        routes: Arc::default(),
    }
}

#[test]
fn classify_table() {
    use proxy_protocol::Kind;
    let http1 = |routes| {
        Kind::Http1(proxy_protocol::Http1 {
            routes,
            failure_accrual: None,
        })
    };
    let grpc_route = GrpcRoute {
        metadata: meta(true),
        rules: vec![grpc_route::Rule {
            backends: Some(grpc_route::Distribution {
                kind: Some(grpc_route::distribution::Kind::FirstAvailable(
                    grpc_route::distribution::FirstAvailable {
                        backends: vec![grpc_route::RouteBackend {
                            backend: Some(balancer(API)),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let tls_route = TlsRoute {
        metadata: meta(true),
        rules: vec![tls_route::Rule {
            backends: Some(tls_route::Distribution {
                kind: Some(tls_route::distribution::Kind::FirstAvailable(
                    tls_route::distribution::FirstAvailable {
                        backends: vec![tls_route::RouteBackend {
                            backend: Some(balancer(WEB)),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let no_path = Backend {
        kind: Some(backend::Kind::Balancer(BalanceP2c::default())),
        ..Default::default()
    };

    let cases: Vec<(&str, OutboundPolicy, Decision)> = vec![
        (
            "detect: the default HTTP route's balancer",
            policy(detect(vec![http(true, vec![balancer(WEB)])], vec![])),
            balance(WEB, Protocol::Detect),
        ),
        (
            "detect with only an opaque route",
            policy(detect(vec![], vec![opaque(vec![balancer(WEB)])])),
            balance(WEB, Protocol::Detect),
        ),
        (
            "opaque: weighted route backends",
            policy(Kind::Opaque(proxy_protocol::Opaque {
                routes: vec![opaque(vec![balancer(WEB)])],
            })),
            balance(WEB, Protocol::Opaque),
        ),
        (
            "http1 forward backend",
            policy(http1(vec![http(true, vec![forward()])])),
            Decision::Forward(None),
        ),
        (
            "a balancer wins over a forward in the same route",
            policy(http1(vec![http(true, vec![forward(), balancer(WEB)])])),
            balance(WEB, Protocol::Http1),
        ),
        (
            "the default route decides, wherever it is listed",
            policy(http1(vec![
                http(false, vec![balancer(API)]),
                http(true, vec![balancer(WEB)]),
            ])),
            balance(WEB, Protocol::Http1),
        ),
        (
            "without a default route the first route with a backend decides",
            policy(http1(vec![
                http(false, vec![]),
                http(false, vec![forward()]),
                http(false, vec![balancer(API)]),
            ])),
            Decision::Forward(None),
        ),
        (
            "http2",
            policy(Kind::Http2(proxy_protocol::Http2 {
                routes: vec![http(true, vec![balancer(WEB)])],
                failure_accrual: None,
            })),
            balance(WEB, Protocol::Http2),
        ),
        (
            "grpc is http2",
            policy(Kind::Grpc(proxy_protocol::Grpc {
                routes: vec![grpc_route],
                failure_accrual: None,
            })),
            balance(API, Protocol::Http2),
        ),
        (
            "tls passthrough is opaque",
            policy(Kind::Tls(proxy_protocol::Tls {
                routes: vec![tls_route],
            })),
            balance(WEB, Protocol::Opaque),
        ),
        (
            "no protocol",
            OutboundPolicy::default(),
            Decision::Invalid("the policy has no protocol".into()),
        ),
        (
            "no backends",
            policy(detect(vec![http(true, vec![])], vec![])),
            Decision::Invalid("the policy's routes have no backend".into()),
        ),
        (
            "a balancer without a path",
            policy(http1(vec![http(true, vec![no_path])])),
            Decision::Invalid("a balancer backend has no destination path".into()),
        ),
    ];
    for (name, policy, want) in cases {
        // The attached routes ride along (`routes::tests` covers them).
        let got = match classify(&policy) {
            Decision::Balance {
                path,
                protocol,
                routes,
            } => {
                let attached = policy_routes(&policy);
                assert_eq!(routes.routes.len(), attached, "{name}");
                Decision::Balance {
                    path,
                    protocol,
                    routes: Arc::default(),
                }
            }
            other => other,
        };
        assert_eq!(got, want, "{name}");
    }
}

/// How many HTTP routes of `policy` are resources (not defaults), each
/// counted once however many protocols list it.
fn policy_routes(policy: &OutboundPolicy) -> usize {
    crate::routes::HttpRoutes::from_policy(policy).routes.len()
}

#[test]
fn unmeshed_statuses() {
    for code in [Code::NotFound, Code::InvalidArgument, Code::Unimplemented] {
        assert!(is_unmeshed(&Status::new(code, "")), "{code:?}");
    }
    for code in [
        Code::Unavailable,
        Code::Internal,
        Code::PermissionDenied,
        Code::Unknown,
    ] {
        assert!(!is_unmeshed(&Status::new(code, "")), "{code:?}");
    }
}
