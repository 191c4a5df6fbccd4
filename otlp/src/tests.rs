use std::sync::Mutex;

use prost::Message;

use super::*;

#[test]
fn fields_have_the_protos_tags_and_wire_types() {
    // KeyValue{key: "a" (1, length-delimited), value: AnyValue{string_value: "b" (1)} (2)}
    let kv = KeyValue::string("a", "b");
    assert_eq!(kv.encode_to_vec(), [0x0a, 1, b'a', 0x12, 3, 0x0a, 1, b'b']);
    // int_value is field 3, varint.
    assert_eq!(
        KeyValue::int("n", 5).encode_to_vec(),
        [0x0a, 1, b'n', 0x12, 2, 0x18, 5]
    );
    // start_time_unix_nano is field 7, fixed64 (wire type 1: key 0x39);
    // flags field 16, fixed32 (wire type 5: key 0x85 0x01).
    let span = Span {
        start_time_unix_nano: 1,
        flags: 1,
        ..Span::default()
    };
    assert_eq!(
        span.encode_to_vec(),
        [0x39, 1, 0, 0, 0, 0, 0, 0, 0, 0x85, 0x01, 1, 0, 0, 0]
    );
    // kind is field 6, varint.
    let span = Span {
        kind: SpanKind::Server as i32,
        ..Span::default()
    };
    assert_eq!(span.encode_to_vec(), [0x30, 2]);
}

#[test]
fn value_text_prints_scalars() {
    assert_eq!(KeyValue::string("k", "v").value_text(), "v");
    assert_eq!(KeyValue::int("k", -3).value_text(), "-3");
    assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
}

#[derive(Default)]
struct Collect(Mutex<Vec<ExportTraceServiceRequest>>);

impl TraceSink for Collect {
    async fn export(
        &self,
        req: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, Status> {
        let spans = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>();
        if spans == 0 {
            return Err(Status::invalid_argument("no spans"));
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(req);
        Ok(ExportTraceServiceResponse::default())
    }
}

#[tokio::test]
async fn export_reaches_a_tonic_server() {
    let sink = Arc::new(Collect::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServer::new(Arc::clone(&sink)))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /".into(),
        kind: SpanKind::Server as i32,
        attributes: vec![KeyValue::int("http.status_code", 200)],
        ..Span::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue::string("service.name", "proxy")],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span.clone()],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    export(&mut grpc, req.clone()).await.expect("exported");
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(got, [req]);

    let empty = ExportTraceServiceRequest::default();
    let err = export(&mut grpc, empty).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
