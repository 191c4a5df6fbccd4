//! `perf record` attached to the controller for one phase of the run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::{Phase, Plan};

/// 999 Hz rather than perf's 4 kHz: DWARF call graphs copy the stack on
/// every sample, and the initial sync alone is tens of CPU seconds.
const FREQUENCY: &str = "999";

/// A running `perf record`; stopped on drop with SIGINT, so that it writes
/// its file.
pub struct Perf(Child);

// === impl Perf ===

impl Perf {
    /// Starts recording `pid` when the plan asks for `phase`.
    pub async fn maybe(plan: &Plan, phase: Phase, pid: u32) -> anyhow::Result<Option<Perf>> {
        match &plan.perf {
            Some((out, p)) if *p == phase => {
                let perf = Perf::start(pid, out)?;
                // perf needs a moment to attach before the phase starts.
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Some(perf))
            }
            _ => Ok(None),
        }
    }

    fn start(pid: u32, out: &Path) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", FREQUENCY])
            .args(["--call-graph", "dwarf", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        Ok(Perf(child))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let _ = self.0.wait();
    }
}
