//! OpenTelemetry's OTLP/gRPC trace export (`opentelemetry.proto.collector.
//! trace.v1.TraceService/Export`): the messages a proxy sends and a
//! collector receives, in the shape `tonic-build` would generate from
//! `opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto`,
//! written by hand so that the workspace needs neither `protoc` nor a
//! build script. Only the fields strand sends or reads are declared; prost
//! skips the others (span events, links) when decoding.
//!
//! [`export`] is the client call; [`TraceServer`] serves any [`TraceSink`]
//! as the tower service tonic's router takes.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{Body, BoxFuture, GrpcMethod, Service, StdError, http};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The service's fully qualified name.
pub const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The one method.
pub const METHOD: &str = "Export";
/// The method's path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// `ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ExportTraceServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`: spans the collector refused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `ResourceSpans`: the spans of one resource (a proxy).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `ScopeSpans`: the spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `Span` (without events and links).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    /// A [`SpanKind`].
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    #[prost(message, optional, tag = "15")]
    pub status: Option<SpanStatus>,
    /// W3C trace flags in the low byte.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

/// `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// `Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanStatus {
    #[prost(string, tag = "2")]
    pub message: String,
    /// A [`StatusCode`].
    #[prost(enumeration = "StatusCode", tag = "3")]
    pub code: i32,
}

/// `Status.StatusCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue` (scalars; arrays and maps are skipped when decoding).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 7")]
    pub value: Option<any_value::Value>,
}

/// `AnyValue.value`.
pub mod any_value {
    /// One scalar.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

// === impl KeyValue ===

impl KeyValue {
    /// A string attribute.
    pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }

    /// An integer attribute.
    pub fn int(key: &str, value: i64) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(value)),
            }),
        }
    }

    /// The value as text (strings as they are, other scalars printed).
    pub fn value_text(&self) -> String {
        match self.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::DoubleValue(d)) => d.to_string(),
            Some(any_value::Value::BytesValue(b)) => hex(b),
            None => String::new(),
        }
    }
}

/// Lower-case hex, as trace and span ids are written.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Calls `Export` on `grpc` (a ready-to-use client over any transport).
pub async fn export<T>(
    grpc: &mut tonic::client::Grpc<T>,
    req: ExportTraceServiceRequest,
) -> Result<Response<ExportTraceServiceResponse>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    grpc.ready().await.map_err(|e| {
        let e: StdError = e.into();
        Status::unavailable(format!("trace collector not ready: {e}"))
    })?;
    let mut req = Request::new(req);
    req.extensions_mut()
        .insert(GrpcMethod::new(SERVICE, METHOD));
    let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
    grpc.unary(req, path, ProstCodec::default()).await
}

/// What a collector does with the spans it receives.
pub trait TraceSink: Send + Sync + 'static {
    /// Takes one export request.
    fn export(
        &self,
        req: ExportTraceServiceRequest,
    ) -> impl Future<Output = Result<ExportTraceServiceResponse, Status>> + Send;
}

/// Serves a [`TraceSink`] as `TraceService` for tonic's router.
#[derive(Debug)]
pub struct TraceServer<S> {
    sink: Arc<S>,
}

/// Adapts the sink to the unary service `tonic::server::Grpc` drives.
struct Unary<S>(Arc<S>);

// === impl TraceServer ===

impl<S: TraceSink> TraceServer<S> {
    /// Serves `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        TraceServer { sink }
    }
}

impl<S> Clone for TraceServer<S> {
    fn clone(&self) -> Self {
        TraceServer {
            sink: Arc::clone(&self.sink),
        }
    }
}

impl<S: TraceSink> tonic::server::NamedService for TraceServer<S> {
    const NAME: &'static str = SERVICE;
}

impl<S, B> Service<http::Request<B>> for TraceServer<S>
where
    S: TraceSink,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sink = Arc::clone(&self.sink);
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                let status = Status::unimplemented(format!("no method {}", req.uri().path()));
                return Ok(status.into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                ExportTraceServiceResponse,
                ExportTraceServiceRequest,
            >::default());
            Ok(grpc.unary(Unary(sink), req).await)
        })
    }
}

// === impl Unary ===

impl<S: TraceSink> Service<Request<ExportTraceServiceRequest>> for Unary<S> {
    type Response = Response<ExportTraceServiceResponse>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ExportTraceServiceRequest>) -> Self::Future {
        let sink = Arc::clone(&self.0);
        Box::pin(async move { sink.export(req.into_inner()).await.map(Response::new) })
    }
}

#[cfg(test)]
mod tests;
