//! The control plane's DNS server: service names to virtual IPs, everything
//! else forwarded.
//!
//! Pods in local mode point their resolv.conf at this server (typically the
//! bridge's gateway address, port 53). Names inside the cluster zone
//! (`cluster.local.` by default) are answered authoritatively from a
//! [`Records`] implementation the control plane provides; every other name
//! is relayed, byte for byte apart from the message ID, to the host's own
//! resolvers. UDP and TCP are served on the same port.
//!
//! ```text
//!                      ┌─ in zone ──► Records::lookup ──► A / AAAA / NODATA / NXDOMAIN
//!   pod ──UDP/TCP:53──►│                                    (AA set, SOA on negatives)
//!                      └─ elsewhere ─► upstreams (resolv.conf), UDP or TCP like the client
//!                                      ──► relayed with the client's ID, SERVFAIL on timeout
//! ```
//!
//! Deciding what to do with a query (module `answer`) is pure and
//! table-tested; the sockets live in `server` and `forward`.

#![forbid(unsafe_code)]

use std::net::IpAddr;

mod answer;
mod config;
mod forward;
mod resolv_conf;
mod server;

pub use config::{Config, InvalidZone, Zone};
pub use resolv_conf::upstreams_from_resolv_conf;
pub use server::{Server, Stats, StatsHandle};

/// The records of the cluster zone, implemented by the control plane.
///
/// Called on the server's receive path for every in-zone query, so it must
/// be cheap (a map lookup behind a lock or a watch snapshot) and must not
/// block.
pub trait Records: Send + Sync + 'static {
    /// Looks up a name inside the zone.
    ///
    /// `name` is fully qualified, lower-cased and without the trailing dot,
    /// e.g. `web.default.svc.cluster.local`. Names whose labels hold
    /// anything but ASCII letters, digits, `-` and `_` never reach this
    /// method: they are answered NXDOMAIN directly.
    ///
    /// Returning [`Lookup::NoSuchName`] makes the server answer NXDOMAIN,
    /// which resolvers take to mean that nothing exists *below* the name
    /// either (RFC 8020). For names that only exist as a suffix of real
    /// ones (`default.svc.cluster.local`, `svc.cluster.local`), return
    /// `Found(vec![])` to get NODATA instead. The zone apex always exists,
    /// whatever this returns for it.
    fn lookup(&self, name: &str) -> Lookup;
}

/// The result of [`Records::lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name exists with these addresses (possibly none: NODATA).
    Found(Vec<IpAddr>),
    /// The name does not exist: NXDOMAIN.
    NoSuchName,
}

// === impl Records ===

impl<F> Records for F
where
    F: Fn(&str) -> Lookup + Send + Sync + 'static,
{
    fn lookup(&self, name: &str) -> Lookup {
        self(name)
    }
}
