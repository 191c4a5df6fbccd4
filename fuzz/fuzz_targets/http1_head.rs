//! The proxy's HTTP/1 server path (head parsing, header limits, hop-by-hop
//! handling, upgrade detection, error responses) fed arbitrary client
//! bytes over an in-memory connection. Requests are refused by the loop
//! guard, so nothing leaves the process.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strand_proxy::client::{Connector, HttpClient};
use strand_proxy::config::Config;
use strand_proxy::discovery::Route;
use strand_proxy::errors::Guard;
use strand_proxy::http::{Forward, serve_h1};
use strand_proxy::metrics::{Direction, Metrics, NoTlsReason, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let metrics = Metrics::new();
        let target = "127.0.0.1:9".parse().expect("addr");
        let connector = Arc::new(Connector { direction: Direction::Inbound, connect_timeout: Duration::from_millis(10), metrics: metrics.clone(), identity: None });
        let forward = Arc::new(Forward {
            client: HttpClient::new(connector, 1, Duration::from_secs(1)),
            metrics,
            target,
            target_addr: "127.0.0.1:9".into(),
            route: Route::Direct,
            resolver: None,
            tls: Tls::NoIdentity(NoTlsReason::NoTlsFromRemote),
            direction: Direction::Inbound,
            blocked: Some(Guard::Loop(target)),
            reset_client: None,
            handles: Default::default(),
            taps: Default::default(),
            source: "127.0.0.1:1".parse().expect("addr"),
            tracer: None,
        });
        let config = Config::default().http;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(async move {
            let _ = serve_h1(server, forward, &config, tokio_util::sync::CancellationToken::new()).await;
        });
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut sink)).await;
        serve.abort();
    });
});
