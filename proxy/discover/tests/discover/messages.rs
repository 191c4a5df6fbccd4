//! Builders for the control plane's messages.

use std::collections::HashMap;
use std::net::SocketAddr;

use linkerd2_proxy_api::destination::{
    AddrSet, NoEndpoints, ProtocolHint, TlsIdentity, Update, WeightedAddr, WeightedAddrSet,
    protocol_hint, tls_identity, update,
};
use linkerd2_proxy_api::meta::{Metadata, metadata};
use linkerd2_proxy_api::outbound::{
    Backend, HttpRoute, OpaqueRoute, OutboundPolicy, ProxyProtocol, backend, http_route,
    opaque_route, proxy_protocol,
};

pub const WEB: &str = "web.default.svc.cluster.local:8080";
pub const CONTEXT: &str = r#"{"ns":"default","nodeName":"node-1","pod":"client-1"}"#;

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a valid socket address")
}

fn default_meta() -> Option<Metadata> {
    Some(Metadata {
        kind: Some(metadata::Kind::Default("default".into())),
    })
}

fn balancer(path: &str) -> Backend {
    use backend::endpoint_discovery::{DestinationGet, Kind};
    Backend {
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(backend::EndpointDiscovery {
                kind: Some(Kind::Dst(DestinationGet { path: path.into() })),
            }),
            load: None,
        })),
        ..Default::default()
    }
}

fn forward(addr: SocketAddr) -> Backend {
    Backend {
        kind: Some(backend::Kind::Forward(WeightedAddr {
            addr: Some(addr.into()),
            weight: 1,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn http_routes(backend: Backend) -> Vec<HttpRoute> {
    use http_route::{Distribution, RouteBackend, Rule, distribution};
    vec![HttpRoute {
        metadata: default_meta(),
        rules: vec![Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![RouteBackend {
                            backend: Some(backend),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn opaque_routes(backend: Backend) -> Vec<OpaqueRoute> {
    use opaque_route::{Distribution, RouteBackend, Rule, distribution};
    vec![OpaqueRoute {
        metadata: default_meta(),
        rules: vec![Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![RouteBackend {
                            backend: Some(backend),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
    }]
}

fn policy(kind: proxy_protocol::Kind) -> OutboundPolicy {
    OutboundPolicy {
        protocol: Some(ProxyProtocol { kind: Some(kind) }),
        metadata: default_meta(),
    }
}

fn detect(backend: Backend) -> proxy_protocol::Kind {
    proxy_protocol::Kind::Detect(proxy_protocol::Detect {
        timeout: None,
        opaque: Some(proxy_protocol::Opaque {
            routes: opaque_routes(backend.clone()),
        }),
        http1: Some(proxy_protocol::Http1 {
            routes: http_routes(backend.clone()),
            failure_accrual: None,
        }),
        http2: Some(proxy_protocol::Http2 {
            routes: http_routes(backend),
            failure_accrual: None,
        }),
    })
}

/// What the policy controller sends for a meshed Service: detect, with
/// default routes to a balancer.
pub fn service_policy(path: &str) -> OutboundPolicy {
    policy(detect(balancer(path)))
}

/// The same Service after it was annotated with an HTTP/2 app protocol.
pub fn http2_policy(path: &str) -> OutboundPolicy {
    policy(proxy_protocol::Kind::Http2(proxy_protocol::Http2 {
        routes: http_routes(balancer(path)),
        failure_accrual: None,
    }))
}

/// A Service marked opaque.
pub fn opaque_policy(path: &str) -> OutboundPolicy {
    policy(proxy_protocol::Kind::Opaque(proxy_protocol::Opaque {
        routes: opaque_routes(balancer(path)),
    }))
}

/// A known address that is not a Service (a pod IP): forward as is.
pub fn forward_policy(addr: SocketAddr) -> OutboundPolicy {
    policy(detect(forward(addr)))
}

pub fn ep(addr: &str) -> WeightedAddr {
    WeightedAddr {
        addr: Some(sa(addr).into()),
        weight: 10_000,
        ..Default::default()
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn identity(name: &str) -> Option<TlsIdentity> {
    Some(TlsIdentity {
        strategy: Some(tls_identity::Strategy::DnsLikeIdentity(
            tls_identity::DnsLikeIdentity { name: name.into() },
        )),
        server_name: None,
    })
}

pub fn h2() -> Option<ProtocolHint> {
    Some(ProtocolHint {
        protocol: Some(protocol_hint::Protocol::H2(Default::default())),
        opaque_transport: None,
    })
}

pub fn add(addrs: Vec<WeightedAddr>, set_labels: &[(&str, &str)]) -> Update {
    Update {
        update: Some(update::Update::Add(WeightedAddrSet {
            addrs,
            metric_labels: labels(set_labels),
        })),
    }
}

pub fn remove(addrs: &[&str]) -> Update {
    Update {
        update: Some(update::Update::Remove(AddrSet {
            addrs: addrs.iter().map(|a| sa(a).into()).collect(),
        })),
    }
}

pub fn no_endpoints(exists: bool) -> Update {
    Update {
        update: Some(update::Update::NoEndpoints(NoEndpoints { exists })),
    }
}

/// The policy of a meshed pod's address: forward, with its identity and
/// the H2 hint.
pub fn meshed_forward_policy(addr: SocketAddr, identity: &str) -> OutboundPolicy {
    use linkerd2_proxy_api::destination::{ProtocolHint, TlsIdentity, protocol_hint, tls_identity};
    let mut backend = forward(addr);
    if let Some(backend::Kind::Forward(wa)) = &mut backend.kind {
        let name = tls_identity::DnsLikeIdentity {
            name: identity.to_string(),
        };
        wa.tls_identity = Some(TlsIdentity {
            strategy: Some(tls_identity::Strategy::DnsLikeIdentity(name.clone())),
            server_name: Some(name),
        });
        wa.protocol_hint = Some(ProtocolHint {
            protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
            opaque_transport: None,
        });
    }
    policy(detect(backend))
}
