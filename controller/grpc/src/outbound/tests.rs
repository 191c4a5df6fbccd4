use super::*;
use crate::convert::Protocol;
use linkerd2_proxy_api::meta::metadata;
use linkerd2_proxy_api::outbound::{Backend, backend, http_route, proxy_protocol};

mod grpc;

fn inputs(protocol: Protocol) -> policy::Inputs {
    policy::Inputs {
        service: ServiceKey::new("default", "web"),
        fqdn: "web.default.svc.cluster.local".into(),
        port: 8080,
        protocol,
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
    }
}

/// The balancer's discovery path and its EWMA parameters.
fn balancer(b: &Backend) -> (String, std::time::Duration, std::time::Duration) {
    let Some(backend::Kind::Balancer(p2c)) = &b.kind else {
        panic!("not a balancer: {b:?}");
    };
    let Some(backend::endpoint_discovery::Kind::Dst(dst)) =
        p2c.discovery.as_ref().and_then(|d| d.kind.as_ref())
    else {
        panic!("no discovery: {p2c:?}");
    };
    let Some(backend::balance_p2c::Load::PeakEwma(ewma)) = &p2c.load else {
        panic!("not peak EWMA: {p2c:?}");
    };
    let d = |d: Option<_>| std::time::Duration::try_from(d.expect("set")).expect("valid");
    (dst.path.clone(), d(ewma.decay), d(ewma.default_rtt))
}

/// Backends `a` and `b`, weighted 3 to 1, as [`weighted`] shows them.
const A3_B1: [&str; 2] = [
    "a.default.svc.cluster.local:8080=3",
    "b.default.svc.cluster.local:8080=1",
];

/// Weighted balancers as `<discovery path>=<weight>`.
fn weighted<'a>(backends: impl Iterator<Item = (Option<&'a Backend>, u32)>) -> Vec<String> {
    backends
        .map(|(b, weight)| format!("{}={weight}", balancer(b.expect("backend")).0))
        .collect()
}

fn http_backend(routes: &[linkerd2_proxy_api::outbound::HttpRoute]) -> &Backend {
    let [route] = routes else {
        panic!("one route: {routes:?}");
    };
    let [rule] = &route.rules[..] else {
        panic!("one rule");
    };
    let Some(http_route::distribution::Kind::FirstAvailable(first)) =
        rule.backends.as_ref().and_then(|d| d.kind.as_ref())
    else {
        panic!("first-available: {rule:?}");
    };
    first.backends[0].backend.as_ref().expect("backend")
}

#[test]
fn detect_policy_has_http_routes_and_an_opaque_fallback() {
    let policy = policy::build(&inputs(Protocol::Detect));
    let Some(metadata::Kind::Resource(r)) = policy.metadata.and_then(|m| m.kind) else {
        panic!("resource metadata");
    };
    assert_eq!(
        (&*r.group, &*r.kind, &*r.name, &*r.namespace, r.port),
        ("core", "Service", "web", "default", 8080)
    );
    let Some(proxy_protocol::Kind::Detect(detect)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("detect");
    };
    let timeout = std::time::Duration::try_from(detect.timeout.expect("timeout")).expect("valid");
    assert_eq!(timeout, std::time::Duration::from_secs(10));
    for routes in [
        &detect.http1.expect("http1").routes,
        &detect.http2.expect("http2").routes,
    ] {
        let (path, decay, rtt) = balancer(http_backend(routes));
        assert_eq!(path, "web.default.svc.cluster.local:8080");
        assert_eq!(decay, std::time::Duration::from_secs(10));
        assert_eq!(rtt, std::time::Duration::from_millis(30));
        let matches = &routes[0].rules[0].matches;
        assert_eq!(
            matches[0].path.as_ref().and_then(|p| p.kind.clone()),
            Some(linkerd2_proxy_api::http_route::path_match::Kind::Prefix(
                "/".into()
            ))
        );
    }
    assert_eq!(detect.opaque.expect("opaque fallback").routes.len(), 1);
}

#[test]
fn each_protocol_gets_its_kind() {
    let kind = |p| policy::build(&inputs(p)).protocol.and_then(|p| p.kind);
    assert!(
        matches!(kind(Protocol::Opaque), Some(proxy_protocol::Kind::Opaque(o)) if o.routes.len() == 1)
    );
    assert!(
        matches!(kind(Protocol::Http1), Some(proxy_protocol::Kind::Http1(h)) if h.routes.len() == 1)
    );
    assert!(
        matches!(kind(Protocol::Http2), Some(proxy_protocol::Kind::Http2(h)) if h.routes.len() == 1)
    );
    assert!(
        matches!(kind(Protocol::Grpc), Some(proxy_protocol::Kind::Grpc(g)) if g.routes.len() == 1)
    );
}

#[test]
fn authorities_default_to_port_80() {
    let name = |host: &str, port| Target::Name {
        host: host.into(),
        port,
    };
    assert_eq!(
        parse_authority("web.default.svc.cluster.local:8080"),
        Ok(name("web.default.svc.cluster.local", 8080))
    );
    assert_eq!(
        parse_authority("web.default.svc.cluster.local"),
        Ok(name("web.default.svc.cluster.local", 80))
    );
    assert_eq!(
        parse_authority("10.0.0.1:443"),
        Ok(Target::Addr("10.0.0.1:443".parse().expect("addr")))
    );
    assert!(parse_authority("").is_err());
    assert!(parse_authority("web:http").is_err());
}

/// One attached route with one rule sending to `backends` (`name` -> weight).
fn with_route(protocol: Protocol, backends: &[(&str, u32)]) -> policy::Inputs {
    use strand_controller_core::{
        HttpRouteApi, HttpRouteMatch, OutboundBackend, OutboundHttpRoute, OutboundRouteRule,
        RouteTimeouts,
    };
    let rule = OutboundRouteRule {
        matches: vec![HttpRouteMatch::default()],
        backends: backends
            .iter()
            .map(|(name, weight)| OutboundBackend {
                service: ServiceKey::new("default", *name),
                port: 8080,
                fqdn: format!("{name}.default.svc.cluster.local"),
                weight: *weight,
            })
            .collect(),
        timeouts: RouteTimeouts {
            request: Some(std::time::Duration::from_secs(2)),
            response: Some(std::time::Duration::from_millis(500)),
            idle: None,
        },
        retry: None,
        filters: Vec::new(),
    };
    policy::Inputs {
        http_routes: vec![OutboundHttpRoute {
            api: HttpRouteApi::LinkerdV1beta3,
            namespace: "default".into(),
            name: "split".into(),
            rules: vec![rule],
        }],
        ..inputs(protocol)
    }
}

#[test]
fn attached_routes_replace_the_default_http_route_only() {
    let policy = policy::build(&with_route(Protocol::Http2, &[("a", 3), ("b", 1)]));
    let Some(proxy_protocol::Kind::Http2(h2)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("HTTP/2");
    };
    let [route] = &h2.routes[..] else {
        panic!("the attached route alone");
    };
    let Some(metadata::Kind::Resource(r)) = route.metadata.clone().and_then(|m| m.kind) else {
        panic!("resource metadata");
    };
    assert_eq!(
        (&*r.group, &*r.kind, &*r.name, r.port),
        ("policy.linkerd.io", "HTTPRoute", "split", 0)
    );
    let rule = &route.rules[0];
    let Some(http_route::distribution::Kind::RandomAvailable(random)) =
        rule.backends.as_ref().and_then(|d| d.kind.as_ref())
    else {
        panic!("random-available: {rule:?}");
    };
    let got = random.backends.iter().map(|w| {
        (
            w.backend.as_ref().and_then(|b| b.backend.as_ref()),
            w.weight,
        )
    });
    assert_eq!(weighted(got), A3_B1);
    let t = rule.timeouts.expect("timeouts");
    let d = |d: Option<_>| std::time::Duration::try_from(d.expect("set")).expect("valid");
    assert_eq!(d(t.request), std::time::Duration::from_secs(2));
    assert_eq!(d(t.response), std::time::Duration::from_millis(500));
    assert_eq!(t.idle, None);
    #[expect(deprecated, reason = "checking what older proxies read")]
    let legacy = rule.request_timeout;
    assert_eq!(legacy, t.response);
    assert_eq!(rule.retry, None, "no retry annotations, no retries");

    // gRPC and opaque ports keep their default routes.
    let kind = |p| {
        policy::build(&with_route(p, &[("a", 1)]))
            .protocol
            .and_then(|p| p.kind)
    };
    let Some(proxy_protocol::Kind::Grpc(g)) = kind(Protocol::Grpc) else {
        panic!("gRPC");
    };
    assert!(matches!(
        g.routes[0].metadata.clone().and_then(|m| m.kind),
        Some(metadata::Kind::Default(_))
    ));
    assert!(matches!(
        kind(Protocol::Opaque),
        Some(proxy_protocol::Kind::Opaque(_))
    ));
}

#[test]
fn a_rule_without_backends_is_empty() {
    let policy = policy::build(&with_route(Protocol::Http1, &[]));
    let Some(proxy_protocol::Kind::Http1(h1)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("HTTP/1");
    };
    assert!(matches!(
        h1.routes[0].rules[0]
            .backends
            .as_ref()
            .and_then(|d| d.kind.as_ref()),
        Some(http_route::distribution::Kind::Empty(_))
    ));
}

/// The only rule of the only route of an HTTP/1 policy.
fn http1_rule(inputs: &policy::Inputs) -> http_route::Rule {
    let Some(proxy_protocol::Kind::Http1(h1)) = policy::build(inputs).protocol.and_then(|p| p.kind)
    else {
        panic!("HTTP/1");
    };
    h1.routes[0].rules[0].clone()
}

#[test]
fn retries_and_idle_timeouts_take_linkerds_shape() {
    use http_route::retry::{Conditions, conditions::StatusRange};
    use linkerd2_proxy_api::outbound::ExponentialBackoff;
    use std::time::Duration;
    use strand_controller_core::RouteRetry;
    let mut inputs = with_route(Protocol::Http1, &[("a", 1)]);
    let rule = &mut inputs.http_routes[0].rules[0];
    rule.retry = Some(RouteRetry {
        limit: 3,
        statuses: vec![500..=599, 429..=429],
        timeout: Some(Duration::from_millis(300)),
    });
    rule.timeouts.idle = Some(Duration::from_secs(30));

    let got = http1_rule(&inputs);
    let pb = crate::convert::duration;
    assert_eq!(
        got.retry,
        Some(http_route::Retry {
            max_retries: 3,
            max_request_bytes: 65_536,
            conditions: Some(Conditions {
                status_ranges: vec![
                    StatusRange {
                        start: 500,
                        end: 599
                    },
                    StatusRange {
                        start: 429,
                        end: 429
                    },
                ],
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
    let t = got.timeouts.expect("timeouts");
    assert_eq!(t.idle, pb(Duration::from_secs(30)));

    // Without a per-try timeout, the retry has none.
    inputs.http_routes[0].rules[0]
        .retry
        .as_mut()
        .expect("retry")
        .timeout = None;
    assert_eq!(http1_rule(&inputs).retry.expect("retry").timeout, None);
}

#[test]
fn filters_take_linkerds_shape() {
    use http_route::filter::Kind;
    use linkerd2_proxy_api::http_route::{
        PathModifier, RequestHeaderModifier, RequestRedirect, ResponseHeaderModifier, path_modifier,
    };
    use linkerd2_proxy_api::http_types::{Headers, Scheme, headers::Header, scheme};
    use strand_controller_core::{
        HttpHeader, HttpHeaderFilter, PathModifier as Path, RedirectScheme, RouteFilter,
        RouteRedirect,
    };
    let header = |name: &str, value: &str| HttpHeader {
        name: name.into(),
        value: value.into(),
    };
    let pb = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    };
    let mut inputs = with_route(Protocol::Http1, &[("a", 1)]);
    inputs.http_routes[0].rules[0].filters = vec![
        RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
            set: vec![header("X-Env", "canary")],
            add: vec![header("x-trace", "1"), header("x-hop", "a")],
            remove: vec!["X-Debug".into()],
        }),
        RouteFilter::ResponseHeaderModifier(HttpHeaderFilter {
            remove: vec!["server".into()],
            ..HttpHeaderFilter::default()
        }),
        RouteFilter::RequestRedirect(RouteRedirect {
            scheme: Some(RedirectScheme::Https),
            hostname: Some("new.example.com".into()),
            path: Some(Path::ReplacePrefixMatch("/new".into())),
            port: Some(8443),
            status: 301,
        }),
        RouteFilter::RequestRedirect(RouteRedirect {
            scheme: None,
            hostname: None,
            path: Some(Path::ReplaceFullPath("/here".into())),
            port: None,
            status: 302,
        }),
    ];
    let kinds: Vec<_> = http1_rule(&inputs)
        .filters
        .into_iter()
        .map(|f| f.kind.expect("a kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            // Names lower-cased; set and add always present.
            Kind::RequestHeaderModifier(RequestHeaderModifier {
                add: Some(Headers {
                    headers: vec![pb("x-trace", "1"), pb("x-hop", "a")],
                }),
                set: Some(Headers {
                    headers: vec![pb("x-env", "canary")],
                }),
                remove: vec!["x-debug".into()],
            }),
            Kind::ResponseHeaderModifier(ResponseHeaderModifier {
                add: Some(Headers::default()),
                set: Some(Headers::default()),
                remove: vec!["server".into()],
            }),
            Kind::Redirect(RequestRedirect {
                scheme: Some(Scheme {
                    r#type: Some(scheme::Type::Registered(scheme::Registered::Https.into())),
                }),
                host: "new.example.com".into(),
                path: Some(PathModifier {
                    replace: Some(path_modifier::Replace::Prefix("/new".into())),
                }),
                port: 8443,
                status: 301,
            }),
            // Unset: no scheme, empty host, port 0; the status is always set.
            Kind::Redirect(RequestRedirect {
                scheme: None,
                host: String::new(),
                path: Some(PathModifier {
                    replace: Some(path_modifier::Replace::Full("/here".into())),
                }),
                port: 0,
                status: 302,
            }),
        ]
    );
    // Without filters, none.
    inputs.http_routes[0].rules[0].filters.clear();
    assert!(http1_rule(&inputs).filters.is_empty());
}
