//! Pure functions from resources to what discovery serves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use strand_controller_core::{
    Endpoint, Pod, Service, ServiceKey, ServicePortView, TargetPort, TrustDomain,
};

/// The view of one port of `service`, with endpoints chosen from `pods` (the
/// pods of the service's namespace), no routes (see `routes::attached_*`) and
/// no profile.
/// `None` when the service lacks the port.
///
/// Two pods claiming one address (a stale pod record in local mode) collapse
/// into one endpoint: the later pod in `pods` order wins, so callers pass a
/// deterministic order.
pub(crate) fn service_port_view<'a>(
    service: &Service,
    port: u16,
    pods: impl Iterator<Item = &'a Pod>,
    cluster_domain: &str,
    trust: &TrustDomain,
) -> Option<ServicePortView> {
    let service_port = service.port(port)?;
    let target = service_port.target();
    let endpoints: BTreeMap<SocketAddr, Endpoint> = pods
        .filter_map(|pod| selected_endpoint(service, &target, pod, trust))
        .map(|ep| (ep.addr, ep))
        .collect();
    Some(ServicePortView {
        service: ServiceKey::new(&service.metadata.namespace, &service.metadata.name),
        fqdn: service.fqdn(cluster_domain),
        cluster_ip: service.cluster_ip(),
        port,
        opaque: service.opaque_ports().contains(&port),
        app_protocol: service_port.app_protocol.clone(),
        endpoints,
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        profile: None,
    })
}

/// What one pod contributes to each port of `service`, in port order: the
/// endpoint, or `None` when it contributes nothing to that port.
///
/// Comparing this before and after a pod change tells whether the service's
/// views can have changed, without recomputing them.
pub(crate) fn contribution(
    service: &Service,
    pod: Option<&Pod>,
    trust: &TrustDomain,
) -> Vec<Option<Endpoint>> {
    service
        .spec
        .ports
        .iter()
        .map(|sp| pod.and_then(|pod| selected_endpoint(service, &sp.target(), pod, trust)))
        .collect()
}

/// True when `pod` can be an endpoint of some service at all.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status.ready && pod.status.pod_ip.is_some()
}

/// `pod` as an endpoint of `service` on `target`, if the service selects it.
fn selected_endpoint(
    service: &Service,
    target: &TargetPort,
    pod: &Pod,
    trust: &TrustDomain,
) -> Option<Endpoint> {
    // Cheapest tests first: this runs for every pod of the namespace.
    if !is_ready(pod) || !service.selects(&pod.metadata.labels) {
        return None;
    }
    endpoint(pod, target, trust)
}

/// A meshed, ready pod as the endpoint at `addr` (its IP, any port).
pub(crate) fn pod_endpoint(pod: &Pod, addr: SocketAddr, trust: &TrustDomain) -> Option<Endpoint> {
    if !is_ready(pod) || !pod.status.meshed || pod.status.pod_ip != Some(addr.ip()) {
        return None;
    }
    endpoint(pod, &TargetPort::Number(addr.port()), trust)
}

/// `pod` as an endpoint on `target`, if it has an address and the port (a
/// named target port the pod lacks leaves it out).
fn endpoint(pod: &Pod, target: &TargetPort, trust: &TrustDomain) -> Option<Endpoint> {
    let ip = pod.status.pod_ip?;
    let port = pod.resolve_port(target)?;
    Some(Endpoint {
        addr: SocketAddr::new(ip, port),
        pod: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        workload: pod.spec.workload.clone(),
        service_account: pod.spec.service_account_name.clone(),
        identity: pod.identity(trust),
        labels: pod.metadata.labels.clone(),
    })
}
