//! `io.linkerd.proxy.destination.Destination`: endpoints (`Get`) and
//! profiles (`GetProfile`) of service ports.
//!
//! What targets that are no known service port get, and why (the upstream
//! proxy backs off and retries every error except `InvalidArgument` and
//! `FailedPrecondition`, which it takes as "discovery rejected": stop asking,
//! go without):
//!
//! | target                              | `Get`                | `GetProfile`                  |
//! |-------------------------------------|----------------------|-------------------------------|
//! | unparseable path                    | `InvalidArgument`    | `InvalidArgument`             |
//! | IP that is no service's virtual IP  | `InvalidArgument`    | endpoint profile (the address)|
//! | name outside the cluster domain     | `InvalidArgument`    | `InvalidArgument`             |
//! | `<svc>.<ns>.svc.<domain>` not known | `NotFound`           | `InvalidArgument`             |
//!
//! `Get` answers like Linkerd's destination: an IP or foreign name is
//! rejected, so the proxy stops resolving it and connects to the original
//! destination; an unknown service is `NotFound`, so a balancer whose
//! service is (re)created later picks it up on its next retry. `GetProfile`
//! never makes the proxy retry for a target without a profile: IPs get the
//! address itself as the profile's endpoint (as Linkerd does), names get
//! "rejected", and the proxy carries on without a profile. The outbound
//! policy API decides the proxy's route for such targets anyway (`NotFound`:
//! forward to the original destination).
//!
//! `Get` is answered by [`DestinationRoutes`] itself, with updates encoded
//! once per change and shared by every stream (module `raw`); `GetProfile`
//! by the generated server.

use crate::Shared;
use crate::fanout::{Batch, Sent, Topic, Topics};
use crate::raw;
use crate::stats::{StreamApi, StreamGuard};
use crate::stream::{self, Once, ResponseStream, Updates};
use crate::target::{self, Resolved};
use bytes::Bytes;
use linkerd2_proxy_api::destination::destination_server::{
    Destination, DestinationServer, SERVICE_NAME,
};
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination, Update};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use strand_controller_core::{DiscoverServices, ServiceWatch};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::{Request, Response, Status};

pub(crate) mod endpoints;
mod profile;

/// The path of the call that [`DestinationRoutes`] answers itself.
const GET_PATH: &str = "/io.linkerd.proxy.destination.Destination/Get";

/// The `Destination` service as mounted: `Get` by hand, from pre-encoded
/// updates; everything else by the generated server.
pub struct DestinationRoutes<D: ?Sized> {
    service: Arc<DestinationService<D>>,
    generated: DestinationServer<DestinationService<D>>,
}

/// The `Destination` service over an index.
pub struct DestinationService<D: ?Sized> {
    discover: Arc<D>,
    topics: Topics,
    shared: Shared,
}

/// The endpoint updates of one `Get` stream, framed for gRPC.
struct EndpointUpdates {
    topic: Arc<Topic>,
    rx: ServiceWatch,
    started: bool,
    sent: Sent,
    pending: Batch,
    next: usize,
}

// === impl DestinationRoutes ===

impl<D: DiscoverServices + ?Sized> DestinationRoutes<D> {
    pub(crate) fn new(service: DestinationService<D>) -> Self {
        let service = Arc::new(service);
        Self {
            generated: DestinationServer::from_arc(service.clone()),
            service,
        }
    }
}

impl<D: ?Sized> Clone for DestinationRoutes<D> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            generated: self.generated.clone(),
        }
    }
}

impl<D: ?Sized> tonic::server::NamedService for DestinationRoutes<D> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<D: DiscoverServices + ?Sized> Service<http::Request<Body>> for DestinationRoutes<D> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the generated server is awaited per call, below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == GET_PATH {
            let service = self.service.clone();
            return Box::pin(async move {
                let rsp = match raw::read_unary::<GetDestination>(req.into_body()).await {
                    Ok(get) => service.get_frames(&get.path).map(raw::streaming),
                    Err(status) => Err(status),
                };
                Ok(rsp.unwrap_or_else(Status::into_http))
            });
        }
        let mut generated = self.generated.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| {
                Service::<http::Request<Body>>::poll_ready(&mut generated, cx)
            })
            .await?;
            generated.call(req).await
        })
    }
}

// === impl DestinationService ===

impl<D: DiscoverServices + ?Sized> DestinationService<D> {
    pub(crate) fn new(discover: Arc<D>, topics: Topics, shared: Shared) -> Self {
        Self {
            discover,
            topics,
            shared,
        }
    }

    fn guard(&self, api: StreamApi) -> StreamGuard {
        StreamGuard::new(self.shared.stats.clone(), api)
    }

    /// The framed updates of a `Get` of `path`, or why there are none.
    fn get_frames(&self, path: &str) -> Result<ResponseStream<Bytes>, Status> {
        match target::resolve_path(&*self.discover, path)? {
            Resolved::Service(key, port) => {
                tracing::debug!(%path, service = %key, port, "Get");
                let updates = EndpointUpdates {
                    topic: self.topics.get(&key, port),
                    rx: self.discover.watch(&key, port),
                    started: false,
                    sent: Sent::Nothing,
                    pending: Batch::from([]),
                    next: 0,
                };
                let guard = self.guard(StreamApi::DestinationGet);
                Ok(stream::serve(updates, guard, self.shared.shutdown.clone()))
            }
            other => {
                tracing::debug!(%path, ?other, "Get rejected");
                Err(self.not_a_service(other))
            }
        }
    }

    fn not_a_service(&self, resolved: Resolved) -> Status {
        match resolved {
            Resolved::Addr(addr) => Status::invalid_argument(format!(
                "{addr} is not a service address; connect to it directly"
            )),
            Resolved::External(name) => Status::invalid_argument(format!(
                "{name} is not a service of cluster domain {}",
                self.discover.cluster_domain()
            )),
            Resolved::UnknownService(key, port) => {
                Status::not_found(format!("service {key} port {port} not found"))
            }
            Resolved::Service(key, port) => {
                Status::internal(format!("service {key} port {port} was resolved"))
            }
        }
    }
}

#[tonic::async_trait]
impl<D: DiscoverServices + ?Sized> Destination for DestinationService<D> {
    type GetStream = ResponseStream<Update>;
    type GetProfileStream = ResponseStream<DestinationProfile>;

    /// Never called: [`DestinationRoutes`] answers `Get` before the
    /// generated server sees it, and is the only way this service is served.
    async fn get(&self, _: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        Err(Status::internal("Get is served from pre-encoded updates"))
    }

    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let path = req.into_inner().path;
        let guard = || self.guard(StreamApi::DestinationGetProfile);
        let shutdown = self.shared.shutdown.clone();
        match target::resolve_path(&*self.discover, &path)? {
            Resolved::Service(key, port) => {
                tracing::debug!(%path, service = %key, port, "GetProfile");
                let updates = profile::ProfileUpdates::new(
                    self.discover.watch(&key, port),
                    self.discover.cluster_domain(),
                );
                Ok(Response::new(stream::serve(updates, guard(), shutdown)))
            }
            Resolved::Addr(addr) => {
                tracing::debug!(%path, "GetProfile of an endpoint");
                let updates = Once::new(profile::endpoint(addr));
                Ok(Response::new(stream::serve(updates, guard(), shutdown)))
            }
            Resolved::UnknownService(key, port) => Err(Status::invalid_argument(format!(
                "service {key} port {port} not found: no profile"
            ))),
            other => Err(self.not_a_service(other)),
        }
    }
}

// === impl EndpointUpdates ===

impl Updates for EndpointUpdates {
    type Item = Bytes;

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(update) = self.pending.get(self.next) {
                self.next += 1;
                return Some(update.clone());
            }
            // The first round sends the current state as it is.
            if self.started {
                self.rx.changed().await.ok()?;
            }
            self.started = true;
            let current = self.rx.borrow_and_update().clone();
            self.pending = self.topic.transition(&self.sent, &current).await;
            self.next = 0;
            self.sent = Sent::from(current);
        }
    }
}
