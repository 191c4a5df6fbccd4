//! Hostile and broken clients against a meshed server: the proxy closes
//! each offender with one clear log line, keeps serving everyone else, and
//! its memory stays bounded.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strand_e2e::MeshedPod;
use strand_testkit::{Network, require_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Reads until EOF or error (a reset counts as closed) within `limit`;
/// returns what was read, or None if the connection stayed open.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether a stream of HTTP/2 frames from the server contains a GOAWAY.
fn has_goaway(mut frames: &[u8]) -> bool {
    while frames.len() >= 9 {
        let len = u32::from_be_bytes([0, frames[0], frames[1], frames[2]]) as usize;
        if frames[3] == 0x7 {
            return true;
        }
        frames = frames.get(9 + len..).unwrap_or(&[]);
    }
    false
}

async fn good_request(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: server\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = read_until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("response within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn offenders_are_closed_and_others_keep_being_served() {
    if !require_root() {
        return;
    }
    strand_sys::raise_nofile_limit().unwrap();
    let net = Network::new("bad").unwrap();
    let server = MeshedPod::start(
        &net,
        "server",
        &[
            ("STRAND_PROXY_INBOUND_DETECT_TIMEOUT", "2s"),
            ("STRAND_PROXY_HTTP_HEADER_READ_TIMEOUT", "3s"),
        ],
    )
    .unwrap();
    let mut app = server.app();
    app.args(["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    let mut srv = server.pod.spawn(app).unwrap();
    srv.wait_listening().unwrap();
    // An unmeshed client talks to the server pod's inbound proxy directly.
    let client = net.add_pod("client").unwrap();
    let addr = SocketAddr::new(server.pod.ip(), 8080);
    let rss_idle = server.proxy_rss().unwrap();

    client.block_on(|| async move {
        // 1,000 idle connections stay open for the whole test.
        let mut idle = Vec::new();
        for _ in 0..1000 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        assert!(
            good_request(addr).await.starts_with("HTTP/1.1 200"),
            "served beside 1,000 idle connections"
        );

        // Garbage: not a protocol the proxy knows, so it is opaque TCP and
        // the application answers (or closes) for itself, promptly.
        let mut g = TcpStream::connect(addr).await.unwrap();
        let garbage: Vec<u8> = (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
            .collect();
        let _ = g.write_all(&garbage).await;
        let _ = g.shutdown().await;
        assert!(
            read_until_closed(&mut g, Duration::from_secs(10))
                .await
                .is_some(),
            "garbage connection closed"
        );

        // 1 MiB of headers: refused with 431.
        let mut big = TcpStream::connect(addr).await.unwrap();
        let mut req = b"GET / HTTP/1.1\r\nhost: server\r\n".to_vec();
        while req.len() < 1 << 20 {
            req.extend_from_slice(format!("x-filler: {}\r\n", "f".repeat(1000)).as_bytes());
        }
        let _ = big.write_all(&req).await;
        let rsp = read_until_closed(&mut big, Duration::from_secs(10))
            .await
            .expect("closed");
        assert!(
            rsp.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&rsp)
        );

        // A truncated HTTP/2 preface: closed after the detect timeout.
        let mut pri = TcpStream::connect(addr).await.unwrap();
        pri.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        assert!(
            read_until_closed(&mut pri, Duration::from_secs(6))
                .await
                .is_some(),
            "truncated preface closed"
        );

        // A valid preface followed by a malformed frame (SETTINGS whose
        // length is not a multiple of 6): GOAWAY and close.
        let mut h2 = TcpStream::connect(addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        h2.write_all(&[0, 0, 5, 0x4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        let rsp = read_until_closed(&mut h2, Duration::from_secs(6))
            .await
            .expect("bad frame closed");
        assert!(has_goaway(&rsp), "the proxy answered with GOAWAY: {rsp:?}");

        // Slowloris: a request line, then headers trickling one byte a
        // second, is cut off at the header read timeout (3 s here).
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let head = b"host: server\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut closed = false;
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 512];
            match timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(closed, "slowloris connection closed");

        // A client stalling inside a method name is closed at the detect
        // timeout (2 s here).
        let mut stall = TcpStream::connect(addr).await.unwrap();
        stall.write_all(b"GE").await.unwrap();
        assert!(
            read_until_closed(&mut stall, Duration::from_secs(6))
                .await
                .is_some(),
            "stalled client closed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(12),
            "closed in {:?}",
            start.elapsed()
        );

        assert!(
            good_request(addr).await.starts_with("HTTP/1.1 200"),
            "still serving after the offenders"
        );
        drop(idle);
    });
    let rss_loaded = server.proxy_rss().unwrap();
    assert!(
        rss_loaded < rss_idle + 64 * 1024 * 1024,
        "proxy memory bounded: idle {} KiB, after {} KiB",
        rss_idle / 1024,
        rss_loaded / 1024
    );

    let log = server.proxy.stderr_text();
    for needle in [
        "request head too large",
        "truncated HTTP/2 preface",
        "HTTP/2",
        "request head not received in time",
        "begin an HTTP request line",
    ] {
        assert_eq!(
            log.lines().filter(|l| l.contains(needle)).count().min(1),
            1,
            "one log line for {needle:?} in:\n{log}"
        );
    }
    let m = server.metrics().unwrap();
    assert!(m.sum("inbound_protocol_errors_total", &[]) >= 4.0, "{m}");
}
