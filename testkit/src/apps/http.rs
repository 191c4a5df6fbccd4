//! `strand-testapp http`: an HTTP/1.1 and HTTP/2 (prior knowledge) server on
//! one port, with routes that exercise what a proxy must get right:
//! streaming both ways, exact byte counts, status codes, slow responses and
//! which headers arrive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::{accept, bind_and_announce, filler};

/// `strand-testapp http` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Name used in `GET /` and in the `x-served-by` header of every response.
    #[arg(long, env = "POD_NAME", default_value = "testapp")]
    pub name: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

struct Server {
    name: String,
    served_by: HeaderValue,
    /// Requests to `/flaky` so far.
    flaky: std::sync::atomic::AtomicU64,
}

/// Binds, announces and serves until killed.
pub async fn main(args: HttpArgs) -> anyhow::Result<()> {
    let listener = bind_and_announce(args.listen).await?;
    serve(listener, args.name).await
}

/// Serves HTTP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: String) -> anyhow::Result<()> {
    let served_by = HeaderValue::from_str(&name)
        .map_err(|_| anyhow::anyhow!("--name {name:?} is not a valid header value"))?;
    let server = Arc::new(Server {
        name,
        served_by,
        flaky: Default::default(),
    });
    loop {
        let (stream, peer) = accept(&listener).await;
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let conn = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = conn.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

// === impl Server ===

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let mut rsp = self.route(req).await;
        rsp.headers_mut()
            .insert("x-served-by", self.served_by.clone());
        rsp
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/") => text(StatusCode::OK, format!("hello from {}\n", self.name)),
            // The request body streams straight back: nothing is buffered.
            (Method::POST, "/echo") => {
                Response::new(req.into_body().map_err(BoxError::from).boxed())
            }
            (Method::POST, "/sink") => sink(req.into_body()).await,
            // Every other request fails: the first 503, the second 200
            // with the body's size, and so on (for retries).
            (_, "/flaky") => {
                let n = self
                    .flaky
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let rsp = sink(req.into_body()).await;
                if n.is_multiple_of(2) {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("request {n} fails\n"),
                    )
                } else {
                    rsp
                }
            }
            (Method::GET, "/bytes") => match query_u64(req.uri(), "n") {
                Some(n) => bytes(n),
                None => text(StatusCode::BAD_REQUEST, "expected ?n=BYTES\n".into()),
            },
            (Method::GET, "/delay") => match query_u64(req.uri(), "ms") {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    text(StatusCode::OK, format!("delayed {ms} ms\n"))
                }
                None => text(
                    StatusCode::BAD_REQUEST,
                    "expected ?ms=MILLISECONDS\n".into(),
                ),
            },
            (Method::GET, "/headers") => json(&headers_json(req.headers())),
            (Method::GET, "/info") => json(&serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "version": format!("{:?}", req.version()),
                "served_by": self.name,
                "headers": headers_json(req.headers()),
            })),
            (Method::GET, p) if p.starts_with("/status/") => {
                match p["/status/".len()..]
                    .parse()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    Some(status) => empty(status),
                    None => text(StatusCode::BAD_REQUEST, "expected /status/CODE\n".into()),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// Reads the body frame by frame, counting, and replies `{"bytes":N}`.
async fn sink(mut body: Incoming) -> Response<Body> {
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => n += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading body: {e}\n")),
        }
    }
    json(&serde_json::json!({ "bytes": n }))
}

/// Streams `n` bytes with an exact `content-length`.
fn bytes(n: u64) -> Response<Body> {
    let frames = filler(n).map(|chunk| Ok::<_, BoxError>(Frame::data(chunk)));
    let mut rsp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    rsp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(n));
    rsp
}

/// Header name to value, repeated headers joined with ", ".
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_string(), values.join(", ").into());
    }
    serde_json::Value::Object(map)
}

fn query_u64(uri: &Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut rsp = Response::new(full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut rsp = Response::new(full(format!("{value}\n")));
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    rsp
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut rsp = Response::new(full(Bytes::new()));
    *rsp.status_mut() = status;
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values() {
        let uri: Uri = "/bytes?x=1&n=42".parse().expect("valid uri");
        assert_eq!(query_u64(&uri, "n"), Some(42));
        assert_eq!(query_u64(&uri, "m"), None);
        let uri: Uri = "/bytes".parse().expect("valid uri");
        assert_eq!(query_u64(&uri, "n"), None);
    }
}
