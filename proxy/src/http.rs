//! HTTP proxying: serves a detected HTTP/1 or HTTP/2 client connection and
//! forwards each request to the connection's original destination.
//!
//! ```text
//!  client conn ──► hyper server ──► Forward::call(req)
//!                                     ├─ strip hop-by-hop headers
//!                                     ├─ Upgrade/CONNECT ─► upgrade::forward (tunnel)
//!                                     ├─ HTTP/1 ─► the connection's own HTTP/1 upstream
//!                                     │            (StickyH1, driven by this task)
//!                                     └─ HTTP/2 ─► shared HTTP/2 upstream
//!  response ◄── ResponseBody (records response_total at end of stream)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::client::{HttpClient, StickyH1};
use crate::config::HttpConfig;
use crate::errors::{Guard, ProxyError};
use crate::metrics::{
    Classification, EndpointLabels, HandleCache, Metrics, ResponseLabels, TargetLabels, Tls,
};

mod body;
mod headers;
pub mod lean;
pub mod lean_h2;
mod orig_proto;
mod profile;
mod request_body;
mod retry;
mod task;
mod upgrade;

pub use body::{ProxyBody, UpstreamBody};
pub(crate) use headers::{authority as request_authority, grpc_status as grpc_status_of};
pub use request_body::RequestBody;

/// How many endpoints a request tries when connecting fails (nothing was
/// sent yet, so trying another is safe).
const CONNECT_ATTEMPTS: usize = 3;

/// Everything a connection's requests share.
#[derive(Debug)]
pub struct Forward {
    pub client: Arc<HttpClient>,
    pub metrics: Arc<Metrics>,
    pub target: SocketAddr,
    pub target_addr: Arc<str>,
    /// Where requests go: the target itself, or a service's endpoints.
    pub route: crate::discovery::Route,
    /// Outbound with a control plane: requests naming a service by
    /// authority are routed by name.
    pub resolver: Option<crate::discovery::Resolver>,
    pub tls: Tls,
    pub direction: crate::metrics::Direction,
    /// Set when every request on this connection must be refused.
    pub blocked: Option<Guard>,
    /// For HTTP/1 client connections: raised when a response body fails
    /// upstream, so the client connection is reset (`io::ResetOnDrop`).
    pub reset_client: Option<Arc<AtomicBool>>,
    /// This connection's recently used metric handles.
    pub handles: HandleCache,
    /// The proxy's open taps.
    pub taps: Arc<crate::tap::Taps>,
    /// The client's address.
    pub source: SocketAddr,
    /// With a trace collector: spans for requests that carry a sampled
    /// trace context.
    pub tracer: Option<Arc<crate::trace::Tracer>>,
}

/// How a served connection ended, for the connection's log line.
#[derive(Debug)]
pub struct ServeError {
    pub reason: &'static str,
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

// === impl Forward ===

impl Forward {
    /// Handles one request. Never fails: proxy errors become responses.
    pub async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        self.call_with(req, None).await
    }

    /// [`Forward::call`] for an HTTP/1 client connection, whose requests go
    /// over its own upstream connection.
    async fn call_with(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        mut h1: Option<Arc<StickyH1>>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let start = Instant::now();
        let authority = headers::authority(&req).map(|a| self.handles.authority(a));
        let grpc = headers::is_grpc(req.headers());
        let mut tap = if self.taps.is_active() {
            self.tap(&req)
        } else {
            None
        };
        let span = self.tracer.as_ref().and_then(|t| {
            let conn = crate::trace::ConnInfo {
                authority: authority.as_deref(),
                peer: self.source,
                target: self.target,
            };
            t.start(&mut req, self.direction, &conn)
        });
        // The connection's `tls` label, or the chosen endpoint's labels.
        let mut ep = EndpointLabels::tls(self.tls.clone());

        let result = if let Some(guard) = self.blocked {
            Err(guard.error())
        } else if upgrade::is_upgrade(&req) {
            // A dedicated connection, never pooled.
            h1 = None;
            upgrade::forward(&self, req, &mut ep).await
        } else {
            headers::strip_hop_by_hop(req.headers_mut(), false);
            let orig_proto = self.direction == crate::metrics::Direction::Inbound
                && orig_proto::downgrade(&mut req);
            if orig_proto {
                // HTTP/1 carried over HTTP/2 from another proxy: back to
                // HTTP/1 for the application, on a pooled connection.
                let addr = self.target;
                let req = req.map(RequestBody::from);
                self.client.send_h1_detached(addr, &ep.tls, req).await
            } else {
                self.send(req.map(RequestBody::from), h1.as_deref(), &mut ep)
                    .await
            }
        };
        let labels = TargetLabels {
            direction: self.direction,
            authority,
            target_addr: self.target_addr.clone(),
            tls: ep.tls,
            dst: ep.dst,
        };
        self.metrics.request_cached(&self.handles, &labels);

        match result {
            Ok(mut rsp) => {
                if rsp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    headers::strip_hop_by_hop(rsp.headers_mut(), false);
                }
                let rsp_labels = ResponseLabels {
                    target: labels,
                    status_code: Some(rsp.status().as_u16()),
                    classification: Classification::Success,
                    grpc_status: headers::grpc_status(rsp.headers()),
                    error: None,
                };
                self.metrics
                    .response_latency_cached(&self.handles, &rsp_labels, start);
                if let Some(t) = tap.as_mut() {
                    t.response_init(rsp.status(), rsp.headers(), &rsp_labels.target);
                }
                let reset = self.reset_client.clone();
                let route = rsp.extensions_mut().remove::<profile::RouteResponse>();
                Ok(rsp.map(|b| {
                    ProxyBody::upstream(b, self.clone(), rsp_labels, h1, reset)
                        .with_tap(tap)
                        .with_route(route)
                        .with_span(span)
                }))
            }
            Err(e) => {
                let answer = e.is_answer();
                if !answer {
                    tracing::info!(direction = self.direction.as_str(), target = %self.target, error = %e, "request failed");
                }
                let rsp = e.to_response(grpc);
                let rsp_labels = ResponseLabels {
                    target: labels,
                    status_code: Some(rsp.status().as_u16()),
                    classification: if answer {
                        Classification::Success
                    } else {
                        Classification::Failure
                    },
                    grpc_status: headers::grpc_status(rsp.headers()),
                    error: (!answer).then(|| e.kind()),
                };
                self.metrics
                    .response_latency_cached(&self.handles, &rsp_labels, start);
                self.metrics.response_end_cached(&self.handles, &rsp_labels);
                if let Some(mut t) = tap {
                    t.response_init(rsp.status(), rsp.headers(), &rsp_labels.target);
                    t.data(rsp.body().len());
                    t.response_end(None);
                }
                if let (Some(tracer), Some(span)) = (&self.tracer, span) {
                    let error = (!answer).then(|| e.kind());
                    tracer.finish(span, Some(rsp.status().as_u16()), error);
                }
                Ok(rsp.map(ProxyBody::full))
            }
        }
    }

    /// Offers a request to the open taps.
    fn tap(&self, req: &Request<Incoming>) -> Option<Box<crate::tap::Tapped>> {
        let labels = match &self.route {
            crate::discovery::Route::Meshed(meta) => Some(&meta.labels),
            _ => None,
        };
        // A service's endpoint, and so its TLS, is picked per request.
        let balanced = matches!(&self.route, crate::discovery::Route::Balanced(_));
        let conn = crate::tap::ConnMeta {
            direction: self.direction,
            source: self.source,
            destination: self.target,
            tls: (!balanced).then_some(&self.tls),
            labels,
        };
        self.taps.tap(req, &conn)
    }

    async fn send(
        &self,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        use crate::discovery::Route;
        // A request names its service when its connection went to no mesh
        // address; beside an ingress, whatever address it went to.
        if let Some(resolver) = &self.resolver
            && (matches!(self.route, Route::Direct) || resolver.ingress_mode())
        {
            let named = match req
                .headers()
                .get("l5d-dst-override")
                .and_then(|v| v.to_str().ok())
            {
                Some(dst) => Some((dst.to_string(), true)),
                None => headers::authority(&req).map(|a| (a.to_string(), false)),
            };
            if let Some((authority, overridden)) = named
                && let Some(route) = resolver.resolve_authority(&authority, overridden).await
            {
                return match route {
                    Route::Direct => self.send_to(self.target, req, h1, &out.tls).await,
                    Route::Meshed(meta) => self.send_meshed(&meta, req, h1, out).await,
                    Route::Failed(e) => Err(e.into()),
                    Route::Balanced(b) => self.send_balanced(&b, req, h1, out).await,
                };
            }
        }
        match &self.route {
            Route::Direct => self.send_to(self.target, req, h1, &out.tls).await,
            Route::Meshed(meta) => self.send_meshed(meta, req, h1, out).await,
            Route::Failed(e) => Err(e.clone().into()),
            Route::Balanced(b) => self.send_balanced(b, req, h1, out).await,
        }
    }

    /// Sends to the original destination, a meshed workload: over mTLS,
    /// and HTTP/1 upgraded to HTTP/2 when it accepts that.
    async fn send_meshed(
        &self,
        meta: &strand_proxy_discover::EndpointMeta,
        mut req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let ep = crate::discovery::EndpointTls::of(meta, self.mesh());
        let version = req.version();
        let upgraded = version != Version::HTTP_2 && ep.upgrade_h1 && orig_proto::upgrade(&mut req);
        *out = ep.labels();
        let mut rsp = self.send_to(self.target, req, h1, &out.tls).await?;
        if upgraded {
            orig_proto::response_downgrade(&mut rsp, version);
        }
        Ok(rsp)
    }

    /// Whether this proxy speaks mTLS to meshed endpoints.
    fn mesh(&self) -> bool {
        self.client.connector().identity.is_some()
    }

    /// Sends to one of a service's endpoints, chosen per request. HTTP/2
    /// (and HTTP/1 upgraded to HTTP/2 between proxies) connects before the
    /// request is handed over, so an endpoint that refuses, or fails the
    /// mTLS handshake, is reported and another one tried.
    async fn send_balanced(
        &self,
        service: &crate::discovery::Balanced,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        // A ServiceProfile with routes or overrides wins over HTTPRoutes.
        if let Some(table) = service.profile() {
            return self.send_profiled(service, &table, req, h1, out).await;
        }
        let routed = service.route(&req)?;
        let Some(route) = routed.route.clone() else {
            return self.send_rule(service, routed, req, h1, out).await;
        };
        let kind = routed.route_kind.as_str();
        let started = Instant::now();
        let res = self.send_filtered(service, routed, req, h1, out).await;
        let labels = crate::metrics::route_labels(service.name(), &route, kind);
        let (status, error) = match &res {
            Ok(rsp) => (rsp.status().as_u16(), ""),
            Err(e) if e.is_answer() => (e.http_status().as_u16(), ""),
            Err(e) => (e.http_status().as_u16(), e.kind()),
        };
        let statuses = crate::metrics::route_status_labels(&labels, status, error);
        self.metrics
            .http_route_statuses
            .get_or_create(&statuses)
            .inc();
        self.metrics
            .http_route_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        res
    }

    /// A request that took an HTTPRoute rule: its redirect, or its header
    /// filters around [`Forward::send_rule`].
    async fn send_filtered(
        &self,
        service: &crate::discovery::Balanced,
        mut routed: crate::discovery::Routed,
        mut req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        if let Some((status, location)) = routed.redirect.take() {
            return Err(ProxyError::Redirect { status, location });
        }
        let Some(filters) = routed.filters.take() else {
            return self.send_rule(service, routed, req, h1, out).await;
        };
        for f in filters.iter() {
            if let strand_proxy_discover::RouteFilter::RequestHeaders(m) = f {
                m.apply(req.headers_mut());
            }
        }
        let mut res = self.send_rule(service, routed, req, h1, out).await;
        if let Ok(rsp) = &mut res {
            for f in filters.iter() {
                if let strand_proxy_discover::RouteFilter::ResponseHeaders(m) = f {
                    m.apply(rsp.headers_mut());
                }
            }
        }
        res
    }

    /// [`Forward::send_balanced`] by an HTTPRoute rule (or the service's
    /// own endpoints), retrying as the rule says.
    async fn send_rule(
        &self,
        service: &crate::discovery::Balanced,
        routed: crate::discovery::Routed,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let (Some(route), Some(policy)) = (routed.route.clone(), routed.retry.clone()) else {
            return self.send_routed(service, routed, req, h1, out).await;
        };
        let deadline = routed.timeout.map(|t| (tokio::time::Instant::now() + t, t));
        let (head, body) = req.into_parts();
        let (data, trailers) = match retry::replayable(body, policy.max_request_bytes).await? {
            retry::Replay::Buffered(data, trailers) => (data, trailers),
            retry::Replay::Streaming(body) => {
                let req = Request::from_parts(head, body);
                return self.send_routed(service, routed, req, h1, out).await;
            }
        };
        let kind = routed.route_kind.as_str();
        let labels = || crate::metrics::route_labels(service.name(), &route, kind);
        let mut routed = routed;
        let mut retries = 0;
        loop {
            let req = retry::rebuild(&head, RequestBody::buffered(data.clone(), trailers.clone()));
            let backend = routed.backend.as_deref().unwrap_or(service);
            let attempt = self.send_picked(backend, req, h1, out);
            let per_try = min_some(policy.timeout, routed.backend_timeout);
            let res = retry::within(attempt, per_try, deadline, &route).await;
            let again = match &res {
                Ok(rsp) => {
                    policy.retries(rsp.status().as_u16(), headers::grpc_status(rsp.headers()))
                }
                Err(retry::Failed::Try(_)) => true,
                // Never reached the server (connect, TLS): safe to resend.
                Err(retry::Failed::Send(e)) => e.is_retryable(),
                Err(retry::Failed::Route(_)) => false,
            };
            if !again || retries >= policy.max_retries {
                if again {
                    self.metrics
                        .route_retry_limit_exceeded
                        .get_or_create(&labels())
                        .inc();
                } else if retries > 0 && res.is_ok() {
                    self.metrics
                        .route_retry_successes
                        .get_or_create(&labels())
                        .inc();
                }
                return res.map_err(retry::Failed::into_error);
            }
            drop(res);
            retries += 1;
            let delay = policy.delay(retries, fastrand::f64());
            if let Some((at, timeout)) = deadline
                && tokio::time::Instant::now() + delay >= at
            {
                return Err(ProxyError::RouteTimeout { timeout, route });
            }
            tokio::time::sleep(delay).await;
            self.metrics
                .route_retry_requests
                .get_or_create(&labels())
                .inc();
            // Each attempt draws its backend anew.
            routed = service.route_head(&head.method, &head.uri, &head.headers)?;
        }
    }

    /// Sends once to the backend `routed` names (or `service` itself),
    /// within the route's timeout.
    async fn send_routed(
        &self,
        service: &crate::discovery::Balanced,
        routed: crate::discovery::Routed,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let backend = routed.backend.as_deref().unwrap_or(service);
        let send = self.send_picked(backend, req, h1, out);
        // One attempt: the shorter of the request's and the attempt's.
        match (
            min_some(routed.timeout, routed.backend_timeout),
            routed.route,
        ) {
            (Some(timeout), Some(route)) => tokio::time::timeout(timeout, send)
                .await
                .unwrap_or(Err(ProxyError::RouteTimeout { timeout, route })),
            _ => send.await,
        }
    }

    /// [`Forward::send_balanced`] once the service (or its route's
    /// backend) is known.
    async fn send_picked(
        &self,
        service: &crate::discovery::Balanced,
        mut req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let no_endpoints = || ProxyError::NoEndpoints(service.name().to_string());
        let mesh = self.mesh();
        let handle = service.pick().ok_or_else(no_endpoints)?;
        let ep = service.endpoint_tls(handle.key(), mesh);
        let h1_version = req.version();
        let upgraded =
            h1_version != Version::HTTP_2 && ep.upgrade_h1 && orig_proto::upgrade(&mut req);
        if req.version() == Version::HTTP_2 {
            let mut last = None;
            let mut first = Some((handle, ep));
            for _ in 0..CONNECT_ATTEMPTS {
                let (mut handle, ep) = match first.take() {
                    Some(picked) => picked,
                    None => {
                        let handle = service.pick().ok_or_else(no_endpoints)?;
                        let ep = service.endpoint_tls(handle.key(), mesh);
                        if upgraded && !ep.upgrade_h1 {
                            // Rare: the next endpoint takes only HTTP/1.
                            orig_proto::revert(&mut req, h1_version);
                            return self.send_endpoint(handle, ep, req, h1, out).await;
                        }
                        (handle, ep)
                    }
                };
                let addr = *handle.key();
                *out = ep.labels();
                match self.client.h2(addr, &ep.tls, upgraded).await {
                    Ok(conn) => {
                        handle.sending();
                        let rsp = self.client.send_h2(conn, &ep.tls, upgraded, req).await;
                        if rsp.is_ok() {
                            handle.complete();
                        }
                        return rsp.map(|mut r| {
                            if upgraded {
                                orig_proto::response_downgrade(&mut r, h1_version);
                            }
                            r
                        });
                    }
                    Err(e) if e.is_retryable() => {
                        handle.connect_failed();
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            return Err(last.unwrap_or_else(no_endpoints));
        }
        self.send_endpoint(handle, ep, req, h1, out).await
    }

    /// Sends an HTTP/1 request to a picked endpoint.
    async fn send_endpoint(
        &self,
        handle: strand_proxy_balance::RequestHandle<SocketAddr>,
        ep: crate::discovery::EndpointTls,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        out: &mut EndpointLabels,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let addr = *handle.key();
        *out = ep.labels();
        match self.send_to(addr, req, h1, &out.tls).await {
            Ok(rsp) => {
                handle.complete();
                Ok(rsp)
            }
            Err(e) => {
                if e.is_retryable() {
                    handle.connect_failed();
                }
                Err(e)
            }
        }
    }

    /// Where an `Upgrade`/`CONNECT` tunnel goes: a long-lived connection,
    /// so a service's endpoint is chosen by open connections.
    fn tunnel_target(&self) -> Result<(SocketAddr, EndpointLabels), ProxyError> {
        use crate::discovery::Route;
        match &self.route {
            Route::Direct => Ok((self.target, EndpointLabels::tls(self.tls.clone()))),
            Route::Meshed(meta) => Ok((
                self.target,
                crate::discovery::EndpointTls::of(meta, self.mesh()).labels(),
            )),
            Route::Failed(e) => Err(e.clone().into()),
            Route::Balanced(b) => b
                .pick_connection()
                .map(|h| (*h.key(), b.endpoint_tls(h.key(), self.mesh()).labels()))
                .ok_or_else(|| ProxyError::NoEndpoints(b.name().to_string())),
        }
    }

    async fn send_to(
        &self,
        addr: SocketAddr,
        req: Request<RequestBody>,
        h1: Option<&StickyH1>,
        tls: &Tls,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        if req.version() == Version::HTTP_2 {
            let upgraded = req.headers().contains_key(orig_proto::L5D_ORIG_PROTO);
            let conn = self.client.h2(addr, tls, upgraded).await?;
            return self.client.send_h2(conn, tls, upgraded, req).await;
        }
        match h1 {
            Some(h1) => h1.send(addr, tls, req).await,
            // HTTP/1 requests that come from `serve_h1` have a connection of
            // their own; others get a pooled one driven by its own task.
            None => self.client.send_h1_detached(addr, tls, req).await,
        }
    }
}

/// The shorter of two optional durations.
fn min_some(
    a: Option<std::time::Duration>,
    b: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Serves an HTTP/1 client connection until it closes or `drain` fires.
pub async fn serve_h1<I>(
    io: I,
    forward: Arc<Forward>,
    config: &HttpConfig,
    drain: CancellationToken,
) -> Result<(), ServeError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h1 = Arc::new(StickyH1::new(forward.client.clone()));
    let sticky = h1.clone();
    let svc =
        hyper::service::service_fn(move |req| forward.clone().call_with(req, Some(sticky.clone())));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let res = task::drive_h1(conn, drain, |c| c.graceful_shutdown(), &h1).await;
    h1.release();
    res.map_err(classify_error)
}

/// Serves an HTTP/2 client connection until it closes or `drain` fires.
pub async fn serve_h2<I>(
    io: I,
    forward: Arc<Forward>,
    config: &HttpConfig,
    drain: CancellationToken,
) -> Result<(), ServeError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| forward.clone().call(req));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .serve_connection(TokioIo::new(io), svc);
    drive(conn, drain, |c| c.graceful_shutdown()).await
}

/// Runs a hyper server connection to completion; when `drain` fires, asks
/// it to finish its in-flight requests and close (`graceful`).
pub(crate) async fn drive<C>(
    conn: C,
    drain: CancellationToken,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), ServeError>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        () = drain.cancelled() => {
            graceful(conn.as_mut());
            conn.await
        }
    };
    res.map_err(classify_error)
}

// === impl ServeError ===

impl ServeError {
    /// Whether the client sent something the proxy had to reject (as
    /// opposed to simply going away).
    pub fn is_client_fault(&self) -> bool {
        !matches!(
            self.reason,
            "connection closed" | "connection closed mid-message" | "connection error"
        )
    }
}

/// Names the way a client connection failed, for one clear log line.
fn classify_error(error: hyper::Error) -> ServeError {
    let reason = if error.is_parse_too_large() {
        "request head too large"
    } else if error.is_timeout() {
        "request head not received in time"
    } else if error.is_parse() {
        "malformed HTTP request"
    } else if error.is_incomplete_message() {
        "connection closed mid-message"
    } else if error.is_canceled() || error.is_closed() {
        "connection closed"
    } else {
        match std::error::Error::source(&error).and_then(|s| s.downcast_ref::<h2::Error>()) {
            Some(e) if e.is_go_away() || e.is_reset() => "HTTP/2 protocol error",
            Some(_) => "HTTP/2 error",
            None => "connection error",
        }
    };
    ServeError {
        reason,
        error: Box::new(error),
    }
}
