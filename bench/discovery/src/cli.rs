//! Command-line flags and the plan they make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

/// Measures how `strand-controller local` holds up with many endpoints and
/// many `Destination/Get` watchers: its memory, and how long one endpoint
/// change takes to reach every watcher. Needs root (it runs the controller
/// in a network namespace of its own).
///
/// `metrics-api` measures `strand-controller metrics-api` scraping many
/// proxies instead (no root needed).
#[derive(Debug, Parser)]
#[command(
    name = "strand-bench-discovery",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
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
    #[command(flatten)]
    common: Common,
    /// Record the controller with `perf record -e cpu-clock --call-graph dwarf` during
    /// `--perf-phase`, into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Which part `--perf` records.
    #[arg(long, value_enum, default_value_t = Phase::Rounds)]
    perf_phase: Phase,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// The metrics API's overhead: `strand-controller metrics-api` scraping
    /// `--proxies` proxy metrics endpoints (served in this process with the
    /// proxy's own encoder) every `--interval`; its CPU and memory over
    /// `--duration`. Needs no root.
    MetricsApi(MetricsApiArgs),
}

/// Flags of every mode.
#[derive(Debug, clap::Args)]
struct Common {
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
}

#[derive(Debug, clap::Args)]
struct MetricsApiArgs {
    /// Proxies to scrape (meshed pods, in workloads of 10).
    #[arg(long, default_value_t = 100)]
    proxies: usize,
    /// The scrape interval (`--scrape-interval`), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// How long CPU is measured once every proxy has been scraped, e.g.
    /// 120s or 12m (longer than `--retention` to see the store full).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    duration: Duration,
    /// How much history the metrics API keeps (`--metrics-retention`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    retention: Duration,
    #[command(flatten)]
    common: Common,
}

/// What one run does.
#[derive(Clone, Debug)]
pub enum Run {
    /// The `fanout` scenario (no subcommand).
    Fanout(Plan),
    /// `metrics-api`.
    MetricsApi(MetricsApiPlan),
}

/// What one `fanout` run does.
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

/// What one `metrics-api` run does.
#[derive(Clone, Debug)]
pub struct MetricsApiPlan {
    pub proxies: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub retention: Duration,
    pub json: Option<PathBuf>,
    pub controller_bin: PathBuf,
    pub controller_env: Vec<(String, String)>,
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

/// Each proxy is a listener and a few hundred KB of metrics in this
/// process; 1,000 is ten times the target and still fits in memory and
/// file descriptors.
const MAX_PROXIES: usize = 1_000;

/// A run measures at most this long: bounded, yet past the 10-minute
/// retention with room to spare.
const MAX_DURATION: Duration = Duration::from_secs(3600);

// === impl Args ===

impl Args {
    pub fn plan(&self) -> anyhow::Result<Run> {
        match &self.mode {
            None => self.fanout().map(Run::Fanout),
            Some(Mode::MetricsApi(args)) => args.plan().map(Run::MetricsApi),
        }
    }

    fn fanout(&self) -> anyhow::Result<Plan> {
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
        Ok(Plan {
            endpoints,
            watchers,
            rounds,
            connections: self.connections,
            pause: Duration::from_millis(self.pause_ms),
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            json: self.common.json.clone(),
            controller_bin: self.common.controller_bin()?,
            controller_env: self.common.controller_env.clone(),
            perf: self.perf.clone().map(|p| (p, self.perf_phase)),
        })
    }
}

// === impl MetricsApiArgs ===

impl MetricsApiArgs {
    fn plan(&self) -> anyhow::Result<MetricsApiPlan> {
        if self.proxies == 0 || self.proxies > MAX_PROXIES {
            bail!(
                "--proxies={} is not valid: must be between 1 and {MAX_PROXIES}",
                self.proxies
            );
        }
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(300) {
            bail!(
                "--interval={:?} is not valid: must be between 1s and 5m",
                self.interval
            );
        }
        if self.duration < self.interval || self.duration > MAX_DURATION {
            bail!(
                "--duration={:?} is not valid: must be between --interval ({:?}) and {MAX_DURATION:?}",
                self.duration,
                self.interval
            );
        }
        // The `stat` the benchmark times asks for a 60 s window, which the
        // metrics API refuses beyond its retention.
        if self.retention < Duration::from_secs(60) || self.retention < self.interval {
            bail!(
                "--retention={:?} is not valid: must be at least 1m and --interval ({:?})",
                self.retention,
                self.interval
            );
        }
        Ok(MetricsApiPlan {
            proxies: self.proxies,
            interval: self.interval,
            duration: self.duration,
            retention: self.retention,
            json: self.common.json.clone(),
            controller_bin: self.common.controller_bin()?,
            controller_env: self.common.controller_env.clone(),
        })
    }
}

// === impl Common ===

impl Common {
    /// Where `strand_testkit::bin_path` looks for a binary that is not a
    /// test (its own directory), but as an error instead of a panic.
    fn controller_bin(&self) -> anyhow::Result<PathBuf> {
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
        Ok(controller_bin)
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Parses `120`, `120s`, `500ms`, `11m`, as the controller's flags take them.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long")),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans `args`; `test` names the test, whose own directory stands for
    /// --bin-dir (tests run in parallel).
    fn parse(test: &str, args: &[&str]) -> anyhow::Result<Run> {
        let mut argv = vec!["strand-bench-discovery"];
        argv.extend_from_slice(args);
        // The plan needs `strand-controller` in --bin-dir; any file will do.
        let dir =
            std::env::temp_dir().join(format!("strand-bench-cli-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("strand-controller"), "")?;
        let dir_arg = dir.to_string_lossy().into_owned();
        argv.extend_from_slice(&["--bin-dir", &dir_arg]);
        let run = Args::try_parse_from(argv)
            .map_err(anyhow::Error::from)
            .and_then(|args| args.plan());
        let _ = std::fs::remove_dir_all(&dir);
        run
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("11m"), Ok(Duration::from_secs(660)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn no_subcommand_is_the_fanout_scenario() {
        let Run::Fanout(plan) = parse("fanout", &["--quick"]).expect("valid") else {
            panic!("not fanout");
        };
        assert_eq!(
            (plan.endpoints, plan.watchers, plan.rounds),
            (1_000, 100, 5)
        );
    }

    #[test]
    fn metrics_api_defaults_and_bounds() {
        let Run::MetricsApi(plan) = parse("metrics-api", &["metrics-api"]).expect("valid") else {
            panic!("not metrics-api");
        };
        assert_eq!(plan.proxies, 100);
        assert_eq!(plan.interval, Duration::from_secs(10));
        assert_eq!(plan.duration, Duration::from_secs(120));
        assert_eq!(plan.retention, Duration::from_secs(600));
        assert!(parse("metrics-api", &["metrics-api", "--proxies", "0"]).is_err());
        assert!(parse("metrics-api", &["metrics-api", "--duration", "5s"]).is_err());
        assert!(parse("metrics-api", &["metrics-api", "--duration", "2h"]).is_err());
        // The fanout flags do not apply to it.
        assert!(parse("metrics-api", &["--endpoints", "10", "metrics-api"]).is_err());
    }
}
