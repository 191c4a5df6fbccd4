//! `strand-demo voting`: counts votes in memory, served as
//! `emojivoto.v1.VotingService`. Votes for one emoji fail on purpose, as
//! emojivoto's do for `:doughnut:`, so the mesh has errors to show.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::api::voting::{
    ResultsRequest, ResultsResponse, VoteRequest, VoteResponse, VotingResult, VotingService,
    VotingServiceServer,
};
use crate::{Error, Shutdown};

/// The emoji whose votes fail unless `--fail-shortcode` says otherwise:
/// emojivoto's.
pub const DEFAULT_FAIL_SHORTCODE: &str = ":doughnut:";

/// `strand-demo voting` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct VotingArgs {
    /// Address to serve gRPC (h2c) on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Every vote for this emoji fails with gRPC status UNKNOWN "ERROR", so
    /// the mesh's metrics show failures; an empty value makes every vote
    /// succeed.
    #[arg(long, default_value = DEFAULT_FAIL_SHORTCODE, value_name = "SHORTCODE")]
    pub fail_shortcode: String,
}

/// [`VotingService`] with an in-memory tally.
#[derive(Debug, Default)]
pub struct Poll {
    /// Votes never counted; none if empty.
    fail_shortcode: Option<String>,
    /// Votes by shortcode, kept as `u64` and reported saturated to `int32`.
    votes: Mutex<HashMap<String, u64>>,
}

/// Serves the voting service on `listener` until `shutdown`; votes for
/// `fail_shortcode` (if any) fail.
pub async fn serve(
    listener: TcpListener,
    fail_shortcode: Option<String>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    tracing::info!(
        addr = %listener.local_addr()?,
        fail_shortcode = fail_shortcode.as_deref().unwrap_or(""),
        "voting service listening"
    );
    let svc = VotingServiceServer::new(Poll::new(fail_shortcode));
    crate::serve::grpc(listener, shutdown, svc).await
}

// === impl VotingArgs ===

impl VotingArgs {
    /// `--fail-shortcode`, `None` when empty.
    pub fn fail_shortcode(&self) -> Option<String> {
        Some(self.fail_shortcode.clone()).filter(|s| !s.is_empty())
    }
}

// === impl Poll ===

impl Poll {
    /// An empty tally; votes for `fail_shortcode` (if any) fail.
    pub fn new(fail_shortcode: Option<String>) -> Self {
        Self {
            fail_shortcode: fail_shortcode.filter(|s| !s.is_empty()),
            votes: Mutex::default(),
        }
    }

    fn count(&self, shortcode: String) {
        let mut votes = self.votes.lock().unwrap_or_else(|e| e.into_inner());
        *votes.entry(shortcode).or_default() += 1;
    }

    /// Every emoji voted for, most votes first, ties by shortcode.
    fn tally(&self) -> Vec<VotingResult> {
        let votes = self.votes.lock().unwrap_or_else(|e| e.into_inner());
        let mut results: Vec<VotingResult> = votes
            .iter()
            .map(|(shortcode, &n)| VotingResult {
                shortcode: shortcode.clone(),
                votes: i32::try_from(n).unwrap_or(i32::MAX),
            })
            .collect();
        drop(votes);
        results.sort_by(|a, b| {
            b.votes
                .cmp(&a.votes)
                .then_with(|| a.shortcode.cmp(&b.shortcode))
        });
        results
    }
}

#[tonic::async_trait]
impl VotingService for Poll {
    async fn vote(&self, req: Request<VoteRequest>) -> Result<Response<VoteResponse>, Status> {
        let shortcode = req.into_inner().shortcode;
        if shortcode.is_empty() {
            return Err(Status::invalid_argument("a vote needs a shortcode"));
        }
        if self.fail_shortcode.as_deref() == Some(shortcode.as_str()) {
            tracing::info!(%shortcode, "failing the vote on purpose");
            // emojivoto answers `fmt.Errorf("ERROR")`, which grpc-go sends
            // as UNKNOWN.
            return Err(Status::unknown("ERROR"));
        }
        tracing::debug!(%shortcode, "vote");
        self.count(shortcode);
        Ok(Response::new(VoteResponse {}))
    }

    async fn results(
        &self,
        _: Request<ResultsRequest>,
    ) -> Result<Response<ResultsResponse>, Status> {
        Ok(Response::new(ResultsResponse {
            results: self.tally(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn vote(poll: &Poll, shortcode: &str) -> Result<(), Status> {
        poll.vote(Request::new(VoteRequest {
            shortcode: shortcode.to_string(),
        }))
        .await
        .map(drop)
    }

    #[tokio::test]
    async fn counts_and_fails() {
        let poll = Poll::new(Some(":doughnut:".to_string()));
        for s in [":joy:", ":taco:", ":joy:", ":fire:"] {
            vote(&poll, s).await.unwrap();
        }
        let err = vote(&poll, ":doughnut:").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert_eq!(err.message(), "ERROR");
        let err = vote(&poll, "").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        let results = poll
            .results(Request::new(ResultsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .results;
        let got: Vec<(&str, i32)> = results
            .iter()
            .map(|r| (r.shortcode.as_str(), r.votes))
            .collect();
        assert_eq!(got, [(":joy:", 2), (":fire:", 1), (":taco:", 1)]);
    }

    #[tokio::test]
    async fn empty_fail_shortcode_fails_nothing() {
        let poll = Poll::new(Some(String::new()));
        vote(&poll, ":doughnut:").await.unwrap();
        assert_eq!(poll.tally().len(), 1);
    }
}
