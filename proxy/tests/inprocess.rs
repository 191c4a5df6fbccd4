//! In-process integration tests: the real proxy on 127.0.0.1 with its
//! original destination injected, against small real servers. No iptables,
//! no root.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server speaking HTTP/1 and HTTP/2 (prior knowledge) on one port.
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// Echoes bytes on an upgraded connection until EOF.
fn echo_upgraded(upgrade: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        if let Ok(up) = upgrade.await {
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    if req.method() == http::Method::CONNECT {
        // Acts as a forward proxy that "tunnels" to an echo service.
        echo_upgraded(hyper::upgrade::on(&mut req));
        return Ok(Response::new(full("")));
    }
    let path = req.uri().path().to_string();
    let rsp = match path.as_str() {
        "/echo" => Response::new(req.into_body().map_err(BoxError::from).boxed()),
        "/trace-headers" => {
            let get = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            Response::new(full(format!(
                "{} {} {}",
                get("traceparent"),
                get("x-b3-spanid"),
                get("x-b3-parentspanid")
            )))
        }
        "/headers" => {
            let mut names: Vec<_> = req
                .headers()
                .keys()
                .map(|k| k.as_str().to_string())
                .collect();
            names.sort();
            Response::new(full(names.join(",")))
        }
        "/grpc-fail" => {
            let stream = futures_util::stream::iter(vec![
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers({
                    let mut t = http::HeaderMap::new();
                    t.insert("grpc-status", http::HeaderValue::from_static("13"));
                    t
                })),
            ]);
            let mut rsp = Response::new(StreamBody::new(stream).boxed());
            rsp.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            rsp
        }
        "/ws" => {
            // Minimal upgrade: switch protocols and echo raw bytes.
            echo_upgraded(hyper::upgrade::on(req));
            let mut rsp = Response::new(full(""));
            *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            rsp.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            rsp.headers_mut()
                .insert("upgrade", http::HeaderValue::from_static("test-echo"));
            rsp
        }
        "/reset" => {
            // Sends some data, then fails the stream (RST_STREAM on HTTP/2,
            // an aborted connection on HTTP/1).
            let stream = futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((
                        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"partial"))),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(BoxError::from("backend failed mid-stream")), 2))
                    }
                    _ => None,
                }
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Response::new(full("slow done"))
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
            let mut rsp = Response::new(full(""));
            *rsp.status_mut() = StatusCode::from_u16(code).unwrap();
            rsp
        }
        _ => Response::new(full("hello")),
    };
    Ok(rsp)
}

#[tokio::test]
async fn http1_keepalive_and_metrics() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    for _ in 0..3 {
        let rsp = tx.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
    }
    let rsp = tx.send_request(get("/status/503")).await.unwrap();
    assert_eq!(rsp.status(), 503);
    rsp.into_body().collect().await.unwrap();

    let m = metrics(proxy.admin).await;
    let target = format!("target_addr=\"{server}\"");
    let base = [
        "direction=\"outbound\"",
        "authority=\"web.test:8080\"",
        target.as_str(),
    ];
    assert_eq!(sample(&m, "request_total{", &base), Some(4.0), "{m}");
    let ok = [
        &base[..],
        &["status_code=\"200\"", "classification=\"success\""],
    ]
    .concat();
    assert_eq!(sample(&m, "response_total{", &ok), Some(3.0), "{m}");
    let fail = [
        &base[..],
        &["status_code=\"503\"", "classification=\"failure\""],
    ]
    .concat();
    assert_eq!(sample(&m, "response_total{", &fail), Some(1.0), "{m}");
    // One client connection accepted, one upstream connection reused.
    assert_eq!(
        sample(
            &m,
            "tcp_open_total{",
            &["peer=\"src\"", "direction=\"outbound\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\"", target.as_str()]),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "response_latency_ms_count{", &ok) == Some(3.0),
        "{m}"
    );
}

#[tokio::test]
async fn http1_client_connections_take_turns_on_the_most_recently_used_upstream() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    // Three client connections open together, their requests one after
    // another: each response puts the upstream connection back in the
    // pool, and the next request, whichever client connection it comes
    // on, takes that same connection.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(h1_client(proxy.outbound).await);
    }
    for round in 0..3 {
        for tx in &mut clients {
            let rsp = tx.send_request(get("/")).await.unwrap();
            assert_eq!(rsp.status(), 200, "round {round}");
            assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
        }
    }
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"src\""]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test:8080\""]),
        Some(9.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\""]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn http1_streams_large_chunked_body_both_ways() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 160; // 10 MiB
    let stream = futures_util::stream::iter(
        (0..CHUNKS)
            .map(|i| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![(i % 251) as u8; CHUNK])))),
    );
    let req = Request::post("/echo")
        .header("host", "web.test")
        .body(StreamBody::new(stream).boxed())
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let mut body = rsp.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, (((total + i) / CHUNK) % 251) as u8);
        }
        total += data.len();
    }
    assert_eq!(total, CHUNK * CHUNKS);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let req = Request::get("/headers")
        .header("host", "web.test")
        .header("connection", "x-private")
        .header("x-private", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-end-to-end", "1")
        .body(full(""))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    let names = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(names, "host,x-end-to-end");
}

#[tokio::test]
async fn http2_multiplexed_and_grpc_status_from_trailers() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let tx = h2_client(proxy.outbound).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get("http://web.test:8080/")
                .body(full(""))
                .unwrap();
            let rsp = tx.send_request(req).await.unwrap();
            assert_eq!(rsp.status(), 200);
            rsp.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "hello");
    }
    let mut tx2 = tx.clone();
    let req = Request::post("http://web.test:8080/grpc-fail")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(""))
        .unwrap();
    let rsp = tx2.send_request(req).await.unwrap();
    let collected = rsp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "13");

    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test:8080\""]),
        Some(11.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["grpc_status=\"13\"", "classification=\"failure\""]
        ),
        Some(1.0),
        "{m}"
    );
    // All eleven requests shared one upstream HTTP/2 connection.
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\""]),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn connections_spread_over_worker_threads_each_with_its_own_pool() {
    let workers = strand_proxy::workers::Workers::start(2).unwrap();
    let server = http_server().await;
    let proxy = start_proxy_on(server, &[], workers.handles().to_vec()).await;
    // Six client connections, open together: two on each of the three
    // runtimes (this one and two workers).
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut tx = h2_client(proxy.outbound).await;
        let rsp = tx
            .send_request(
                Request::get("http://web.test:8080/")
                    .body(full(""))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
        clients.push(tx);
    }
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test:8080\""]),
        Some(6.0),
        "{m}"
    );
    // One upstream HTTP/2 connection per runtime, each shared by that
    // runtime's two client connections (one runtime would open one).
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\""]),
        Some(3.0),
        "{m}"
    );
    proxy.shutdown.cancel();
    drop(clients);
    tokio::time::timeout(Duration::from_secs(10), proxy.task)
        .await
        .unwrap()
        .unwrap();
    drop(workers);
}

#[tokio::test]
async fn upstream_refused_is_502_with_proxy_error_and_grpc_unavailable() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = start_proxy(closed, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let rsp = tx.send_request(get("/")).await.unwrap();
    assert_eq!(rsp.status(), 502);
    let err = rsp.headers()["l5d-proxy-error"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("connect to {closed} failed")),
        "{err}"
    );

    let mut tx = h2_client(proxy.outbound).await;
    let req = Request::post("http://web.test/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .body(full(""))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "14");
    assert!(rsp.headers().contains_key("l5d-proxy-error"));
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["error=\"connect\"", "status_code=\"502\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn upgrade_becomes_a_tunnel() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let req = Request::get("/ws")
        .header("host", "web.test")
        .header("connection", "upgrade")
        .header("upgrade", "test-echo")
        .body(full(""))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 101);
    let mut io = TokioIo::new(hyper::upgrade::on(rsp).await.unwrap());
    io.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
}

async fn tcp_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn opaque_tcp_with_half_close_and_byte_counts() {
    let server = tcp_echo_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
    // Not a method name: opaque at once, no waiting for the detect timeout.
    let start = std::time::Instant::now();
    tcp.write_all(b"hello opaque world").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"hello opaque world");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(tcp);
    let target = format!("target_addr=\"{server}\"");
    strand_testkit_eventually(|| async {
        let m = metrics(proxy.admin).await;
        let src = ["direction=\"inbound\"", "peer=\"src\"", target.as_str()];
        sample(&m, "tcp_read_bytes_total{", &src) == Some(18.0)
            && sample(&m, "tcp_write_bytes_total{", &src) == Some(18.0)
            && sample(&m, "tcp_close_total{", &src) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn opaque_connect_failure_resets_client() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = start_proxy(closed, &[]).await;
    let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
    tcp.write_all(b"\x00\x01binary").await.unwrap();
    let mut buf = [0u8; 8];
    let err = tcp.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn opaque_port_skips_detection_for_server_first_protocols() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(b"220 banner\r\n").await.unwrap();
    });
    let port = server.port().to_string();
    let proxy = start_proxy(
        server,
        &[(
            "STRAND_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            port.as_str(),
        )],
    )
    .await;
    let start = std::time::Instant::now();
    let mut tcp = TcpStream::connect(proxy.inbound).await.unwrap();
    let mut buf = [0u8; 12];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"220 banner\r\n");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn oversized_headers_get_431_and_others_keep_working() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tcp = TcpStream::connect(proxy.outbound).await.unwrap();
    let mut req = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
    let big = format!("x-big: {}\r\n", "a".repeat(8000));
    while req.len() < 1024 * 1024 {
        req.extend_from_slice(big.as_bytes());
    }
    // The proxy may close before reading everything; ignore write errors.
    let _ = tcp.write_all(&req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    let head = String::from_utf8_lossy(&out);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    let mut tx = h1_client(proxy.outbound).await;
    assert_eq!(tx.send_request(get("/")).await.unwrap().status(), 200);
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "inbound_protocol_errors_total{",
            &["reason=\"request head too large\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let slow = tokio::spawn(async move {
        let rsp = tx.send_request(get("/slow")).await.unwrap();
        rsp.into_body().collect().await.unwrap().to_bytes()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // POST /shutdown on the admin server, as a user in the pod would.
    let mut admin = h1_client(proxy.admin).await;
    let req = Request::post("/shutdown")
        .header("host", "localhost")
        .body(full(""))
        .unwrap();
    assert_eq!(admin.send_request(req).await.unwrap().status(), 200);
    assert_eq!(slow.await.unwrap(), "slow done");
    tokio::time::timeout(Duration::from_secs(5), proxy.task)
        .await
        .expect("proxy exits after draining")
        .unwrap();
    assert!(
        TcpStream::connect(proxy.outbound).await.is_err(),
        "listener closed"
    );
    let _ = proxy.shutdown;
}

/// Polls `cond` until it holds or the patience (env STRAND_TEST_PATIENCE_MS,
/// default 10 s) runs out.
async fn strand_testkit_eventually<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let patience = std::env::var("STRAND_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let deadline = std::time::Instant::now() + Duration::from_millis(patience);
    while std::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached within {patience} ms");
}

#[tokio::test]
async fn slowloris_is_cut_off_at_the_header_read_timeout() {
    let server = http_server().await;
    let proxy = start_proxy(
        server,
        &[
            ("STRAND_PROXY_INBOUND_DETECT_TIMEOUT", "1s"),
            ("STRAND_PROXY_HTTP_HEADER_READ_TIMEOUT", "1s"),
        ],
    )
    .await;
    let mut slow = TcpStream::connect(proxy.inbound).await.unwrap();
    let start = std::time::Instant::now();
    let mut closed = false;
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    for b in b"host: a\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => eprintln!("read {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    assert!(closed, "closed");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn connect_becomes_a_tunnel() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let req = Request::connect("backend.example:443")
        .body(full(""))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let mut io = TokioIo::new(hyper::upgrade::on(rsp).await.unwrap());
    io.write_all(b"bytes inside CONNECT").await.unwrap();
    let mut buf = [0u8; 20];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"bytes inside CONNECT");
}

#[tokio::test]
async fn http2_stream_reset_upstream_reaches_the_client() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h2_client(proxy.outbound).await;
    let req = Request::get("http://web.test/reset")
        .body(full(""))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let err = tokio::time::timeout(Duration::from_secs(5), rsp.into_body().collect())
        .await
        .expect("the reset arrives instead of a hang")
        .expect_err("the stream fails");
    let h2 = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<h2::Error>());
    assert!(
        h2.is_some_and(|e| e.is_reset()),
        "RST_STREAM from the proxy: {err:?}"
    );
    // The connection itself survives: other streams still work.
    let rsp = tx
        .send_request(Request::get("http://web.test/").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &["classification=\"failure\"", "status_code=\"200\""]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn http1_body_failure_upstream_resets_the_client() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    let rsp = tx.send_request(get("/reset")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let res = tokio::time::timeout(Duration::from_secs(5), rsp.into_body().collect())
        .await
        .expect("no hang");
    assert!(res.is_err(), "the client sees the broken body");
}

#[tokio::test]
async fn idle_upstream_connections_expire() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[("STRAND_PROXY_IDLE_TIMEOUT", "200ms")]).await;
    let mut tx = h1_client(proxy.outbound).await;
    for pause in [0, 50, 400] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let rsp = tx.send_request(get("/")).await.unwrap();
        rsp.into_body().collect().await.unwrap();
    }
    let m = metrics(proxy.admin).await;
    // Reused after 50 ms; after 400 ms idle the connection had expired.
    assert_eq!(
        sample(&m, "tcp_open_total{", &["peer=\"dst\""]),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn discovery_that_never_answers_fails_fast_with_503() {
    // A control plane that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_plane = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let target = http_server().await;
    let proxy = start_proxy(
        target,
        &[
            ("STRAND_PROXY_DESTINATION_SVC_ADDR", &control_plane),
            ("STRAND_PROXY_DISCOVERY_FAIL_FAST", "300ms"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let mut tx = h1_client(proxy.outbound).await;
    let rsp = tx.send_request(get("/")).await.unwrap();
    assert_eq!(rsp.status(), 503);
    let err = rsp.headers()["l5d-proxy-error"].to_str().unwrap();
    assert!(err.contains("discovery failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_control_plane_fails_new_targets_with_503() {
    // A control plane that is not there at all: connections are refused.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let target = http_server().await;
    let proxy = start_proxy(
        target,
        &[
            ("STRAND_PROXY_DESTINATION_SVC_ADDR", &gone),
            ("STRAND_PROXY_DISCOVERY_FAIL_FAST", "300ms"),
        ],
    )
    .await;
    let mut tx = h1_client(proxy.outbound).await;
    let rsp = tx.send_request(get("/")).await.unwrap();
    // Unreachable discovery is an error, never a silent bypass of policy.
    assert_eq!(rsp.status(), 503);
}

/// A hand-written HTTP/1 upstream that answers by path with exact bytes, so
/// that every way of ending a response is exercised: `/len` (a length and a
/// `Connection` naming a hop-by-hop field), `/chunked` (chunks and
/// trailers), `/close` (delimited by closing), `/early` (a 103 first); a
/// HEAD gets a length and no body; `/204` no body. It counts connections.
async fn raw_http_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let mut words = head.split_whitespace();
                    let method = words.next().unwrap_or_default().to_string();
                    let path = words.next().unwrap_or_default().to_string();
                    let seen = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split(':').next())
                        .filter(|n| !n.is_empty())
                        .map(str::to_ascii_lowercase)
                        .collect::<Vec<_>>()
                        .join(",");
                    let rsp: Vec<u8> = match (method.as_str(), path.as_str()) {
                        ("HEAD", _) => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec(),
                        (_, "/len") => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nx-end: 2\r\n\r\n{seen}",
                            seen.len()
                        )
                        .into_bytes(),
                        (_, "/chunked") => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n".to_vec(),
                        (_, "/early") => b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly".to_vec(),
                        (_, "/204") => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        (_, "/close") => {
                            let _ = tcp
                                .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                                .await;
                            return;
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
                    };
                    if tcp.write_all(&rsp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Appends what one read brings, failing on a close or at `deadline`.
async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>, deadline: tokio::time::Instant) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
        .await
        .expect("response in time")
        .unwrap();
    assert!(
        n > 0,
        "connection closed early: {}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads one response from a raw connection: its head, and a body of
/// `content-length`, chunked up to the end of the trailers, or none.
async fn read_raw_response(tcp: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(tcp, buf, deadline).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let total = if head_request || head.starts_with("http/1.1 204") {
        end
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            // Ends at the blank line after the last chunk (and trailers).
            let text = String::from_utf8_lossy(&buf[end..]).to_string();
            // The last chunk follows a chunk's CRLF.
            if let Some(i) = text.find("\r\n0\r\n")
                && let Some(j) = text[i + 2..].find("\r\n\r\n")
            {
                break end + i + 2 + j + 4;
            }
            fill(tcp, buf, deadline).await;
        }
    } else {
        let len = len.expect("a length");
        while buf.len() < end + len {
            fill(tcp, buf, deadline).await;
        }
        end + len
    };
    let rsp = String::from_utf8_lossy(&buf[..total]).to_string();
    buf.drain(..total);
    rsp
}

#[tokio::test]
async fn lean_http1_path_frames_every_kind_of_response() {
    let (server, accepted) = raw_http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tcp = TcpStream::connect(proxy.outbound).await.unwrap();
    let mut buf = Vec::new();
    // Two pipelined requests in one write, answered in order.
    tcp.write_all(
        b"GET /len HTTP/1.1\r\nhost: web.test\r\nconnection: keep-alive\r\nte: trailers\r\nx-app: 1\r\n\r\nGET /chunked HTTP/1.1\r\nhost: web.test\r\n\r\n",
    )
    .await
    .unwrap();
    let len = read_raw_response(&mut tcp, &mut buf, false).await;
    assert!(len.starts_with("HTTP/1.1 200 OK\r\n"), "{len}");
    // Hop-by-hop fields dropped both ways; `te: trailers` kept.
    assert!(len.contains("x-end: 2"), "{len}");
    for gone in ["x-hop", "keep-alive", "connection"] {
        assert!(
            !len.to_ascii_lowercase().contains(&format!("{gone}:")),
            "{len}"
        );
    }
    assert!(len.ends_with("host,x-app,te"), "{len}");
    let chunked = read_raw_response(&mut tcp, &mut buf, false).await;
    assert!(
        chunked.ends_with("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n"),
        "{chunked}"
    );
    // HEAD: a length, no body; 204: no body; 103 is dropped.
    tcp.write_all(b"HEAD /len HTTP/1.1\r\nhost: web.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_raw_response(&mut tcp, &mut buf, true).await;
    assert!(head.contains("content-length: 100"), "{head}");
    tcp.write_all(
        b"GET /204 HTTP/1.1\r\nhost: web.test\r\n\r\nGET /early HTTP/1.1\r\nhost: web.test\r\n\r\n",
    )
    .await
    .unwrap();
    let no_content = read_raw_response(&mut tcp, &mut buf, false).await;
    assert!(no_content.starts_with("HTTP/1.1 204"), "{no_content}");
    let early = read_raw_response(&mut tcp, &mut buf, false).await;
    assert!(
        early.starts_with("HTTP/1.1 200 OK") && early.ends_with("early"),
        "{early}"
    );
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // All of that on one upstream connection.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A response delimited by closing: passed on with `connection: close`,
    // then the client connection closes.
    tcp.write_all(b"GET /close HTTP/1.1\r\nhost: web.test\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap();
    buf.extend_from_slice(&rest);
    let closed = String::from_utf8_lossy(&buf).to_string();
    assert!(closed.starts_with("HTTP/1.1 200 OK\r\n"), "{closed}");
    assert!(closed.contains("connection: close\r\n"), "{closed}");
    assert!(closed.ends_with("\r\n\r\nuntil the end"), "{closed}");

    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test\""]),
        Some(6.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "response_total{",
            &[
                "authority=\"web.test\"",
                "status_code=\"200\"",
                "classification=\"success\""
            ]
        ),
        Some(5.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_request_with_a_body_moves_the_connection_to_the_general_path() {
    let server = http_server().await;
    let proxy = start_proxy(server, &[]).await;
    let mut tx = h1_client(proxy.outbound).await;
    // Lean, then a body (general path from here on), then lean-eligible
    // requests that the general path now serves; all on one connection.
    let rsp = tx.send_request(get("/")).await.unwrap();
    assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
    let post = Request::post("/echo")
        .header("host", "web.test:8080")
        .body(full("a body"))
        .unwrap();
    let rsp = tx.send_request(post).await.unwrap();
    assert_eq!(
        rsp.into_body().collect().await.unwrap().to_bytes(),
        "a body"
    );
    for _ in 0..2 {
        let rsp = tx.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.into_body().collect().await.unwrap().to_bytes(), "hello");
    }
    let m = metrics(proxy.admin).await;
    assert_eq!(
        sample(&m, "request_total{", &["authority=\"web.test:8080\""]),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "tcp_open_total{",
            &["peer=\"src\"", "direction=\"outbound\""]
        ),
        Some(1.0),
        "{m}"
    );
}

/// An OTLP/gRPC trace collector: a real tonic server that keeps every
/// span it receives, with its resource's attributes.
#[derive(Default)]
struct Collected(std::sync::Mutex<Vec<(Attributes, strand_otlp::Span)>>);

/// A resource's attributes, as text.
type Attributes = Vec<(String, String)>;

impl strand_otlp::TraceSink for Collected {
    async fn export(
        &self,
        req: strand_otlp::ExportTraceServiceRequest,
    ) -> Result<strand_otlp::ExportTraceServiceResponse, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let resource: Attributes = rs
                .resource
                .map(|r| {
                    r.attributes
                        .iter()
                        .map(|a| (a.key.clone(), a.value_text()))
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((resource.clone(), span));
                }
            }
        }
        Ok(strand_otlp::ExportTraceServiceResponse::default())
    }
}

async fn trace_collector() -> (SocketAddr, Arc<Collected>) {
    let sink = Arc::new(Collected::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(strand_otlp::TraceServer::new(Arc::clone(&sink)))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, sink)
}

fn span_attr(span: &strand_otlp::Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(strand_otlp::KeyValue::value_text)
}

#[tokio::test]
async fn traced_requests_get_a_span_and_pass_the_proxys_span_on() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";
    let (collector, sink) = trace_collector().await;
    let server = http_server().await;
    let collector = collector.to_string();
    let proxy = start_proxy(
        server,
        &[
            ("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", collector.as_str()),
            ("STRAND_PROXY_TRACE_SERVICE_NAME", "web"),
            ("STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES", "k8s.pod.name=web-1"),
        ],
    )
    .await;
    let text = |rsp: Response<Incoming>| async move {
        String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let traced = |header: &'static str, value: String| {
        Request::get("/trace-headers")
            .header("host", "web.test:8080")
            .header(header, value)
            .body(full(""))
            .unwrap()
    };

    // HTTP/1 with a sampled W3C context (a GET the lean path would take).
    let mut tx = h1_client(proxy.outbound).await;
    let rsp = tx
        .send_request(traced("traceparent", format!("00-{TRACE}-{PARENT}-01")))
        .await
        .unwrap();
    let seen_w3c = text(rsp).await;
    // Not sampled: passed on untouched, no span.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let rsp = tx
        .send_request(traced("traceparent", unsampled.clone()))
        .await
        .unwrap();
    assert!(text(rsp).await.starts_with(&unsampled));
    // No context at all.
    let rsp = tx.send_request(get("/trace-headers")).await.unwrap();
    assert_eq!(text(rsp).await, "- - -");
    // HTTP/2 with B3 headers.
    let mut h2 = h2_client(proxy.outbound).await;
    let req = Request::get("http://web.test:8080/trace-headers")
        .header("x-b3-traceid", TRACE)
        .header("x-b3-spanid", PARENT)
        .header("x-b3-sampled", "1")
        .body(full(""))
        .unwrap();
    let rsp = h2.send_request(req).await.unwrap();
    let seen_b3 = text(rsp).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sink.0.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "two spans exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spans = sink.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    for (resource, span) in &spans {
        assert!(resource.contains(&("service.name".into(), "web".into())));
        assert!(resource.contains(&("k8s.pod.name".into(), "web-1".into())));
        assert_eq!(strand_otlp::hex(&span.trace_id), TRACE);
        assert_eq!(strand_otlp::hex(&span.parent_span_id), PARENT);
        assert_eq!(span.name, "GET /trace-headers");
        assert_eq!(span.kind, strand_otlp::SpanKind::Client as i32);
        assert_eq!(span_attr(span, "http.status_code").as_deref(), Some("200"));
        assert_eq!(span_attr(span, "direction").as_deref(), Some("outbound"));
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    // The server saw the proxy's span as its parent.
    let ids: Vec<String> = spans
        .iter()
        .map(|(_, s)| strand_otlp::hex(&s.span_id))
        .collect();
    assert!(
        ids.iter()
            .any(|id| seen_w3c == format!("00-{TRACE}-{id}-01 - -")),
        "{seen_w3c} {ids:?}"
    );
    assert!(
        ids.iter().any(|id| seen_b3 == format!("- {id} {PARENT}")),
        "{seen_b3} {ids:?}"
    );

    // A traced request just before shutdown still gets its span out.
    let rsp = tx
        .send_request(traced("traceparent", format!("00-{TRACE}-{PARENT}-01")))
        .await
        .unwrap();
    text(rsp).await;
    let m = metrics(proxy.admin).await;
    drop((tx, h2));
    proxy.shutdown.cancel();
    proxy.task.await.unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 3, "flushed at shutdown");
    assert_eq!(
        sample(&m, "trace_spans_exported_total", &[]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "trace_spans_dropped_total", &[]),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn an_unreachable_collector_drops_spans_and_never_fails_requests() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = closed.local_addr().unwrap().to_string();
    drop(closed);
    let server = http_server().await;
    let proxy = start_proxy(
        server,
        &[("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", collector.as_str())],
    )
    .await;
    let mut tx = h1_client(proxy.outbound).await;
    for _ in 0..3 {
        let req = Request::get("/")
            .header("host", "web.test:8080")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(full(""))
            .unwrap();
        let rsp = tx.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        rsp.into_body().collect().await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(proxy.admin).await;
        if sample(&m, "trace_spans_dropped_total", &[]) == Some(3.0) {
            assert_eq!(sample(&m, "trace_spans_exported_total", &[]), Some(0.0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
