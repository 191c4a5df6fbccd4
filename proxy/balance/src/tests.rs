use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::*;

const SEED: u64 = 0x5eed;

/// A clock that only moves when told to.
struct ManualClock {
    base: Instant,
    offset_ns: AtomicU64,
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        self.offset_ns.fetch_add(by.as_nanos() as u64, Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Relaxed))
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Accrual with exact backoffs (no jitter) so tests can assert them.
fn exact_accrual(consecutive_failures: u32) -> Config {
    Config {
        failure_accrual: FailureAccrual {
            consecutive_failures,
            min_backoff: secs(1),
            max_backoff: secs(8),
            jitter: 0.0,
        },
        ..Config::default()
    }
}

fn balancer(config: Config, keys: &[u32]) -> (Arc<ManualClock>, Balancer<u32>) {
    let clock = Arc::new(ManualClock {
        base: Instant::now(),
        offset_ns: AtomicU64::new(0),
    });
    let b = Balancer::with_clock_and_seed(config, clock.clone(), SEED);
    b.update(keys.iter().copied());
    (clock, b)
}

fn stats(b: &Balancer<u32>, key: u32) -> EndpointStats<u32> {
    b.endpoints()
        .into_iter()
        .find(|s| s.key == key)
        .expect("endpoint present")
}

/// Picks until `key` comes up; the other handles are dropped (cancelled).
fn pick_key(b: &Balancer<u32>, key: u32) -> RequestHandle<u32> {
    (0..10_000)
        .filter_map(|_| b.pick())
        .find(|h| *h.key() == key)
        .expect("key picked within 10,000 picks")
}

/// Counts picks per key (keys are small integers) over `n` picks.
fn count(b: &Balancer<u32>, n: usize, mut each: impl FnMut(RequestHandle<u32>)) -> Vec<usize> {
    let mut counts = vec![0; 8];
    for _ in 0..n {
        let h = b.pick().expect("endpoints present");
        counts[*h.key() as usize] += 1;
        each(h);
    }
    counts
}

#[test]
fn shareable_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Balancer<std::net::SocketAddr>>();
    send_sync::<RequestHandle<std::net::SocketAddr>>();
    send_sync::<ConnectionHandle<std::net::SocketAddr>>();
}

#[test]
fn empty_set_picks_nothing() {
    let (_, b) = balancer(Config::default(), &[]);
    assert!(b.is_empty());
    assert!(b.pick().is_none());
    assert!(b.pick_connection().is_none());
    b.update([1, 1, 2]);
    assert_eq!(b.len(), 2, "duplicates are ignored");
    b.update([]);
    assert!(b.pick().is_none());
}

#[test]
fn equal_endpoints_share_evenly() {
    let (_, b) = balancer(Config::default(), &[0, 1, 2]);
    let counts = count(&b, 30_000, RequestHandle::complete);
    for (key, &n) in counts[..3].iter().enumerate() {
        assert!((9_500..=10_500).contains(&n), "key {key} got {n} of 30,000");
    }
}

#[test]
fn peak_ewma_estimate() {
    let (clock, b) = balancer(Config::default(), &[0]);
    let rtt = |b: &Balancer<u32>| stats(b, 0).rtt.as_secs_f64();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert_eq!(stats(&b, 0).rtt, ms(30), "default before any observation");

    // A larger observation replaces the estimate.
    let h = b.pick().expect("endpoint");
    clock.advance(ms(50));
    h.complete();
    assert!(close(rtt(&b), 0.050));

    // Unobserved, it decays toward zero: 1/e after one decay period.
    clock.advance(secs(10));
    assert!(close(rtt(&b), 0.050 / std::f64::consts::E));

    // A smaller observation pulls the stored estimate toward it by the
    // weight of the time since the last observation.
    let h = b.pick().expect("endpoint");
    clock.advance(ms(10));
    h.complete();
    let w = (-10.010f64 / 10.0).exp();
    assert!(close(rtt(&b), 0.050 * w + 0.010 * (1.0 - w)));
}

#[test]
fn slow_endpoint_is_avoided() {
    let (clock, b) = balancer(Config::default(), &[0, 1, 2]);
    let counts = count(&b, 10_000, |h| {
        clock.advance(if *h.key() == 2 { ms(50) } else { ms(1) });
        h.complete();
    });
    assert!(
        counts[2] < 1_000,
        "slow endpoint got {} of 10,000",
        counts[2]
    );
}

#[test]
fn slightly_faster_replicas_do_not_take_everything() {
    // One replica 10% faster, another 20% faster: within the tolerance,
    // so requests one at a time still spread about evenly.
    let (clock, b) = balancer(Config::default(), &[0, 1, 2]);
    let counts = count(&b, 30_000, |h| {
        let us = match *h.key() {
            0 => 1_000,
            1 => 900,
            _ => 800,
        };
        clock.advance(Duration::from_micros(us));
        h.complete();
    });
    for (i, n) in counts[..3].iter().enumerate() {
        assert!(
            (8_000..=12_000).contains(n),
            "endpoint {i} got {n}: {counts:?}"
        );
    }
    // Without the tolerance, the fastest takes the lion's share.
    let (clock, b) = balancer(
        Config {
            tolerance: 0.0,
            ..Config::default()
        },
        &[0, 1, 2],
    );
    let counts = count(&b, 30_000, |h| {
        clock.advance(Duration::from_micros(if *h.key() == 2 {
            800
        } else {
            1_000
        }));
        h.complete();
    });
    assert!(counts[2] > 15_000, "{counts:?}");
}

#[test]
fn pending_requests_bias_away() {
    // Load one endpoint alone, then add its peers; it keeps its pending.
    let (_, b) = balancer(Config::default(), &[0]);
    let busy: Vec<_> = (0..5).filter_map(|_| b.pick()).collect();
    b.update([0, 1, 2]);
    assert_eq!(stats(&b, 0).pending, 5);
    let counts = count(&b, 3_000, drop);
    assert_eq!(counts[0], 0, "busy endpoint picked: {counts:?}");
    assert!(counts[1] > 1_200 && counts[2] > 1_200, "{counts:?}");
    drop(busy);
    assert!(b.endpoints().iter().all(|s| s.pending == 0));
}

#[test]
fn update_keeps_and_detaches_endpoints() {
    let (clock, b) = balancer(Config::default(), &[0, 1, 2]);
    let h = pick_key(&b, 1);
    clock.advance(ms(80));
    h.complete();
    let outstanding = pick_key(&b, 2);

    b.update([0, 1]);
    assert_eq!(b.len(), 2);
    assert_eq!(stats(&b, 1).rtt, ms(80), "kept endpoint keeps its estimate");
    clock.advance(ms(5));
    outstanding.complete();
    let counts = count(&b, 1_000, RequestHandle::complete);
    assert_eq!(counts[2], 0, "removed endpoint picked");

    b.update([0, 1, 2]);
    let fresh = stats(&b, 2);
    assert_eq!((fresh.rtt, fresh.pending), (ms(30), 0), "re-added is fresh");
}

#[test]
fn backoff_doubles_to_cap() {
    let accrual = FailureAccrual {
        jitter: 0.0,
        ..FailureAccrual::default()
    };
    let table = [
        (1, 1),
        (2, 2),
        (3, 4),
        (4, 8),
        (6, 32),
        (7, 60),
        (8, 60),
        (200, 60),
    ];
    for (ejections, want) in table {
        assert_eq!(
            accrual.backoff(ejections, 0.9),
            secs(want),
            "ejection {ejections}"
        );
    }
    let jittered = FailureAccrual::default();
    assert_eq!(jittered.backoff(2, 0.0), secs(2), "jitter only shortens");
    assert_eq!(jittered.backoff(2, 0.5), Duration::from_millis(1_500));
    assert_eq!(jittered.backoff(9, 0.0), secs(60), "never beyond the cap");
}

#[test]
fn failure_accrual_ejects_probes_and_restores() {
    let (clock, b) = balancer(exact_accrual(1), &[0, 1, 2]);
    let ejected_for = |b: &Balancer<u32>| {
        let until = stats(b, 0).ejected_until.expect("ejected");
        until.duration_since(clock.now())
    };
    pick_key(&b, 0).connect_failed();
    assert_eq!(ejected_for(&b), secs(1));
    clock.advance(ms(999));
    assert_eq!(count(&b, 1_000, drop)[0], 0, "picked during backoff");

    // Each failed probe doubles the backoff, up to the cap.
    for want in [2, 4, 8, 8] {
        clock.advance(ms(1_001));
        let probe = pick_key(&b, 0);
        assert_eq!(probe.kind(), PickKind::Probe);
        assert!(stats(&b, 0).probing);
        assert_eq!(count(&b, 1_000, drop)[0], 0, "second probe in flight");
        probe.connect_failed();
        assert_eq!(ejected_for(&b), secs(want));
        clock.advance(secs(want) - secs(1));
    }

    // A cancelled probe frees the slot; a successful one restores.
    clock.advance(ms(1_001));
    drop(pick_key(&b, 0));
    assert!(!stats(&b, 0).probing);
    pick_key(&b, 0).complete();
    let restored = stats(&b, 0);
    assert_eq!((restored.ejected_until, restored.probing), (None, false));
    assert!(count(&b, 1_000, drop)[0] > 0);

    // The backoff starts over after a restore.
    pick_key(&b, 0).connect_failed();
    assert_eq!(ejected_for(&b), secs(1));
}

#[test]
fn stale_outcomes_do_not_move_an_ejected_endpoint() {
    let (clock, b) = balancer(exact_accrual(1), &[0]);
    let early = [pick_key(&b, 0), pick_key(&b, 0)];
    pick_key(&b, 0).connect_failed();
    let until = stats(&b, 0).ejected_until;
    let [late_success, late_failure] = early;
    late_success.complete();
    late_failure.connect_failed();
    clock.advance(ms(10));
    assert_eq!(
        stats(&b, 0).ejected_until,
        until,
        "picked before the ejection"
    );
}

#[test]
fn all_ejected_panics_and_recovers() {
    let (clock, b) = balancer(exact_accrual(1), &[0, 1]);
    pick_key(&b, 0).connect_failed();
    pick_key(&b, 1).connect_failed();
    let ejected = |b: &Balancer<u32>| {
        b.endpoints()
            .iter()
            .map(|s| s.ejected_until)
            .collect::<Vec<_>>()
    };
    let before = ejected(&b);

    clock.advance(ms(100));
    let h = b.pick().expect("panic mode still picks");
    assert_eq!(h.kind(), PickKind::Panic);
    h.connect_failed();
    assert_eq!(
        ejected(&b),
        before,
        "a panic failure does not extend the backoff"
    );

    let h = b.pick().expect("panic mode still picks");
    let key = *h.key();
    h.complete();
    assert_eq!(
        stats(&b, key).ejected_until,
        None,
        "a panic success restores"
    );
    let counts = count(&b, 100, drop);
    assert_eq!(
        counts[key as usize], 100,
        "only the restored endpoint is eligible"
    );
}

#[test]
fn connection_outcomes_feed_accrual() {
    let (_, b) = balancer(exact_accrual(2), &[0]);
    let pick = || b.pick_connection().expect("endpoint");
    pick().connect_failed();
    assert_eq!(stats(&b, 0).consecutive_failures, 1);
    let conn = pick();
    conn.connected();
    conn.connected();
    assert_eq!(stats(&b, 0).consecutive_failures, 0, "a connect resets");
    assert_eq!(stats(&b, 0).connections, 1, "open until dropped");
    drop(conn);
    pick().connect_failed();
    assert_eq!(stats(&b, 0).ejected_until, None);
    pick().connect_failed();
    assert!(
        stats(&b, 0).ejected_until.is_some(),
        "second failure in a row"
    );
}

#[test]
fn connections_balance_by_open_count() {
    let (_, b) = balancer(Config::default(), &[0, 1, 2]);
    let mut open: Vec<_> = (0..300).filter_map(|_| b.pick_connection()).collect();
    for s in b.endpoints() {
        assert!((95..=105).contains(&s.connections), "{s:?}");
    }

    open.retain(|c| *c.key() != 0);
    let next: Vec<_> = (0..60).filter_map(|_| b.pick_connection()).collect();
    let to_idle = next.iter().filter(|c| *c.key() == 0).count();
    assert!(to_idle > 30, "idle endpoint got {to_idle} of 60");

    drop((open, next));
    assert!(b.endpoints().iter().all(|s| s.connections == 0));
}

#[test]
fn concurrent_picks_settle_to_zero() {
    let b = Balancer::new(Config::default());
    b.update(0..8u32);
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let b = &b;
            s.spawn(move || {
                for i in 0..5_000u32 {
                    let h = b.pick().expect("endpoints present");
                    match (i + t) % 10 {
                        0 => h.connect_failed(),
                        1..=6 => h.complete(),
                        _ => drop(h),
                    }
                    if let Some(c) = b.pick_connection()
                        && i % 2 == 0
                    {
                        c.connected();
                    }
                    if t == 0 && i % 500 == 0 {
                        // Keys 0..4 stay, so their counters can be checked.
                        b.update((0..8).filter(|k| *k < 4 || (k + i / 500) % 2 == 0));
                    }
                }
            });
        }
    });
    b.update(0..8);
    for s in b.endpoints() {
        assert_eq!(
            (s.pending, s.connections, s.probing),
            (0, 0, false),
            "{s:?}"
        );
    }
}

#[test]
fn a_million_picks_over_a_hundred_endpoints() {
    let b = Balancer::new(Config::default());
    b.update(0..100u32);
    for _ in 0..1_000_000 {
        b.pick().expect("endpoints present").complete();
    }
    assert!(b.endpoints().iter().all(|s| s.pending == 0));
}
