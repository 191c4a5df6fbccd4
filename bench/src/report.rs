//! The report: medians per scenario and protocol, compared with `direct`,
//! printed as one table (and the handshake table, when measured) followed
//! by the ratios the project tracks, and serialized whole (every run, not
//! only medians) to JSON.

use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::bench::{Phase, Results, Series};
use crate::cli::Plan;
use crate::load::Protocol;
use crate::tools::Tools;

mod handshakes;
mod ratios;
#[cfg(test)]
mod tests;

pub use handshakes::HandshakeRow;
pub use ratios::Ratios;

/// What gets printed and written to JSON.
#[derive(Serialize)]
pub struct Report {
    pub meta: Meta,
    pub rows: Vec<Row>,
    /// Medians of the handshake measurements.
    pub handshake_rows: Vec<HandshakeRow>,
    pub ratios: Ratios,
    pub results: Results,
}

/// Where and how the run was made.
#[derive(Serialize)]
pub struct Meta {
    pub unix_time: u64,
    pub command_line: Vec<String>,
    pub kernel: String,
    pub cpus: usize,
    pub runs: u32,
    /// Fixed request rate, in requests per second.
    pub rate: u32,
    pub connections: u32,
    pub duration_seconds: f64,
    pub saturation_duration_seconds: f64,
    pub handshake_duration_seconds: f64,
    pub handshake_concurrency: u32,
    pub proxy_env: Vec<(String, String)>,
    /// The proxies ran under callgrind (`--callgrind`).
    pub callgrind: bool,
    pub tool_versions: std::collections::BTreeMap<String, String>,
}

/// Medians over the runs of one scenario and protocol. Error counts are
/// totals over all runs, so that one bad run is never averaged away.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub scenario: String,
    pub protocol: Option<Protocol>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Median p99 minus direct's median p99 for the same protocol.
    pub p99_added_ms: Option<f64>,
    /// Median p99 over direct's median p99 for the same protocol.
    pub p99_ratio: Option<f64>,
    /// Requests per second the fixed-rate runs achieved.
    pub achieved_rps: Option<f64>,
    /// Requests per second at saturation.
    pub throughput_rps: Option<f64>,
    /// Proxy CPU seconds per 10,000 requests at the fixed rate.
    pub cpu_s_per_10k: Option<f64>,
    /// The same for each round, by round number (the JSON has them under
    /// `results`).
    #[serde(skip)]
    pub cpu_s_per_10k_runs: Vec<(u32, f64)>,
    /// The same at saturation.
    pub cpu_s_per_10k_saturation: Option<f64>,
    pub rss_idle_mib: Option<f64>,
    /// Peak during the run (fixed-rate or saturation, whichever is higher).
    pub rss_peak_mib: Option<f64>,
    /// Errors plus non-2xx responses over all fixed-rate runs.
    pub fixed_errors: u64,
    /// Errors plus non-2xx responses over all saturation runs.
    pub saturation_errors: u64,
    /// Measurements (fixed-rate or saturation) that failed outright.
    pub failed: u32,
    /// With `--callgrind`: instructions the proxies on the path executed
    /// per request at the fixed rate (user space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions_per_request: Option<f64>,
}

/// A fixed-rate run counts as not having reached its rate below this
/// fraction of it: the generator or the path was saturated, and the
/// latency numbers then measure queueing, not the proxy.
const RATE_REACHED: f64 = 0.95;

const MIB: f64 = 1024.0 * 1024.0;

// === impl Report ===

impl Report {
    pub fn new(plan: &Plan, tools: &Tools, results: Results) -> Report {
        let mut rows: Vec<Row> = results.series.iter().map(Row::from_series).collect();
        compare_with_direct(&mut rows);
        let handshake_rows: Vec<HandshakeRow> = results
            .handshakes
            .iter()
            .flat_map(HandshakeRow::from_series)
            .collect();
        let ratios = Ratios::new(&rows, &handshake_rows, plan.rate);
        let meta = Meta {
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command_line: plan.command_line.clone(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            runs: plan.runs,
            rate: plan.rate,
            connections: plan.connections,
            duration_seconds: plan.duration.as_secs_f64(),
            saturation_duration_seconds: plan.saturation_duration.as_secs_f64(),
            handshake_duration_seconds: plan.handshake_duration.as_secs_f64(),
            handshake_concurrency: plan.handshake_concurrency,
            proxy_env: plan.proxy_env.clone(),
            callgrind: plan.callgrind,
            tool_versions: tools.versions.clone(),
        };
        Report {
            meta,
            rows,
            handshake_rows,
            ratios,
            results,
        }
    }

    /// The table, with notes on anything that went wrong underneath.
    pub fn table(&self) -> String {
        let m = &self.meta;
        let second = if m.callgrind {
            "proxies under callgrind, no saturation".to_string()
        } else {
            format!("saturation {}s (throughput)", m.saturation_duration_seconds)
        };
        let mut out = format!(
            "strand-bench: median of {} run(s); fixed rate {} rps over {} connections for {}s \
             (latency, CPU); {second}; {} CPUs\n\n",
            m.runs, m.rate, m.connections, m.duration_seconds, m.cpus
        );
        let header = [
            "scenario",
            "proto",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 +ms",
            "p99 x",
            "sat rps",
            "cpu-s/10k",
            "rss idle",
            "rss peak",
            "errors fix/sat",
        ];
        let mut cells: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
        cells.extend(self.rows.iter().map(|r| r.cells(f64::from(m.rate))));
        out.push_str(&render(&cells));
        out.push_str(
            "  (ms: latency at the fixed rate, from oha; p99 +ms / x: against direct; \
                      cpu-s/10k: proxy CPU seconds per 10k requests at the fixed rate; \
                      rss in MiB, all proxy processes on the path; * rate not reached)\n",
        );
        for note in self.notes() {
            let _ = writeln!(out, "  note: {note}");
        }
        let instructions = self.instructions_table();
        if !instructions.is_empty() {
            out.push('\n');
            out.push_str(&instructions);
        }
        let handshakes = handshakes::table(&self.handshake_rows, &self.results.handshakes);
        if !handshakes.is_empty() {
            out.push('\n');
            out.push_str(&handshakes);
        }
        out
    }

    /// With `--callgrind`: instructions per request, per scenario and
    /// protocol; empty otherwise.
    fn instructions_table(&self) -> String {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.instructions_per_request.is_some())
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        let mut cells = vec![vec![
            "scenario".to_string(),
            "proto".to_string(),
            "instructions/request".to_string(),
            "".to_string(),
        ]];
        for r in rows {
            cells.push(vec![
                r.scenario.clone(),
                r.protocol.map_or("", |p| p.name()).to_string(),
                num(r.instructions_per_request, 0),
                String::new(),
            ]);
        }
        let mut out = String::from(
            "Instructions the proxies on the path executed per request (callgrind, user space; \
             median of the runs):\n\n",
        );
        out.push_str(&render(&cells));
        out.push_str(
            "  (counted from 10% of each fixed-rate run, at least 1 s, to 1 s before its end, \
             over the requests the server pod's proxy served meanwhile; latency, CPU and memory \
             above are those of proxies under valgrind)\n",
        );
        let kept = self
            .results
            .series
            .iter()
            .flat_map(|s| &s.runs)
            .find_map(|m| {
                let counted = m.instructions.as_ref()?.as_ref().ok()?;
                counted.profiles.first()?.parent().map(Path::to_path_buf)
            });
        if let Some(dir) = kept {
            let _ = writeln!(
                out,
                "  profiles of the counted windows, per proxy: {} (callgrind_annotate FILE)",
                dir.display()
            );
        }
        out
    }

    pub fn ratios(&self) -> String {
        self.ratios.render()
    }

    /// Warm-up problems, failed measurements and skipped scenarios.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for s in &self.results.skipped {
            notes.push(format!("{} skipped: {}", s.scenario, s.reason));
        }
        for series in &self.results.series {
            let name = format!("{} {}", series.scenario, series.protocol.name());
            if let Some(problem) = &series.warmup_problem {
                notes.push(format!("{name}: {problem}"));
            }
            for m in &series.runs {
                let failures = [
                    ("fixed-rate", phase_error(&m.fixed)),
                    ("saturation", m.saturation.as_ref().and_then(phase_error)),
                    (
                        "instruction count",
                        m.instructions
                            .as_ref()
                            .and_then(|i| i.as_ref().err().map(String::as_str)),
                    ),
                ];
                for (what, error) in failures {
                    if let Some(error) = error {
                        notes.push(format!("{name} run {} {what} failed: {error}", m.run));
                    }
                }
                if let Phase::Ok { result, .. } = &m.fixed
                    && !result.error_kinds.is_empty()
                {
                    notes.push(format!(
                        "{name} run {} errors: {:?}",
                        m.run, result.error_kinds
                    ));
                }
            }
        }
        for series in &self.results.handshakes {
            for m in &series.runs {
                let name = format!("{} {} connections", series.scenario, m.mode.name());
                match &m.rate {
                    Phase::Failed { error } => {
                        notes.push(format!("{name} run {} failed: {error}", m.run));
                    }
                    Phase::Ok { result, .. } => {
                        if !result.error_kinds.is_empty() {
                            notes.push(format!(
                                "{name} run {} errors: {:?}",
                                m.run, result.error_kinds
                            ));
                        }
                        if let Some(counted) = result.proxy_counted
                            && counted < result.connections
                        {
                            notes.push(format!(
                                "{name} run {}: the proxy counted {counted} such connections of \
                                 {} completed (not the kind of connection meant?)",
                                m.run, result.connections
                            ));
                        }
                    }
                }
            }
        }
        notes
    }
}

fn phase_error<T>(phase: &Phase<T>) -> Option<&str> {
    match phase {
        Phase::Ok { .. } => None,
        Phase::Failed { error } => Some(error),
    }
}

/// Fills in each row's p99 against direct's row for the same protocol.
fn compare_with_direct(rows: &mut [Row]) {
    let direct: Vec<(Option<Protocol>, Option<f64>)> = rows
        .iter()
        .filter(|r| r.scenario == "direct")
        .map(|r| (r.protocol, r.p99_ms))
        .collect();
    for row in rows.iter_mut().filter(|r| r.scenario != "direct") {
        let base = direct
            .iter()
            .find(|(p, _)| *p == row.protocol)
            .and_then(|(_, p99)| *p99);
        if let (Some(base), Some(p99)) = (base, row.p99_ms) {
            row.p99_added_ms = Some(p99 - base);
            row.p99_ratio = (base > 0.0).then(|| p99 / base);
        }
    }
}

// === impl Row ===

impl Row {
    pub fn from_series(series: &Series) -> Row {
        let mut fixed = Samples::default();
        let mut sat = Samples::default();
        let mut peaks = Vec::new();
        let mut instructions = Vec::new();
        let mut row = Row {
            scenario: series.scenario.clone(),
            protocol: Some(series.protocol),
            rss_idle_mib: series.idle_rss_bytes.map(|b| b as f64 / MIB),
            ..Row::default()
        };
        let has_proxy = !series.proxies.is_empty();
        for m in &series.runs {
            let mut peak = None;
            match &m.fixed {
                Phase::Ok {
                    result: r,
                    proxy_cpu_seconds,
                    proxy_peak_rss_bytes,
                } => {
                    row.fixed_errors += r.errors + r.non_2xx;
                    fixed.p50.extend(r.p50_ms);
                    fixed.p99.extend(r.p99_ms);
                    fixed.max.extend(r.max_ms);
                    fixed.rps.push(r.achieved_rps);
                    let cpu = per_10k(*proxy_cpu_seconds, r.requests);
                    fixed.cpu.extend(cpu);
                    if has_proxy {
                        row.cpu_s_per_10k_runs.extend(cpu.map(|c| (m.run, c)));
                    }
                    peak = Some(*proxy_peak_rss_bytes);
                }
                Phase::Failed { .. } => row.failed += 1,
            }
            match &m.saturation {
                Some(Phase::Ok {
                    result: r,
                    proxy_cpu_seconds,
                    proxy_peak_rss_bytes,
                }) => {
                    row.saturation_errors += r.errors + r.non_2xx;
                    sat.rps.push(r.rps);
                    sat.cpu.extend(per_10k(*proxy_cpu_seconds, r.requests));
                    peak = peak.max(Some(*proxy_peak_rss_bytes));
                }
                Some(Phase::Failed { .. }) => row.failed += 1,
                None => {}
            }
            match &m.instructions {
                Some(Ok(counted)) => instructions.push(counted.per_request),
                Some(Err(_)) => row.failed += 1,
                None => {}
            }
            peaks.extend(peak.map(|b| b as f64 / MIB));
        }
        row.p50_ms = median(fixed.p50);
        row.p99_ms = median(fixed.p99);
        row.max_ms = median(fixed.max);
        row.achieved_rps = median(fixed.rps);
        row.throughput_rps = median(sat.rps);
        if has_proxy {
            row.cpu_s_per_10k = median(fixed.cpu);
            row.cpu_s_per_10k_saturation = median(sat.cpu);
            row.rss_peak_mib = median(peaks);
            row.instructions_per_request = median(instructions);
        }
        row
    }

    fn cells(&self, rate: f64) -> Vec<String> {
        let low_rate = self.achieved_rps.is_some_and(|r| r < rate * RATE_REACHED);
        let mark = if low_rate { "*" } else { "" };
        let errors = if self.failed > 0 {
            format!(
                "{}/{} +{} FAILED",
                self.fixed_errors, self.saturation_errors, self.failed
            )
        } else if self.fixed_errors + self.saturation_errors > 0 {
            format!("{}/{} !", self.fixed_errors, self.saturation_errors)
        } else {
            "0".to_string()
        };
        vec![
            self.scenario.clone(),
            self.protocol.map_or("", |p| p.name()).to_string(),
            num(self.p50_ms, 2),
            format!("{}{mark}", num(self.p99_ms, 2)),
            num(self.max_ms, 1),
            self.p99_added_ms
                .map_or("-".to_string(), |v| format!("{v:+.2}")),
            self.p99_ratio
                .map_or("-".to_string(), |v| format!("{v:.2}")),
            num(self.throughput_rps, 0),
            num(self.cpu_s_per_10k, 3),
            num(self.rss_idle_mib, 1),
            num(self.rss_peak_mib, 1),
            errors,
        ]
    }
}

#[derive(Default)]
struct Samples {
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    rps: Vec<f64>,
    cpu: Vec<f64>,
}

fn per_10k(cpu_seconds: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| cpu_seconds / requests as f64 * 10_000.0)
}

/// The median, or `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Left-aligns the first two columns and right-aligns the numbers.
fn render(cells: &[Vec<String>]) -> String {
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                if c < 2 || c == columns - 1 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (columns.saturating_sub(1));
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out
}
