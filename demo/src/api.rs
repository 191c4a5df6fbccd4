//! The emojivoto gRPC API (`emojivoto.v1`), written by hand in the shape
//! `tonic-build` would generate so that the workspace needs neither `protoc`
//! nor a build script. The message shapes follow emojivoto's `Emoji.proto`
//! and `Voting.proto`, except that voting has one `Vote` rpc carrying the
//! shortcode instead of one rpc per emoji.
//!
//! This module holds what both services share: the server-side adapter
//! from an async function to a unary gRPC handler, the client-side call, and
//! the lazily connecting channel web uses.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{Body, BoxFuture, GrpcMethod, Service, StdError, http};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::ServiceAddr;

pub mod emoji;
pub mod voting;

/// The per-call deadline of web's calls to emoji and voting: generous for a
/// call that does no I/O of its own, short enough that a vote-bot tick does
/// not pile up behind a dead dependency.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A gRPC channel to `addr` that connects on first use and reconnects by
/// itself, resolving the name again each time, so that a client can be
/// built before its server resolves or listens. Every call through it
/// fails after [`CALL_TIMEOUT`].
pub fn lazy_channel(addr: &ServiceAddr) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(addr.http_uri())?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// A hand-written service's name and methods: [`GrpcServer`] serves it.
pub trait Routes: Send + Sync + 'static {
    /// The fully qualified service name.
    const NAME: &'static str;

    /// Answers `req`, whose path names the method.
    fn route<B>(
        self: Arc<Self>,
        req: http::Request<B>,
    ) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static;
}

/// Serves a [`Routes`] implementation as the tower service tonic's router
/// takes.
#[derive(Debug)]
pub struct GrpcServer<S> {
    routes: Arc<S>,
}

/// Adapts an async function to the tower service `tonic::server::Grpc`
/// drives for one unary method.
struct Unary<F>(F);

/// Answers one unary call with `handle`, (de)coding with prost.
fn serve_unary<Req, Rsp, B, F, Fut>(
    req: http::Request<B>,
    handle: F,
) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
where
    Req: prost::Message + Default + Send + 'static,
    Rsp: prost::Message + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
    F: FnMut(Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Response<Rsp>, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<Rsp, Req>::default());
        Ok(grpc.unary(Unary(handle), req).await)
    })
}

/// The answer to a request for a method the service does not have.
fn unimplemented(path: &str) -> BoxFuture<http::Response<tonic::body::Body>, Infallible> {
    let status = Status::unimplemented(format!("no method {path}"));
    Box::pin(async move { Ok(status.into_http()) })
}

/// Calls `service`/`method` on `grpc` with `req`, tagging the request as
/// generated clients do. The call fails with DEADLINE_EXCEEDED after
/// [`CALL_TIMEOUT`], however long the name takes to resolve or the
/// connection to come up (the channel's own timeout starts only once it
/// is connected).
async fn call<Req, Rsp>(
    grpc: &mut tonic::client::Grpc<Channel>,
    service: &'static str,
    method: &'static str,
    mut req: Request<Req>,
) -> Result<Response<Rsp>, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Rsp: prost::Message + Default + Send + Sync + 'static,
{
    req.extensions_mut()
        .insert(GrpcMethod::new(service, method));
    // Sent as `grpc-timeout`, so the server (and the mesh) know it too.
    req.set_timeout(CALL_TIMEOUT);
    let path = format!("/{service}/{method}")
        .parse()
        .expect("service and method names are valid path characters");
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("{service} is not ready: {e}")))?;
        grpc.unary(req, path, ProstCodec::<Req, Rsp>::default())
            .await
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "no answer within {CALL_TIMEOUT:?}"
            )))
        })
}

// === impl GrpcServer ===

impl<S: Routes> GrpcServer<S> {
    /// Serves `routes`.
    pub fn with_routes(routes: S) -> Self {
        GrpcServer {
            routes: Arc::new(routes),
        }
    }
}

impl<S> Clone for GrpcServer<S> {
    fn clone(&self) -> Self {
        GrpcServer {
            routes: Arc::clone(&self.routes),
        }
    }
}

impl<S: Routes> tonic::server::NamedService for GrpcServer<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for GrpcServer<S>
where
    S: Routes,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        S::route(Arc::clone(&self.routes), req)
    }
}

// === impl Unary ===

impl<F, Fut, Req, Rsp> Service<Request<Req>> for Unary<F>
where
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Rsp>, Status>>,
{
    type Response = Response<Rsp>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Req>) -> Fut {
        (self.0)(req)
    }
}
