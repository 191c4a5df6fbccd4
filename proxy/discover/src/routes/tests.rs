use super::*;
use linkerd2_proxy_api::meta::Resource;
use linkerd2_proxy_api::outbound::{self as out, ProxyProtocol, http_route as hr};

fn balancer(path: &str) -> Backend {
    Backend {
        metadata: None,
        queue: None,
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(backend::EndpointDiscovery {
                kind: Some(backend::endpoint_discovery::Kind::Dst(
                    backend::endpoint_discovery::DestinationGet {
                        path: path.to_string(),
                    },
                )),
            }),
            load: None,
        })),
    }
}

fn split(backends: &[(&str, u32)]) -> Option<hr::Distribution> {
    Some(hr::Distribution {
        kind: Some(Dist::RandomAvailable(hr::distribution::RandomAvailable {
            backends: backends
                .iter()
                .map(|(p, w)| hr::WeightedRouteBackend {
                    weight: *w,
                    backend: Some(hr::RouteBackend {
                        backend: Some(balancer(p)),
                        filters: Vec::new(),
                        ..Default::default()
                    }),
                })
                .collect(),
        })),
    })
}

fn path_prefix(p: &str) -> api::HttpRouteMatch {
    api::HttpRouteMatch {
        path: Some(api::PathMatch {
            kind: Some(api::path_match::Kind::Prefix(p.into())),
        }),
        ..Default::default()
    }
}

fn route(name: &str, rules: Vec<hr::Rule>) -> out::HttpRoute {
    out::HttpRoute {
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Resource(Resource {
                group: "gateway.networking.k8s.io".into(),
                kind: "HTTPRoute".into(),
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            })),
        }),
        hosts: Vec::new(),
        rules,
    }
}

fn rule(matches: Vec<api::HttpRouteMatch>, backends: &[(&str, u32)]) -> hr::Rule {
    hr::Rule {
        matches,
        backends: split(backends),
        ..Default::default()
    }
}

fn policy(routes: Vec<out::HttpRoute>) -> OutboundPolicy {
    OutboundPolicy {
        metadata: None,
        protocol: Some(ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Detect(proxy_protocol::Detect {
                timeout: None,
                opaque: None,
                http1: Some(proxy_protocol::Http1 {
                    routes: routes.clone(),
                    failure_accrual: None,
                }),
                http2: Some(proxy_protocol::Http2 {
                    routes,
                    failure_accrual: None,
                }),
            })),
        }),
    }
}

fn req(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (http::Method, http::Uri, http::HeaderMap) {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    (method.parse().unwrap(), uri.parse().unwrap(), h)
}

fn selected<'a>(
    routes: &'a HttpRoutes,
    r: &(http::Method, http::Uri, http::HeaderMap),
) -> Option<&'a str> {
    routes
        .select(&r.0, &r.1, &r.2)
        .and_then(|(_, rule)| rule.backends.first())
        .map(|b| &*b.path)
}

#[test]
fn default_routes_mean_no_routes() {
    let mut default = route("x", vec![rule(vec![], &[("web:80", 1)])]);
    default.metadata = Some(Metadata {
        kind: Some(metadata::Kind::Default("http".into())),
    });
    assert!(HttpRoutes::from_policy(&policy(vec![default])).is_empty());
}

#[test]
fn a_split_keeps_weights_and_drops_zero_weights() {
    let p = policy(vec![route(
        "canary",
        vec![rule(vec![], &[("v1:80", 90), ("v2:80", 10), ("v3:80", 0)])],
    )]);
    let routes = HttpRoutes::from_policy(&p);
    assert_eq!(routes.routes.len(), 1, "HTTP/1 and HTTP/2 list it once");
    let r = &routes.routes[0];
    assert_eq!(&*r.name, "default/canary");
    assert_eq!(
        r.rules[0].backends,
        vec![
            WeightedBackend {
                weight: 90,
                path: "v1:80".into()
            },
            WeightedBackend {
                weight: 10,
                path: "v2:80".into()
            },
        ]
    );
    assert_eq!(
        routes.backend_paths(),
        vec![Arc::from("v1:80"), Arc::from("v2:80")]
    );
    // No matches: every request.
    assert_eq!(
        selected(&routes, &req("GET", "/anything?x=1", &[])),
        Some("v1:80")
    );
}

#[test]
fn the_most_specific_match_wins() {
    let exact = api::HttpRouteMatch {
        path: Some(api::PathMatch {
            kind: Some(api::path_match::Kind::Exact("/api/health".into())),
        }),
        ..Default::default()
    };
    let header = api::HttpRouteMatch {
        headers: vec![api::HeaderMatch {
            name: "X-Canary".into(),
            value: Some(api::header_match::Value::Exact(b"true".to_vec())),
        }],
        ..path_prefix("/api")
    };
    let get = api::HttpRouteMatch {
        method: Some(linkerd2_proxy_api::http_types::HttpMethod {
            r#type: Some(
                linkerd2_proxy_api::http_types::http_method::Type::Registered(
                    linkerd2_proxy_api::http_types::http_method::Registered::Get as i32,
                ),
            ),
        }),
        ..path_prefix("/api")
    };
    let query = api::HttpRouteMatch {
        query_params: vec![api::QueryParamMatch {
            name: "v".into(),
            value: Some(api::query_param_match::Value::Exact("2".into())),
        }],
        ..path_prefix("/")
    };
    let p = policy(vec![
        route("a", vec![rule(vec![path_prefix("/")], &[("root:80", 1)])]),
        route(
            "b",
            vec![
                rule(vec![path_prefix("/api")], &[("api:80", 1)]),
                rule(vec![exact], &[("health:80", 1)]),
                rule(vec![header], &[("canary:80", 1)]),
                rule(vec![get], &[("get:80", 1)]),
                rule(vec![query], &[("v2:80", 1)]),
            ],
        ),
    ]);
    let routes = HttpRoutes::from_policy(&p);
    let cases = [
        (req("POST", "/other", &[]), Some("root:80")),
        (req("POST", "/api/x", &[]), Some("api:80")),
        (req("POST", "/apix", &[]), Some("root:80")),
        (req("GET", "/api/x", &[]), Some("get:80")),
        (req("GET", "/api/health", &[]), Some("health:80")),
        // Method outranks headers; headers count when the method is equal.
        (
            req("POST", "/api/x", &[("x-canary", "true")]),
            Some("canary:80"),
        ),
        (
            req("POST", "/api/x", &[("x-canary", "false")]),
            Some("api:80"),
        ),
        (req("POST", "/x?a=1&v=2", &[]), Some("v2:80")),
        (req("POST", "/x?v=20", &[]), Some("root:80")),
    ];
    for (r, want) in &cases {
        assert_eq!(selected(&routes, r), *want, "{} {}", r.0, r.1);
    }
}

#[test]
fn ties_go_to_the_earlier_route_and_unmatched_requests_get_none() {
    let p = policy(vec![
        route(
            "first",
            vec![rule(vec![path_prefix("/a")], &[("one:80", 1)])],
        ),
        route(
            "second",
            vec![rule(vec![path_prefix("/a/")], &[("two:80", 1)])],
        ),
    ]);
    let routes = HttpRoutes::from_policy(&p);
    assert_eq!(selected(&routes, &req("GET", "/a/b", &[])), Some("one:80"));
    assert_eq!(
        routes.select(
            &req("GET", "/b", &[]).0,
            &req("GET", "/b", &[]).1,
            &http::HeaderMap::new()
        ),
        None
    );
}

#[test]
fn matches_this_proxy_cannot_evaluate_never_apply() {
    let regex = api::HttpRouteMatch {
        path: Some(api::PathMatch {
            kind: Some(api::path_match::Kind::Regex("/a.*".into())),
        }),
        ..Default::default()
    };
    let header_regex = api::HttpRouteMatch {
        headers: vec![api::HeaderMatch {
            name: "x".into(),
            // Header regexes are evaluated; one that does not compile is not.
            value: Some(api::header_match::Value::Regex("(".into())),
        }],
        ..Default::default()
    };
    let p = policy(vec![route(
        "r",
        vec![rule(vec![regex, header_regex], &[("x:80", 1)])],
    )]);
    let routes = HttpRoutes::from_policy(&p);
    assert_eq!(selected(&routes, &req("GET", "/abc", &[("x", "1")])), None);
}

#[test]
fn timeouts_and_empty_backends() {
    let mut r = rule(vec![], &[]);
    r.backends = Some(hr::Distribution {
        kind: Some(Dist::Empty(hr::distribution::Empty {})),
    });
    r.timeouts = Some(api::Timeouts {
        request: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        response: None,
        idle: None,
    });
    let mut backend_timeout = r.clone();
    if let Some(t) = backend_timeout.timeouts.as_mut() {
        t.response = Some(prost_types::Duration {
            seconds: 0,
            nanos: 250_000_000,
        });
    }
    let routes = HttpRoutes::from_policy(&policy(vec![
        route("t", vec![r]),
        route("u", vec![backend_timeout]),
    ]));
    let rule = &routes.routes[0].rules[0];
    assert!(rule.backends.is_empty());
    assert_eq!(rule.request_timeout, Some(Duration::from_secs(2)));
    assert_eq!(rule.backend_timeout, None);
    let rule = &routes.routes[1].rules[0];
    assert_eq!(rule.request_timeout, Some(Duration::from_secs(2)));
    assert_eq!(rule.backend_timeout, Some(Duration::from_millis(250)));
}

#[test]
fn retries_are_parsed_with_their_backoff() {
    use linkerd2_proxy_api::outbound::ExponentialBackoff;
    use linkerd2_proxy_api::outbound::http_route::retry::{Conditions, conditions::StatusRange};
    let ms = |ms: i32| prost_types::Duration {
        seconds: 0,
        nanos: ms * 1_000_000,
    };
    let mut r = rule(vec![], &[("web:80", 1)]);
    r.retry = Some(hr::Retry {
        max_retries: 2,
        max_request_bytes: 65536,
        conditions: Some(Conditions {
            status_ranges: vec![
                StatusRange {
                    start: 500,
                    end: 599,
                },
                StatusRange {
                    start: 429,
                    end: 429,
                },
                StatusRange { start: 9, end: 1 },
            ],
        }),
        timeout: Some(ms(300)),
        backoff: Some(ExponentialBackoff {
            min_backoff: Some(ms(25)),
            max_backoff: Some(ms(100)),
            jitter_ratio: 1.0,
            respect_retry_after_hint: false,
        }),
    });
    let mut never = r.clone();
    if let Some(retry) = never.retry.as_mut() {
        retry.max_retries = 0;
    }
    let routes = HttpRoutes::from_policy(&policy(vec![route("r", vec![r, never])]));
    assert!(
        !routes.fallback,
        "HTTPRoutes alone: unmatched requests fail"
    );
    let policy = routes.routes[0].rules[0].retry.clone().unwrap();
    assert_eq!(
        policy.statuses,
        vec![(500, 599), (429, 429)],
        "a reversed range is dropped"
    );
    assert!(policy.retries(503, None) && policy.retries(429, None) && !policy.retries(404, None));
    assert!(!policy.retries(200, Some(14)), "no gRPC conditions");
    assert_eq!(policy.timeout, Some(Duration::from_millis(300)));
    assert_eq!(policy.max_request_bytes, 65536);
    // Doubling from 25 ms, capped at 100 ms; jitter keeps the upper half.
    assert_eq!(policy.delay(1, 1.0), Duration::from_millis(25));
    assert_eq!(policy.delay(2, 1.0), Duration::from_millis(50));
    assert_eq!(policy.delay(5, 1.0), Duration::from_millis(100));
    assert_eq!(policy.delay(5, 0.0), Duration::from_millis(50));
    assert_eq!(routes.routes[0].rules[1].retry, None, "no retries");
}

fn grpc_route(name: &str, rules: Vec<out::grpc_route::Rule>) -> out::GrpcRoute {
    out::GrpcRoute {
        metadata: Some(Metadata {
            kind: Some(metadata::Kind::Resource(Resource {
                group: "gateway.networking.k8s.io".into(),
                kind: "GRPCRoute".into(),
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            })),
        }),
        hosts: Vec::new(),
        rules,
    }
}

fn rpc(service: &str, method: &str) -> linkerd2_proxy_api::grpc_route::GrpcRouteMatch {
    linkerd2_proxy_api::grpc_route::GrpcRouteMatch {
        rpc: Some(linkerd2_proxy_api::grpc_route::GrpcRpcMatch {
            service: service.into(),
            method: method.into(),
        }),
        headers: Vec::new(),
    }
}

fn grpc_split(backends: &[(&str, u32)]) -> Option<out::grpc_route::Distribution> {
    use out::grpc_route::{Distribution, RouteBackend, WeightedRouteBackend, distribution};
    Some(Distribution {
        kind: Some(distribution::Kind::RandomAvailable(
            distribution::RandomAvailable {
                backends: backends
                    .iter()
                    .map(|(p, w)| WeightedRouteBackend {
                        weight: *w,
                        backend: Some(RouteBackend {
                            backend: Some(balancer(p)),
                            ..Default::default()
                        }),
                    })
                    .collect(),
            },
        )),
    })
}

fn grpc_policy(routes: Vec<out::GrpcRoute>) -> OutboundPolicy {
    OutboundPolicy {
        protocol: Some(ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Grpc(proxy_protocol::Grpc {
                routes,
                failure_accrual: None,
            })),
        }),
        ..Default::default()
    }
}

fn post(path: &str) -> (http::Method, http::Uri, http::HeaderMap) {
    (
        http::Method::POST,
        path.parse().unwrap(),
        http::HeaderMap::new(),
    )
}

#[test]
fn grpc_routes_match_service_and_method() {
    let rule =
        |m: Vec<linkerd2_proxy_api::grpc_route::GrpcRouteMatch>, to: &str| out::grpc_route::Rule {
            matches: m,
            backends: grpc_split(&[(to, 1)]),
            ..Default::default()
        };
    let routes = HttpRoutes::from_policy(&grpc_policy(vec![
        grpc_route(
            "emoji",
            vec![
                rule(
                    vec![rpc("emojivoto.v1.EmojiService", "ListAll")],
                    "exact:80",
                ),
                rule(vec![rpc("emojivoto.v1.EmojiService", "")], "service:80"),
                rule(vec![rpc("", "Vote")], "method:80"),
            ],
        ),
        // The control plane's default route stands for "no route".
        out::GrpcRoute {
            metadata: Some(Metadata {
                kind: Some(metadata::Kind::Default("grpc".into())),
            }),
            hosts: Vec::new(),
            rules: vec![rule(Vec::new(), "default:80")],
        },
    ]));
    assert_eq!(routes.routes.len(), 1, "{routes:?}");
    assert!(routes.fallback, "unmatched calls go to the service itself");
    assert_eq!(routes.routes[0].kind, RouteKind::Grpc);
    assert_eq!(routes.routes[0].kind.as_str(), "GRPCRoute");
    let to = |path: &str| {
        let (m, u, h) = post(path);
        routes
            .select(&m, &u, &h)
            .map(|(_, rule)| rule.backends[0].path.to_string())
    };
    assert_eq!(
        to("/emojivoto.v1.EmojiService/ListAll").as_deref(),
        Some("exact:80"),
        "service and method win"
    );
    assert_eq!(
        to("/emojivoto.v1.EmojiService/FindByShortcode").as_deref(),
        Some("service:80")
    );
    assert_eq!(
        to("/emojivoto.v1.VotingService/Vote").as_deref(),
        Some("method:80")
    );
    assert_eq!(to("/other.Service/Results"), None);
    assert_eq!(
        to("/emojivoto.v1.EmojiServiceX/ListAll"),
        None,
        "whole segments"
    );
    assert_eq!(to("//Vote"), None, "a method needs a service");
}

#[test]
fn grpc_retries_on_status_codes_in_the_response_head() {
    let retry = out::grpc_route::Retry {
        max_retries: 2,
        max_request_bytes: 65536,
        conditions: Some(out::grpc_route::retry::Conditions {
            cancelled: false,
            deadine_exceeded: true,
            resource_exhausted: false,
            internal: false,
            unavailable: true,
        }),
        timeout: Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000,
        }),
        backoff: None,
    };
    let rules = vec![
        out::grpc_route::Rule {
            matches: vec![rpc("svc.S", "")],
            backends: grpc_split(&[("a:80", 1)]),
            retry: Some(retry),
            ..Default::default()
        },
        out::grpc_route::Rule {
            matches: vec![rpc("svc.T", "")],
            backends: grpc_split(&[("a:80", 1)]),
            retry: Some(out::grpc_route::Retry {
                conditions: Some(Default::default()),
                ..retry
            }),
            ..Default::default()
        },
    ];
    let routes = HttpRoutes::from_policy(&grpc_policy(vec![grpc_route("r", rules)]));
    let policy = routes.routes[0].rules[0].retry.clone().unwrap();
    assert_eq!(policy.grpc_codes, vec![4, 14]);
    assert!(policy.retries(200, Some(14)) && policy.retries(200, Some(4)));
    assert!(!policy.retries(200, Some(13)) && !policy.retries(200, None));
    assert!(!policy.retries(503, None), "no HTTP statuses");
    assert_eq!(policy.timeout, Some(Duration::from_millis(200)));
    assert_eq!(policy.backoff, DEFAULT_BACKOFF);
    assert_eq!(
        routes.routes[0].rules[1].retry, None,
        "no condition, no retry"
    );
}

#[test]
fn header_regexes_match_whole_values() {
    let with_header = |service: &str, re: &str| {
        let mut m = rpc(service, "");
        m.headers = vec![api::HeaderMatch {
            name: "X-User".into(),
            value: Some(api::header_match::Value::Regex(re.into())),
        }];
        out::grpc_route::Rule {
            matches: vec![m],
            backends: grpc_split(&[("a:80", 1)]),
            ..Default::default()
        }
    };
    let routes = HttpRoutes::from_policy(&grpc_policy(vec![grpc_route(
        "r",
        vec![with_header("svc.S", "a[0-9]+"), with_header("svc.T", "(")],
    )]));
    let call = |path: &str, user: &str| {
        let (m, u, mut h) = post(path);
        h.insert("x-user", http::HeaderValue::from_str(user).unwrap());
        routes.select(&m, &u, &h).is_some()
    };
    assert!(call("/svc.S/M", "a12"));
    assert!(!call("/svc.S/M", "a12b"), "the whole value");
    assert!(!call("/svc.S/M", "b1"));
    assert!(
        !call("/svc.T/M", "("),
        "a regex that does not compile never matches"
    );
}
