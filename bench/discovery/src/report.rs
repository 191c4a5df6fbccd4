//! What a run found: JSON as measured, and one table.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::control_plane::Usage;

/// The control plane's targets for the default run.
pub const TARGET_RSS_MIB: f64 = 100.0;
pub const TARGET_FANOUT_MS: f64 = 200.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub endpoints: usize,
    pub watchers: usize,
    pub connections: usize,
    pub rounds: usize,
    pub memory: Memory,
    pub load: Load,
    pub sync: Sync,
    pub fanout: Fanout,
    pub targets: Targets,
}

/// The controller's memory (and CPU so far) at each step.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// Started, nothing stored.
    pub idle: Usage,
    /// Every pod stored and indexed, no stream open.
    pub loaded: Usage,
    /// Every watcher holding its initial set.
    pub streams: Usage,
    /// After the rounds, streams still open.
    pub after_rounds: Usage,
    /// After the streams closed.
    pub closed: Usage,
}

#[derive(Debug, Serialize)]
pub struct Load {
    pub applies: usize,
    /// Every `apply`, one after another.
    pub apply_seconds: f64,
    /// From the last `apply` until the controller went idle (the index
    /// catching up with the store's watch), in 200 ms steps.
    pub settle_seconds: f64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Sync {
    /// From opening the streams until the last watcher held every endpoint.
    pub all_seconds: f64,
    /// Per watcher, from opening.
    pub per_watcher_ms: Stats,
    pub cpu_seconds: f64,
    /// What this process (the watchers) spent meanwhile, on the same cores.
    pub client_cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Fanout {
    /// From just before the status update until the last watcher got it.
    pub last_ms: Stats,
    /// ... until half of the watchers got it.
    pub median_ms: Stats,
    /// ... until the first watcher got it.
    pub first_ms: Stats,
    /// The status update call itself (fsync included).
    pub api_ms: Stats,
    pub cpu_seconds_per_round: f64,
    pub per_round: Vec<Round>,
}

#[derive(Debug, Serialize)]
pub struct Round {
    pub pod: String,
    pub ready: bool,
    pub api_ms: f64,
    pub first_ms: f64,
    pub median_ms: f64,
    pub last_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Targets {
    pub rss_mib_max: f64,
    pub rss_with_streams_mib: f64,
    pub rss_met: bool,
    pub fanout_ms_max: f64,
    /// p99 of `fanout.last_ms`.
    pub fanout_p99_ms: f64,
    pub fanout_met: bool,
}

// === impl Stats ===

impl Stats {
    /// Nearest-rank percentiles of `values`, in milliseconds.
    pub fn of_ms(values: &[Duration]) -> Stats {
        Stats::of(&values.iter().map(ms).collect::<Vec<_>>())
    }

    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        Stats {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

pub fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// === impl Targets ===

impl Targets {
    pub fn new(streams: &Usage, fanout: &Fanout) -> Targets {
        let rss = mib(streams.rss_bytes);
        Targets {
            rss_mib_max: TARGET_RSS_MIB,
            rss_with_streams_mib: rss,
            rss_met: rss < TARGET_RSS_MIB,
            fanout_ms_max: TARGET_FANOUT_MS,
            fanout_p99_ms: fanout.last_ms.p99,
            fanout_met: fanout.last_ms.p99 < TARGET_FANOUT_MS,
        }
    }
}

// === impl Report ===

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.memory;
        let _ = writeln!(
            out,
            "strand-controller local: {} endpoints, {} watchers over {} connections, {} rounds",
            self.endpoints, self.watchers, self.connections, self.rounds
        );
        let _ = writeln!(
            out,
            "\n{:<34} {:>10} {:>10} {:>10}",
            "memory", "RSS MiB", "peak MiB", "CPU s"
        );
        for (name, u) in [
            ("idle", &m.idle),
            ("loaded (no streams)", &m.loaded),
            ("streams synced", &m.streams),
            ("after rounds", &m.after_rounds),
            ("streams closed", &m.closed),
        ] {
            let _ = writeln!(
                out,
                "{name:<34} {:>10.1} {:>10.1} {:>10.2}",
                mib(u.rss_bytes),
                mib(u.peak_rss_bytes),
                u.cpu_seconds
            );
        }
        let _ = writeln!(
            out,
            "\nload: {} applies in {:.2} s, controller idle {:.1} s later, {:.2} CPU s",
            self.load.applies,
            self.load.apply_seconds,
            self.load.settle_seconds,
            self.load.cpu_seconds
        );
        let s = &self.sync;
        let _ = writeln!(
            out,
            "initial sync: all {} watchers in {:.2} s (per watcher p50 {:.0} ms, p99 {:.0} ms), \
             {:.2} CPU s (watchers: {:.2} CPU s)",
            self.watchers,
            s.all_seconds,
            s.per_watcher_ms.p50,
            s.per_watcher_ms.p99,
            s.cpu_seconds,
            s.client_cpu_seconds
        );
        let f = &self.fanout;
        let _ = writeln!(
            out,
            "\n{:<34} {:>10} {:>10} {:>10}",
            "fan-out of one change (ms)", "p50", "p99", "max"
        );
        for (name, st) in [
            ("last watcher", &f.last_ms),
            ("half the watchers", &f.median_ms),
            ("first watcher", &f.first_ms),
            ("status update call", &f.api_ms),
        ] {
            let _ = writeln!(
                out,
                "{name:<34} {:>10.1} {:>10.1} {:>10.1}",
                st.p50, st.p99, st.max
            );
        }
        let _ = writeln!(
            out,
            "controller CPU per round: {:.1} ms",
            f.cpu_seconds_per_round * 1e3
        );
        let t = &self.targets;
        let verdict = |met| if met { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "\ntargets: RSS with streams {:.1} MiB < {} MiB: {}; fan-out p99 {:.1} ms < {} ms: {}",
            t.rss_with_streams_mib,
            t.rss_mib_max,
            verdict(t.rss_met),
            t.fanout_p99_ms,
            t.fanout_ms_max,
            verdict(t.fanout_met)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of(&v);
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p99, s.max), (2.0, 3.0, 3.0));
        let s = Stats::of(&[]);
        assert_eq!((s.p50, s.max), (0.0, 0.0));
    }
}
