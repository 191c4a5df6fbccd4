//! The benchmark's resources: one Service `big` and its pods, as manifests
//! the management API's `apply` takes, in batches.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;
use strand_controller_core::PodStatus;

pub const NAMESPACE: &str = "default";
pub const SERVICE: &str = "big";
pub const PORT: u16 = 8080;

/// Pods per `apply`.
///
/// Each apply is one log record (one fsync) and publishes one store event
/// per pod at once; the store's watch buffer holds 4,096 events, so a batch
/// under that never makes the index's feed fall behind and resync (which
/// would measure the resync instead of the load).
pub const PODS_PER_APPLY: usize = 2_500;

/// Bytes per `apply`, well under the API's 4 MiB body limit.
pub const MAX_APPLY_BYTES: usize = 3 << 20;

/// The first pod address, as an offset into 10.42.0.0/16: `.0` is the
/// network and `.1` the bridge (the controller's gateway).
const FIRST_POD_OFFSET: u32 = 2;

/// `big.default.svc.cluster.local:8080`, what every watcher asks for.
pub fn authority() -> String {
    format!("{SERVICE}.{NAMESPACE}.svc.cluster.local:{PORT}")
}

pub fn service() -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"selector": {"app": SERVICE}, "ports": [{"port": PORT}]},
    })
    .to_string()
}

pub fn pod_name(i: usize) -> String {
    format!("{SERVICE}-{i:05}")
}

/// Pod `i`'s address in the controller's default pod CIDR.
pub fn pod_ip(i: usize) -> IpAddr {
    let offset = u32::try_from(i).unwrap_or(u32::MAX) + FIRST_POD_OFFSET;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 42, 0, 0)) + offset,
    ))
}

/// Pod `i`'s endpoint, as watchers see it.
pub fn endpoint(i: usize) -> SocketAddr {
    SocketAddr::new(pod_ip(i), PORT)
}

/// A pod status that makes pod `i` an endpoint (`ready`) or not.
pub fn status(i: usize, ready: bool) -> PodStatus {
    PodStatus {
        pod_ip: Some(pod_ip(i)),
        ready,
        meshed: true,
        ..PodStatus::default()
    }
}

/// Pod `i`, ready from the start: the store keeps the status of a pod it
/// creates from the applied document (only later applies leave status to
/// the status subresource), so no status update per pod is needed.
pub fn pod(i: usize) -> String {
    json!({
        "apiVersion": "local.strand.io/v1alpha1",
        "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": NAMESPACE, "labels": {"app": SERVICE}},
        "spec": {"workload": SERVICE, "ports": [{"containerPort": PORT}]},
        "status": {"ready": true, "meshed": true, "podIP": pod_ip(i).to_string()},
    })
    .to_string()
}

/// Pods `0..n` as `---`-separated documents (JSON is YAML), at most
/// [`PODS_PER_APPLY`] and [`MAX_APPLY_BYTES`] per batch.
pub fn pod_batches(n: usize) -> Vec<String> {
    let mut batches = Vec::new();
    let mut batch = String::new();
    let mut in_batch = 0;
    for i in 0..n {
        let doc = pod(i);
        if in_batch == PODS_PER_APPLY || batch.len() + doc.len() + 5 > MAX_APPLY_BYTES {
            batches.push(std::mem::take(&mut batch));
            in_batch = 0;
        }
        if in_batch > 0 {
            batch.push_str("\n---\n");
        }
        batch.push_str(&doc);
        in_batch += 1;
    }
    if in_batch > 0 {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_controller_core::{Resource, parse_manifests};

    #[test]
    fn pods_parse_with_their_status() {
        let batches = pod_batches(3);
        assert_eq!(batches.len(), 1);
        let pods = parse_manifests(&batches[0]).expect("valid manifests");
        assert_eq!(pods.len(), 3);
        let Resource::Pod(p) = &pods[2] else {
            panic!("not a pod: {:?}", pods[2]);
        };
        assert_eq!(p.metadata.name, "big-00002");
        assert_eq!(p.status, status(2, true));
        assert_eq!(p.status.pod_ip, Some("10.42.0.4".parse().expect("an IP")));
    }

    #[test]
    fn the_service_parses() {
        let svc = parse_manifests(&service()).expect("a valid manifest");
        assert!(matches!(svc.as_slice(), [Resource::Service(_)]));
    }

    #[test]
    fn batches_respect_both_limits() {
        let batches = pod_batches(10_000);
        assert_eq!(batches.len(), 4);
        let docs: usize = batches
            .iter()
            .map(|b| b.matches("\n---\n").count() + 1)
            .sum();
        assert_eq!(docs, 10_000);
        assert!(batches.iter().all(|b| b.len() <= MAX_APPLY_BYTES));
    }

    #[test]
    fn addresses_stay_in_the_pod_cidr() {
        assert_eq!(pod_ip(0), IpAddr::from([10, 42, 0, 2]));
        assert_eq!(pod_ip(254), IpAddr::from([10, 42, 1, 0]));
        assert_eq!(pod_ip(64_999), IpAddr::from([10, 42, 253, 233]));
    }
}
