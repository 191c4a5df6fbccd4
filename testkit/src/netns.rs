//! Networks: a bridge namespace with `br0` that pods plug into, the naming
//! scheme that keeps parallel test runs apart, and the teardown that removes
//! namespaces (ours on drop, stale ones from killed runs on the next start).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::pod::Pod;

/// A bridged L2 network of pods, deleted with everything on it when dropped.
///
/// Pods get `198.18.0.N/24` (N from 2) and, when the kernel has IPv6,
/// `fd00:5a::N/64`. Each network is its own bridge namespace, so two networks
/// may hand out the same addresses without ever seeing each other.
pub struct Network {
    inner: Arc<NetInner>,
}

/// State shared between a [`Network`] and its pods.
pub(crate) struct NetInner {
    ns: String,
    state: Mutex<NetState>,
}

struct NetState {
    /// The host part of the next pod address.
    next_host: u8,
    /// Namespaces of pods that have not been deleted yet.
    pods: Vec<String>,
}

/// Every namespace this crate creates is named `st-<pid>-<counter>-<label>`:
/// the pid tells a later run whether the creator is still alive, the counter
/// keeps names unique within a process.
const PREFIX: &str = "st-";

/// Labels are cut to this many characters; they only help a human reading
/// `ip netns list`, the pid and counter already make names unique.
const MAX_LABEL: usize = 20;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// The first pod address: `.0` is the network and `.1` is left for a gateway
/// a test may want to add.
const FIRST_HOST: u8 = 2;
/// The last pod address (`.255` is broadcast).
const LAST_HOST: u8 = 254;

/// How long processes in a namespace get between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

static COUNTER: AtomicU64 = AtomicU64::new(0);

// === impl Network ===

impl Network {
    /// Creates a bridge namespace with `br0` up. `name_hint` appears in the
    /// namespace name to help debugging.
    ///
    /// Also deletes namespaces left behind by test processes that died
    /// without cleaning up.
    pub fn new(name_hint: &str) -> anyhow::Result<Network> {
        if !strand_sys::is_root() {
            bail!(crate::NEED_ROOT);
        }
        sweep_stale();
        let ns = unique_ns_name(name_hint);
        ip(&["netns", "add", &ns])?;
        // From here on, dropping `net` deletes the namespace.
        let net = Network {
            inner: Arc::new(NetInner {
                ns,
                state: Mutex::new(NetState {
                    next_host: FIRST_HOST,
                    pods: Vec::new(),
                }),
            }),
        };
        net.inner.ip_in(&["link", "add", "br0", "type", "bridge"])?;
        net.inner.ip_in(&["link", "set", "br0", "up"])?;
        Ok(net)
    }

    /// Creates a pod: a namespace with `lo` up and `eth0` on this network's
    /// bridge, its address, and a default route out of `eth0`.
    pub fn add_pod(&self, name: &str) -> anyhow::Result<Pod> {
        Pod::create(Arc::clone(&self.inner), name)
    }

    /// Creates a pod namespace with only `lo` up and no `eth0`: its
    /// address ([`Pod::ip`]) is reserved, and plugging it into the bridge is
    /// left to the caller (a CNI plugin run in the bridge namespace).
    pub fn add_unplugged_pod(&self, name: &str) -> anyhow::Result<Pod> {
        Pod::create_unplugged(Arc::clone(&self.inner), name)
    }

    /// The bridge namespace's name.
    pub fn ns_name(&self) -> &str {
        &self.inner.ns
    }

    /// `/run/netns/<bridge namespace>`.
    pub fn netns_path(&self) -> PathBuf {
        netns_path(&self.inner.ns)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut self.inner.state().pods);
        for pod in pods {
            destroy_ns(&pod);
        }
        destroy_ns(&self.inner.ns);
    }
}

// === impl NetInner ===

impl NetInner {
    pub(crate) fn ns(&self) -> &str {
        &self.ns
    }

    fn state(&self) -> MutexGuard<'_, NetState> {
        // The state stays consistent even if a holder panicked: every update
        // is a single push, remove or increment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `ip -n <bridge namespace> ARGS`.
    pub(crate) fn ip_in(&self, args: &[&str]) -> anyhow::Result<String> {
        ip_in(&self.ns, args)
    }

    /// Reserves the next host number and records `ns` as a live pod.
    pub(crate) fn register_pod(&self, ns: &str) -> anyhow::Result<u8> {
        let mut state = self.state();
        let host = state.next_host;
        if host > LAST_HOST {
            bail!(
                "network {} is full ({} pods)",
                self.ns,
                LAST_HOST - FIRST_HOST + 1
            );
        }
        state.next_host = host + 1;
        state.pods.push(ns.to_string());
        Ok(host)
    }

    /// Deletes a pod's namespace unless the network already did.
    pub(crate) fn delete_pod(&self, ns: &str) {
        let registered = {
            let mut state = self.state();
            let before = state.pods.len();
            state.pods.retain(|p| p != ns);
            state.pods.len() != before
        };
        if registered {
            destroy_ns(ns);
        }
    }
}

// === naming and addressing ===

/// A namespace name no other process or call uses.
pub(crate) fn unique_ns_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ns_name(std::process::id(), n, label)
}

fn ns_name(pid: u32, counter: u64, label: &str) -> String {
    format!("{PREFIX}{pid}-{counter}-{}", sanitize(label, MAX_LABEL))
}

/// The pid of the process that created namespace `name`, if the name follows
/// this crate's scheme.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().filter(|label| !label.is_empty())?;
    Some(pid)
}

/// Lowercase letters, digits and `-`, at most `max` characters, never empty.
pub(crate) fn sanitize(label: &str, max: usize) -> String {
    let clean: String = label
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(max)
        .collect();
    if clean.is_empty() {
        "x".to_string()
    } else {
        clean
    }
}

/// The bridge-side name of pod `host`'s veth: `v<host>-<label>`, cut to the
/// kernel's limit (the host number alone keeps it unique).
pub(crate) fn veth_name(host: u8, label: &str) -> String {
    let mut name = format!("v{host}-{}", sanitize(label, MAX_IFNAME));
    name.truncate(MAX_IFNAME);
    name
}

/// Pod `host`'s addresses: `198.18.0.<host>` and `fd00:5a::<host>`.
pub(crate) fn host_addrs(host: u8) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::new(198, 18, 0, host),
        Ipv6Addr::new(0xfd00, 0x5a, 0, 0, 0, 0, 0, u16::from(host)),
    )
}

pub(crate) fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Where pods keep the stdout and stderr of the processes they spawn.
pub(crate) fn log_root() -> PathBuf {
    std::env::temp_dir().join("strand-testkit")
}

// === running ip ===

/// Runs `ip ARGS`, returning stdout; the error names the command and
/// carries its stderr.
pub(crate) fn ip(args: &[&str]) -> anyhow::Result<String> {
    Ok(strand_sys::net::ip(args)?)
}

/// Runs `ip -n NS ARGS`: inside namespace `ns`, never in the root namespace.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

// === teardown ===

/// Kills the processes in namespace `ns` (SIGTERM, then SIGKILL after
/// [`KILL_GRACE`]) and deletes it. Best effort: failures are printed, since
/// this runs in `Drop`.
pub(crate) fn destroy_ns(ns: &str) {
    let mut pids = ns_pids(ns);
    if !pids.is_empty() {
        signal_all(&pids, Signal::SIGTERM);
        let deadline = Instant::now() + KILL_GRACE;
        while !pids.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            pids = ns_pids(ns);
        }
        signal_all(&pids, Signal::SIGKILL);
    }
    if let Err(e) = ip(&["netns", "del", ns]) {
        eprintln!("strand-testkit: cannot delete namespace {ns}: {e:#}");
    }
}

/// Processes whose main thread is in namespace `ns`, never this process
/// (its threads may visit a pod with `in_netns`, but they are not listed).
fn ns_pids(ns: &str) -> Vec<u32> {
    let me = std::process::id();
    ip(&["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|&p| p != me)
                .collect()
        })
        .unwrap_or_default()
}

fn signal_all(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Ok(raw) = i32::try_from(pid) {
            // The process may have exited meanwhile; that is the goal anyway.
            let _ = kill(Pid::from_raw(raw), signal);
        }
    }
}

/// Deletes namespaces and log directories whose creating process is gone
/// (a test run killed before its guards ran).
fn sweep_stale() {
    let stale = |name: &str| {
        owner_pid(name).is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
    };
    for name in dir_names(Path::new("/run/netns")) {
        if stale(&name) {
            eprintln!("strand-testkit: deleting stale namespace {name}");
            destroy_ns(&name);
        }
    }
    let logs = log_root();
    for name in dir_names(&logs) {
        if stale(&name) {
            let _ = std::fs::remove_dir_all(logs.join(name));
        }
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_pid_counter_and_label() {
        assert_eq!(ns_name(4242, 7, "net"), "st-4242-7-net");
        assert_eq!(ns_name(1, 0, "My Pod_1"), "st-1-0-my-pod-1");
        assert_eq!(ns_name(1, 0, ""), "st-1-0-x");
        let long = ns_name(1, 0, &"a".repeat(100));
        assert_eq!(long.len(), "st-1-0-".len() + MAX_LABEL);
    }

    #[test]
    fn names_are_unique_per_call() {
        let a = unique_ns_name("net");
        let b = unique_ns_name("net");
        assert_ne!(a, b);
        assert_eq!(owner_pid(&a), Some(std::process::id()));
    }

    #[test]
    fn owner_pid_only_matches_our_scheme() {
        assert_eq!(owner_pid("st-4242-7-net"), Some(4242));
        assert_eq!(owner_pid("st-4242-7-a-b"), Some(4242));
        assert_eq!(owner_pid("st-4242-7-"), None);
        assert_eq!(owner_pid("st-4242-net"), None);
        assert_eq!(owner_pid("st-x-7-net"), None);
        assert_eq!(owner_pid("cni-4242-7-net"), None);
        assert_eq!(owner_pid("st-probe-a"), None);
    }

    #[test]
    fn veth_names_fit_the_kernel_limit() {
        assert_eq!(veth_name(2, "a"), "v2-a");
        assert_eq!(veth_name(254, "frontend-server"), "v254-frontend-s");
        for host in [FIRST_HOST, 99, LAST_HOST] {
            assert!(veth_name(host, &"x".repeat(64)).len() <= MAX_IFNAME);
        }
    }

    #[test]
    fn addresses_follow_the_host_number() {
        let (v4, v6) = host_addrs(2);
        assert_eq!(v4, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(v6.to_string(), "fd00:5a::2");
        assert_eq!(host_addrs(LAST_HOST).0.to_string(), "198.18.0.254");
    }

    #[test]
    fn allocation_starts_at_two_and_stops_at_254() {
        let net = NetInner {
            ns: "st-0-0-test".to_string(),
            state: Mutex::new(NetState {
                next_host: FIRST_HOST,
                pods: Vec::new(),
            }),
        };
        let hosts: Vec<u8> = (0..253)
            .map(|i| {
                net.register_pod(&format!("p{i}"))
                    .expect("room for 253 pods")
            })
            .collect();
        assert_eq!(hosts.first(), Some(&2));
        assert_eq!(hosts.last(), Some(&254));
        let err = net.register_pod("one-too-many").expect_err("full");
        assert!(err.to_string().contains("is full"), "{err}");
    }
}
