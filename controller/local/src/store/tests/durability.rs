//! Restart, torn and corrupt logs, compaction and the directory lock.

use super::*;
use std::io::Write;

fn log_path(dir: &TempDir) -> PathBuf {
    dir.config().state_dir.join(LOG_FILE)
}

fn everything(store: &Store) -> Vec<serde_json::Value> {
    Kind::ALL
        .iter()
        .flat_map(|k| store.list(*k, None))
        .map(|r| r.to_json())
        .collect()
}

fn append_raw(dir: &TempDir, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log_path(dir))
        .expect("open log");
    f.write_all(bytes).expect("append");
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let dir = TempDir::new("restart");
    let store = open(&dir).await;
    let text = [
        service("shop", "web", 80),
        service("shop", "db", 5432).replace("spec:\n", "spec:\n  clusterIP: 10.96.7.7\n"),
        service("shop", "gone", 1),
        pod_doc("p1", None),
    ]
    .join("---\n");
    store.apply(text).await.expect("apply");
    store
        .apply(service("shop", "web", 81))
        .await
        .expect("configure");
    store
        .delete(Kind::Service, "shop", "gone")
        .await
        .expect("delete");
    let status = PodStatus {
        ready: true,
        ..PodStatus::default()
    };
    store
        .update_pod_status("default", "p1", status)
        .await
        .expect("status");
    let before = everything(&store);
    let version = store.resource_version();
    drop(store);

    let store = open(&dir).await;
    assert_eq!(everything(&store), before);
    assert_eq!(store.resource_version(), version);
    assert_eq!(svc(&store, "shop", "web").metadata.generation, 2);

    // Addresses taken before the restart stay taken.
    let taken: HashSet<_> = store
        .list(Kind::Service, None)
        .iter()
        .filter_map(|r| match r {
            Resource::Service(s) => s.spec.cluster_ip.clone(),
            _ => None,
        })
        .collect();
    for name in ["n1", "n2", "n3"] {
        store.apply(service("shop", name, 80)).await.expect("apply");
        let ip = svc(&store, "shop", name).spec.cluster_ip.expect("vip");
        assert!(!taken.contains(&ip), "{ip} reused");
    }
    let dup = service("shop", "x", 80).replace("spec:\n", "spec:\n  clusterIP: 10.96.7.7\n");
    assert!(matches!(
        store.apply(dup).await,
        Err(ApplyError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_torn_tail_is_cut_off() {
    let dir = TempDir::new("torn");
    let store = open(&dir).await;
    for name in ["a", "b", "c"] {
        store
            .apply(service("default", name, 80))
            .await
            .expect("apply");
    }
    let before = everything(&store);
    drop(store);
    let good_len = log_len(&dir);

    // Half of a real record, as a crash in the middle of an append leaves it.
    let record = wal::encode(&encode_record(4, &[]));
    append_raw(&dir, &record[..record.len() / 2]);
    let store = open(&dir).await;
    assert_eq!(everything(&store), before);
    assert_eq!(log_len(&dir), good_len, "the torn tail was truncated");
    store
        .apply(service("default", "d", 80))
        .await
        .expect("apply after repair");
    drop(store);

    // Garbage: a length far beyond the maximum.
    let good_len = log_len(&dir);
    append_raw(&dir, &[0xff; 5]);
    append_raw(&dir, b"\xff\xff\xff\x7f not a record");
    let store = open(&dir).await;
    assert_eq!(store.list(Kind::Service, None).len(), 4);
    assert_eq!(log_len(&dir), good_len);
}

/// The rule (wal.rs): replay stops at the first bad record, so records
/// before it survive and it and all later ones are dropped (and kept aside).
#[tokio::test]
async fn a_corrupt_record_ends_the_log() {
    let dir = TempDir::new("corrupt");
    let store = open(&dir).await;
    let mut ends = Vec::new();
    for name in ["a", "b", "c"] {
        store
            .apply(service("default", name, 80))
            .await
            .expect("apply");
        ends.push(log_len(&dir));
    }
    drop(store);
    let path = log_path(&dir);
    let mut bytes = std::fs::read(&path).expect("read log");
    // A payload byte of the second record.
    bytes[ends[0] as usize + 20] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write log");

    let store = open(&dir).await;
    let names: Vec<_> = store
        .list(Kind::Service, None)
        .iter()
        .map(|r| r.meta().name.clone())
        .collect();
    assert_eq!(names, ["a"]);
    assert_eq!(log_len(&dir), ends[0]);
    let kept = std::fs::read(format!("{}.dropped-{}", path.display(), ends[0])).expect("kept");
    assert_eq!(kept.len() as u64, ends[2] - ends[0]);
    // The store goes on from there.
    store
        .apply(service("default", "b", 80))
        .await
        .expect("apply");
    assert_eq!(store.resource_version(), 2);
}

#[tokio::test]
async fn compaction_keeps_the_state() {
    let dir = TempDir::new("compact");
    let config = StoreConfig {
        compact_records: 10,
        ..dir.config()
    };
    let store = Store::open(config.clone()).await.expect("open");
    for i in 0..25 {
        store
            .apply(service("default", &format!("s{i}"), 80))
            .await
            .expect("apply");
    }
    store
        .delete(Kind::Service, "default", "s3")
        .await
        .expect("delete");
    store.apply(pod_doc("p", None)).await.expect("apply");
    let snapshot = config.state_dir.join(SNAPSHOT_FILE);
    assert!(snapshot.exists(), "compacted");
    assert!(log_len(&dir) > 0, "records after the last compaction");
    let before = everything(&store);
    let version = store.resource_version();
    drop(store);

    let store = Store::open(config.clone()).await.expect("reopen");
    assert_eq!(everything(&store), before);
    assert_eq!(store.resource_version(), version);
    store
        .apply(service("default", "new", 80))
        .await
        .expect("apply");
    let ip = svc(&store, "default", "new").spec.cluster_ip.expect("vip");
    assert_eq!(
        ip, "10.96.0.27",
        "the allocation cursor survived compaction"
    );
}

/// A crash after the snapshot's rename but before the log is emptied leaves
/// records the snapshot already holds: they are skipped, not replayed twice.
#[tokio::test]
async fn records_already_in_the_snapshot_are_skipped() {
    let dir = TempDir::new("stale-log");
    let config = StoreConfig {
        compact_records: 5,
        ..dir.config()
    };
    let store = Store::open(config.clone()).await.expect("open");
    for i in 0..4 {
        store
            .apply(service("default", &format!("s{i}"), 80))
            .await
            .expect("apply");
    }
    let old_log = std::fs::read(log_path(&dir)).expect("read");
    store
        .apply(service("default", "s4", 80))
        .await
        .expect("compacts");
    store
        .delete(Kind::Service, "default", "s0")
        .await
        .expect("delete");
    let before = everything(&store);
    drop(store);
    // The stale records, followed by the one written after compaction.
    let mut log = old_log;
    log.extend(std::fs::read(log_path(&dir)).expect("read"));
    std::fs::write(log_path(&dir), &log).expect("write");

    let store = Store::open(config).await.expect("reopen");
    assert_eq!(everything(&store), before);
    assert_eq!(log_len(&dir), log.len() as u64, "nothing truncated");
}

#[tokio::test]
async fn the_state_dir_is_locked() {
    let dir = TempDir::new("lock");
    let store = open(&dir).await;
    let err = Store::open(dir.config()).await.expect_err("locked");
    assert!(
        matches!(&err, OpenError::Locked { pid, .. } if *pid == std::process::id()),
        "{err}"
    );
    assert!(err.to_string().contains("another control plane"), "{err}");
    drop(store);
    let store = open(&dir).await;
    drop(store);

    // A lock left by a process that is gone is stale.
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    child.wait().expect("wait");
    let lock = dir.config().state_dir.join("lock");
    std::fs::write(&lock, format!("{} 12345\n", child.id())).expect("write lock");
    let store = open(&dir).await;
    let content = std::fs::read_to_string(&lock).expect("lock");
    assert!(content.starts_with(&format!("{} ", std::process::id())));
    drop(store);
    assert!(!lock.exists(), "released on drop");
}

/// An HTTPRoute `name` written as `api_version`, splitting web's requests
/// between web-v1 and web-v2, redirecting `/old` and changing the headers
/// of the rest.
fn route_doc(api_version: &str, name: &str, v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: {api_version}\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  parentRefs: [{{name: web, group: core, kind: Service, port: 80}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /api}}, method: GET}}]\n    backendRefs: [{{name: web-v1, port: 80, weight: {v1}}}, {{name: web-v2, port: 80, weight: {v2}}}]\n    timeouts: {{request: 2s, backendRequest: 500ms}}\n{FILTER_RULES}"
    )
}

/// Rules with each filter strand implements.
const FILTER_RULES: &str = "  - matches: [{path: {type: PathPrefix, value: /old}}]\n    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: shop.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, port: 8443, statusCode: 301}}]\n  - filters:\n    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Env, value: shop}], add: [{name: x-trace, value: \"1\"}], remove: [x-debug]}}\n    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-served-by, value: web}]}}\n";

fn route(store: &Store, name: &str) -> strand_controller_core::HttpRoute {
    match store.get(Kind::HttpRoute, "shop", name) {
        Some(Resource::HttpRoute(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test]
async fn http_routes_round_trip_through_log_snapshot_and_watch() {
    use strand_controller_core::HttpRouteApi;
    let dir = TempDir::new("routes");
    let (config, store) = open_compacting(&dir).await;
    let text = [
        service("shop", "web", 80),
        route_doc("gateway.networking.k8s.io/v1", "canary", 90, 10),
        route_doc("policy.linkerd.io/v1beta3", "linkerd", 1, 1),
    ]
    .join("---\n");
    let applied = store.apply(text).await.expect("apply");
    assert_eq!(
        actions(&applied)[1],
        ("HTTPRoute shop/canary".to_string(), Action::Created)
    );
    // The same again is unchanged; new weights configure it.
    let again = store
        .apply(route_doc("gateway.networking.k8s.io/v1", "canary", 90, 10))
        .await
        .expect("again");
    assert_eq!(again[0].action, Action::Unchanged);
    let changed = store
        .apply(route_doc("gateway.networking.k8s.io/v1", "canary", 0, 100))
        .await
        .expect("configure");
    assert_eq!(changed[0].action, Action::Configured);
    let canary = route(&store, "canary");
    assert_eq!(canary.metadata.generation, 2);
    assert!(canary.metadata.creation_timestamp.is_some());
    assert_eq!(canary.spec.rules[0].backend_refs[0].weight(), 0);
    // Switching API version is a change, kept as written.
    let moved = store
        .apply(route_doc("policy.linkerd.io/v1beta3", "canary", 0, 100))
        .await
        .expect("configure");
    assert_eq!(moved[0].action, Action::Configured);
    assert_eq!(route(&store, "canary").api, HttpRouteApi::LinkerdV1beta3);
    store
        .apply(route_doc("gateway.networking.k8s.io/v1", "canary", 0, 100))
        .await
        .expect("configure");
    let names: Vec<_> = store
        .list(Kind::HttpRoute, Some("shop"))
        .iter()
        .map(|r| r.meta().name.clone())
        .collect();
    assert_eq!(names, ["canary", "linkerd"]);
    assert!(store.list(Kind::HttpRoute, Some("default")).is_empty());

    // Watch events carry routes as documents a client parses back.
    let mut watch = store.watch();
    loop {
        let ev = watch.next().await.expect("event");
        if ev.change == Change::Synced {
            break;
        }
        let back = WatchEvent::from_json(ev.to_json()).expect("parses back");
        assert_eq!(back, ev);
    }

    // Through a restart (snapshot plus log), both API versions kept.
    assert!(config.state_dir.join(SNAPSHOT_FILE).exists(), "compacted");
    let before = everything(&store);
    drop(watch);
    drop(store);
    let store = Store::open(config).await.expect("reopen");
    assert_eq!(everything(&store), before);
    assert_eq!(route(&store, "canary").api, HttpRouteApi::GatewayV1);
    assert_eq!(route(&store, "linkerd").api, HttpRouteApi::LinkerdV1beta3);
    let json = store
        .get(Kind::HttpRoute, "shop", "linkerd")
        .expect("stored")
        .to_json();
    assert_eq!(json["apiVersion"], "policy.linkerd.io/v1beta3");
    assert_eq!(
        json["spec"]["rules"][0]["timeouts"]["backendRequest"],
        "500ms"
    );
    // Filters come back typed, as written.
    let written = match strand_controller_core::parse_manifests(&route_doc(
        "policy.linkerd.io/v1beta3",
        "linkerd",
        1,
        1,
    ))
    .expect("valid")
    .pop()
    {
        Some(Resource::HttpRoute(r)) => r,
        other => panic!("not a route: {other:?}"),
    };
    let stored = route(&store, "linkerd");
    assert_eq!(stored.spec, written.spec);
    assert_eq!(stored.spec.rules[2].filters.len(), 2);
    assert_eq!(
        json["spec"]["rules"][1]["filters"][0]["requestRedirect"]["path"]["replacePrefixMatch"],
        "/new"
    );

    let deleted = store
        .delete(Kind::HttpRoute, "shop", "canary")
        .await
        .expect("delete");
    assert!(deleted.is_some());
    assert!(store.get(Kind::HttpRoute, "shop", "canary").is_none());
}
