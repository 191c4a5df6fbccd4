//! The proxy's errors, and the one place that maps them to what a client
//! sees: an HTTP status with an `l5d-proxy-error` header, or a gRPC status.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Why the proxy could not forward a request or connection.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("outbound connections to loopback address {0} are not proxied")]
    Loopback(SocketAddr),
    #[error("connection to {0} would loop back into the proxy")]
    Loop(SocketAddr),
    #[error("upstream HTTP/{version} handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        version: u8,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("upstream {addr} failed: {source}")]
    Upstream {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("upstream {addr} failed: {source}")]
    UpstreamIo { addr: SocketAddr, source: io::Error },
    #[error("upstream {addr} failed: {source}")]
    UpstreamH2 { addr: SocketAddr, source: h2::Error },
    #[error("mTLS handshake with {addr} (expecting identity {identity}) failed: {source}")]
    Tls {
        addr: SocketAddr,
        identity: std::sync::Arc<str>,
        source: io::Error,
    },
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("service {0} has no endpoints")]
    NoEndpoints(String),
    #[error("no route of service {0} matches the request")]
    NoRoute(String),
    #[error("the matching rule of route {0} has no backend")]
    NoBackends(std::sync::Arc<str>),
    #[error("route backend {path} is unavailable: {reason}")]
    Backend {
        path: std::sync::Arc<str>,
        reason: std::sync::Arc<str>,
    },
    #[error("reading the request body failed: {0}")]
    ClientBody(hyper::Error),
    #[error("request timed out after {timeout:?} (route {route})")]
    RouteTimeout {
        timeout: Duration,
        route: std::sync::Arc<str>,
    },
    #[error("discovery failed: {0}")]
    Discovery(#[from] strand_proxy_discover::DiscoveryError),
    /// Not a failure: the route's rule answers with a redirect.
    #[error("redirected to {location:?} ({status})")]
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
    #[error("route {route} has a filter the proxy cannot apply: {reason}")]
    RouteFilter {
        route: std::sync::Arc<str>,
        reason: std::sync::Arc<str>,
    },
}

/// A target the proxy refuses without trying to connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The connection was made to the proxy's own listener.
    Loop(SocketAddr),
    /// An outbound connection to a loopback address.
    Loopback(SocketAddr),
}

impl Guard {
    pub fn error(self) -> ProxyError {
        match self {
            Guard::Loop(a) => ProxyError::Loop(a),
            Guard::Loopback(a) => ProxyError::Loopback(a),
        }
    }
}

/// gRPC status codes the proxy answers with.
const GRPC_UNAVAILABLE: u32 = 14;
const GRPC_DEADLINE_EXCEEDED: u32 = 4;
const GRPC_NOT_FOUND: u32 = 5;

// === impl ProxyError ===

impl ProxyError {
    /// A short, stable name for the `error` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "connect",
            ProxyError::ConnectTimeout { .. } => "connect_timeout",
            ProxyError::Loopback(_) => "loopback",
            ProxyError::Loop(_) => "loop",
            ProxyError::Handshake { .. } => "handshake",
            ProxyError::Tls { .. } => "tls",
            ProxyError::Upstream { .. }
            | ProxyError::UpstreamIo { .. }
            | ProxyError::UpstreamH2 { .. } => "upstream",
            ProxyError::ShuttingDown => "shutdown",
            ProxyError::NoEndpoints(_) => "no_endpoints",
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::NoBackends(_) => "no_backends",
            ProxyError::Backend { .. } => "backend",
            ProxyError::RouteTimeout { .. } => "timeout",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::Discovery(_) => "discovery",
            ProxyError::Redirect { .. } => "redirect",
            ProxyError::RouteFilter { .. } => "route_filter",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            ProxyError::ConnectTimeout { .. } | ProxyError::RouteTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::ShuttingDown | ProxyError::NoEndpoints(_) | ProxyError::Backend { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoBackends(_) | ProxyError::RouteFilter { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::Redirect { status, .. } => *status,
            ProxyError::Discovery(e) => match e {
                strand_proxy_discover::DiscoveryError::Timeout { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                strand_proxy_discover::DiscoveryError::InvalidAuthority { .. } => {
                    StatusCode::BAD_REQUEST
                }
                strand_proxy_discover::DiscoveryError::InvalidPolicy { .. } => {
                    StatusCode::BAD_GATEWAY
                }
            },
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn grpc_status(&self) -> u32 {
        match self {
            ProxyError::ConnectTimeout { .. } | ProxyError::RouteTimeout { .. } => {
                GRPC_DEADLINE_EXCEEDED
            }
            ProxyError::NoRoute(_) => GRPC_NOT_FOUND,
            _ => GRPC_UNAVAILABLE,
        }
    }

    /// Whether the request never reached the upstream, so that sending it
    /// again elsewhere is safe.
    /// An answer the route itself gives (a redirect), not a failure.
    pub fn is_answer(&self) -> bool {
        matches!(self, ProxyError::Redirect { .. })
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::Handshake { .. }
                | ProxyError::Tls { .. }
        )
    }

    /// The response the client gets. gRPC clients get a trailers-only
    /// response (HTTP 200 with `grpc-status`), which is how gRPC expects
    /// transport failures to be reported.
    pub fn to_response(&self, grpc: bool) -> Response<Bytes> {
        if let ProxyError::Redirect { status, location } = self {
            let mut rsp = Response::new(Bytes::new());
            *rsp.status_mut() = *status;
            rsp.headers_mut()
                .insert(http::header::LOCATION, location.clone());
            return rsp;
        }
        let msg = self.to_string();
        let header =
            HeaderValue::from_str(&msg).unwrap_or_else(|_| HeaderValue::from_static("proxy error"));
        let mut rsp = Response::new(Bytes::new());
        if grpc {
            *rsp.status_mut() = StatusCode::OK;
            let h = rsp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(self.grpc_status()));
            h.insert("grpc-message", header.clone());
        } else {
            *rsp.status_mut() = self.http_status();
            *rsp.body_mut() = Bytes::from(format!("{msg}\n"));
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        rsp.headers_mut().insert("l5d-proxy-error", header);
        rsp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failure_is_502_or_unavailable() {
        let e = ProxyError::Connect {
            addr: "198.18.0.9:80".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let rsp = e.to_response(false);
        assert_eq!(rsp.status(), 502);
        let hdr = rsp.headers()["l5d-proxy-error"].to_str().unwrap();
        assert!(hdr.starts_with("connect to 198.18.0.9:80 failed"), "{hdr}");
        let rsp = e.to_response(true);
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["grpc-status"], "14");
        assert!(e.is_retryable());
    }
}
