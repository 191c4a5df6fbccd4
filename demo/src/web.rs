//! `strand-demo web`: the HTTP/1 front end. It serves a page and a small
//! JSON API, each call of which becomes gRPC calls to emoji and voting:
//!
//! ```text
//! GET /api/list         ─▶ emoji.ListAll
//! GET /api/vote?choice= ─▶ emoji.FindByShortcode, then voting.Vote
//! GET /api/leaderboard  ─▶ voting.Results + emoji.ListAll
//! ```
//!
//! The gRPC channels connect lazily, so web starts (and answers `/` and
//! `/healthz`) before its dependencies resolve; a failed dependency fails
//! that one request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::api::emoji::{EmojiServiceClient, FindByShortcodeRequest, ListAllEmojiRequest};
use crate::api::voting::{ResultsRequest, VoteRequest, VotingServiceClient};
use crate::{Error, ServiceAddr, Shutdown};

mod query;

/// `strand-demo web` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct WebArgs {
    /// Address to serve HTTP/1.1 on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The emoji service, HOST:PORT; the name is resolved on every
    /// connection attempt.
    #[arg(
        long,
        default_value = "emoji-svc.emojivoto:8080",
        value_name = "HOST:PORT"
    )]
    pub emoji_addr: ServiceAddr,
    /// The voting service, HOST:PORT; the name is resolved on every
    /// connection attempt.
    #[arg(
        long,
        default_value = "voting-svc.emojivoto:8080",
        value_name = "HOST:PORT"
    )]
    pub voting_addr: ServiceAddr,
}

/// An emoji as `/api/list` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmojiJson {
    /// Such as ":doughnut:".
    pub shortcode: String,
    /// Such as "🍩".
    pub unicode: String,
}

/// A row of `/api/leaderboard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    /// Such as ":doughnut:".
    pub shortcode: String,
    /// Such as "🍩"; empty if the emoji service does not know the
    /// shortcode.
    pub unicode: String,
    /// Votes counted.
    pub votes: i32,
}

/// The page at `/`: self-contained, it uses the JSON API through `fetch`.
pub const INDEX_HTML: &str = include_str!("web/index.html");

/// Why an API request failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("missing query parameter {0:?}")]
    MissingParam(&'static str),
    #[error("unknown emoji {0:?}")]
    UnknownEmoji(String),
    #[error("{service} call failed: {}", describe(.status))]
    Upstream {
        service: &'static str,
        status: tonic::Status,
    },
}

/// The front end's state: a client per dependency.
#[derive(Clone, Debug)]
struct Web {
    emoji: EmojiServiceClient,
    voting: VotingServiceClient,
}

/// Serves web on `listener` until `shutdown`, calling emoji at `emoji_addr`
/// and voting at `voting_addr`.
pub async fn serve(
    listener: TcpListener,
    emoji_addr: &ServiceAddr,
    voting_addr: &ServiceAddr,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let web = Arc::new(Web {
        emoji: EmojiServiceClient::new(crate::api::lazy_channel(emoji_addr)?),
        voting: VotingServiceClient::new(crate::api::lazy_channel(voting_addr)?),
    });
    tracing::info!(
        addr = %listener.local_addr()?,
        emoji = %emoji_addr,
        voting = %voting_addr,
        "web listening"
    );
    crate::serve::http1(listener, shutdown, move |req| {
        let web = Arc::clone(&web);
        async move { web.handle(req).await }
    })
    .await
}

// === impl Web ===

impl Web {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return error_json(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
        }
        let query = req.uri().query().unwrap_or("");
        let trace = Trace::of(&req);
        let result = match req.uri().path() {
            "/" => return html(INDEX_HTML),
            "/healthz" => return text(StatusCode::OK, "ok\n"),
            "/api/list" => self
                .list(&trace)
                .await
                .map(|list| json(StatusCode::OK, &list)),
            "/api/vote" => self
                .vote(query::param(query, "choice"), &trace)
                .await
                .map(|()| json(StatusCode::OK, &serde_json::json!({ "ok": true }))),
            "/api/leaderboard" => self
                .leaderboard(&trace)
                .await
                .map(|board| json(StatusCode::OK, &board)),
            _ => return error_json(StatusCode::NOT_FOUND, "not found"),
        };
        result.unwrap_or_else(|e| {
            let status = e.http_status();
            if status.is_server_error() {
                tracing::warn!(uri = %req.uri(), "{e}");
            } else {
                tracing::debug!(uri = %req.uri(), "{e}");
            }
            error_json(status, &e.to_string())
        })
    }

    async fn list(&self, trace: &Trace) -> Result<Vec<EmojiJson>, ApiError> {
        let rsp = self
            .emoji
            .clone()
            .list_all(trace.request(ListAllEmojiRequest {}))
            .await
            .map_err(|status| ApiError::upstream("emoji", status))?;
        Ok(rsp
            .into_inner()
            .list
            .into_iter()
            .map(|e| EmojiJson {
                shortcode: e.shortcode,
                unicode: e.unicode,
            })
            .collect())
    }

    async fn vote(&self, choice: Option<String>, trace: &Trace) -> Result<(), ApiError> {
        let shortcode = choice
            .filter(|c| !c.is_empty())
            .ok_or(ApiError::MissingParam("choice"))?;
        let found = self
            .emoji
            .clone()
            .find_by_shortcode(trace.request(FindByShortcodeRequest {
                shortcode: shortcode.clone(),
            }))
            .await
            .map_err(|status| ApiError::upstream("emoji", status))?;
        if found.into_inner().emoji.is_none() {
            return Err(ApiError::UnknownEmoji(shortcode));
        }
        self.voting
            .clone()
            .vote(trace.request(VoteRequest { shortcode }))
            .await
            .map_err(|status| ApiError::upstream("voting", status))?;
        Ok(())
    }

    async fn leaderboard(&self, trace: &Trace) -> Result<Vec<LeaderboardEntry>, ApiError> {
        let mut voting = self.voting.clone();
        let (results, list) = tokio::join!(
            voting.results(trace.request(ResultsRequest {})),
            self.list(trace)
        );
        let results = results.map_err(|status| ApiError::upstream("voting", status))?;
        let unicode: HashMap<String, String> = list?
            .into_iter()
            .map(|e| (e.shortcode, e.unicode))
            .collect();
        Ok(leaderboard(
            results
                .into_inner()
                .results
                .into_iter()
                .map(|r| (r.shortcode, r.votes)),
            &unicode,
        ))
    }
}

/// A request's trace context (W3C `traceparent` and `tracestate`), passed
/// on to the calls made while answering it, so that a trace follows the
/// request through emoji and voting. The mesh's proxy in front of web has
/// already named its own span as the parent.
#[derive(Debug, Default)]
struct Trace {
    headers: Vec<(
        &'static str,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    )>,
}

impl Trace {
    fn of<B>(req: &Request<B>) -> Trace {
        let headers = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| {
                let value = req.headers().get(name)?.to_str().ok()?.parse().ok()?;
                Some((name, value))
            })
            .collect();
        Trace { headers }
    }

    /// `msg` as a gRPC request carrying the context.
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        for (name, value) in &self.headers {
            req.metadata_mut().insert(*name, value.clone());
        }
        req
    }
}

/// Joins vote counts with their emoji; most votes first, ties by shortcode.
fn leaderboard(
    votes: impl IntoIterator<Item = (String, i32)>,
    unicode: &HashMap<String, String>,
) -> Vec<LeaderboardEntry> {
    let mut board: Vec<LeaderboardEntry> = votes
        .into_iter()
        .map(|(shortcode, votes)| LeaderboardEntry {
            unicode: unicode.get(&shortcode).cloned().unwrap_or_default(),
            shortcode,
            votes,
        })
        .collect();
    board.sort_by(|a, b| {
        b.votes
            .cmp(&a.votes)
            .then_with(|| a.shortcode.cmp(&b.shortcode))
    });
    board
}

/// `Code: message`, then the root cause a transport error carries: the
/// message alone says "tcp connect error" but not why, and the layers in
/// between repeat it.
fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let mut root = None;
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        root = Some(cause);
        source = cause.source();
    }
    if let Some(root) = root
        .map(|r| r.to_string())
        .filter(|r| *r != status.message())
    {
        out.push_str(": ");
        out.push_str(&root);
    }
    out
}

// === impl ApiError ===

impl ApiError {
    fn upstream(service: &'static str, status: tonic::Status) -> Self {
        Self::Upstream { service, status }
    }

    /// Client mistakes are 4xx; any failed call to a dependency is a 500,
    /// as in emojivoto, whatever its gRPC status.
    fn http_status(&self) -> StatusCode {
        match self {
            Self::MissingParam(_) => StatusCode::BAD_REQUEST,
            Self::UnknownEmoji(_) => StatusCode::NOT_FOUND,
            Self::Upstream { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    let headers = rsp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body.into()),
        Err(e) => {
            tracing::error!("encoding JSON: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "encoding JSON failed\n")
        }
    }
}

fn error_json(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_context_goes_on_to_grpc_calls() {
        let req = Request::get("/api/list")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("tracestate", "strand=1")
            .body(())
            .unwrap();
        let call = Trace::of(&req).request(ListAllEmojiRequest {});
        assert_eq!(
            call.metadata().get("traceparent").unwrap(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(call.metadata().get("tracestate").unwrap(), "strand=1");
        let bare = Trace::of(&Request::get("/").body(()).unwrap()).request(ListAllEmojiRequest {});
        assert!(bare.metadata().get("traceparent").is_none());
    }

    #[test]
    fn leaderboard_joins_and_sorts() {
        let unicode: HashMap<String, String> = [(":joy:", "😂"), (":taco:", "🌮")]
            .into_iter()
            .map(|(s, u)| (s.to_string(), u.to_string()))
            .collect();
        let board = leaderboard(
            [(":taco:", 3), (":zzz:", 5), (":joy:", 3)].map(|(s, n)| (s.to_string(), n)),
            &unicode,
        );
        let got: Vec<(&str, &str, i32)> = board
            .iter()
            .map(|e| (e.shortcode.as_str(), e.unicode.as_str(), e.votes))
            .collect();
        assert_eq!(
            got,
            [(":zzz:", "", 5), (":joy:", "😂", 3), (":taco:", "🌮", 3)]
        );
    }

    #[test]
    fn error_statuses() {
        assert_eq!(
            ApiError::MissingParam("choice").http_status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::UnknownEmoji(":x:".into()).http_status(),
            StatusCode::NOT_FOUND
        );
        let e = ApiError::upstream("voting", tonic::Status::unknown("ERROR"));
        assert_eq!(e.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "voting call failed: Unknown: ERROR");
    }

    #[test]
    fn page_is_self_contained() {
        assert!(INDEX_HTML.contains("/api/list"));
        assert!(INDEX_HTML.contains("/api/vote?choice="));
        assert!(INDEX_HTML.contains("/api/leaderboard"));
        for external in ["http://", "https://", "src=\"/", "href=\"/"] {
            assert!(!INDEX_HTML.contains(external), "page refers to {external}");
        }
    }
}
