//! Endpoints to `Destination/Get` updates: the conversion of one endpoint,
//! the full set, and the difference between two sets (pure functions).

use linkerd2_proxy_api::destination::{
    AddrSet, NoEndpoints, ProtocolHint, TlsIdentity, Update, WeightedAddr, WeightedAddrSet,
    protocol_hint, tls_identity, update,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use strand_controller_core::{Endpoint, IdentityName, ServiceKey};

/// Every endpoint weighs the same; Linkerd's destination uses this value,
/// so weights stay comparable if a proxy mixes both controllers' answers.
pub(crate) const ENDPOINT_WEIGHT: u32 = 10_000;

/// At most this many addresses per `Add` or `Remove` message.
///
/// An address with its labels and identity encodes to about 250 bytes, so a
/// message stays near 250 KB: well under the 4 MB that tonic clients
/// (including the upstream proxy's) accept by default, whatever the size of
/// the service. Sets up to this size go out as a single `Add`.
pub(crate) const MAX_ADDRS_PER_UPDATE: usize = 1_000;

/// Pod labels copied to an endpoint's metric labels, under Linkerd's names
/// (`pkg/k8s` `GetPodLabels`), so `dst_*` labels match Linkerd's dashboards.
const COPIED_POD_LABELS: [(&str, &str); 2] = [
    ("pod-template-hash", "pod_template_hash"),
    ("linkerd.io/control-plane-ns", "control_plane_ns"),
];

/// The labels of a whole set: the proxy adds them to every endpoint's own
/// (it reports them as `dst_namespace` and `dst_service`).
pub(crate) fn set_labels(service: &ServiceKey) -> HashMap<String, String> {
    HashMap::from([
        ("namespace".to_string(), service.namespace.clone()),
        ("service".to_string(), service.name.clone()),
    ])
}

/// One endpoint as the proxy wants it.
///
/// Metric labels follow Linkerd: `pod`, `serviceaccount` and the owner under
/// `deployment` (strand's workloads play the part of Deployments); the
/// namespace comes from the set labels. A meshed endpoint (one with an
/// identity) gets its TLS identity, used as SNI too, and the H2 hint so that
/// the client proxy may carry HTTP/1 over HTTP/2 to it.
pub(crate) fn weighted_addr(ep: &Endpoint) -> WeightedAddr {
    let mut labels = HashMap::with_capacity(3);
    labels.insert("pod".to_string(), ep.pod.clone());
    if !ep.service_account.is_empty() {
        labels.insert("serviceaccount".to_string(), ep.service_account.clone());
    }
    if !ep.workload.is_empty() {
        labels.insert("deployment".to_string(), ep.workload.clone());
    }
    for (pod_label, metric_label) in COPIED_POD_LABELS {
        if let Some(v) = ep.labels.get(pod_label) {
            labels.insert(metric_label.to_string(), v.clone());
        }
    }
    WeightedAddr {
        addr: Some(ep.addr.into()),
        weight: ENDPOINT_WEIGHT,
        metric_labels: labels,
        tls_identity: ep.identity.as_ref().map(tls_identity),
        protocol_hint: ep.identity.as_ref().map(|_| ProtocolHint {
            protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
            opaque_transport: None,
        }),
        authority_override: None,
        http2: None,
        resource_ref: None,
    }
}

fn tls_identity(id: &IdentityName) -> TlsIdentity {
    let name = || tls_identity::DnsLikeIdentity {
        name: id.as_str().to_string(),
    };
    TlsIdentity {
        strategy: Some(tls_identity::Strategy::DnsLikeIdentity(name())),
        server_name: Some(name()),
    }
}

pub(crate) fn no_endpoints(exists: bool) -> Update {
    Update {
        update: Some(update::Update::NoEndpoints(NoEndpoints { exists })),
    }
}

/// The whole set: `Add`s of every endpoint, or `NoEndpoints { exists: true }`
/// when there is none.
pub(crate) fn full(
    labels: &HashMap<String, String>,
    eps: &BTreeMap<SocketAddr, Endpoint>,
) -> Vec<Update> {
    if eps.is_empty() {
        return vec![no_endpoints(true)];
    }
    let mut out = Vec::with_capacity(eps.len().div_ceil(MAX_ADDRS_PER_UPDATE));
    push_adds(&mut out, labels, eps.values());
    out
}

/// What turns `old` into `new` for a client that has `old`: `Add`s of new or
/// changed endpoints (an `Add` of a known address replaces it), then
/// `Remove`s of gone ones; `NoEndpoints { exists: true }` instead when `new`
/// is empty, which clears the client's set in one message.
///
/// A single merge over the two sorted maps: O(old + new), no lookups.
pub(crate) fn diff(
    labels: &HashMap<String, String>,
    old: &BTreeMap<SocketAddr, Endpoint>,
    new: &BTreeMap<SocketAddr, Endpoint>,
) -> Vec<Update> {
    if new.is_empty() {
        return if old.is_empty() {
            Vec::new()
        } else {
            vec![no_endpoints(true)]
        };
    }
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut old_it = old.iter().peekable();
    let mut new_it = new.iter().peekable();
    loop {
        let order = match (old_it.peek(), new_it.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((o, _)), Some((n, _))) => o.cmp(n),
        };
        match order {
            Ordering::Less => {
                if let Some((addr, _)) = old_it.next() {
                    removed.push(*addr);
                }
            }
            Ordering::Greater => {
                if let Some((_, ep)) = new_it.next() {
                    added.push(ep);
                }
            }
            Ordering::Equal => {
                if let (Some((_, o)), Some((_, n))) = (old_it.next(), new_it.next())
                    && o != n
                {
                    added.push(n);
                }
            }
        }
    }
    let mut out = Vec::new();
    push_adds(&mut out, labels, added);
    for chunk in removed.chunks(MAX_ADDRS_PER_UPDATE) {
        out.push(Update {
            update: Some(update::Update::Remove(AddrSet {
                addrs: chunk.iter().map(|a| (*a).into()).collect(),
            })),
        });
    }
    out
}

fn push_adds<'a>(
    out: &mut Vec<Update>,
    labels: &HashMap<String, String>,
    eps: impl IntoIterator<Item = &'a Endpoint>,
) {
    let mut addrs = Vec::new();
    for ep in eps {
        addrs.push(weighted_addr(ep));
        if addrs.len() == MAX_ADDRS_PER_UPDATE {
            out.push(add(labels, std::mem::take(&mut addrs)));
        }
    }
    if !addrs.is_empty() {
        out.push(add(labels, addrs));
    }
}

fn add(labels: &HashMap<String, String>, addrs: Vec<WeightedAddr>) -> Update {
    Update {
        update: Some(update::Update::Add(WeightedAddrSet {
            addrs,
            metric_labels: labels.clone(),
        })),
    }
}

#[cfg(test)]
mod tests;
