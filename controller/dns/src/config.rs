//! The server's settings and the zone it is authoritative for.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use hickory_proto::rr::Name;

/// What a [`Server`](crate::Server) answers and how hard it works for it.
#[derive(Clone, Debug)]
pub struct Config {
    /// The zone answered authoritatively; everything else is forwarded.
    pub zone: Zone,
    /// TTL of A and AAAA answers. Short because virtual IPs are assigned
    /// and released as Services come and go.
    pub ttl: Duration,
    /// How long resolvers may cache a negative answer (NXDOMAIN, NODATA):
    /// the TTL and `minimum` of the SOA sent with it (RFC 2308).
    pub negative_ttl: Duration,
    /// Resolvers for names outside the zone, tried in order (usually from
    /// [`upstreams_from_resolv_conf`](crate::upstreams_from_resolv_conf)).
    /// Empty: such names are REFUSED. An upstream that is the server's own
    /// address is dropped at bind time, so it cannot forward to itself.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for one upstream before trying the next one. A
    /// query is tried at most twice, so a client waits up to twice this
    /// before it gets SERVFAIL.
    pub forward_timeout: Duration,
    /// Forwarded queries in flight at once, UDP and TCP together; beyond
    /// it, queries get SERVFAIL at once, so a flood costs bounded memory.
    /// 0 answers every out-of-zone query SERVFAIL.
    pub max_forwards: usize,
    /// TCP connections served at once; beyond it, new ones are closed
    /// (0 turns TCP away entirely).
    pub max_tcp_connections: usize,
    /// How long a TCP connection may sit between (or inside) messages.
    pub tcp_idle_timeout: Duration,
}

/// The zone the server is authoritative for, e.g. `cluster.local.`.
///
/// A newtype so that the zone (lower-cased, fully qualified, never the
/// root) is validated once, and so that the SOA names derived from it are
/// known to fit in a DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    name: Name,
    mname: Name,
    rname: Name,
}

/// A string that cannot be a [`Zone`].
#[derive(Debug, thiserror::Error)]
#[error("zone {zone:?} is not valid: {reason}")]
pub struct InvalidZone {
    zone: String,
    reason: String,
}

/// The zone Kubernetes clusters use by default; pods' search paths assume it.
const DEFAULT_ZONE: &str = "cluster.local";

/// Kubernetes' CoreDNS answers cluster names with 5 s TTLs: long enough to
/// absorb bursts of lookups, short enough that a moved virtual IP is seen
/// within a few seconds.
const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// glibc's own default per-server timeout is 5 s; 2 s leaves room for the
/// retry on the next upstream within the client's first attempt.
const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A local host's worth of pods seldom has more than a few dozen lookups
/// outstanding; 256 waiting queries cost at most 256 sockets and buffers.
const DEFAULT_MAX_FORWARDS: usize = 256;

/// Resolvers open TCP only after a truncated UDP answer, and close it soon.
const DEFAULT_MAX_TCP_CONNECTIONS: usize = 128;

/// RFC 7766 suggests "in the order of seconds"; 10 s is what several
/// servers (Unbound, CoreDNS) use for idle clients.
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Self {
            zone: Zone::default(),
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_TTL,
            upstreams: Vec::new(),
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
            max_forwards: DEFAULT_MAX_FORWARDS,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
        }
    }
}

// === impl Zone ===

impl Zone {
    /// Parses a zone such as `cluster.local` or `cluster.local.`.
    pub fn new(zone: &str) -> Result<Self, InvalidZone> {
        let invalid = |reason: String| InvalidZone {
            zone: zone.to_string(),
            reason,
        };
        let mut name = Name::from_ascii(zone).map_err(|e| invalid(e.to_string()))?;
        name.set_fqdn(true);
        let name = name.to_lowercase();
        if name.is_root() {
            return Err(invalid("the root zone would swallow every name".into()));
        }
        let under = |label: &str| {
            Name::from_ascii(label)
                .and_then(|l| l.append_domain(&name))
                .map_err(|e| invalid(format!("SOA name {label}.{name} is too long: {e}")))
        };
        let mname = under("ns.dns")?;
        let rname = under("hostmaster")?;
        Ok(Self { name, mname, rname })
    }

    /// The zone's name: lower-case and fully qualified.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The SOA's primary server name, `ns.dns.<zone>`.
    pub(crate) fn mname(&self) -> &Name {
        &self.mname
    }

    /// The SOA's mailbox, `hostmaster.<zone>`.
    pub(crate) fn rname(&self) -> &Name {
        &self.rname
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::new(DEFAULT_ZONE).expect("the default zone is a valid name")
    }
}

impl FromStr for Zone {
    type Err = InvalidZone;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}
