//! The command line, resolved in one place into a [`Plan`]: which scenarios
//! and protocols to measure, at what load, how often, and where the JSON goes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Parser;

use crate::load::Protocol;
use crate::scenario::{Kind, OtherProxy};

/// Benchmarks strand against direct traffic, nginx and other proxies, side
/// by side in network namespaces (needs root).
#[derive(Debug, Parser)]
#[command(
    name = "strand-bench",
    version,
    about,
    long_about = "Benchmarks strand against direct traffic, nginx and other proxies, side by side \
                  in network namespaces on this machine (needs root). For every scenario and \
                  protocol: fixed-rate latency (oha), saturation throughput (wrk for HTTP/1.1, \
                  h2load for HTTP/2 and gRPC), proxy CPU seconds per 10k requests and proxy \
                  memory, as the median of --runs runs. Prints one table and writes JSON.\n\n\
                  Scenarios: direct, strand-1hop, strand-pair, strand-pair-disc and \
                  strand-pair-mtls (discovery from a control plane inside strand-bench, without \
                  and with mTLS), nginx-1hop, nginx-redirect-1hop (HTTP/1.1 only), and one per \
                  --other-proxy. With strand-pair-mtls it also measures new mTLS connections per \
                  second into the server pod's proxy against plain TCP connections.",
    after_help = "Example: strand-bench --quick --protocols http1,grpc \
                  --other-proxy 'socat=socat TCP-LISTEN:{listen_port},fork,reuseaddr TCP:{upstream}'"
)]
pub struct Args {
    /// Repeat every measurement this many times and report the median [default: 3, 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,

    /// A fast check that everything works: 1 run, 5 s fixed-rate, 3 s saturation.
    #[arg(long)]
    pub quick: bool,

    /// Scenarios to run, comma-separated (default: all, including every --other-proxy).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub scenarios: Vec<String>,

    /// Protocols to measure, comma-separated (default: all).
    #[arg(long, value_name = "PROTOCOLS", value_delimiter = ',', value_enum)]
    pub protocols: Vec<Protocol>,

    /// Fixed request rate of the latency measurement, in requests per second
    /// [default: 1000, 100 with --callgrind].
    #[arg(long, value_name = "RPS", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Concurrent connections of every load generator.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub connections: u32,

    /// Length of each fixed-rate measurement, e.g. 20s, 1m [default: 20s, 5s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Length of each saturation measurement [default: 10s, 3s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub saturation_duration: Option<Duration>,

    /// Length of each handshake-rate measurement (strand-pair-mtls) [default: 10s, 5s with --quick].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_duration: Option<Duration>,

    /// Connections the handshake load keeps opening at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HANDSHAKE_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub handshake_concurrency: u32,

    /// Another proxy to measure like nginx, as NAME=COMMAND. COMMAND may use
    /// {listen} (0.0.0.0:PORT), {listen_port}, {upstream} (127.0.0.1:PORT) and
    /// {upstream_port}; it runs once for HTTP (upstream :8080) and once for
    /// gRPC (upstream :9090). Repeatable.
    #[arg(long = "other-proxy", value_name = "NAME=COMMAND", value_parser = OtherProxy::parse)]
    pub other_proxies: Vec<OtherProxy>,

    /// Extra environment for strand-proxy, as NAME=VALUE (e.g. STRAND_PROXY_LOG=warn). Repeatable.
    #[arg(long = "proxy-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub proxy_env: Vec<(String, String)>,

    /// Where to write the JSON results [default: bench/results/bench-<unix time>.json].
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// The oha binary [default: oha from PATH or ~/.cargo/bin].
    #[arg(long, value_name = "PATH", env = "STRAND_BENCH_OHA")]
    pub oha: Option<PathBuf>,

    /// Count instructions instead of timing: every strand-proxy runs under
    /// valgrind's callgrind, and each fixed-rate measurement reports the
    /// instructions the proxies on the path executed per request (user
    /// space, repeatable whatever else the machine does). Only strand's
    /// scenarios; no saturation or handshake measurements; latency and CPU
    /// columns are those of proxies slowed down by valgrind. Needs valgrind.
    #[arg(long)]
    pub callgrind: bool,
}

/// What to measure, with every default and `--quick` applied.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runs: u32,
    pub scenarios: Vec<Kind>,
    pub protocols: Vec<Protocol>,
    /// Requests per second of the fixed-rate measurement.
    pub rate: u32,
    pub connections: u32,
    pub duration: Duration,
    pub saturation_duration: Duration,
    pub handshake_duration: Duration,
    pub handshake_concurrency: u32,
    pub proxy_env: Vec<(String, String)>,
    pub json_path: PathBuf,
    pub oha: Option<PathBuf>,
    /// Count the proxies' instructions under callgrind (`--callgrind`).
    pub callgrind: bool,
    /// The command line, for the JSON.
    pub command_line: Vec<String>,
}

/// Defaults of a full run: 20 s at a fixed rate gives 20k requests at the
/// default 1000 rps, enough for a stable p99 (200 samples above it); 10 s of
/// saturation is enough for throughput to settle on 2 cores.
const DEFAULT_RUNS: u32 = 3;
const DEFAULT_RATE: u32 = 1000;
/// Under callgrind a proxy runs some 50 times slower: 100 rps keeps it
/// well below its capacity, so requests still arrive one by one as at
/// 1000 rps without valgrind.
const CALLGRIND_RATE: u32 = 100;
const DEFAULT_DURATION: Duration = Duration::from_secs(20);
const DEFAULT_SATURATION: Duration = Duration::from_secs(10);
const DEFAULT_HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes in flight: a few per core keeps the server proxy busy while
/// one waits on the network, without the queueing of far larger values.
/// At most a few thousand a second complete on 2 cores, so 10 s are tens
/// of thousands of handshakes, plenty for a stable rate.
const DEFAULT_HANDSHAKE_CONCURRENCY: u32 = 16;

/// `--quick`: long enough to see every path work and get rough numbers.
const QUICK_DURATION: Duration = Duration::from_secs(5);
const QUICK_SATURATION: Duration = Duration::from_secs(3);
const QUICK_HANDSHAKE: Duration = Duration::from_secs(5);

// === impl Args ===

impl Args {
    /// Applies defaults and checks the scenario names.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let mut all = Kind::all(&self.other_proxies)?;
        if self.callgrind {
            // Instructions are counted in strand's proxies only.
            all.retain(Kind::runs_strand);
        }
        let scenarios = select_scenarios(all, &self.scenarios).map_err(|e| {
            if self.callgrind {
                e.context("with --callgrind")
            } else {
                e
            }
        })?;
        // Always in the table's order, whatever the order on the command line.
        let protocols: Vec<Protocol> = Protocol::ALL
            .into_iter()
            .filter(|p| self.protocols.is_empty() || self.protocols.contains(p))
            .collect();
        let (runs, duration, saturation, handshake) = if self.quick {
            (1, QUICK_DURATION, QUICK_SATURATION, QUICK_HANDSHAKE)
        } else {
            (
                DEFAULT_RUNS,
                DEFAULT_DURATION,
                DEFAULT_SATURATION,
                DEFAULT_HANDSHAKE,
            )
        };
        let duration = self.duration.unwrap_or(duration);
        let saturation_duration = self.saturation_duration.unwrap_or(saturation);
        let handshake_duration = self.handshake_duration.unwrap_or(handshake);
        let second = Duration::from_secs(1);
        if duration < second || saturation_duration < second || handshake_duration < second {
            bail!("--duration, --saturation-duration and --handshake-duration must be at least 1s");
        }
        if self.callgrind && crate::callgrind::window(duration).is_none() {
            bail!("--callgrind needs a --duration of at least 3s to leave a window to count");
        }
        let json_path = self.json.clone().unwrap_or_else(default_json_path);
        Ok(Plan {
            runs: self.runs.unwrap_or(runs),
            scenarios,
            protocols,
            rate: self.rate.unwrap_or(if self.callgrind {
                CALLGRIND_RATE
            } else {
                DEFAULT_RATE
            }),
            connections: self.connections,
            duration,
            saturation_duration,
            handshake_duration,
            handshake_concurrency: self.handshake_concurrency,
            proxy_env: self.proxy_env.clone(),
            json_path,
            oha: self.oha.clone(),
            callgrind: self.callgrind,
            command_line: std::env::args().collect(),
        })
    }
}

fn select_scenarios(all: Vec<Kind>, wanted: &[String]) -> anyhow::Result<Vec<Kind>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    for name in wanted {
        if !all.iter().any(|k| k.name() == name) {
            let known: Vec<String> = all.iter().map(|k| k.name().to_string()).collect();
            bail!(
                "--scenarios: unknown scenario {name:?} (known: {})",
                known.join(", ")
            );
        }
    }
    Ok(all
        .into_iter()
        .filter(|k| wanted.iter().any(|w| w == k.name()))
        .collect())
}

/// `bench/results/bench-<unix time>.json`, next to this crate's sources when
/// run from the workspace, else in the current directory.
fn default_json_path() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let base = if bench_dir.is_dir() {
        bench_dir.join("results")
    } else {
        PathBuf::from("results")
    };
    base.join(format!("bench-{secs}.json"))
}

/// Parses `20`, `20s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 20s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn quick_sets_defaults_but_flags_win() {
        let args = Args::parse_from(["strand-bench", "--quick", "--duration", "7s"]);
        let plan = args.plan().unwrap();
        assert_eq!(plan.runs, 1);
        assert_eq!(plan.duration, Duration::from_secs(7));
        assert_eq!(plan.saturation_duration, QUICK_SATURATION);
        assert_eq!(plan.handshake_duration, QUICK_HANDSHAKE);
        assert_eq!(plan.protocols, Protocol::ALL.to_vec());
        assert_eq!(plan.scenarios.len(), 7);
    }

    #[test]
    fn mtls_scenarios_can_be_selected() {
        let args = Args::parse_from([
            "strand-bench",
            "--scenarios",
            "strand-pair-mtls,strand-pair-disc",
            "--handshake-concurrency",
            "4",
        ]);
        let plan = args.plan().unwrap();
        let names: Vec<&str> = plan.scenarios.iter().map(|k| k.name()).collect();
        // The table's order, whatever the command line's.
        assert_eq!(names, ["strand-pair-disc", "strand-pair-mtls"]);
        assert_eq!(plan.handshake_concurrency, 4);
        assert_eq!(plan.handshake_duration, DEFAULT_HANDSHAKE);
    }

    #[test]
    fn scenario_filter_includes_other_proxies() {
        let args = Args::parse_from([
            "strand-bench",
            "--other-proxy",
            "socat=socat TCP-LISTEN:{listen_port},fork TCP:{upstream}",
            "--scenarios",
            "direct,socat",
            "--protocols",
            "http1",
        ]);
        let plan = args.plan().unwrap();
        let names: Vec<&str> = plan.scenarios.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["direct", "socat"]);
        assert_eq!(plan.protocols, [Protocol::Http1]);
    }

    #[test]
    fn callgrind_keeps_strand_scenarios_and_lowers_the_rate() {
        let plan = Args::parse_from(["strand-bench", "--callgrind"])
            .plan()
            .unwrap();
        let names: Vec<&str> = plan.scenarios.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "strand-1hop",
                "strand-pair",
                "strand-pair-disc",
                "strand-pair-mtls"
            ]
        );
        assert!(plan.callgrind);
        assert_eq!(plan.rate, CALLGRIND_RATE);
        let plan = Args::parse_from(["strand-bench", "--callgrind", "--rate", "50"])
            .plan()
            .unwrap();
        assert_eq!(plan.rate, 50);
        assert_eq!(
            Args::parse_from(["strand-bench"]).plan().unwrap().rate,
            DEFAULT_RATE
        );
        let err = Args::parse_from(["strand-bench", "--callgrind", "--scenarios", "nginx-1hop"])
            .plan()
            .unwrap_err();
        assert!(format!("{err:#}").contains("with --callgrind"), "{err:#}");
        let err = Args::parse_from(["strand-bench", "--callgrind", "--duration", "2s"])
            .plan()
            .unwrap_err();
        assert!(err.to_string().contains("at least 3s"), "{err}");
    }

    #[test]
    fn unknown_scenario_is_an_error() {
        let args = Args::parse_from(["strand-bench", "--scenarios", "envoy"]);
        let err = args.plan().unwrap_err().to_string();
        assert!(err.contains("unknown scenario \"envoy\""), "{err}");
        assert!(err.contains("strand-pair"), "{err}");
    }
}
