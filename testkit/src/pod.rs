//! A pod: one network namespace on a [`Network`](crate::Network), with
//! helpers to run processes and Rust code inside it.

use std::ffi::OsStr;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::child::Child;
use crate::netns::{self, NetInner, ip_in};

/// A pod's namespace, deleted (after killing the processes inside) on drop.
pub struct Pod {
    net: Arc<NetInner>,
    name: String,
    ns: String,
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    log_dir: PathBuf,
    spawned: AtomicU32,
}

/// How long [`Pod::run`] lets a command take: generous, since it bounds
/// setup commands such as `strand-init` and curl transfers, and only a hung
/// command should ever hit it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a timed-out command's output may take to drain after SIGKILL
/// (a grandchild may hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

// === impl Pod ===

impl Pod {
    pub(crate) fn create(net: Arc<NetInner>, name: &str) -> anyhow::Result<Pod> {
        let mut pod = Pod::create_unplugged(net, name)?;
        pod.connect(pod.host())?;
        let ipv6 = pod.ipv6_reserved();
        pod.ipv6 = pod.add_ipv6(ipv6).then_some(ipv6);
        Ok(pod)
    }

    /// A pod namespace with only `lo` up: [`Pod::ip`] is reserved for it
    /// on the network, but plugging it in (`eth0`, the address) is left to
    /// the caller, e.g. a CNI plugin.
    pub(crate) fn create_unplugged(net: Arc<NetInner>, name: &str) -> anyhow::Result<Pod> {
        let ns = netns::unique_ns_name(name);
        netns::ip(&["netns", "add", &ns])?;
        let host = match net.register_pod(&ns) {
            Ok(host) => host,
            Err(e) => {
                netns::destroy_ns(&ns);
                return Err(e);
            }
        };
        let (ipv4, _) = netns::host_addrs(host);
        // From here on, dropping `pod` deletes the namespace.
        let pod = Pod {
            log_dir: netns::log_root().join(&ns),
            net,
            name: name.to_string(),
            ns,
            ipv4,
            ipv6: None,
            spawned: AtomicU32::new(0),
        };
        std::fs::create_dir_all(&pod.log_dir)
            .with_context(|| format!("creating {}", pod.log_dir.display()))?;
        ip_in(&pod.ns, &["link", "set", "lo", "up"])?;
        Ok(pod)
    }

    /// The host number of the pod's addresses on its network.
    fn host(&self) -> u8 {
        self.ipv4.octets()[3]
    }

    /// The IPv6 address the network reserves for this pod.
    fn ipv6_reserved(&self) -> Ipv6Addr {
        netns::host_addrs(self.host()).1
    }

    /// Plugs `eth0` into the bridge. The veth pair is created from inside the
    /// bridge namespace with its peer placed straight into the pod, so it
    /// never exists in the root namespace.
    fn connect(&self, host: u8) -> anyhow::Result<()> {
        let veth = netns::veth_name(host, &self.name);
        let bridge = self.net.ns();
        let addr = format!("{}/24", self.ipv4);
        ip_in(
            bridge,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &self.ns,
            ],
        )?;
        ip_in(bridge, &["link", "set", &veth, "master", "br0", "up"])?;
        ip_in(&self.ns, &["addr", "add", &addr, "dev", "eth0"])?;
        ip_in(&self.ns, &["link", "set", "eth0", "up"])?;
        ip_in(&self.ns, &["route", "add", "default", "dev", "eth0"])?;
        Ok(())
    }

    /// Adds the IPv6 address (without duplicate address detection, which
    /// would hold it back for a second or more). A kernel without IPv6 just
    /// leaves the pod IPv4-only.
    fn add_ipv6(&self, addr: Ipv6Addr) -> bool {
        let cidr = format!("{addr}/64");
        ip_in(
            &self.ns,
            &["-6", "addr", "add", &cidr, "dev", "eth0", "nodad"],
        )
        .is_ok()
            && ip_in(&self.ns, &["-6", "route", "add", "default", "dev", "eth0"]).is_ok()
    }

    /// The name given to [`Network::add_pod`](crate::Network::add_pod).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's name (`st-<pid>-<n>-<name>`).
    pub fn ns_name(&self) -> &str {
        &self.ns
    }

    /// `/run/netns/<namespace>`.
    pub fn netns_path(&self) -> PathBuf {
        netns::netns_path(&self.ns)
    }

    /// The pod's IPv4 address on `eth0` (`198.18.0.N`).
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.ipv4)
    }

    /// The pod's IPv6 address (`fd00:5a::N`), if the kernel has IPv6.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// Where the output of spawned processes is kept. It is deleted with the
    /// pod, except while panicking, so a failed test leaves the logs behind.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// `ip netns exec <namespace> PROGRAM`, running as root; add arguments
    /// with [`Command::arg`]. `PROGRAM` is looked up in `PATH`, so pass
    /// [`bin_path`](crate::bin_path) for workspace binaries.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Like [`Pod::command`], running as `uid`/`gid` with no supplementary
    /// groups (the proxy runs as 2102, which iptables capture skips).
    pub fn command_as(&self, uid: u32, gid: u32, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.command("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--"])
            .arg(program);
        cmd
    }

    /// Starts `cmd` (usually from [`Pod::command`]) in the background, its
    /// stdout and stderr going to files in [`Pod::log_dir`]. The returned
    /// guard stops the process when dropped.
    pub fn spawn(&self, cmd: Command) -> anyhow::Result<Child> {
        let seq = self.spawned.fetch_add(1, Ordering::Relaxed);
        Child::spawn(cmd, &self.log_dir, seq)
    }

    /// Runs `cmd` to completion (60 s at most) and returns its output; a
    /// non-zero exit is an error that includes stderr.
    pub fn run(&self, cmd: Command) -> anyhow::Result<Output> {
        self.run_timeout(cmd, RUN_TIMEOUT)
    }

    /// [`Pod::run`] with a custom timeout.
    pub fn run_timeout(&self, cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
        let what = format!("{cmd:?}");
        let out = self.output_timeout(cmd, timeout)?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\nstderr: {}\nstdout: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(out)
    }

    /// Runs `cmd` to completion like [`Pod::run`] but returns the output
    /// whatever the exit status (for tests that expect a failure).
    pub fn output(&self, cmd: Command) -> anyhow::Result<Output> {
        self.output_timeout(cmd, RUN_TIMEOUT)
    }

    fn output_timeout(&self, mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(timeout) {
            Ok(out) => out.with_context(|| format!("waiting for {what}")),
            Err(_) => {
                // The waiter has not reaped the child yet, so `pid` is still ours.
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
                let stderr = rx
                    .recv_timeout(DRAIN_TIMEOUT)
                    .ok()
                    .and_then(Result::ok)
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                bail!(
                    "{what} timed out after {timeout:?}; stderr: {}",
                    stderr.trim()
                )
            }
        }
    }

    /// Runs `f` on a new thread that has entered this pod's namespace, so
    /// the sockets it opens live in the pod; returns its result and
    /// re-raises its panic.
    ///
    /// # Panics
    ///
    /// When the namespace cannot be entered (it was deleted).
    pub fn in_netns<T, F>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = self.netns_path();
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("pod-{}", self.name))
                .spawn_scoped(scope, move || {
                    if let Err(e) = strand_sys::enter_netns(&path) {
                        panic!("cannot enter network namespace {}: {e}", path.display());
                    }
                    f()
                })
                .unwrap_or_else(|e| panic!("cannot start a thread for pod {}: {e}", self.name));
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs the future made by `f` to completion on a current-thread tokio
    /// runtime inside this pod's namespace (see [`Pod::in_netns`]).
    pub fn block_on<T, F, Fut>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
    {
        self.in_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
            rt.block_on(f())
        })
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.net.delete_pod(&self.ns);
        if std::thread::panicking() {
            eprintln!(
                "strand-testkit: logs of pod {} kept in {}",
                self.name,
                self.log_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("name", &self.name)
            .field("ns", &self.ns)
            .field("ip", &self.ipv4)
            .finish()
    }
}
