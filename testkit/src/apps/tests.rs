//! The apps against each other, in-process on 127.0.0.1 (no root needed).
//! Flags are parsed with clap so the names tests and scripts use are checked
//! too.

use std::future::Future;
use std::net::SocketAddr;

use ::http::HeaderMap;
use tokio::net::TcpListener;

use super::*;

/// Starts `serve` on a fresh loopback port.
async fn start<Fut>(serve: impl FnOnce(TcpListener) -> Fut) -> SocketAddr
where
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback is bindable");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(serve(listener));
    addr
}

/// Parses `flags` as one subcommand's arguments.
fn parse<A: clap::Args>(flags: &[&str]) -> A {
    #[derive(clap::Parser)]
    struct Wrap<A: clap::Args> {
        #[command(flatten)]
        inner: A,
    }
    <Wrap<A> as clap::Parser>::parse_from(std::iter::once("testapp").chain(flags.iter().copied()))
        .inner
}

async fn http_server(name: &'static str) -> SocketAddr {
    start(move |l| http::serve(l, name.to_string())).await
}

async fn http_get(flags: &[&str]) -> anyhow::Result<http_client::HttpClientSummary> {
    http_client::run(&parse(flags)).await
}

#[tokio::test]
async fn http_keeps_one_connection_for_many_requests() {
    let addr = http_server("alpha").await;
    let url = format!("http://{addr}/");
    for h2 in [false, true] {
        let mut flags = vec!["--url", &url, "--count", "3"];
        if h2 {
            flags.push("--http2-prior-knowledge");
        }
        let s = http_get(&flags).await.expect("GET / succeeds");
        assert_eq!((s.ok, s.connections), (3, 1));
        assert_eq!(s.statuses.get(&200), Some(&3));
        assert_eq!(s.served_by.get("alpha"), Some(&3));
        assert_eq!(s.last_body, "hello from alpha\n");
        assert_eq!(s.version, if h2 { "HTTP/2.0" } else { "HTTP/1.1" });
    }
}

#[tokio::test]
async fn http_streams_bodies_both_ways() {
    let addr = http_server("beta").await;
    let echo = format!("http://{addr}/echo");
    for extra in [&["--chunked"][..], &[], &["--http2-prior-knowledge"]] {
        let mut flags = vec![
            "--url",
            &echo,
            "--method",
            "POST",
            "--body-bytes",
            "1000000",
        ];
        flags.extend_from_slice(extra);
        let s = http_get(&flags).await.expect("echo succeeds");
        assert_eq!(
            (s.bytes_sent, s.bytes_received),
            (1_000_000, 1_000_000),
            "{extra:?}"
        );
    }

    let sink = format!("http://{addr}/sink");
    let s = http_get(&[
        "--url",
        &sink,
        "--method",
        "POST",
        "--body-bytes",
        "300000",
        "--count",
        "2",
    ])
    .await
    .expect("sink succeeds");
    assert_eq!(s.last_body, "{\"bytes\":300000}\n");

    let bytes = format!("http://{addr}/bytes?n=123457");
    let s = http_get(&["--url", &bytes]).await.expect("bytes succeeds");
    assert_eq!(s.bytes_received, 123_457);
}

#[tokio::test]
async fn http_status_delay_and_headers() {
    let addr = http_server("gamma").await;
    let status = format!("http://{addr}/status/503");
    let s = http_get(&["--url", &status, "--expect-status", "503"])
        .await
        .expect("503 expected");
    assert_eq!(s.statuses.get(&503), Some(&1));
    let err = http_get(&["--url", &status])
        .await
        .expect_err("503 is not 2xx");
    assert!(err.to_string().contains("\"503\":1"), "{err}");

    let delay = format!("http://{addr}/delay?ms=50");
    let s = http_get(&["--url", &delay]).await.expect("delay succeeds");
    assert!(s.elapsed_ms >= 50, "{s:?}");

    let headers = format!("http://{addr}/headers");
    let s = http_get(&["--url", &headers, "-H", "x-test: one", "-H", "x-test: two"])
        .await
        .expect("headers succeeds");
    let seen: serde_json::Value = serde_json::from_str(&s.last_body).expect("JSON body");
    assert_eq!(seen["x-test"], "one, two");
    assert_eq!(seen["host"], addr.to_string());

    let timeout = http_get(&[
        "--url",
        &format!("http://{addr}/delay?ms=5000"),
        "--timeout-ms",
        "100",
    ])
    .await
    .expect_err("times out");
    assert!(
        timeout.to_string().contains("timed out after 100 ms"),
        "{timeout}"
    );
}

async fn grpc_call(addr: SocketAddr, flags: &[&str]) -> anyhow::Result<grpc::GrpcClientSummary> {
    let target = format!("http://{addr}");
    let mut all = vec!["--target", &target];
    all.extend_from_slice(flags);
    grpc::run(&parse(&all)).await
}

#[tokio::test]
async fn grpc_all_four_kinds_of_call() {
    let addr = start(|l| async move { grpc::serve(l, "echo-1").await }).await;
    for (call, count, ok, received) in [
        ("unary", "3", 3, 3),
        ("server-stream", "5", 1, 5),
        ("client-stream", "4", 1, 1),
        ("bidi", "6", 1, 6),
    ] {
        let s = grpc_call(addr, &[call, "--count", count])
            .await
            .expect(call);
        assert_eq!(s.ok, ok, "{s:?}");
        assert_eq!((s.received, s.status), (received, 0), "{call}");
        assert_eq!(s.served_by.as_deref(), Some("echo-1"), "{call}");
    }
}

#[tokio::test]
async fn grpc_requested_failures() {
    let addr = start(|l| async move { grpc::serve(l, "echo-2").await }).await;
    let s = grpc_call(
        addr,
        &["unary", "--message", "fail:14", "--expect-code", "14"],
    )
    .await
    .expect("status 14 expected");
    assert_eq!((s.ok, s.status, s.received), (1, 14, 0));

    // The streamed replies arrive before the status in the trailers.
    let s = grpc_call(
        addr,
        &[
            "server-stream",
            "--count",
            "2",
            "--message",
            "fail:9",
            "--expect-code",
            "9",
        ],
    )
    .await
    .expect("status 9 expected");
    assert_eq!((s.status, s.received), (9, 2));

    let err = grpc_call(addr, &["bidi", "--message", "fail:13"])
        .await
        .expect_err("13 is not OK");
    assert!(err.to_string().contains("\"status\":13"), "{err}");
}

/// A unary call made with plain hyper, to see where the status travels:
/// returns the response headers, the trailers and the body length.
async fn raw_unary(addr: SocketAddr, message: &str) -> (HeaderMap, Option<HeaderMap>, usize) {
    use http_body_util::{BodyExt, Full};
    use prost::Message;
    let msg = echo::EchoRequest {
        message: message.into(),
        count: 0,
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(msg.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&msg);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = ::http::Request::post(format!("http://{addr}/strand.test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(bytes::Bytes::from(frame)))
        .expect("valid request");
    let rsp = h2.send_request(req).await.expect("response");
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await.expect("body");
    let trailers = body.trailers().cloned();
    (headers, trailers, body.to_bytes().len())
}

#[tokio::test]
async fn grpc_status_in_trailers_or_trailers_only() {
    let addr = start(|l| async move { grpc::serve(l, "wire").await }).await;
    let status = |h: &HeaderMap| {
        h.get("grpc-status")
            .map(|v| v.to_str().expect("ASCII").to_string())
    };

    let (headers, trailers, len) = raw_unary(addr, "hi").await;
    assert_eq!(status(&headers), None);
    assert_eq!(trailers.as_ref().and_then(status).as_deref(), Some("0"));
    assert!(len > 5, "one message");

    let (headers, trailers, len) = raw_unary(addr, "fail:13").await;
    assert_eq!(status(&headers), None, "{headers:?}");
    assert_eq!(trailers.as_ref().and_then(status).as_deref(), Some("13"));
    assert_eq!(len, 0);

    let (headers, trailers, _) = raw_unary(addr, "trailers-only:13").await;
    assert_eq!(status(&headers).as_deref(), Some("13"));
    assert!(trailers.is_none(), "{trailers:?}");
}

#[tokio::test]
async fn websocket_echo() {
    let addr = start(ws::serve).await;
    let url = format!("ws://{addr}/");
    let s = ws::run(&parse(&["--url", &url, "--count", "5"]))
        .await
        .expect("ws echo");
    assert_eq!((s.sent, s.received), (5, 5));
}

#[tokio::test]
async fn tcp_echo_with_half_close() {
    let addr = start(|l| tcp::serve_echo(l, None)).await.to_string();
    let s = tcp::client(&parse(&[
        "--connect",
        &addr,
        "--send",
        "hello",
        "--expect",
        "hello",
    ]))
    .await
    .expect("small echo");
    assert_eq!((s.sent, s.received), (5, 5));
    // More than the socket buffers hold: reading and writing must overlap.
    let s = tcp::client(&parse(&["--connect", &addr, "--bytes", "3000000"]))
        .await
        .expect("large echo");
    assert_eq!((s.sent, s.received), (3_000_000, 3_000_000));
    let err = tcp::client(&parse(&[
        "--connect",
        &addr,
        "--send",
        "a",
        "--expect",
        "b",
    ]))
    .await
    .expect_err("mismatch");
    assert!(err.to_string().contains("expected reply"), "{err}");
}

#[tokio::test]
async fn banner_arrives_before_the_client_speaks() {
    let addr = start(|l| tcp::serve_echo(l, Some("SSH-2.0-test".into())))
        .await
        .to_string();
    let s = tcp::banner_client(&parse(&["--connect", &addr, "--expect", "SSH-2.0-test"]))
        .await
        .expect("banner read");
    assert_eq!(s.banner, "SSH-2.0-test");
}

#[tokio::test]
async fn tls_echo_verified_against_the_generated_ca() {
    let pki = tls::generate_pki("echo.strand.test").expect("certificates");
    let ca = std::env::temp_dir().join(format!("strand-testkit-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, &pki.ca_pem).expect("temp dir is writable");
    let config = tls::server_config(&pki).expect("server config");
    let addr = start(|l| tls::serve(l, config)).await.to_string();
    let ca_path = ca.to_string_lossy().into_owned();

    let base = ["--connect", &addr, "--ca", &ca_path, "--send", "ping"];
    let s = tls::client(&parse(
        &[&base[..], &["--sni", "echo.strand.test"]].concat(),
    ))
    .await
    .expect("verified TLS");
    assert_eq!(s.reply, "tls-echo: ping");
    assert_eq!(s.protocol_version, "TLSv1_3");
    assert!(!s.cipher.is_empty(), "{s:?}");
    assert_eq!(s.kx_group, "X25519MLKEM768");

    let err = tls::client(&parse(
        &[&base[..], &["--sni", "other.strand.test"]].concat(),
    ))
    .await
    .expect_err("wrong name");
    assert!(format!("{err:#}").contains("handshake"), "{err:#}");
    let _ = std::fs::remove_file(ca);
}
