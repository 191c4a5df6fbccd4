use super::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn reads_w3c_traceparent() {
    let h = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))]);
    let c = TraceContext::extract(&h).expect("valid");
    assert_eq!(otlp::hex(&c.trace_id), TRACE);
    assert_eq!(otlp::hex(&c.parent_id), PARENT);
    assert!(c.sampled);
    assert_eq!(c.format, Format::W3c);

    let h = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]);
    assert!(!TraceContext::extract(&h).unwrap().sampled);
    // A later version may carry more fields.
    let h = headers(&[("traceparent", &format!("01-{TRACE}-{PARENT}-01-extra"))]);
    assert!(TraceContext::extract(&h).unwrap().sampled);
}

#[test]
fn malformed_contexts_are_ignored() {
    let zeros = "0".repeat(32);
    for bad in [
        String::new(),
        "garbage".to_string(),
        format!("00-{TRACE}-{PARENT}"),
        format!("00-{TRACE}-{PARENT}-01-extra"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{zeros}-{PARENT}-01"),
        format!("00-{TRACE}-0000000000000000-01"),
        format!("00-{}-{PARENT}-01", &TRACE[..31]),
        format!("00-{TRACE}-{PARENT}-0g"),
        format!("0x-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "z".repeat(32)),
    ] {
        let h = headers(&[("traceparent", &bad)]);
        assert_eq!(TraceContext::extract(&h), None, "{bad:?}");
    }
    // Non-ASCII bytes in the header.
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_bytes(b"00-\xff\xfe").unwrap(),
    );
    assert_eq!(TraceContext::extract(&h), None);
    assert_eq!(TraceContext::extract(&HeaderMap::new()), None);
}

#[test]
fn reads_b3_headers() {
    let h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-sampled", "1"),
    ]);
    let c = TraceContext::extract(&h).unwrap();
    assert_eq!(otlp::hex(&c.trace_id), TRACE);
    assert!(c.sampled);
    assert_eq!(c.format, Format::B3);

    // 64-bit trace ids; the debug flag samples.
    let h = headers(&[
        ("x-b3-traceid", "8448eb211c80319c"),
        ("x-b3-spanid", PARENT),
        ("x-b3-flags", "1"),
    ]);
    let c = TraceContext::extract(&h).unwrap();
    assert_eq!(otlp::hex(&c.trace_id), "00000000000000008448eb211c80319c");
    assert!(c.sampled);

    // No sampling decision: not sampled here.
    let h = headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", PARENT)]);
    assert!(!TraceContext::extract(&h).unwrap().sampled);
    let h = headers(&[("x-b3-traceid", TRACE)]);
    assert_eq!(TraceContext::extract(&h), None);
}

#[test]
fn injects_the_proxys_span_as_the_parent() {
    let mut h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
        ("tracestate", "vendor=1"),
    ]);
    let c = TraceContext::extract(&h).unwrap();
    c.inject([1, 2, 3, 4, 5, 6, 7, 8], &mut h);
    assert_eq!(
        h["traceparent"],
        format!("00-{TRACE}-0102030405060708-01").as_str()
    );
    assert_eq!(h["tracestate"], "vendor=1", "tracestate is passed on");

    let mut h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-sampled", "1"),
    ]);
    let c = TraceContext::extract(&h).unwrap();
    c.inject([9; 8], &mut h);
    assert_eq!(h["x-b3-spanid"], "0909090909090909");
    assert_eq!(h["x-b3-parentspanid"], PARENT);
    assert_eq!(h["x-b3-traceid"], TRACE);
}

#[test]
fn spans_record_the_request_and_its_outcome() {
    let (tx, mut rx) = mpsc::channel(4);
    let tracer = Tracer {
        tx,
        dropped: Counter::default(),
    };
    let mut req = http::Request::post("/api/vote?x=1")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .body(())
        .unwrap();
    let conn = ConnInfo {
        authority: Some("web.default.svc.cluster.local:80"),
        peer: "10.0.0.1:5000".parse().unwrap(),
        target: "10.0.0.2:80".parse().unwrap(),
    };
    let span = tracer
        .start(&mut req, Direction::Inbound, &conn)
        .expect("sampled");
    let id = otlp::hex(&span.span_id());
    assert_eq!(
        req.headers()["traceparent"],
        format!("00-{TRACE}-{id}-01").as_str()
    );
    tracer.finish(span, Some(503), None);
    let s = rx.try_recv().expect("queued");
    assert_eq!(s.name, "POST /api/vote");
    assert_eq!(s.kind, otlp::SpanKind::Server as i32);
    assert_eq!(otlp::hex(&s.parent_span_id), PARENT);
    assert_eq!(otlp::hex(&s.trace_id), TRACE);
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    let attr = |k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .map(otlp::KeyValue::value_text)
    };
    assert_eq!(attr("http.status_code").as_deref(), Some("503"));
    assert_eq!(attr("direction").as_deref(), Some("inbound"));
    assert_eq!(attr("net.peer.addr").as_deref(), Some("10.0.0.1:5000"));
    assert_eq!(
        attr("http.authority").as_deref(),
        Some("web.default.svc.cluster.local:80")
    );
    assert_eq!(
        s.status.as_ref().map(|st| st.code),
        Some(otlp::StatusCode::Error as i32)
    );

    // Not sampled: no span, headers untouched.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let mut req = http::Request::get("/")
        .header("traceparent", &unsampled)
        .body(())
        .unwrap();
    assert!(tracer.start(&mut req, Direction::Outbound, &conn).is_none());
    assert_eq!(req.headers()["traceparent"], unsampled.as_str());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (tx, _rx) = mpsc::channel(1);
    let dropped = Counter::default();
    let tracer = Tracer {
        tx,
        dropped: dropped.clone(),
    };
    let conn = ConnInfo {
        authority: None,
        peer: "10.0.0.1:5000".parse().unwrap(),
        target: "10.0.0.2:80".parse().unwrap(),
    };
    for _ in 0..3 {
        let mut req = http::Request::get("/")
            .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
            .body(())
            .unwrap();
        let span = tracer.start(&mut req, Direction::Outbound, &conn).unwrap();
        tracer.finish(span, Some(200), None);
    }
    assert_eq!(dropped.get(), 2);
}
