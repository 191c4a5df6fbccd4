//! GRPCRoutes through the store: apply, change, the log, the snapshot, a
//! restart (keeping the API version written), delete.

use super::*;
use strand_controller_core::{GrpcRoute, GrpcRouteApi};

/// A GRPCRoute `votes` written as `api_version`, sending `Vote` to
/// voting-v2 with `weight`, retried on `unavailable`.
fn route_doc(api_version: &str, weight: u32) -> String {
    format!(
        "apiVersion: {api_version}\nkind: GRPCRoute\nmetadata: {{name: votes, namespace: shop, annotations: {{retry.linkerd.io/grpc: unavailable}}}}\nspec:\n  parentRefs: [{{name: web, group: core, kind: Service, port: 80}}]\n  rules:\n  - matches: [{{method: {{service: emojivoto.v1.VotingService, method: Vote}}, headers: [{{name: x-user, type: RegularExpression, value: 'a.*'}}]}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-env, value: shop}}]}}}}]\n    backendRefs: [{{name: voting-v2, port: 80, weight: {weight}}}]\n"
    )
}

fn route(store: &Store) -> GrpcRoute {
    match store.get(Kind::GrpcRoute, "shop", "votes") {
        Some(Resource::GrpcRoute(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn grpc_routes_round_trip_through_log_snapshot_and_restart() {
    let dir = TempDir::new("grpcroutes");
    let (config, store) = open_compacting(&dir).await;
    let text = [
        service("shop", "web", 80),
        route_doc("gateway.networking.k8s.io/v1alpha2", 1),
    ]
    .join("---\n");
    let applied = store.apply(text).await.expect("apply");
    assert_eq!(
        actions(&applied)[1],
        ("GRPCRoute shop/votes".to_string(), Action::Created)
    );
    let again = store
        .apply(route_doc("gateway.networking.k8s.io/v1alpha2", 1))
        .await
        .expect("again");
    assert_eq!(again[0].action, Action::Unchanged);
    let changed = store
        .apply(route_doc("gateway.networking.k8s.io/v1alpha2", 5))
        .await
        .expect("configure");
    assert_eq!(changed[0].action, Action::Configured);
    let r = route(&store);
    assert_eq!(r.metadata.generation, 2);
    assert_eq!(r.api, GrpcRouteApi::GatewayV1alpha2);
    // A refused route leaves the stored one alone, and names the field.
    let bad = route_doc("gateway.networking.k8s.io/v1", 5).replace("method: Vote", "method: V/ote");
    let err = store.apply(bad).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("spec.rules[0].matches[0].method.method: \"V/ote\" must not contain \"/\""),
        "{err}"
    );
    for port in [81, 82, 83] {
        store
            .apply(service("shop", &format!("api-{port}"), port))
            .await
            .expect("more records");
    }

    // Through a restart (snapshot plus log): as applied, API version too.
    assert!(config.state_dir.join(SNAPSHOT_FILE).exists(), "compacted");
    let before = store.list(Kind::GrpcRoute, None);
    drop(store);
    let store = Store::open(config).await.expect("reopen");
    assert_eq!(store.list(Kind::GrpcRoute, None), before);
    let json = Resource::GrpcRoute(route(&store)).to_json();
    assert_eq!(json["apiVersion"], "gateway.networking.k8s.io/v1alpha2");
    assert_eq!(json["spec"]["rules"][0]["backendRefs"][0]["weight"], 5);

    let deleted = store
        .delete(Kind::GrpcRoute, "shop", "votes")
        .await
        .expect("delete");
    assert!(deleted.is_some());
    drop(store);
    let store = Store::open(dir.config()).await.expect("reopen");
    assert!(store.list(Kind::GrpcRoute, None).is_empty());
}
