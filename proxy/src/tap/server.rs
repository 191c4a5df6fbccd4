//! The tap server on the control port: mTLS with the proxy's certificate,
//! and only the tap service's identity may open a tap.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use linkerd2_proxy_api::tap::{self as api, observe_request::extract};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::{Event, Matcher, Registration, Taps};
use crate::identity::LocalIdentity;

/// How long a tap client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `Tap/Observe` on `listener` until `stop` fires: mTLS with this
/// proxy's certificate; a client whose certificate does not name `client`
/// (the tap service's identity) is refused.
pub async fn serve(
    listener: TcpListener,
    identity: Arc<LocalIdentity>,
    client: Arc<str>,
    taps: Arc<Taps>,
    stop: CancellationToken,
) {
    let svc = api::tap_server::TapServer::new(TapService { taps });
    while let Some((tcp, peer)) = crate::admin::next_conn(&listener, &stop, "tap").await {
        let (identity, client, svc, stop) =
            (identity.clone(), client.clone(), svc.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(reason) = serve_conn(tcp, &identity, &client, svc, stop).await {
                tracing::warn!(%peer, "tap connection refused: {reason}");
            }
        });
    }
}

async fn serve_conn(
    tcp: TcpStream,
    identity: &LocalIdentity,
    client: &str,
    svc: api::tap_server::TapServer<TapService>,
    stop: CancellationToken,
) -> Result<(), String> {
    if !identity.is_ready() {
        return Err("this proxy has no certificate yet".to_string());
    }
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().clone());
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake not completed in time".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    match crate::identity::peer_identity(tls.get_ref().1.peer_certificates()) {
        Some(id) if *id == *client => {}
        Some(id) => {
            return Err(format!(
                "client identity {id} is not the tap service's ({client})"
            ));
        }
        None => {
            return Err(format!(
                "the client presented no certificate (the tap service's identity, {client}, is required)"
            ));
        }
    }
    let handle = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut svc = svc.clone();
        async move {
            std::future::poll_fn(|cx| {
                Service::<http::Request<hyper::body::Incoming>>::poll_ready(&mut svc, cx)
            })
            .await?;
            svc.call(req).await
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls), handle);
    crate::http::drive(conn, stop, |c| c.graceful_shutdown())
        .await
        .map_err(|e| format!("{}: {}", e.reason, e.error))
}

/// `Tap/Observe` over the proxy's [`Taps`].
#[derive(Debug)]
struct TapService {
    taps: Arc<Taps>,
}

#[tonic::async_trait]
impl api::tap_server::Tap for TapService {
    type ObserveStream = EventStream;

    async fn observe(
        &self,
        req: tonic::Request<api::ObserveRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let req = req.into_inner();
        if req.limit == 0 {
            return Err(tonic::Status::invalid_argument(
                "limit must be at least 1 (the number of requests to tap)",
            ));
        }
        let matcher = Matcher::compile(req.r#match.as_ref())
            .map_err(|e| tonic::Status::invalid_argument(format!("invalid match: {e}")))?;
        let headers = matches!(
            req.extract.and_then(|e| e.extract),
            Some(extract::Extract::Http(extract::Http {
                extract: Some(extract::http::Extract::Headers(_))
            }))
        );
        tracing::info!(limit = req.limit, headers, "tap opened");
        let (registration, rx) = self.taps.register(matcher, headers, req.limit);
        Ok(tonic::Response::new(EventStream {
            rx,
            _registration: registration,
        }))
    }
}

/// A tap's events, until its limit is reached and its requests are done;
/// dropping it (the client went away) closes the tap.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    _registration: Registration,
}

impl futures_util::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
