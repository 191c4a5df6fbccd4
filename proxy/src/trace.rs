//! Distributed tracing: a span for every HTTP request that arrives with a
//! sampled trace context, exported over OTLP/gRPC to a collector, as
//! Linkerd's proxy does with its trace collector.
//!
//! ```text
//!  request (traceparent: 00-T-P-01) ──► Tracer::start ── span S, parent P
//!        forwarded with traceparent: 00-T-S-01 ──► next hop
//!  response end ──► Tracer::finish(S) ──► bounded queue ──► exporter task
//!                                         (full: dropped)   batches of ≤512,
//!                                                           ≤1 s old ──► TraceService/Export
//! ```
//!
//! Contexts are read in the W3C (`traceparent`) and B3 multi-header
//! (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`) formats
//! and passed on in the format they came in, naming the proxy's span as
//! the parent. Requests without a context, or whose context is not
//! sampled, are forwarded untouched and cost nothing more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use strand_otlp as otlp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TraceConfig;
use crate::metrics::Direction;

/// Finished spans waiting for export at most; more are dropped.
const QUEUE: usize = 4096;
/// Spans per export call at most.
const BATCH: usize = 512;
/// How long a finished span may wait for its batch to fill.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The deadline of one export call.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The W3C header.
const TRACEPARENT: &str = "traceparent";
/// B3's multi-header names.
const B3_TRACE_ID: &str = "x-b3-traceid";
const B3_SPAN_ID: &str = "x-b3-spanid";
const B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_FLAGS: &str = "x-b3-flags";

/// Starts and finishes spans and hands them to the exporter.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<otlp::Span>,
    dropped: Counter,
}

/// A trace context read from a request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span.
    pub parent_id: [u8; 8],
    pub sampled: bool,
    pub format: Format,
}

/// How a context was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `traceparent: 00-<trace>-<parent>-<flags>`.
    W3c,
    /// `x-b3-*` headers.
    B3,
}

/// A span in progress: the proxy's part of one request.
#[derive(Debug)]
pub struct ActiveSpan {
    context: TraceContext,
    span_id: [u8; 8],
    start: SystemTime,
    name: String,
    kind: otlp::SpanKind,
    attributes: Vec<otlp::KeyValue>,
}

// === impl Tracer ===

impl Tracer {
    /// A tracer whose spans the returned exporter sends to `config`'s
    /// collector; spawn the exporter on a runtime.
    pub fn new(
        config: &TraceConfig,
        exported: Counter,
        dropped: Counter,
    ) -> Result<(Tracer, Exporter), String> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", config.collector_addr))
                .map_err(|e| format!("trace collector address {}: {e}", config.collector_addr))?
                .connect_timeout(Duration::from_secs(3))
                .timeout(EXPORT_TIMEOUT)
                .tcp_nodelay(true);
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut attributes = vec![otlp::KeyValue::string(
            "service.name",
            config.service_name.clone(),
        )];
        attributes.extend(
            config
                .attributes
                .iter()
                .map(|(k, v)| otlp::KeyValue::string(k, v.clone())),
        );
        let exporter = Exporter {
            rx,
            grpc: tonic::client::Grpc::new(endpoint.connect_lazy()),
            resource: otlp::Resource {
                attributes,
                dropped_attributes_count: 0,
            },
            exported,
            dropped: dropped.clone(),
            collector: config.collector_addr.clone(),
            failing: false,
        };
        Ok((Tracer { tx, dropped }, exporter))
    }

    /// Starts the proxy's span for a request whose headers carry a sampled
    /// context, and rewrites that context to name the new span as the
    /// parent. `None` (headers untouched) for any other request.
    pub fn start<B>(
        &self,
        req: &mut http::Request<B>,
        direction: Direction,
        conn: &ConnInfo<'_>,
    ) -> Option<ActiveSpan> {
        let context = TraceContext::extract(req.headers())?;
        if !context.sampled {
            return None;
        }
        let span_id = new_span_id();
        context.inject(span_id, req.headers_mut());
        let kind = match direction {
            Direction::Inbound => otlp::SpanKind::Server,
            Direction::Outbound => otlp::SpanKind::Client,
        };
        let method = req.method().as_str();
        let path = req.uri().path();
        let mut attributes = vec![
            otlp::KeyValue::string("direction", direction.as_str()),
            otlp::KeyValue::string("http.method", method),
            otlp::KeyValue::string("http.path", path),
            otlp::KeyValue::string("net.peer.addr", conn.peer.to_string()),
            otlp::KeyValue::string("target_addr", conn.target.to_string()),
        ];
        if let Some(authority) = conn.authority {
            attributes.push(otlp::KeyValue::string("http.authority", authority));
        }
        Some(ActiveSpan {
            context,
            span_id,
            start: SystemTime::now(),
            name: format!("{method} {path}"),
            kind,
            attributes,
        })
    }

    /// Ends `span` with the response's status (none when no response came)
    /// and the proxy's error, if it answered itself, and queues it.
    pub fn finish(&self, span: ActiveSpan, status: Option<u16>, error: Option<&str>) {
        let span = span.into_otlp(status, error, SystemTime::now());
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

/// What a span records of its request's connection.
#[derive(Debug)]
pub struct ConnInfo<'a> {
    /// The request's authority.
    pub authority: Option<&'a str>,
    /// The client.
    pub peer: std::net::SocketAddr,
    /// Where the client connected to.
    pub target: std::net::SocketAddr,
}

// === impl TraceContext ===

impl TraceContext {
    /// The context in `headers`: W3C first, then B3. Malformed contexts
    /// are ignored (the request is simply not traced).
    pub fn extract(headers: &HeaderMap) -> Option<TraceContext> {
        if let Some(v) = headers.get(TRACEPARENT) {
            return Self::parse_w3c(v.to_str().ok()?);
        }
        let trace_id = headers.get(B3_TRACE_ID)?.to_str().ok()?;
        let span_id = headers.get(B3_SPAN_ID)?.to_str().ok()?;
        let trace_id = match trace_id.len() {
            32 => hex_array::<16>(trace_id)?,
            // 64-bit B3 trace ids are the low half of a 128-bit one.
            16 => {
                let low = hex_array::<8>(trace_id)?;
                let mut id = [0; 16];
                id[8..].copy_from_slice(&low);
                id
            }
            _ => return None,
        };
        let parent_id = hex_array::<8>(span_id)?;
        let flag = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let sampled = matches!(flag(B3_SAMPLED), Some("1" | "true")) || flag(B3_FLAGS) == Some("1");
        valid(&trace_id, &parent_id).then_some(TraceContext {
            trace_id,
            parent_id,
            sampled,
            format: Format::B3,
        })
    }

    /// `00-<32 hex>-<16 hex>-<2 hex>`; later versions may append fields.
    fn parse_w3c(v: &str) -> Option<TraceContext> {
        let mut parts = v.trim().split('-');
        let version = parts.next()?;
        let trace_id = hex_array::<16>(parts.next()?)?;
        let parent_id = hex_array::<8>(parts.next()?)?;
        let flags = hex_array::<1>(parts.next()?)?[0];
        let version_ok = version.len() == 2
            && version != "ff"
            && version.bytes().all(|b| b.is_ascii_hexdigit())
            && (version != "00" || parts.next().is_none());
        (version_ok && valid(&trace_id, &parent_id)).then_some(TraceContext {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
            format: Format::W3c,
        })
    }

    /// Writes this context into `headers` with `span_id` as the parent the
    /// next hop sees.
    pub fn inject(&self, span_id: [u8; 8], headers: &mut HeaderMap) {
        let value = |s: String| HeaderValue::from_str(&s).expect("hex is a valid header value");
        match self.format {
            Format::W3c => {
                let flags = if self.sampled { "01" } else { "00" };
                headers.insert(
                    TRACEPARENT,
                    value(format!(
                        "00-{}-{}-{flags}",
                        otlp::hex(&self.trace_id),
                        otlp::hex(&span_id)
                    )),
                );
            }
            Format::B3 => {
                headers.insert(B3_TRACE_ID, value(otlp::hex(&self.trace_id)));
                headers.insert(B3_SPAN_ID, value(otlp::hex(&span_id)));
                headers.insert(B3_PARENT_SPAN_ID, value(otlp::hex(&self.parent_id)));
            }
        }
    }
}

fn valid(trace_id: &[u8; 16], parent_id: &[u8; 8]) -> bool {
    trace_id.iter().any(|b| *b != 0) && parent_id.iter().any(|b| *b != 0)
}

/// Exactly `2 * N` hex digits.
fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A random span id, never all zeros.
fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

// === impl ActiveSpan ===

impl ActiveSpan {
    /// The span's id (what the next hop sees as its parent).
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    fn into_otlp(self, status: Option<u16>, error: Option<&str>, end: SystemTime) -> otlp::Span {
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let mut attributes = self.attributes;
        if let Some(status) = status {
            attributes.push(otlp::KeyValue::int("http.status_code", i64::from(status)));
        }
        if let Some(error) = error {
            attributes.push(otlp::KeyValue::string("error", error));
        }
        let failed = error.is_some() || status.is_none_or(|s| s >= 500);
        otlp::Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: self.context.parent_id.to_vec(),
            name: self.name,
            kind: self.kind as i32,
            start_time_unix_nano: nanos(self.start),
            end_time_unix_nano: nanos(end),
            attributes,
            dropped_attributes_count: 0,
            status: Some(otlp::SpanStatus {
                message: error.unwrap_or_default().to_string(),
                code: if failed {
                    otlp::StatusCode::Error
                } else {
                    otlp::StatusCode::Unset
                } as i32,
            }),
            flags: u32::from(self.context.sampled),
        }
    }
}

/// Sends finished spans to the collector in batches.
pub struct Exporter {
    rx: mpsc::Receiver<otlp::Span>,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    resource: otlp::Resource,
    exported: Counter,
    dropped: Counter,
    collector: String,
    /// The last export failed (logged once per outage).
    failing: bool,
}

// === impl Exporter ===

impl Exporter {
    /// Runs until every [`Tracer`] is gone, or `stop` fires: then it sends
    /// what is queued (the last spans of a proxy shutting down) and ends.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = tokio::select! {
                biased;
                span = self.rx.recv() => span,
                () = stop.cancelled() => {
                    self.flush_queue().await;
                    return;
                }
            };
            let Some(first) = first else {
                return;
            };
            batch.push(first);
            // Wait for the batch to fill, at most FLUSH_INTERVAL.
            let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
            while batch.len() < BATCH {
                tokio::select! {
                    next = tokio::time::timeout_at(deadline, self.rx.recv()) => match next {
                        Ok(Some(span)) => batch.push(span),
                        Ok(None) | Err(_) => break,
                    },
                    () = stop.cancelled() => break,
                }
            }
            self.send(std::mem::take(&mut batch)).await;
        }
    }

    /// Sends everything queued now.
    async fn flush_queue(&mut self) {
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            self.send(batch).await;
        }
    }

    /// Exports one batch and counts it.
    async fn send(&mut self, batch: Vec<otlp::Span>) {
        let n = batch.len() as u64;
        match self.export(batch).await {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                self.exported.inc_by(n - rejected);
                self.dropped.inc_by(rejected);
                if self.failing {
                    tracing::info!(collector = %self.collector, "trace collector reachable again");
                    self.failing = false;
                }
            }
            Err(e) => {
                self.dropped.inc_by(n);
                // One line per outage, not one per batch.
                if !self.failing {
                    tracing::warn!(collector = %self.collector, error = %e, spans = n, "exporting spans failed; dropping them until the collector answers");
                    self.failing = true;
                }
            }
        }
    }

    /// One export call; the number of spans the collector rejected.
    async fn export(&mut self, spans: Vec<otlp::Span>) -> Result<u64, tonic::Status> {
        let req = otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(otlp::InstrumentationScope {
                        name: "strand-proxy".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let rsp = otlp::export(&mut self.grpc, req).await?;
        Ok(rsp
            .into_inner()
            .partial_success
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)))
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("collector", &self.collector)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
