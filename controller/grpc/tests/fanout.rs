//! Fan-out: many `Get` streams on one HTTP/2 connection watch one service;
//! one endpoint changes; how long until every stream has the update? Prints
//! the figure; asserts only a generous bound (timing assertions in tests are
//! for catching a pathology, not for benchmarking).
//!
//! The full size (1,000 streams x 10,000 endpoints: 10 M endpoints, ~2.5 GB,
//! sent before the change) takes minutes in a debug build, so it is ignored:
//!
//! `cargo test --release -p strand-controller-grpc fanout -- --ignored --nocapture`

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use linkerd2_proxy_api::destination::GetDestination;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::update::Update as U;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{FQDN, FakeDiscover, TestServer, endpoint, view};
use tokio::sync::mpsc;

/// Far above the 200 ms target: fails only if something is pathological
/// (a per-stream diff in a debug build, a lost wakeup), not on a busy box.
const BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy (10 M endpoints sent on setup); run with --release --ignored"]
async fn fanout_one_change_to_1000_streams_of_10000_endpoints() {
    fanout(1_000, 10_000).await;
}

/// The same on a scale that runs in every `cargo test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_one_change_to_100_streams_of_1000_endpoints() {
    fanout(100, 1_000).await;
}

async fn fanout(streams: usize, endpoints: u32) {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view((0..endpoints).map(|i| endpoint(i, true))));
    let server = TestServer::start(fake.clone()).await;
    let client = DestinationClient::new(server.channel().await);

    let setup = Instant::now();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(streams);
    let (got_tx, mut got_rx) = mpsc::channel::<(Instant, Vec<SocketAddr>)>(streams);
    for _ in 0..streams {
        let mut client = client.clone();
        let (ready_tx, got_tx) = (ready_tx.clone(), got_tx.clone());
        tokio::spawn(async move {
            let req = GetDestination {
                path: format!("{FQDN}:80"),
                ..Default::default()
            };
            let mut rsp = client.get(req).await.expect("Get").into_inner();
            let mut seen = 0;
            while seen < endpoints as usize {
                match rsp.message().await.expect("stream").expect("open").update {
                    Some(U::Add(set)) => seen += set.addrs.len(),
                    other => panic!("initial Adds expected, got {other:?}"),
                }
            }
            ready_tx.send(()).await.expect("test alive");
            let update = rsp.message().await.expect("stream").expect("open");
            let at = Instant::now();
            let Some(U::Add(set)) = update.update else {
                panic!("an Add expected, got {update:?}");
            };
            let addrs = set
                .addrs
                .into_iter()
                .map(|a| SocketAddr::try_from(a.addr.expect("addr")).expect("valid"))
                .collect();
            got_tx.send((at, addrs)).await.expect("test alive");
        });
    }
    for _ in 0..streams {
        ready_rx.recv().await.expect("a stream failed during setup");
    }
    let setup = setup.elapsed();

    // One endpoint loses its identity (its proxy was removed).
    let changed = endpoint(endpoints / 2, true).addr;
    let t0 = Instant::now();
    fake.update(|v| {
        if let Some(e) = v.endpoints.get_mut(&changed) {
            e.identity = None;
        }
    });
    let mut latencies = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (at, addrs) = got_rx.recv().await.expect("a stream failed");
        assert_eq!(addrs, [changed], "an Add of the changed endpoint only");
        latencies.push(at.duration_since(t0));
    }
    latencies.sort();
    let (p50, max) = (latencies[streams / 2], latencies[streams - 1]);
    println!(
        "fanout: {streams} streams x {endpoints} endpoints; setup {setup:?}; \
         one change reached all streams in {max:?} (p50 {p50:?})"
    );
    assert!(
        max < BOUND,
        "one change took {max:?} to reach {streams} streams"
    );
}
