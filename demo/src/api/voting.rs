//! `emojivoto.v1.VotingService`, emojivoto's `Voting.proto` with its one
//! rpc per emoji (`VoteDoughnut`, ...) folded into one `Vote` that names the
//! emoji:
//!
//! ```proto
//! syntax = "proto3";
//! package emojivoto.v1;
//! message VotingResult { string Shortcode = 1; int32 Votes = 2; }
//! message VoteRequest { string shortcode = 1; }
//! message VoteResponse {}
//! message ResultsRequest {}
//! message ResultsResponse { repeated VotingResult results = 1; }
//! service VotingService {
//!   rpc Vote (VoteRequest) returns (VoteResponse);
//!   rpc Results (ResultsRequest) returns (ResultsResponse);
//! }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// The fully qualified service name.
pub const SERVICE: &str = "emojivoto.v1.VotingService";

const VOTE: &str = "/emojivoto.v1.VotingService/Vote";
const RESULTS: &str = "/emojivoto.v1.VotingService/Results";

/// The votes one emoji has.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VotingResult {
    /// The emoji's shortcode, such as ":doughnut:".
    #[prost(string, tag = "1")]
    pub shortcode: String,
    /// Votes counted since the service started.
    #[prost(int32, tag = "2")]
    pub votes: i32,
}

/// A vote for one emoji.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VoteRequest {
    /// The emoji's shortcode, colons included.
    #[prost(string, tag = "1")]
    pub shortcode: String,
}

/// A vote was counted.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VoteResponse {}

/// Asks for the tally.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResultsRequest {}

/// The tally: every emoji with at least one vote, most votes first.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResultsResponse {
    /// One entry per emoji voted for.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<VotingResult>,
}

/// The service's behaviour; [`VotingServiceServer`] turns it into HTTP/2
/// handling.
#[tonic::async_trait]
pub trait VotingService: Send + Sync + 'static {
    /// `Vote`.
    async fn vote(&self, req: Request<VoteRequest>) -> Result<Response<VoteResponse>, Status>;
    /// `Results`.
    async fn results(
        &self,
        req: Request<ResultsRequest>,
    ) -> Result<Response<ResultsResponse>, Status>;
}

/// Serves a [`VotingService`] implementation as a tower service.
#[derive(Debug)]
pub struct VotingServiceServer<T> {
    inner: Arc<T>,
}

/// A client of `emojivoto.v1.VotingService`.
#[derive(Clone, Debug)]
pub struct VotingServiceClient {
    inner: tonic::client::Grpc<Channel>,
}

// === impl VotingServiceServer ===

impl<T: VotingService> VotingServiceServer<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl<T> Clone for VotingServiceServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> tonic::server::NamedService for VotingServiceServer<T> {
    const NAME: &'static str = SERVICE;
}

impl<T, B> Service<http::Request<B>> for VotingServiceServer<T>
where
    T: VotingService,
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
        let inner = Arc::clone(&self.inner);
        match req.uri().path() {
            VOTE => super::serve_unary(req, move |r| {
                let inner = Arc::clone(&inner);
                async move { inner.vote(r).await }
            }),
            RESULTS => super::serve_unary(req, move |r| {
                let inner = Arc::clone(&inner);
                async move { inner.results(r).await }
            }),
            path => super::unimplemented(path),
        }
    }
}

// === impl VotingServiceClient ===

impl VotingServiceClient {
    /// A client over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// `Vote`.
    pub async fn vote(
        &mut self,
        req: impl tonic::IntoRequest<VoteRequest>,
    ) -> Result<Response<VoteResponse>, Status> {
        super::call(&mut self.inner, SERVICE, "Vote", req.into_request()).await
    }

    /// `Results`.
    pub async fn results(
        &mut self,
        req: impl tonic::IntoRequest<ResultsRequest>,
    ) -> Result<Response<ResultsResponse>, Status> {
        super::call(&mut self.inner, SERVICE, "Results", req.into_request()).await
    }
}
