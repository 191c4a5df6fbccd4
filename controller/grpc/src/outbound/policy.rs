//! The outbound policy of a service port, shaped like the policy of
//! Linkerd's policy controller: by default one route per protocol matching
//! everything, sending to one balancer over the service's endpoints
//! (`Destination/Get` on `<fqdn>:<port>`). HTTPRoutes attached to the port
//! replace the default HTTP route (module `routes`); the gRPC and opaque
//! routes stay the default ones. GRPCRoutes attached to a port that is not
//! opaque make its protocol gRPC, with those routes and then the default
//! one (by which the proxy finds the service's own balancer), as Linkerd's
//! policy controller does; the port's HTTPRoutes then do not apply.

use super::routes;
use crate::convert::{self, Protocol};
use crate::destination::endpoints::weighted_addr;
use linkerd2_proxy_api::grpc_route::GrpcRouteMatch;
use linkerd2_proxy_api::http_route::{HttpRouteMatch, PathMatch, path_match};
use linkerd2_proxy_api::meta::Metadata;
use linkerd2_proxy_api::outbound::{
    Backend, GrpcRoute, HttpRoute, OpaqueRoute, OutboundPolicy, ProxyProtocol, Queue, backend,
    grpc_route, http_route, opaque_route, proxy_protocol,
};
use std::time::Duration;
use strand_controller_core::{Endpoint, OutboundGrpcRoute, OutboundHttpRoute, ServiceKey};

/// Linkerd's protocol detection timeout: a client that has sent nothing by
/// then is proxied as opaque.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Peak-EWMA's initial latency estimate for an endpoint with no samples yet
/// (Linkerd's default: a typical in-cluster round trip).
const EWMA_DEFAULT_RTT: Duration = Duration::from_millis(30);

/// Peak-EWMA's decay window (Linkerd's default).
const EWMA_DECAY: Duration = Duration::from_secs(10);

/// Requests a backend may queue while it has no ready endpoint, and how long
/// before they fail fast: Linkerd's policy controller defaults.
const QUEUE_CAPACITY: u32 = 100;
const QUEUE_FAILFAST: Duration = Duration::from_secs(3);

/// What a policy is built from; equal inputs give equal policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub(crate) service: ServiceKey,
    pub(crate) fqdn: String,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    /// The HTTPRoutes attached to the port, in order.
    pub(crate) http_routes: Vec<OutboundHttpRoute>,
    /// The GRPCRoutes attached to the port, in order.
    pub(crate) grpc_routes: Vec<OutboundGrpcRoute>,
}

/// The policy for a service port. With HTTPRoutes attached, its HTTP
/// routes are exactly those (Linkerd's semantics: a request no route
/// matches gets no route, and the proxy answers 404); without, one default
/// route sends every request to the service. With GRPCRoutes attached (and
/// the port not opaque), the policy is gRPC's: those routes, then the
/// default route without matches.
pub(crate) fn build(inputs: &Inputs) -> OutboundPolicy {
    let backend = balancer(&inputs.service, inputs.port, &inputs.fqdn);
    let metadata = convert::service_metadata(&inputs.service, inputs.port);
    if !inputs.grpc_routes.is_empty() && inputs.protocol != Protocol::Opaque {
        let mut grpc_routes: Vec<GrpcRoute> =
            inputs.grpc_routes.iter().map(routes::grpc_route).collect();
        grpc_routes.push(grpc_default(&backend));
        return with_routes(Protocol::Grpc, &backend, &[], &grpc_routes, metadata);
    }
    let http_routes = if inputs.http_routes.is_empty() {
        vec![http(&backend)]
    } else {
        inputs.http_routes.iter().map(routes::http_route).collect()
    };
    with_routes(
        inputs.protocol,
        &backend,
        &http_routes,
        &[grpc(&backend)],
        metadata,
    )
}

/// The policy for a meshed pod's own address: detect the protocol and
/// forward to the address, whose identity (and H2 hint) the backend
/// carries so that the client proxy uses mTLS, as for a service endpoint.
pub(crate) fn forward(ep: &Endpoint) -> OutboundPolicy {
    let backend = Backend {
        metadata: Some(convert::default_metadata("forward")),
        queue: Some(Queue {
            capacity: QUEUE_CAPACITY,
            failfast_timeout: convert::duration(QUEUE_FAILFAST),
        }),
        kind: Some(backend::Kind::Forward(forward_addr(ep))),
    };
    with_routes(
        Protocol::Detect,
        &backend,
        &[http(&backend)],
        &[],
        convert::default_metadata("forward"),
    )
}

/// A pod's own address carries no service: its namespace goes with the
/// endpoint's labels (a service's endpoints get it from their set).
fn forward_addr(ep: &Endpoint) -> linkerd2_proxy_api::destination::WeightedAddr {
    let mut addr = weighted_addr(ep);
    addr.metric_labels
        .insert("namespace".to_string(), ep.namespace.clone());
    addr
}

/// A policy whose opaque routes send to `backend` and whose HTTP and gRPC
/// routes are `http_routes` and `grpc_routes`.
fn with_routes(
    protocol: Protocol,
    backend: &Backend,
    http_routes: &[HttpRoute],
    grpc_routes: &[GrpcRoute],
    metadata: Metadata,
) -> OutboundPolicy {
    let kind = match protocol {
        Protocol::Opaque => proxy_protocol::Kind::Opaque(opaque(backend)),
        Protocol::Http1 => proxy_protocol::Kind::Http1(proxy_protocol::Http1 {
            routes: http_routes.to_vec(),
            failure_accrual: None,
        }),
        Protocol::Http2 => proxy_protocol::Kind::Http2(proxy_protocol::Http2 {
            routes: http_routes.to_vec(),
            failure_accrual: None,
        }),
        Protocol::Grpc => proxy_protocol::Kind::Grpc(proxy_protocol::Grpc {
            routes: grpc_routes.to_vec(),
            failure_accrual: None,
        }),
        Protocol::Detect => proxy_protocol::Kind::Detect(proxy_protocol::Detect {
            timeout: convert::duration(DETECT_TIMEOUT),
            // What to do when detection finds neither HTTP version.
            opaque: Some(opaque(backend)),
            http1: Some(proxy_protocol::Http1 {
                routes: http_routes.to_vec(),
                failure_accrual: None,
            }),
            http2: Some(proxy_protocol::Http2 {
                routes: http_routes.to_vec(),
                failure_accrual: None,
            }),
        }),
    };
    OutboundPolicy {
        protocol: Some(ProxyProtocol { kind: Some(kind) }),
        metadata: Some(metadata),
    }
}

/// A balancer over port `port` of `service`, whose endpoints come from
/// `Destination/Get` on `<fqdn>:<port>`.
pub(super) fn balancer(service: &ServiceKey, port: u16, fqdn: &str) -> Backend {
    Backend {
        metadata: Some(convert::service_metadata(service, port)),
        queue: Some(Queue {
            capacity: QUEUE_CAPACITY,
            failfast_timeout: convert::duration(QUEUE_FAILFAST),
        }),
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(backend::EndpointDiscovery {
                kind: Some(backend::endpoint_discovery::Kind::Dst(
                    backend::endpoint_discovery::DestinationGet {
                        path: format!("{fqdn}:{port}"),
                    },
                )),
            }),
            load: Some(backend::balance_p2c::Load::PeakEwma(
                backend::balance_p2c::PeakEwma {
                    default_rtt: convert::duration(EWMA_DEFAULT_RTT),
                    decay: convert::duration(EWMA_DECAY),
                },
            )),
        })),
    }
}

fn opaque(backend: &Backend) -> proxy_protocol::Opaque {
    proxy_protocol::Opaque {
        routes: vec![OpaqueRoute {
            metadata: Some(convert::default_metadata("opaq")),
            rules: vec![opaque_route::Rule {
                backends: Some(opaque_route::Distribution {
                    kind: Some(opaque_route::distribution::Kind::FirstAvailable(
                        opaque_route::distribution::FirstAvailable {
                            backends: vec![opaque_route::RouteBackend {
                                backend: Some(backend.clone()),
                                filters: Vec::new(),
                            }],
                        },
                    )),
                }),
                filters: Vec::new(),
            }],
        }],
    }
}

/// The default HTTP route: every path (prefix `/`), no retries or timeouts.
fn http(backend: &Backend) -> HttpRoute {
    let rule = http_route::Rule {
        matches: vec![HttpRouteMatch {
            path: Some(PathMatch {
                kind: Some(path_match::Kind::Prefix("/".to_string())),
            }),
            ..Default::default()
        }],
        backends: Some(http_route::Distribution {
            kind: Some(http_route::distribution::Kind::FirstAvailable(
                http_route::distribution::FirstAvailable {
                    backends: vec![http_route::RouteBackend {
                        backend: Some(backend.clone()),
                        ..Default::default()
                    }],
                },
            )),
        }),
        timeouts: Some(Default::default()),
        ..Default::default()
    };
    HttpRoute {
        metadata: Some(convert::default_metadata("http")),
        hosts: Vec::new(),
        rules: vec![rule],
    }
}

/// The default gRPC route: every method.
fn grpc(backend: &Backend) -> GrpcRoute {
    let rule = grpc_route::Rule {
        matches: vec![GrpcRouteMatch::default()],
        backends: Some(grpc_route::Distribution {
            kind: Some(grpc_route::distribution::Kind::FirstAvailable(
                grpc_route::distribution::FirstAvailable {
                    backends: vec![grpc_route::RouteBackend {
                        backend: Some(backend.clone()),
                        ..Default::default()
                    }],
                },
            )),
        }),
        timeouts: Some(Default::default()),
        ..Default::default()
    };
    GrpcRoute {
        metadata: Some(convert::default_metadata("grpc")),
        hosts: Vec::new(),
        rules: vec![rule],
    }
}

/// The default gRPC route after a port's GRPCRoutes: no matches, as the
/// proxy takes it for the service's own balancer, not for a route of its
/// own.
fn grpc_default(backend: &Backend) -> GrpcRoute {
    let mut route = grpc(backend);
    for rule in &mut route.rules {
        rule.matches.clear();
    }
    route
}
