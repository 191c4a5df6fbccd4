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
        .connect(target, tls)
        .await
        .map_err(TcpError::Connect)?;
    let res = tokio::io::copy_bidirectional(client, &mut upstream).await;
    if res.is_err() {
        conn.set_failed();
    }
    res.map_err(TcpError::Io)
}
