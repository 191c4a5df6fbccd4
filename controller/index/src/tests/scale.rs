//! One pod change in a 10,000-endpoint service reaching 1,000 watchers.

use super::*;
use std::time::{Duration, Instant};

const PODS: u32 = 10_000;
const WATCHERS: usize = 1_000;

/// `VmRSS` and `VmHWM` (peak) of this process from `/proc/self/status`, for
/// the printout only: other tests share the process unless filtered out.
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn numbered_pod(i: u32) -> Pod {
    let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    let mut p = pod(&format!("web-{i}"), "web", &ip);
    p.status.meshed = true;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_one_pod_change_reaches_every_watcher() {
    let index = index();
    let mut all = vec![Resource::Service(service("web", "web", "10.96.0.10"))];
    all.extend((0..PODS).map(|i| Resource::Pod(numbered_pod(i))));
    let start = Instant::now();
    index.reset(all);
    let loaded = start.elapsed();

    let start = Instant::now();
    let mut receivers: Vec<ServiceWatch> = (0..WATCHERS)
        .map(|_| index.watch(&key("web"), 80))
        .collect();
    let subscribed = start.elapsed();
    assert_eq!(index.watch_count(), 1);
    assert_eq!(
        seen(&mut receivers[0]).expect("exists").endpoints.len(),
        PODS as usize
    );

    let mut flipped = numbered_pod(PODS / 2);
    flipped.status.ready = false;
    let gone = SocketAddr::new(flipped.status.pod_ip.expect("has an IP"), 8080);
    let (tx, mut done) = tokio::sync::mpsc::channel(WATCHERS);
    for mut rx in receivers {
        let tx = tx.clone();
        tokio::spawn(async move {
            rx.changed().await.expect("the index keeps the sender");
            let view = rx.borrow_and_update().clone().expect("exists");
            let _ = tx
                .send((view.endpoints.len(), view.endpoints.contains_key(&gone)))
                .await;
        });
    }
    drop(tx);

    let start = Instant::now();
    index.apply(Resource::Pod(flipped));
    let applied = start.elapsed();
    let mut seen_by = 0;
    while let Some((len, has_gone)) = done.recv().await {
        assert_eq!((len, has_gone), (PODS as usize - 1, false));
        seen_by += 1;
    }
    let reached = start.elapsed();
    assert_eq!(seen_by, WATCHERS);
    println!(
        "scale: reset of {PODS} pods {loaded:?}; {WATCHERS} watch calls {subscribed:?}; \
         apply (recompute + publish) {applied:?}; all {WATCHERS} watchers saw it after {reached:?}; {}",
        rss()
    );
    assert!(
        reached < Duration::from_secs(2),
        "one change took {reached:?} to reach every watcher"
    );
}
