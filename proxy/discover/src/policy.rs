//! `OutboundPolicies/Watch`: is a target a mesh service, which protocol does
//! it speak, and which `Destination` path holds its endpoints.
//!
//! [`classify`] turns one policy into a [`Decision`] without I/O, so it is
//! table-tested; [`watch`] keeps the stream (and, for a service, the
//! destination stream) running and publishes each decision.

use std::sync::Arc;
use std::time::Duration;

use linkerd2_proxy_api::meta::{Metadata, metadata};
use linkerd2_proxy_api::outbound::{
    Backend, OutboundPolicy, TrafficSpec, backend,
    outbound_policies_client::OutboundPoliciesClient, proxy_protocol,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cache::{Key, TaskGuard};
use crate::destination::EndpointMeta;
use crate::profile::{self, Profile};
use crate::reconnect::{Backoff, Outage};
use crate::routes::HttpRoutes;
use crate::{Ctx, Endpoints, destination};

/// How the proxy should treat a service's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Detect HTTP from the first bytes; opaque otherwise.
    Detect,
    /// HTTP/1 without detection.
    Http1,
    /// HTTP/2 (and gRPC) without detection.
    Http2,
    /// Opaque TCP (also TLS passthrough): never parsed.
    Opaque,
}

/// What one policy says about a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Connect to the original destination; with what the control plane
    /// says about it when it is a meshed workload (identity, H2 hint).
    Forward(Option<Arc<EndpointMeta>>),
    /// Balance over the endpoints of `Destination/Get{path}`, or over
    /// the backends of the attached routes' rules when there are any.
    Balance {
        path: String,
        protocol: Protocol,
        routes: Arc<HttpRoutes>,
    },
    /// An answer this proxy cannot act on.
    Invalid(String),
}

/// A target's discovery state, published to resolvers.
#[derive(Clone, Debug)]
pub(crate) enum State {
    /// No answer yet.
    Pending,
    /// Not a service. `expires` is set when the control plane refused the
    /// target (`NotFound` & co.): that answer has no stream to update it,
    /// so it is asked again after a while. `endpoint` describes a meshed
    /// workload at the address.
    Forward {
        expires: Option<Instant>,
        endpoint: Option<Arc<EndpointMeta>>,
    },
    /// A service: the channels its [`crate::Service`] handles read.
    Service {
        name: Arc<str>,
        protocol: watch::Receiver<Protocol>,
        endpoints: watch::Receiver<Endpoints>,
        routes: watch::Receiver<Arc<HttpRoutes>>,
        profile: watch::Receiver<Option<Arc<Profile>>>,
    },
    /// The control plane's answer was unusable.
    Invalid(Arc<str>),
}

/// One policy stream, its reconnections, and the destination stream it
/// started.
struct PolicyWatch {
    ctx: Ctx,
    key: Key,
    client: OutboundPoliciesClient<Channel>,
    state: watch::Sender<State>,
    protocol: watch::Sender<Protocol>,
    endpoints: watch::Sender<Endpoints>,
    routes: watch::Sender<Arc<HttpRoutes>>,
    profile: watch::Sender<Option<Arc<Profile>>>,
    /// The destination path being watched and the task watching its
    /// endpoints and profile.
    balancing: Option<(String, TaskGuard)>,
    backoff: Backoff,
    outage: Outage,
}

/// A route's backends, in the order the policy lists them.
struct Route<'a> {
    is_default: bool,
    backends: Vec<&'a Backend>,
}

/// Watches the policy of `key` until the control plane refuses the target
/// at first (then publishes a `Forward` that expires after `forward_ttl`)
/// or the future is dropped.
pub(crate) async fn watch(ctx: Ctx, key: Key, state: watch::Sender<State>, forward_ttl: Duration) {
    let mut watch = PolicyWatch {
        client: ctx.policy.clone(),
        backoff: Backoff::new(ctx.backoff),
        outage: Outage::new(ctx.policy_health.clone()),
        ctx,
        key,
        state,
        protocol: watch::Sender::new(Protocol::Detect),
        endpoints: watch::Sender::new(Endpoints::default()),
        routes: watch::Sender::new(Arc::default()),
        profile: watch::Sender::new(None),
        balancing: None,
    };
    loop {
        match watch.stream_once().await {
            Ok(()) => tracing::debug!(dst = %watch.key, "policy stream ended"),
            // Only a first answer: a control plane that refuses a target it
            // described before is more likely restarting than right, so
            // the last answer stands and the stream is retried.
            Err(status) if is_unmeshed(&status) && watch.is_unanswered() => {
                tracing::debug!(dst = %watch.key, %status, "not a mesh target");
                watch.balancing = None;
                let expires = Some(Instant::now() + forward_ttl);
                watch.state.send_replace(State::Forward {
                    expires,
                    endpoint: None,
                });
                watch.outage.recovered();
                return;
            }
            Err(status) => watch.outage.failed(&watch.key, &status),
        }
        tokio::time::sleep(watch.backoff.next_delay()).await;
    }
}

/// The answers that mean "not a mesh target" rather than "try again".
fn is_unmeshed(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::NotFound | Code::InvalidArgument | Code::Unimplemented
    )
}

/// The routes of one protocol's policy as [`Route`]s: each route type has
/// its own generated `Distribution`, with the same shape.
macro_rules! routes {
    ($routes:expr, $m:ident) => {{
        use linkerd2_proxy_api::outbound::$m::distribution::Kind as D;
        $routes
            .iter()
            .map(|route| Route {
                is_default: is_default(&route.metadata),
                backends: route
                    .rules
                    .iter()
                    .filter_map(|rule| rule.backends.as_ref()?.kind.as_ref())
                    .flat_map(|dist| match dist {
                        D::FirstAvailable(first) => first
                            .backends
                            .iter()
                            .filter_map(|b| b.backend.as_ref())
                            .collect(),
                        D::RandomAvailable(random) => random
                            .backends
                            .iter()
                            .filter_map(|w| w.backend.as_ref()?.backend.as_ref())
                            .collect(),
                        D::Empty(_) => Vec::new(),
                    })
                    .collect(),
            })
            .collect::<Vec<Route<'_>>>()
    }};
}

/// What `policy` means for the proxy. The default route decides (a route
/// the control plane synthesised, else the first route with a backend); a
/// balancer backend in it wins over a forward backend, and its path is the
/// target's own endpoints (what opaque connections use). Routes attached
/// to the target come along as [`HttpRoutes`].
pub(crate) fn classify(policy: &OutboundPolicy) -> Decision {
    use proxy_protocol::Kind;
    let Some(kind) = policy.protocol.as_ref().and_then(|p| p.kind.as_ref()) else {
        return Decision::Invalid("the policy has no protocol".into());
    };
    let (protocol, mut routes) = match kind {
        Kind::Detect(detect) => {
            let mut routes = Vec::new();
            if let Some(http1) = &detect.http1 {
                routes.extend(routes!(http1.routes, http_route));
            }
            if let Some(http2) = &detect.http2 {
                routes.extend(routes!(http2.routes, http_route));
            }
            if let Some(opaque) = &detect.opaque {
                routes.extend(routes!(opaque.routes, opaque_route));
            }
            (Protocol::Detect, routes)
        }
        Kind::Opaque(opaque) => (Protocol::Opaque, routes!(opaque.routes, opaque_route)),
        Kind::Http1(http1) => (Protocol::Http1, routes!(http1.routes, http_route)),
        Kind::Http2(http2) => (Protocol::Http2, routes!(http2.routes, http_route)),
        Kind::Grpc(grpc) => (Protocol::Http2, routes!(grpc.routes, grpc_route)),
        Kind::Tls(tls) => (Protocol::Opaque, routes!(tls.routes, tls_route)),
    };
    // Stable: among defaults, and among the rest, the policy's order holds.
    routes.sort_by_key(|route| !route.is_default);
    let Some(route) = routes
        .iter()
        .find(|r| r.backends.iter().any(|b| b.kind.is_some()))
    else {
        return Decision::Invalid("the policy's routes have no backend".into());
    };
    let balancer = route.backends.iter().find_map(|b| match &b.kind {
        Some(backend::Kind::Balancer(balancer)) => Some(balancer),
        _ => None,
    });
    let Some(balancer) = balancer else {
        let endpoint = route.backends.iter().find_map(|b| match &b.kind {
            // Only a meshed workload's address says anything the proxy
            // acts on (its identity).
            Some(backend::Kind::Forward(addr)) => {
                destination::endpoint(addr.clone(), &Default::default())
                    .filter(|(_, m)| m.identity.is_some())
                    .map(|(_, m)| Arc::new(m))
            }
            _ => None,
        });
        return Decision::Forward(endpoint);
    };
    match balancer.discovery.as_ref().and_then(|d| d.kind.as_ref()) {
        Some(backend::endpoint_discovery::Kind::Dst(dst)) if !dst.path.is_empty() => {
            Decision::Balance {
                path: dst.path.clone(),
                protocol,
                routes: Arc::new(HttpRoutes::from_policy(policy)),
            }
        }
        _ => Decision::Invalid("a balancer backend has no destination path".into()),
    }
}

fn is_default(meta: &Option<Metadata>) -> bool {
    matches!(
        meta.as_ref().and_then(|m| m.kind.as_ref()),
        Some(metadata::Kind::Default(_))
    )
}

// === impl PolicyWatch ===

impl PolicyWatch {
    /// One call, until the stream ends (`Ok`) or fails.
    async fn stream_once(&mut self) -> Result<(), Status> {
        let spec = TrafficSpec {
            source_workload: self.ctx.source_workload.to_string(),
            target: Some(self.key.to_target()),
        };
        let mut stream = self.client.watch(spec).await?.into_inner();
        while let Some(policy) = stream.message().await? {
            self.outage.recovered();
            self.backoff.reset();
            self.apply(classify(&policy));
        }
        Ok(())
    }

    fn is_unanswered(&self) -> bool {
        matches!(*self.state.borrow(), State::Pending)
    }

    fn apply(&mut self, decision: Decision) {
        match decision {
            Decision::Forward(endpoint) => {
                self.balancing = None;
                self.state.send_replace(State::Forward {
                    expires: None,
                    endpoint,
                });
            }
            Decision::Balance {
                path,
                protocol,
                routes,
            } => {
                self.protocol
                    .send_if_modified(|current| std::mem::replace(current, protocol) != protocol);
                self.routes.send_if_modified(|current| {
                    let changed = **current != *routes;
                    if changed {
                        tracing::debug!(dst = %self.key, routes = routes.routes.len(), "routes");
                        *current = routes;
                    }
                    changed
                });
                if self.balancing.as_ref().is_some_and(|(p, _)| *p == path) {
                    return;
                }
                tracing::debug!(dst = %self.key, %path, "balancing");
                let endpoints =
                    destination::watch(self.ctx.clone(), path.clone(), self.endpoints.clone());
                // A new path is another service: its profile is asked anew.
                self.profile.send_replace(None);
                let profile = profile::watch(self.ctx.clone(), path.clone(), self.profile.clone());
                let task = async move {
                    tokio::join!(endpoints, profile);
                };
                // Replacing the guard cancels the previous path's stream.
                self.balancing = Some((path.clone(), TaskGuard::spawn(task)));
                self.state.send_replace(State::Service {
                    name: path.into(),
                    protocol: self.protocol.subscribe(),
                    endpoints: self.endpoints.subscribe(),
                    routes: self.routes.subscribe(),
                    profile: self.profile.subscribe(),
                });
            }
            Decision::Invalid(reason) => {
                tracing::warn!(dst = %self.key, %reason, "ignoring an unusable outbound policy");
                // A target that works keeps working; one that never did fails
                // fast instead of waiting out the timeout.
                if matches!(*self.state.borrow(), State::Pending | State::Invalid(_)) {
                    self.state.send_replace(State::Invalid(reason.into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
