//! `strand-controller metrics-api` as a child process, stopped on drop, and
//! the few calls the benchmark makes to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::cluster::Cluster;
use crate::cli::MetricsApiPlan;
use crate::control_plane::{self, Usage};

/// Start-up is a few binds; seconds mean it is stuck.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// For one call to the API; a `stat` over 100 proxies takes milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A running metrics API.
pub struct MetricsApi {
    child: Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

/// One scrape target as `GET /api/v1/targets` shows it.
#[derive(Debug, Deserialize)]
pub struct Target {
    pub pod: String,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_success_unix: Option<f64>,
    /// Series the store keeps for it (after dropping labels it does not use).
    pub series: usize,
}

/// What the benchmark reads of a `stat` answer.
#[derive(Debug, Deserialize)]
pub struct StatAnswer {
    pub rows: Vec<StatRow>,
}

#[derive(Debug, Deserialize)]
pub struct StatRow {
    pub rps: f64,
}

// === impl MetricsApi ===

impl MetricsApi {
    /// Starts `strand-controller metrics-api` on the cluster's management
    /// API, logging into `dir`, and waits until it answers.
    pub async fn start(
        plan: &MetricsApiPlan,
        cluster: &Cluster,
        dir: &Path,
    ) -> anyhow::Result<MetricsApi> {
        let addr = free_port()?;
        let log_path = dir.join("metrics-api.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&plan.controller_bin)
            .arg("metrics-api")
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(&cluster.state_dir)
            .arg("--api-addr")
            .arg(cluster.api_addr.to_string())
            .arg("--scrape-interval")
            .arg(format!("{}ms", plan.interval.as_millis()))
            .arg("--metrics-retention")
            .arg(format!("{}ms", plan.retention.as_millis()))
            .env("STRAND_CONTROLLER_LOG", "warn")
            .envs(plan.controller_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", plan.controller_bin.display()))?;
        let mut api = MetricsApi {
            child,
            addr,
            log_path,
        };
        api.wait_up().await.map_err(|e| {
            e.context(format!(
                "the metrics API did not start; its log:\n{}",
                api.log_tail()
            ))
        })?;
        Ok(api)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log_tail(&self) -> String {
        control_plane::log_tail(&self.log_path)
    }

    /// Its memory and CPU so far; an error once it has exited.
    pub fn usage(&mut self) -> anyhow::Result<Usage> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the metrics API exited with {status}");
        }
        control_plane::usage_of(self.pid())
    }

    pub async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let body = self.get_ok("/api/v1/targets").await?;
        serde_json::from_slice(&body).context("parsing /api/v1/targets")
    }

    /// `GET path`, which must answer 200 OK.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = get(self.addr, path).await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(body)
    }

    async fn wait_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("it exited with {status}");
            }
            if matches!(get(self.addr, "/ready").await, Ok((StatusCode::OK, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not up after {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MetricsApi {
    fn drop(&mut self) {
        control_plane::stop(&mut self.child);
    }
}

/// A port for the metrics API: bound and released at once. The API does not
/// report a port it picked itself; between this release and its bind
/// nothing else on an idle loopback is likely to take the port, and if
/// something does, the API's bind error ends the run with its log.
fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("finding a free port for the metrics API")?;
    Ok(probe.local_addr()?)
}

/// One HTTP/1 GET on a fresh connection, as `strand viz` makes them.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let req = Request::get(path)
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let call = async {
            let rsp = send.send_request(req).await?;
            let status = rsp.status();
            let body = rsp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let mut call = std::pin::pin!(call);
        tokio::select! {
            res = &mut call => res,
            // The connection ends on its own only once the answer is in
            // (or on an error).
            done = conn => {
                done?;
                call.await
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET http://{addr}{path}"))
}
