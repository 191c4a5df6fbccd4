//! The accept loops every role shares: HTTP/1 for web and vote-bot's
//! `/stats`, h2c gRPC for emoji and voting. Both stop accepting when
//! [`Shutdown`] fires and give in-flight requests [`DRAIN_TIMEOUT`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::codegen::Service;

use crate::Error;
use crate::shutdown::{DRAIN_TIMEOUT, Shutdown};

/// How long to back off after a failed `accept` (out of file descriptors,
/// say) before trying again: long enough not to spin, short enough that a
/// transient condition costs little.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown`, then
/// closes idle connections and waits for in-flight requests.
pub(crate) async fn http1<H, F>(
    listener: TcpListener,
    shutdown: Shutdown,
    handler: H,
) -> Result<(), Error>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.signaled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Small request/response exchanges should not wait on Nagle.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let rsp = handler(req);
                async move { Ok::<_, Infallible>(rsp.await) }
            });
            let mut conn = pin!(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = shutdown.signaled() => {
                    // Finishes the request in flight, if any, then closes.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    drain(conns).await;
    Ok(())
}

/// Serves a gRPC service over h2c on `listener` until `shutdown`, then
/// sends GOAWAY and waits for in-flight calls.
pub(crate) async fn grpc<S>(listener: TcpListener, shutdown: Shutdown, svc: S) -> Result<(), Error>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = shutdown.clone();
    let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
        svc,
        incoming,
        async move { signal.signaled().await },
    );
    let give_up = async {
        shutdown.signaled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result?,
        () = give_up => tracing::warn!("gave up waiting for in-flight calls"),
    }
    Ok(())
}

/// Waits up to [`DRAIN_TIMEOUT`] for `tasks`, then aborts the rest.
pub(crate) async fn drain(mut tasks: JoinSet<()>) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!(left = tasks.len(), "gave up waiting for in-flight requests");
        tasks.abort_all();
    }
}
