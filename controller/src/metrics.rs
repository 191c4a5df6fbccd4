//! The metrics API: `strand-controller metrics-api`, and the same in the
//! all-in-one local mode.
//!
//! ```text
//!  pods (store or management API) ──every 2 s──▶ scrape targets (watch)
//!       scrape::run ──GET <pod-ip>:4191/metrics every 10 s──▶ viz Store (bounded window)
//!  MetricsApi (127.0.0.1:8085) ── stat / edges ──▶ Store, or Prometheus (--prometheus-url)
//!
//!  local mode: proxies ──OTLP/gRPC Export──▶ trace collector (gateway:4317) ──▶ TraceStore
//!              MetricsApi ── /api/v1/traces ──▶ the same TraceStore
//! ```

use anyhow::Context as _;
use clap::Args;
use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::{Kind, Resource};
use strand_viz::api::{InventorySource, MetricsApi};
use strand_viz::stat::Inventory;
use strand_viz::{PrometheusClient, ScrapeConfig, ScrapeTarget, TraceStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the list of proxies to scrape is refreshed.
const TARGETS_REFRESH: Duration = Duration::from_secs(2);

/// How the embedded scraper runs (shared by both commands).
#[derive(Args, Debug, Clone)]
pub struct ScrapeArgs {
    /// How often every proxy's /metrics is read.
    #[arg(long, default_value = "10s", value_parser = crate::identity::parse_duration)]
    pub scrape_interval: Duration,
    /// How long one scrape may take (connect, headers and body).
    #[arg(long, default_value = "3s", value_parser = crate::identity::parse_duration)]
    pub scrape_timeout: Duration,
    /// How much history the embedded store keeps: the longest `-t` window
    /// `strand viz stat` can ask for.
    #[arg(long, default_value = "10m", value_parser = crate::identity::parse_duration)]
    pub metrics_retention: Duration,
}

#[derive(Args, Debug)]
pub struct MetricsApiArgs {
    /// Where the metrics API listens.
    #[arg(long, default_value = "127.0.0.1:8085")]
    addr: SocketAddr,
    /// The local control plane whose pods to scrape: its state directory
    /// (for the admin token) ...
    #[arg(long, env = "STRAND_STATE_DIR", default_value = "/var/lib/strand")]
    state_dir: PathBuf,
    /// ... and its management API.
    #[arg(long, default_value = "127.0.0.1:8089")]
    api_addr: SocketAddr,
    /// Answer from this Prometheus server (which scrapes the proxies)
    /// instead of scraping them here.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    #[command(flatten)]
    scrape: ScrapeArgs,
}

/// Where the pods and services come from.
trait ListResources: Send + Sync + 'static {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Resource>, String>>;
}

/// Pods and services from a list; with Prometheus, the proxies it cannot
/// scrape are the stale ones (the API marks them itself from its own
/// store).
struct Source<L> {
    list: L,
    prometheus: Option<PrometheusClient>,
}

// === impl ListResources ===

impl ListResources for strand_controller_local::Store {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Resource>, String>> {
        Box::pin(async move {
            let mut all = strand_controller_local::Store::list(self, Kind::Pod, None);
            all.extend(strand_controller_local::Store::list(
                self,
                Kind::Service,
                None,
            ));
            Ok(all)
        })
    }
}

impl ListResources for strand_controller_local::ApiClient {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Resource>, String>> {
        Box::pin(async move {
            let mut all = strand_controller_local::ApiClient::list(self, Kind::Pod, None)
                .await
                .map_err(|e| e.to_string())?;
            all.extend(
                strand_controller_local::ApiClient::list(self, Kind::Service, None)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            Ok(all)
        })
    }
}

// === impl Source ===

impl<L: ListResources> InventorySource for Source<L> {
    fn inventory(&self) -> BoxFuture<'_, Result<Inventory, String>> {
        Box::pin(async move {
            let resources = self.list.list().await?;
            let mut inv = strand_viz::inventory::from_resources(&resources);
            if let Some(prom) = &self.prometheus {
                inv.stale = prom.down_targets().await.map_err(|e| e.to_string())?;
            }
            Ok(inv)
        })
    }

    fn targets(&self) -> BoxFuture<'_, Result<Vec<ScrapeTarget>, String>> {
        Box::pin(async move {
            let resources = self.list.list().await?;
            Ok(strand_viz::inventory::scrape_targets(&resources))
        })
    }
}

/// `strand-controller metrics-api`.
pub async fn run(args: MetricsApiArgs) -> anyhow::Result<()> {
    let client = strand_controller_local::ApiClient::from_state_dir(&args.state_dir, args.api_addr)
        .context("reaching the control plane's management API")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding the metrics API to {}", args.addr))?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let addr = serve(
        client,
        listener,
        args.prometheus_url.as_deref(),
        None,
        &args.scrape,
        &mut tasks,
        &shutdown,
    )?;
    tracing::info!(%addr, prometheus = ?args.prometheus_url, "metrics API up");
    crate::shutdown_signal().await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The local mode's metrics API: pods straight from the store, and the
/// traces the collector feeds `traces`.
pub fn start_local(
    store: strand_controller_local::Store,
    listener: tokio::net::TcpListener,
    traces: Arc<TraceStore>,
    scrape: &ScrapeArgs,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    serve(store, listener, None, Some(traces), scrape, tasks, shutdown)
}

/// The local mode's trace collector: OTLP/gRPC `TraceService/Export` on
/// `addr`, into `traces`, until `shutdown`. Returns the address bound.
pub async fn start_trace_collector(
    addr: SocketAddr,
    traces: Arc<TraceStore>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| {
            format!("binding the trace collector (OTLP/gRPC) to {addr} (another port: --trace-collector-port)")
        })?;
    let local = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(strand_otlp::TraceServer::new(traces))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .map_err(|e| anyhow::anyhow!("trace collector {local}: {e}"))
    });
    Ok(local)
}

fn serve<L: ListResources>(
    list: L,
    listener: tokio::net::TcpListener,
    prometheus_url: Option<&str>,
    traces: Option<Arc<TraceStore>>,
    scrape: &ScrapeArgs,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let (api, source) = match prometheus_url {
        Some(url) => {
            let prom = PrometheusClient::new(url).context("--prometheus-url")?;
            let source = Arc::new(Source {
                list,
                prometheus: Some(prom.clone()),
            });
            (
                MetricsApi::new(Arc::new(prom), source.clone(), None, traces),
                source,
            )
        }
        None => {
            let store = Arc::new(strand_viz::Store::new(scrape.metrics_retention));
            let source = Arc::new(Source {
                list,
                prometheus: None,
            });
            let (tx, rx) = watch::channel(Vec::new());
            {
                let (source, stop) = (Arc::clone(&source), shutdown.clone());
                tasks.spawn(async move {
                    feed_targets(&*source, tx, stop).await;
                    Ok(())
                });
            }
            let config = ScrapeConfig {
                interval: scrape.scrape_interval,
                timeout: scrape.scrape_timeout,
                ..ScrapeConfig::default()
            };
            {
                let (store, stop) = (Arc::clone(&store), shutdown.clone());
                tasks.spawn(async move {
                    strand_viz::run(config, store, rx, stop.cancelled_owned()).await;
                    Ok(())
                });
            }
            (
                MetricsApi::new(store.clone(), source.clone(), Some(store), traces),
                source,
            )
        }
    };
    drop(source);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        api.serve(listener, stop.cancelled_owned()).await;
        Ok(())
    });
    Ok(addr)
}

/// Keeps the scrape targets equal to the meshed pods.
async fn feed_targets<L: ListResources>(
    source: &Source<L>,
    tx: watch::Sender<Vec<ScrapeTarget>>,
    stop: CancellationToken,
) {
    let mut warned = false;
    loop {
        match source.targets().await {
            Ok(targets) => {
                warned = false;
                tx.send_if_modified(|current| {
                    let changed = *current != targets;
                    if changed {
                        *current = targets;
                    }
                    changed
                });
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "metrics API: cannot list pods; scraping the last known ones");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TARGETS_REFRESH) => {}
        }
    }
}
