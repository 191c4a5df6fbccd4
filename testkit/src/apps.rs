//! The servers and clients behind `strand-testapp`, one module per protocol.
//! They live in the library so tests can also run them in-process.
//!
//! Conventions shared by every subcommand: a server prints one line
//! `listening <addr>` once bound and runs until killed; a client prints a
//! one-line JSON summary and exits 0, or exits non-zero with the error on
//! stderr, and gives up after `--timeout-ms` (10 s by default).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

pub mod certify;
pub mod echo;
pub mod grpc;
pub mod http;
pub mod http_client;
pub mod tcp;
pub mod tls;
pub mod ws;

/// The `--timeout-ms` flag every client has.
#[derive(clap::Args, Clone, Debug)]
pub struct Deadline {
    /// Give up after this many milliseconds (the whole run, connect included).
    #[arg(long = "timeout-ms", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Bytes that generated bodies and streams are cut from: 64 KiB, the size
/// of a typical socket read, so large transfers take few frames and no
/// allocation per chunk.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

// === impl Deadline ===

impl Deadline {
    /// Runs `fut`, failing with "`what` timed out after N ms" if it takes
    /// longer than the deadline.
    pub async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(Duration::from_millis(self.timeout_ms), fut)
            .await
            .map_err(|_| anyhow!("{what} timed out after {} ms", self.timeout_ms))?
    }
}

/// Binds `addr` and prints `listening <bound address>` (flushed, so a test
/// reading stdout sees it at once).
pub async fn bind_and_announce(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {bound}")?;
    out.flush()?;
    Ok(listener)
}

/// Accepts the next connection. Errors such as running out of file
/// descriptors are logged and retried after a pause rather than ending the
/// server, which must run until killed.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                // As most servers do (Go's net/http, nginx's tcp_nodelay):
                // without it, responses on a busy multiplexed connection
                // wait on Nagle's algorithm.
                let _ = conn.0.set_nodelay(true);
                return conn;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Prints a client's one-line JSON summary to stdout.
pub fn print_summary(summary: &impl Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(summary)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `n` filler bytes as a stream of chunks.
pub(crate) fn filler(n: u64) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
    futures_util::stream::unfold(n, |left| async move {
        let take = usize::try_from(left).map_or(FILLER.len(), |l| l.min(FILLER.len()));
        (take > 0).then(|| (Bytes::from_static(&FILLER[..take]), left - take as u64))
    })
}

/// Milliseconds since `start`, for summaries.
pub(crate) fn millis_since(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
