use strand_otlp::{
    InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, StatusCode,
};

use super::convert::{MAX_ATTRIBUTES, MAX_KEY, MAX_TEXT, bounded};
use super::*;

const MS: u64 = 1_000_000;
/// 2024-01-01T00:00:00Z, in nanoseconds.
const T0: u64 = 1_704_067_200_000_000_000;

fn trace_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[15] = n;
    id
}

fn span_id(n: u8) -> Vec<u8> {
    vec![0, 0, 0, 0, 0, 0, 0x5a, n]
}

/// A span as the proxy exports it: `<METHOD> <path>`, server inbound and
/// client outbound, ERROR on 5xx.
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    inbound: bool,
    start_ms: u64,
    end_ms: u64,
    status: u16,
) -> Span {
    let (method, path) = ("GET", "/api/vote");
    Span {
        trace_id: trace_id(trace),
        span_id: span_id(id),
        parent_span_id: parent.map(span_id).unwrap_or_default(),
        name: format!("{method} {path}"),
        kind: if inbound {
            strand_otlp::SpanKind::Server
        } else {
            strand_otlp::SpanKind::Client
        } as i32,
        start_time_unix_nano: T0 + start_ms * MS,
        end_time_unix_nano: T0 + end_ms * MS,
        attributes: vec![
            KeyValue::string("direction", if inbound { "inbound" } else { "outbound" }),
            KeyValue::string("http.method", method),
            KeyValue::string("http.path", path),
            KeyValue::string("http.authority", "web.emojivoto.svc.cluster.local:8080"),
            KeyValue::int("http.status_code", i64::from(status)),
            KeyValue::string("net.peer.addr", "10.42.0.7:41234"),
        ],
        status: (status >= 500).then(|| strand_otlp::SpanStatus {
            message: format!("HTTP {status}"),
            code: StatusCode::Error as i32,
        }),
        flags: 1,
        ..Span::default()
    }
}

/// One proxy's export.
fn export(service: &str, pod: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue::string("service.name", service),
                    KeyValue::string("k8s.pod.name", pod),
                    KeyValue::string("k8s.namespace.name", "emojivoto"),
                ],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "strand-proxy".into(),
                    version: "0.1.0".into(),
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn id(n: u8) -> TraceId {
    TraceId(trace_id(n).try_into().expect("16 bytes"))
}

#[test]
fn spans_are_recorded_with_their_resource() {
    let store = TraceStore::default();
    let rsp = store.insert(export(
        "web",
        "web-1",
        vec![span(1, 1, None, true, 0, 10, 200)],
    ));
    assert_eq!(rsp.partial_success, None, "everything accepted");
    let trace = store.get(&id(1)).expect("kept");
    let s = &trace.spans[0];
    assert_eq!(s.trace_id, format!("{}01", "ab".repeat(15)));
    assert_eq!(s.span_id, "0000000000005a01");
    assert_eq!(s.parent_span_id, None);
    assert_eq!(s.name, "GET /api/vote");
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.start_unix_nano, T0);
    assert_eq!(s.duration_ns(), 10 * MS);
    assert_eq!(s.attribute("http.status_code"), Some("200"));
    assert_eq!(s.attribute("direction"), Some("inbound"));
    assert_eq!(s.status, SpanStatus::Unset);
    assert_eq!(s.service, "web");
    assert_eq!(s.resource["k8s.pod.name"], "web-1");
    assert_eq!(s.resource["k8s.namespace.name"], "emojivoto");
    assert!(!s.resource.contains_key("service.name"));
    assert_eq!(store.stats().spans, 1);
    assert_eq!(store.stats().received_spans, 1);
}

#[test]
fn malformed_ids_are_rejected_and_counted() {
    let store = TraceStore::default();
    let mut short_trace = span(1, 1, None, true, 0, 1, 200);
    short_trace.trace_id.truncate(8);
    let mut no_span_id = span(1, 2, None, true, 0, 1, 200);
    no_span_id.span_id.clear();
    let mut long_span_id = span(1, 3, None, true, 0, 1, 200);
    long_span_id.span_id.push(1);
    let mut zero_trace = span(1, 4, None, true, 0, 1, 200);
    zero_trace.trace_id = vec![0; 16];
    let mut bad_parent = span(1, 5, None, true, 0, 1, 200);
    bad_parent.parent_span_id = vec![1, 2, 3];
    let good = span(1, 6, None, true, 0, 1, 200);
    let rsp = store.insert(export(
        "web",
        "web-1",
        vec![
            short_trace,
            no_span_id,
            long_span_id,
            zero_trace,
            bad_parent,
            good,
        ],
    ));
    let partial = rsp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 5);
    let msg = &partial.error_message;
    assert!(msg.starts_with("5 spans rejected: "), "{msg}");
    assert!(msg.contains("trace_id must be 16 bytes, not 8"), "{msg}");
    assert!(msg.contains("span_id must be 8 bytes, not 0"), "{msg}");
    assert!(msg.contains("span_id must be 8 bytes, not 9"), "{msg}");
    // Three reasons at most; the count covers the rest.
    assert_eq!(msg.matches("; ").count(), 2, "{msg}");
    let stats = store.stats();
    assert_eq!(
        (stats.spans, stats.rejected_spans, stats.received_spans),
        (1, 5, 6)
    );
    assert_eq!(store.get(&id(1)).expect("kept").spans.len(), 1);
}

#[test]
fn oldest_whole_traces_are_evicted_first() {
    let store = TraceStore::new(TraceLimits {
        max_spans: 5,
        max_bytes: usize::MAX,
        max_trace_spans: 3,
    });
    // Trace 1 (2 spans), trace 2 (2 spans), then trace 1 gets a third span:
    // trace 2 is now the one that received a span longest ago.
    store.insert(export(
        "web",
        "web-1",
        vec![
            span(1, 1, None, true, 0, 9, 200),
            span(1, 2, Some(1), false, 1, 8, 200),
        ],
    ));
    store.insert(export(
        "web",
        "web-1",
        vec![
            span(2, 1, None, true, 10, 19, 200),
            span(2, 2, Some(1), false, 11, 18, 200),
        ],
    ));
    store.insert(export(
        "emoji",
        "emoji-1",
        vec![span(1, 3, Some(2), true, 2, 7, 200)],
    ));
    assert_eq!(store.stats().spans, 5);
    // Trace 3 needs room: all of trace 2 goes, none of trace 1.
    store.insert(export(
        "web",
        "web-1",
        vec![span(3, 1, None, true, 20, 29, 200)],
    ));
    assert!(store.get(&id(2)).is_none(), "trace 2 evicted whole");
    assert_eq!(store.get(&id(1)).expect("kept").spans.len(), 3);
    assert_eq!(store.get(&id(3)).expect("kept").spans.len(), 1);
    let stats = store.stats();
    assert_eq!((stats.traces, stats.spans, stats.evicted_traces), (2, 4, 1));

    // A trace at its per-trace limit refuses more spans (and sending one of
    // its spans again replaces it).
    let rsp = store.insert(export(
        "web",
        "web-1",
        vec![
            span(1, 4, Some(1), false, 3, 4, 200),
            span(1, 2, Some(1), false, 1, 8, 503),
        ],
    ));
    let partial = rsp.partial_success.expect("refused");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("already has 3 spans"),
        "{}",
        partial.error_message
    );
    let trace = store.get(&id(1)).expect("kept");
    assert_eq!(trace.spans.len(), 3);
    assert!(trace.summary.error, "the resent span carries ERROR");
}

#[test]
fn memory_stays_bounded_whatever_is_sent() {
    let store = TraceStore::new(TraceLimits {
        max_spans: 100_000,
        max_bytes: 4 * 1024 * 1024,
        max_trace_spans: 1_000,
    });
    // Over every text limit; more attributes than are kept.
    let huge = "x".repeat(1024);
    for t in 1..=50u8 {
        let spans = (1..=20u8)
            .map(|n| {
                let mut s = span(t, n, None, true, 0, 1, 200);
                s.name = huge.clone();
                s.attributes = (0..40)
                    .map(|i| KeyValue::string(&format!("{i}{huge}"), huge.clone()))
                    .collect();
                s
            })
            .collect();
        store.insert(export(&huge, "web-1", spans));
    }
    let stats = store.stats();
    assert!(stats.evicted_traces > 0 && stats.traces > 0, "{stats:?}");
    let inner = store.lock();
    assert!(inner.bytes <= 4 * 1024 * 1024, "{} bytes", inner.bytes);
    let counted: usize = inner.traces.values().map(|t| t.bytes).sum();
    assert_eq!(counted, inner.bytes);
    let spans: usize = inner.traces.values().map(|t| t.spans.len()).sum();
    assert_eq!(spans, inner.spans);
    assert_eq!(inner.by_age.len(), inner.traces.len());
    let s = inner
        .traces
        .values()
        .flat_map(|t| t.spans.values())
        .next()
        .expect("some span kept");
    assert!(s.span.name.len() <= MAX_TEXT && s.span.name.ends_with('…'));
    assert_eq!(s.span.attributes.len(), MAX_ATTRIBUTES);
    assert!(s.span.attributes.keys().all(|k| k.len() <= MAX_KEY));
    assert!(s.span.service.len() <= MAX_TEXT);
}

#[test]
fn summaries_are_newest_first() {
    let store = TraceStore::default();
    // Trace 1: web's inbound span, its call to voting (which fails), and
    // voting's inbound span.
    store.insert(export(
        "web",
        "web-1",
        vec![
            span(1, 1, None, true, 0, 30, 500),
            span(1, 2, Some(1), false, 5, 25, 500),
        ],
    ));
    store.insert(export(
        "voting",
        "voting-1",
        vec![span(1, 3, Some(2), true, 6, 24, 500)],
    ));
    // Trace 2, later; its root's parent (a client that is not meshed) was
    // never reported.
    let mut orphan = span(2, 9, Some(8), true, 100, 104, 200);
    orphan.name = "GET /".into();
    store.insert(export("web", "web-1", vec![orphan]));

    let list = store.list(10);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].trace_id, id(2).to_string());
    assert_eq!(list[0].root, "GET /");
    assert!(!list[0].error);
    let t1 = &list[1];
    assert_eq!(t1.root, "GET /api/vote");
    assert_eq!(t1.root_service, "web");
    assert_eq!(t1.start_unix_nano, T0);
    assert_eq!(t1.duration_ns, 30 * MS);
    assert_eq!(t1.spans, 3);
    assert_eq!(t1.services, ["voting", "web"]);
    assert!(t1.error);
    assert_eq!(store.list(1).len(), 1);
    assert!(store.list(0).is_empty());
}

#[test]
fn parents_come_before_children() {
    let store = TraceStore::default();
    // The child's clock runs early: it "starts" before its parent, yet
    // comes after it; siblings are in start order.
    store.insert(export(
        "web",
        "web-1",
        vec![
            span(1, 4, Some(1), false, 20, 25, 200),
            span(1, 2, Some(1), false, 5, 15, 200),
            span(1, 1, None, true, 3, 30, 200),
        ],
    ));
    store.insert(export(
        "emoji",
        "emoji-1",
        vec![span(1, 3, Some(2), true, 1, 14, 200)],
    ));
    let trace = store.get(&id(1)).expect("kept");
    let order: Vec<&str> = trace.spans.iter().map(|s| &s.span_id[14..]).collect();
    assert_eq!(order, ["01", "02", "03", "04"]);
    assert_eq!(trace.summary.root, "GET /api/vote");
    assert_eq!(trace.summary.start_unix_nano, T0 + MS);
}

#[test]
fn cycles_of_parents_do_not_lose_spans() {
    let record = |id: &str, parent: &str, start: u64| SpanRecord {
        trace_id: "ab".repeat(16),
        span_id: id.into(),
        parent_span_id: Some(parent.into()),
        name: id.into(),
        kind: SpanKind::Server,
        start_unix_nano: start,
        end_unix_nano: start + 1,
        attributes: BTreeMap::new(),
        status: SpanStatus::Unset,
        status_message: String::new(),
        service: "web".into(),
        resource: BTreeMap::new(),
    };
    let spans = vec![
        record("b", "a", 2),
        record("a", "b", 1),
        record("c", "c", 3),
        record("d", "a", 0),
    ];
    let order: Vec<String> = tree_order(spans).into_iter().map(|s| s.name).collect();
    // `c` is its own parent: a root. `a` and `b` form a cycle, entered at
    // `a`, the first of them met climbing from the earliest span left
    // (`d`); `a`'s children follow it by start time.
    assert_eq!(order, ["c", "a", "d", "b"]);
}

#[test]
fn trace_ids_parse() {
    let text = "4BF92F3577B34DA6A3CE929D0E0E4736";
    let id: TraceId = text.parse().expect("valid");
    assert_eq!(id.to_string(), text.to_ascii_lowercase());
    let accents = "é".repeat(16);
    for bad in [
        "",
        "4bf92f",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        "4bf92f3577b34da6a3ce929d0e0e47361",
        &accents,
    ] {
        let err = bad.parse::<TraceId>().unwrap_err().to_string();
        assert!(err.contains("expected 32 hexadecimal digits"), "{err}");
    }
}

#[test]
fn texts_are_cut_at_character_boundaries() {
    assert_eq!(bounded("abc", 3), "abc");
    assert_eq!(bounded("abcdef", 5), "ab…");
    let cut = bounded(&"é".repeat(10), 8);
    assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
}
