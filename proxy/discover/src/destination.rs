//! `Destination/Get`: the live endpoint set of one balancer backend.
//!
//! The stream carries deltas (add, remove, no-endpoints). Each one becomes a
//! new immutable [`Endpoints`] snapshot published on a watch channel, so
//! readers never see a half-applied update. The first update on a new stream
//! is the server's full state and replaces whatever was known; until then
//! (and for as long as the control plane is unreachable) the last snapshot
//! stays published.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use linkerd2_proxy_api::destination::{
    GetDestination, TlsIdentity, Update, WeightedAddr, destination_client::DestinationClient,
    protocol_hint, tls_identity, update,
};
use linkerd2_proxy_api::net::TcpAddress;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::Ctx;
use crate::reconnect::{Backoff, Outage};

/// The endpoints of a service at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Incremented on every published change; 0 until the first answer.
    pub version: u64,
    /// False when the control plane said the service does not exist (or
    /// before the first answer); true once it has sent endpoints.
    pub exists: bool,
    /// The endpoints, by address.
    pub addrs: Arc<BTreeMap<SocketAddr, EndpointMeta>>,
}

/// What the control plane says about one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    /// Metric labels: the address set's labels, overridden by the
    /// endpoint's own where both name the same label.
    pub labels: BTreeMap<String, String>,
    /// The TLS identity the endpoint's proxy presents (DNS-like name or
    /// URI), when it is meshed.
    pub identity: Option<String>,
    /// The endpoint's proxy accepts HTTP/2 from another proxy, so HTTP/1
    /// may be upgraded between proxies (protocol hint `H2`).
    pub http2: bool,
    /// Relative weight as sent by the control plane (Linkerd sends 10000).
    pub weight: u32,
}

/// One `Destination/Get` stream and its reconnections.
struct DestinationWatch {
    client: DestinationClient<Channel>,
    request: GetDestination,
    tx: watch::Sender<Endpoints>,
    backoff: Backoff,
    outage: Outage,
}

/// The scheme of every `GetDestination`; the only one Linkerd's control
/// plane accepts.
const SCHEME: &str = "k8s";

/// Watches `path` (a balancer backend's `DestinationGet.path`) forever,
/// publishing each change on `tx`. Cancelled by dropping the future.
pub(crate) async fn watch(ctx: Ctx, path: String, tx: watch::Sender<Endpoints>) {
    let mut watch = DestinationWatch {
        client: ctx.destination.clone(),
        request: GetDestination {
            scheme: SCHEME.to_string(),
            path,
            context_token: ctx.context_token.to_string(),
        },
        tx,
        backoff: Backoff::new(ctx.backoff),
        outage: Outage::new(ctx.destination_health.clone()),
    };
    watch.run().await;
}

/// The next snapshot after `update`. `fresh` marks the first update of a
/// new stream, which is the server's full state and so replaces the set.
pub(crate) fn apply(current: &Endpoints, update: update::Update, fresh: bool) -> Endpoints {
    let mut addrs = if fresh {
        BTreeMap::new()
    } else {
        (*current.addrs).clone()
    };
    let mut exists = current.exists;
    match update {
        update::Update::Add(set) => {
            exists = true;
            for addr in set.addrs {
                match endpoint(addr, &set.metric_labels) {
                    Some((addr, meta)) => {
                        addrs.insert(addr, meta);
                    }
                    None => tracing::warn!("the control plane sent an invalid endpoint address"),
                }
            }
        }
        update::Update::Remove(set) => {
            for addr in set.addrs {
                if let Some(addr) = socket_addr(addr) {
                    addrs.remove(&addr);
                }
            }
        }
        update::Update::NoEndpoints(none) => {
            exists = none.exists;
            addrs.clear();
        }
    }
    Endpoints {
        version: current.version + 1,
        exists,
        addrs: Arc::new(addrs),
    }
}

/// Converts an address, rejecting a missing IP and a port above 65535
/// (which `TryFrom<TcpAddress>` in the API crate would silently truncate).
pub(crate) fn socket_addr(addr: TcpAddress) -> Option<SocketAddr> {
    let port = u16::try_from(addr.port).ok()?;
    let ip = IpAddr::try_from(addr.ip?).ok()?;
    Some(SocketAddr::new(ip, port))
}

pub(crate) fn endpoint(
    addr: WeightedAddr,
    set_labels: &HashMap<String, String>,
) -> Option<(SocketAddr, EndpointMeta)> {
    let sock = socket_addr(addr.addr?)?;
    let mut labels: BTreeMap<String, String> = set_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(addr.metric_labels);
    let http2 = matches!(
        addr.protocol_hint.and_then(|hint| hint.protocol),
        Some(protocol_hint::Protocol::H2(_))
    );
    let meta = EndpointMeta {
        labels,
        identity: identity(addr.tls_identity),
        http2,
        weight: addr.weight,
    };
    Some((sock, meta))
}

fn identity(tls: Option<TlsIdentity>) -> Option<String> {
    let name = match tls?.strategy? {
        tls_identity::Strategy::DnsLikeIdentity(id) => id.name,
        tls_identity::Strategy::UriLikeIdentity(id) => id.uri,
    };
    (!name.is_empty()).then_some(name)
}

/// The control plane does not know the path: the service is gone (or never
/// was), which is an answer, not an outage.
fn is_no_such_destination(status: &Status) -> bool {
    matches!(status.code(), Code::NotFound | Code::InvalidArgument)
}

// === impl Endpoints ===

impl Endpoints {
    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True when there is no endpoint to send to.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

// === impl DestinationWatch ===

impl DestinationWatch {
    async fn run(&mut self) {
        loop {
            match self.stream_once().await {
                Ok(()) => tracing::debug!(path = %self.request.path, "destination stream ended"),
                Err(status) if is_no_such_destination(&status) => {
                    self.outage.recovered();
                    tracing::debug!(path = %self.request.path, %status, "no such destination");
                    let gone = update::Update::NoEndpoints(Default::default());
                    self.publish(gone, true);
                }
                Err(status) => self.outage.failed(&self.request.path, &status),
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }

    /// One call, until the stream ends (`Ok`) or fails.
    async fn stream_once(&mut self) -> Result<(), Status> {
        let mut stream = self.client.get(self.request.clone()).await?.into_inner();
        let mut fresh = true;
        while let Some(Update { update }) = stream.message().await? {
            self.outage.recovered();
            self.backoff.reset();
            if let Some(update) = update {
                self.publish(update, fresh);
                fresh = false;
            }
        }
        Ok(())
    }

    fn publish(&self, update: update::Update, fresh: bool) {
        // Clone the snapshot (an Arc) so the conversion runs without holding
        // the channel's lock; this task is the only writer.
        let current = self.tx.borrow().clone();
        self.tx.send_replace(apply(&current, update, fresh));
    }
}

#[cfg(test)]
mod tests;
