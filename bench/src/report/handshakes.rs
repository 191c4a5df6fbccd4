//! The handshake table: new connections per second into a server proxy,
//! mTLS against plain TCP, and the proxy's CPU per 1,000 of them (medians
//! over the runs; errors totalled).

use std::fmt::Write;

use serde::Serialize;

use super::{median, num, render};
use crate::bench::{HandshakeSeries, Phase};
use crate::handshake::Mode;

/// Medians over the runs of one scenario and connection mode.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeRow {
    pub scenario: String,
    pub mode: Mode,
    /// Completed connections per second.
    pub per_second: Option<f64>,
    /// Connect to the proxy's close, in milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The server proxy's CPU seconds per 1,000 connections.
    pub cpu_s_per_1k: Option<f64>,
    /// Failed connections over all runs.
    pub errors: u64,
    /// Measurements that failed outright.
    pub failed: u32,
}

// === impl HandshakeRow ===

impl HandshakeRow {
    /// One row per mode measured in `series`.
    pub fn from_series(series: &HandshakeSeries) -> Vec<HandshakeRow> {
        Mode::ALL
            .into_iter()
            .filter(|mode| series.runs.iter().any(|m| m.mode == *mode))
            .map(|mode| {
                let mut row = HandshakeRow {
                    scenario: series.scenario.clone(),
                    mode,
                    per_second: None,
                    p50_ms: None,
                    p99_ms: None,
                    cpu_s_per_1k: None,
                    errors: 0,
                    failed: 0,
                };
                let (mut rate, mut p50, mut p99, mut cpu) = (vec![], vec![], vec![], vec![]);
                for m in series.runs.iter().filter(|m| m.mode == mode) {
                    match &m.rate {
                        Phase::Ok {
                            result: r,
                            proxy_cpu_seconds,
                            ..
                        } => {
                            row.errors += r.errors;
                            rate.push(r.per_second);
                            p50.extend(r.p50_ms);
                            p99.extend(r.p99_ms);
                            if r.connections > 0 {
                                cpu.push(proxy_cpu_seconds / r.connections as f64 * 1000.0);
                            }
                        }
                        Phase::Failed { .. } => row.failed += 1,
                    }
                }
                row.per_second = median(rate);
                row.p50_ms = median(p50);
                row.p99_ms = median(p99);
                row.cpu_s_per_1k = median(cpu);
                row
            })
            .collect()
    }

    fn cells(&self) -> Vec<String> {
        let errors = match (self.failed, self.errors) {
            (0, 0) => "0".to_string(),
            (0, e) => format!("{e} !"),
            (f, e) => format!("{e} +{f} FAILED"),
        };
        let mode = match self.mode {
            Mode::Mtls => "mtls",
            Mode::Tcp => "tcp",
        };
        vec![
            self.scenario.clone(),
            mode.to_string(),
            num(self.per_second, 0),
            num(self.p50_ms, 2),
            num(self.p99_ms, 2),
            num(self.cpu_s_per_1k, 3),
            errors,
        ]
    }
}

/// The table, with the settings it was measured with; empty without rows.
pub fn table(rows: &[HandshakeRow], series: &[HandshakeSeries]) -> String {
    let Some(first) = series.first() else {
        return String::new();
    };
    let mut out = format!(
        "New connections into the server pod's inbound proxy ({} from the control pod), {} at \
         a time for {}s:\n\n",
        first.target, first.concurrency, first.duration_seconds
    );
    let header = [
        "scenario", "conn", "conn/s", "p50 ms", "p99 ms", "cpu-s/1k", "errors",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
    cells.extend(rows.iter().map(HandshakeRow::cells));
    out.push_str(&render(&cells));
    let _ = writeln!(
        out,
        "  (mtls: TLS 1.3 handshake with a client certificate, SNI the proxy's identity, no \
         resumption, then close; tcp: connect, then close; each waits for the proxy's close; \
         ms: connect to close; cpu-s/1k: the proxy's CPU seconds per 1,000 connections)"
    );
    out
}
