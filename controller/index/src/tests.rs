//! Unit tests of the index, with small builders for resources.

use crate::Index;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use strand_controller_core::{
    ContainerPort, DiscoverServices, ObjectMeta, OutboundRouteRule, Pod, PodSpec, PodStatus,
    Resource, ResourceKey, Service, ServiceKey, ServicePort, ServicePortView, ServiceSpec,
    ServiceStatus, ServiceWatch, TargetPort, TrustDomain,
};

mod endpoints;
mod grpc_routes;
mod lookup;
mod profiles;
mod routes;
mod scale;
mod watches;

const NS: &str = "shop";

fn index() -> Arc<Index> {
    Index::new("cluster.local", TrustDomain::default())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Service `name` in [`NS`] selecting `app=<app>`, port 80 -> 8080 and
/// 9990 -> the named port `admin`.
fn service(name: &str, app: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: ObjectMeta::new(NS, name),
        spec: ServiceSpec {
            ports: vec![
                service_port("http", 80, TargetPort::Number(8080)),
                service_port("admin", 9990, TargetPort::Name("admin".into())),
            ],
            selector: labels(&[("app", app)]),
            cluster_ip: Some(cluster_ip.to_string()),
            service_type: None,
        },
        status: ServiceStatus::default(),
    }
}

fn service_port(name: &str, port: u16, target: TargetPort) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(target),
        protocol: "TCP".to_string(),
        app_protocol: None,
    }
}

/// A ready, unmeshed pod `name` in [`NS`] labelled `app=<app>` at `ip`,
/// without named ports.
fn pod(name: &str, app: &str, ip: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: labels(&[("app", app)]),
            ..ObjectMeta::new(NS, name)
        },
        spec: PodSpec {
            workload: app.to_string(),
            service_account_name: format!("{app}-sa"),
            ports: vec![],
        },
        status: PodStatus {
            pod_ip: Some(ip.parse().expect("test IPs are valid")),
            ready: true,
            ..PodStatus::default()
        },
    }
}

fn admin_port(port: u16) -> ContainerPort {
    ContainerPort {
        name: Some("admin".to_string()),
        container_port: port,
    }
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new(NS, name)
}

fn pod_key(name: &str) -> ResourceKey {
    ResourceKey::new(strand_controller_core::Kind::Pod, NS, name)
}

fn svc_key(name: &str) -> ResourceKey {
    ResourceKey::new(strand_controller_core::Kind::Service, NS, name)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test addresses are valid")
}

/// The current view, marking it seen.
fn seen(rx: &mut ServiceWatch) -> Option<Arc<ServicePortView>> {
    rx.borrow_and_update().clone()
}

/// The endpoint addresses of the current view, marking it seen.
fn endpoints(rx: &mut ServiceWatch) -> Vec<SocketAddr> {
    seen(rx)
        .map(|v| v.endpoints.keys().copied().collect())
        .unwrap_or_default()
}

/// An index with a service of each name (selecting `app=<name>`), at
/// 10.96.0.10 on.
fn with_services(names: &[&str]) -> Arc<Index> {
    let index = index();
    for (i, name) in names.iter().enumerate() {
        index.apply(Resource::Service(service(
            name,
            name,
            &format!("10.96.0.{}", 10 + i),
        )));
    }
    index
}

/// Each rule's backends as `name:port=weight`.
fn rule_backends<'a, M: 'a, R: 'a>(
    rules: impl Iterator<Item = &'a OutboundRouteRule<M, R>>,
) -> Vec<Vec<String>> {
    rules
        .map(|rule| {
            rule.backends
                .iter()
                .map(|b| format!("{}:{}={}", b.service.name, b.port, b.weight))
                .collect()
        })
        .collect()
}

fn changed(rx: &ServiceWatch) -> bool {
    rx.has_changed().expect("the index keeps the sender")
}
