//! Requests to a service whose ServiceProfile has routes or overrides
//! ([`crate::discovery::ProfileTable`]), as Linkerd's proxy sends them:
//!
//! ```text
//!  request ─► first matching route (or [DEFAULT]) ─► route_request_total
//!     └─► attempt: override by weight (or the service) ─► route_actual_*
//!           failure by the route's response classes, retryable route,
//!           body replayable, budget left, within the route's timeout?
//!           └─ yes: attempt again at once   └─ no: route_response_total, latency
//! ```
//!
//! Request bodies of known length up to 64 KiB are buffered on retryable
//! routes so that they can be sent again; others are sent once. The
//! timeout covers every attempt and answers 504.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};

use super::{Forward, RequestBody, UpstreamBody, retry};
use crate::client::StickyH1;
use crate::discovery::{Balanced, ProfileTable};
use crate::errors::ProxyError;
use crate::metrics::{self, DEFAULT_PROFILE_ROUTE, EndpointLabels, RouteLabels};
use strand_proxy_discover::ProfileRoute;

/// The largest request body kept to be sent again on a retryable route.
const MAX_REPLAY_BYTES: u32 = 64 * 1024;

impl Forward {
    pub(super) async fn send_profiled(
        &self,
        service: &Balanced,
        table: &ProfileTable,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let started = Instant::now();
        let route = table
            .profile
            .route_for(req.method(), req.uri().path())
            .cloned();
        let name: Arc<str> = route
            .as_ref()
            .map_or_else(|| Arc::from(DEFAULT_PROFILE_ROUTE), |r| r.name.clone());
        let labels = metrics::profile_route_labels(service.name(), &name);
        let m = &self.metrics.profile_route;
        m.requests.get_or_create(&labels).inc();
        table.budget.deposit();
        let deadline = route
            .as_ref()
            .and_then(|r| r.timeout)
            .map(|t| (tokio::time::Instant::now() + t, t));
        let attempts = Attempts {
            forward: self,
            service,
            table,
            labels: &labels,
            name: &name,
            deadline,
            route: route.as_deref(),
        };
        let (head, body) = req.into_parts();
        let res = if route.as_ref().is_some_and(|r| r.retryable) {
            match retry::replayable(body, MAX_REPLAY_BYTES).await {
                Ok(retry::Replay::Buffered(data, trailers)) => {
                    attempts.retrying(head, data, trailers, h1, out).await
                }
                Ok(retry::Replay::Streaming(body)) => {
                    attempts
                        .once(Request::from_parts(head, body), h1, out)
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            attempts
                .once(Request::from_parts(head, body), h1, out)
                .await
        };
        m.latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64() * 1000.0);
        match res {
            // Counted when the body ends, when a gRPC status is known.
            Ok(mut rsp) => {
                rsp.extensions_mut().insert(RouteResponse {
                    metrics: self.metrics.clone(),
                    labels,
                    route,
                });
                Ok(rsp)
            }
            Err(e) => {
                let status = e.http_status().as_u16();
                let labels = metrics::profile_response_labels(
                    &labels,
                    status,
                    failed(route.as_deref(), status, None),
                );
                m.responses.get_or_create(&labels).inc();
                Err(e)
            }
        }
    }
}

/// A profiled request's response on its way to the client: `ProxyBody`
/// counts it in `route_response_total` when it ends.
#[derive(Clone, Debug)]
pub struct RouteResponse {
    metrics: Arc<crate::metrics::Metrics>,
    labels: RouteLabels,
    route: Option<Arc<ProfileRoute>>,
}

impl RouteResponse {
    /// Counts the response: `grpc` is its `grpc-status` (from its trailers
    /// or a trailers-only head); `clean` is false when its body failed.
    pub fn finish(self, status: u16, grpc: Option<u32>, clean: bool) {
        let failure = !clean || failed(self.route.as_deref(), status, grpc);
        let labels = metrics::profile_response_labels(&self.labels, status, failure);
        self.metrics
            .profile_route
            .responses
            .get_or_create(&labels)
            .inc();
    }
}

/// Linkerd's classification on a profile route: the first of the route's
/// response classes that matches the status decides; with none, a gRPC
/// status other than OK, or else a 5xx, is a failure.
fn failed(route: Option<&ProfileRoute>, status: u16, grpc: Option<u32>) -> bool {
    route
        .and_then(|r| r.class_of(status))
        .unwrap_or_else(|| grpc.map_or(status >= 500, |g| g != 0))
}

/// One request's attempts on a profile route.
struct Attempts<'a> {
    forward: &'a Forward,
    service: &'a Balanced,
    table: &'a ProfileTable,
    labels: &'a RouteLabels,
    name: &'a Arc<str>,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    /// `None`: no route matched (`[DEFAULT]`).
    route: Option<&'a ProfileRoute>,
}

impl Attempts<'_> {
    /// Whether an attempt's response head is a failure (a gRPC status in
    /// the head is a trailers-only answer).
    fn is_failure(&self, rsp: &Response<UpstreamBody>) -> bool {
        let grpc = super::headers::grpc_status(rsp.headers());
        failed(self.route, rsp.status().as_u16(), grpc)
    }

    async fn once(
        &self,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        self.attempt(req, h1, out)
            .await
            .map_err(retry::Failed::into_error)
    }

    /// Sends the buffered request until it succeeds, fails in a way that
    /// is not retried, the budget is spent, or the timeout passes.
    async fn retrying(
        &self,
        head: http::request::Parts,
        data: bytes::Bytes,
        trailers: Option<http::HeaderMap>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        loop {
            let body = RequestBody::buffered(data.clone(), trailers.clone());
            let res = self.attempt(retry::rebuild(&head, body), h1, out).await;
            let again = match &res {
                Ok(rsp) => self.is_failure(rsp),
                // Never reached the server (connect, TLS): safe to resend.
                Err(retry::Failed::Send(e)) => e.is_retryable(),
                Err(retry::Failed::Route(_) | retry::Failed::Try(_)) => false,
            };
            if !again || !self.table.budget.withdraw() {
                return res.map_err(retry::Failed::into_error);
            }
        }
    }

    /// One attempt, counted in `route_actual_*`.
    async fn attempt(
        &self,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, retry::Failed> {
        let m = &self.forward.metrics.profile_route;
        m.actual_requests.get_or_create(self.labels).inc();
        let res = match self.table.backend() {
            Ok(backend) => {
                let target = backend.as_deref().unwrap_or(self.service);
                let send = self.forward.send_picked(target, req, h1, out);
                retry::within(send, None, self.deadline, self.name).await
            }
            Err(e) => Err(retry::Failed::Route(e)),
        };
        let (status, failure) = match &res {
            Ok(rsp) => (rsp.status().as_u16(), self.is_failure(rsp)),
            Err(retry::Failed::Send(e) | retry::Failed::Route(e) | retry::Failed::Try(e)) => {
                let status = e.http_status().as_u16();
                (status, failed(self.route, status, None))
            }
        };
        m.actual_responses
            .get_or_create(&metrics::profile_response_labels(
                self.labels,
                status,
                failure,
            ))
            .inc();
        res
    }
}
