//! `strand-controller`: the control plane's components.
//!
//! `local` runs everything local mode needs in one process (the embedded
//! store and its API, the index, discovery gRPC, identity, DNS, the pod
//! bridge); `destination` runs the discovery gRPC APIs alone, fed from a
//! store's API; `identity` runs the identity service alone; `metrics-api`
//! runs the metrics API alone (scraping the proxies, or reading
//! Prometheus).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod admin;
mod destination;
mod feed;
mod identity;
mod local;
mod metrics;

/// The strand control plane.
#[derive(Parser)]
#[command(name = "strand-controller", version)]
struct Cli {
    /// Log filter, e.g. `info` or `warn,strand_controller=debug`.
    #[arg(
        long,
        global = true,
        env = "STRAND_CONTROLLER_LOG",
        default_value = "info"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// All of local mode in one process: store, management API, index,
    /// destination and policy gRPC, identity, DNS, and the pod bridge (needs
    /// root).
    Local(local::LocalArgs),
    /// The discovery gRPC APIs alone (destination, outbound and inbound
    /// policy), fed from a running store's management API.
    Destination(destination::DestinationArgs),
    /// The identity service alone: Identity/Certify over TLS, signing
    /// workload certificates with the issuer in --identity-dir.
    ///
    /// Standalone, it cannot see pods: a token is checked for its signature
    /// and for coming from the address it was minted for, but not for its
    /// pod still existing (local mode checks that too).
    Identity(identity::IdentityArgs),
    /// The metrics API alone (`strand viz stat/edges`): scrapes every
    /// meshed proxy's /metrics and keeps a bounded window, or, with
    /// --prometheus-url, answers from a Prometheus server.
    MetricsApi(metrics::MetricsApiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --log-level {:?} is not valid: {e}", cli.log_level);
            return ExitCode::from(64);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Local(args) => local::run(args).await,
            Command::Destination(args) => destination::run(args).await,
            Command::Identity(args) => identity::run(args).await,
            Command::MetricsApi(args) => metrics::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
