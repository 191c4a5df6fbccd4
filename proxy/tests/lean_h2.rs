//! The lean HTTP/2 path (`http::lean_h2`) end to end in process: real
//! hyper HTTP/2 clients and servers, and raw frames for what a well-behaved
//! client never sends. Proxies here have no control plane and no identity,
//! so every HTTP/2 connection takes the lean path.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use strand_proxy_h2::frame::{self, HEAD_LEN, Head, Reason, kind};
use strand_proxy_h2::hpack::Encoder;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/2-only upstream; counts its connections.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Streams of `/endless` whose client went away.
    cancelled: Arc<AtomicUsize>,
}

/// Starts an upstream; with `goaway_after_first`, each connection shuts
/// down gracefully (GOAWAY) once its first request is served.
async fn upstream(goaway_after_first: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (acc, can) = (accepted.clone(), cancelled.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let can = can.clone();
            tokio::spawn(async move {
                let served = Arc::new(tokio::sync::Notify::new());
                let notify = served.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let (can, notify) = (can.clone(), notify.clone());
                    async move {
                        let rsp = handle(req, can).await;
                        notify.notify_one();
                        rsp
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc);
                tokio::pin!(conn);
                if goaway_after_first {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        () = served.notified() => conn.as_mut().graceful_shutdown(),
                    }
                }
                let _ = conn.await;
            });
        }
    });
    Upstream {
        addr,
        accepted,
        cancelled,
    }
}

async fn handle(
    req: Request<Incoming>,
    cancelled: Arc<AtomicUsize>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        "/echo" => Response::new(req.into_body().map_err(BoxError::from).boxed()),
        "/trailers" => {
            let collected = req.into_body().collect().await.unwrap();
            let echoed = collected
                .trailers()
                .and_then(|t| t.get("x-req"))
                .cloned()
                .unwrap_or_else(|| http::HeaderValue::from_static("none"));
            let body = collected.to_bytes();
            let mut trailers = HeaderMap::new();
            trailers.insert("x-echo", echoed);
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = vec![
                Ok::<_, BoxError>(Frame::data(body)),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(full("slow done"))
        }
        "/endless" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
            tokio::spawn(async move {
                loop {
                    if tx
                        .send(Ok(Frame::data(Bytes::from_static(&[7; 1024]))))
                        .await
                        .is_err()
                    {
                        cancelled.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            Response::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed())
        }
        _ => Response::new(full("hello")),
    })
}

fn req(method: &str, path: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(format!("http://web.test:8080{path}"))
        .body(body)
        .unwrap()
}

async fn body_of(rsp: Response<Incoming>) -> Bytes {
    rsp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn large_bodies_stream_both_ways_within_flow_control() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let tx = h2_client(proxy.outbound).await;
    let mut tasks = Vec::new();
    for n in 0..3u8 {
        let mut tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            // 3 MiB in 64 KiB chunks, far beyond every window.
            let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..48)
                .map(|i| Ok(Frame::data(Bytes::from(vec![n.wrapping_add(i); 64 * 1024]))))
                .collect();
            let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
            let rsp = tx.send_request(req("POST", "/echo", body)).await.unwrap();
            assert_eq!(rsp.status(), 200);
            let got = body_of(rsp).await;
            assert_eq!(got.len(), 48 * 64 * 1024);
            for (i, chunk) in got.chunks(64 * 1024).enumerate() {
                assert!(chunk.iter().all(|&b| b == n.wrapping_add(i as u8)));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn more_streams_than_the_limit_wait_their_turn() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let tx = h2_client(proxy.outbound).await;
    let mut tasks = Vec::new();
    for _ in 0..250 {
        let mut tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let rsp = tx
                .send_request(req("GET", "/slow", full("")))
                .await
                .unwrap();
            assert_eq!(rsp.status(), 200);
            body_of(rsp).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "slow done");
    }
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["status_code=\"200\"", "direction=\"outbound\""]
        ),
        Some(250.0),
        "{m}"
    );
}

#[tokio::test]
async fn trailers_pass_both_ways_and_grpc_status_is_counted() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-req", http::HeaderValue::from_static("from-client"));
    let frames = vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut request = req("POST", "/trailers", body);
    request
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let rsp = tx.send_request(request).await.unwrap();
    let collected = rsp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap();
    assert_eq!(trailers["x-echo"], "from-client");
    assert_eq!(collected.to_bytes(), "payload");
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["grpc_status=\"0\"", "classification=\"success\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn client_connections_take_turns_on_one_upstream_connection() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    for _ in 0..5 {
        let mut tx = h2_client(proxy.outbound).await;
        for _ in 0..2 {
            let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
            assert_eq!(body_of(rsp).await, "hello");
        }
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\""]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test:8080\""]),
        Some(10.0),
        "{m}"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_or_grpc_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    let proxy = start_proxy(target, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
    assert_eq!(rsp.status(), 502);
    assert!(
        rsp.headers()["l5d-proxy-error"]
            .to_str()
            .unwrap()
            .contains("connect")
    );
    let mut grpc = req("POST", "/svc/Method", full(""));
    grpc.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let rsp = tx.send_request(grpc).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "14");
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["status_code=\"502\"", "classification=\"failure\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["grpc_status=\"14\"", "classification=\"failure\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_client_cancelling_a_stream_cancels_it_upstream() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let rsp = tx
        .send_request(req("GET", "/endless", full("")))
        .await
        .unwrap();
    let mut body = rsp.into_body();
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while up.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream stream never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connections stay usable.
    let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
    assert_eq!(body_of(rsp).await, "hello");
}

#[tokio::test]
async fn upstream_goaway_moves_new_streams_to_a_new_connection() {
    let up = upstream(true).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    for _ in 0..4 {
        let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
        assert_eq!(body_of(rsp).await, "hello");
        // Let the GOAWAY arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up.accepted.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let slow = tx.send_request(req("GET", "/slow", full("")));
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown.cancel();
    let rsp = slow.await.unwrap().unwrap();
    assert_eq!(body_of(rsp).await, "slow done");
}

// --- raw frames ---

/// A raw HTTP/2 client: the preface and empty SETTINGS, then frames.
async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = frame::PREFACE.to_vec();
    frame::Settings::default().write(&mut out);
    tcp.write_all(&out).await.unwrap();
    tcp
}

/// A request header block with the given extra fields.
fn request_block(extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b":authority", b"web.test:8080"),
    ]
    .iter()
    .chain(extra)
    {
        Encoder::field(n, v, false, &mut block);
    }
    block
}

/// Reads frames until one of `kind` on `stream` arrives; returns its flags
/// and payload.
async fn expect_frame(tcp: &mut TcpStream, want: u8, stream: u32) -> (u8, Vec<u8>) {
    let read = async {
        loop {
            let mut head = [0u8; HEAD_LEN];
            tcp.read_exact(&mut head).await.unwrap();
            let head = Head::parse(&head);
            let mut payload = vec![0u8; head.len as usize];
            tcp.read_exact(&mut payload).await.unwrap();
            if head.kind == want && head.stream == stream {
                return (head.flags, payload);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| panic!("no frame of type {want} on stream {stream}"))
}

fn reason_of(payload: &[u8]) -> Reason {
    Reason(u32::from_be_bytes(payload[..4].try_into().unwrap()))
}

#[tokio::test]
async fn malformed_requests_reset_their_stream_and_bad_hpack_ends_the_connection() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tcp = raw_client(proxy.outbound).await;
    let mut out = Vec::new();
    // An uppercase name, and a connection-specific field: each its stream.
    frame::write_headers(
        &mut out,
        1,
        &request_block(&[(b"X-Upper", b"1")]),
        true,
        16_384,
    );
    frame::write_headers(
        &mut out,
        3,
        &request_block(&[(b"connection", b"close")]),
        true,
        16_384,
    );
    // A good request on the same connection.
    frame::write_headers(&mut out, 5, &request_block(&[]), true, 16_384);
    tcp.write_all(&out).await.unwrap();
    let (_, p) = expect_frame(&mut tcp, kind::RST_STREAM, 1).await;
    assert_eq!(reason_of(&p), Reason::PROTOCOL_ERROR);
    let (_, p) = expect_frame(&mut tcp, kind::RST_STREAM, 3).await;
    assert_eq!(reason_of(&p), Reason::PROTOCOL_ERROR);
    let (flags, _) = expect_frame(&mut tcp, kind::HEADERS, 5).await;
    assert_eq!(flags & frame::flag::END_HEADERS, frame::flag::END_HEADERS);
    // DATA that falls short of the content-length.
    out.clear();
    let mut block = request_block(&[(b"content-length", b"10")]);
    block[0] = 0x83; // POST
    frame::write_headers(&mut out, 7, &block, false, 16_384);
    frame::write_data(&mut out, 7, b"short", true);
    tcp.write_all(&out).await.unwrap();
    let (_, p) = expect_frame(&mut tcp, kind::RST_STREAM, 7).await;
    assert_eq!(reason_of(&p), Reason::PROTOCOL_ERROR);
    // An index that is in no table: the connection ends.
    out.clear();
    frame::write_headers(&mut out, 9, &[0x80 | 0x7f, 0x10], true, 16_384);
    tcp.write_all(&out).await.unwrap();
    let (_, p) = expect_frame(&mut tcp, kind::GOAWAY, 0).await;
    assert_eq!(reason_of(&p[4..]), Reason::COMPRESSION_ERROR);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection not closed after GOAWAY");
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "inbound_protocol_errors_total{",
            &["reason=\"HTTP/2 protocol error\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn an_oversize_header_list_is_answered_431() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[("STRAND_PROXY_HTTP_MAX_HEADER_BYTES", "8192")]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let mut big = req("GET", "/", full(""));
    big.headers_mut()
        .insert("x-big", "y".repeat(16_000).parse().unwrap());
    let rsp = tx.send_request(big).await.unwrap();
    assert_eq!(rsp.status(), 431);
    let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
    assert_eq!(body_of(rsp).await, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

/// Seeded random frames after a valid preface: every connection ends or
/// idles without the proxy crashing, hanging or answering nonsense, and
/// the proxy serves a good client afterwards.
#[tokio::test]
async fn random_frames_never_break_the_proxy() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut rng = fastrand::Rng::with_seed(2026);
    for _ in 0..200 {
        let mut out = Vec::new();
        frame::write_headers(&mut out, 1, &request_block(&[]), false, 16_384);
        frame::write_data(&mut out, 1, b"body", true);
        frame::write_window_update(&mut out, 0, 1000);
        frame::write_ping(&mut out, false, *b"pingping");
        frame::write_headers(
            &mut out,
            3,
            &request_block(&[(b"te", b"trailers")]),
            true,
            16_384,
        );
        for _ in 0..rng.usize(1..6) {
            let at = rng.usize(..out.len());
            match rng.u8(..3) {
                0 => out[at] = rng.u8(..),
                1 => out.truncate(at.max(1)),
                _ => out.insert(at, rng.u8(..)),
            }
        }
        let mut tcp = raw_client(proxy.outbound).await;
        tcp.write_all(&out).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
        assert!(ended.is_ok(), "connection hung on {out:02x?}");
    }
    let mut tx = h2_client(proxy.outbound).await;
    let rsp = tx.send_request(req("GET", "/", full(""))).await.unwrap();
    assert_eq!(body_of(rsp).await, "hello");
}

/// A client that waits (for the server's SETTINGS, or anything) before its
/// first request is still served: after a moment the connection goes to
/// the general path, which answers the request when it comes.
#[tokio::test]
async fn a_client_slow_to_send_its_first_request_is_served() {
    let up = upstream(false).await;
    let proxy = start_proxy(up.addr, &[]).await;
    let mut tcp = raw_client(proxy.outbound).await;
    // The server's preface arrives without a request.
    expect_frame(&mut tcp, kind::SETTINGS, 0).await;
    let mut out = Vec::new();
    frame::write_settings_ack(&mut out);
    frame::write_headers(&mut out, 1, &request_block(&[]), true, 16_384);
    tcp.write_all(&out).await.unwrap();
    let (flags, _) = expect_frame(&mut tcp, kind::HEADERS, 1).await;
    assert_eq!(flags & frame::flag::END_HEADERS, frame::flag::END_HEADERS);
}
