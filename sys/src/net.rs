//! Host networking for local mode, through iproute2's `ip`: the bridge pods
//! plug into, and each pod's network namespace with its veth, address,
//! default route and resolver configuration.
//!
//! ```text
//!   host netns:  strand0 (gateway 10.42.0.1/16) ── vethXXXX ─┐
//!   pod netns:                                     eth0 10.42.0.N/16, default via 10.42.0.1
//! ```

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One pod's network: its namespace, the host side of its veth, its address.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The name under `/run/netns`.
    pub netns: String,
    /// The bridge-side veth's name (at most 15 bytes).
    pub host_veth: String,
    pub bridge: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// Runs `ip ARGS` and returns its stdout; the error names the command and
/// carries its stderr.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run `ip {}` (is iproute2 installed?): {e}",
                    args.join(" ")
                ),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -n NS ARGS`.
pub fn ip_in(netns: &str, args: &[&str]) -> io::Result<String> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all)
}

pub fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

pub fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

pub fn netns_exists(netns: &str) -> bool {
    netns_path(netns).exists()
}

/// Creates bridge `name` with `gateway/prefix_len` and brings it up; an
/// existing bridge is kept (and given the address if it lacks it).
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    if !link_exists(name) {
        ip(&["link", "add", name, "type", "bridge"])?;
    }
    let cidr = format!("{gateway}/{prefix_len}");
    let addrs = ip(&["-4", "-o", "addr", "show", "dev", name])?;
    if !addrs.contains(&format!(" {cidr} ")) {
        ip(&["addr", "add", &cidr, "dev", name])?;
    }
    ip(&["link", "set", name, "up"])?;
    Ok(())
}

/// Deletes a link if it exists.
pub fn delete_link(name: &str) -> io::Result<()> {
    if link_exists(name) {
        ip(&["link", "del", name])?;
    }
    Ok(())
}

/// Creates the pod's namespace, plugs it into the bridge, and writes
/// `/etc/netns/<netns>/resolv.conf` (which `ip netns exec` mounts over
/// `/etc/resolv.conf` for processes started in the pod).
///
/// On failure, whatever was created is removed again.
pub fn create_pod_network(pod: &PodNetwork, resolv_conf: &str) -> io::Result<()> {
    ip(&["netns", "add", &pod.netns])?;
    let result = (|| {
        ip_in(&pod.netns, &["link", "set", "lo", "up"])?;
        // The peer is created straight inside the pod as eth0.
        ip(&[
            "link",
            "add",
            &pod.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod.netns,
        ])?;
        ip(&["link", "set", &pod.host_veth, "master", &pod.bridge])?;
        ip(&["link", "set", &pod.host_veth, "up"])?;
        let cidr = format!("{}/{}", pod.addr, pod.prefix_len);
        ip_in(&pod.netns, &["addr", "add", &cidr, "dev", "eth0"])?;
        ip_in(&pod.netns, &["link", "set", "eth0", "up"])?;
        ip_in(
            &pod.netns,
            &["route", "add", "default", "via", &pod.gateway.to_string()],
        )?;
        let etc = Path::new("/etc/netns").join(&pod.netns);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(etc.join("resolv.conf"), resolv_conf)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = delete_pod_network(pod);
    }
    result
}

/// Removes the pod's namespace, veth and resolver file. Processes still in
/// the namespace keep it alive until they exit; callers stop them first.
pub fn delete_pod_network(pod: &PodNetwork) -> io::Result<()> {
    let _ = delete_link(&pod.host_veth);
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&pod.netns));
    if netns_exists(&pod.netns) {
        ip(&["netns", "del", &pod.netns])?;
    }
    Ok(())
}

/// Process ids whose network namespace is `netns`.
pub fn netns_pids(netns: &str) -> Vec<u32> {
    ip(&["netns", "pids", netns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names under `/run/netns` starting with `prefix`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process in network namespace `netns` (best effort: a
/// process may exit meanwhile).
pub fn kill_all_in(netns: &str) {
    use nix::sys::signal::{Signal, kill};
    for pid in netns_pids(netns) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
