//! The numbers the project tracks release over release, derived from the
//! table's medians: latency strand adds on a meshed pair, strand's
//! throughput, CPU and memory against a plain single-hop proxy, and what
//! mTLS costs (strand-pair-mtls against strand-pair-disc, and handshakes
//! against plain connections into the same proxy).

use std::fmt::Write;

use serde::Serialize;

use super::{HandshakeRow, Row};
use crate::handshake::Mode;
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
    /// strand-pair-mtls over strand-pair-disc, per protocol.
    pub mtls: Vec<MtlsCost>,
    /// mTLS handshakes against plain connections into the same proxy.
    pub handshakes: Option<HandshakeCost>,
}

/// What mTLS costs for one protocol: strand-pair-mtls's median over
/// strand-pair-disc's (`None` where either was not measured).
#[derive(Debug, Serialize)]
pub struct MtlsCost {
    pub protocol: Protocol,
    /// Proxy CPU per request at the fixed rate: the median of
    /// `cpu_per_request_runs` where rounds pair up, else the ratio of the
    /// medians.
    pub cpu_per_request: Option<f64>,
    /// The CPU ratio of each round, strand-pair-mtls over the
    /// strand-pair-disc measurement of the same round. The two are taken
    /// back to back (see `bench::run`), so drift in what else the machine
    /// does cancels out of each ratio rather than landing on one side.
    pub cpu_per_request_runs: Vec<f64>,
    /// p99 at the fixed rate.
    pub p99: Option<f64>,
    /// Throughput at saturation.
    pub throughput: Option<f64>,
    /// Instructions per request (`--callgrind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions_per_request: Option<f64>,
}

/// New mTLS connections against new plain TCP connections into the same
/// proxy.
#[derive(Debug, Serialize)]
pub struct HandshakeCost {
    pub scenario: String,
    pub mtls_per_second: f64,
    pub tcp_per_second: f64,
    /// `mtls_per_second / tcp_per_second`.
    pub rate_ratio: f64,
    /// The proxy's CPU seconds per 1,000 connections.
    pub mtls_cpu_s_per_1k: Option<f64>,
    pub tcp_cpu_s_per_1k: Option<f64>,
    /// The difference: what 1,000 handshakes cost on top of the connections.
    pub handshake_cpu_s_per_1k: Option<f64>,
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

/// One of [`MtlsCost`]'s ratios.
type Metric = fn(&MtlsCost) -> Option<f64>;

const STRAND_1HOP: &str = "strand-1hop";
const PAIR_DISC: &str = "strand-pair-disc";
const PAIR_MTLS: &str = "strand-pair-mtls";

/// The project's targets for mTLS on kept-alive connections at the fixed
/// rate: at most 10% more proxy CPU per request than plaintext through the
/// same proxy pair, and a p99 within 1.2x of it.
pub const MTLS_CPU_TARGET: f64 = 1.10;
pub const MTLS_P99_TARGET: f64 = 1.20;

// === impl Ratios ===

impl Ratios {
    pub fn new(rows: &[Row], handshakes: &[HandshakeRow], rate: u32) -> Ratios {
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
        ratios.mtls = mtls_costs(rows);
        ratios.handshakes = handshake_cost(handshakes);
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
        self.render_mtls(&mut out);
        out
    }

    fn render_mtls(&self, out: &mut String) {
        if self.mtls.is_empty() {
            let _ = writeln!(
                out,
                "  mTLS cost: not measured (needs {PAIR_DISC} and {PAIR_MTLS})"
            );
        } else {
            let _ = writeln!(
                out,
                "  mTLS cost, {PAIR_MTLS} / {PAIR_DISC} (the same proxy pair, discovery and \
                 protocols, HTTP/1.1 crossing as HTTP/2 in both; only TLS differs):"
            );
            let at_rate = format!("at {} rps", self.rate);
            let counted = self
                .mtls
                .iter()
                .any(|c| c.instructions_per_request.is_some());
            let lines: Vec<(String, Metric, Option<f64>)> = if counted {
                // Under callgrind, time says nothing about the proxies.
                vec![(
                    format!("instructions per request {at_rate} (callgrind)"),
                    |c| c.instructions_per_request,
                    Some(MTLS_CPU_TARGET),
                )]
            } else {
                vec![
                    (
                        format!("CPU per request {at_rate}"),
                        |c| c.cpu_per_request,
                        Some(MTLS_CPU_TARGET),
                    ),
                    (format!("p99 {at_rate}"), |c| c.p99, Some(MTLS_P99_TARGET)),
                    (
                        "throughput at saturation".to_string(),
                        |c| c.throughput,
                        None,
                    ),
                ]
            };
            for (what, value, target) in lines {
                let values: Vec<String> = self
                    .mtls
                    .iter()
                    .map(|c| {
                        let v = value(c).map_or("-".to_string(), |v| format!("{v:.2}"));
                        format!("{} {v}", c.protocol.name())
                    })
                    .collect();
                let verdict = match target {
                    Some(target) => {
                        let missed: Vec<&str> = self
                            .mtls
                            .iter()
                            .filter(|c| value(c).is_some_and(|v| v > target))
                            .map(|c| c.protocol.name())
                            .collect();
                        if missed.is_empty() {
                            format!("target <= {target:.2}: met")
                        } else {
                            format!("target <= {target:.2}: MISSED by {}", missed.join(", "))
                        }
                    }
                    None => "higher is better".to_string(),
                };
                let _ = writeln!(out, "    {what}: {} ({verdict})", values.join(", "));
            }
            if !counted {
                self.render_mtls_rounds(out);
            }
        }
        match &self.handshakes {
            Some(h) => {
                let cpu = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} s"));
                let _ = writeln!(
                    out,
                    "  handshakes into {}'s server proxy: mtls {:.0}/s, tcp {:.0}/s ({:.2}x); \
                     proxy CPU per 1,000 connections: mtls {}, tcp {}, so {} per 1,000 handshakes",
                    h.scenario,
                    h.mtls_per_second,
                    h.tcp_per_second,
                    h.rate_ratio,
                    cpu(h.mtls_cpu_s_per_1k),
                    cpu(h.tcp_cpu_s_per_1k),
                    cpu(h.handshake_cpu_s_per_1k),
                );
            }
            None => {
                let _ = writeln!(out, "  handshakes: not measured (needs {PAIR_MTLS})");
            }
        }
    }

    /// The spread of the per-round CPU ratios behind the median.
    fn render_mtls_rounds(&self, out: &mut String) {
        let spreads: Vec<String> = self
            .mtls
            .iter()
            .filter_map(|c| {
                let runs = &c.cpu_per_request_runs;
                let min = runs.iter().copied().reduce(f64::min)?;
                let max = runs.iter().copied().reduce(f64::max)?;
                let over = runs.iter().filter(|&&r| r > MTLS_CPU_TARGET).count();
                Some(format!(
                    "{} {min:.2}-{max:.2} ({over} of {} over {MTLS_CPU_TARGET:.2})",
                    c.protocol.name(),
                    runs.len(),
                ))
            })
            .collect();
        if !spreads.is_empty() {
            let _ = writeln!(
                out,
                "    CPU per request, each round's pair measured back to back: {}",
                spreads.join(", ")
            );
        }
    }
}

/// strand-pair-mtls over strand-pair-disc for every protocol both have.
fn mtls_costs(rows: &[Row]) -> Vec<MtlsCost> {
    let find = |scenario: &str, protocol| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.protocol == Some(protocol))
    };
    let ratio = |a: Option<f64>, b: Option<f64>| {
        let (a, b) = (a?, b?);
        (b > 0.0).then(|| a / b)
    };
    Protocol::ALL
        .into_iter()
        .filter_map(|protocol| {
            let (mtls, disc) = (find(PAIR_MTLS, protocol)?, find(PAIR_DISC, protocol)?);
            let paired: Vec<f64> = mtls
                .cpu_s_per_10k_runs
                .iter()
                .filter_map(|&(run, m)| {
                    let &(_, d) = disc.cpu_s_per_10k_runs.iter().find(|(r, _)| *r == run)?;
                    ratio(Some(m), Some(d))
                })
                .collect();
            let cpu_per_request = super::median(paired.clone())
                .or_else(|| ratio(mtls.cpu_s_per_10k, disc.cpu_s_per_10k));
            Some(MtlsCost {
                protocol,
                cpu_per_request,
                cpu_per_request_runs: paired,
                p99: ratio(mtls.p99_ms, disc.p99_ms),
                throughput: ratio(mtls.throughput_rps, disc.throughput_rps),
                instructions_per_request: ratio(
                    mtls.instructions_per_request,
                    disc.instructions_per_request,
                ),
            })
        })
        .collect()
}

/// mTLS against TCP connections of the first scenario that has both.
fn handshake_cost(rows: &[HandshakeRow]) -> Option<HandshakeCost> {
    rows.iter().find_map(|mtls| {
        let tcp = rows
            .iter()
            .find(|r| r.scenario == mtls.scenario && r.mode == Mode::Tcp)?;
        if mtls.mode != Mode::Mtls {
            return None;
        }
        let (m, t) = (mtls.per_second?, tcp.per_second?);
        Some(HandshakeCost {
            scenario: mtls.scenario.clone(),
            mtls_per_second: m,
            tcp_per_second: t,
            rate_ratio: if t > 0.0 { m / t } else { f64::NAN },
            mtls_cpu_s_per_1k: mtls.cpu_s_per_1k,
            tcp_cpu_s_per_1k: tcp.cpu_s_per_1k,
            handshake_cpu_s_per_1k: mtls.cpu_s_per_1k.zip(tcp.cpu_s_per_1k).map(|(m, t)| m - t),
        })
    })
}
