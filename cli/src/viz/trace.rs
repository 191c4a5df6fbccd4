//! `strand viz trace`: the traces the proxies reported to the control
//! plane's trace collector (`strand_viz::traces`), from the metrics API: the
//! most recent ones as a table, or one trace's spans as a tree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Args;
use strand_viz::client::ClientError;
use strand_viz::traces::{SpanRecord, TraceDetail, TraceId, TraceList};

use crate::ctx::Ctx;

/// The longest ROOT shown in the table (`-o json` has all of it).
const MAX_ROOT_CHARS: usize = 60;

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Show this trace's spans (32 hex digits, as the list shows them or as
    /// in a `traceparent` header); without it, list the most recent traces.
    #[arg(value_name = "TRACE_ID")]
    trace_id: Option<TraceId>,
    /// How many traces to list, newest first (1 to 1000, the metrics API's
    /// limit).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000), conflicts_with = "trace_id")]
    limit: u32,
    /// `table` or `json` (the metrics API's answer: summaries and the
    /// collector's counts, or every span with all its attributes).
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

pub(super) async fn trace(ctx: &Ctx, args: TraceArgs) -> anyhow::Result<u8> {
    if !ctx.cluster()?.tracing_enabled() {
        bail!(
            "the control plane collects no traces (it predates the trace collector); restart it with `strand down && strand up --detach`"
        );
    }
    let client = super::metrics_api(ctx)?;
    let now = unix_nanos(SystemTime::now());
    match args.trace_id {
        None => {
            let list = client.traces(args.limit as usize).await?;
            if args.output == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render_list(&list, now));
            }
        }
        Some(id) => {
            let trace = match client.trace(&id).await {
                Ok(trace) => trace,
                Err(ClientError::Api {
                    status, message, ..
                }) if status == http::StatusCode::NOT_FOUND => {
                    bail!("{message}; `strand viz trace` lists the traces kept")
                }
                Err(e) => return Err(e.into()),
            };
            if args.output == "json" {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{}", render_trace(&trace, now));
            }
        }
    }
    Ok(0)
}

/// The recent traces, newest first; without any, why there may be none.
pub fn render_list(list: &TraceList, now_unix_nano: u64) -> String {
    let mut out = String::new();
    if list.traces.is_empty() {
        out.push_str(
            "No traces found. Proxies report a span for each HTTP request that carries a sampled W3C \
             `traceparent` (or B3) header; see `strand viz trace --help`.\n",
        );
    } else {
        let header = [
            "TRACE_ID", "ROOT", "SERVICES", "SPANS", "DURATION", "AGE", "ERROR",
        ];
        let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for t in &list.traces {
            rows.push(vec![
                t.trace_id.clone(),
                shorten(&t.root, MAX_ROOT_CHARS),
                if t.services.is_empty() {
                    "-".into()
                } else {
                    t.services.join(",")
                },
                t.spans.to_string(),
                format_ns(t.duration_ns),
                format_age(now_unix_nano.saturating_sub(t.start_unix_nano)),
                if t.error { "yes" } else { "" }.into(),
            ]);
        }
        out.push_str(&columns(
            &rows,
            &[false, false, false, true, true, true, false],
        ));
    }
    if list.stats.rejected_spans > 0 {
        let _ = writeln!(
            out,
            "\n! the collector refused {} malformed span(s) since it started; see the control plane's log",
            list.stats.rejected_spans
        );
    }
    out
}

/// One trace: a line about it, then its spans, each indented under its
/// parent.
pub fn render_trace(trace: &TraceDetail, now_unix_nano: u64) -> String {
    let s = &trace.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}: {} span{}, {}, {} ago{}\n",
        s.trace_id,
        s.spans,
        if s.spans == 1 { "" } else { "s" },
        format_ns(s.duration_ns),
        format_age(now_unix_nano.saturating_sub(s.start_unix_nano)),
        if s.error { ", with errors" } else { "" },
    );
    let header = [
        "SPAN", "SERVICE", "POD", "KIND", "START", "DURATION", "STATUS", "ERROR",
    ];
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let depths = depths(&trace.spans);
    for (span, depth) in trace.spans.iter().zip(depths) {
        let start = span.start_unix_nano.saturating_sub(s.start_unix_nano);
        rows.push(vec![
            format!("{}{}", "  ".repeat(depth), span.name),
            or_dash(&span.service),
            or_dash(span.resource.get("k8s.pod.name").map_or("", String::as_str)),
            span.kind.to_string(),
            if start == 0 {
                "0".into()
            } else {
                format!("+{}", format_ns(start))
            },
            format_ns(span.duration_ns()),
            or_dash(span.attribute("http.status_code").unwrap_or("")),
            error_cell(span),
        ]);
    }
    out.push_str(&columns(
        &rows,
        &[false, false, false, false, true, true, true, false],
    ));
    out
}

/// How deep each span is: its parent's depth plus one, 0 when its parent
/// is not in the trace (`spans` lists parents before their children).
fn depths(spans: &[SpanRecord]) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(spans.len());
    spans
        .iter()
        .map(|s| {
            let depth = s
                .parent_span_id
                .as_deref()
                .and_then(|p| seen.get(p))
                .map_or(0, |d| d + 1);
            seen.insert(&s.span_id, depth);
            depth
        })
        .collect()
}

fn error_cell(span: &SpanRecord) -> String {
    match (span.is_error(), span.status_message.as_str()) {
        (false, _) => String::new(),
        (true, "") => "yes".into(),
        (true, message) => format!("yes: {message}"),
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// At most `max` characters, the cut marked `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `850µs`, `1.2ms`, `27ms`, `3.05s`.
fn format_ns(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{}µs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        super::format_ms(ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// `42s`, `5m`, `3h`, `2d`, as kubectl prints ages.
fn format_age(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Columns three spaces apart, each left- or right-aligned (`right`).
fn columns(rows: &[Vec<String>], right: &[bool]) -> String {
    super::aligned_table(rows, |c, _, _| right.get(c).copied().unwrap_or(false))
}

#[cfg(test)]
mod tests;
