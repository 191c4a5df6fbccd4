use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Where the management API listens unless told otherwise: loopback only, a
/// port next to Linkerd's 8086 (destination) and 8090 (policy).
pub const DEFAULT_API_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8089);

/// Kubernetes' default service CIDR (kubeadm's `--service-cidr`).
pub const DEFAULT_SERVICE_CIDR: Cidr = Cidr {
    network: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 0)),
    prefix: 16,
};

/// k3s' default pod CIDR; `.1` is the bridge (the pods' gateway).
pub const DEFAULT_POD_CIDR: Cidr = Cidr {
    network: IpAddr::V4(Ipv4Addr::new(10, 42, 0, 0)),
    prefix: 16,
};

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Holds `snapshot.json`, `wal.log`, `lock` and the API's `admin-token`.
    pub state_dir: PathBuf,
    /// Virtual IPs of services are allocated here.
    pub service_cidr: Cidr,
    /// Pod IPs are allocated here; the first host address is the gateway.
    pub pod_cidr: Cidr,
    /// Compact (snapshot, then empty the log) once the log exceeds this many bytes.
    pub compact_bytes: u64,
    /// ... or this many records, whichever comes first.
    pub compact_records: u64,
    /// Events a watcher may fall behind before it is told to resync.
    pub watch_capacity: usize,
}

/// An IP network such as `10.96.0.0/16` (IPv4 or IPv6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid CIDR (like 10.96.0.0/16): {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: String,
}

// === impl StoreConfig ===

impl StoreConfig {
    /// Defaults: the CIDRs above; compaction past 4 MiB or 1,000 records,
    /// which keeps a replay at start well under a second; 4,096 buffered
    /// events, enough for one large apply without forcing watchers to resync.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            service_cidr: DEFAULT_SERVICE_CIDR,
            pod_cidr: DEFAULT_POD_CIDR,
            compact_bytes: 4 << 20,
            compact_records: 1_000,
            watch_capacity: 4_096,
        }
    }
}

// === impl Cidr ===

impl Cidr {
    /// Rejects host bits below the prefix and networks too small to hold a
    /// single allocatable address.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let err = |reason: String| CidrError {
            input: format!("{network}/{prefix}"),
            reason,
        };
        let bits = bit_len(network);
        // Network, first address and (IPv4) broadcast are reserved.
        let max_prefix = if network.is_ipv4() { 30 } else { 126 };
        if prefix > max_prefix {
            return Err(err(format!(
                "the prefix must be at most /{max_prefix} to leave room for addresses (max /{bits})"
            )));
        }
        let cidr = Cidr { network, prefix };
        if to_u128(network) & cidr.host_mask() != 0 {
            let base = cidr.at(0);
            return Err(err(format!(
                "host bits are set; did you mean {base}/{prefix}?"
            )));
        }
        Ok(cidr)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// The first address after the network's: a pod network's gateway.
    pub fn gateway(&self) -> IpAddr {
        self.at(1)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// Offsets that may be handed out: past the network and first address,
    /// before the IPv4 broadcast address.
    pub(crate) fn allocatable(&self) -> (u128, u128) {
        let last = self.host_mask();
        let last = if self.network.is_ipv4() {
            last - 1
        } else {
            last
        };
        (2, last)
    }

    /// `ip - network`, when `ip` is inside.
    pub(crate) fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return None;
        }
        let (ip, net) = (to_u128(ip), to_u128(self.network));
        if ip & !self.host_mask() == net {
            Some(ip - net)
        } else {
            None
        }
    }

    /// `network + offset`; the offset must be within the host mask.
    pub(crate) fn at(&self, offset: u128) -> IpAddr {
        let base = to_u128(self.network) & !self.host_mask();
        let v = base | (offset & self.host_mask());
        match self.network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    fn host_mask(&self) -> u128 {
        let host_bits = bit_len(self.network) - u32::from(self.prefix);
        if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        }
    }
}

fn bit_len(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = |reason: &str| CidrError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("missing /prefix-length"))?;
        let addr: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| u32::from(*p) <= bit_len(addr))
            .ok_or_else(|| err("the prefix length is out of range"))?;
        Cidr::new(addr, prefix).map_err(|e| CidrError {
            input: s.to_string(),
            reason: e.reason,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests;
