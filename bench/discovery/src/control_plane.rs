//! `strand-controller local` in the benchmark's network namespace, with a
//! temporary state directory, stopped and cleaned up on drop; and what it
//! uses, from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use strand_controller_core::LocalCluster;
use strand_controller_local::ApiClient;

/// Start-up is a store open and a few binds; seconds mean it is stuck.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the controller gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running controller.
pub struct ControlPlane {
    process: Process,
    pub cluster: LocalCluster,
    pub api: ApiClient,
}

/// The controller's process and directory: stopped and removed on drop,
/// also when it fails to start.
struct Process {
    child: Child,
    /// Holds `state/` (the controller's) and `controller.log`.
    dir: PathBuf,
}

/// What the controller uses at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    /// `VmRSS`, in bytes.
    pub rss_bytes: u64,
    /// `VmHWM`: the highest RSS so far, in bytes.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time so far, in seconds.
    pub cpu_seconds: f64,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts `bin local` in namespace `netns` (whose `lo` must be up) and
    /// waits until its API answers.
    pub async fn start(
        bin: &Path,
        netns: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<ControlPlane> {
        let dir = std::env::temp_dir().join(format!(
            "strand-bench-discovery-{}-{netns}",
            std::process::id()
        ));
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = dir.join("controller.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(bin)
            .arg("local")
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--cluster-name", netns])
            .env("STRAND_CONTROLLER_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} in namespace {netns}", bin.display()))?;
        let mut process = Process { child, dir };
        let (cluster, api) = wait_ready(&mut process.child, &state_dir)
            .await
            .map_err(|e| {
                let log = log_tail(&log_path);
                e.context(format!("the controller did not start; its log:\n{log}"))
            })?;
        Ok(ControlPlane {
            process,
            cluster,
            api,
        })
    }

    /// The controller's process id (from `cluster.json`).
    pub fn pid(&self) -> u32 {
        self.cluster.pid
    }

    pub fn log_path(&self) -> PathBuf {
        self.process.dir.join("controller.log")
    }

    /// The end of the controller's log (which goes with the controller's
    /// directory on drop), for an error message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        usage_of(self.pid())
    }

    /// Waits until the controller has used (almost) no CPU for a while:
    /// the index is fed from the store's watch after `apply` returns.
    pub async fn quiesce(&self, timeout: Duration) -> anyhow::Result<Duration> {
        /// Below this much CPU per sample the controller only runs timers.
        const IDLE_CPU: f64 = 0.002;
        const SAMPLE: Duration = Duration::from_millis(200);
        const IDLE_SAMPLES: u32 = 3;
        let start = Instant::now();
        let mut last = self.usage()?.cpu_seconds;
        let mut idle = 0;
        while idle < IDLE_SAMPLES {
            if start.elapsed() > timeout {
                bail!("the controller was still busy after {timeout:?}");
            }
            tokio::time::sleep(SAMPLE).await;
            let now = self.usage()?.cpu_seconds;
            idle = if now - last < IDLE_CPU { idle + 1 } else { 0 };
            last = now;
        }
        Ok(start.elapsed().saturating_sub(SAMPLE * IDLE_SAMPLES))
    }
}

// === impl Process ===

impl Drop for Process {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops a controller: SIGTERM, SIGKILL after a grace period, reaped.
pub fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `cluster.json` (written once every listener is bound) is
/// there and the API answers.
async fn wait_ready(
    child: &mut Child,
    state_dir: &Path,
) -> anyhow::Result<(LocalCluster, ApiClient)> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the controller exited with {status}");
        }
        if let Ok(cluster) = LocalCluster::load(state_dir) {
            let api = ApiClient::from_state_dir(state_dir, cluster.api_addr)?;
            if api.health().await.is_ok() {
                return Ok((cluster, api));
            }
        }
        if Instant::now() > deadline {
            bail!("not up after {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a log.
pub fn log_tail(path: &Path) -> String {
    /// Enough to see why the controller stopped, not its whole history.
    const LINES: usize = 20;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Reads `VmRSS` and `VmHWM` from `/proc/<pid>/status` and the CPU time
/// from `/proc/<pid>/stat`.
pub fn usage_of(pid: u32) -> anyhow::Result<Usage> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))
    };
    let stats =
        strand_sys::process_stats_of(&dir).with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(Usage {
        rss_bytes: kib("VmRSS:")? * 1024,
        peak_rss_bytes: kib("VmHWM:")? * 1024,
        cpu_seconds: stats.cpu_seconds,
    })
}
