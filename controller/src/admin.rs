//! The controller's admin endpoint: `/metrics` (Prometheus text), `/ready`
//! (503 until the identity service can certify), `/live`.

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A client has this long to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the process is ready, and if not, why.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A bound admin endpoint.
pub struct Admin {
    listener: TcpListener,
    addr: SocketAddr,
}

struct State {
    registry: Registry,
    ready: Readiness,
}

// === impl Admin ===

impl Admin {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Admin> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin endpoint to {addr} (--admin-addr)"))?;
        let addr = listener.local_addr()?;
        Ok(Admin { listener, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is cancelled.
    pub async fn run(self, registry: Registry, ready: Readiness, stop: CancellationToken) {
        tracing::info!(addr = %self.addr, "admin endpoint listening");
        let state = Arc::new(State { registry, ready });
        loop {
            let tcp = tokio::select! {
                res = self.listener.accept() => match res {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = stop.cancelled() => return,
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.handle(&req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    }
}

// === impl State ===

impl State {
    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut body = String::new();
                if let Err(e) =
                    prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry)
                {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
                }
                let mut rsp = Response::new(Full::new(Bytes::from(body)));
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    ),
                );
                rsp
            }
            (&Method::GET, "/ready") => match (self.ready)() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into()),
            (_, "/metrics" | "/ready" | "/live") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /ready or /live\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp
}
