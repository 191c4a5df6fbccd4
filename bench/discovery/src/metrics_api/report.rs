//! What a `metrics-api` run found: JSON as measured, and one table.

use std::fmt::Write as _;

use serde::Serialize;

use super::proxies::Exposition;
use crate::control_plane::Usage;
use crate::report::{Stats, mib};

/// The metrics API's targets: scraping 100 proxies every 10 s uses under
/// 2% of one core and under 50 MiB.
pub const TARGET_CPU_PERCENT: f64 = 2.0;
pub const TARGET_RSS_MIB: f64 = 50.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub proxies: usize,
    pub workloads: usize,
    pub interval_seconds: f64,
    pub duration_seconds: f64,
    pub retention_seconds: f64,
    /// From the first scrape to the end of the window: how much history the
    /// store held at the end (at most the retention).
    pub history_seconds: f64,
    /// One proxy's answer at the end.
    pub exposition: Exposition,
    pub scrapes: Scrapes,
    pub usage: UsageReport,
    pub stat: Stat,
    pub machine: Machine,
    pub targets: Targets,
}

#[derive(Debug, Serialize)]
pub struct Scrapes {
    /// Rounds that started within the measured window.
    pub rounds: usize,
    /// Scrapes the proxies answered within the window, all proxies.
    pub scrapes: usize,
    /// From the first to the last request of a round (the scraper's
    /// concurrency is 16), in milliseconds.
    pub round_spread_ms: Stats,
    /// Series the metrics API keeps per proxy (the `series` of
    /// `/api/v1/targets`; it drops labels and families it does not use).
    pub kept_series_per_proxy: Stats,
    /// Targets whose last scrape failed, at the end.
    pub failing_at_end: usize,
}

/// The metrics API process over the window.
#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub start: Usage,
    pub end: Usage,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// `cpu_seconds / wall_seconds * 100`.
    pub cpu_percent_of_core: f64,
    /// `VmRSS` at each scrape interval from the window's start, in MiB.
    pub rss_mib_timeline: Vec<RssSample>,
    /// The benchmark process (the proxies' encoders, the management API)
    /// meanwhile, on the same cores.
    pub bench_cpu_percent_of_core: f64,
}

#[derive(Debug, Serialize)]
pub struct RssSample {
    pub at_seconds: f64,
    pub rss_mib: f64,
}

/// `GET /api/v1/stat?resource=deploy&window=60` after the window.
#[derive(Debug, Serialize)]
pub struct Stat {
    pub first_ms: f64,
    pub calls: usize,
    pub ms: Stats,
    /// The metrics API's CPU per call, in milliseconds.
    pub cpu_ms_per_call: f64,
    pub rows: usize,
    /// Summed over the rows: the requests per second the proxies recorded.
    pub rps: f64,
}

/// What else the machine was doing.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// Busy time of all cores over the window (every process), in percent
    /// of one core; the metrics API and the benchmark are part of it.
    pub busy_percent_of_core: f64,
    /// `/proc/loadavg`'s first figure at the start and at the end.
    pub load_start: f64,
    pub load_end: f64,
}

#[derive(Debug, Serialize)]
pub struct Targets {
    pub cpu_percent_max: f64,
    pub cpu_percent: f64,
    pub cpu_met: bool,
    pub rss_mib_max: f64,
    /// `VmRSS` at the end of the window.
    pub rss_mib: f64,
    pub rss_met: bool,
    /// Whether the store held its full retention by the end.
    pub store_full: bool,
}

// === impl Targets ===

impl Targets {
    pub fn new(usage: &UsageReport, store_full: bool) -> Targets {
        let rss = mib(usage.end.rss_bytes);
        Targets {
            cpu_percent_max: TARGET_CPU_PERCENT,
            cpu_percent: usage.cpu_percent_of_core,
            cpu_met: usage.cpu_percent_of_core < TARGET_CPU_PERCENT,
            rss_mib_max: TARGET_RSS_MIB,
            rss_mib: rss,
            rss_met: rss < TARGET_RSS_MIB,
            store_full,
        }
    }
}

// === impl Report ===

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "strand-controller metrics-api: {} proxies ({} workloads) every {} s, measured {:.0} s, retention {} s",
            self.proxies,
            self.workloads,
            self.interval_seconds,
            self.usage.wall_seconds,
            self.retention_seconds
        );
        let e = &self.exposition;
        let s = &self.scrapes;
        let _ = writeln!(
            out,
            "one proxy's /metrics: {:.1} KiB, {} series ({} kept by the metrics API, p50)",
            e.body_bytes as f64 / 1024.0,
            e.series,
            s.kept_series_per_proxy.p50
        );
        let _ = writeln!(
            out,
            "scrapes in the window: {} in {} rounds (round spread p50 {:.0} ms, max {:.0} ms); \
             failing at the end: {}",
            s.scrapes, s.rounds, s.round_spread_ms.p50, s.round_spread_ms.max, s.failing_at_end
        );
        let u = &self.usage;
        let _ = writeln!(
            out,
            "\n{:<34} {:>10} {:>10} {:>10}",
            "metrics API", "RSS MiB", "peak MiB", "CPU s"
        );
        for (name, usage) in [("window start", &u.start), ("window end", &u.end)] {
            let _ = writeln!(
                out,
                "{name:<34} {:>10.1} {:>10.1} {:>10.2}",
                mib(usage.rss_bytes),
                mib(usage.peak_rss_bytes),
                usage.cpu_seconds
            );
        }
        let _ = writeln!(
            out,
            "CPU over the window: {:.2} s in {:.1} s = {:.2}% of one core; RSS grew {:+.1} MiB",
            u.cpu_seconds,
            u.wall_seconds,
            u.cpu_percent_of_core,
            mib(u.end.rss_bytes) - mib(u.start.rss_bytes)
        );
        let st = &self.stat;
        let _ = writeln!(
            out,
            "stat deploy, window 60 s: first {:.1} ms; {} calls p50 {:.1} ms, max {:.1} ms; \
             {:.1} CPU ms per call; {} rows, {:.0} rps",
            st.first_ms, st.calls, st.ms.p50, st.ms.max, st.cpu_ms_per_call, st.rows, st.rps
        );
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} cores, {:.0}% of one core busy over the window (this benchmark: {:.1}%), \
             load {:.2} -> {:.2}",
            m.cores, m.busy_percent_of_core, u.bench_cpu_percent_of_core, m.load_start, m.load_end
        );
        let t = &self.targets;
        let verdict = |met| if met { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "\ntargets: CPU {:.2}% < {}% of a core: {}; RSS {:.1} MiB < {} MiB: {}",
            t.cpu_percent,
            t.cpu_percent_max,
            verdict(t.cpu_met),
            t.rss_mib,
            t.rss_mib_max,
            verdict(t.rss_met)
        );
        if !t.store_full {
            let _ = writeln!(
                out,
                "(the store held {:.0} s of its {:.0} s retention at the end; RSS grows until it is \
                 full: run --duration {:.0}s or longer for the steady state)",
                self.history_seconds.min(self.retention_seconds),
                self.retention_seconds,
                self.retention_seconds + 2.0 * self.interval_seconds
            );
        }
        out
    }
}
