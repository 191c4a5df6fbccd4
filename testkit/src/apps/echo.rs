//! The `strand.test.Echo` gRPC service, written by hand in the shape
//! `tonic-build` would generate from
//!
//! ```proto
//! syntax = "proto3";
//! package strand.test;
//! message EchoRequest  { string message = 1; uint32 count = 2; }
//! message EchoResponse { string message = 1; uint32 count = 2; }
//! service Echo {
//!   rpc Unary(EchoRequest) returns (EchoResponse);
//!   rpc ServerStream(EchoRequest) returns (stream EchoResponse);
//!   rpc ClientStream(stream EchoRequest) returns (EchoResponse);
//!   rpc Bidi(stream EchoRequest) returns (stream EchoResponse);
//! }
//! ```
//!
//! so that the workspace needs neither `protoc` nor a build script.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tonic::codegen::{Body, BoxFuture, Bytes, GrpcMethod, Service, StdError, http};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The fully qualified service name.
pub const SERVICE: &str = "strand.test.Echo";

/// Metadata key that asks for a trailers-only error response; see
/// [`EchoServer`].
pub const TRAILERS_ONLY: &str = "x-strand-trailers-only";

/// A message to echo.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Text to echo; `fail:<code>` asks for gRPC status `<code>` instead.
    #[prost(string, tag = "1")]
    pub message: String,
    /// ServerStream: how many replies to send.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// An echoed message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    /// The echoed text.
    #[prost(string, tag = "1")]
    pub message: String,
    /// ServerStream and Bidi: the reply's index; ClientStream: how many
    /// messages arrived.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// A response stream.
pub type EchoStream = futures_util::stream::BoxStream<'static, Result<EchoResponse, Status>>;

/// The service's behaviour; [`EchoServer`] turns it into HTTP/2 handling.
#[tonic::async_trait]
pub trait Echo: Send + Sync + 'static {
    /// One request, one reply.
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status>;
    /// One request, a stream of replies.
    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<EchoStream>, Status>;
    /// A stream of requests, one reply.
    async fn client_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status>;
    /// A stream each way.
    async fn bidi(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoStream>, Status>;
}

/// Serves an [`Echo`] implementation as a tower service.
///
/// An error returned by `unary` or `client_stream` is sent in trailers
/// after the response headers, unless it carries [`TRAILERS_ONLY`]
/// metadata; an error returned by `server_stream` or `bidi` themselves is
/// sent trailers-only, while one yielded by their streams follows the
/// headers and any replies.
#[derive(Debug)]
pub struct EchoServer<T> {
    inner: Arc<T>,
}

/// A client of `strand.test.Echo`.
#[derive(Clone, Debug)]
pub struct EchoClient<T> {
    inner: tonic::client::Grpc<T>,
}

// === impl EchoServer ===

impl<T: Echo> EchoServer<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl<T> Clone for EchoServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> tonic::server::NamedService for EchoServer<T> {
    const NAME: &'static str = SERVICE;
}

/// The per-method adapters tonic's `Grpc` drives. Unlike generated code,
/// Unary and ClientStream replies go out through the streaming encoder: an
/// error then travels in trailers after the response headers, the shape a
/// proxy must classify from trailers. A [`Status`] carrying
/// [`TRAILERS_ONLY`] metadata keeps tonic's usual trailers-only response
/// (the status in the response headers).
struct UnaryMethod<T>(Arc<T>);
struct ServerStreamMethod<T>(Arc<T>);
struct ClientStreamMethod<T>(Arc<T>);
struct BidiMethod<T>(Arc<T>);

/// A single reply, or an error, as a response stream.
fn as_stream(
    result: Result<Response<EchoResponse>, Status>,
) -> Result<Response<EchoStream>, Status> {
    match result {
        Ok(rsp) => {
            let (metadata, reply, extensions) = rsp.into_parts();
            let stream = futures_util::stream::iter([Ok(reply)]).boxed();
            Ok(Response::from_parts(metadata, stream, extensions))
        }
        Err(status) if status.metadata().contains_key(TRAILERS_ONLY) => Err(status),
        Err(status) => Ok(Response::new(
            futures_util::stream::iter([Err(status)]).boxed(),
        )),
    }
}

impl<T: Echo> tonic::server::ServerStreamingService<EchoRequest> for UnaryMethod<T> {
    type Response = EchoResponse;
    type ResponseStream = EchoStream;
    type Future = BoxFuture<Response<EchoStream>, Status>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { as_stream(inner.unary(req).await) })
    }
}

impl<T: Echo> tonic::server::ServerStreamingService<EchoRequest> for ServerStreamMethod<T> {
    type Response = EchoResponse;
    type ResponseStream = EchoStream;
    type Future = BoxFuture<Response<EchoStream>, Status>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.server_stream(req).await })
    }
}

impl<T: Echo> tonic::server::StreamingService<EchoRequest> for ClientStreamMethod<T> {
    type Response = EchoResponse;
    type ResponseStream = EchoStream;
    type Future = BoxFuture<Response<EchoStream>, Status>;
    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { as_stream(inner.client_stream(req).await) })
    }
}

impl<T: Echo> tonic::server::StreamingService<EchoRequest> for BidiMethod<T> {
    type Response = EchoResponse;
    type ResponseStream = EchoStream;
    type Future = BoxFuture<Response<EchoStream>, Status>;
    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.bidi(req).await })
    }
}

impl<T, B> Service<http::Request<B>> for EchoServer<T>
where
    T: Echo,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoResponse, EchoRequest>::default());
        match req.uri().path() {
            "/strand.test.Echo/Unary" => {
                Box::pin(async move { Ok(grpc.server_streaming(UnaryMethod(inner), req).await) })
            }
            "/strand.test.Echo/ServerStream" => {
                Box::pin(
                    async move { Ok(grpc.server_streaming(ServerStreamMethod(inner), req).await) },
                )
            }
            "/strand.test.Echo/ClientStream" => {
                Box::pin(async move { Ok(grpc.streaming(ClientStreamMethod(inner), req).await) })
            }
            "/strand.test.Echo/Bidi" => {
                Box::pin(async move { Ok(grpc.streaming(BidiMethod(inner), req).await) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

// === impl EchoClient ===

impl EchoClient<tonic::transport::Channel> {
    /// Connects to `dst` (`http://HOST:PORT`).
    pub async fn connect(dst: String) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::new(dst)?.connect().await?;
        Ok(Self::new(channel))
    }
}

impl<T> EchoClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// Wraps a transport.
    pub fn new(inner: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("service was not ready: {}", e.into())))
    }

    /// `Unary`.
    pub async fn unary(
        &mut self,
        req: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.ready().await?;
        let (path, req) = prepare("Unary", req.into_request());
        self.inner.unary(req, path, ProstCodec::default()).await
    }

    /// `ServerStream`.
    pub async fn server_stream(
        &mut self,
        req: impl tonic::IntoRequest<EchoRequest>,
    ) -> Result<Response<Streaming<EchoResponse>>, Status> {
        self.ready().await?;
        let (path, req) = prepare("ServerStream", req.into_request());
        self.inner
            .server_streaming(req, path, ProstCodec::default())
            .await
    }

    /// `ClientStream`.
    pub async fn client_stream(
        &mut self,
        req: impl tonic::IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.ready().await?;
        let (path, req) = prepare("ClientStream", req.into_streaming_request());
        self.inner
            .client_streaming(req, path, ProstCodec::default())
            .await
    }

    /// `Bidi`.
    pub async fn bidi(
        &mut self,
        req: impl tonic::IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<Streaming<EchoResponse>>, Status> {
        self.ready().await?;
        let (path, req) = prepare("Bidi", req.into_streaming_request());
        self.inner.streaming(req, path, ProstCodec::default()).await
    }
}

/// The request path for `method`, and the request tagged with it as
/// generated clients do.
fn prepare<M>(method: &'static str, mut req: Request<M>) -> (http::uri::PathAndQuery, Request<M>) {
    req.extensions_mut()
        .insert(GrpcMethod::new(SERVICE, method));
    let path = format!("/{SERVICE}/{method}")
        .parse()
        .expect("service and method names are valid path characters");
    (path, req)
}
