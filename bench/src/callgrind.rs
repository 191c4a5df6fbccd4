//! `--callgrind`: instructions per request instead of seconds. Every
//! strand-proxy runs under valgrind's callgrind; during a fixed-rate
//! measurement its counters are zeroed once the load is steady and dumped
//! before it ends (callgrind's `zero` and `dump` monitor commands, sent
//! with `vgdb`), and the server pod's
//! proxy's `request_total` is read at both moments. The instructions all
//! proxies on the path executed in that window, over the requests served in
//! it, are the path's user-space cost per request: repeatable to a fraction
//! of a percent, unlike CPU seconds on a shared 2-core machine, where two
//! identical runs differ by 15%.
//!
//! ```text
//!   oha ──────────────────────────────────────────────────────────► end
//!         |<- settle ->| zero, count₀        dump, count₁ |<- tail ->|
//!                      '--------- the counted window -----'
//! ```
//!
//! Kernel work (system calls, TCP) is not in the count; `bench/callgrind.sh
//! --mode strace` counts system calls per request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// How callgrind runs the proxies and where its dumps go.
#[derive(Clone, Debug)]
pub struct Callgrind {
    pub valgrind: PathBuf,
    /// Sends monitor commands to a process under valgrind.
    pub vgdb: PathBuf,
    /// Writable by the proxies' user; a proxy with pid P dumps to
    /// `callgrind.P.N` here.
    pub out_dir: PathBuf,
}

/// How long a proxy may take to act on a monitor command.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(10);

/// What one counted window gave.
#[derive(Clone, Debug, Serialize)]
pub struct Counted {
    /// Requests the server pod's proxy served in the window.
    pub requests: u64,
    /// Instructions per proxy on the path in the window, by label.
    pub instructions: Vec<(String, u64)>,
    /// All proxies' instructions over `requests`.
    pub per_request: f64,
    /// The window's profiles, one per proxy, kept for `callgrind_annotate`.
    pub profiles: Vec<PathBuf>,
}

/// Where the profiles of a run whose JSON goes to `json` are kept: beside
/// it, in `<json without .json>.callgrind/`.
pub fn profiles_dir(json: &Path) -> PathBuf {
    json.with_extension("callgrind")
}

/// A file name for one proxy's profile of one measurement.
pub fn profile_name(scenario: &str, protocol: &str, run: u32, proxy: &str) -> String {
    let proxy: String = proxy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{scenario}-{protocol}-run{run}-{}.out",
        proxy.trim_matches('_')
    )
}

/// The window of a fixed-rate measurement of `duration` that is counted:
/// after a second for connections and pools to settle (at least 10% of the
/// run), and ending a second before the load does (so the load never stops
/// inside it). `None` when the run is too short to leave a window.
pub fn window(duration: Duration) -> Option<(Duration, Duration)> {
    let settle = Duration::from_secs(1).max(duration / 10);
    let tail = Duration::from_secs(1);
    let end = duration.checked_sub(tail)?;
    (end > settle).then_some((settle, end))
}

// === impl Callgrind ===

impl Callgrind {
    /// The command that runs `program` under callgrind.
    pub fn wrap(&self, program: &Path) -> (PathBuf, Vec<String>) {
        let out = self.out_dir.join("callgrind.%p");
        let args = vec![
            "--tool=callgrind".to_string(),
            format!("--callgrind-out-file={}", out.display()),
            // Instruction totals only: no per-instruction or jump data.
            "--dump-instr=no".to_string(),
            "--collect-jumps=no".to_string(),
            program.display().to_string(),
        ];
        (self.valgrind.clone(), args)
    }

    /// Zeroes the counters of the process `pid`.
    pub fn zero(&self, pid: u32) -> anyhow::Result<()> {
        self.monitor(pid, "zero")
    }

    /// Dumps the counters of `pid` and returns the instructions since the
    /// last zeroing (or dump), with the dump's path.
    pub fn dump(&self, pid: u32) -> anyhow::Result<(u64, PathBuf)> {
        let before = self.latest_dump(pid)?.map(|(n, _)| n);
        self.monitor(pid, "dump")?;
        // The dump may land just after vgdb returns.
        for _ in 0..100 {
            if let Some((n, path)) = self.latest_dump(pid)?
                && Some(n) != before
            {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                if let Some(total) = totals(&text) {
                    return Ok((total, path));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("callgrind wrote no dump for pid {pid} within 5 s");
    }

    /// Sends callgrind's monitor command `command` to `pid`, as the
    /// proxies' user: vgdb run by root fails to reach a process of another
    /// user that it has to wake from a system call (and leaves it unable to
    /// answer anyone).
    fn monitor(&self, pid: u32, command: &str) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let out = Command::new(&self.vgdb)
            .uid(crate::scenario::PROXY_UID)
            .gid(crate::scenario::PROXY_UID)
            .arg(format!("--pid={pid}"))
            .arg(format!("--cmd-time-out={}", MONITOR_TIMEOUT.as_secs()))
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.vgdb.display()))?;
        if !out.status.success() {
            bail!(
                "vgdb --pid={pid} {command}: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The highest-numbered dump of `pid` so far, with its number.
    fn latest_dump(&self, pid: u32) -> anyhow::Result<Option<(u32, PathBuf)>> {
        let prefix = format!("callgrind.{pid}.");
        let entries = std::fs::read_dir(&self.out_dir)
            .with_context(|| format!("listing {}", self.out_dir.display()))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
                Some((n, e.path()))
            })
            .max_by_key(|(n, _)| *n))
    }
}

/// The `totals:` (or, from older valgrinds, `summary:`) line of a callgrind
/// dump: its instruction count.
fn totals(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Sums the `request_total` samples of the inbound direction in Prometheus
/// text: every request the server pod's proxy served.
pub fn inbound_requests(metrics: &str) -> u64 {
    crate::handshake::sum_counter(
        metrics,
        "request_total",
        &["direction=\"inbound\"".to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_leaves_time_to_settle_and_a_tail() {
        let s = Duration::from_secs;
        assert_eq!(window(s(20)), Some((s(2), s(19))));
        assert_eq!(window(s(5)), Some((s(1), s(4))));
        assert_eq!(window(s(2)), None);
        assert_eq!(window(Duration::from_millis(500)), None);
    }

    #[test]
    fn totals_of_a_dump() {
        let dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
                    events: Ir\ncmd: strand-proxy\n\nfl=(1) x.rs\nfn=(1) f\n3 10\n\ntotals: 123456\n";
        assert_eq!(totals(dump), Some(123_456));
        assert_eq!(totals("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(totals("events: Ir\n"), None);
    }

    #[test]
    fn inbound_requests_sum_every_label_set() {
        let metrics = "# TYPE request_total counter\n\
            request_total{direction=\"inbound\",authority=\"a\",tls=\"true\"} 10\n\
            request_total{direction=\"inbound\",authority=\"b\",tls=\"no_identity\"} 5\n\
            request_total{direction=\"outbound\",authority=\"c\"} 7\n\
            response_total{direction=\"inbound\",authority=\"a\"} 99\n";
        assert_eq!(inbound_requests(metrics), 15);
    }

    #[test]
    fn profiles_are_named_by_measurement_and_proxy() {
        assert_eq!(
            profiles_dir(Path::new("bench/results/bench-17.json")),
            Path::new("bench/results/bench-17.callgrind")
        );
        assert_eq!(
            profile_name("strand-pair-mtls", "grpc", 2, "strand-proxy (load)"),
            "strand-pair-mtls-grpc-run2-strand-proxy__load.out"
        );
    }

    #[test]
    fn wrap_runs_the_program_under_callgrind() {
        let c = Callgrind {
            valgrind: "/usr/bin/valgrind".into(),
            vgdb: "/usr/bin/vgdb".into(),
            out_dir: "/tmp/b/callgrind".into(),
        };
        let (program, args) = c.wrap(Path::new("/tmp/b/bin/strand-proxy"));
        assert_eq!(program, Path::new("/usr/bin/valgrind"));
        assert_eq!(args[0], "--tool=callgrind");
        assert_eq!(
            args[1],
            "--callgrind-out-file=/tmp/b/callgrind/callgrind.%p"
        );
        assert_eq!(args.last().unwrap(), "/tmp/b/bin/strand-proxy");
    }
}
