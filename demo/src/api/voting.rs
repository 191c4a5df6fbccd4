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

use tonic::codegen::{Body, BoxFuture, StdError, http};
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

/// An [`VotingService`] implementation's methods, for [`super::GrpcServer`].
#[derive(Debug)]
pub struct VotingRoutes<T>(T);

/// Serves an [`VotingService`] implementation as a tower service.
pub type VotingServiceServer<T> = super::GrpcServer<VotingRoutes<T>>;

/// A client of `emojivoto.v1.VotingService`.
#[derive(Clone, Debug)]
pub struct VotingServiceClient {
    inner: tonic::client::Grpc<Channel>,
}

// === impl VotingServiceServer ===

impl<T: VotingService> VotingServiceServer<T> {
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {
        super::GrpcServer::with_routes(VotingRoutes(inner))
    }
}

impl<T: VotingService> super::Routes for VotingRoutes<T> {
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
            VOTE => super::serve_unary(req, move |r| {
                let this = Arc::clone(&this);
                async move { this.0.vote(r).await }
            }),
            RESULTS => super::serve_unary(req, move |r| {
                let this = Arc::clone(&this);
                async move { this.0.results(r).await }
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
