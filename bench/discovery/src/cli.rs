//! Command-line flags and the plan they make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

/// Measures how `strand-controller local` holds up with many endpoints and
/// many `Destination/Get` watchers: its memory, and how long one endpoint
/// change takes to reach every watcher. Needs root (it runs the controller
/// in a network namespace of its own).
#[derive(Debug, Parser)]
#[command(name = "strand-bench-discovery", version)]
pub struct Args {
    /// Pods (all ready endpoints of one service).
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Concurrent `Destination/Get` streams on the service.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Readiness flips, each timed until every watcher has seen it.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// HTTP/2 connections the watchers are spread over.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// A short run: 1,000 endpoints, 100 watchers, 5 rounds (overrides those flags).
    #[arg(long)]
    quick: bool,
    /// Pause between rounds, in milliseconds, so that one round's clean-up
    /// does not run into the next round's measurement.
    #[arg(long, default_value_t = 200)]
    pause_ms: u64,
    /// How long to wait for all watchers to get their initial set, and for
    /// one round to reach all watchers, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The directory holding `strand-controller` (default: next to this binary).
    #[arg(long, env = "STRAND_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// An environment variable for the controller, e.g.
    /// `MALLOC_ARENA_MAX=1` (repeatable; for experiments).
    #[arg(long = "controller-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    controller_env: Vec<(String, String)>,
    /// Record the controller with `perf record -e cpu-clock --call-graph dwarf` during
    /// `--perf-phase`, into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Which part `--perf` records.
    #[arg(long, value_enum, default_value_t = Phase::Rounds)]
    perf_phase: Phase,
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub endpoints: usize,
    pub watchers: usize,
    pub rounds: usize,
    pub connections: usize,
    pub pause: Duration,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    pub controller_bin: PathBuf,
    pub controller_env: Vec<(String, String)>,
    pub perf: Option<(PathBuf, Phase)>,
}

/// A part of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Applying the pods.
    Load,
    /// Opening the watchers until each holds its initial set.
    Sync,
    /// The readiness flips.
    Rounds,
}

/// Pods get addresses from the controller's default pod CIDR, 10.42.0.0/16,
/// after the gateway (see `manifests::pod_ip`); this keeps them inside it.
const MAX_ENDPOINTS: usize = 65_000;

// === impl Args ===

impl Args {
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let (endpoints, watchers, rounds) = if self.quick {
            (1_000, 100, 5)
        } else {
            (self.endpoints, self.watchers, self.rounds)
        };
        if endpoints == 0 || endpoints > MAX_ENDPOINTS {
            bail!("--endpoints={endpoints} is not valid: must be between 1 and {MAX_ENDPOINTS}");
        }
        if watchers == 0 {
            bail!("--watchers=0 is not valid: must be at least 1");
        }
        if self.connections == 0 || self.connections > watchers {
            bail!(
                "--connections={} is not valid: must be between 1 and the number of watchers ({watchers})",
                self.connections
            );
        }
        // Where `strand_testkit::bin_path` looks for a binary that is not a
        // test (its own directory), but as an error instead of a panic.
        let bin_dir = match &self.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let controller_bin = bin_dir.join("strand-controller");
        if !controller_bin.is_file() {
            bail!(
                "{} not found; build it with `cargo build --release --bins` or pass --bin-dir",
                controller_bin.display()
            );
        }
        Ok(Plan {
            endpoints,
            watchers,
            rounds,
            connections: self.connections,
            pause: Duration::from_millis(self.pause_ms),
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            json: self.json.clone(),
            controller_bin,
            controller_env: self.controller_env.clone(),
            perf: self.perf.clone().map(|p| (p, self.perf_phase)),
        })
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}
