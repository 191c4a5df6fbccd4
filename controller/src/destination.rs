//! `strand-controller destination`: the discovery gRPC APIs on their own,
//! fed from a store's management API (list, then watch), as Linkerd's
//! destination controller is fed from the Kubernetes API.

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::TrustDomain;
use strand_controller_index::Index;
use strand_controller_local::{AdminToken, ApiClient};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct DestinationArgs {
    /// Where to serve Destination, OutboundPolicies and InboundServerPolicies.
    #[arg(long, default_value = "0.0.0.0:8086")]
    listen: SocketAddr,
    /// The management API to watch.
    #[arg(long, default_value = "127.0.0.1:8089")]
    api_addr: SocketAddr,
    /// The file holding the management API's admin token.
    #[arg(long, default_value = "/var/lib/strand/admin-token")]
    token_file: PathBuf,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// Reconnect backoff bounds when the API is away.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub async fn run(args: DestinationArgs) -> anyhow::Result<()> {
    let token = AdminToken::read(&args.token_file)
        .with_context(|| format!("reading the admin token {}", args.token_file.display()))?;
    let client = ApiClient::connect(args.api_addr, token);
    let index = Index::new(&args.cluster_domain, TrustDomain::default());
    let watching = tokio::spawn(watch_forever(client, Arc::clone(&index)));

    let discovery = strand_controller_grpc::Discovery::new(Arc::clone(&index));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, api = %args.api_addr, "destination serving");
    let stop = CancellationToken::new();
    let d = discovery.clone();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        signal_stop.cancel();
    });
    strand_controller_grpc::server()
        .add_routes(discovery.routes())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                stop.cancelled().await;
                d.shutdown();
            },
        )
        .await
        .context("gRPC server")?;
    watching.abort();
    Ok(())
}

/// Keeps the index equal to the store; while the API is away the index
/// keeps its last state, so proxies keep their endpoints.
async fn watch_forever(client: ApiClient, index: Arc<Index>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match client.watch().await {
            Ok(events) => {
                tracing::info!("watching the store");
                backoff = BACKOFF_MIN;
                let events = events.take_while(|ev| {
                    let ok = ev.is_ok();
                    if let Err(e) = ev {
                        tracing::warn!("store watch failed: {e}");
                    }
                    std::future::ready(ok)
                });
                crate::feed::feed(
                    Arc::clone(&index),
                    events.filter_map(|ev| std::future::ready(ev.ok())),
                )
                .await;
                tracing::warn!("store watch ended; reconnecting");
            }
            Err(e) => tracing::warn!("cannot watch the store: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
