//! `io.linkerd.proxy.outbound.OutboundPolicies`: what a proxy does with a
//! connection to a target, the main outbound discovery of current proxies.
//!
//! Only service ports have a policy. Anything else (an IP that is no
//! service's virtual IP, a name outside the cluster domain, an unknown
//! service) is answered `NotFound`, which the upstream proxy takes as "no
//! policy": it forwards the connection to its original destination. A
//! malformed request (no target, a bad address) is `InvalidArgument`.
//!
//! A watch sends the policy, then a new one whenever its inputs change
//! (protocol, name, the HTTPRoutes and GRPCRoutes attached to the port and
//! the services they send to). Lookups by address and by authority reach the same
//! service port, so both see the same routes. While the service is gone
//! nothing is sent: the proxy
//! keeps the last policy, and its balancer learns from `Destination/Get`
//! that the service has no endpoints.

use crate::stats::{StreamApi, StreamGuard};
use crate::stream::{self, ResponseStream, Updates};
use crate::target::{self, InvalidTarget, Resolved};
use crate::{Shared, convert};
use linkerd2_proxy_api::outbound::outbound_policies_server::OutboundPolicies;
use linkerd2_proxy_api::outbound::{OutboundPolicy, TrafficSpec, traffic_spec};
use std::net::SocketAddr;
use std::sync::Arc;
use strand_controller_core::{DiscoverServices, ServiceKey, ServicePortView, ServiceWatch, Target};
use tonic::{Request, Response, Status};

mod policy;
mod routes;

/// The port an authority without one means (HTTP's, as Linkerd assumes).
const DEFAULT_AUTHORITY_PORT: u16 = 80;

/// The `OutboundPolicies` service over an index.
pub struct OutboundPolicyService<D: ?Sized> {
    discover: Arc<D>,
    shared: Shared,
}

/// What an outbound target is.
enum Lookup {
    Service(ServiceKey, u16),
    /// A meshed pod's own address.
    Pod(Box<strand_controller_core::Endpoint>),
}

/// The policy updates of one watch.
struct PolicyUpdates {
    rx: ServiceWatch,
    last: Option<policy::Inputs>,
}

// === impl OutboundPolicyService ===

impl<D: DiscoverServices + ?Sized> OutboundPolicyService<D> {
    pub(crate) fn new(discover: Arc<D>, shared: Shared) -> Self {
        Self { discover, shared }
    }

    /// The service port a request is about, or the status to answer.
    fn lookup(&self, spec: TrafficSpec) -> Result<Lookup, Status> {
        let target = match spec.target.ok_or(InvalidTarget::Missing)? {
            traffic_spec::Target::Addr(addr) => {
                let shown = format!("{addr:?}");
                let port =
                    u16::try_from(addr.port).map_err(|_| InvalidTarget::Addr(shown.clone()))?;
                let addr = SocketAddr::try_from(addr).map_err(|_| InvalidTarget::Addr(shown))?;
                Target::Addr(SocketAddr::new(addr.ip(), port))
            }
            traffic_spec::Target::Authority(authority) => parse_authority(&authority)?,
        };
        let resolved = target::resolve(&*self.discover, target.clone());
        if let Resolved::Addr(addr) = resolved
            && let Some(ep) = self.discover.pod_endpoint(addr)
        {
            return Ok(Lookup::Pod(Box::new(ep)));
        }
        match resolved {
            Resolved::Service(key, port) => Ok(Lookup::Service(key, port)),
            other => {
                tracing::debug!(%target, ?other, "no outbound policy");
                Err(Status::not_found(format!(
                    "{target} is not a service port: no policy, forward to the original destination"
                )))
            }
        }
    }
}

#[tonic::async_trait]
impl<D: DiscoverServices + ?Sized> OutboundPolicies for OutboundPolicyService<D> {
    type WatchStream = ResponseStream<OutboundPolicy>;

    async fn get(&self, req: Request<TrafficSpec>) -> Result<Response<OutboundPolicy>, Status> {
        let (service, port) = match self.lookup(req.into_inner())? {
            Lookup::Service(service, port) => (service, port),
            Lookup::Pod(ep) => return Ok(Response::new(policy::forward(&ep))),
        };
        let rx = self.discover.watch(&service, port);
        let view = rx.borrow();
        match view.as_deref() {
            Some(view) => Ok(Response::new(policy::build(&inputs(view)))),
            None => Err(Status::not_found(format!(
                "service {service} port {port} not found: no policy, forward to the original destination"
            ))),
        }
    }

    async fn watch(
        &self,
        req: Request<TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let guard = StreamGuard::new(self.shared.stats.clone(), StreamApi::OutboundWatch);
        let (service, port) = match self.lookup(req.into_inner())? {
            Lookup::Service(service, port) => (service, port),
            Lookup::Pod(ep) => {
                tracing::debug!(addr = %ep.addr, pod = %ep.pod, "outbound policy Watch of a meshed pod");
                // A pod's address keeps its policy for the stream's life;
                // a proxy asks again when it next resolves the address.
                return Ok(Response::new(stream::serve(
                    stream::Once::new(policy::forward(&ep)),
                    guard,
                    self.shared.shutdown.clone(),
                )));
            }
        };
        tracing::debug!(%service, port, "outbound policy Watch");
        let updates = PolicyUpdates {
            rx: self.discover.watch(&service, port),
            last: None,
        };
        Ok(Response::new(stream::serve(
            updates,
            guard,
            self.shared.shutdown.clone(),
        )))
    }
}

fn inputs(view: &ServicePortView) -> policy::Inputs {
    policy::Inputs {
        service: view.service.clone(),
        fqdn: view.fqdn.clone(),
        port: view.port,
        protocol: convert::protocol(view),
        http_routes: view.http_routes.clone(),
        grpc_routes: view.grpc_routes.clone(),
    }
}

/// `host:port`, or a bare host meaning port 80.
fn parse_authority(authority: &str) -> Result<Target, InvalidTarget> {
    Target::parse(authority)
        .or_else(|| {
            let bare = !authority.is_empty() && !authority.contains(':');
            bare.then(|| Target::parse(&format!("{authority}:{DEFAULT_AUTHORITY_PORT}")))
                .flatten()
        })
        .ok_or_else(|| InvalidTarget::Path(authority.to_string()))
}

// === impl PolicyUpdates ===

impl Updates for PolicyUpdates {
    type Item = OutboundPolicy;

    async fn next(&mut self) -> Option<OutboundPolicy> {
        loop {
            {
                let current = self.rx.borrow_and_update();
                // Compared field by field so that endpoint churn, which
                // wakes every watch, allocates nothing.
                if let Some(view) = current.as_deref() {
                    let unchanged = self.last.as_ref().is_some_and(|last| {
                        last.fqdn == view.fqdn
                            && last.port == view.port
                            && last.service == view.service
                            && last.protocol == convert::protocol(view)
                            && last.http_routes == view.http_routes
                            && last.grpc_routes == view.grpc_routes
                    });
                    if !unchanged {
                        let inputs = inputs(view);
                        let policy = policy::build(&inputs);
                        self.last = Some(inputs);
                        return Some(policy);
                    }
                }
            }
            self.rx.changed().await.ok()?;
        }
    }
}

#[cfg(test)]
mod tests;
