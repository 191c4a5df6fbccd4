use super::*;
use clap::Parser;
use std::collections::BTreeMap;
use strand_viz::traces::{SpanKind, SpanStatus, TraceStats, TraceSummary};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TraceArgs,
}

fn args(argv: &[&str]) -> Result<TraceArgs, clap::Error> {
    let mut full = vec!["trace"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full).map(|c| c.args)
}

const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const MS: u64 = 1_000_000;
const T0: u64 = 1_704_067_200_000_000_000;

#[test]
fn arguments_parse() {
    let a = args(&[]).unwrap();
    assert!(a.trace_id.is_none());
    assert_eq!((a.limit, a.output.as_str()), (20, "table"));

    let a = args(&["--limit", "1000", "-o", "json"]).unwrap();
    assert_eq!((a.limit, a.output.as_str()), (1000, "json"));

    let a = args(&["4BF92F3577B34DA6A3CE929D0E0E4736", "-o", "json"]).unwrap();
    assert_eq!(a.trace_id.unwrap().to_string(), ID);

    let refused = |argv: &[&str]| args(argv).unwrap_err().to_string();
    assert!(refused(&["4bf92f35"]).contains("expected 32 hexadecimal digits"));
    assert!(refused(&["--limit", "0"]).contains("0"));
    assert!(args(&["--limit", "1001"]).is_err());
    assert!(args(&["-o", "wide"]).is_err());
    assert!(refused(&[ID, "--limit", "5"]).contains("cannot be used with"));
}

fn span(
    id: &str,
    parent: Option<&str>,
    service: &str,
    kind: SpanKind,
    start_ms: u64,
    dur_us: u64,
    status: &str,
) -> SpanRecord {
    let mut attributes = BTreeMap::new();
    if !status.is_empty() {
        attributes.insert("http.status_code".to_string(), status.to_string());
    }
    SpanRecord {
        trace_id: ID.into(),
        span_id: id.into(),
        parent_span_id: parent.map(str::to_string),
        name: if kind == SpanKind::Server && service == "web" {
            "GET /api/vote".into()
        } else {
            "POST /emojivoto.v1.VotingService/VoteDoughnut".into()
        },
        kind,
        start_unix_nano: T0 + start_ms * MS,
        end_unix_nano: T0 + start_ms * MS + dur_us * 1_000,
        attributes,
        status: if status.starts_with('5') {
            SpanStatus::Error
        } else {
            SpanStatus::Unset
        },
        status_message: String::new(),
        service: service.into(),
        resource: [("k8s.pod.name".to_string(), format!("{service}-1"))]
            .into_iter()
            .collect(),
    }
}

fn summary(error: bool) -> TraceSummary {
    TraceSummary {
        trace_id: ID.into(),
        root: "GET /api/vote".into(),
        root_service: "web".into(),
        start_unix_nano: T0,
        duration_ns: 3_100 * 1_000,
        spans: 3,
        services: vec!["voting".into(), "web".into()],
        error,
    }
}

#[test]
fn the_list_reads_like_a_table() {
    let list = TraceList {
        traces: vec![summary(true)],
        stats: TraceStats::default(),
    };
    let text = render_list(&list, T0 + 90 * 1_000 * MS);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "TRACE_ID                           ROOT            SERVICES     SPANS   DURATION   AGE   ERROR",
            "4bf92f3577b34da6a3ce929d0e0e4736   GET /api/vote   voting,web       3      3.1ms    1m   yes",
        ]
    );

    let empty = TraceList {
        traces: Vec::new(),
        stats: TraceStats {
            rejected_spans: 2,
            ..TraceStats::default()
        },
    };
    let text = render_list(&empty, T0);
    assert!(text.starts_with("No traces found."), "{text}");
    assert!(text.contains("traceparent"), "{text}");
    assert!(text.contains("refused 2 malformed span(s)"), "{text}");
}

#[test]
fn a_trace_is_a_tree_of_spans() {
    let trace = TraceDetail {
        summary: summary(true),
        spans: vec![
            span("01", None, "web", SpanKind::Server, 0, 3_100, "500"),
            span("02", Some("01"), "web", SpanKind::Client, 1, 1_500, "500"),
            span("03", Some("02"), "voting", SpanKind::Server, 1, 900, "500"),
            span("04", Some("01"), "web", SpanKind::Client, 2, 2_000_000, ""),
        ],
    };
    let text = render_trace(&trace, T0 + 5_000 * MS);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("trace {ID}: 3 spans, 3.1ms, 5s ago, with errors")
    );
    assert_eq!(lines[1], "");
    assert_eq!(
        &lines[2..],
        [
            "SPAN                                                SERVICE   POD        KIND      START   DURATION   STATUS   ERROR",
            "GET /api/vote                                       web       web-1      server        0      3.1ms      500   yes",
            "  POST /emojivoto.v1.VotingService/VoteDoughnut     web       web-1      client   +1.0ms      1.5ms      500   yes",
            "    POST /emojivoto.v1.VotingService/VoteDoughnut   voting    voting-1   server   +1.0ms      900µs      500   yes",
            "  POST /emojivoto.v1.VotingService/VoteDoughnut     web       web-1      client   +2.0ms      2.00s        -",
        ]
    );
}

#[test]
fn spans_whose_parent_is_missing_are_roots() {
    let spans = vec![
        span("01", Some("ff"), "web", SpanKind::Server, 0, 1, ""),
        span("02", Some("01"), "web", SpanKind::Client, 0, 1, ""),
        span("03", Some("02"), "voting", SpanKind::Server, 0, 1, ""),
        span("04", Some("ee"), "voting", SpanKind::Server, 0, 1, ""),
    ];
    assert_eq!(depths(&spans), [0, 1, 2, 0]);
}

#[test]
fn durations_and_ages_are_short() {
    assert_eq!(format_ns(850_000), "850µs");
    assert_eq!(format_ns(1_250_000), "1.2ms");
    assert_eq!(format_ns(27 * MS), "27ms");
    assert_eq!(format_ns(3_050 * MS), "3.05s");
    assert_eq!(format_age(59 * 1_000 * MS), "59s");
    assert_eq!(format_age(3 * 3_600 * 1_000 * MS), "3h");
    assert_eq!(format_age(2 * 86_400 * 1_000 * MS), "2d");
    assert_eq!(shorten("abcdef", 4), "abc…");
    assert_eq!(shorten("abc", 4), "abc");
}
