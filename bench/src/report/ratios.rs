//! The numbers the project tracks release over release, derived from the
//! table's medians: latency strand adds on a meshed pair, and strand's
//! throughput, CPU and memory against a plain single-hop proxy.

use std::fmt::Write;

use serde::Serialize;

use super::Row;
use crate::load::Protocol;

/// Derived ratios; `None`/empty where a scenario needed was not measured.
#[derive(Debug, Default, Serialize)]
pub struct Ratios {
    /// The fixed rate the latency numbers were taken at.
    pub rate: u32,
    /// strand-pair's median p99 minus direct's, HTTP/1.1, in milliseconds.
    pub pair_p99_added_http1_ms: Option<f64>,
    /// strand-pair's median p99 over direct's, HTTP/1.1.
    pub pair_p99_ratio_http1: Option<f64>,
    /// strand-1hop's saturation throughput over another single-hop proxy's.
    pub throughput: Vec<Comparison>,
    /// strand-1hop's CPU per request over another single-hop proxy's.
    pub cpu_per_request: Vec<Comparison>,
    /// Idle resident memory of each scenario's proxies, in MiB.
    pub idle_rss_mib: Vec<IdleRss>,
}

/// strand-1hop against another proxy for one protocol.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub other: String,
    pub protocol: Protocol,
    pub strand: f64,
    pub other_value: f64,
    /// `strand / other_value`.
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct IdleRss {
    pub scenario: String,
    pub mib: f64,
}

const STRAND_1HOP: &str = "strand-1hop";

// === impl Ratios ===

impl Ratios {
    pub fn new(rows: &[Row], rate: u32) -> Ratios {
        let pair = rows
            .iter()
            .find(|r| r.scenario == "strand-pair" && r.protocol == Some(Protocol::Http1));
        let mut ratios = Ratios {
            rate,
            pair_p99_added_http1_ms: pair.and_then(|r| r.p99_added_ms),
            pair_p99_ratio_http1: pair.and_then(|r| r.p99_ratio),
            ..Ratios::default()
        };
        let single_hop_others = rows
            .iter()
            .filter(|r| !r.scenario.starts_with("strand-") && r.scenario != "direct");
        for other in single_hop_others {
            let Some(strand) = rows
                .iter()
                .find(|r| r.scenario == STRAND_1HOP && r.protocol == other.protocol)
            else {
                continue;
            };
            let Some(protocol) = other.protocol else {
                continue;
            };
            let compare = |s: Option<f64>, o: Option<f64>| {
                let (s, o) = (s?, o?);
                (o > 0.0).then(|| Comparison {
                    other: other.scenario.clone(),
                    protocol,
                    strand: s,
                    other_value: o,
                    ratio: s / o,
                })
            };
            ratios
                .throughput
                .extend(compare(strand.throughput_rps, other.throughput_rps));
            ratios
                .cpu_per_request
                .extend(compare(strand.cpu_s_per_10k, other.cpu_s_per_10k));
        }
        for row in rows {
            let seen = ratios
                .idle_rss_mib
                .iter()
                .any(|i| i.scenario == row.scenario);
            if let (false, Some(mib)) = (seen, row.rss_idle_mib) {
                ratios.idle_rss_mib.push(IdleRss {
                    scenario: row.scenario.clone(),
                    mib,
                });
            }
        }
        ratios
    }

    pub fn render(&self) -> String {
        let mut out = String::from("Ratios (from the medians above):\n");
        match (self.pair_p99_added_http1_ms, self.pair_p99_ratio_http1) {
            (Some(added), ratio) => {
                let ratio = ratio.map_or(String::new(), |r| format!(" ({r:.2}x direct)"));
                let _ = writeln!(
                    out,
                    "  p99 added by strand-pair over direct, HTTP/1.1 at {} rps: {added:+.2} ms{ratio}",
                    self.rate
                );
            }
            (None, _) => out.push_str("  p99 added by strand-pair over direct: not measured\n"),
        }
        let groups = [
            (
                "throughput",
                &self.throughput,
                "higher is better for strand",
            ),
            (
                "CPU per request",
                &self.cpu_per_request,
                "lower is better for strand",
            ),
        ];
        for (what, comparisons, hint) in groups {
            let mut others: Vec<&str> = comparisons.iter().map(|c| c.other.as_str()).collect();
            others.dedup();
            if others.is_empty() {
                let _ = writeln!(out, "  {what} {STRAND_1HOP} / other proxies: not measured");
            }
            for other in others {
                let values: Vec<String> = comparisons
                    .iter()
                    .filter(|c| c.other == other)
                    .map(|c| format!("{} {:.2}", c.protocol.name(), c.ratio))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {what} {STRAND_1HOP} / {other}: {} ({hint})",
                    values.join(", ")
                );
            }
        }
        if !self.idle_rss_mib.is_empty() {
            let values: Vec<String> = self
                .idle_rss_mib
                .iter()
                .map(|i| format!("{} {:.1}", i.scenario, i.mib))
                .collect();
            let _ = writeln!(out, "  idle proxy RSS, MiB: {}", values.join(", "));
        }
        out
    }
}
