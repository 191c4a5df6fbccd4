//! Opaque TCP: a bidirectional byte copy with half-close.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::Connector;
use crate::errors::ProxyError;
use crate::metrics::Tls;

/// How an opaque connection ended.
#[derive(Debug)]
pub enum TcpError {
    /// The target could not be reached; the client should see a reset.
    Connect(ProxyError),
    /// One of the peers failed mid-stream.
    Io(std::io::Error),
}

/// Copies bytes both ways between `client` and a new connection to
/// `target` until both directions have ended. When one side finishes
/// sending, the other side's write half is shut down (half-close), so
/// request/response protocols that signal the end of a request with EOF
/// keep working.
pub async fn forward<I>(
    client: &mut I,
    target: SocketAddr,
    tls: Tls,
    connector: &Connector,
) -> Result<(u64, u64), TcpError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (mut upstream, mut conn) = connector
        .connect_with(target, tls, true)
        .await
        .map_err(TcpError::Connect)?;
    let res = tokio::io::copy_bidirectional(client, &mut upstream).await;
    if res.is_err() {
        conn.set_failed();
    }
    res.map_err(TcpError::Io)
}

/// How many endpoints an opaque connection tries before giving up: a
/// refused connect sent nothing, so another endpoint is safe.
const CONNECT_ATTEMPTS: usize = 3;

/// Forwards to one of a service's endpoints, chosen by open connections
/// (over mTLS to meshed ones when `mesh`); an endpoint that refuses, or
/// fails the handshake, is reported to the balancer and another tried.
pub async fn forward_balanced<I>(
    client: &mut I,
    service: &crate::discovery::Balanced,
    mesh: bool,
    connector: &Connector,
) -> Result<(), TcpError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut last = None;
    for _ in 0..CONNECT_ATTEMPTS {
        let Some(handle) = service.pick_connection() else {
            break;
        };
        let addr = *handle.key();
        let tls = service.endpoint_tls(&addr, mesh).tls;
        match connector.connect_with(addr, tls, true).await {
            Ok((mut upstream, mut conn)) => {
                handle.connected();
                let res = tokio::io::copy_bidirectional(client, &mut upstream).await;
                if res.is_err() {
                    conn.set_failed();
                }
                // `handle` counts the connection as open until here.
                drop(handle);
                return res.map(|_| ()).map_err(TcpError::Io);
            }
            Err(e) => {
                handle.connect_failed();
                last = Some(e);
            }
        }
    }
    Err(TcpError::Connect(last.unwrap_or_else(|| {
        crate::errors::ProxyError::NoEndpoints(service.name().to_string())
    })))
}
