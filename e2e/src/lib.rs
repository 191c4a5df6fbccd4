//! Helpers for the end-to-end tests: a meshed pod is a test-bed pod whose
//! traffic `strand-init` captures and whose `strand-proxy` runs as the
//! proxy user, as on a real node.
//!
//! ```text
//!   client pod                              server pod
//!   app (uid 2103) ─► iptables ─► :4140 ─► iptables ─► :4143 ─► app
//!                                 proxy (uid 2102)     proxy (uid 2102)
//! ```

#![forbid(unsafe_code)]

pub mod browser;
pub mod cni;
pub mod local;
pub mod pcap;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strand_testkit::{Child, Network, Pod, bin_path};

/// The proxy's user id, which the iptables rules exempt from capture.
pub const PROXY_UID: u32 = 2102;
/// The user applications run as.
pub const APP_UID: u32 = 2103;

/// A pod with traffic capture and a running proxy.
pub struct MeshedPod {
    // Field order is drop order: stop the proxy before deleting the pod.
    pub proxy: Child,
    pub pod: Pod,
}

// === impl MeshedPod ===

impl MeshedPod {
    /// Adds a pod to `net`, installs the iptables rules with `strand-init`
    /// (as root, as an init container would), starts `strand-proxy` as
    /// [`PROXY_UID`] with `env` on top of the defaults, and waits until the
    /// proxy reports ready.
    pub fn start(net: &Network, name: &str, env: &[(&str, &str)]) -> anyhow::Result<MeshedPod> {
        let pod = net.add_pod(name)?;
        pod.run(pod.command(bin_path("strand-init")))
            .context("strand-init")?;
        MeshedPod::start_in(pod, env)
    }

    /// Starts the proxy in `pod`, whose traffic something else captures
    /// already (e.g. the CNI plugin), and waits until it reports ready.
    pub fn start_in(pod: Pod, env: &[(&str, &str)]) -> anyhow::Result<MeshedPod> {
        let mut cmd = pod.command_as(PROXY_UID, PROXY_UID, bin_path("strand-proxy"));
        cmd.env("STRAND_PROXY_LOG", "warn,strand_proxy=info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proxy = pod.spawn(cmd)?;
        let meshed = MeshedPod { proxy, pod };
        meshed.wait_ready()?;
        Ok(meshed)
    }

    /// Waits until the admin server answers `/ready` with 200.
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + strand_testkit::patience();
        loop {
            let out = self.pod.output(self.curl_admin("/ready"))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "proxy in {} not ready; stderr:\n{}",
                    self.pod.name(),
                    self.proxy.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The proxy's Prometheus metrics.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let out = self.pod.run(self.curl_admin("/metrics"))?;
        Ok(Metrics(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// A command running `strand-testapp` as the application user.
    pub fn app(&self) -> Command {
        self.pod
            .command_as(APP_UID, APP_UID, bin_path("strand-testapp"))
    }

    /// Runs `strand-testapp ARGS` as the application user to completion and
    /// parses the JSON line it prints.
    pub fn run_app(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut cmd = self.app();
        cmd.args(args);
        let out = self.pod.run(cmd)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("testapp {args:?} printed {text:?}"))
    }

    /// The proxy's resident memory, in bytes.
    pub fn proxy_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proxy.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    fn curl_admin(&self, path: &str) -> Command {
        let mut cmd = self.pod.command("curl");
        cmd.args([
            "-sf",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:4191{path}"),
        ]);
        cmd
    }
}

/// A temporary directory every user may write (apps run as [`APP_UID`]),
/// removed on drop.
pub struct SharedDir(std::path::PathBuf);

impl SharedDir {
    pub fn new(hint: &str) -> anyhow::Result<SharedDir> {
        use std::os::unix::fs::PermissionsExt;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("strand-e2e-{}-{n}-{hint}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
        Ok(SharedDir(dir))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scrape of a proxy's `/metrics`.
#[derive(Clone, Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every sample of `name` whose labels include all of
    /// `labels` (`key="value"` fragments).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && labels.iter().all(|f| rest.contains(f)))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum::<f64>()
            // An empty float sum is -0.0; report it as 0.
            + 0.0
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let m = Metrics(
            "# TYPE x counter\nrequest_total{direction=\"inbound\",a=\"1\"} 2\nrequest_total{direction=\"inbound\",a=\"2\"} 3\nrequest_total{direction=\"outbound\"} 7\nrequest_totalx 9\n"
                .into(),
        );
        assert_eq!(m.sum("request_total", &["direction=\"inbound\""]), 5.0);
        assert_eq!(m.sum("request_total", &[]), 12.0);
        assert_eq!(m.sum("missing", &[]), 0.0);
    }
}
