//! `strand-demo`: a demo application shaped like Linkerd's emojivoto, for
//! `strand demo` to run as meshed workloads. One binary plays four roles:
//!
//! ```text
//!                 HTTP/1                 gRPC (h2c)
//!  vote-bot ────────────────▶ web ──┬──────────────▶ emoji   (ListAll, FindByShortcode)
//!  (GET /stats)   /api/list         │
//!                 /api/vote         └──────────────▶ voting  (Vote, Results)
//!                 /api/leaderboard
//! ```
//!
//! Everything speaks plain text protocols; the mesh adds mTLS. Voting fails
//! every vote for one emoji on purpose (`:doughnut:`, as emojivoto does), so
//! the mesh's metrics show a steady error rate.
//!
//! Each server takes an already bound [`tokio::net::TcpListener`] and a
//! [`Shutdown`] signal, so tests run the whole application in-process on
//! ephemeral ports.

#![forbid(unsafe_code)]

use std::str::FromStr;

pub mod api;
pub mod emoji;
mod serve;
pub mod shutdown;
pub mod vote_bot;
pub mod voting;
pub mod web;

pub use shutdown::{Shutdown, Trigger};

/// A service address, `HOST:PORT`, such as `emoji-svc.emojivoto:8080`.
///
/// The host may be a DNS name, resolved again on every connection attempt
/// so that a dependency that is not resolvable yet is found once it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAddr(http::uri::Authority);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Serving gRPC failed.
    #[error("serving gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A socket operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A `HOST:PORT` that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a valid HOST:PORT")]
pub struct InvalidAddr(String);

// === impl ServiceAddr ===

impl ServiceAddr {
    /// The `http://HOST:PORT` URI for this address.
    pub fn http_uri(&self) -> String {
        format!("http://{}", self.0)
    }
}

impl FromStr for ServiceAddr {
    type Err = InvalidAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidAddr(s.to_string());
        let authority: http::uri::Authority = s.parse().map_err(|_| invalid())?;
        // No userinfo, and an explicit port: a demo manifest that forgets the
        // port should fail at startup rather than dial port 80 silently.
        if authority.as_str().contains('@') || authority.port_u16().is_none() {
            return Err(invalid());
        }
        if authority.host().is_empty() {
            return Err(invalid());
        }
        Ok(Self(authority))
    }
}

impl std::fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<std::net::SocketAddr> for ServiceAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self(
            addr.to_string()
                .parse()
                .expect("a socket address is a valid authority"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addrs() {
        let addr: ServiceAddr = "emoji-svc.emojivoto:8080".parse().unwrap();
        assert_eq!(addr.http_uri(), "http://emoji-svc.emojivoto:8080");
        let addr: ServiceAddr = "[::1]:80".parse().unwrap();
        assert_eq!(addr.to_string(), "[::1]:80");
        for bad in [
            "emoji-svc",
            "",
            ":80",
            "a b:80",
            "user@host:80",
            "host:port",
        ] {
            assert!(bad.parse::<ServiceAddr>().is_err(), "{bad:?} parsed");
        }
        let addr = ServiceAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(addr.to_string(), "127.0.0.1:9");
    }
}
