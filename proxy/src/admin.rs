//! The admin server: `/metrics`, `/ready`, `/live`, and `POST /shutdown`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Shared state of the admin endpoints.
#[derive(Debug)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    /// Cancelled to begin a graceful shutdown.
    pub shutdown: CancellationToken,
    /// Not ready until it holds a certificate.
    pub identity: Option<Arc<crate::identity::LocalIdentity>>,
}

/// Serves admin requests until `stop` fires.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    while let Some((tcp, peer)) = next_conn(&listener, &stop, "admin").await {
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req, peer)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// The next connection on one of the proxy's own servers (admin, tap), or
/// `None` once `stop` fires. Accept errors (EMFILE, say) are logged and
/// retried after a pause.
pub(crate) async fn next_conn(
    listener: &TcpListener,
    stop: &CancellationToken,
    server: &str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!(error = %e, "{server} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            () = stop.cancelled() => return None,
        }
    }
}

// === impl Admin ===

impl Admin {
    fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let body = self.metrics.encode();
                let mut rsp = Response::new(Full::new(Bytes::from(body)));
                rsp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    ),
                );
                rsp
            }
            (&Method::GET, "/ready") => {
                if self.shutdown.is_cancelled() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else if self.identity.as_ref().is_some_and(|i| !i.is_ready()) {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no identity certificate yet\n",
                    )
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::POST, "/shutdown") => {
                // Only processes in the pod may stop its proxy.
                if !crate::orig_dst::unmap(peer).ip().is_loopback() {
                    return text(
                        StatusCode::FORBIDDEN,
                        "shutdown is only accepted from localhost\n",
                    );
                }
                tracing::info!("shutdown requested through the admin server");
                self.shutdown.cancel();
                text(StatusCode::OK, "shutdown\n")
            }
            (_, "/metrics" | "/ready" | "/live" | "/shutdown") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /ready, /live or POST /shutdown\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *rsp.status_mut() = status;
    rsp
}
