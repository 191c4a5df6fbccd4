//! What the proxies and Prometheus export, derived from the proxy's
//! source (checked against it here), for the dashboards' tests.

use std::collections::{BTreeSet, HashSet};

/// The proxy's source file that registers a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Metrics,
    Process,
    Certify,
}

/// How a family is exported, which decides its series' names.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `<name>_total`
    Counter,
    /// `<name>`
    Gauge,
    /// `<name>_bucket`, `<name>_sum`, `<name>_count`
    Histogram,
}

/// The proxy's source files that register metric families.
const METRICS_RS: &str = include_str!("../../../../proxy/src/metrics.rs");
const PROCESS_RS: &str = include_str!("../../../../proxy/src/metrics/process.rs");
const CERTIFY_RS: &str = include_str!("../../../../proxy/src/identity/certify.rs");
/// The proxy's label sets.
const LABELS_RS: &str = include_str!("../../../../proxy/src/metrics/labels.rs");
/// The endpoint labels discovery gives the proxy (exported as `dst_*`).
const ENDPOINTS_RS: &str = include_str!("../../../../controller/grpc/src/destination/endpoints.rs");

/// Every family the proxy exports, as registered, from:
/// - `proxy/src/metrics.rs`, `Metrics::with_identity` (`r.register`),
/// - `proxy/src/metrics/process.rs`, `ProcessCollector` (`process_*`),
/// - `proxy/src/identity/certify.rs`, `IdentityMetrics::register`.
///
/// [`families_match_the_proxy_source`] checks this list against them.
const PROXY_FAMILIES: &[(&str, Kind, Source)] = &[
    ("request", Kind::Counter, Source::Metrics),
    ("response", Kind::Counter, Source::Metrics),
    ("response_latency_ms", Kind::Histogram, Source::Metrics),
    ("tcp_open", Kind::Counter, Source::Metrics),
    ("tcp_close", Kind::Counter, Source::Metrics),
    ("tcp_open_connections", Kind::Gauge, Source::Metrics),
    ("tcp_read_bytes", Kind::Counter, Source::Metrics),
    ("tcp_write_bytes", Kind::Counter, Source::Metrics),
    (
        "tcp_connection_duration_ms",
        Kind::Histogram,
        Source::Metrics,
    ),
    ("inbound_protocol_errors", Kind::Counter, Source::Metrics),
    ("trace_spans_exported", Kind::Counter, Source::Metrics),
    ("trace_spans_dropped", Kind::Counter, Source::Metrics),
    (
        "outbound_http_route_retry_requests",
        Kind::Counter,
        Source::Metrics,
    ),
    (
        "outbound_http_route_retry_successes",
        Kind::Counter,
        Source::Metrics,
    ),
    (
        "outbound_http_route_retry_limit_exceeded",
        Kind::Counter,
        Source::Metrics,
    ),
    (
        "outbound_http_route_request_statuses",
        Kind::Counter,
        Source::Metrics,
    ),
    (
        "outbound_http_route_request_duration_seconds",
        Kind::Histogram,
        Source::Metrics,
    ),
    ("route_request", Kind::Counter, Source::Metrics),
    ("route_response", Kind::Counter, Source::Metrics),
    (
        "route_response_latency_ms",
        Kind::Histogram,
        Source::Metrics,
    ),
    ("route_actual_request", Kind::Counter, Source::Metrics),
    ("route_actual_response", Kind::Counter, Source::Metrics),
    ("process_cpu_seconds", Kind::Counter, Source::Process),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        Source::Process,
    ),
    ("process_virtual_memory_bytes", Kind::Gauge, Source::Process),
    ("process_open_fds", Kind::Gauge, Source::Process),
    ("process_max_fds", Kind::Gauge, Source::Process),
    ("process_start_time_seconds", Kind::Gauge, Source::Process),
    ("process_threads", Kind::Gauge, Source::Process),
    (
        "identity_cert_expiration_timestamp_seconds",
        Kind::Gauge,
        Source::Certify,
    ),
    ("identity_cert_refresh", Kind::Counter, Source::Certify),
    (
        "identity_cert_refresh_failure",
        Kind::Counter,
        Source::Certify,
    ),
];

/// What Prometheus itself records for every target it scrapes.
const PROMETHEUS_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Labels of the proxy's series (`proxy/src/metrics/labels.rs`, and the
/// protocol errors' `reason` in `proxy/src/metrics.rs`), besides `le`.
const PROXY_LABELS: &[&str] = &[
    "direction",
    "authority",
    "target_addr",
    "tls",
    "no_tls_reason",
    "client_id",
    "server_id",
    "status_code",
    "classification",
    "grpc_status",
    "error",
    "peer",
];

/// The ServiceProfile route families' own labels
/// (`profile_route_labels` in `proxy/src/metrics.rs`), which `strand viz
/// routes` groups by.
const PROFILE_ROUTE_LABELS: &[&str] = &["dst", "rt_route"];

/// The endpoint labels the destination service sends
/// (`controller/grpc/src/destination/endpoints.rs`), which the proxy
/// exports with a `dst_` prefix.
const DST_LABELS: &[&str] = &[
    "namespace",
    "service",
    "pod",
    "serviceaccount",
    "deployment",
    "pod_template_hash",
    "control_plane_ns",
];

/// String literals passed to `register(` in `src`.
fn registered(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices("register(") {
        let rest = src[i + "register(".len()..].trim_start();
        if let Some(lit) = rest.strip_prefix('"')
            && let Some(end) = lit.find('"')
        {
            out.insert(lit[..end].to_string());
        }
    }
    out
}

#[test]
fn families_match_the_proxy_source() {
    let listed = |src: Source| -> BTreeSet<String> {
        PROXY_FAMILIES
            .iter()
            .filter(|(_, _, s)| *s == src)
            .map(|(n, _, _)| n.to_string())
            .collect()
    };
    assert_eq!(
        registered(METRICS_RS),
        listed(Source::Metrics),
        "proxy/src/metrics.rs"
    );
    assert_eq!(
        registered(CERTIFY_RS),
        listed(Source::Certify),
        "proxy/src/identity/certify.rs"
    );
    let process: BTreeSet<String> = PROCESS_RS
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|lit| lit.starts_with("process_") && !lit.contains(' '))
        .map(str::to_string)
        .collect();
    assert_eq!(
        process,
        listed(Source::Process),
        "proxy/src/metrics/process.rs"
    );
    // The process CPU time is the one counter there.
    assert!(PROCESS_RS.contains("ConstCounter::new(s.cpu_seconds)"));
}

#[test]
fn labels_match_the_proxy_source() {
    for l in PROXY_LABELS {
        assert!(
            LABELS_RS.contains(&format!("\"{l}\"")),
            "{l} is not a label in proxy/src/metrics/labels.rs"
        );
    }
    assert!(METRICS_RS.contains("(\"reason\", reason)"));
    for l in PROFILE_ROUTE_LABELS {
        assert!(
            METRICS_RS.contains(&format!("(\"{l}\", ")),
            "{l} is not a route label in proxy/src/metrics.rs"
        );
    }
    for l in DST_LABELS {
        assert!(
            ENDPOINTS_RS.contains(&format!("\"{l}\"")),
            "{l} is not an endpoint label in controller/grpc/src/destination/endpoints.rs"
        );
    }
    assert!(LABELS_RS.contains("format!(\"dst_{k}\")"));
}

/// The labels a scraped series may have: the proxy's, `dst_*`, `le`, the
/// target labels the metrics API hands Prometheus
/// ([`crate::inventory::scrape_target`]) and Prometheus's `job` and
/// `instance`.
pub(super) fn known_labels() -> HashSet<String> {
    let pod = serde_json::json!({
        "apiVersion": "local.strand.io/v1alpha1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "emojivoto"},
        "spec": {"workload": "web", "serviceAccountName": "web"},
        "status": {"podIP": "10.42.0.7", "ready": true, "meshed": true,
                   "proxyAdminAddr": "10.42.0.7:4191"}
    });
    let pod = match strand_controller_core::parse_resource_json(pod) {
        Ok(strand_controller_core::Resource::Pod(p)) => p,
        other => panic!("not a pod: {other:?}"),
    };
    let target = crate::inventory::scrape_target(&pod).expect("a meshed pod is a target");
    let mut out: HashSet<String> = target.labels.keys().cloned().collect();
    assert_eq!(out.len(), 3, "namespace, pod, deployment: {out:?}");
    out.extend(["job", "instance", "le", "reason"].map(String::from));
    out.extend(PROXY_LABELS.iter().map(|l| l.to_string()));
    out.extend(PROFILE_ROUTE_LABELS.iter().map(|l| l.to_string()));
    out.extend(DST_LABELS.iter().map(|l| format!("dst_{l}")));
    out
}

pub(super) fn known_metrics() -> HashSet<String> {
    let mut out: HashSet<String> = PROMETHEUS_SERIES.iter().map(|s| s.to_string()).collect();
    for (name, kind, _) in PROXY_FAMILIES {
        match kind {
            Kind::Counter => {
                out.insert(format!("{name}_total"));
            }
            Kind::Gauge => {
                out.insert(name.to_string());
            }
            Kind::Histogram => {
                for suffix in ["bucket", "sum", "count"] {
                    out.insert(format!("{name}_{suffix}"));
                }
            }
        }
    }
    out
}
