//! Discovery over time: control-plane outages, sharing between concurrent
//! resolutions, idle eviction, and shutdown.

use super::*;

/// Short enough to test, long enough that a loaded machine resolves well
/// within it.
const IDLE: Duration = Duration::from_millis(300);

/// Waits (polling, bounded by the patience) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn endpoints_survive_a_control_plane_restart_then_are_replaced() {
    let mut cp = ControlPlane::start().await;
    let addr = cp.addr;
    let d = Discovery::new(config(addr));
    let target = sa("10.96.0.10:8080");
    let initial = ["10.0.0.1:8080", "10.0.0.2:8080"];
    let (svc, watch, get) = resolve_service(&mut cp, &d, target, &initial).await;
    let before = svc.endpoints.borrow().clone();

    cp.kill().await;
    within("the policy stream breaks", watch.cancelled()).await;
    within("the destination stream breaks", get.cancelled()).await;

    // Discovery reconnects on its own once something listens again.
    let mut cp = ControlPlane::start_on(addr).await;
    // A control plane still starting may refuse at first: that does not
    // undo the answer it gave before.
    let starting = cp.next_watch().await;
    assert_eq!(starting.request.target, Some(Target::Addr(target.into())));
    starting.reject(Status::unimplemented("starting"));
    let mut watch = cp.next_watch().await;
    let mut get = cp.next_get().await;
    assert_eq!(get.request.path, WEB);
    // Both streams broke and were retried: nothing was cleared meanwhile.
    assert_eq!(*svc.endpoints.borrow(), before);

    watch.send(service_policy(WEB));
    get.send(add(vec![ep("10.0.0.7:8080")], &[]));
    let eps = endpoints_where(&svc, |e| e.version > before.version).await;
    assert_eq!(
        keys(&eps),
        [sa("10.0.0.7:8080")],
        "the fresh state replaced the old"
    );
    assert!(eps.exists);
    let again = within("a cached resolution", d.resolve_addr(target)).await;
    assert_eq!(*service(again.expect("resolves")).endpoints.borrow(), eps);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn concurrent_resolutions_share_one_discovery() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let target = sa("10.96.0.11:80");
    let control_plane = async {
        let mut watch = cp.next_watch().await;
        watch.send(service_policy(WEB));
        let mut get = cp.next_get().await;
        get.send(add(vec![ep("10.0.0.1:80"), ep("10.0.0.2:80")], &[]));
        (watch, get)
    };
    // Both resolutions are waiting before the control plane answers.
    let (a, b, _calls) = tokio::join!(
        d.resolve_addr(target),
        d.resolve_addr(target),
        control_plane
    );
    let (a, b) = (service(a.expect("a")), service(b.expect("b")));
    assert_eq!(*a.endpoints.borrow(), *b.endpoints.borrow());
    assert_eq!(a.endpoints.borrow().len(), 2);

    // And a later one is answered from the cache.
    let c = service(
        within("a cached resolution", d.resolve_addr(target))
            .await
            .expect("c"),
    );
    assert_eq!(*c.endpoints.borrow(), *a.endpoints.borrow());

    assert_eq!(cp.count(|s| &s.watch_calls), 1);
    assert_eq!(cp.count(|s| &s.get_calls), 1);
    assert_eq!(d.cached_targets(), 1);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn idle_targets_have_their_streams_cancelled() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(Config {
        idle_timeout: IDLE,
        ..config(cp.addr)
    });
    let target = sa("10.96.0.12:80");
    let (svc, watch, get) = resolve_service(&mut cp, &d, target, &["10.0.0.1:80"]).await;

    // A held service keeps its streams, however long it is held.
    let early = tokio::time::timeout(IDLE * 3, watch.cancelled()).await;
    assert!(early.is_err(), "cancelled while a Service was held");
    assert_eq!(cp.count(|s| &s.active_watches), 1);
    assert_eq!(cp.count(|s| &s.active_gets), 1);
    assert_eq!(d.cached_targets(), 1, "a held target stays cached");

    drop(svc);
    within("the policy stream is cancelled", watch.cancelled()).await;
    within("the destination stream is cancelled", get.cancelled()).await;
    assert_eq!(cp.count(|s| &s.active_watches), 0);
    assert_eq!(cp.count(|s| &s.active_gets), 0);
    assert_eq!(d.cached_targets(), 0);

    // The next resolution starts over.
    let (_svc, _watch, _get) = resolve_service(&mut cp, &d, target, &["10.0.0.1:80"]).await;
    assert_eq!(cp.count(|s| &s.watch_calls), 2);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn refusals_are_asked_again_after_the_idle_timeout() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(Config {
        idle_timeout: IDLE,
        ..config(cp.addr)
    });
    let target = sa("10.5.0.1:80");
    for round in 1..=2 {
        let resolving = spawn_resolve(&d, target);
        cp.next_watch()
            .await
            .reject(Status::not_found("not a service"));
        assert!(matches!(resolved(resolving).await, Resolution::Forward));
        // Used constantly, still cached: the refusal has a fixed lifetime.
        let again = d.resolve_addr(target).await;
        assert!(matches!(again, Ok(Resolution::Forward)), "{again:?}");
        assert_eq!(cp.count(|s| &s.watch_calls), round);
        until("the refusal expires", || d.cached_targets() == 0).await;
    }
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn dropping_the_discovery_ends_every_task_and_stream() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let addrs = ["10.0.0.1:80"];
    let (svc, watch, get) = resolve_service(&mut cp, &d, sa("10.96.0.13:80"), &addrs).await;
    let pending = spawn_resolve(&d, sa("10.96.0.14:80"));
    let _unanswered = cp.next_watch().await;
    pending.abort();

    drop(d);
    // Even though a Service is still held.
    within("the policy stream is cancelled", watch.cancelled()).await;
    within("the destination stream is cancelled", get.cancelled()).await;
    let mut endpoints = svc.endpoints.clone();
    let changed = within("the endpoints channel closes", endpoints.changed()).await;
    assert!(changed.is_err(), "no more updates");
    assert_eq!(
        keys(&endpoints.borrow()),
        [sa("10.0.0.1:80")],
        "the last set stays"
    );

    drop(svc);
    let metrics = tokio::runtime::Handle::current().metrics();
    until("every task ends", || metrics.num_alive_tasks() == 0).await;
}
