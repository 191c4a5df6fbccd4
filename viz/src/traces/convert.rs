//! OTLP's spans into [`SpanRecord`]s: ids checked, texts truncated,
//! attribute lists capped, each span's size estimated; done before the
//! store's lock is taken.

use std::collections::BTreeMap;

use strand_otlp::{ExportTracePartialSuccess, ExportTraceServiceRequest};

use super::{SpanKind, SpanRecord, SpanStatus, Stored, TraceId};

/// Attributes kept per span and per resource; the proxy sends six and
/// three.
pub(super) const MAX_ATTRIBUTES: usize = 32;
/// Bytes kept of an attribute key.
pub(super) const MAX_KEY: usize = 128;
/// Bytes kept of a span name, an attribute value or a status message: a
/// span name is `<METHOD> <path>`, and long paths say enough in 512 bytes.
pub(super) const MAX_TEXT: usize = 512;
/// How many reasons a partial success names (the count covers them all).
const MAX_REASONS: usize = 3;

/// A converted span on its way in.
pub(super) struct Incoming {
    pub(super) trace: TraceId,
    pub(super) stored: Stored,
}

/// Spans refused, and why (the first few distinct reasons).
#[derive(Debug, Default)]
pub(super) struct Rejected {
    pub(super) count: i64,
    reasons: Vec<String>,
}

// === impl SpanKind ===

impl SpanKind {
    pub(super) fn from_otlp(kind: i32) -> SpanKind {
        use strand_otlp::SpanKind as K;
        match K::try_from(kind) {
            Ok(K::Internal) => SpanKind::Internal,
            Ok(K::Server) => SpanKind::Server,
            Ok(K::Client) => SpanKind::Client,
            Ok(K::Producer) => SpanKind::Producer,
            Ok(K::Consumer) => SpanKind::Consumer,
            Ok(K::Unspecified) | Err(_) => SpanKind::Unspecified,
        }
    }
}

// === impl SpanRecord ===

impl SpanRecord {
    /// Roughly what the span takes on the heap, for
    /// [`super::TraceLimits::max_bytes`].
    pub(super) fn approx_bytes(&self) -> usize {
        // Per map entry: two `String`s and a B-tree node's share.
        const ENTRY: usize = 2 * size_of::<String>() + 16;
        let map = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| ENTRY + k.len() + v.len())
                .sum::<usize>()
        };
        // The record, its place in the trace's map and the key's copy.
        2 * size_of::<SpanRecord>()
            + self.trace_id.len()
            + 2 * self.span_id.len()
            + self.parent_span_id.as_ref().map_or(0, String::len)
            + self.name.len()
            + self.status_message.len()
            + self.service.len()
            + map(&self.attributes)
            + map(&self.resource)
    }
}

// === impl Rejected ===

impl Rejected {
    pub(super) fn add(&mut self, reason: String) {
        self.count += 1;
        if self.reasons.len() < MAX_REASONS && !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }

    pub(super) fn into_partial_success(self) -> Option<ExportTracePartialSuccess> {
        (self.count > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: self.count,
            error_message: format!(
                "{} span{} rejected: {}",
                self.count,
                if self.count == 1 { "" } else { "s" },
                self.reasons.join("; ")
            ),
        })
    }
}

/// The request's spans as records (texts bounded), the refused ones, and
/// how many there were.
pub(super) fn convert(req: ExportTraceServiceRequest) -> (Vec<Incoming>, Rejected, u64) {
    let mut out = Vec::new();
    let mut rejected = Rejected::default();
    let mut received = 0u64;
    for rs in req.resource_spans {
        let mut service = String::new();
        let mut resource = BTreeMap::new();
        for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
            if kv.key == "service.name" {
                service = bounded(&kv.value_text(), MAX_TEXT);
            } else if resource.len() < MAX_ATTRIBUTES {
                resource.insert(
                    bounded(&kv.key, MAX_KEY),
                    bounded(&kv.value_text(), MAX_TEXT),
                );
            }
        }
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            received += 1;
            match record(span, &service, &resource) {
                Ok(incoming) => out.push(incoming),
                Err(reason) => rejected.add(reason),
            }
        }
    }
    (out, rejected, received)
}

fn record(
    span: strand_otlp::Span,
    service: &str,
    resource: &BTreeMap<String, String>,
) -> Result<Incoming, String> {
    let trace: [u8; 16] = span
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("trace_id must be 16 bytes, not {}", span.trace_id.len()))?;
    if span.span_id.len() != 8 {
        return Err(format!(
            "span_id must be 8 bytes, not {}",
            span.span_id.len()
        ));
    }
    if !matches!(span.parent_span_id.len(), 0 | 8) {
        return Err(format!(
            "parent_span_id must be 8 bytes or empty, not {}",
            span.parent_span_id.len()
        ));
    }
    // All-zero ids are invalid (W3C Trace Context).
    if trace == [0; 16] || span.span_id.iter().all(|b| *b == 0) {
        return Err("an all-zero trace_id or span_id is invalid".into());
    }
    let mut attributes = BTreeMap::new();
    for kv in span.attributes.iter().take(MAX_ATTRIBUTES) {
        attributes.insert(
            bounded(&kv.key, MAX_KEY),
            bounded(&kv.value_text(), MAX_TEXT),
        );
    }
    let status = span.status.as_ref();
    let record = SpanRecord {
        trace_id: strand_otlp::hex(&trace),
        span_id: strand_otlp::hex(&span.span_id),
        parent_span_id: (!span.parent_span_id.is_empty()
            && span.parent_span_id.iter().any(|b| *b != 0))
        .then(|| strand_otlp::hex(&span.parent_span_id)),
        name: bounded(&span.name, MAX_TEXT),
        kind: SpanKind::from_otlp(span.kind),
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        attributes,
        status: match status.map(|s| strand_otlp::StatusCode::try_from(s.code)) {
            Some(Ok(strand_otlp::StatusCode::Error)) => SpanStatus::Error,
            Some(Ok(strand_otlp::StatusCode::Ok)) => SpanStatus::Ok,
            _ => SpanStatus::Unset,
        },
        status_message: status.map_or_else(String::new, |s| bounded(&s.message, MAX_TEXT)),
        service: service.to_string(),
        resource: resource.clone(),
    };
    let bytes = record.approx_bytes();
    Ok(Incoming {
        trace: TraceId(trace),
        stored: Stored {
            span: record,
            bytes,
        },
    })
}

/// `s`, cut to at most `max` bytes (at a character boundary, marked `…`).
pub(super) fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
