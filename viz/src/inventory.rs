//! From the control plane's resources to what the metrics API needs: the
//! proxies to scrape, with Linkerd's target labels, and the pods and
//! services the rows are about.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use strand_controller_core::{Pod, Resource, TrustDomain};

use crate::scrape::ScrapeTarget;
use crate::stat::{Inventory, PodInfo};
use crate::store::TargetKey;

/// A proxy's admin address and the labels every one of its series gets:
/// `namespace`, `pod` and `deployment` (the workload), as Linkerd's
/// Prometheus configuration adds them.
pub fn scrape_target(pod: &Pod) -> Option<ScrapeTarget> {
    if !pod.status.meshed {
        return None;
    }
    let addr: SocketAddr = pod.status.proxy_admin_addr?;
    let mut labels = BTreeMap::new();
    labels.insert("namespace".to_string(), pod.metadata.namespace.clone());
    labels.insert("pod".to_string(), pod.metadata.name.clone());
    if !pod.spec.workload.is_empty() {
        labels.insert("deployment".to_string(), pod.spec.workload.clone());
    }
    Some(ScrapeTarget {
        key: TargetKey {
            namespace: pod.metadata.namespace.clone(),
            pod: pod.metadata.name.clone(),
        },
        labels,
        addr,
    })
}

/// Every meshed pod's proxy among `resources`.
pub fn scrape_targets(resources: &[Resource]) -> Vec<ScrapeTarget> {
    resources
        .iter()
        .filter_map(|r| match r {
            Resource::Pod(p) => scrape_target(p),
            _ => None,
        })
        .collect()
}

/// The pods and services among `resources` (nothing is stale yet).
pub fn from_resources(resources: &[Resource]) -> Inventory {
    let trust = TrustDomain::default();
    let mut inv = Inventory::default();
    for r in resources {
        match r {
            Resource::Pod(p) => inv.pods.push(PodInfo {
                namespace: p.metadata.namespace.clone(),
                name: p.metadata.name.clone(),
                workload: p.spec.workload.clone(),
                meshed: p.status.meshed,
                ready: p.status.ready,
                identity: p.status.meshed.then(|| {
                    trust
                        .service_account_identity(
                            &p.spec.service_account_name,
                            &p.metadata.namespace,
                        )
                        .to_string()
                }),
            }),
            Resource::Service(s) => inv
                .services
                .push((s.metadata.namespace.clone(), s.metadata.name.clone())),
            _ => {}
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, meshed: bool) -> Resource {
        let json = serde_json::json!({
            "apiVersion": "local.strand.io/v1alpha1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "emojivoto", "labels": {"app": "web"}},
            "spec": {"workload": "web", "serviceAccountName": "web"},
            "status": {"podIP": "10.42.0.7", "ready": true, "meshed": meshed,
                       "proxyAdminAddr": "10.42.0.7:4191"}
        });
        strand_controller_core::parse_resource_json(json).expect("a valid pod")
    }

    #[test]
    fn meshed_pods_become_targets_with_linkerds_labels() {
        let targets = scrape_targets(&[pod("web-1", true), pod("web-2", false)]);
        assert_eq!(targets.len(), 1);
        let t = &targets[0];
        assert_eq!(t.addr.to_string(), "10.42.0.7:4191");
        assert_eq!(t.labels["namespace"], "emojivoto");
        assert_eq!(t.labels["pod"], "web-1");
        assert_eq!(t.labels["deployment"], "web");
        let inv = from_resources(&[pod("web-1", true)]);
        assert_eq!(
            inv.pods[0].identity.as_deref(),
            Some("web.emojivoto.serviceaccount.identity.linkerd.cluster.local")
        );
    }
}
