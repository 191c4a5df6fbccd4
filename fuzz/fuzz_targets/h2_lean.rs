//! The lean HTTP/2 path (`http::lean_h2`) between arbitrary client bytes
//! (after a valid preface) and an arbitrary upstream answer: frame
//! handling on both connections, HPACK, field checks, stream mapping,
//! flow control and the fallback to the general path. The first byte says
//! where the input splits into what the client sends and what the upstream
//! (a listener on 127.0.0.1 in this process) answers to every connection.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strand_proxy::client::{Connector, HttpClient};
use strand_proxy::config::Config;
use strand_proxy::discovery::Route;
use strand_proxy::http::{Forward, lean_h2};
use strand_proxy::metrics::{Direction, Metrics, NoTlsReason, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = usize::from(split) * rest.len() / 256;
    let (client_bytes, upstream_bytes) = rest.split_at(at);
    let upstream_bytes = upstream_bytes.to_vec();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let answer = upstream_bytes.clone();
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    let _ = tcp.read(&mut sink).await;
                    let _ = tcp.write_all(&answer).await;
                });
            }
        });
        let metrics = Metrics::new();
        let connector = Arc::new(Connector { direction: Direction::Inbound, connect_timeout: Duration::from_millis(100), metrics: metrics.clone(), identity: None });
        let forward = Forward {
            client: HttpClient::new(connector, 1, Duration::from_secs(1)),
            metrics,
            target,
            target_addr: target.to_string().into(),
            route: Route::Direct,
            resolver: None,
            tls: Tls::NoIdentity(NoTlsReason::NoTlsFromRemote),
            direction: Direction::Inbound,
            blocked: None,
            reset_client: None,
            handles: Default::default(),
            taps: Default::default(),
            source: "127.0.0.1:1".parse().expect("addr"),
            tracer: None,
        };
        assert!(forward.lean_eligible());
        let config = Config::default().http;
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let _ = client.write_all(&preface).await;
        let _ = client.write_all(client_bytes).await;
        let _ = client.shutdown().await;
        let drain = tokio_util::sync::CancellationToken::new();
        let served = lean_h2::serve(&mut server, &forward, &config, drain);
        let _ = tokio::time::timeout(Duration::from_secs(2), served).await;
        drop(server);
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut sink)).await;
    });
});
