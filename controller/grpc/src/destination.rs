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

use crate::Shared;
use crate::fanout::{Batch, Sent, Topic, Topics};
use crate::stats::{StreamApi, StreamGuard};
use crate::stream::{self, Once, ResponseStream, Updates};
use crate::target::{self, Resolved};
use linkerd2_proxy_api::destination::destination_server::Destination;
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination, Update};
use std::sync::Arc;
use strand_controller_core::{DiscoverServices, ServiceWatch};
use tonic::{Request, Response, Status};

pub(crate) mod endpoints;
mod profile;

/// The `Destination` service over an index.
pub struct DestinationService<D: ?Sized> {
    discover: Arc<D>,
    topics: Topics,
    shared: Shared,
}

/// The endpoint updates of one `Get` stream.
struct EndpointUpdates {
    topic: Arc<Topic>,
    rx: ServiceWatch,
    started: bool,
    sent: Sent,
    pending: Batch,
    next: usize,
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

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let path = req.into_inner().path;
        match target::resolve_path(&*self.discover, &path)? {
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
                Ok(Response::new(stream::serve(
                    updates,
                    guard,
                    self.shared.shutdown.clone(),
                )))
            }
            other => {
                tracing::debug!(%path, ?other, "Get rejected");
                Err(self.not_a_service(other))
            }
        }
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
                let updates = profile::ProfileUpdates::new(self.discover.watch(&key, port));
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
    type Item = Update;

    async fn next(&mut self) -> Option<Update> {
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
