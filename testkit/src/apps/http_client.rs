//! `strand-testapp http-client`: sends requests over one kept-alive
//! connection and accounts for every byte, which curl cannot do when a test
//! needs to prove that a proxy reused a connection or streamed a large body.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;

use super::{Deadline, filler, millis_since};

/// `strand-testapp http-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpClientArgs {
    /// `http://HOST:PORT/PATH?QUERY` to request.
    #[arg(long)]
    pub url: Uri,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: Method,
    /// Speak HTTP/2 without negotiation instead of HTTP/1.1.
    #[arg(long)]
    pub http2_prior_knowledge: bool,
    /// Number of requests, sent one after another on the same connection.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Send a request body of this many bytes, streamed in 64 KiB chunks.
    #[arg(long)]
    pub body_bytes: Option<u64>,
    /// Omit `content-length` from the body (HTTP/1.1 then uses chunked
    /// transfer encoding).
    #[arg(long, requires = "body_bytes")]
    pub chunked: bool,
    /// Extra request header, `NAME: VALUE` (repeatable); `host` replaces the
    /// URL's authority.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Status every response must have (default: any 2xx).
    #[arg(long)]
    pub expect_status: Option<u16>,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// What `http-client` prints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpClientSummary {
    /// Responses with the expected status.
    pub ok: u32,
    /// Response count by status code.
    pub statuses: BTreeMap<u16, u32>,
    /// Response count by `x-served-by` header (which backend answered).
    pub served_by: BTreeMap<String, u32>,
    /// Always 1: every request goes over one connection or the run fails.
    pub connections: u32,
    /// HTTP version of the last response (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
    /// Request body bytes sent, over all requests.
    pub bytes_sent: u64,
    /// Response body bytes received, over all requests.
    pub bytes_received: u64,
    /// The first 4 KiB of the last response body.
    pub last_body: String,
    /// Wall time of the whole run, in milliseconds.
    pub elapsed_ms: u64,
}

type ReqBody = BoxBody<Bytes, Infallible>;

enum Sender {
    Http1(http1::SendRequest<ReqBody>),
    Http2(http2::SendRequest<ReqBody>),
}

/// How much of a response body the summary keeps.
const KEEP_BODY: usize = 4096;

/// Runs the requests and returns the summary; an error if any request
/// failed or a status was unexpected.
pub async fn run(args: &HttpClientArgs) -> anyhow::Result<HttpClientSummary> {
    args.deadline.run("http-client", requests(args)).await
}

async fn requests(args: &HttpClientArgs) -> anyhow::Result<HttpClientSummary> {
    let start = Instant::now();
    if args.url.scheme_str() != Some("http") {
        bail!("--url {}: only http:// URLs are supported", args.url);
    }
    let authority = args.url.authority().context("--url has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let extra = parse_headers(&args.headers)?;
    // `http::uri::Authority::host` keeps an IPv6 literal's brackets.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let _ = tcp.set_nodelay(true);
    let mut sender = Sender::handshake(tcp, args.http2_prior_knowledge).await?;

    let mut summary = HttpClientSummary {
        connections: 1,
        ..Default::default()
    };
    for i in 0..args.count {
        let req = build_request(args, &authority, &extra)?;
        let rsp = sender.send(req).await.with_context(|| {
            format!("request {} of {} on the same connection", i + 1, args.count)
        })?;
        summary.bytes_sent += args.body_bytes.unwrap_or(0);
        summary.record(rsp, args.expect_status).await?;
    }
    summary.elapsed_ms = millis_since(start);
    if summary.ok != args.count {
        let expected = args
            .expect_status
            .map_or("2xx".to_string(), |s| s.to_string());
        bail!(
            "{} of {} responses had status {expected}: {}",
            summary.ok,
            args.count,
            serde_json::to_string(&summary)?
        );
    }
    Ok(summary)
}

fn build_request(
    args: &HttpClientArgs,
    authority: &http::uri::Authority,
    extra: &[(HeaderName, HeaderValue)],
) -> anyhow::Result<Request<ReqBody>> {
    let host_override = extra
        .iter()
        .find(|(n, _)| n == HOST)
        .map(|(_, v)| v.clone());
    let path = args.url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder().method(args.method.clone());
    req = if args.http2_prior_knowledge {
        // HTTP/2 carries the authority in the URI (`:authority`).
        let host = match &host_override {
            Some(h) => h.to_str().context("host header is not ASCII")?.to_string(),
            None => authority.to_string(),
        };
        req.uri(format!("http://{host}{path}"))
    } else {
        req.uri(path).header(
            HOST,
            host_override.unwrap_or(HeaderValue::from_str(authority.as_str())?),
        )
    };
    for (name, value) in extra.iter().filter(|(n, _)| n != HOST) {
        req = req.header(name, value);
    }
    let body = match args.body_bytes {
        Some(n) => {
            if !args.chunked {
                req = req.header(CONTENT_LENGTH, n);
            }
            let frames = filler(n).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
            BoxBody::new(StreamBody::new(frames))
        }
        None => BoxBody::new(Empty::new()),
    };
    Ok(req.body(body)?)
}

fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?} is not NAME: VALUE"))?;
            Ok((
                HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("--header {h:?}: bad name"))?,
                HeaderValue::from_str(value.trim())
                    .with_context(|| format!("--header {h:?}: bad value"))?,
            ))
        })
        .collect()
}

// === impl Sender ===

impl Sender {
    async fn handshake(tcp: TcpStream, http2: bool) -> anyhow::Result<Sender> {
        let io = TokioIo::new(tcp);
        if http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(Sender::Http2(sender))
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Sender::Http1(sender))
        }
    }

    async fn send(&mut self, req: Request<ReqBody>) -> hyper::Result<Response<Incoming>> {
        match self {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

// === impl HttpClientSummary ===

impl HttpClientSummary {
    /// Counts a response and reads its body to the end.
    async fn record(&mut self, rsp: Response<Incoming>, expect: Option<u16>) -> anyhow::Result<()> {
        let status = rsp.status();
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        if expect.map_or(status.is_success(), |e| e == status.as_u16()) {
            self.ok += 1;
        }
        if let Some(by) = rsp.headers().get("x-served-by") {
            let by = String::from_utf8_lossy(by.as_bytes()).into_owned();
            *self.served_by.entry(by).or_default() += 1;
        }
        self.version = format!("{:?}", rsp.version());
        let mut body = rsp.into_body();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the response body")?;
            if let Some(data) = frame.data_ref() {
                self.bytes_received += data.len() as u64;
                let room = KEEP_BODY.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        self.last_body = String::from_utf8_lossy(&kept).into_owned();
        Ok(())
    }
}
