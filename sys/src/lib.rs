//! The one crate in strand that calls into the operating system below the
//! level of `std` and tokio: reading a redirected connection's original
//! destination (`SO_ORIGINAL_DST`), moving a thread into a network namespace,
//! reading this process's resource usage from `/proc`, and configuring host
//! networking for local mode (bridge, pod namespaces) through `ip`.
//!
//! Everything else in the workspace is `#![forbid(unsafe_code)]` and goes
//! through the safe functions here.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;
use std::path::Path;

pub mod net;

/// Reads the destination a connection had before an iptables `REDIRECT`
/// rewrote it (`SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6).
///
/// `is_ipv6` selects the address family of the accepted socket.
pub fn original_dst<F: AsFd>(sock: &F, is_ipv6: bool) -> io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    if is_ipv6 {
        let sa = getsockopt(sock, sockopt::Ip6tOriginalDst).map_err(io::Error::from)?;
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sa.sin6_port),
            u32::from_be(sa.sin6_flowinfo),
            sa.sin6_scope_id,
        )))
    } else {
        let sa = getsockopt(sock, sockopt::OriginalDst).map_err(io::Error::from)?;
        let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sa.sin_port),
        )))
    }
}

/// Moves the calling thread into the network namespace at `path` (for
/// example `/run/netns/NAME`). Sockets the thread creates afterwards live in
/// that namespace; other threads are not affected.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Resource usage of the current process, read from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Number of open file descriptors.
    pub open_fds: u64,
    /// Soft limit on open file descriptors.
    pub max_fds: u64,
    /// Process start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Number of threads.
    pub threads: u64,
}

/// Reads [`ProcessStats`] for the current process.
pub fn process_stats() -> io::Result<ProcessStats> {
    process_stats_of(Path::new("/proc/self"))
}

/// Reads [`ProcessStats`] for the process whose `/proc` directory is `dir`
/// (used by the benchmark to watch a proxy from outside).
pub fn process_stats_of(dir: &Path) -> io::Result<ProcessStats> {
    let stat = std::fs::read_to_string(dir.join("stat"))?;
    let fields = parse_stat(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))?;
    let ticks = clock_ticks_per_second();
    let page = page_size();
    let boot = boot_time_seconds().unwrap_or(0.0);
    let open_fds = std::fs::read_dir(dir.join("fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0);
    Ok(ProcessStats {
        resident_memory_bytes: fields.rss_pages * page,
        virtual_memory_bytes: fields.vsize_bytes,
        cpu_seconds: (fields.utime + fields.stime) as f64 / ticks,
        open_fds,
        max_fds,
        start_time_seconds: boot + fields.starttime as f64 / ticks,
        threads: fields.threads,
    })
}

struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field N is at index N - 3.
    let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(StatFields {
        utime: at(14)?,
        stime: at(15)?,
        threads: at(20)?,
        starttime: at(22)?,
        vsize_bytes: at(23)?,
        rss_pages: at(24)?,
    })
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(4096)
}

fn boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Raises the soft limit on open files to the hard limit, so that a proxy
/// holding two descriptors per proxied connection is not capped at the
/// common default of 1,024. Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard.max(soft))
}

/// Whether a bind failed because the address family (usually IPv6) is
/// unavailable in this network namespace.
pub fn is_address_family_unavailable(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EADDRNOTAVAIL | Errno::EAFNOSUPPORT)
    )
}

/// Whether the process has an effective user id of 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let line = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 4242 1000000 300 18446744073709551615";
        let f = parse_stat(line).expect("parses");
        assert_eq!(f.utime, 250);
        assert_eq!(f.stime, 50);
        assert_eq!(f.threads, 3);
        assert_eq!(f.starttime, 4242);
        assert_eq!(f.vsize_bytes, 1_000_000);
        assert_eq!(f.rss_pages, 300);
    }

    #[test]
    fn reads_own_stats() {
        let s = process_stats().expect("reads /proc/self");
        assert!(s.resident_memory_bytes > 0);
        assert!(s.open_fds >= 3);
        assert!(s.start_time_seconds > 1.0e9);
    }
}
