//! What the lean-path targets share: an upstream on 127.0.0.1 that answers
//! every connection with the same bytes, and a lean-eligible `Forward` to
//! it (inbound, plaintext, no control plane).

use std::sync::Arc;
use std::time::Duration;

use strand_proxy::client::{Connector, HttpClient};
use strand_proxy::discovery::Route;
use strand_proxy::http::Forward;
use strand_proxy::metrics::{Direction, Metrics, NoTlsReason, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Splits the input at the position its first byte names: what the client
/// sends, and what the upstream answers.
pub fn split(data: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let (&at, rest) = data.split_first()?;
    let at = usize::from(at) * rest.len() / 256;
    let (client, upstream) = rest.split_at(at);
    Some((client, upstream.to_vec()))
}

/// Starts the upstream (inside a runtime) and returns a `Forward` to it.
pub async fn forward_to_upstream(answer: Vec<u8>) -> Forward {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let answer = answer.clone();
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
    forward
}
