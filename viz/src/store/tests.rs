use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::query::{Matcher, Query, Sample, Selector};

fn key(pod: &str) -> TargetKey {
    TargetKey {
        namespace: "emojivoto".into(),
        pod: pod.into(),
    }
}

fn target_labels(pod: &str, deployment: &str) -> BTreeMap<String, String> {
    [
        ("namespace", "emojivoto"),
        ("pod", pod),
        ("deployment", deployment),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `secs` seconds after an arbitrary epoch.
fn t(secs: f64) -> SystemTime {
    let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if secs >= 0.0 {
        base + Duration::from_secs_f64(secs)
    } else {
        base - Duration::from_secs_f64(-secs)
    }
}

fn ingest(store: &Store, pod: &str, deployment: &str, at: f64, text: &str) {
    store
        .ingest(
            &key(pod),
            &target_labels(pod, deployment),
            t(at),
            text.as_bytes(),
        )
        .unwrap();
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn increase(metric: &str, window: u64, by: &[&str]) -> Query {
    Query::Increase {
        sel: Selector::new(metric),
        window: Duration::from_secs(window),
        by: by.iter().map(|s| s.to_string()).collect(),
    }
}

fn assert_samples(got: &[Sample], want: &[(&[(&str, &str)], f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, (l, v)) in got.iter().zip(want) {
        assert_eq!(g.labels, labels(l), "{got:?}");
        assert!((g.value - v).abs() < 1e-9, "{got:?}: want {v}");
    }
}

/// Two responses series that differ only in dropped labels
/// (`target_addr`, `status_code`, `grpc_status`), so the store sums them.
fn responses(ok_200: f64, ok_204: f64, failed: f64) -> String {
    format!(
        r#"# HELP response_total Total count of HTTP responses.
# TYPE response_total counter
response_total{{direction="inbound",authority="web-svc.emojivoto:80",target_addr="10.42.0.5:8080",tls="true",status_code="200",classification="success",grpc_status="0"}} {ok_200}
response_total{{direction="inbound",authority="web-svc.emojivoto:80",target_addr="10.42.0.6:8080",tls="true",status_code="204",classification="success"}} {ok_204}
response_total{{direction="inbound",authority="web-svc.emojivoto:80",target_addr="10.42.0.5:8080",tls="true",status_code="500",classification="failure"}} {failed}
process_cpu_seconds_total 1.5
"#
    )
}

#[test]
fn increase_sums_series_that_differ_in_dropped_labels() {
    let store = Store::default();
    // Every 10 s from t=5: success goes 100 -> 150 (60 after
    // extrapolation, see functions::tests), failure 0 -> 5 (5.5).
    for i in 0..6 {
        let i_f = f64::from(i);
        ingest(
            &store,
            "web-1",
            "web",
            5.0 + 10.0 * i_f,
            &responses(60.0 + 6.0 * i_f, 40.0 + 4.0 * i_f, i_f),
        );
    }
    let q = increase("response_total", 60, &["deployment", "classification"]);
    assert_samples(
        &store.evaluate_at(&q, t(60.0)),
        &[
            (&[("classification", "failure"), ("deployment", "web")], 5.5),
            (
                &[("classification", "success"), ("deployment", "web")],
                60.0,
            ),
        ],
    );
    let info = store.targets();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].series, 2, "status_code and target_addr are dropped");
    assert_eq!(info[0].snapshots, 6);
}

#[test]
fn increase_window_is_left_open_and_handles_resets() {
    let store = Store::default();
    // A sample exactly at now - window is outside the window.
    let values = [1000.0, 100.0, 110.0, 5.0, 15.0, 25.0, 35.0];
    for (i, v) in values.iter().enumerate() {
        ingest(
            &store,
            "web-1",
            "web",
            -5.0 + 10.0 * i as f64,
            &responses(*v, 0.0, 0.0),
        );
    }
    // Samples at -5, 5, 15 ... 55 s; the one at -5 s is before the window
    // (0, 60]. The rest are those of
    // functions::tests::increase_handles_a_counter_reset: 45 x 1.2.
    let q = Query::Increase {
        sel: Selector::new("response_total")
            .with(Matcher::Eq("classification".into(), "success".into())),
        window: Duration::from_secs(60),
        by: vec![],
    };
    assert_samples(&store.evaluate_at(&q, t(60.0)), &[(&[], 54.0)]);
    // At 65 s the window (5, 65] excludes the sample at exactly 5 s: from
    // 110 at 15 s, +5 after the reset, +30: 35 over 40 s, extrapolated
    // 10 s to each edge (under 1.1 x the 10 s interval).
    let got = store.evaluate_at(&q, t(65.0));
    assert_samples(&got, &[(&[], 35.0 * (40.0 + 10.0 + 10.0) / 40.0)]);
}

#[test]
fn fewer_than_two_samples_give_no_result() {
    let store = Store::default();
    ingest(&store, "web-1", "web", 5.0, &responses(1.0, 1.0, 1.0));
    let q = increase("response_total", 60, &["deployment"]);
    assert!(store.evaluate_at(&q, t(10.0)).is_empty());
}

#[test]
fn matchers_see_target_and_proxy_labels() {
    let store = Store::default();
    for (i, at) in [5.0, 15.0].into_iter().enumerate() {
        let v = 10.0 * i as f64;
        ingest(&store, "web-1", "web", at, &responses(v, 0.0, 0.0));
        ingest(
            &store,
            "emoji-1",
            "emoji",
            at,
            &responses(2.0 * v, 0.0, 0.0),
        );
        ingest(
            &store,
            "voting-1",
            "voting",
            at,
            &responses(3.0 * v, 0.0, 0.0),
        );
    }
    let q = Query::Increase {
        sel: Selector::new("response_total")
            .with(Matcher::one_of("deployment", ["web", "emoji"]))
            .with(Matcher::Ne("classification".into(), "failure".into()))
            .with(Matcher::Eq("namespace".into(), "emojivoto".into())),
        window: Duration::from_secs(20),
        by: vec!["deployment".into(), "pod".into(), "not_a_label".into()],
    };
    // web: 0 -> 10 over 10 s; 5 s to the end, and none before the first
    // sample, which is the counter's zero point: x (10 + 0 + 5) / 10.
    assert_samples(
        &store.evaluate_at(&q, t(20.0)),
        &[
            (&[("deployment", "emoji"), ("pod", "emoji-1")], 30.0),
            (&[("deployment", "web"), ("pod", "web-1")], 15.0),
        ],
    );
}

fn buckets(le_counts: &[(&str, f64)]) -> String {
    let mut s = String::from("# TYPE response_latency_ms histogram\n");
    for (le, count) in le_counts {
        s.push_str(&format!(
            "response_latency_ms_bucket{{direction=\"inbound\",target_addr=\"10.42.0.5:8080\",status_code=\"200\",classification=\"success\",le=\"{le}\"}} {count}\n"
        ));
    }
    s
}

#[test]
fn quantile_of_irates() {
    let store = Store::default();
    ingest(
        &store,
        "web-1",
        "web",
        0.0,
        &buckets(&[("1", 0.0), ("10.0", 0.0), ("100", 0.0), ("+Inf", 0.0)]),
    );
    // One pod's proxy writes `le="10.0"`, the other `le="10"`: one bucket.
    ingest(
        &store,
        "web-1",
        "web",
        10.0,
        &buckets(&[("1", 0.0), ("10.0", 0.0), ("100", 0.0), ("+Inf", 0.0)]),
    );
    ingest(
        &store,
        "web-1",
        "web",
        20.0,
        &buckets(&[("1", 10.0), ("10.0", 60.0), ("100", 90.0), ("+Inf", 100.0)]),
    );
    ingest(
        &store,
        "web-2",
        "web",
        10.0,
        &buckets(&[("1", 0.0), ("10", 0.0), ("100", 0.0), ("+Inf", 0.0)]),
    );
    ingest(
        &store,
        "web-2",
        "web",
        20.0,
        &buckets(&[("1", 10.0), ("10", 20.0), ("100", 70.0), ("+Inf", 100.0)]),
    );
    // Rates per second, summed: le=1: 2, le=10: 8, le=100: 16, +Inf: 20.
    let q = |q: f64| Query::Quantile {
        q,
        sel: Selector::new("response_latency_ms_bucket"),
        window: Duration::from_secs(30),
        by: vec!["deployment".into()],
    };
    let p50 = store.evaluate_at(&q(0.5), t(20.0));
    // Rank 10 falls in (10, 100] holding 8: 10 + 90 x (10 - 8) / 8.
    assert_samples(&p50, &[(&[("deployment", "web")], 10.0 + 90.0 * 2.0 / 8.0)]);
    // Rank 19 falls in +Inf: the highest finite bound.
    let p95 = store.evaluate_at(&q(0.95), t(20.0));
    assert_samples(&p95, &[(&[("deployment", "web")], 100.0)]);
    // No traffic: the quantile is NaN and dropped.
    assert!(store.evaluate_at(&q(0.5), t(10.0)).is_empty());
}

fn gauge(value: f64) -> String {
    format!(
        "tcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.5:8080\",tls=\"true\"}} {value}\n\
         tcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.7:8080\",tls=\"true\"}} 1\n"
    )
}

#[test]
fn sum_reads_the_latest_sample_of_fresh_targets() {
    let store = Store::default();
    let q = Query::Sum {
        sel: Selector::new("tcp_open_connections"),
        by: vec!["deployment".into()],
    };
    ingest(&store, "web-1", "web", 0.0, &gauge(3.0));
    ingest(&store, "web-1", "web", 10.0, &gauge(5.0));
    ingest(&store, "web-2", "web", 10.0, &gauge(1.0));
    assert_samples(
        &store.evaluate_at(&q, t(15.0)),
        &[(&[("deployment", "web")], 8.0)],
    );
    // As of 5 s, web-1's first scrape is the latest and web-2 is unknown.
    assert_samples(
        &store.evaluate_at(&q, t(5.0)),
        &[(&[("deployment", "web")], 4.0)],
    );

    // web-2 fails: it no longer counts, though its snapshot is kept.
    let change = store.record_failure(
        &key("web-2"),
        &target_labels("web-2", "web"),
        t(20.0),
        &"connection refused",
    );
    assert_eq!(change, HealthChange::TurnedStale);
    assert_samples(
        &store.evaluate_at(&q, t(21.0)),
        &[(&[("deployment", "web")], 6.0)],
    );
    // ...but did before it failed.
    assert_samples(
        &store.evaluate_at(&q, t(19.0)),
        &[(&[("deployment", "web")], 8.0)],
    );
    let info = store.targets();
    assert_eq!(info[1].last_error.as_deref(), Some("connection refused"));
    assert_eq!(info[1].last_success, Some(t(10.0)));
    assert_eq!(info[1].last_scrape, Some(t(20.0)));
    assert_eq!(info[1].snapshots, 1);

    let change = store.ingest(
        &key("web-2"),
        &target_labels("web-2", "web"),
        t(30.0),
        gauge(2.0).as_bytes(),
    );
    assert_eq!(change, Ok(HealthChange::Recovered));
    assert_samples(
        &store.evaluate_at(&q, t(31.0)),
        &[(&[("deployment", "web")], 9.0)],
    );

    // Older than the 5-minute lookback: nothing.
    assert!(store.evaluate_at(&q, t(400.0)).is_empty());
}

#[test]
fn a_series_missing_from_the_last_scrape_is_not_summed() {
    let store = Store::default();
    let q = Query::Sum {
        sel: Selector::new("tcp_open_connections"),
        by: vec![],
    };
    ingest(&store, "web-1", "web", 0.0, &gauge(3.0));
    ingest(
        &store,
        "web-1",
        "web",
        10.0,
        "tcp_open_connections{direction=\"outbound\",peer=\"dst\"} 2\n",
    );
    assert_samples(&store.evaluate_at(&q, t(10.0)), &[(&[], 2.0)]);
}

#[test]
fn unparseable_scrapes_are_failures_that_keep_snapshots() {
    let store = Store::default();
    ingest(&store, "web-1", "web", 0.0, &gauge(3.0));
    let err = store
        .ingest(
            &key("web-1"),
            &target_labels("web-1", "web"),
            t(10.0),
            b"tcp_open_connections{ 1\n",
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("line 1: "), "{err}");
    let info = &store.targets()[0];
    assert_eq!(info.snapshots, 1);
    assert_eq!(info.series, 1);
    assert_eq!(info.last_error.as_deref(), Some(err.to_string().as_str()));
}

#[test]
fn retention_drops_old_snapshots_and_forgotten_series() {
    let store = Store::new(Duration::from_secs(60));
    for i in 0..10 {
        ingest(&store, "web-1", "web", 10.0 * f64::from(i), &gauge(1.0));
    }
    // Snapshots after 90 - 60 = 30 s: 40, 50 ... 90.
    assert_eq!(store.targets()[0].snapshots, 6);
    let q = increase("tcp_open_connections", 300, &[]);
    assert!(!store.evaluate_at(&q, t(90.0)).is_empty());

    // A series that stops being reported is forgotten once no retained
    // snapshot has it.
    let other = "tcp_open_connections{direction=\"outbound\",peer=\"dst\"} 2\n";
    ingest(&store, "web-1", "web", 100.0, other);
    assert_eq!(store.targets()[0].series, 2);
    for i in 11..17 {
        ingest(&store, "web-1", "web", 10.0 * f64::from(i), other);
    }
    let info = &store.targets()[0];
    assert_eq!((info.series, info.snapshots), (1, 6));
    let q = Query::Sum {
        sel: Selector::new("tcp_open_connections"),
        by: vec!["direction".into()],
    };
    assert_samples(
        &store.evaluate_at(&q, t(160.0)),
        &[(&[("direction", "outbound")], 2.0)],
    );

    // Failures expire snapshots too.
    store.record_failure(
        &key("web-1"),
        &target_labels("web-1", "web"),
        t(1000.0),
        &"gone",
    );
    let info = &store.targets()[0];
    assert_eq!((info.series, info.snapshots), (0, 0));
}

#[test]
fn remove_drops_a_target_at_once() {
    let store = Store::default();
    ingest(&store, "web-1", "web", 0.0, &gauge(1.0));
    ingest(&store, "web-2", "web", 0.0, &gauge(1.0));
    assert!(store.remove(&key("web-1")));
    assert!(!store.remove(&key("web-1")));
    let info = store.targets();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].key, key("web-2"));
    assert_eq!(info[0].labels, target_labels("web-2", "web"));
    assert_eq!(store.retain(|_| false), vec![key("web-2")]);
    assert!(store.targets().is_empty());
    // Nothing is left interned.
    let inner = store.read();
    assert!(inner.interner.strings.is_empty() && inner.interner.sets.is_empty());
}

#[test]
fn unknown_metrics_give_nothing() {
    let store = Store::default();
    ingest(
        &store,
        "web-1",
        "web",
        0.0,
        "process_cpu_seconds_total 1\nrequest_total 1\n",
    );
    assert_eq!(store.targets()[0].series, 1);
    let q = Query::Sum {
        sel: Selector::new("process_cpu_seconds_total"),
        by: vec![],
    };
    assert!(store.evaluate_at(&q, t(1.0)).is_empty());
}

/// A busy proxy's exposition: `n` authorities, inbound and outbound, each
/// with successes and failures and the full latency histogram.
fn busy_proxy(n: usize, scrape: u32) -> String {
    let mut s = String::new();
    let v = f64::from(scrape) * 7.0;
    for a in 0..n {
        for dir in ["inbound", "outbound"] {
            let base = format!(
                "direction=\"{dir}\",authority=\"svc-{a}.emojivoto.svc.cluster.local:8080\",target_addr=\"10.42.0.{a}:8080\",tls=\"true\",server_id=\"svc-{a}.emojivoto.serviceaccount.identity.linkerd.cluster.local\""
            );
            s.push_str(&format!("request_total{{{base}}} {v}\n"));
            for class in ["success", "failure"] {
                let rsp = format!("{base},status_code=\"200\",classification=\"{class}\"");
                s.push_str(&format!("response_total{{{rsp}}} {v}\n"));
                for le in strand_buckets() {
                    s.push_str(&format!(
                        "response_latency_ms_bucket{{{rsp},le=\"{le}\"}} {v}\n"
                    ));
                }
                s.push_str(&format!("response_latency_ms_sum{{{rsp}}} {v}\n"));
                s.push_str(&format!("response_latency_ms_count{{{rsp}}} {v}\n"));
            }
            for peer in ["src", "dst"] {
                let tcp = format!(
                    "direction=\"{dir}\",peer=\"{peer}\",target_addr=\"10.42.0.{a}:8080\",tls=\"true\""
                );
                s.push_str(&format!("tcp_open_total{{{tcp}}} {v}\n"));
                s.push_str(&format!("tcp_open_connections{{{tcp}}} 1\n"));
                s.push_str(&format!(
                    "tcp_close_total{{{tcp},classification=\"success\"}} {v}\n"
                ));
                s.push_str(&format!("tcp_read_bytes_total{{{tcp}}} {v}\n"));
            }
        }
    }
    s
}

fn strand_buckets() -> Vec<String> {
    let mut b: Vec<String> = [
        1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
        10000, 20000, 30000, 40000, 50000,
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    b.push("+Inf".into());
    b
}

/// 100 proxies x 60 snapshots (10 minutes at 10 s) stay well under 50 MiB.
/// With 4 authorities (each its own `server_id`) a proxy keeps, per
/// direction, 4 request and 4 x 2 response series (`authority` is dropped,
/// `server_id` and `classification` kept), 26 buckets (latency keeps only
/// `direction`, `le` and `dst_*`), and 2 x 3 TCP series (`target_addr`
/// dropped): 2 x (4 + 8 + 26 + 6) = 88 series, so a snapshot is 88 x 8 =
/// 704 bytes and the lot about 4 MiB.
///
/// Ten proxies are stored (a debug build commits 6,000 scrapes slowly) and
/// the cost multiplied by ten, which over-counts the label sets all
/// proxies share.
#[test]
fn memory_bound() {
    const PROXIES: usize = 10;
    let store = Store::default();
    for scrape in 0..60 {
        let text = busy_proxy(4, scrape);
        let prepared = Store::prepare(text.as_bytes()).unwrap();
        for pod in 0..PROXIES {
            let name = format!("web-{pod}");
            store.commit(
                &key(&name),
                &target_labels(&name, "web"),
                t(10.0 * f64::from(scrape)),
                prepared.clone(),
            );
        }
    }
    let info = store.targets();
    assert_eq!(info.len(), PROXIES);
    assert!(
        info.iter().all(|i| i.series == 88 && i.snapshots == 60),
        "{info:?}"
    );
    // A snapshot is its time, its slice's pointer and length, and 8 bytes a
    // series: nothing per series but the value.
    assert_eq!(std::mem::size_of::<Snapshot>(), 24);
    let per_proxy = store.approx_bytes() / PROXIES;
    let snapshots = 60 * (24 + 88 * 8);
    assert!(per_proxy >= snapshots, "{per_proxy}");
    // Series lists, indexes and interned labels are small beside the
    // snapshots.
    assert!(
        per_proxy - snapshots < snapshots / 2,
        "{per_proxy} bytes a proxy"
    );
    let hundred = 100 * per_proxy;
    assert!(
        hundred < 30 * 1024 * 1024,
        "{hundred} bytes for 100 proxies"
    );
}

/// The line cache reads the same numbers as a full parse, scrape after
/// scrape, also when lines come and go and a line turns bad.
#[test]
fn cached_lines_read_like_a_full_parse() {
    let cached = Store::default();
    let parsed = Store::default();
    let (k, l) = (key("web-1"), target_labels("web-1", "web"));
    for scrape in 0..6u32 {
        // Every other scrape has one authority fewer.
        let text = busy_proxy(if scrape % 2 == 0 { 3 } else { 2 }, scrape);
        let at = t(10.0 * f64::from(scrape));
        cached.ingest(&k, &l, at, text.as_bytes()).unwrap();
        let prepared = Store::prepare(text.as_bytes()).unwrap();
        parsed.commit(&k, &l, at, prepared);
    }
    let by = vec!["direction".to_string(), "classification".to_string()];
    let queries = [
        Query::Increase {
            sel: Selector::new("response_total"),
            window: Duration::from_secs(60),
            by: by.clone(),
        },
        Query::Quantile {
            q: 0.9,
            sel: Selector::new("response_latency_ms_bucket"),
            window: Duration::from_secs(60),
            by: by.clone(),
        },
        Query::Sum {
            sel: Selector::new("tcp_open_connections"),
            by,
        },
    ];
    for q in &queries {
        let (a, b) = (
            cached.evaluate_at(q, t(50.0)),
            parsed.evaluate_at(q, t(50.0)),
        );
        assert!(!a.is_empty(), "{q:?}");
        assert_eq!(a, b, "{q:?}");
    }
    // A known line whose value turns bad fails the scrape with its line.
    let mut text = busy_proxy(2, 7);
    text = text.replacen("} 49\n", "} forty-nine\n", 1);
    let err = cached.ingest(&k, &l, t(60.0), text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("invalid value"), "{err}");
    assert!(cached.targets()[0].last_error.is_some());
}
