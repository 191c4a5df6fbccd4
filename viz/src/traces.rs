//! The local mode's trace collector: the spans proxies export over
//! OTLP/gRPC, kept in memory for `strand viz trace` and the metrics API.
//!
//! ```text
//!  proxy ──TraceService/Export──▶ TraceStore::export ─ convert (no lock) ─▶ insert
//!                                   traces: id ─▶ spans, oldest evicted first
//!  GET /api/v1/traces[/<id>] ─▶ TraceStore::list / get
//! ```
//!
//! Memory is bounded whatever proxies send: at most
//! [`TraceLimits::max_spans`] spans and about [`TraceLimits::max_bytes`]
//! of them in all, every text truncated and every attribute list capped.
//! When a span does not fit, whole traces go, the one that received a span
//! longest ago first, so what is kept are complete recent traces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use strand_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use self::convert::{Incoming, convert};

mod convert;
mod tree;

pub use self::tree::tree_order;

/// Twenty thousand spans: a few minutes of a busy demo (10 requests a
/// second, each through three or four proxies) at about 600 bytes each.
pub const DEFAULT_MAX_SPANS: usize = 20_000;

/// How much a [`TraceStore`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceLimits {
    /// Spans kept in all.
    pub max_spans: usize,
    /// About how many bytes the kept spans take (an estimate of their heap
    /// use); with truncated texts it only binds when spans are unusually
    /// large. One trace keeps at most a quarter of it.
    pub max_bytes: usize,
    /// Spans kept per trace, so that one runaway trace cannot push every
    /// other one out; later spans of a full trace are refused.
    pub max_trace_spans: usize,
}

/// A trace's id: 16 bytes, written as 32 lower-case hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// Text that is not 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a trace id: expected 32 hexadecimal digits")]
pub struct BadTraceId(pub String);

/// A span's kind, as OTLP names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// A span's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

/// One span as the collector keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; none for a span that started its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// `<METHOD> <path>` for the proxy's spans.
    pub name: String,
    /// `server` for a proxy's inbound side, `client` for its outbound side.
    pub kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// Nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// The span's attributes as text (`http.status_code` -> `200`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub status: SpanStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    /// The resource's `service.name` (empty when it has none).
    pub service: String,
    /// The resource's other attributes (`k8s.pod.name`,
    /// `k8s.namespace.name`).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
}

/// One trace in [`TraceStore::list`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The name of the root span: the earliest span whose parent is not in
    /// the trace (usually the first proxy's: the application that started
    /// the trace reports no spans).
    pub root: String,
    /// The root span's service.
    pub root_service: String,
    /// The earliest span's start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// From the earliest start to the latest end, in nanoseconds.
    pub duration_ns: u64,
    pub spans: usize,
    /// The services that reported spans, sorted.
    pub services: Vec<String>,
    /// Whether any span's status is ERROR.
    pub error: bool,
}

/// One trace in full: `GET /api/v1/traces/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceDetail {
    pub summary: TraceSummary,
    /// Parents before their children, siblings (and roots) by start time:
    /// start-time order when the proxies' clocks agree.
    pub spans: Vec<SpanRecord>,
}

/// `GET /api/v1/traces`: the most recent traces, and what the store keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceList {
    /// Newest (latest start) first.
    pub traces: Vec<TraceSummary>,
    pub stats: TraceStats,
}

/// What a [`TraceStore`] holds and has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStats {
    pub traces: usize,
    pub spans: usize,
    pub max_spans: usize,
    /// Spans received since start, refused ones included.
    pub received_spans: u64,
    pub rejected_spans: u64,
    /// Traces dropped to make room.
    pub evicted_traces: u64,
}

/// The spans received recently; a [`strand_otlp::TraceSink`].
#[derive(Debug)]
pub struct TraceStore {
    limits: TraceLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, Trace>,
    /// Traces by when they last received a span (`Trace::touched`),
    /// oldest first: the eviction order.
    by_age: BTreeMap<u64, TraceId>,
    seq: u64,
    spans: usize,
    bytes: usize,
    stats: TraceStats,
}

#[derive(Debug)]
struct Trace {
    /// By span id (hex).
    spans: HashMap<String, Stored>,
    bytes: usize,
    start: u64,
    end: u64,
    touched: u64,
}

/// A kept span and its size as [`SpanRecord::approx_bytes`] estimates it.
#[derive(Debug)]
struct Stored {
    span: SpanRecord,
    bytes: usize,
}

// === impl TraceLimits ===

impl Default for TraceLimits {
    fn default() -> Self {
        TraceLimits {
            max_spans: DEFAULT_MAX_SPANS,
            // Twice what 20,000 typical spans take, so the count binds first.
            max_bytes: 32 * 1024 * 1024,
            // A request fanning out to a thousand calls is already unusual.
            max_trace_spans: 1_000,
        }
    }
}

// === impl TraceId ===

impl FromStr for TraceId {
    type Err = BadTraceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTraceId(s.to_string());
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            let digits = s.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
        }
        Ok(TraceId(id))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&strand_otlp::hex(&self.0))
    }
}

// === impl SpanKind ===

impl fmt::Display for SpanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        })
    }
}

// === impl SpanRecord ===

impl SpanRecord {
    /// From start to end, in nanoseconds (0 if the end is before the start).
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether the span's status is ERROR.
    pub fn is_error(&self) -> bool {
        self.status == SpanStatus::Error
    }
}

// === impl TraceStore ===

impl Default for TraceStore {
    fn default() -> Self {
        TraceStore::new(TraceLimits::default())
    }
}

impl TraceStore {
    /// An empty store keeping at most `limits` (a per-trace limit above
    /// the total is lowered to it).
    pub fn new(limits: TraceLimits) -> Self {
        let max_spans = limits.max_spans.max(1);
        let limits = TraceLimits {
            max_spans,
            max_bytes: limits.max_bytes,
            max_trace_spans: limits.max_trace_spans.clamp(1, max_spans),
        };
        TraceStore {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> TraceLimits {
        self.limits
    }

    /// Takes the spans of one export; the answer counts those refused
    /// (malformed ids, a full trace) and says why.
    pub fn insert(&self, req: ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        let (incoming, mut rejected, received) = convert(req);
        {
            let mut inner = self.lock();
            inner.stats.received_spans += received;
            for span in incoming {
                if let Err(reason) = inner.insert(&self.limits, span) {
                    rejected.add(reason);
                }
            }
            inner.stats.rejected_spans += u64::try_from(rejected.count).unwrap_or(0);
        }
        ExportTraceServiceResponse {
            partial_success: rejected.into_partial_success(),
        }
    }

    /// The `limit` most recent traces (by their earliest span's start),
    /// newest first.
    pub fn list(&self, limit: usize) -> Vec<TraceSummary> {
        let inner = self.lock();
        let mut recent: Vec<(u64, &TraceId)> =
            inner.traces.iter().map(|(id, t)| (t.start, id)).collect();
        recent.sort_unstable_by(|a, b| b.cmp(a));
        recent
            .into_iter()
            .take(limit)
            .filter_map(|(_, id)| Some(inner.traces.get(id)?.summary(id)))
            .collect()
    }

    /// One trace: its summary and its spans, parents before children.
    pub fn get(&self, id: &TraceId) -> Option<TraceDetail> {
        let inner = self.lock();
        let trace = inner.traces.get(id)?;
        let summary = trace.summary(id);
        let spans = trace.spans.values().map(|s| s.span.clone()).collect();
        drop(inner);
        Some(TraceDetail {
            summary,
            spans: tree_order(spans),
        })
    }

    pub fn stats(&self) -> TraceStats {
        let inner = self.lock();
        TraceStats {
            traces: inner.traces.len(),
            spans: inner.spans,
            max_spans: self.limits.max_spans,
            ..inner.stats
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The spans are a cache for people to look at: after a panic
        // elsewhere, what is there is still worth showing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl strand_otlp::TraceSink for TraceStore {
    async fn export(
        &self,
        req: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, tonic::Status> {
        Ok(self.insert(req))
    }
}

// === impl Inner ===

impl Inner {
    fn insert(&mut self, limits: &TraceLimits, span: Incoming) -> Result<(), String> {
        let Incoming { trace: id, stored } = span;
        let max_trace_bytes = limits.max_bytes / 4;
        self.seq += 1;
        let seq = self.seq;
        let trace = self.traces.entry(id).or_insert_with(|| Trace {
            spans: HashMap::new(),
            bytes: 0,
            start: stored.span.start_unix_nano,
            end: stored.span.end_unix_nano,
            touched: seq,
        });
        let existing = trace.spans.get(&stored.span.span_id).map(|s| s.bytes);
        let replaced = existing.unwrap_or(0);
        let refusal = if existing.is_none() && trace.spans.len() >= limits.max_trace_spans {
            Some(format!(
                "trace {id} already has {} spans, the most kept per trace",
                trace.spans.len()
            ))
        } else if trace.bytes - replaced + stored.bytes > max_trace_bytes {
            Some(format!(
                "trace {id} would take over {max_trace_bytes} bytes, the most kept per trace"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            if trace.spans.is_empty() {
                self.traces.remove(&id);
            }
            return Err(reason);
        }
        let (bytes, start, end) = (
            stored.bytes,
            stored.span.start_unix_nano,
            stored.span.end_unix_nano,
        );
        trace.spans.insert(stored.span.span_id.clone(), stored);
        trace.bytes = trace.bytes - replaced + bytes;
        self.bytes = self.bytes - replaced + bytes;
        if existing.is_some() {
            // The span was sent again, perhaps with other times.
            trace.recompute_bounds();
        } else {
            self.spans += 1;
            trace.start = trace.start.min(start);
            trace.end = trace.end.max(end);
        }
        self.by_age.remove(&trace.touched);
        trace.touched = seq;
        self.by_age.insert(seq, id);
        self.evict(limits);
        Ok(())
    }

    /// Drops the traces that received a span longest ago until the rest
    /// fit. The trace just written is the newest and fits alone (the
    /// per-trace limits are below the totals), so it stays.
    fn evict(&mut self, limits: &TraceLimits) {
        while self.spans > limits.max_spans || self.bytes > limits.max_bytes {
            let Some((_, id)) = self.by_age.pop_first() else {
                return;
            };
            if let Some(trace) = self.traces.remove(&id) {
                self.spans -= trace.spans.len();
                self.bytes -= trace.bytes;
                self.stats.evicted_traces += 1;
            }
        }
    }
}

// === impl Trace ===

impl Trace {
    /// Start and end from every span.
    fn recompute_bounds(&mut self) {
        let spans = self.spans.values().map(|s| &s.span);
        self.start = spans.clone().map(|s| s.start_unix_nano).min().unwrap_or(0);
        self.end = spans.map(|s| s.end_unix_nano).max().unwrap_or(0);
    }

    fn summary(&self, id: &TraceId) -> TraceSummary {
        let spans = || self.spans.values().map(|s| &s.span);
        let order = |a: &&SpanRecord, b: &&SpanRecord| {
            (a.start_unix_nano, &a.span_id).cmp(&(b.start_unix_nano, &b.span_id))
        };
        let is_root = |s: &&SpanRecord| {
            s.parent_span_id
                .as_ref()
                .is_none_or(|p| !self.spans.contains_key(p))
        };
        // With a cycle of parents there is no root: the earliest span
        // stands in.
        let root = spans()
            .filter(is_root)
            .min_by(order)
            .or_else(|| spans().min_by(order));
        let services: BTreeSet<&str> = spans()
            .map(|s| s.service.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        TraceSummary {
            trace_id: id.to_string(),
            root: root.map(|r| r.name.clone()).unwrap_or_default(),
            root_service: root.map(|r| r.service.clone()).unwrap_or_default(),
            start_unix_nano: self.start,
            duration_ns: self.end.saturating_sub(self.start),
            spans: self.spans.len(),
            services: services.into_iter().map(str::to_string).collect(),
            error: spans().any(SpanRecord::is_error),
        }
    }
}

#[cfg(test)]
mod tests;
