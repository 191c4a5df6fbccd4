use super::*;

fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
    pairs.iter().copied().collect()
}

#[test]
fn defaults_match_linkerd() {
    let c = Config::default();
    assert_eq!(
        c.outbound.listen_addrs,
        vec![
            "127.0.0.1:4140".parse().unwrap(),
            "[::1]:4140".parse().unwrap()
        ]
    );
    assert_eq!(
        c.inbound.listen_addrs,
        vec![
            "0.0.0.0:4143".parse().unwrap(),
            "[::]:4143".parse().unwrap()
        ]
    );
    assert_eq!(c.admin_addr, "0.0.0.0:4191".parse().unwrap());
    assert_eq!(c.inbound.detect_timeout, Duration::from_secs(10));
    assert_eq!(c.outbound.connect_timeout, Duration::from_secs(1));
    assert_eq!(
        c.inbound.opaque_ports.iter().copied().collect::<Vec<_>>(),
        DEFAULT_OPAQUE_PORTS
    );
}

#[test]
fn overrides() {
    let c = Config::from_env(&env(&[
        ("STRAND_PROXY_INBOUND_LISTEN_ADDR", "[::]:5143"),
        ("STRAND_PROXY_OUTBOUND_DETECT_TIMEOUT", "250ms"),
        (
            "STRAND_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            "22, 8000-8002",
        ),
        ("STRAND_PROXY_SHUTDOWN_GRACE_PERIOD", "5"),
    ]))
    .unwrap();
    assert_eq!(c.inbound.listen_addrs, vec!["[::]:5143".parse().unwrap()]);
    assert_eq!(c.outbound.detect_timeout, Duration::from_millis(250));
    assert_eq!(
        c.inbound.opaque_ports.into_iter().collect::<Vec<_>>(),
        vec![22, 8000, 8001, 8002]
    );
    assert_eq!(c.shutdown_grace_period, Duration::from_secs(5));
}

#[test]
fn every_invalid_variable_is_reported() {
    let errs = Config::from_env(&env(&[
        ("STRAND_PROXY_ADMIN_LISTEN_ADDR", "localhost"),
        ("STRAND_PROXY_INBOUND_DETECT_TIMEOUT", "soon"),
        (
            "STRAND_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            "80,0",
        ),
        ("STRAND_PROXY_CORES", "0"),
        ("STRAND_PROXY_LOG_FORMAT", "xml"),
    ]))
    .unwrap_err();
    let names: Vec<_> = errs.0.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        vec![
            "STRAND_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            "STRAND_PROXY_INBOUND_DETECT_TIMEOUT",
            "STRAND_PROXY_ADMIN_LISTEN_ADDR",
            "STRAND_PROXY_CORES",
            "STRAND_PROXY_LOG_FORMAT",
        ]
    );
    let text = errs.to_string();
    assert!(
        text.contains("STRAND_PROXY_ADMIN_LISTEN_ADDR=\"localhost\" is not valid"),
        "{text}"
    );
    assert!(text.contains("`0` is not a port"), "{text}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("10 parsecs").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn port_ranges() {
    assert!(parse_ports("9-1").is_err());
    assert!(parse_ports("70000").is_err());
    assert_eq!(parse_ports("").unwrap().len(), 0);
}

#[test]
fn every_variable_is_documented_once() {
    let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), VARS.len());
}

#[test]
fn readme_documents_every_variable_with_its_default() {
    let readme = include_str!("../../../README.md");
    for v in VARS {
        let row = format!("| `{}` | `{}` |", v.name, v.default);
        assert!(
            readme.contains(&row),
            "README.md lacks the table row starting {row:?}"
        );
    }
}

#[test]
fn the_tap_api_needs_an_identity_and_a_tap_service_name() {
    assert_eq!(Config::default().tap, None);
    let identity = [
        ("STRAND_PROXY_IDENTITY_SVC_ADDR", "10.0.0.1:8080"),
        (
            "STRAND_PROXY_IDENTITY_LOCAL_NAME",
            "web.default.serviceaccount.identity.linkerd.cluster.local",
        ),
        (
            "STRAND_PROXY_IDENTITY_TRUST_ANCHORS",
            "-----BEGIN CERTIFICATE-----",
        ),
        ("STRAND_PROXY_IDENTITY_TOKEN_FILE", "/tmp/token"),
    ];
    let tap = "tap.strand-viz.serviceaccount.identity.linkerd.cluster.local";
    let mut vars = identity.to_vec();
    vars.push(("STRAND_PROXY_TAP_SVC_NAME", tap));
    let c = Config::from_env(&env(&vars)).unwrap();
    assert_eq!(
        c.tap,
        Some(TapConfig {
            listen_addr: "0.0.0.0:4190".parse().unwrap(),
            svc_name: tap.to_string(),
        })
    );

    // Without an identity there is no mTLS, so no tap API.
    let errs = Config::from_env(&env(&[("STRAND_PROXY_TAP_SVC_NAME", tap)])).unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs:?}");
    assert_eq!(errs.0[0].name, "STRAND_PROXY_TAP_SVC_NAME");
    assert!(errs.0[0].reason.contains("mTLS"), "{errs:?}");

    // A bad name and a bad address are reported by name.
    let mut vars = identity.to_vec();
    vars.push(("STRAND_PROXY_TAP_SVC_NAME", "not a name"));
    vars.push(("STRAND_PROXY_CONTROL_LISTEN_ADDR", "4190"));
    let errs = Config::from_env(&env(&vars)).unwrap_err();
    let names: Vec<_> = errs.0.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "STRAND_PROXY_CONTROL_LISTEN_ADDR",
            "STRAND_PROXY_TAP_SVC_NAME"
        ]
    );
}

#[test]
fn ingress_mode_is_off_unless_set_to_true() {
    let with = |v: &'static str| {
        Config::from_env(&env(&[
            ("STRAND_PROXY_DESTINATION_SVC_ADDR", "127.0.0.1:8086"),
            ("STRAND_PROXY_INGRESS_MODE", v),
        ]))
    };
    let mode = |c: Config| c.discovery.unwrap().ingress_mode;
    assert!(!mode(with("false").unwrap()));
    assert!(mode(with("true").unwrap()));
    let errs = with("yes").unwrap_err().to_string();
    assert!(
        errs.contains("STRAND_PROXY_INGRESS_MODE=\"yes\" is not valid"),
        "{errs}"
    );
    assert!(errs.contains("expected true or false"), "{errs}");
}

#[test]
fn tracing_is_off_by_default_and_configured_by_collector() {
    assert_eq!(Config::default().trace, None);
    let c = Config::from_env(&env(&[
        (
            "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
            "collector.linkerd-jaeger.svc.cluster.local:4317",
        ),
        ("STRAND_PROXY_TRACE_PROTOCOL", "opentelemetry"),
        ("STRAND_PROXY_TRACE_SERVICE_NAME", "web"),
        (
            "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES",
            "k8s.pod.name=web-1, k8s.namespace.name=default,",
        ),
    ]))
    .unwrap();
    assert_eq!(
        c.trace,
        Some(TraceConfig {
            collector_addr: "collector.linkerd-jaeger.svc.cluster.local:4317".into(),
            service_name: "web".into(),
            attributes: vec![
                ("k8s.pod.name".into(), "web-1".into()),
                ("k8s.namespace.name".into(), "default".into())
            ],
        })
    );
    for addr in ["10.42.0.1:4317", "[fd00::1]:4317"] {
        let c = Config::from_env(&env(&[("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", addr)])).unwrap();
        assert_eq!(c.trace.unwrap().service_name, "strand-proxy");
    }
}

#[test]
fn bad_tracing_variables_are_reported() {
    let errs = Config::from_env(&env(&[
        ("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", "collector"),
        ("STRAND_PROXY_TRACE_PROTOCOL", "opencensus"),
        ("STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES", "k8s.pod.name"),
    ]))
    .unwrap_err();
    let names: Vec<_> = errs.0.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
            "STRAND_PROXY_TRACE_PROTOCOL",
            "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES"
        ]
    );
    assert!(
        errs.0[1].reason.contains("OpenCensus"),
        "{}",
        errs.0[1].reason
    );
    for bad in [
        "10.42.0.1:0",
        ":4317",
        "10.42.0.1",
        "[fd00::1:4317",
        "bad host:1",
    ] {
        let errs =
            Config::from_env(&env(&[("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", bad)])).unwrap_err();
        assert_eq!(
            errs.0[0].name, "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
            "{bad}"
        );
    }
}
