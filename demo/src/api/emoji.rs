//! `emojivoto.v1.EmojiService`, as emojivoto's `Emoji.proto` defines it:
//!
//! ```proto
//! syntax = "proto3";
//! package emojivoto.v1;
//! message Emoji { string unicode = 1; string shortcode = 2; }
//! message ListAllEmojiRequest {}
//! message ListAllEmojiResponse { repeated Emoji list = 1; }
//! message FindByShortcodeRequest { string Shortcode = 1; }
//! message FindByShortcodeResponse { Emoji Emoji = 1; }
//! service EmojiService {
//!   rpc ListAll (ListAllEmojiRequest) returns (ListAllEmojiResponse);
//!   rpc FindByShortcode (FindByShortcodeRequest) returns (FindByShortcodeResponse);
//! }
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The fully qualified service name.
pub const SERVICE: &str = "emojivoto.v1.EmojiService";

const LIST_ALL: &str = "/emojivoto.v1.EmojiService/ListAll";
const FIND_BY_SHORTCODE: &str = "/emojivoto.v1.EmojiService/FindByShortcode";

/// One emoji.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Emoji {
    /// The emoji itself, such as "🍩".
    #[prost(string, tag = "1")]
    pub unicode: String,
    /// Its name between colons, such as ":doughnut:".
    #[prost(string, tag = "2")]
    pub shortcode: String,
}

/// Asks for every emoji.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListAllEmojiRequest {}

/// Every emoji, in the service's order.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListAllEmojiResponse {
    /// The emoji.
    #[prost(message, repeated, tag = "1")]
    pub list: Vec<Emoji>,
}

/// Asks for the emoji with a shortcode.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindByShortcodeRequest {
    /// The shortcode, colons included.
    #[prost(string, tag = "1")]
    pub shortcode: String,
}

/// The emoji found, if any: an unknown shortcode is not an error.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindByShortcodeResponse {
    /// The emoji, absent if the shortcode is unknown.
    #[prost(message, optional, tag = "1")]
    pub emoji: Option<Emoji>,
}

/// The service's behaviour; [`EmojiServiceServer`] turns it into HTTP/2
/// handling.
#[tonic::async_trait]
pub trait EmojiService: Send + Sync + 'static {
    /// `ListAll`.
    async fn list_all(
        &self,
        req: Request<ListAllEmojiRequest>,
    ) -> Result<Response<ListAllEmojiResponse>, Status>;
    /// `FindByShortcode`.
    async fn find_by_shortcode(
        &self,
        req: Request<FindByShortcodeRequest>,
    ) -> Result<Response<FindByShortcodeResponse>, Status>;
}

/// An [`EmojiService`] implementation's methods, for [`super::GrpcServer`].
#[derive(Debug)]
pub struct EmojiRoutes<T>(T);

/// Serves an [`EmojiService`] implementation as a tower service.
pub type EmojiServiceServer<T> = super::GrpcServer<EmojiRoutes<T>>;

/// A client of `emojivoto.v1.EmojiService`.
#[derive(Clone, Debug)]
pub struct EmojiServiceClient {
    inner: tonic::client::Grpc<Channel>,
}

// === impl EmojiServiceServer ===

impl<T: EmojiService> EmojiServiceServer<T> {
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {
        super::GrpcServer::with_routes(EmojiRoutes(inner))
    }
}

impl<T: EmojiService> super::Routes for EmojiRoutes<T> {
    const NAME: &'static str = SERVICE;

    fn route<B>(
        self: Arc<Self>,
        req: http::Request<B>,
    ) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let this = self;
        match req.uri().path() {
            LIST_ALL => super::serve_unary(req, move |r| {
                let this = Arc::clone(&this);
                async move { this.0.list_all(r).await }
            }),
            FIND_BY_SHORTCODE => super::serve_unary(req, move |r| {
                let this = Arc::clone(&this);
                async move { this.0.find_by_shortcode(r).await }
            }),
            path => super::unimplemented(path),
        }
    }
}

// === impl EmojiServiceClient ===

impl EmojiServiceClient {
    /// A client over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// `ListAll`.
    pub async fn list_all(
        &mut self,
        req: impl tonic::IntoRequest<ListAllEmojiRequest>,
    ) -> Result<Response<ListAllEmojiResponse>, Status> {
        super::call(&mut self.inner, SERVICE, "ListAll", req.into_request()).await
    }

    /// `FindByShortcode`.
    pub async fn find_by_shortcode(
        &mut self,
        req: impl tonic::IntoRequest<FindByShortcodeRequest>,
    ) -> Result<Response<FindByShortcodeResponse>, Status> {
        super::call(
            &mut self.inner,
            SERVICE,
            "FindByShortcode",
            req.into_request(),
        )
        .await
    }
}
