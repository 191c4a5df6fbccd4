//! The lean HTTP/1 path (`http::lean`) between arbitrary client bytes and
//! an arbitrary upstream answer: request eligibility and head rewriting,
//! response head parsing, body framing (lengths, the chunked decoder, close
//! delimiting) and the hand-off to the general path. The first byte says
//! where the input splits into what the client sends and what the upstream
//! (a listener on 127.0.0.1 in this process) answers to every connection.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strand_proxy::config::Config;
use strand_proxy::http::lean;
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
        let _ = client.write_all(client_bytes).await;
        let _ = client.shutdown().await;
        let reset = AtomicBool::new(false);
        let drain = tokio_util::sync::CancellationToken::new();
        let mut buf = bytes::BytesMut::new();
        let served = lean::serve(&mut server, &mut buf, &forward, &config, &drain, &reset);
        let _ = tokio::time::timeout(Duration::from_secs(2), served).await;
        drop(server);
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut sink)).await;
    });
});
