//! What a request names, decided once and purely, so that each API only maps
//! the outcome to its answer (which differs per API on purpose: see the
//! callers).

use std::net::SocketAddr;
use strand_controller_core::{DiscoverServices, ServiceKey, Target};

/// What a proxy's target turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A port of a service the index knows (by name or by virtual IP).
    Service(ServiceKey, u16),
    /// A well-formed `<svc>.<ns>.svc.<cluster-domain>` name whose service
    /// port the index does not know (not yet created, deleted, or no such port).
    UnknownService(ServiceKey, u16),
    /// An IP address that is no service's virtual IP (a pod, or outside the
    /// cluster).
    Addr(SocketAddr),
    /// A name outside the cluster domain, or not shaped like a service name.
    External(String),
}

/// A target that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidTarget {
    #[error("{0:?} is not <name>:<port>, <ipv4>:<port> or [<ipv6>]:<port>")]
    Path(String),
    #[error("the request names no target")]
    Missing,
    #[error("{0} is not a valid address")]
    Addr(String),
}

/// Parses a `GetDestination.path` or an authority and resolves it.
pub(crate) fn resolve_path<D>(discover: &D, path: &str) -> Result<Resolved, InvalidTarget>
where
    D: DiscoverServices + ?Sized,
{
    let target = Target::parse(path).ok_or_else(|| InvalidTarget::Path(path.to_string()))?;
    Ok(resolve(discover, target))
}

/// Resolves a parsed target against the index.
pub(crate) fn resolve<D>(discover: &D, target: Target) -> Resolved
where
    D: DiscoverServices + ?Sized,
{
    if let Some((key, port)) = discover.lookup(&target) {
        return Resolved::Service(key, port);
    }
    match target {
        Target::Addr(addr) => Resolved::Addr(addr),
        Target::Name { host, port } => {
            match ServiceKey::from_fqdn(&host, discover.cluster_domain()) {
                Some(key) => Resolved::UnknownService(key, port),
                None => Resolved::External(format!("{host}:{port}")),
            }
        }
    }
}

// === impl InvalidTarget ===

impl From<InvalidTarget> for tonic::Status {
    fn from(e: InvalidTarget) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

#[cfg(test)]
mod tests;
