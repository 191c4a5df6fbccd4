//! Discovery against a fake control plane: what a target resolves to, and
//! how updates reach a resolved service. Lifecycle (outages, sharing, idle
//! eviction, shutdown) is in `discover/lifecycle.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkerd2_proxy_api::destination::{GetDestination, Update, WeightedAddr};
use linkerd2_proxy_api::outbound::{OutboundPolicy, TrafficSpec, traffic_spec::Target};
use strand_proxy_discover::{
    Config, Discovery, DiscoveryError, Endpoints, Protocol, Resolution, Service,
};
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::messages::*;
use crate::support::*;

#[path = "discover/lifecycle.rs"]
mod lifecycle;
#[path = "discover/messages.rs"]
mod messages;
#[path = "discover/support.rs"]
mod support;

/// Settings for tests that are not about timing: patient fail-fast, fast
/// reconnects.
fn config(control_plane: SocketAddr) -> Config {
    Config {
        context_token: CONTEXT.into(),
        source_workload: CONTEXT.into(),
        fail_fast: patience(),
        backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        ..Config::new(control_plane)
    }
}

fn spawn_resolve(
    d: &Discovery,
    target: SocketAddr,
) -> JoinHandle<Result<Resolution, DiscoveryError>> {
    let d = d.clone();
    tokio::spawn(async move { d.resolve_addr(target).await })
}

async fn resolved(resolving: JoinHandle<Result<Resolution, DiscoveryError>>) -> Resolution {
    within("the resolution", resolving)
        .await
        .expect("resolve does not panic")
        .expect("resolves")
}

fn service(resolution: Resolution) -> Arc<Service> {
    match resolution {
        Resolution::Service(svc) => svc,
        other => panic!("expected a service, got {other:?}"),
    }
}

fn keys(eps: &Endpoints) -> Vec<SocketAddr> {
    eps.addrs.keys().copied().collect()
}

/// Waits for the service's endpoints to satisfy `pred` and returns them.
async fn endpoints_where(svc: &Service, pred: impl FnMut(&Endpoints) -> bool) -> Endpoints {
    let mut rx = svc.endpoints.clone();
    within("the endpoints update", rx.wait_for(pred))
        .await
        .expect("discovery is running")
        .clone()
}

/// Resolves `target` to [`WEB`] through a service policy and one `Add` of
/// `addrs`; returns the service and the two open calls.
async fn resolve_service(
    cp: &mut ControlPlane,
    d: &Discovery,
    target: SocketAddr,
    addrs: &[&str],
) -> (
    Arc<Service>,
    Call<TrafficSpec, OutboundPolicy>,
    Call<GetDestination, Update>,
) {
    let resolving = spawn_resolve(d, target);
    let mut watch = cp.next_watch().await;
    watch.send(service_policy(WEB));
    let mut get = cp.next_get().await;
    get.send(add(addrs.iter().map(|a| ep(a)).collect(), &[]));
    (service(resolved(resolving).await), watch, get)
}

const IDENTITY: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

#[tokio::test]
async fn a_service_resolves_to_its_first_add_and_follows_updates() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let target = sa("10.96.0.10:8080");
    let resolving = spawn_resolve(&d, target);

    let mut watch = cp.next_watch().await;
    assert_eq!(watch.request.source_workload, CONTEXT);
    assert_eq!(watch.request.target, Some(Target::Addr(target.into())));
    watch.send(service_policy(WEB));

    let mut get = cp.next_get().await;
    let want = GetDestination {
        scheme: "k8s".into(),
        path: WEB.into(),
        context_token: CONTEXT.into(),
    };
    assert_eq!(get.request, want);
    let meshed = WeightedAddr {
        tls_identity: identity(IDENTITY),
        protocol_hint: h2(),
        metric_labels: labels(&[("pod", "web-1"), ("zone", "own")]),
        ..ep("10.0.0.1:8080")
    };
    let set_labels = [("namespace", "default"), ("zone", "set")];
    get.send(add(vec![meshed, ep("10.0.0.2:8080")], &set_labels));

    let svc = service(resolved(resolving).await);
    assert_eq!(svc.name, WEB);
    assert_eq!(*svc.protocol.borrow(), Protocol::Detect);
    let eps = svc.endpoints.borrow().clone();
    assert_eq!((eps.version, eps.exists), (1, true));
    assert_eq!(keys(&eps), [sa("10.0.0.1:8080"), sa("10.0.0.2:8080")]);
    let meshed = &eps.addrs[&sa("10.0.0.1:8080")];
    let merged = labels(&[("namespace", "default"), ("pod", "web-1"), ("zone", "own")]);
    assert_eq!(meshed.labels, merged.into_iter().collect());
    assert_eq!(meshed.identity.as_deref(), Some(IDENTITY));
    assert!(meshed.http2);
    assert_eq!(meshed.weight, 10_000);
    let plain = &eps.addrs[&sa("10.0.0.2:8080")];
    assert_eq!(plain.labels, labels(&set_labels).into_iter().collect());
    assert_eq!((plain.identity.as_deref(), plain.http2), (None, false));

    get.send(add(vec![ep("10.0.0.3:8080")], &[]));
    let eps = endpoints_where(&svc, |e| e.version == 2).await;
    assert_eq!(
        keys(&eps),
        [
            sa("10.0.0.1:8080"),
            sa("10.0.0.2:8080"),
            sa("10.0.0.3:8080")
        ]
    );

    get.send(remove(&["10.0.0.1:8080"]));
    let eps = endpoints_where(&svc, |e| e.version == 3).await;
    assert_eq!(keys(&eps), [sa("10.0.0.2:8080"), sa("10.0.0.3:8080")]);

    get.send(no_endpoints(true));
    let eps = endpoints_where(&svc, |e| e.version == 4).await;
    assert!(eps.exists && eps.is_empty(), "{eps:?}");

    // A policy update changes the protocol; the destination stream stays.
    watch.send(http2_policy(WEB));
    let mut protocol = svc.protocol.clone();
    within(
        "the protocol update",
        protocol.wait_for(|p| *p == Protocol::Http2),
    )
    .await
    .expect("discovery is running");
    assert_eq!(cp.count(|s| &s.get_calls), 1);
    assert_eq!(cp.count(|s| &s.active_gets), 1);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn refused_targets_forward_and_the_answer_is_cached() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let cases = [
        ("10.1.0.1:80", Code::NotFound, false),
        ("10.1.0.2:80", Code::Unimplemented, false),
        ("10.1.0.3:80", Code::InvalidArgument, false),
        // The same refusal as the first message of an open stream.
        ("10.1.0.4:80", Code::NotFound, true),
    ];
    for (n, (target, code, in_stream)) in cases.into_iter().enumerate() {
        let resolving = spawn_resolve(&d, sa(target));
        let mut watch = cp.next_watch().await;
        let status = Status::new(code, "not a mesh target");
        if in_stream {
            watch.fail(status);
        } else {
            watch.reject(status);
        }
        let resolution = resolved(resolving).await;
        assert!(
            matches!(resolution, Resolution::Forward),
            "{target}: {resolution:?}"
        );

        let again = within("a cached answer", d.resolve_addr(sa(target))).await;
        assert!(
            matches!(again, Ok(Resolution::Forward)),
            "{target}: {again:?}"
        );
        assert_eq!(
            cp.count(|s| &s.watch_calls),
            n + 1,
            "{target} was asked once"
        );
    }
    assert_eq!(cp.count(|s| &s.get_calls), 0);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn a_forward_backend_forwards_until_the_policy_says_otherwise() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let target = sa("10.2.0.1:9000");
    let resolving = spawn_resolve(&d, target);
    let mut watch = cp.next_watch().await;
    watch.send(forward_policy(target));
    assert!(matches!(resolved(resolving).await, Resolution::Forward));
    assert_eq!(cp.count(|s| &s.get_calls), 0);
    assert_eq!(
        cp.count(|s| &s.active_watches),
        1,
        "the policy stays watched"
    );

    // The address becomes a Service: later resolutions balance.
    watch.send(service_policy(WEB));
    let mut get = cp.next_get().await;
    get.send(add(vec![ep("10.0.0.1:8080")], &[]));
    let svc = service(resolved(spawn_resolve(&d, target)).await);
    assert_eq!(keys(&svc.endpoints.borrow()), [sa("10.0.0.1:8080")]);
    assert_eq!(cp.count(|s| &s.watch_calls), 1);
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn a_meshed_pod_address_forwards_with_its_identity() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let target = sa("10.42.0.7:8080");
    let resolving = spawn_resolve(&d, target);
    let mut watch = cp.next_watch().await;
    let id = "web.default.serviceaccount.identity.linkerd.cluster.local";
    watch.send(meshed_forward_policy(target, id));
    match resolved(resolving).await {
        Resolution::Endpoint(meta) => {
            assert_eq!(meta.identity.as_deref(), Some(id));
            assert!(meta.http2);
        }
        other => panic!("expected a meshed endpoint, got {other:?}"),
    }
    assert_eq!(cp.count(|s| &s.get_calls), 0);
}

#[tokio::test]
async fn an_opaque_service_by_name() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let resolving = {
        let d = d.clone();
        tokio::spawn(async move { d.resolve_name("Web.Default.svc.cluster.local:8080").await })
    };
    let mut watch = cp.next_watch().await;
    assert_eq!(watch.request.target, Some(Target::Authority(WEB.into())));
    watch.send(opaque_policy(WEB));
    let mut get = cp.next_get().await;
    get.send(add(vec![ep("10.0.0.1:8080")], &[]));
    let svc = service(resolved(resolving).await);
    assert_eq!(*svc.protocol.borrow(), Protocol::Opaque);
    assert_eq!(svc.name, WEB);

    let invalid = d.resolve_name("web.default.svc.cluster.local").await;
    assert!(
        matches!(invalid, Err(DiscoveryError::InvalidAuthority { .. })),
        "{invalid:?}"
    );
    cp.assert_no_more_calls();
}

#[tokio::test]
async fn ipv6_targets_and_endpoints() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));
    let target = sa("[fd00:10:96::a]:8080");
    let resolving = spawn_resolve(&d, target);
    let mut watch = cp.next_watch().await;
    assert_eq!(watch.request.target, Some(Target::Addr(target.into())));
    watch.send(service_policy(WEB));
    let mut get = cp.next_get().await;
    let v6 = [
        "[fd00:10:244::1:2]:8080",
        "[2001:db8::7]:9090",
        "[::ffff:10.0.0.9]:80",
    ];
    get.send(add(v6.iter().map(|a| ep(a)).collect(), &[]));
    let svc = service(resolved(resolving).await);
    let mut want: Vec<SocketAddr> = v6.iter().map(|a| sa(a)).collect();
    want.sort();
    assert_eq!(keys(&svc.endpoints.borrow()), want);

    get.send(remove(&["[2001:db8::7]:9090"]));
    let eps = endpoints_where(&svc, |e| e.version == 2).await;
    assert!(!eps.addrs.contains_key(&sa("[2001:db8::7]:9090")));
    assert_eq!(eps.len(), 2);
}

#[tokio::test]
async fn fail_fast_bounds_the_first_answer() {
    const FAIL_FAST: Duration = Duration::from_millis(200);
    /// Scheduling slack on a loaded 2-core machine.
    const MARGIN: Duration = Duration::from_millis(500);
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(Config {
        fail_fast: FAIL_FAST,
        ..config(cp.addr)
    });
    let timed = |target: SocketAddr| {
        let d = d.clone();
        async move {
            let start = Instant::now();
            let result = d.resolve_addr(target).await;
            let elapsed = start.elapsed();
            assert!(
                matches!(&result, Err(DiscoveryError::Timeout { after, .. }) if *after == FAIL_FAST),
                "{target}: {result:?}"
            );
            assert!(
                (FAIL_FAST..FAIL_FAST + MARGIN).contains(&elapsed),
                "{target}: returned after {elapsed:?}"
            );
        }
    };

    // The policy server never answers.
    timed(sa("10.3.0.1:80")).await;
    // It answers later: discovery went on, the next resolution succeeds.
    cp.next_watch().await.reject(Status::not_found("no"));
    let later = within("a later resolution", d.resolve_addr(sa("10.3.0.1:80"))).await;
    assert!(matches!(later, Ok(Resolution::Forward)), "{later:?}");

    // The policy answers but the destination never does.
    let answer_policy = async {
        let mut watch = cp.next_watch().await;
        watch.send(service_policy(WEB));
        watch
    };
    let (_watch, ()) = tokio::join!(answer_policy, timed(sa("10.3.0.2:80")));
    let _get = cp.next_get().await;

    // Nothing listens at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = closed.local_addr().expect("addr");
    drop(closed);
    let d = Discovery::new(Config {
        fail_fast: FAIL_FAST,
        ..config(nowhere)
    });
    let start = Instant::now();
    let result = d.resolve_addr(sa("10.3.0.3:80")).await;
    assert!(
        matches!(result, Err(DiscoveryError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        start.elapsed() < FAIL_FAST + MARGIN,
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn control_plane_answers_that_are_not_endpoints() {
    let mut cp = ControlPlane::start().await;
    let d = Discovery::new(config(cp.addr));

    // An unusable policy fails at once rather than at the fail-fast timeout.
    let resolving = spawn_resolve(&d, sa("10.4.0.1:80"));
    cp.next_watch().await.send(Default::default());
    let start = Instant::now();
    let result = within("the resolution", resolving).await.expect("no panic");
    assert!(
        matches!(result, Err(DiscoveryError::InvalidPolicy { .. })),
        "{result:?}"
    );
    assert!(start.elapsed() < patience() / 2);

    // A destination the control plane does not know: a service that does
    // not exist, with no endpoints.
    let resolving = spawn_resolve(&d, sa("10.4.0.2:80"));
    let mut watch = cp.next_watch().await;
    watch.send(service_policy("gone.default.svc.cluster.local:80"));
    cp.next_get()
        .await
        .reject(Status::not_found("no such service"));
    let svc = service(resolved(resolving).await);
    let eps = svc.endpoints.borrow().clone();
    assert!(!eps.exists && eps.is_empty() && eps.version == 1, "{eps:?}");
}
