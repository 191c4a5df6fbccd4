//! The lean HTTP/2 path (`http::lean_h2`) between arbitrary client bytes
//! (after a valid preface and SETTINGS) and an arbitrary upstream answer:
//! frame handling on both connections, HPACK, field checks, stream
//! mapping, flow control and the hand-off to the general path. The first
//! byte says where the input splits into what the client sends and what
//! the upstream (a listener on 127.0.0.1 in this process) answers to every
//! connection.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strand_proxy::config::Config;
use strand_proxy::http::lean_h2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "lean_support.rs"]
mod lean_support;

fuzz_target!(|data: &[u8]| {
    let Some((client_bytes, upstream_bytes)) = lean_support::split(data) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let forward = lean_support::forward_to_upstream(upstream_bytes).await;
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
