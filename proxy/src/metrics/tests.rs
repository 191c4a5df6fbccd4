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
