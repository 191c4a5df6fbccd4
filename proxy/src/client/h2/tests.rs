//! The upstream HTTP/2 client against the `h2` crate's server, over an
//! in-memory stream whose writes are recorded.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::*;
use crate::metrics::{Direction, Metrics, NoTlsReason, Peer, TcpLabels, Tls};

/// The client's end of the stream: every write call's bytes, in order.
struct Recording {
    io: DuplexStream,
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.writes.lock().unwrap().push(buf[..n].to_vec());
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn tcp_metrics() -> TcpConn {
    Metrics::new().tcp_open(TcpLabels {
        direction: Direction::Outbound,
        peer: Peer::Dst,
        target_addr: "192.0.2.1:80".into(),
        tls: Tls::NoIdentity(NoTlsReason::NotProvidedByServiceDiscovery),
    })
}

/// A client connection on one end of an in-memory stream, and the other
/// end for a server.
async fn connect() -> (H2Conn, DuplexStream, Arc<Mutex<Vec<Vec<u8>>>>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let io = Recording {
        io: client,
        writes: writes.clone(),
    };
    let addr = "192.0.2.1:80".parse().unwrap();
    let conn = handshake(io, addr, tcp_metrics(), || {}).await.unwrap();
    (conn, server, writes)
}

fn post(body: &'static str) -> Request<RequestBody> {
    Request::post("http://svc.test/echo")
        .version(http::Version::HTTP_2)
        .body(RequestBody::buffered(
            Bytes::from_static(body.as_bytes()),
            None,
        ))
        .unwrap()
}

/// The frame types (and stream ids) found in one write's bytes, which
/// must hold whole frames.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if bytes.starts_with(preface) {
        bytes = &bytes[preface.len()..];
    }
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push((bytes[3], id));
        bytes = &bytes[9 + len..];
    }
    assert!(bytes.is_empty(), "a write ended mid-frame");
    out
}

#[tokio::test]
async fn headers_and_body_leave_in_one_write() {
    let (conn, server, writes) = connect().await;
    let srv = tokio::spawn(async move {
        let mut h2 = h2::server::handshake(server).await.unwrap();
        while let Some(Ok((req, mut respond))) = h2.accept().await {
            let mut recv = req.into_body();
            let mut body = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.unwrap();
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            let body = Bytes::from(body);
            let mut send = respond.send_response(Response::new(()), false).unwrap();
            send.send_data(body, true).unwrap();
        }
    });
    for _ in 0..3 {
        let rsp = conn.send(post("hello, upstream")).await.unwrap();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello, upstream");
    }
    // HEADERS (1) and DATA (0) of every stream share a write.
    let writes = writes.lock().unwrap().clone();
    for id in [1, 3, 5] {
        let together = writes.iter().any(|w| {
            let f = frames(w);
            f.contains(&(1, id)) && f.contains(&(0, id))
        });
        assert!(
            together,
            "stream {id}: HEADERS and DATA in separate writes: {writes:?}"
        );
    }
    drop(conn);
    srv.abort();
}

#[tokio::test]
async fn a_goaway_hands_the_request_back_unsent() {
    let (conn, server, _) = connect().await;
    let srv = tokio::spawn(async move {
        let mut h2 = h2::server::handshake(server).await.unwrap();
        let (_req, mut respond) = h2.accept().await.unwrap().unwrap();
        respond.send_response(Response::new(()), true).unwrap();
        h2.graceful_shutdown();
        // Drive the connection so the GOAWAY goes out; streams opened
        // meanwhile are refused (dropped unanswered).
        while let Some(Ok(_)) = h2.accept().await {}
    });
    let rsp = conn.send(post("first")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    // The GOAWAY arrives; the next request is handed back, not failed.
    let mut handed_back = false;
    for _ in 0..100 {
        match conn.send(post("second")).await {
            Err(SendError::Closed(req)) => {
                assert_eq!(req.uri().path(), "/echo");
                handed_back = true;
                break;
            }
            Ok(_) | Err(SendError::Failed(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    assert!(handed_back, "no request was handed back after the GOAWAY");
    assert!(conn.is_closed());
    srv.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_ping_fails_the_open_streams() {
    let (conn, server, _) = connect().await;
    let (got_request, request) = tokio::sync::oneshot::channel();
    let srv = tokio::spawn(async move {
        let mut h2 = h2::server::handshake(server).await.unwrap();
        let stream = h2.accept().await.unwrap().unwrap();
        let _ = got_request.send(());
        // Hold the stream and the connection without polling it again:
        // PINGs go unanswered.
        std::future::pending::<()>().await;
        drop((h2, stream));
    });
    let send = tokio::spawn(async move { conn.send(post("anyone there?")).await });
    request.await.unwrap();
    // Paused time moves on once everything waits: the ping after 10 s,
    // then its 10 s timeout.
    let sent = tokio::time::timeout(std::time::Duration::from_secs(60), send)
        .await
        .expect("the request still waits a minute later")
        .unwrap();
    match sent {
        Err(SendError::Failed(ProxyError::UpstreamH2 { .. })) => {}
        Err(SendError::Failed(e)) => panic!("unexpected error {e}"),
        Err(SendError::Closed(_)) => panic!("the request was handed back"),
        Ok(rsp) => panic!("a response arrived: {rsp:?}"),
    }
    srv.abort();
}
