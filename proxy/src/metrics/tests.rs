use super::*;

fn target() -> TargetLabels {
    TargetLabels {
        direction: Direction::Outbound,
        authority: Some("web.default:8080".into()),
        target_addr: "198.18.0.3:8080".into(),
        tls: Tls::NoIdentity(NoTlsReason::NotProvidedByServiceDiscovery),
        dst: DstLabels::default(),
    }
}

#[test]
fn http_metrics_use_linkerd_names() {
    let m = Metrics::new();
    m.request(&target());
    let rsp = ResponseLabels {
        target: target(),
        status_code: Some(200),
        classification: Classification::Success,
        grpc_status: Some(0),
        error: None,
    };
    m.response_latency(&rsp, Instant::now());
    m.response_end(&rsp);
    let text = m.encode();
    let base = r#"direction="outbound",authority="web.default:8080",target_addr="198.18.0.3:8080",tls="no_identity",no_tls_reason="not_provided_by_service_discovery""#;
    assert!(
        text.contains(&format!("request_total{{{base}}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#"response_total{{{base},status_code="200",classification="success",grpc_status="0"}} 1"#)),
        "{text}"
    );
    assert!(text.contains("response_latency_ms_bucket{"), "{text}");
    assert!(text.contains(r#"le="50000""#), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_cpu_seconds_total "), "{text}");
}

#[test]
fn endpoint_labels_carry_a_dst_prefix() {
    let m = Metrics::new();
    let discovered: std::collections::BTreeMap<String, String> = [
        ("namespace", "emojivoto"),
        ("service", "emoji-svc"),
        ("deployment", "emoji"),
        ("pod", "emoji-1"),
        ("bad-name", "skipped"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut labels = target();
    labels.dst = DstLabels::from_discovery(&discovered);
    m.request(&labels);
    let text = m.encode();
    assert!(
        text.contains(r#"no_tls_reason="not_provided_by_service_discovery",dst_deployment="emoji",dst_namespace="emojivoto",dst_pod="emoji-1",dst_service="emoji-svc"} 1"#),
        "{text}"
    );
    assert!(!text.contains("bad-name"), "{text}");
}

#[test]
fn tcp_conn_records_open_and_close() {
    let m = Metrics::new();
    let labels = TcpLabels {
        direction: Direction::Inbound,
        peer: Peer::Src,
        target_addr: "198.18.0.3:7".into(),
        tls: Tls::NoIdentity(NoTlsReason::NoTlsFromRemote),
    };
    let conn = m.tcp_open(labels);
    conn.read.inc_by(10);
    conn.written.inc_by(20);
    let base = r#"direction="inbound",peer="src",target_addr="198.18.0.3:7",tls="no_identity",no_tls_reason="no_tls_from_remote""#;
    let text = m.encode();
    assert!(
        text.contains(&format!("tcp_open_connections{{{base}}} 1")),
        "{text}"
    );
    drop(conn);
    let text = m.encode();
    assert!(
        text.contains(&format!("tcp_open_total{{{base}}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tcp_open_connections{{{base}}} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tcp_read_bytes_total{{{base}}} 10")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tcp_write_bytes_total{{{base}}} 20")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"tcp_close_total{{{base},classification="success"}} 1"#
        )),
        "{text}"
    );
}

#[test]
fn handle_cache_counts_like_the_families() {
    // The same requests recorded through a connection's cache and straight
    // into the families encode the same text, also when the connection
    // sees more label sets than the cache keeps (so entries are evicted
    // and looked up again).
    let cached = Metrics::new();
    let direct = Metrics::new();
    let cache = HandleCache::default();
    let authorities: Vec<String> = (0..7).map(|i| format!("svc-{i}.test:8080")).collect();
    for round in 0..3u16 {
        for (i, a) in authorities.iter().enumerate() {
            let mut t = target();
            t.authority = Some(cache.authority(a));
            let rsp = ResponseLabels {
                target: t.clone(),
                status_code: Some(200 + u16::try_from(i % 2).unwrap_or(0) * 300 + round),
                classification: Classification::Success,
                grpc_status: None,
                error: None,
            };
            let since = Instant::now();
            cached.request_cached(&cache, &t);
            cached.response_latency_cached(&cache, &rsp, since);
            cached.response_end_cached(&cache, &rsp);
            direct.request(&t);
            direct.response_latency(&rsp, since);
            direct.response_end(&rsp);
        }
    }
    let http_lines = |m: &Metrics| -> Vec<String> {
        let mut lines: Vec<String> = m
            .encode()
            .lines()
            .filter(|l| l.starts_with("request_total") || l.starts_with("response_total"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let lines = http_lines(&cached);
    assert_eq!(lines, http_lines(&direct));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"authority="svc-6.test:8080""#) && l.ends_with(" 3")),
        "{lines:?}"
    );
    let count = |m: &Metrics| m.encode().matches("response_latency_ms_count{").count();
    assert_eq!(count(&cached), 7 * 3);
    assert_eq!(count(&cached), count(&direct));
}

#[test]
fn handle_cache_reuses_the_previous_authority() {
    let cache = HandleCache::default();
    let a = cache.authority("web.test:8080");
    let b = cache.authority("web.test:8080");
    assert!(Arc::ptr_eq(&a, &b));
    let c = cache.authority("api.test:8080");
    assert_eq!(&*c, "api.test:8080");
    assert!(!Arc::ptr_eq(&a, &c));
}

#[test]
fn peer_ids_compare_by_name_not_by_allocation() {
    use crate::metrics::PeerId;
    let a: Arc<str> = "web.default.serviceaccount.identity.strand.cluster.local".into();
    let b: Arc<str> = a.to_string().into();
    let other: Arc<str> = "db.default.serviceaccount.identity.strand.cluster.local".into();
    assert_eq!(PeerId::Server(a.clone()), PeerId::Server(b.clone()));
    assert_eq!(
        PeerId::Client(Some(a.clone())),
        PeerId::Client(Some(b.clone()))
    );
    assert_eq!(PeerId::Client(None), PeerId::Client(None));
    assert_ne!(PeerId::Server(a.clone()), PeerId::Server(other));
    assert_ne!(PeerId::Server(a.clone()), PeerId::Client(Some(a)));
    assert_ne!(PeerId::Client(None), PeerId::Client(Some(b)));
}
