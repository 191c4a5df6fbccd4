//! `strand-bench`: measures strand against direct traffic and other proxies,
//! side by side in one run on one machine, in network namespaces made by
//! the test bed. Each scenario is its own isolated network with a `load` pod
//! and a `server` pod; every scenario is set up first and the measurements
//! are interleaved, so that drift on a noisy machine hits all of them alike.
//!
//! ```text
//!   direct       load ───────────────────────────────────────► app :8080/:9090
//!   strand-1hop  load ─────────────────────► iptables ► proxy ► app
//!   strand-pair  load ► iptables ► proxy ──► iptables ► proxy ► app
//!   strand-pair-disc  strand-pair to a Service VIP the load pod's proxy resolves
//!                     through discovery; plaintext between the proxies
//!   strand-pair-mtls  strand-pair-disc with identities: mTLS between the proxies
//!                     (HTTP/1 as HTTP/2); both from a control plane in strand-bench
//!   nginx-1hop   load ─────────────────────► nginx :8081/:8082 ► app
//!   nginx-redirect-1hop load ──────────────► iptables ► nginx ► app (HTTP/1.1)
//!   NAME         load ─────────────────────► other proxy :8083/:8084 ► app
//! ```
//!
//! Per scenario and protocol (HTTP/1.1, HTTP/2, gRPC) it records fixed-rate
//! latency with `oha`, saturation throughput with `wrk` or `h2load`, the CPU
//! the proxies on the path spent per 10k requests and their resident memory
//! idle and under load. With strand-pair-mtls it also measures how many new
//! mTLS connections (full handshakes) the server pod's proxy accepts per
//! second against plain TCP connections, and its CPU per 1,000 of them. It
//! prints the tables with medians of `--runs`, the ratios the project
//! tracks (among them mTLS against plaintext) and writes everything to JSON.

#![forbid(unsafe_code)]

mod bench;
mod callgrind;
mod cli;
mod handshake;
mod load;
mod measure;
mod report;
mod scenario;
mod stop;
mod tools;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("strand-bench: {e:#}");
            // EX_USAGE from sysexits.h, as strand-proxy uses for bad configuration.
            return ExitCode::from(64);
        }
    };
    if !strand_sys::is_root() {
        eprintln!(
            "strand-bench: needs root: it creates network namespaces, iptables rules inside them \
             and runs processes as other users; run `sudo bench/run.sh` (see bench/README.md)"
        );
        // EX_NOPERM from sysexits.h.
        return ExitCode::from(77);
    }
    match run(&plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(plan: &cli::Plan) -> anyhow::Result<()> {
    let stop = stop::StopFlag::install()?;
    let tools = tools::Tools::find(plan)?;
    let results = bench::run(plan, &tools, &stop)?;
    let report = report::Report::new(plan, &tools, results);
    println!("{}", report.table());
    println!("{}", report.ratios());
    if let Some(dir) = plan.json_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report).context("serializing the results")?;
    std::fs::write(&plan.json_path, json + "\n")
        .with_context(|| format!("writing {}", plan.json_path.display()))?;
    println!("results written to {}", plan.json_path.display());
    if stop.is_set() {
        anyhow::bail!("interrupted: the results above are partial");
    }
    Ok(())
}
