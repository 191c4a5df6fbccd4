use linkerd2_proxy_api::net::TcpAddress;

use super::*;

#[test]
fn authorities_need_a_host_and_a_port_and_are_lowercased() {
    let ok = |s: &str| match Key::authority(s) {
        Ok(Key::Authority(a)) => a.to_string(),
        other => panic!("{s:?}: {other:?}"),
    };
    assert_eq!(
        ok("Web.Default.svc.cluster.local:8080"),
        "web.default.svc.cluster.local:8080"
    );
    assert_eq!(ok("[fd00::1]:80"), "[fd00::1]:80");
    assert_eq!(ok("10.0.0.1:443"), "10.0.0.1:443");

    let reason = |s: &str| match Key::authority(s) {
        Err(DiscoveryError::InvalidAuthority { authority, reason }) => {
            assert_eq!(authority, s);
            reason
        }
        other => panic!("{s:?} should be rejected: {other:?}"),
    };
    assert_eq!(reason("web.default.svc.cluster.local"), "no valid port");
    assert_eq!(reason("web:http"), "no valid port");
    assert_eq!(reason("web:70000"), "no valid port");
    assert_eq!(reason("web:0"), "no valid port");
    assert_eq!(reason("user@web:80"), "user information is not allowed");
    assert_eq!(reason(""), "not a valid authority");
    assert_eq!(reason(":80"), "no host");
}

#[test]
fn keys_become_traffic_spec_targets() {
    let addr: SocketAddr = "[fd00::1]:8080".parse().expect("valid");
    assert_eq!(
        Key::Addr(addr).to_target(),
        traffic_spec::Target::Addr(TcpAddress::from(addr))
    );
    let name = Key::authority("web.default.svc.cluster.local:80").expect("valid");
    assert_eq!(
        name.to_target(),
        traffic_spec::Target::Authority("web.default.svc.cluster.local:80".into())
    );
    assert_eq!(name.to_string(), "web.default.svc.cluster.local:80");
    assert_eq!(Key::Addr(addr).to_string(), "[fd00::1]:8080");
}

#[tokio::test]
async fn task_guard_aborts_on_drop() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let guard = TaskGuard::spawn(async move {
        let _tx = tx;
        std::future::pending::<()>().await;
    });
    drop(guard);
    // The sender is dropped with the aborted task.
    let closed = tokio::time::timeout(Duration::from_secs(10), rx).await;
    assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn spawn_until_ends_with_the_shutdown_sender() {
    let (shutdown, shutdown_rx) = watch::channel(());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let _guard = TaskGuard::spawn_until(shutdown_rx, async move {
        let _tx = tx;
        std::future::pending::<()>().await;
    });
    drop(shutdown);
    let closed = tokio::time::timeout(Duration::from_secs(10), rx).await;
    assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
}

const IDLE: Duration = Duration::from_secs(60);

/// A cache whose tasks talk to a port nothing listens on: they retry in the
/// background and never answer, which these tests do not need.
fn targets() -> (Targets, watch::Sender<()>) {
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 1));
    let config = crate::Config {
        backoff: (Duration::from_secs(1), Duration::from_secs(1)),
        ..crate::Config::new(nowhere)
    };
    let (shutdown, shutdown_rx) = watch::channel(());
    (Targets::new(Ctx::new(&config), IDLE, shutdown_rx), shutdown)
}

fn key(n: u8) -> Key {
    Key::Addr(SocketAddr::from(([10, 0, 0, n], 80)))
}

#[tokio::test(start_paused = true)]
async fn entries_live_while_held_or_recently_used() {
    let (targets, _shutdown) = targets();
    let a = targets.get(key(1));
    let b = targets.get(key(1));
    assert!(Arc::ptr_eq(&a, &b), "one entry per target");
    assert_eq!(targets.len(), 1);
    drop(b);

    tokio::time::advance(IDLE * 2).await;
    targets.evict_expired();
    assert_eq!(targets.len(), 1, "a held entry stays, however old");
    drop(a);
    targets.evict_expired();
    assert_eq!(targets.len(), 0, "unheld and unused for the idle timeout");

    drop(targets.get(key(2)));
    tokio::time::advance(IDLE / 2).await;
    drop(targets.get(key(2)));
    tokio::time::advance(IDLE / 2).await;
    targets.evict_expired();
    assert_eq!(targets.len(), 1, "used half an idle timeout ago");
    tokio::time::advance(IDLE / 2).await;
    targets.evict_expired();
    assert_eq!(targets.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn refusals_expire_even_while_held() {
    let (targets, _shutdown) = targets();
    let held = targets.get(key(3));
    let expires = Some(Instant::now() + IDLE);
    held.state.send_replace(State::Forward {
        expires,
        endpoint: None,
    });

    tokio::time::advance(IDLE / 2).await;
    targets.evict_expired();
    assert_eq!(targets.len(), 1);
    tokio::time::advance(IDLE / 2).await;
    targets.evict_expired();
    assert_eq!(
        targets.len(),
        0,
        "a refusal is asked again after its lifetime"
    );

    // A forward from a live policy stream has no lifetime.
    let live = targets.get(key(4));
    live.state.send_replace(State::Forward {
        expires: None,
        endpoint: None,
    });
    tokio::time::advance(IDLE * 2).await;
    targets.evict_expired();
    assert_eq!(targets.len(), 1);
}
