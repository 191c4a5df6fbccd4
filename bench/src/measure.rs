//! What the proxies cost, read from `/proc`: CPU time (user + system, all
//! threads) and resident memory, summed over each proxy process and its
//! children (nginx's workers), while a load generator runs in a pod (a
//! process, or strand-bench's own threads for the handshake load).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::bail;
use strand_testkit::Pod;

use crate::scenario;
use crate::stop::StopFlag;

/// What a load generator printed and what the proxies spent meanwhile.
pub struct Observed {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    /// CPU seconds the proxies used while the load generator ran.
    pub cpu_seconds: f64,
    /// The largest summed resident memory seen, in bytes.
    pub peak_rss_bytes: u64,
}

/// What the proxies spent while a load ran inside strand-bench.
pub struct ObservedInProcess<T> {
    pub result: T,
    /// CPU seconds the proxies used meanwhile.
    pub cpu_seconds: f64,
    /// The largest summed resident memory seen, in bytes.
    pub peak_rss_bytes: u64,
}

/// CPU time of a set of processes from the moment it was made.
struct CpuMeter {
    pids: Vec<u32>,
    before: BTreeMap<u32, f64>,
}

/// How often memory is sampled under load: often enough to catch a peak
/// that lasts a fraction of a second, rarely enough that reading `/proc`
/// costs nothing measurable.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Runs `cmd` in `pod` to completion, sampling the proxies rooted at
/// `proxies` meanwhile. Gives up after `limit` and when a stop is requested.
pub fn observe(
    pod: &Pod,
    cmd: Command,
    proxies: &[u32],
    limit: Duration,
    stop: &StopFlag,
) -> anyhow::Result<Observed> {
    let pids = with_descendants(proxies);
    let cpu = CpuMeter::start(&pids);
    let mut peak_rss_bytes = rss_bytes(&pids);
    let start = Instant::now();
    let mut child = scenario::spawn(pod, cmd)?;
    let status = loop {
        if let Some(status) = child.wait_timeout(SAMPLE_INTERVAL) {
            break status;
        }
        peak_rss_bytes = peak_rss_bytes.max(rss_bytes(&pids));
        if stop.is_set() {
            child.stop();
            bail!("interrupted");
        }
        if start.elapsed() > limit {
            child.stop();
            bail!("{} did not finish within {limit:?}", child.label());
        }
    };
    Ok(Observed {
        stdout: child.stdout_text(),
        stderr: child.stderr_text(),
        status,
        cpu_seconds: cpu.seconds(),
        peak_rss_bytes,
    })
}

/// Runs `load` on a thread of its own to completion, sampling the proxies
/// rooted at `proxies` meanwhile, as [`observe`] does for a process. The
/// load bounds its own run time.
pub fn observe_in_process<T: Send>(
    proxies: &[u32],
    load: impl FnOnce() -> T + Send,
) -> ObservedInProcess<T> {
    let pids = with_descendants(proxies);
    let cpu = CpuMeter::start(&pids);
    let mut peak_rss_bytes = rss_bytes(&pids);
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = scope.spawn(move || {
            let result = load();
            // The receiver only goes away once this thread was joined.
            let _ = tx.send(());
            result
        });
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(SAMPLE_INTERVAL)
        {
            peak_rss_bytes = peak_rss_bytes.max(rss_bytes(&pids));
        }
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    ObservedInProcess {
        result,
        cpu_seconds: cpu.seconds(),
        peak_rss_bytes,
    }
}

/// The summed resident memory of the processes rooted at `proxies`, in bytes.
pub fn rss_of(proxies: &[u32]) -> u64 {
    rss_bytes(&with_descendants(proxies))
}

/// `roots` and every process descending from them.
fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    for entry in entries {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| parent_pid(&stat));
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = BTreeSet::new();
    let mut queue: Vec<u32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        if found.insert(pid) {
            queue.extend(children.get(&pid).into_iter().flatten());
        }
    }
    found.into_iter().collect()
}

fn cpu_by_pid(pids: &[u32]) -> BTreeMap<u32, f64> {
    pids.iter()
        .filter_map(|&pid| {
            let dir = format!("/proc/{pid}");
            let stats = strand_sys::process_stats_of(Path::new(&dir)).ok()?;
            Some((pid, stats.cpu_seconds))
        })
        .collect()
}

fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| vm_rss_bytes(&status))
        .sum()
}

/// Field 4 of `/proc/<pid>/stat`; the command name before it may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS:` of `/proc/<pid>/status`, in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

// === impl CpuMeter ===

impl CpuMeter {
    fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            before: cpu_by_pid(pids),
        }
    }

    /// CPU seconds used since [`CpuMeter::start`].
    fn seconds(&self) -> f64 {
        let after = cpu_by_pid(&self.pids);
        // Only processes seen both times count; none should come or go mid-run.
        self.before
            .iter()
            .filter_map(|(pid, before)| Some(after.get(pid)? - before))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_skips_odd_command_names() {
        let stat = "4242 (nginx: worker (x) y) S 4240 4240 4240 0 -1 4194624 101 0";
        assert_eq!(parent_pid(stat), Some(4240));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tstrand-proxy\nVmPeak:\t  20000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(5120 * 1024));
        // Kernel threads have no VmRSS line.
        assert_eq!(vm_rss_bytes("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_is_its_own_tree() {
        let me = std::process::id();
        assert!(with_descendants(&[me]).contains(&me));
        assert!(rss_of(&[me]) > 0);
    }
}
