//! `io.linkerd.proxy.inbound.InboundServerPolicies`: how a proxy serves one
//! of its workload's ports.
//!
//! strand has no `Server` or authorization resources yet, so every port gets
//! Linkerd's cluster default, `all-unauthenticated`: detect the protocol,
//! admit every client from every network, one HTTP route for all requests.
//! A watch sends it once and stays open (an open stream is how the proxy
//! knows its policy is current) until the client leaves or the server shuts
//! down.

use crate::Shared;
use crate::convert;
use crate::stats::{StreamApi, StreamGuard};
use crate::stream::{self, Once, ResponseStream};
use linkerd2_proxy_api::http_route::{HttpRouteMatch, PathMatch, path_match};
use linkerd2_proxy_api::inbound::inbound_server_policies_server::InboundServerPolicies;
use linkerd2_proxy_api::inbound::{
    Authn, Authz, HttpRoute, Network, PortSpec, ProxyProtocol, Server, authn, http_route,
    proxy_protocol,
};
use linkerd2_proxy_api::net::IpNetwork;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Linkerd's default inbound policy, and the name its metrics carry.
pub(crate) const DEFAULT_POLICY: &str = "all-unauthenticated";

/// Linkerd's inbound protocol detection timeout.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `InboundServerPolicies` service.
pub struct InboundPolicyService {
    shared: Shared,
}

// === impl InboundPolicyService ===

impl InboundPolicyService {
    pub(crate) fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl InboundServerPolicies for InboundPolicyService {
    type WatchPortStream = ResponseStream<Server>;

    async fn get_port(&self, req: Request<PortSpec>) -> Result<Response<Server>, Status> {
        check(&req.into_inner())?;
        Ok(Response::new(default_server()))
    }

    async fn watch_port(
        &self,
        req: Request<PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let spec = req.into_inner();
        check(&spec)?;
        tracing::debug!(workload = %spec.workload, port = spec.port, "inbound policy WatchPort");
        let guard = StreamGuard::new(self.shared.stats.clone(), StreamApi::InboundWatchPort);
        Ok(Response::new(stream::serve(
            Once::new(default_server()),
            guard,
            self.shared.shutdown.clone(),
        )))
    }
}

/// The workload is an opaque string to this server (it will name the pod
/// once per-pod policies exist); the port must be one.
fn check(spec: &PortSpec) -> Result<(), Status> {
    match u16::try_from(spec.port) {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "port {} is not between 1 and 65535",
            spec.port
        ))),
    }
}

/// The `all-unauthenticated` default server.
///
/// Labels carry `group: ""` as Linkerd's do: the upstream proxy fills a
/// missing group with `policy.linkerd.io`, which would mislabel a default.
pub(crate) fn default_server() -> Server {
    let labels = || {
        HashMap::from([
            ("group".to_string(), String::new()),
            ("kind".to_string(), "default".to_string()),
            ("name".to_string(), DEFAULT_POLICY.to_string()),
        ])
    };
    let everywhere = [
        IpNetwork::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpNetwork::from((Ipv6Addr::UNSPECIFIED, 0)),
    ];
    let authz = Authz {
        networks: everywhere
            .into_iter()
            .map(|net| Network {
                net: Some(net),
                except: Vec::new(),
            })
            .collect(),
        authentication: Some(Authn {
            permit: Some(authn::Permit::Unauthenticated(
                authn::PermitUnauthenticated {},
            )),
        }),
        labels: labels(),
        metadata: Some(convert::default_metadata(DEFAULT_POLICY)),
    };
    // The server's authorizations apply to requests on a route without its
    // own, which is how Linkerd instruments its defaults.
    let route = HttpRoute {
        metadata: Some(convert::default_metadata("default")),
        hosts: Vec::new(),
        authorizations: Vec::new(),
        rules: vec![http_route::Rule {
            matches: vec![HttpRouteMatch {
                path: Some(PathMatch {
                    kind: Some(path_match::Kind::Prefix("/".to_string())),
                }),
                ..Default::default()
            }],
            filters: Vec::new(),
        }],
    };
    Server {
        protocol: Some(ProxyProtocol {
            kind: Some(proxy_protocol::Kind::Detect(proxy_protocol::Detect {
                timeout: convert::duration(DETECT_TIMEOUT),
                http_routes: vec![route],
                http_local_rate_limit: None,
            })),
        }),
        server_ips: Vec::new(),
        authorizations: vec![authz],
        labels: labels(),
    }
}
