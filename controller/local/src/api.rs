//! The management API: HTTP/1.1 + JSON on loopback, guarded by the admin
//! token.
//!
//! ```text
//!  POST   /api/v1/apply                      YAML/JSON documents -> {"applied": [...]}
//!  GET    /api/v1/{plural}[?namespace=ns]    {"items": [...]}
//!  GET    /api/v1/{plural}/{ns}/{name}       the document
//!  DELETE /api/v1/{plural}/{ns}/{name}       the deleted document
//!  PUT    /api/v1/pods/{ns}/{name}/status    PodStatus -> the pod
//!  POST   /api/v1/pods/{ns}/{name}/token     {"token", "identity"}: the pod's identity token
//!  GET    /api/v1/watch                      NDJSON: ADDED..., SYNCED, then changes
//!  GET    /healthz                           {"status": "ok"} (no token)
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::Store;

mod error;
mod mint;
mod routes;
mod token;

pub use self::mint::{PodToken, PodTokenMinter};
pub use self::token::{AdminToken, TOKEN_FILE, TokenError};

/// Largest accepted apply body. Manifests of thousands of services fit;
/// anything larger is more likely a mistake (a binary, a log file).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// A client has this long to send its request headers; bounds what an idle
/// or slow-loris connection costs.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// ... and this long for a body (4 MiB at a slow 150 KiB/s).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// After shutdown begins, connections have this long to finish in-flight
/// requests before they are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The management API server, bound and ready to run.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    ctx: Arc<Ctx>,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "refusing to serve the management API on {0}: not a loopback address (it accepts changes to the whole mesh; use 127.0.0.1 or [::1])"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every request handler sees.
struct Ctx {
    store: Store,
    token: AdminToken,
    /// Mints pods' identity tokens; `None` when identity is off.
    minter: Option<Arc<dyn PodTokenMinter>>,
    /// Cancelled at shutdown; ends watch streams.
    shutdown: CancellationToken,
}

// === impl ApiServer ===

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `addr`, which must be a loopback address (port 0 picks one).
    pub async fn bind(
        addr: SocketAddr,
        store: Store,
        token: AdminToken,
    ) -> Result<ApiServer, BindError> {
        if !addr.ip().is_loopback() {
            return Err(BindError::NotLoopback(addr));
        }
        let listen = |source| BindError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen)?;
        let local_addr = listener.local_addr().map_err(listen)?;
        Ok(ApiServer {
            listener,
            local_addr,
            ctx: Arc::new(Ctx {
                store,
                token,
                minter: None,
                shutdown: CancellationToken::new(),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `POST /api/v1/pods/{ns}/{name}/token` with `minter`.
    pub fn with_token_minter(mut self, minter: Arc<dyn PodTokenMinter>) -> ApiServer {
        Arc::get_mut(&mut self.ctx)
            .expect("the context is shared only once the server runs")
            .minter = Some(minter);
        self
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, ends
    /// watches, lets in-flight requests finish (within a grace period) and
    /// returns.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(addr = %self.local_addr, "management API listening");
        let tracker = TaskTracker::new();
        let ctx = self.ctx;
        loop {
            let tcp = tokio::select! {
                res = self.listener.accept() => match res {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "management API accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            tracker.spawn(serve_connection(tcp, ctx.clone()));
        }
        drop(self.listener);
        ctx.shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        tracing::info!("management API stopped");
    }
}

async fn serve_connection(tcp: TcpStream, ctx: Arc<Ctx>) {
    let shutdown = ctx.shutdown.clone();
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tcp), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "management API connection failed");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut bytes = serde_json::to_vec(body).expect("JSON values always serialize");
    bytes.push(b'\n');
    let mut rsp = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

#[cfg(test)]
mod tests;
