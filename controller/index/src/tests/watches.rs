//! Watch lifecycle: creation before the service, sharing, quietness, cleanup, reset.

use super::*;

#[test]
fn watch_follows_the_service_and_its_port() {
    let index = index();
    let mut http = index.watch(&key("web"), 80);
    let mut admin = index.watch(&key("web"), 9990);
    assert!(seen(&mut http).is_none(), "no service yet");

    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    assert!(changed(&http));
    assert!(seen(&mut http).is_some());
    assert!(seen(&mut admin).is_some());

    let mut web = service("web", "web", "10.96.0.10");
    web.spec.ports.truncate(1);
    index.apply(Resource::Service(web));
    assert!(changed(&admin), "the removed port is published");
    assert!(seen(&mut admin).is_none());
    assert!(!changed(&http), "the kept port's view is unchanged");
    assert!(seen(&mut http).is_some());

    index.delete(&svc_key("web"));
    assert!(changed(&http));
    assert!(seen(&mut http).is_none(), "service deleted");
}

#[test]
fn unrelated_changes_do_not_wake_watchers() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let a = pod("a", "web", "10.1.0.1");
    index.apply(Resource::Pod(a.clone()));
    let rx = index.watch(&key("web"), 80);

    index.apply(Resource::Service(service("db", "db", "10.96.0.20")));
    index.apply(Resource::Pod(pod("db-0", "db", "10.1.0.2")));
    let mut stranger = pod("a", "web", "10.1.0.3");
    stranger.metadata.namespace = "other".into();
    index.apply(Resource::Pod(stranger));
    let mut starting = pod("starting", "web", "10.1.0.4");
    starting.status.ready = false;
    index.apply(Resource::Pod(starting));
    // Nothing an endpoint carries changes with the pid or the generation.
    let mut restarted = a.clone();
    restarted.status.pid = Some(4242);
    restarted.metadata.generation = 7;
    index.apply(Resource::Pod(restarted));
    // The same service again, and a service change that leaves port 80 as it was.
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let mut web = service("web", "web", "10.96.0.10");
    web.metadata.generation = 3;
    web.spec.ports[1].port = 9991;
    index.apply(Resource::Service(web));
    index.delete(&pod_key("missing"));

    assert!(!changed(&rx), "nothing port 80 serves has changed");
}

#[test]
fn receivers_share_one_entry_that_goes_when_they_do() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let a = index.watch(&key("web"), 80);
    let b = index.watch(&key("web"), 80);
    assert!(a.same_channel(&b));
    let c = index.watch(&key("web"), 9990);
    let d = index.watch(&key("nope"), 80);
    assert_eq!(index.watch_count(), 3);

    drop(a);
    assert_eq!(index.watch_count(), 3, "b still watches web:80");
    drop((b, c, d));
    assert_eq!(index.watch_count(), 0);

    // A new watch starts from the current state.
    index.apply(Resource::Pod(pod("p", "web", "10.1.0.1")));
    let mut e = index.watch(&key("web"), 80);
    assert_eq!(endpoints(&mut e), vec![addr("10.1.0.1:8080")]);
    assert_eq!(index.watch_count(), 1);
}

#[test]
fn dead_entries_are_dropped_on_change_and_by_later_watches() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    for port in 0..10 {
        drop(index.watch(&key("web"), port));
    }
    assert_eq!(index.watch_entries(), 10, "dropped lazily, not at once");
    index.apply(Resource::Pod(pod("p", "web", "10.1.0.1")));
    assert_eq!(index.watch_entries(), 0, "a change to web drops them");

    // Entries of services that never change go in the sweep that a later
    // `watch` runs once the map has grown enough.
    let mut i = 0;
    while index.watch_entries() == i {
        drop(index.watch(&key(&format!("svc-{i}")), 80));
        i += 1;
        assert!(i < 1000, "no sweep after {i} dead entries");
    }
    assert_eq!(
        index.watch_entries(),
        1,
        "the sweep kept only the new entry"
    );
}

#[test]
fn reset_applies_only_the_difference() {
    let index = index();
    let web = service("web", "web", "10.96.0.10");
    let db = service("db", "db", "10.96.0.20");
    let old = service("old", "old", "10.96.0.30");
    let (a, b, d) = (
        pod("a", "web", "10.1.0.1"),
        pod("b", "web", "10.1.0.2"),
        pod("d", "db", "10.1.0.3"),
    );
    index.reset(
        [&web, &db, &old]
            .map(|s| Resource::Service(s.clone()))
            .into_iter()
            .chain([&a, &b, &d].map(|p| Resource::Pod(p.clone())))
            .collect(),
    );
    let mut web_rx = index.watch(&key("web"), 80);
    let mut db_rx = index.watch(&key("db"), 80);
    let mut old_rx = index.watch(&key("old"), 80);
    assert_eq!(endpoints(&mut web_rx).len(), 2);
    assert_eq!(endpoints(&mut db_rx).len(), 1);
    assert!(seen(&mut old_rx).is_some());

    index.reset(vec![
        Resource::Service(web),
        Resource::Service(db),
        Resource::Pod(a),
        Resource::Pod(d),
    ]);
    assert!(changed(&web_rx), "b is gone");
    assert_eq!(endpoints(&mut web_rx), vec![addr("10.1.0.1:8080")]);
    assert!(changed(&old_rx), "old is gone");
    assert!(seen(&mut old_rx).is_none());
    assert!(!changed(&db_rx), "db is unchanged");
    let names = |v: Vec<String>| v.join(",");
    assert_eq!(
        names(
            index
                .services()
                .into_iter()
                .map(|s| s.metadata.name)
                .collect()
        ),
        "db,web"
    );
    assert_eq!(
        names(index.pods().into_iter().map(|p| p.metadata.name).collect()),
        "a,d"
    );
}
