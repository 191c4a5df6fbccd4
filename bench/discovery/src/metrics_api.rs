//! The `metrics-api` scenario: the metrics API's cost of scraping a mesh.
//!
//! ```text
//!   this process (127.0.0.1)                                    child process
//!   ┌───────────────────────────────────────────┐  GET /api/v1/pods  ┌──────────────────────────┐
//!   │ Store + ApiServer (:0) ◄──────────────────┼────── every 2 s ───│ strand-controller        │
//!   │ proxies: N listeners, GET /metrics ◄──────┼── every interval ──│   metrics-api            │
//!   │   strand_proxy::metrics::Metrics::encode  │                    │ scraper ─► viz store     │
//!   │ measure ── /api/v1/targets, /stat ────────┼───────────────────►│ :<port>                  │
//!   └───────────────────────────────────────────┘   CPU, RSS ◄── /proc/<pid>  └──────────────────┘
//! ```
//!
//! It registers `--proxies` meshed pods (workloads of 10) in a real local
//! store served by the real management API, serves each pod's proxy
//! metrics with the proxy's own encoder (a busy proxy's mix, see
//! `proxies.rs`), starts `strand-controller metrics-api` on them, waits
//! until every proxy has been scraped, then reads the metrics API's CPU time
//! and memory over `--duration` and times `stat` answers at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use self::cluster::Cluster;
use self::process::{MetricsApi, StatAnswer, Target};
use self::proxies::Proxies;
use self::report::{Machine, RssSample, Scrapes, Stat, Targets, UsageReport};
use crate::cli::MetricsApiPlan;
use crate::report::{Stats, mib, ms};

mod cluster;
mod process;
mod proxies;
mod report;

pub use self::report::Report;

/// What `strand viz stat deploy` asks for.
const STAT_PATH: &str = "/api/v1/stat?resource=deploy&window=60";

/// Enough calls for a median; their CPU is read in 10 ms clock ticks, so
/// fewer would round the cost per call to nothing or 10 ms.
const STAT_CALLS: usize = 10;

/// The metrics API scrapes new proxies at once, within its 2 s target
/// refresh; this much beyond two intervals means something is wrong.
const SCRAPED_SLACK: Duration = Duration::from_secs(30);

/// A directory of the run's own, removed on drop.
struct TempDir(PathBuf);

/// All cores' busy and total time, from `/proc/stat`, in clock ticks.
struct CpuTimes {
    busy: u64,
    total: u64,
    cores: usize,
}

pub async fn run(plan: &MetricsApiPlan) -> anyhow::Result<Report> {
    // Dropped last: removes the store, the token and the log.
    let dir = TempDir::create()?;
    let cluster = Cluster::start(&dir.0.join("state")).await?;
    let listeners = Proxies::bind(plan.proxies).await?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let pods = cluster.register(&addrs).await?;
    let workloads = pods.iter().map(|p| p.workload + 1).max().unwrap_or(0);
    let proxies = Proxies::start(listeners, &pods);
    let exposition = proxies.exposition();
    eprintln!(
        "{} meshed pods in {workloads} workloads on the management API at {}; \
         one proxy's /metrics: {:.1} KiB, {} series",
        pods.len(),
        cluster.api_addr,
        exposition.body_bytes as f64 / 1024.0,
        exposition.series
    );
    let started = Instant::now();
    let mut api = MetricsApi::start(plan, &cluster, &dir.0).await?;
    eprintln!(
        "metrics API pid {} on {} (log {})",
        api.pid(),
        api.addr,
        api.log_path().display()
    );
    let report = measure(plan, &mut api, &proxies, started, workloads)
        .await
        .map_err(|e| {
            let log = api.log_tail();
            if log.is_empty() {
                e
            } else {
                e.context(format!("the metrics API's log ends with:\n{log}"))
            }
        });
    drop(api);
    drop(proxies);
    cluster.stop().await;
    report
}

async fn measure(
    plan: &MetricsApiPlan,
    api: &mut MetricsApi,
    proxies: &Proxies,
    started: Instant,
    workloads: usize,
) -> anyhow::Result<Report> {
    let scraped = all_scraped(api, plan).await?;
    eprintln!(
        "all {} proxies scraped after {:.1} s; measuring for {:?}",
        plan.proxies,
        started.elapsed().as_secs_f64(),
        plan.duration
    );
    let load_start = load_average();
    let busy_start = CpuTimes::read()?;
    let bench_start = strand_sys::process_stats()?.cpu_seconds;
    let start = api.usage()?;
    let t0 = Instant::now();
    let end_at = t0 + plan.duration;
    let mut timeline = vec![RssSample {
        at_seconds: 0.0,
        rss_mib: mib(start.rss_bytes),
    }];
    while Instant::now() < end_at {
        let next =
            (t0 + plan.interval * u32::try_from(timeline.len()).unwrap_or(u32::MAX)).min(end_at);
        tokio::time::sleep_until(next.into()).await;
        let u = api.usage()?;
        let at = t0.elapsed().as_secs_f64();
        eprintln!(
            "{at:>6.0} s: RSS {:.1} MiB, CPU {:.2} s ({:.2}% of a core so far)",
            mib(u.rss_bytes),
            u.cpu_seconds - start.cpu_seconds,
            (u.cpu_seconds - start.cpu_seconds) / at.max(1e-3) * 100.0
        );
        timeline.push(RssSample {
            at_seconds: at,
            rss_mib: mib(u.rss_bytes),
        });
    }
    let end = api.usage()?;
    let wall = t0.elapsed().as_secs_f64();
    let bench_cpu = strand_sys::process_stats()?.cpu_seconds - bench_start;
    let busy = CpuTimes::read()?.busy_percent_of_core_since(&busy_start);
    let load_end = load_average();
    let in_window: Vec<Instant> = proxies
        .scrapes_since(t0)
        .into_iter()
        .filter(|t| t.duration_since(t0).as_secs_f64() <= wall)
        .collect();
    let history = proxies
        .scrapes_since(started)
        .first()
        .map_or(0.0, |first| first.elapsed().as_secs_f64());

    let targets = api.targets().await?;
    let stat = stat(api).await?;
    let cpu = end.cpu_seconds - start.cpu_seconds;
    let usage = UsageReport {
        start,
        end,
        wall_seconds: wall,
        cpu_seconds: cpu,
        cpu_percent_of_core: cpu / wall * 100.0,
        rss_mib_timeline: timeline,
        bench_cpu_percent_of_core: bench_cpu / wall * 100.0,
    };
    let retention = plan.retention.as_secs_f64();
    Ok(Report {
        scenario: "metrics-api",
        proxies: plan.proxies,
        workloads,
        interval_seconds: plan.interval.as_secs_f64(),
        duration_seconds: plan.duration.as_secs_f64(),
        retention_seconds: retention,
        history_seconds: history,
        exposition: proxies.exposition(),
        scrapes: scrapes(&in_window, plan.interval, &scraped, &targets),
        targets: Targets::new(&usage, history >= retention),
        usage,
        stat,
        machine: Machine {
            cores: busy_start.cores,
            busy_percent_of_core: busy,
            load_start,
            load_end,
        },
    })
}

/// Waits until every proxy has been scraped successfully.
async fn all_scraped(api: &mut MetricsApi, plan: &MetricsApiPlan) -> anyhow::Result<Vec<Target>> {
    let patience = plan.interval * 2 + SCRAPED_SLACK;
    let deadline = Instant::now() + patience;
    loop {
        api.usage()?;
        let targets = api.targets().await?;
        let ok = |t: &&Target| t.last_error.is_none() && t.last_success_unix.is_some();
        let scraped = targets.iter().filter(ok).count();
        if targets.len() == plan.proxies && scraped == plan.proxies {
            return Ok(targets);
        }
        if Instant::now() > deadline {
            let why = targets
                .iter()
                .find_map(|t| Some(format!("{}: {}", t.pod, t.last_error.as_ref()?)))
                .unwrap_or_default();
            bail!(
                "after {patience:?}, {} targets listed, {scraped} of {} scraped successfully {why}",
                targets.len(),
                plan.proxies
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Groups the scrapes into rounds: a round's scrapes arrive within its
/// first moments, rounds an interval apart.
fn scrapes(
    in_window: &[Instant],
    interval: Duration,
    at_start: &[Target],
    at_end: &[Target],
) -> Scrapes {
    let mut spreads = Vec::new();
    let mut round: Option<(Instant, Instant)> = None;
    for &t in in_window {
        round = match round {
            Some((first, last)) if t.duration_since(last) < interval / 2 => Some((first, t)),
            Some((first, last)) => {
                spreads.push(last.duration_since(first));
                Some((t, t))
            }
            None => Some((t, t)),
        };
    }
    if let Some((first, last)) = round {
        spreads.push(last.duration_since(first));
    }
    let kept: Vec<f64> = at_start
        .iter()
        .chain(at_end)
        .map(|t| t.series as f64)
        .collect();
    Scrapes {
        rounds: spreads.len(),
        scrapes: in_window.len(),
        round_spread_ms: Stats::of_ms(&spreads),
        kept_series_per_proxy: Stats::of(&kept),
        failing_at_end: at_end.iter().filter(|t| t.last_error.is_some()).count(),
    }
}

/// Times [`STAT_CALLS`] `stat` answers, one after another.
async fn stat(api: &mut MetricsApi) -> anyhow::Result<Stat> {
    let before = api.usage()?.cpu_seconds;
    let mut times = Vec::with_capacity(STAT_CALLS);
    let mut first = None;
    for _ in 0..STAT_CALLS {
        let t = Instant::now();
        let body = api.get_ok(STAT_PATH).await?;
        times.push(t.elapsed());
        first.get_or_insert(body);
    }
    let cpu = api.usage()?.cpu_seconds - before;
    let answer: StatAnswer =
        serde_json::from_slice(&first.unwrap_or_default()).context("parsing a stat answer")?;
    let rps: f64 = answer.rows.iter().map(|r| r.rps).sum();
    if rps <= 0.0 {
        eprintln!("warning: the stat answer shows no traffic; the scrapes did not reach it");
    }
    Ok(Stat {
        first_ms: times.first().map(ms).unwrap_or_default(),
        calls: times.len(),
        ms: Stats::of_ms(&times),
        cpu_ms_per_call: cpu * 1e3 / STAT_CALLS as f64,
        rows: answer.rows.len(),
        rps,
    })
}

// === impl TempDir ===

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("strand-bench-metrics-api-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === impl CpuTimes ===

impl CpuTimes {
    fn read() -> anyhow::Result<CpuTimes> {
        Self::parse(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
            .context("parsing /proc/stat")
    }

    fn parse(text: &str) -> Option<CpuTimes> {
        let mut lines = text.lines();
        let all = lines.next()?.strip_prefix("cpu ")?;
        let fields: Vec<u64> = all
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user and nice).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let cores = lines
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        Some(CpuTimes {
            busy: total.saturating_sub(idle),
            total,
            cores,
        })
    }

    fn busy_percent_of_core_since(&self, start: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(start.total).max(1) as f64;
        let busy = self.busy.saturating_sub(start.busy) as f64;
        busy / total * self.cores as f64 * 100.0
    }
}

/// The 1-minute load average (0 if unreadable: it is context only).
fn load_average() -> f64 {
    std::fs::read_to_string(Path::new("/proc/loadavg"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_from_proc_stat() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n";
        let t = CpuTimes::parse(text).expect("parses");
        assert_eq!((t.busy, t.total, t.cores), (150, 1000, 2));
        let later = CpuTimes {
            busy: 250,
            total: 1200,
            cores: 2,
        };
        // 100 busy ticks of 200: half the machine, one core of two.
        assert_eq!(later.busy_percent_of_core_since(&t), 100.0);
    }

    #[test]
    fn scrapes_group_into_rounds() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = [at(0), at(5), at(30), at(10_000), at(10_020), at(20_001)];
        let s = scrapes(&times, Duration::from_secs(10), &[], &[]);
        assert_eq!((s.rounds, s.scrapes), (3, 6));
        assert_eq!(s.round_spread_ms.max, 30.0);
    }
}
