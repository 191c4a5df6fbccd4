use super::*;

fn labels<'a>(s: &'a TextSample<'a>) -> Vec<(&'a str, &'a str)> {
    s.labels
        .iter()
        .map(|l| (l.name.as_ref(), l.value.as_ref()))
        .collect()
}

fn line_error(input: &str) -> (usize, String) {
    match parse(input.as_bytes(), usize::MAX) {
        Err(ParseError::Line { line, reason }) => (line, reason),
        other => panic!("{input:?} parsed as {other:?}"),
    }
}

/// What prometheus-client 0.26's `prometheus_text::encode` writes for the
/// proxy's metrics (abridged).
const PROXY: &str = r#"# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{direction="inbound",authority="web-svc.emojivoto:80",target_addr="10.42.0.5:8080",tls="true",client_id="default.emojivoto.serviceaccount.identity.linkerd.cluster.local"} 12
# HELP response_latency_ms Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{direction="inbound",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote",status_code="200",classification="success",le="1"} 3
response_latency_ms_bucket{direction="inbound",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote",status_code="200",classification="success",le="50000"} 7
response_latency_ms_bucket{direction="inbound",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote",status_code="200",classification="success",le="+Inf"} 7
response_latency_ms_sum{direction="inbound",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote",status_code="200",classification="success"} 23.5
response_latency_ms_count{direction="inbound",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote",status_code="200",classification="success"} 7
# HELP tcp_open_connections Number of currently-open connections.
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound",peer="src",target_addr="10.42.0.5:8080",tls="no_identity",no_tls_reason="no_tls_from_remote"} 0
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0.12
"#;

#[test]
fn parses_prometheus_client_output() {
    let samples = parse(PROXY.as_bytes(), usize::MAX).unwrap();
    assert_eq!(samples.len(), 8);
    assert_eq!(samples[0].name, "request_total");
    assert_eq!(samples[0].value, 12.0);
    assert_eq!(samples[0].timestamp_ms, None);
    assert_eq!(
        labels(&samples[0]),
        vec![
            ("direction", "inbound"),
            ("authority", "web-svc.emojivoto:80"),
            ("target_addr", "10.42.0.5:8080"),
            ("tls", "true"),
            (
                "client_id",
                "default.emojivoto.serviceaccount.identity.linkerd.cluster.local"
            ),
        ]
    );
    assert_eq!(samples[3].name, "response_latency_ms_bucket");
    assert_eq!(labels(&samples[3]).last(), Some(&("le", "+Inf")));
    assert_eq!(samples[4].value, 23.5);
    assert_eq!(samples[7].name, "process_cpu_seconds_total");
    assert!(samples[7].labels.is_empty());
}

#[test]
fn parses_what_other_exporters_write() {
    let text = concat!(
        "\n",
        "# a free comment\n",
        "#\n",
        "   \t\n",
        "# HELP http_requests_total The total number of HTTP requests.\n",
        "# TYPE http_requests_total counter\n",
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n",
        "http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n",
        "\n",
        "# Escaping in label values:\n",
        "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
        "metric_without_timestamp_and_labels 12.47\n",
        "something_weird{problem=\"division by zero\"} +Inf -3982045\n",
        "minus_inf -Inf\n",
        "not_a_number NaN\n",
        "trailing_comma{a=\"1\",} 1\n",
        "spaced { a = \"1\" , b=\"2\" } 2\n",
        "tabbed\t3\r\n",
        "om_seconds 1 1520879607.789\n",
        "with_exemplar_total{a=\"b\"} 4 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n",
        "{\"my.dotted.metric\", \"some.label\"=\"x\"} 5\n",
        "unknown_escape{a=\"x\\ty\"} 6\n",
        "# EOF\n",
        "this is not even parsed\n",
    );
    let samples = parse(text.as_bytes(), usize::MAX).unwrap();
    let by_name = |n: &str| samples.iter().find(|s| s.name == n).unwrap();
    assert_eq!(samples.len(), 14);
    assert_eq!(samples[0].timestamp_ms, Some(1395066363000));
    assert_eq!(samples[1].value, 3.0);
    let msdos = by_name("msdos_file_access_time_seconds");
    assert_eq!(
        labels(msdos),
        vec![
            ("path", r"C:\DIR\FILE.TXT"),
            ("error", "Cannot find file:\n\"FILE.TXT\"")
        ]
    );
    assert_eq!(msdos.value, 1.458255915e9);
    let weird = by_name("something_weird");
    assert_eq!(weird.value, f64::INFINITY);
    assert_eq!(weird.timestamp_ms, Some(-3982045));
    assert_eq!(by_name("minus_inf").value, f64::NEG_INFINITY);
    assert!(by_name("not_a_number").value.is_nan());
    assert_eq!(labels(by_name("trailing_comma")), vec![("a", "1")]);
    assert_eq!(labels(by_name("spaced")), vec![("a", "1"), ("b", "2")]);
    assert_eq!(by_name("tabbed").value, 3.0);
    assert_eq!(by_name("om_seconds").timestamp_ms, Some(1520879607789));
    assert_eq!(by_name("with_exemplar_total").value, 4.0);
    assert_eq!(
        labels(by_name("my.dotted.metric")),
        vec![("some.label", "x")]
    );
    assert_eq!(labels(by_name("unknown_escape")), vec![("a", r"x\ty")]);
}

#[test]
fn no_trailing_newline_is_fine() {
    let samples = parse(b"a 1\nb 2", usize::MAX).unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1].value, 2.0);
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases = [
        ("ok 1\n9bad 1\n", 2, "cannot start with '9'"),
        ("a{b=\"1\" 1\n", 1, "unexpected '1' in the label set"),
        ("a{b=\"1\"\n", 1, "closing '}'"),
        ("a{b=\"1} 1\n", 1, "closing '\"'"),
        ("a{b=1} 1\n", 1, "not quoted"),
        ("a{b} 1\n", 1, "expected '='"),
        ("a{b=\"1\",b=\"2\"} 1\n", 1, "label b appears twice"),
        ("a\n", 1, "a: no value"),
        ("a{b=\"1\"}\n", 1, "a: no value"),
        ("a one\n", 1, "invalid value \"one\""),
        ("a 1 soon\n", 1, "invalid timestamp \"soon\""),
        ("a 1 2 3\n", 1, "unexpected \"3\" after the value"),
        ("a{b=\"1\"}2\n", 1, "unexpected '2' after the metric name"),
        ("a{\"x\"} 1\n", 1, "expected '='"),
        ("{b=\"1\"} 1\n", 1, "without a metric name"),
        ("\n\n# TYPE a countr\n", 3, "unknown type \"countr\""),
        ("# TYPE\n", 1, "without a metric name"),
        ("# HELP 1a x\n", 1, "cannot start with '1'"),
        ("a{b=\"\u{0}\"} x\n", 1, "invalid value"),
    ];
    for (input, line, reason) in cases {
        let (l, r) = line_error(input);
        assert_eq!(l, line, "{input:?}: {r}");
        assert!(r.contains(reason), "{input:?}: {r:?} lacks {reason:?}");
    }
}

#[test]
fn invalid_utf8_in_a_label_value_is_an_error() {
    let err = parse(b"a{b=\"\xff\"} 1\n", usize::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: a quoted string is not valid UTF-8"
    );
}

#[test]
fn limits_are_enforced() {
    let text = "a 1\n".repeat(10);
    assert_eq!(
        parse(text.as_bytes(), 39).unwrap_err(),
        ParseError::TooLarge {
            size: 40,
            limit: 39
        }
    );
    assert_eq!(parse(text.as_bytes(), 40).unwrap().len(), 10);

    let long = format!("ok 1\nlong{{a=\"{}\"}} 1\n", "x".repeat(MAX_LINE_BYTES));
    let (line, reason) = line_error(&long);
    assert_eq!(line, 2);
    assert!(reason.contains("over the 65536-byte limit"), "{reason}");

    let at_limit = format!("a{{b=\"{}\"}} 1", "x".repeat(MAX_LINE_BYTES - 9));
    assert_eq!(at_limit.len(), MAX_LINE_BYTES);
    assert_eq!(parse(at_limit.as_bytes(), usize::MAX).unwrap().len(), 1);

    let set = |n: usize| {
        let labels: Vec<String> = (0..n).map(|i| format!("l{i}=\"v\"")).collect();
        format!("a{{{}}} 1\n", labels.join(","))
    };
    assert_eq!(
        parse(set(MAX_LABELS).as_bytes(), usize::MAX).unwrap()[0]
            .labels
            .len(),
        MAX_LABELS
    );
    let (line, reason) = line_error(&set(MAX_LABELS + 1));
    assert_eq!(line, 1);
    assert_eq!(reason, "more than 64 labels");
}

#[test]
fn borrows_unless_unescaping() {
    let samples = parse(b"a{b=\"plain\",c=\"q\\\"uote\"} 1\n", usize::MAX).unwrap();
    assert!(matches!(samples[0].name, Cow::Borrowed(_)));
    assert!(matches!(samples[0].labels[0].value, Cow::Borrowed(_)));
    assert_eq!(samples[0].labels[1].value, "q\"uote");
}

/// Random bytes, and valid text with random corruption, never panic.
#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x5757_a11d);
    let alphabet = b"ab_:{}=\",\\ \t\n#0123456789.eE+-InfNaN\xff\xc3\xa9";
    for round in 0..20_000 {
        let len = rng.usize(0..300);
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..len).map(|_| rng.u8(..)).collect()
        } else {
            (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect()
        };
        let _ = parse(&bytes, usize::MAX);
    }
    for _ in 0..5_000 {
        let mut bytes = PROXY.as_bytes().to_vec();
        for _ in 0..rng.usize(1..8) {
            let i = rng.usize(..bytes.len());
            match rng.u8(0..3) {
                0 => bytes[i] = rng.u8(..),
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, alphabet[rng.usize(..alphabet.len())]),
            }
        }
        let _ = parse(&bytes, usize::MAX);
    }
}

#[test]
fn unwanted_families_are_skipped_after_their_name() {
    let text = b"process_cpu_seconds_total{broken 1 2 3\nresponse_total{direction=\"inbound\"} 4\n";
    let mut seen = Vec::new();
    for_each_wanted(
        text,
        usize::MAX,
        |n| n == "response_total",
        |s| {
            seen.push((s.name.to_string(), s.value));
        },
    )
    .unwrap();
    assert_eq!(seen, [("response_total".to_string(), 4.0)]);
    // A wanted family is still parsed strictly, and a bad name is an error
    // whether wanted or not.
    let err = for_each_wanted(b"response_total{x 1\n", usize::MAX, |_| true, |_| {});
    assert!(err.is_err());
    let err = for_each_wanted(b"9bad 1\n", usize::MAX, |_| false, |_| {});
    assert!(err.is_err());
}
