//! The trace collector end to end in one process: spans exported over
//! OTLP/gRPC to `TraceServer` (tonic, as the controller serves it), read
//! back through the metrics API's HTTP server and its client.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use strand_otlp::{
    ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, SpanKind,
    SpanStatus, StatusCode,
};
use strand_viz::api::{InventorySource, MetricsApi};
use strand_viz::client::{ClientError, MetricsApiClient};
use strand_viz::stat::Inventory;
use strand_viz::traces::{SpanStatus as Status, TraceId, TraceStore};
use strand_viz::{ScrapeTarget, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Nothing;

impl InventorySource for Nothing {
    fn inventory(&self) -> BoxFuture<'_, Result<Inventory, String>> {
        Box::pin(async { Ok(Inventory::default()) })
    }

    fn targets(&self) -> BoxFuture<'_, Result<Vec<ScrapeTarget>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The metrics API over `traces`; its address.
async fn metrics_api(traces: Option<Arc<TraceStore>>) -> SocketAddr {
    let store = Arc::new(Store::new(Duration::from_secs(60)));
    let api = MetricsApi::new(store.clone(), Arc::new(Nothing), Some(store), traces);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.serve(listener, std::future::pending::<()>()));
    addr
}

/// The collector as the controller serves it; a client of it.
async fn collector(store: Arc<TraceStore>) -> tonic::client::Grpc<tonic::transport::Channel> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(strand_otlp::TraceServer::new(store))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

const TRACE: [u8; 16] = *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36";

fn span(id: u8, parent: Option<u8>, kind: SpanKind, start_ms: u64, status: u16) -> Span {
    let start = 1_704_067_200_000_000_000 + start_ms * 1_000_000;
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent
            .map(|p| vec![0, 0, 0, 0, 0, 0, 0, p])
            .unwrap_or_default(),
        name: "POST /emojivoto.v1.VotingService/VoteDoughnut".into(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 2_000_000,
        attributes: vec![
            KeyValue::string(
                "direction",
                if kind == SpanKind::Server {
                    "inbound"
                } else {
                    "outbound"
                },
            ),
            KeyValue::string("http.method", "POST"),
            KeyValue::int("http.status_code", i64::from(status)),
        ],
        status: (status >= 500).then(|| SpanStatus {
            message: String::new(),
            code: StatusCode::Error as i32,
        }),
        ..Span::default()
    }
}

fn request(service: &str, pod: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
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
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `GET path` by hand (what the client never sends): status line and body.
async fn raw_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut rsp = String::new();
    tcp.read_to_string(&mut rsp).await.unwrap();
    let (head, body) = rsp.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn exported_spans_are_served_by_the_metrics_api() {
    let store = Arc::new(TraceStore::default());
    let mut grpc = collector(Arc::clone(&store)).await;
    let addr = metrics_api(Some(Arc::clone(&store))).await;
    let client = MetricsApiClient::new(addr);

    // web's proxy: its inbound span and its call to voting; voting's
    // proxy: its inbound span, failing. One span with a bad id.
    let mut bad = span(9, None, SpanKind::Server, 0, 200);
    bad.trace_id = vec![1, 2, 3];
    let rsp = strand_otlp::export(
        &mut grpc,
        request(
            "web",
            "web-1",
            vec![
                span(1, None, SpanKind::Server, 0, 500),
                span(2, Some(1), SpanKind::Client, 1, 500),
                bad,
            ],
        ),
    )
    .await
    .unwrap()
    .into_inner();
    let partial = rsp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id must be 16 bytes"),
        "{}",
        partial.error_message
    );
    let rsp = strand_otlp::export(
        &mut grpc,
        request(
            "voting",
            "voting-1",
            vec![span(3, Some(2), SpanKind::Server, 1, 500)],
        ),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(rsp.partial_success, None);

    let list = client.traces(20).await.unwrap();
    assert_eq!(list.traces.len(), 1);
    let summary = &list.traces[0];
    assert_eq!(summary.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(summary.spans, 3);
    assert_eq!(summary.services, ["voting", "web"]);
    assert_eq!(summary.root_service, "web");
    assert!(summary.error);
    assert_eq!(list.stats.spans, 3);
    assert_eq!(list.stats.rejected_spans, 1);

    let id: TraceId = summary.trace_id.parse().unwrap();
    let trace = client.trace(&id).await.unwrap();
    let services: Vec<&str> = trace.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["web", "web", "voting"]);
    let leaf = &trace.spans[2];
    assert_eq!(leaf.parent_span_id.as_deref(), Some("0000000000000002"));
    assert_eq!(leaf.resource["k8s.pod.name"], "voting-1");
    assert_eq!(leaf.attribute("http.status_code"), Some("500"));
    assert_eq!(leaf.status, Status::Error);

    // Unknown and malformed ids, bad limits: refused, clearly.
    let unknown: TraceId = "00000000000000000000000000000001".parse().unwrap();
    match client.trace(&unknown).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert!(message.starts_with("no trace 0000"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (status, body) = raw_get(addr, "/api/v1/traces/4bf92f35").await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("expected 32 hexadecimal digits"), "{body}");
    match client.traces(0).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("from 1 to 1000"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (status, body) = raw_get(addr, "/api/v1/traces?limit=many").await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("\\\"many\\\" is not a number"), "{body}");
}

#[tokio::test]
async fn without_a_collector_the_api_says_so() {
    let client = MetricsApiClient::new(metrics_api(None).await);
    match client.traces(20).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert!(message.contains("collects no traces"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
