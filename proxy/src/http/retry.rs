//! What a route rule's retries need: a body that can be sent again, the
//! request rebuilt for each attempt, and each attempt bounded by the
//! per-try timeout and what is left of the route's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::{RequestBody, UpstreamBody};
use crate::errors::ProxyError;

/// A request body, read in full when it may be sent again.
pub enum Replay {
    /// The body and its trailers, kept for every attempt.
    Buffered(Bytes, Option<HeaderMap>),
    /// Too long (or not ended in time) to keep: the request is sent once.
    Streaming(RequestBody),
}

/// How an attempt failed.
pub enum Failed {
    /// The per-try timeout passed: another attempt may do better.
    Try(ProxyError),
    /// The route's timeout passed: no time is left for another.
    Route(ProxyError),
    /// Sending failed (the proxy's own retries of connection failures
    /// already happened).
    Send(ProxyError),
}

impl Failed {
    pub fn into_error(self) -> ProxyError {
        match self {
            Failed::Try(e) | Failed::Route(e) | Failed::Send(e) => e,
        }
    }
}

/// How long a body of unknown length (HTTP/2 without `content-length`, as
/// gRPC sends, or chunked) may take to end within `max` bytes and be kept
/// for retries; past it, it is streamed once. Long enough for a unary gRPC
/// call's message, short enough that a streaming call (whose client waits
/// for an answer before sending more) only starts this much later.
const UNKNOWN_LENGTH_WAIT: Duration = Duration::from_millis(100);

/// Reads `body` in full when it is at most `max` bytes: at once when its
/// length is known, else when it ends within [`UNKNOWN_LENGTH_WAIT`]
/// (an empty body always is). Otherwise hands it back, with what was read
/// of it sent first.
pub async fn replayable(body: RequestBody, max: u32) -> Result<Replay, ProxyError> {
    if body.is_end_stream() {
        return Ok(Replay::Buffered(Bytes::new(), None));
    }
    match body.size_hint().upper() {
        Some(n) if n <= u64::from(max) => {
            let collected = body.collect().await.map_err(ProxyError::ClientBody)?;
            let trailers = collected.trailers().cloned();
            return Ok(Replay::Buffered(collected.to_bytes(), trailers));
        }
        Some(_) => return Ok(Replay::Streaming(body)),
        None => {}
    }
    let RequestBody::Streaming(mut rest) = body else {
        return Ok(Replay::Streaming(body));
    };
    let mut data = bytes::BytesMut::new();
    let deadline = Instant::now() + UNKNOWN_LENGTH_WAIT;
    let prefixed = |data: bytes::BytesMut, rest| {
        Replay::Streaming(RequestBody::Prefixed {
            prefix: (!data.is_empty()).then(|| data.freeze()),
            rest,
        })
    };
    loop {
        let frame = match tokio::time::timeout_at(deadline, rest.frame()).await {
            Err(_) => return Ok(prefixed(data, rest)),
            Ok(None) => return Ok(Replay::Buffered(data.freeze(), None)),
            Ok(Some(frame)) => frame.map_err(ProxyError::ClientBody)?,
        };
        match frame.into_data() {
            Ok(chunk) => {
                data.extend_from_slice(&chunk);
                if data.len() > max as usize {
                    return Ok(prefixed(data, rest));
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(Replay::Buffered(data.freeze(), Some(trailers)));
                }
            }
        }
    }
}

/// A new request with `head`'s method, URI, version and headers.
pub fn rebuild(head: &http::request::Parts, body: RequestBody) -> Request<RequestBody> {
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req
}

/// Runs one attempt within the per-try timeout and the route's deadline
/// (`(when, the route's timeout)`), whichever comes first.
pub async fn within(
    attempt: impl Future<Output = Result<Response<UpstreamBody>, ProxyError>>,
    per_try: Option<Duration>,
    deadline: Option<(Instant, Duration)>,
    route: &Arc<str>,
) -> Result<Response<UpstreamBody>, Failed> {
    let now = Instant::now();
    let try_end = per_try.map(|t| (now + t, t));
    // The earlier of the two ends, and whether it is the route's.
    let end = match (try_end, deadline) {
        (Some(t), Some(d)) if d.0 <= t.0 => Some((d, true)),
        (Some(t), _) => Some((t, false)),
        (None, Some(d)) => Some((d, true)),
        (None, None) => None,
    };
    let Some(((at, timeout), is_route)) = end else {
        return attempt.await.map_err(Failed::Send);
    };
    match tokio::time::timeout_at(at, attempt).await {
        Ok(res) => res.map_err(Failed::Send),
        Err(_) => {
            let e = ProxyError::RouteTimeout {
                timeout,
                route: route.clone(),
            };
            Err(if is_route {
                Failed::Route(e)
            } else {
                Failed::Try(e)
            })
        }
    }
}
