//! One HTTP/1 GET on a fresh connection, bounded in time and size: what
//! both the scraper and the Prometheus client need.
//!
//! The connection is driven inside the request's future rather than
//! spawned, so a timeout drops the socket too: a peer that accepts and
//! never answers leaves nothing behind.

use std::pin::pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An answer read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("no answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the body is over the {0}-byte limit")]
    TooLarge(usize),
    #[error("{}", chain(.0))]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
}

/// `GET path_and_query` from `authority` (`host:port`, also the `Host`
/// header), connect, headers and body within `timeout`, the body at most
/// `max_body` bytes.
pub(crate) async fn get(
    authority: &str,
    path_and_query: &str,
    accept: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Response, HttpError> {
    tokio::time::timeout(
        timeout,
        exchange(authority, path_and_query, accept, max_body),
    )
    .await
    .map_err(|_| HttpError::Timeout(timeout))?
}

async fn exchange(
    authority: &str,
    path_and_query: &str,
    accept: &str,
    max_body: usize,
) -> Result<Response, HttpError> {
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(HttpError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let req = Request::get(path_and_query)
        .header(header::HOST, authority)
        .header(header::ACCEPT, accept)
        .header(header::USER_AGENT, "strand-viz")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let read = async move {
        let rsp = sender.send_request(req).await?;
        let status = rsp.status();
        let declared = rsp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body as u64) {
            return Err(HttpError::TooLarge(max_body));
        }
        let mut body = rsp.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if buf.len() + data.len() > max_body {
                    return Err(HttpError::TooLarge(max_body));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Response {
            status,
            body: buf.freeze(),
        })
    };
    let mut conn = pin!(conn);
    let mut read = pin!(read);
    tokio::select! {
        r = &mut read => r,
        // The connection ended first (the peer closed it, or it failed):
        // the request sees the same end and reports it.
        _ = &mut conn => read.await,
    }
}

/// An error and its causes: hyper's own `Display` says only "error
/// sending request" and keeps the reason in `source()`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
