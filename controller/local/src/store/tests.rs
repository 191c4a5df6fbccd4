use super::*;
use crate::test_support::{TempDir, service};
use std::collections::HashSet;
use std::net::IpAddr;
use strand_controller_core::Service;

mod crash;
mod durability;
mod grpc_routes;
mod profiles;
mod units;

async fn open(dir: &TempDir) -> Store {
    Store::open(dir.config()).await.expect("open store")
}

/// A store in `dir` that writes a snapshot every four records, so that a
/// few applies reach both the snapshot and the log; and its config, to
/// reopen it.
async fn open_compacting(dir: &TempDir) -> (StoreConfig, Store) {
    let config = StoreConfig {
        compact_records: 4,
        ..dir.config()
    };
    let store = Store::open(config.clone()).await.expect("open");
    (config, store)
}

fn actions(applied: &[Applied]) -> Vec<(String, Action)> {
    applied
        .iter()
        .map(|a| (format!("{} {}/{}", a.kind, a.namespace, a.name), a.action))
        .collect()
}

fn svc(store: &Store, ns: &str, name: &str) -> Service {
    match store.get(Kind::Service, ns, name) {
        Some(Resource::Service(s)) => s,
        other => panic!("{ns}/{name}: {other:?}"),
    }
}

fn pod_doc(name: &str, ip: Option<&str>) -> String {
    let status = ip.map_or(String::new(), |ip| format!("status: {{podIP: {ip}}}\n"));
    format!(
        "apiVersion: local.strand.io/v1alpha1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{workload: web}}\n{status}"
    )
}

fn log_len(dir: &TempDir) -> u64 {
    std::fs::metadata(dir.config().state_dir.join(LOG_FILE))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn apply_get_list_delete() {
    let dir = TempDir::new("crud");
    let store = open(&dir).await;
    let text = [
        service("shop", "web", 80),
        service("default", "db", 5432),
        service("shop", "api", 8080),
    ]
    .join("---\n");
    let applied = store.apply(text).await.expect("apply");
    assert_eq!(
        actions(&applied),
        [
            ("Service shop/web".to_string(), Action::Created),
            ("Service default/db".to_string(), Action::Created),
            ("Service shop/api".to_string(), Action::Created),
        ]
    );
    let names = |ns: Option<&str>| -> Vec<String> {
        store
            .list(Kind::Service, ns)
            .iter()
            .map(|r| format!("{}/{}", r.meta().namespace, r.meta().name))
            .collect()
    };
    assert_eq!(names(None), ["default/db", "shop/api", "shop/web"]);
    assert_eq!(names(Some("shop")), ["shop/api", "shop/web"]);
    assert!(names(Some("nope")).is_empty());
    assert!(store.list(Kind::Pod, None).is_empty());

    let web = svc(&store, "shop", "web");
    assert_eq!(web.metadata.generation, 1);
    let ts = web.metadata.creation_timestamp.clone().expect("timestamp");
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    assert_eq!(store.resource_version(), 1);

    let deleted = store
        .delete(Kind::Service, "shop", "web")
        .await
        .expect("delete");
    assert_eq!(deleted.map(|r| r.key()), Some(web_key()));
    assert!(store.get(Kind::Service, "shop", "web").is_none());
    assert!(
        store
            .delete(Kind::Service, "shop", "web")
            .await
            .expect("delete")
            .is_none()
    );
    assert_eq!(store.resource_version(), 2);
}

fn web_key() -> ResourceKey {
    ResourceKey::new(Kind::Service, "shop", "web")
}

#[tokio::test]
async fn created_configured_unchanged_and_generations() {
    let dir = TempDir::new("actions");
    let store = open(&dir).await;
    store
        .apply(service("shop", "web", 80))
        .await
        .expect("create");
    let first = svc(&store, "shop", "web");
    let before = log_len(&dir);

    let again = store
        .apply(service("shop", "web", 80))
        .await
        .expect("again");
    assert_eq!(again[0].action, Action::Unchanged);
    assert_eq!(log_len(&dir), before, "unchanged writes nothing");
    assert_eq!(svc(&store, "shop", "web"), first);

    // A new port and a user-supplied timestamp: configured, generation 2,
    // the original timestamp (and the allocated VIP) kept.
    let changed = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  creationTimestamp: \"2000-01-01T00:00:00Z\"\n  generation: 40\nspec:\n  selector: {app: web}\n  ports: [{port: 80, name: http}, {port: 81, name: admin}]\n";
    let applied = store.apply(changed).await.expect("configure");
    assert_eq!(applied[0].action, Action::Configured);
    let second = svc(&store, "shop", "web");
    assert_eq!(second.metadata.generation, 2);
    assert_eq!(
        second.metadata.creation_timestamp,
        first.metadata.creation_timestamp
    );
    assert_eq!(second.spec.cluster_ip, first.spec.cluster_ip);
    assert_eq!(second.spec.ports.len(), 2);

    // Labels count as a change too.
    let labelled = changed.replace("  generation: 40\n", "  labels: {tier: front}\n");
    let applied = store.apply(labelled).await.expect("label");
    assert_eq!(applied[0].action, Action::Configured);
    assert_eq!(svc(&store, "shop", "web").metadata.generation, 3);
}

#[tokio::test]
async fn virtual_ips_are_allocated_kept_and_freed() {
    let dir = TempDir::new("vips");
    let store = open(&dir).await;
    let text = [
        service("default", "a", 80),
        service("default", "b", 80).replace("spec:\n", "spec:\n  clusterIP: 10.96.0.2\n"),
        service("default", "h", 80).replace("spec:\n", "spec:\n  clusterIP: None\n"),
        service("default", "c", 80).replace("spec:\n", "spec:\n  clusterIP: \"\"\n"),
    ]
    .join("---\n");
    store.apply(text).await.expect("apply");
    let ip = |name: &str| {
        svc(&store, "default", name)
            .spec
            .cluster_ip
            .expect("assigned")
    };
    // b asked for the first allocatable address; the others went around it.
    assert_eq!(ip("b"), "10.96.0.2");
    assert_eq!(ip("a"), "10.96.0.3");
    assert_eq!(ip("c"), "10.96.0.4");
    assert_eq!(ip("h"), "None");
    assert!(svc(&store, "default", "h").is_headless());

    // Re-applying without clusterIP keeps the address.
    store
        .apply(service("default", "a", 81))
        .await
        .expect("update");
    assert_eq!(ip("a"), "10.96.0.3");

    store
        .delete(Kind::Service, "default", "a")
        .await
        .expect("delete");
    let retake = service("default", "d", 80).replace("spec:\n", "spec:\n  clusterIP: 10.96.0.3\n");
    store
        .apply(retake)
        .await
        .expect("a freed address may be asked for");
    assert_eq!(ip("d"), "10.96.0.3");

    let mut seen = HashSet::new();
    for name in ["e", "f", "g"] {
        store
            .apply(service("default", name, 80))
            .await
            .expect("apply");
        let got: IpAddr = ip(name).parse().expect("ip");
        assert!(seen.insert(got));
        assert!(!["10.96.0.2", "10.96.0.3", "10.96.0.4"].contains(&ip(name).as_str()));
    }
}

#[tokio::test]
async fn pod_ips_and_the_status_subresource() {
    let dir = TempDir::new("pods");
    let store = open(&dir).await;
    let text = [
        pod_doc("p1", None),
        pod_doc("p2", Some("10.42.0.7")),
        pod_doc("p3", None),
    ]
    .join("---\n");
    store.apply(text).await.expect("apply");
    let pod = |name: &str| match store.get(Kind::Pod, "default", name) {
        Some(Resource::Pod(p)) => p,
        other => panic!("{other:?}"),
    };
    let ip = |name: &str| pod(name).status.pod_ip.expect("pod ip").to_string();
    // .0 is the network, .1 the gateway.
    assert_eq!(ip("p1"), "10.42.0.2");
    assert_eq!(ip("p2"), "10.42.0.7");
    assert_eq!(ip("p3"), "10.42.0.3");

    let status = PodStatus {
        ready: true,
        meshed: true,
        pid: Some(42),
        ..PodStatus::default()
    };
    let updated = store
        .update_pod_status("default", "p1", status.clone())
        .await
        .expect("status");
    assert!(updated.status.ready);
    assert_eq!(updated.status.pod_ip, pod("p1").status.pod_ip, "podIP kept");
    assert_eq!(
        updated.metadata.generation, 1,
        "status does not bump generation"
    );

    // Re-applying the spec leaves the status alone.
    store.apply(pod_doc("p1", None)).await.expect("reapply");
    assert!(pod("p1").status.ready);

    let taken = PodStatus {
        pod_ip: Some("10.42.0.7".parse().expect("ip")),
        ..status.clone()
    };
    let err = store
        .update_pod_status("default", "p1", taken)
        .await
        .expect_err("taken");
    assert!(
        matches!(&err, StatusError::Conflict { error, .. } if error.field == "status.podIP"),
        "{err}"
    );
    let err = store
        .update_pod_status("default", "nope", status)
        .await
        .expect_err("absent");
    assert!(matches!(err, StatusError::NotFound(_)));

    store
        .delete(Kind::Pod, "default", "p2")
        .await
        .expect("delete");
    store
        .apply(pod_doc("p4", Some("10.42.0.7")))
        .await
        .expect("freed");
    assert_eq!(ip("p4"), "10.42.0.7");
}

/// Each bad input is rejected whole, names its document, field and reason,
/// and leaves both the state and the log as they were.
#[tokio::test]
async fn invalid_input_is_rejected_whole() {
    let dir = TempDir::new("invalid");
    let store = open(&dir).await;
    let db = service("default", "db", 5432).replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n");
    store.apply(db).await.expect("seed");
    let good = service("default", "fresh", 80);
    let cases: Vec<(String, usize, &str, &str, bool)> = vec![
        (
            format!("{good}---\nkind: [\n"),
            2,
            "",
            "not valid YAML",
            false,
        ),
        (
            format!("{good}---\napiVersion: v1\nkind: Deployment\nmetadata: {{name: x}}\n"),
            2,
            "kind",
            "unknown kind",
            false,
        ),
        (
            format!("{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: x}}\n"),
            2,
            "spec",
            "is required",
            false,
        ),
        (
            format!(
                "{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{port: 80, name: a}}, {{port: 80, name: b}}]\n"
            ),
            2,
            "spec.ports[1].port",
            "duplicate port 80/TCP (also spec.ports[0])",
            false,
        ),
        (
            format!("{good}---\n{good}"),
            2,
            "metadata.name",
            "also defined by document 1",
            false,
        ),
        (
            format!(
                "{good}---\n{}",
                service("default", "x", 80).replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n")
            ),
            2,
            "spec.clusterIP",
            "already allocated to Service default/db",
            true,
        ),
        (
            format!(
                "{good}---\n{}",
                service("default", "x", 80).replace("spec:\n", "spec:\n  clusterIP: 10.1.0.10\n")
            ),
            2,
            "spec.clusterIP",
            "not inside the service CIDR 10.96.0.0/16",
            false,
        ),
        (
            format!(
                "{good}---\n{}",
                service("default", "db", 5432)
                    .replace("spec:\n", "spec:\n  clusterIP: 10.96.0.11\n")
            ),
            2,
            "spec.clusterIP",
            "may not change once set",
            false,
        ),
    ];
    let before = store.list(Kind::Service, None);
    let log = log_len(&dir);
    for (text, document, field, reason, conflict) in cases {
        let err = store.apply(text.clone()).await.expect_err(&text);
        let e = match (&err, conflict) {
            (ApplyError::Invalid(e), false) | (ApplyError::Conflict(e), true) => e,
            _ => panic!("{text}: wrong error kind {err:?}"),
        };
        assert_eq!(e.document, document, "{err}");
        assert_eq!(e.field, field, "{err}");
        assert!(e.reason.contains(reason), "{err}");
        assert_eq!(store.list(Kind::Service, None), before, "{text}");
        assert_eq!(log_len(&dir), log, "{text}");
    }
}

#[tokio::test]
async fn watch_lists_then_follows() {
    let dir = TempDir::new("watch");
    let store = open(&dir).await;
    store
        .apply(service("default", "a", 80))
        .await
        .expect("apply");
    let mut watch = store.watch();
    let ev = watch.next().await.expect("event");
    assert!(matches!(&ev.change, Change::Added(r) if r.meta().name == "a"));
    assert_eq!(watch.next().await.expect("event").change, Change::Synced);

    store
        .apply(service("default", "a", 81))
        .await
        .expect("apply");
    let ev = watch.next().await.expect("event");
    assert!(matches!(&ev.change, Change::Modified(r) if r.meta().generation == 2));
    assert_eq!(ev.resource_version, 2);
    store
        .delete(Kind::Service, "default", "a")
        .await
        .expect("delete");
    let ev = watch.next().await.expect("event");
    assert!(matches!(&ev.change, Change::Deleted(r) if r.meta().name == "a"));
    assert_eq!(WatchEvent::from_json(ev.to_json()), Ok(ev));

    drop(store);
    assert_eq!(watch.next().await, None, "a watch ends with the store");
}

#[tokio::test]
async fn a_lagging_watcher_is_told_to_resync() {
    let dir = TempDir::new("lag");
    let config = StoreConfig {
        watch_capacity: 2,
        ..dir.config()
    };
    let store = Store::open(config).await.expect("open");
    let mut watch = store.watch();
    assert_eq!(watch.next().await.expect("synced").change, Change::Synced);
    for name in ["a", "b", "c", "d", "e"] {
        store
            .apply(service("default", name, 80))
            .await
            .expect("apply");
    }
    let mut got = Vec::new();
    loop {
        let ev = watch.next().await.expect("event");
        let done = ev.change == Change::Synced;
        got.push(ev);
        if done {
            break;
        }
    }
    assert_eq!(got[0].change, Change::Resync);
    let names: Vec<_> = got[1..got.len() - 1]
        .iter()
        .map(|e| e.object().expect("object").meta().name.clone())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    store
        .apply(service("default", "f", 80))
        .await
        .expect("apply");
    let ev = watch.next().await.expect("event");
    assert!(matches!(&ev.change, Change::Added(r) if r.meta().name == "f"));
}
