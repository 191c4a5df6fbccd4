//! HTTPRoutes in `OutboundPolicies`: manifests parsed and applied to the
//! real index, policies read through a real server, as a proxy reads them.

use crate::next;
use crate::support::{TestServer, by_addr, by_authority};
use linkerd2_proxy_api::http_route::{header_match, path_match, query_param_match};
use linkerd2_proxy_api::http_types::http_method;
use linkerd2_proxy_api::meta::{Metadata, metadata};
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{
    Backend, HttpRoute, OutboundPolicy, TrafficSpec, backend, http_route, opaque_route,
    proxy_protocol,
};
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::{Kind, ResourceKey, TrustDomain, parse_manifests};
use strand_controller_index::Index;
use tonic::Streaming;
use tonic::transport::Channel;

/// The real index behind a real server, and a client of it.
pub(crate) struct Cluster {
    index: Arc<Index>,
    client: OutboundPoliciesClient<Channel>,
    _server: TestServer<Index>,
}

/// `web` (10.96.0.10) with ports 8080 (detected), 8081 (`appProtocol:
/// http`) and 9090 (`appProtocol: grpc`).
pub(crate) const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: web}\n  ports:\n  - {name: http, port: 8080}\n  - {name: h1, port: 8081, appProtocol: http}\n  - {name: grpc, port: 9090, appProtocol: grpc}\n";

const FQDN: &str = "web.default.svc.cluster.local";

/// A one-port service `name` at `10.96.0.<octet>`.
pub(crate) fn service(name: &str, octet: u8) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: 10.96.0.{octet}, selector: {{app: {name}}}, ports: [{{port: 8080}}]}}\n"
    )
}

/// The README's canary: `/api` with `x-canary: true`, `?v=2` and GET go
/// to web-v1 and web-v2 by weight, with timeouts.
pub(crate) fn canary(v1: u32, v2: u32) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-canary, namespace: default}}
spec:
  parentRefs:
    - {{name: web, kind: Service, group: core, port: 8080}}
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /api}}
          headers: [{{name: x-canary, value: "true"}}]
          queryParams: [{{name: v, value: "2"}}]
          method: GET
      backendRefs:
        - {{name: web-v1, port: 8080, weight: {v1}}}
        - {{name: web-v2, port: 8080, weight: {v2}}}
      timeouts: {{request: 2s, backendRequest: 1s}}
"#
    )
}

/// The HTTP routes of a Detect policy (the same for HTTP/1 and HTTP/2),
/// checking that its opaque route stays the default one to `web`.
pub(crate) fn detect_routes(policy: &OutboundPolicy) -> Vec<HttpRoute> {
    let Some(proxy_protocol::Kind::Detect(detect)) = policy.protocol.clone().and_then(|p| p.kind)
    else {
        panic!("Detect expected: {policy:?}");
    };
    let opaque = detect.opaque.expect("opaque");
    let rule = &opaque.routes[0].rules[0];
    let Some(opaque_route::distribution::Kind::FirstAvailable(first)) =
        rule.backends.clone().and_then(|d| d.kind)
    else {
        panic!("the opaque route's backend");
    };
    let backend = first.backends[0].backend.as_ref().expect("backend");
    assert_eq!(path(backend), format!("{FQDN}:8080"), "opaque goes to web");
    let http1 = detect.http1.expect("http1").routes;
    assert_eq!(http1, detect.http2.expect("http2").routes);
    http1
}

/// `name` for a route that is a resource (its kind and group too), or
/// `default:<name>` for an implicit one.
fn route_name(route: &HttpRoute) -> String {
    match route.metadata.clone().and_then(|m| m.kind) {
        Some(metadata::Kind::Resource(r)) => format!("{}.{}/{}", r.kind, r.group, r.name),
        Some(metadata::Kind::Default(name)) => format!("default:{name}"),
        None => panic!("no metadata: {route:?}"),
    }
}

pub(crate) fn names(routes: &[HttpRoute]) -> Vec<String> {
    routes.iter().map(route_name).collect()
}

/// A balancer backend's `Destination/Get` path.
fn path(b: &Backend) -> String {
    let Some(backend::Kind::Balancer(p2c)) = &b.kind else {
        panic!("not a balancer: {b:?}");
    };
    let Some(backend::endpoint_discovery::Kind::Dst(dst)) =
        p2c.discovery.as_ref().and_then(|d| d.kind.as_ref())
    else {
        panic!("no discovery: {p2c:?}");
    };
    dst.path.clone()
}

/// A rule's backends as `path=weight`, or `["empty"]`.
pub(crate) fn weights(rule: &http_route::Rule) -> Vec<String> {
    match rule.backends.clone().and_then(|d| d.kind) {
        Some(http_route::distribution::Kind::RandomAvailable(random)) => random
            .backends
            .iter()
            .map(|w| {
                let b = w.backend.as_ref().and_then(|b| b.backend.as_ref());
                format!("{}={}", path(b.expect("backend")), w.weight)
            })
            .collect(),
        Some(http_route::distribution::Kind::Empty(_)) => vec!["empty".into()],
        other => panic!("unexpected distribution: {other:?}"),
    }
}

/// The weights of the only rule of the only route of a Detect policy.
fn canary_weights(policy: &OutboundPolicy) -> Vec<String> {
    let routes = detect_routes(policy);
    assert_eq!(
        names(&routes),
        ["HTTPRoute.gateway.networking.k8s.io/web-canary"]
    );
    weights(&routes[0].rules[0])
}

/// A protobuf duration (typed by where it comes from) as a std one.
pub(crate) fn pb_duration<T>(d: Option<T>) -> Option<Duration>
where
    Duration: TryFrom<T>,
    <Duration as TryFrom<T>>::Error: std::fmt::Debug,
{
    d.map(|d| Duration::try_from(d).expect("a valid duration"))
}

// === impl Cluster ===

impl Cluster {
    pub(crate) async fn start(manifests: &[&str]) -> Self {
        let index = Index::new("cluster.local", TrustDomain::default());
        let server = TestServer::start(index.clone()).await;
        let client = OutboundPoliciesClient::new(server.channel().await);
        let cluster = Self {
            index,
            client,
            _server: server,
        };
        for m in manifests {
            cluster.apply(m);
        }
        cluster
    }

    pub(crate) fn apply(&self, text: &str) {
        for r in parse_manifests(text).expect("valid manifests") {
            self.index.apply(r);
        }
    }

    pub(crate) fn delete(&self, kind: Kind, name: &str) {
        self.index.delete(&ResourceKey::new(kind, "default", name));
    }

    pub(crate) async fn watch(&mut self, spec: TrafficSpec) -> Streaming<OutboundPolicy> {
        self.client.watch(spec).await.expect("Watch").into_inner()
    }
}

#[tokio::test]
async fn a_watch_follows_a_route_from_apply_to_delete() {
    let mut cluster = Cluster::start(&[WEB, &service("web-v1", 11), &service("web-v2", 12)]).await;
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8080")).await;
    assert_eq!(
        names(&detect_routes(&next(&mut rsp).await)),
        ["default:http"]
    );

    // Applied: the route replaces the default one.
    cluster.apply(&canary(90, 10));
    let policy = next(&mut rsp).await;
    let routes = detect_routes(&policy);
    let [route] = &routes[..] else {
        panic!("one route: {routes:?}");
    };
    let Some(metadata::Kind::Resource(meta)) = route.metadata.clone().and_then(|m| m.kind) else {
        panic!("resource metadata");
    };
    assert_eq!(
        (&*meta.group, &*meta.kind, &*meta.name, &*meta.namespace),
        (
            "gateway.networking.k8s.io",
            "HTTPRoute",
            "web-canary",
            "default"
        )
    );
    assert!(route.hosts.is_empty());
    let [rule] = &route.rules[..] else {
        panic!("one rule");
    };
    assert_eq!(
        weights(rule),
        [
            "web-v1.default.svc.cluster.local:8080=90",
            "web-v2.default.svc.cluster.local:8080=10"
        ]
    );
    // Each backend is a balancer named after its Service port, with a queue.
    let Some(http_route::distribution::Kind::RandomAvailable(random)) =
        rule.backends.clone().and_then(|d| d.kind)
    else {
        panic!("random-available");
    };
    let b = random.backends[1].backend.clone().and_then(|b| b.backend);
    let b = b.expect("backend");
    assert!(b.queue.is_some());
    let Some(Metadata {
        kind: Some(metadata::Kind::Resource(svc)),
    }) = b.metadata
    else {
        panic!("service metadata");
    };
    assert_eq!(
        (
            &*svc.group,
            &*svc.kind,
            &*svc.name,
            &*svc.namespace,
            svc.port
        ),
        ("core", "Service", "web-v2", "default", 8080)
    );
    // The match as written.
    let [m] = &rule.matches[..] else {
        panic!("one match");
    };
    assert_eq!(
        m.path.clone().and_then(|p| p.kind),
        Some(path_match::Kind::Prefix("/api".into()))
    );
    assert_eq!(
        (&*m.headers[0].name, m.headers[0].value.clone()),
        (
            "x-canary",
            Some(header_match::Value::Exact(b"true".to_vec()))
        )
    );
    assert_eq!(
        (&*m.query_params[0].name, m.query_params[0].value.clone()),
        ("v", Some(query_param_match::Value::Exact("2".into())))
    );
    assert_eq!(
        m.method.clone().and_then(|m| m.r#type),
        Some(http_method::Type::Registered(
            http_method::Registered::Get.into()
        ))
    );
    // request -> Timeouts.request, backendRequest -> Timeouts.response.
    let t = rule.timeouts.expect("timeouts");
    assert_eq!(pb_duration(t.request), Some(Duration::from_secs(2)));
    assert_eq!(pb_duration(t.response), Some(Duration::from_secs(1)));
    assert_eq!(t.idle, None);
    assert!(rule.retry.is_none() && rule.filters.is_empty());

    // Changed: 90/10 -> 0/100 (a weight of 0 is left out).
    cluster.apply(&canary(0, 100));
    assert_eq!(
        canary_weights(&next(&mut rsp).await),
        ["web-v2.default.svc.cluster.local:8080=100"]
    );

    // Deleted: the default route is back.
    cluster.delete(Kind::HttpRoute, "web-canary");
    assert_eq!(
        names(&detect_routes(&next(&mut rsp).await)),
        ["default:http"]
    );
}

#[tokio::test]
async fn a_missing_backend_is_left_out_until_it_is_created() {
    let mut cluster = Cluster::start(&[WEB, &service("web-v1", 11), &canary(90, 10)]).await;
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8080")).await;
    assert_eq!(
        canary_weights(&next(&mut rsp).await),
        ["web-v1.default.svc.cluster.local:8080=90"]
    );

    cluster.apply(&service("web-v2", 12));
    assert_eq!(
        canary_weights(&next(&mut rsp).await),
        [
            "web-v1.default.svc.cluster.local:8080=90",
            "web-v2.default.svc.cluster.local:8080=10"
        ]
    );

    // Both gone: the rule has no backend left (the proxy answers 500).
    cluster.delete(Kind::Service, "web-v1");
    assert_eq!(
        canary_weights(&next(&mut rsp).await),
        ["web-v2.default.svc.cluster.local:8080=10"]
    );
    cluster.delete(Kind::Service, "web-v2");
    assert_eq!(canary_weights(&next(&mut rsp).await), ["empty"]);
}

#[tokio::test]
async fn authorities_ports_and_protocols_see_the_routes_they_should() {
    // `all` attaches to every port of web (Linkerd's API group), `only-8080`
    // to port 8080; both send to web itself.
    let all = "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata: {name: all, namespace: default}\nspec: {parentRefs: [{name: web, group: core, kind: Service}]}\n";
    let only = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: only-8080, namespace: default}\nspec:\n  parentRefs: [{name: web, group: core, port: 8080}]\n  rules: [{matches: [{path: {type: Exact, value: /x}}]}]\n";
    let mut cluster = Cluster::start(&[WEB, all, only]).await;
    let both = [
        "HTTPRoute.policy.linkerd.io/all",
        "HTTPRoute.gateway.networking.k8s.io/only-8080",
    ];

    // By authority, as for `l5d-dst-override`: the same routes as by address.
    let mut rsp = cluster.watch(by_authority(&format!("{FQDN}:8080"))).await;
    let routes = detect_routes(&next(&mut rsp).await);
    assert_eq!(names(&routes), both);
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8080")).await;
    assert_eq!(detect_routes(&next(&mut rsp).await), routes);
    let unary = cluster
        .client
        .get(by_authority(&format!("{FQDN}:8080")))
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(detect_routes(&unary), routes);
    // A rule without backendRefs sends to the parent port, weight 1; a
    // route without rules has one rule matching every path.
    assert_eq!(weights(&routes[0].rules[0]), [format!("{FQDN}:8080=1")]);
    assert_eq!(
        routes[0].rules[0].matches[0]
            .path
            .clone()
            .and_then(|p| p.kind),
        Some(path_match::Kind::Prefix("/".into()))
    );

    // appProtocol http: the HTTP/1 kind carries the routes of its port.
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8081")).await;
    let policy = next(&mut rsp).await;
    let Some(proxy_protocol::Kind::Http1(h1)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("HTTP/1 expected");
    };
    assert_eq!(names(&h1.routes), ["HTTPRoute.policy.linkerd.io/all"]);
    assert_eq!(weights(&h1.routes[0].rules[0]), [format!("{FQDN}:8081=1")]);

    // gRPC keeps its default route.
    let mut rsp = cluster.watch(by_addr("10.96.0.10:9090")).await;
    let policy = next(&mut rsp).await;
    let Some(proxy_protocol::Kind::Grpc(grpc)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("gRPC expected");
    };
    assert_eq!(grpc.routes.len(), 1);
    assert!(matches!(
        grpc.routes[0].metadata.clone().and_then(|m| m.kind),
        Some(metadata::Kind::Default(_))
    ));
}
