//! `strand-bench-propagation`: how long an applied change takes to reach
//! the traffic. A local mesh (`strand up`), a Service `echo` selecting one
//! of two workloads (`blue`, `green`), and a client pod sending HTTP/1
//! requests back to back to the Service's virtual IP through its proxy.
//! Each round flips the Service's selector through the management API and
//! times, from just before the apply, the first response served by the
//! other workload.
//!
//! ```text
//!   this process, in the client pod's netns           the mesh's netns
//!   ┌────────────────────────────────────┐  apply   ┌─────────────────────┐
//!   │ rounds: flip selector ─────────────┼─────────►│ strand-controller   │
//!   │ loop: GET http://<vip>:8080/ ──► proxy ──────►│  ─watch─► proxies   │
//!   │        x-served-by: blue-1|green-1 │          └─────────────────────┘
//!   └────────────────────────────────────┘
//! ```
//!
//! Run as root after `cargo build --release --bins`:
//! `sudo target/release/strand-bench-propagation [--rounds 20] [--json FILE]`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use strand_e2e::local::LocalMesh;
use strand_testkit::bin_path;

/// Endpoint-update propagation: apply a change -> first request routed by it.
#[derive(Parser, Debug)]
#[command(name = "strand-bench-propagation")]
struct Args {
    /// Selector flips to time.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Pause between rounds, so each starts from a settled state.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Report {
    rounds: usize,
    /// Apply call latency (until the store acknowledged), ms.
    apply_ms: Summary,
    /// From before the apply to the first response from the newly
    /// selected workload, ms.
    propagation_ms: Summary,
    requests: u64,
}

#[derive(serde::Serialize)]
struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !strand_sys::is_root() {
        eprintln!(
            "strand-bench-propagation: needs root (network namespaces, iptables); run it with sudo"
        );
        return std::process::ExitCode::from(77);
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-bench-propagation: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn service(color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: echo}}\nspec: {{selector: {{app: {color}}}, ports: [{{port: 8080}}]}}\n"
    )
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut mesh = LocalMesh::up("propagation")?;
    let out = mesh.apply(&service("blue"))?;
    if out.code != Some(0) {
        bail!("apply: {}", out.stderr);
    }
    let app = bin_path("strand-testapp");
    let app = app.to_str().context("path")?;
    for color in ["blue", "green"] {
        let label = format!("app={color}");
        mesh.spawn_run(
            color,
            &[
                "--name",
                color,
                "--label",
                &label,
                "--port",
                "8080",
                "--",
                app,
                "http",
                "--listen",
                "0.0.0.0:8080",
            ],
        )?;
    }
    mesh.spawn_run("client", &["--name", "client", "--", "sleep", "3600"])?;
    for w in ["blue", "green", "client"] {
        mesh.wait_ready_pods(w, 1, Duration::from_secs(60))?;
    }
    let svc = mesh.strand(&["get", "svc", "echo", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&svc.stdout)?;
    let vip = v["spec"]["clusterIP"]
        .as_str()
        .context("no clusterIP")?
        .to_string();
    let netns = strand_sys::net::netns_path(&format!("{}_default_client-1", mesh.name()));
    let state_dir = mesh.state_dir().to_path_buf();
    let rounds = args.rounds;
    let pause = Duration::from_millis(args.pause_ms);
    // A thread of its own: it enters the client pod's network namespace.
    let report = std::thread::spawn(move || -> anyhow::Result<Report> {
        strand_sys::enter_netns(&netns).context("entering the client pod")?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(measure(&vip, &state_dir, rounds, pause))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))??;
    println!(
        "endpoint-update propagation over {} rounds ({} requests):\n  apply acknowledged  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms\n  first routed request p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        report.rounds,
        report.requests,
        report.apply_ms.p50,
        report.apply_ms.p99,
        report.apply_ms.max,
        report.propagation_ms.p50,
        report.propagation_ms.p99,
        report.propagation_ms.max
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("results written to {}", path.display());
    }
    drop(mesh);
    Ok(())
}

async fn measure(
    vip: &str,
    state_dir: &std::path::Path,
    rounds: usize,
    pause: Duration,
) -> anyhow::Result<Report> {
    // The management API listens on the mesh namespace's loopback, which
    // this pod cannot reach: applies go through a thread over there.
    let applier = Applier::start(state_dir.to_path_buf())?;

    // The request loop: one HTTP/1 keep-alive connection through the proxy.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    let stop = Arc::new(AtomicBool::new(false));
    let url: http::Uri = format!("http://{vip}:8080/").parse()?;
    let looping = {
        let stop = stop.clone();
        let addr = format!("{vip}:8080");
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
                else {
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let req = http::Request::get(url.clone())
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .expect("a valid request");
                    let Ok(rsp) = send.send_request(req).await else {
                        break;
                    };
                    let by = rsp
                        .headers()
                        .get("x-served-by")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let _ = http_body_util::BodyExt::collect(rsp.into_body()).await;
                    sent += 1;
                    if tx.send((Instant::now(), by)).is_err() {
                        return sent;
                    }
                }
            }
            sent
        })
    };

    let mut apply_ms = Vec::new();
    let mut prop_ms = Vec::new();
    let mut color = "blue";
    for _ in 0..rounds {
        tokio::time::sleep(pause).await;
        while rx.try_recv().is_ok() {}
        color = if color == "blue" { "green" } else { "blue" };
        let t0 = Instant::now();
        applier.apply(service(color)).await?;
        apply_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let got = tokio::time::timeout_at(deadline.into(), rx.recv()).await;
            match got {
                Ok(Some((at, by))) if by.starts_with(color) && at >= t0 => {
                    prop_ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the request loop stopped"),
                Err(_) => bail!("no response from {color} within 10 s of the apply"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let requests = looping.await.unwrap_or(0);
    Ok(Report {
        rounds,
        apply_ms: summary(apply_ms),
        propagation_ms: summary(prop_ms),
        requests,
    })
}

/// Applies manifests from a thread in the mesh's host namespace, where the
/// management API listens on loopback.
struct Applier {
    tx: std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<anyhow::Result<()>>)>,
}

impl Applier {
    fn start(state_dir: PathBuf) -> anyhow::Result<Applier> {
        // The mesh namespace is the one holding the API; find it from
        // cluster.json's name (the cluster is named after it).
        let cluster = strand_controller_core::LocalCluster::load(&state_dir)?;
        let netns = strand_sys::net::netns_path(&cluster.name);
        let (tx, rx) =
            std::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<anyhow::Result<()>>)>(
            );
        std::thread::spawn(move || {
            if let Err(e) = strand_sys::enter_netns(&netns) {
                eprintln!("cannot enter {}: {e}", netns.display());
                return;
            }
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let client = match strand_controller_local::ApiClient::from_state_dir(
                &state_dir,
                cluster.api_addr,
            ) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return;
                }
            };
            while let Ok((text, done)) = rx.recv() {
                let res = rt
                    .block_on(client.apply(&text))
                    .map(|_| ())
                    .map_err(Into::into);
                let _ = done.send(res);
            }
        });
        Ok(Applier { tx })
    }

    async fn apply(&self, text: String) -> anyhow::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send((text, done))
            .map_err(|_| anyhow::anyhow!("the applier thread stopped"))?;
        wait.await?
    }
}

fn summary(mut v: Vec<f64>) -> Summary {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)]
    };
    Summary {
        p50: at(0.5),
        p99: at(0.99),
        max: v.last().copied().unwrap_or(0.0),
    }
}
