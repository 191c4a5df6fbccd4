//! `strand-bench-discovery`: how the local-mode control plane holds up with
//! many endpoints and many watchers (DESIGN.md section 7's method, applied
//! to the control plane).
//!
//! ```text
//!   this process (a thread in netns N)             netns N
//!   ┌──────────────────────────────┐   apply, PUT status   ┌───────────────────────────┐
//!   │ loader / rounds ─────────────┼──── 127.0.0.1:8089 ──►│ strand-controller local   │
//!   │ watchers: 10 conns x 100 ◄───┼──── 10.42.0.1:8086 ───│ store ─► index ─► gRPC    │
//!   └──────────────────────────────┘  Destination/Get      └───────────────────────────┘
//!                                                     RSS, CPU ◄── /proc/<pid>
//! ```
//!
//! It starts `strand-controller local` in a network namespace of its own,
//! stores one service with `--endpoints` ready pods, opens `--watchers`
//! `Destination/Get` streams on it and times `--rounds` readiness flips of
//! one pod until every stream has seen each; it reads the controller's
//! memory at every step, prints one table and writes JSON.
//!
//! `strand-bench-discovery metrics-api` measures the metrics API instead:
//! `strand-controller metrics-api` scraping proxies whose metrics this
//! process serves with the proxy's own encoder (see `metrics_api.rs`).

#![forbid(unsafe_code)]

mod cli;
mod control_plane;
mod light;
mod manifests;
mod metrics_api;
mod perf;
mod report;
mod scenario;
mod watchers;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    let run = match cli::Args::parse().plan() {
        Ok(run) => run,
        Err(e) => {
            eprintln!("strand-bench-discovery: {e:#}");
            // EX_USAGE from sysexits.h.
            return ExitCode::from(64);
        }
    };
    let result = match &run {
        cli::Run::Fanout(plan) => {
            if !strand_sys::is_root() {
                eprintln!(
                    "strand-bench-discovery: needs root: it creates a network namespace and runs \
                     strand-controller in it; run `sudo target/release/strand-bench-discovery`"
                );
                // EX_NOPERM from sysexits.h.
                return ExitCode::from(77);
            }
            fanout(plan).and_then(|report| output(&report.table(), &report, plan.json.as_deref()))
        }
        cli::Run::MetricsApi(plan) => metrics_api(plan)
            .and_then(|report| output(&report.table(), &report, plan.json.as_deref())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-bench-discovery: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fanout(plan: &cli::Plan) -> anyhow::Result<report::Report> {
    // Dropped last: deletes the namespace, with the controller's bridge.
    let net = strand_testkit::Network::new("benchdisc")?;
    strand_sys::net::ip_in(net.ns_name(), &["link", "set", "lo", "up"])
        .context("bringing lo up in the benchmark's namespace")?;
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("bench".into())
            .spawn_scoped(s, || in_netns(plan, &net))
            .context("starting the benchmark thread")?;
        thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the benchmark thread panicked")))
    })
}

/// Everything on the host's loopback: no namespace, no root.
fn metrics_api(plan: &cli::MetricsApiPlan) -> anyhow::Result<metrics_api::Report> {
    runtime()?.block_on(async {
        tokio::select! {
            report = metrics_api::run(plan) => report,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        }
    })
}

/// Prints the table and writes the JSON.
fn output(table: &str, report: &impl serde::Serialize, json: Option<&Path>) -> anyhow::Result<()> {
    println!("{table}");
    if let Some(path) = json {
        let json = serde_json::to_string_pretty(report).context("serializing the results")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

/// Two workers, as the controller has: the benchmark's side shares the
/// machine's cores with what it measures.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")
}

/// Runs the scenario on this thread, moved into the namespace first: the
/// API listens on the namespace's loopback and gRPC on its bridge, and
/// threads the runtime starts inherit the namespace.
fn in_netns(plan: &cli::Plan, net: &strand_testkit::Network) -> anyhow::Result<report::Report> {
    strand_sys::enter_netns(&net.netns_path())
        .with_context(|| format!("entering namespace {}", net.ns_name()))?;
    runtime()?.block_on(async {
        tokio::select! {
            report = scenario::run(plan, net.ns_name()) => report,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        }
    })
}
