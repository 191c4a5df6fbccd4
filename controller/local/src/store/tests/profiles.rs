//! ServiceProfiles through the store: apply, change, the log, the
//! snapshot, the watch, a restart, delete.

use super::*;

/// web's profile written as `api_version`, with a route `GET /api/list`
/// that times out after `timeout`, and a 500m override to web-v2.
fn profile_doc(api_version: &str, timeout: &str) -> String {
    format!(
        "apiVersion: {api_version}\nkind: ServiceProfile\nmetadata: {{name: web.shop.svc.cluster.local, namespace: shop}}\nspec:\n  routes:\n  - name: GET /api/list\n    condition: {{method: GET, pathRegex: '/api/list/\\d+'}}\n    responseClasses: [{{condition: {{status: {{min: 500}}}}, isFailure: true}}]\n    isRetryable: true\n    timeout: {timeout}\n  retryBudget: {{retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}}\n  dstOverrides: [{{authority: 'web-v2.shop.svc.cluster.local:80', weight: 500m}}]\n"
    )
}

const NAME: &str = "web.shop.svc.cluster.local";

fn profile(store: &Store) -> strand_controller_core::ServiceProfile {
    match store.get(Kind::ServiceProfile, "shop", NAME) {
        Some(Resource::ServiceProfile(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn service_profiles_round_trip_through_log_snapshot_and_watch() {
    use strand_controller_core::ServiceProfileApi;
    let dir = TempDir::new("profiles");
    let (config, store) = open_compacting(&dir).await;
    let text = [
        service("shop", "web", 80),
        profile_doc("linkerd.io/v1alpha2", "300ms"),
    ]
    .join("---\n");
    let applied = store.apply(text).await.expect("apply");
    assert_eq!(
        actions(&applied)[1],
        (format!("ServiceProfile shop/{NAME}"), Action::Created)
    );
    // The same again is unchanged; a new timeout configures it, and so
    // does another API version (kept as written).
    let again = store
        .apply(profile_doc("linkerd.io/v1alpha2", "300ms"))
        .await
        .expect("again");
    assert_eq!(again[0].action, Action::Unchanged);
    let changed = store
        .apply(profile_doc("linkerd.io/v1alpha2", "1.5s"))
        .await
        .expect("configure");
    assert_eq!(changed[0].action, Action::Configured);
    let p = profile(&store);
    assert_eq!(p.metadata.generation, 2);
    assert!(p.metadata.creation_timestamp.is_some());
    assert_eq!(
        p.spec.routes[0].timeout(),
        std::time::Duration::from_millis(1500)
    );
    let moved = store
        .apply(profile_doc("linkerd.io/v1alpha1", "1.5s"))
        .await
        .expect("configure");
    assert_eq!(moved[0].action, Action::Configured);
    assert_eq!(profile(&store).api, ServiceProfileApi::V1alpha1);
    // A refused profile leaves the stored one alone, and names the field.
    let bad = profile_doc("linkerd.io/v1alpha2", "1.5s").replace("/api/list/\\d+", "/api/(");
    let err = store.apply(bad).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("spec.routes[0].condition.pathRegex: \"/api/(\" is not a usable path regex"),
        "{err}"
    );
    store
        .apply(service("shop", "api", 81))
        .await
        .expect("more records");

    // Watch events carry profiles as documents a client parses back.
    let mut watch = store.watch();
    loop {
        let ev = watch.next().await.expect("event");
        if ev.change == Change::Synced {
            break;
        }
        let back = WatchEvent::from_json(ev.to_json()).expect("parses back");
        assert_eq!(back, ev);
    }

    // Through a restart (snapshot plus log): as applied.
    assert!(config.state_dir.join(SNAPSHOT_FILE).exists(), "compacted");
    let before = everything(&store);
    drop(watch);
    drop(store);
    let store = Store::open(config).await.expect("reopen");
    assert_eq!(everything(&store), before);
    let p = profile(&store);
    assert_eq!(p.api, ServiceProfileApi::V1alpha1);
    assert_eq!(p.spec.dst_overrides[0].weight.milli(), 500);
    let json = store
        .get(Kind::ServiceProfile, "shop", NAME)
        .expect("stored")
        .to_json();
    assert_eq!(json["apiVersion"], "linkerd.io/v1alpha1");
    assert_eq!(json["spec"]["routes"][0]["timeout"], "1.5s");
    assert_eq!(json["spec"]["dstOverrides"][0]["weight"], "500m");
    assert_eq!(json["spec"]["retryBudget"]["retryRatio"], 0.2);

    let deleted = store
        .delete(Kind::ServiceProfile, "shop", NAME)
        .await
        .expect("delete");
    assert!(deleted.is_some());
    assert!(store.get(Kind::ServiceProfile, "shop", NAME).is_none());
    // And the deletion is durable too.
    drop(store);
    let store = Store::open(dir.config()).await.expect("reopen");
    assert!(store.list(Kind::ServiceProfile, None).is_empty());
}

fn everything(store: &Store) -> Vec<serde_json::Value> {
    Kind::ALL
        .iter()
        .flat_map(|k| store.list(*k, None))
        .map(|r| r.to_json())
        .collect()
}
