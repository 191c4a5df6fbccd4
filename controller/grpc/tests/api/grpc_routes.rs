//! GRPCRoutes in `OutboundPolicies`: manifests parsed and applied to the
//! real index, policies read through a real server, as a proxy reads them.

use crate::next;
use crate::routes::{Cluster, WEB, detect_routes, names, service};
use crate::support::{by_addr, by_authority};
use linkerd2_proxy_api::grpc_route::GrpcRpcMatch;
use linkerd2_proxy_api::meta::metadata;
use linkerd2_proxy_api::outbound::{GrpcRoute, OutboundPolicy, grpc_route, proxy_protocol};
use strand_controller_core::Kind;

/// `Vote` of the voting service goes to web-v1, retried on `unavailable`;
/// attached to `port` of web (every port without one).
fn votes(port: Option<u16>) -> String {
    let port = port.map_or(String::new(), |p| format!(", port: {p}"));
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: votes
  namespace: default
  annotations: {{retry.linkerd.io/grpc: "unavailable,cancelled", retry.linkerd.io/limit: "2"}}
spec:
  parentRefs:
    - {{name: web, kind: Service, group: core{port}}}
  rules:
    - matches:
        - method: {{service: emojivoto.v1.VotingService, method: Vote}}
      backendRefs: [{{name: web-v1, port: 8080}}]
"#
    )
}

/// The routes of a gRPC policy.
fn grpc_routes(policy: &OutboundPolicy) -> Vec<GrpcRoute> {
    let Some(proxy_protocol::Kind::Grpc(grpc)) = policy.protocol.clone().and_then(|p| p.kind)
    else {
        panic!("gRPC expected: {policy:?}");
    };
    grpc.routes
}

/// `kind.group/name` of each route, or `default:<name>`.
fn route_names(routes: &[GrpcRoute]) -> Vec<String> {
    routes
        .iter()
        .map(|route| match route.metadata.clone().and_then(|m| m.kind) {
            Some(metadata::Kind::Resource(r)) => format!("{}.{}/{}", r.kind, r.group, r.name),
            Some(metadata::Kind::Default(name)) => format!("default:{name}"),
            None => panic!("no metadata: {route:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_watch_follows_a_grpc_route_from_apply_to_delete() {
    let mut cluster = Cluster::start(&[WEB, &service("web-v1", 11)]).await;
    let mut grpc = cluster.watch(by_addr("10.96.0.10:9090")).await;
    let mut http = cluster
        .watch(by_authority("web.default.svc.cluster.local:8080"))
        .await;
    let routes = grpc_routes(&next(&mut grpc).await);
    assert_eq!(route_names(&routes), ["default:grpc"]);
    assert_eq!(routes[0].rules[0].matches.len(), 1, "every call");
    assert_eq!(
        names(&detect_routes(&next(&mut http).await)),
        ["default:http"]
    );

    // Applied to the gRPC port: the route, then the default without matches.
    cluster.apply(&votes(Some(9090)));
    let routes = grpc_routes(&next(&mut grpc).await);
    assert_eq!(
        route_names(&routes),
        ["GRPCRoute.gateway.networking.k8s.io/votes", "default:grpc"]
    );
    let rule = &routes[0].rules[0];
    assert_eq!(
        rule.matches[0].rpc,
        Some(GrpcRpcMatch {
            service: "emojivoto.v1.VotingService".into(),
            method: "Vote".into(),
        })
    );
    let Some(grpc_route::distribution::Kind::RandomAvailable(random)) =
        rule.backends.clone().and_then(|d| d.kind)
    else {
        panic!("random-available: {rule:?}");
    };
    assert_eq!(random.backends.len(), 1);
    let retry = rule.retry.expect("retry.linkerd.io/grpc");
    let c = retry.conditions.expect("conditions");
    assert_eq!(retry.max_retries, 2);
    assert!(c.unavailable && c.cancelled && !c.internal);
    assert!(routes[1].rules[0].matches.is_empty());

    // Attached to every port: the detected port's policy becomes gRPC's.
    cluster.apply(&votes(None));
    let routes = grpc_routes(&next(&mut http).await);
    assert_eq!(
        route_names(&routes),
        ["GRPCRoute.gateway.networking.k8s.io/votes", "default:grpc"]
    );

    // Deleted: each port's default is back.
    cluster.delete(Kind::GrpcRoute, "votes");
    assert_eq!(
        names(&detect_routes(&next(&mut http).await)),
        ["default:http"]
    );
    let routes = grpc_routes(&next(&mut grpc).await);
    assert_eq!(route_names(&routes), ["default:grpc"]);
    assert_eq!(routes[0].rules[0].matches.len(), 1);
}
