//! The metrics API's client, for `strand viz` and `strand demo`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::stat::{EdgesRequest, EdgesResponse, ResourceRef, StatRequest, StatResponse};

/// Answers are small tables; anything bigger is not the metrics API.
const MAX_BODY: usize = 16 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

/// A client of one metrics API.
#[derive(Clone, Debug)]
pub struct MetricsApiClient {
    addr: SocketAddr,
}

/// Why a call failed; `Display` is what the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the metrics API at {addr}: {source}; is the control plane up? (`strand check`)"
    )]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the metrics API at {addr} did not answer within {TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("the metrics API at {addr}: {message}")]
    Http { addr: SocketAddr, message: String },
    #[error("the metrics API at {addr} answered HTTP {status}: {message}")]
    Api {
        addr: SocketAddr,
        status: StatusCode,
        message: String,
    },
}

// === impl MetricsApiClient ===

impl MetricsApiClient {
    pub fn new(addr: SocketAddr) -> Self {
        MetricsApiClient { addr }
    }

    pub async fn stat(&self, req: &StatRequest) -> Result<StatResponse, ClientError> {
        let mut q = vec![
            ("resource", req.resource.to_string()),
            ("window", req.window.as_secs_f64().to_string()),
        ];
        if let Some(ns) = &req.namespace {
            q.push(("namespace", ns.clone()));
        }
        if let Some(r) = &req.from {
            q.push(("from", r.to_string()));
        }
        if let Some(r) = &req.to {
            q.push(("to", r.to_string()));
        }
        self.get("/api/v1/stat", &q).await
    }

    pub async fn edges(&self, req: &EdgesRequest) -> Result<EdgesResponse, ClientError> {
        let resource = ResourceRef {
            kind: req.kind,
            name: None,
        };
        let mut q = vec![
            ("resource", resource.to_string()),
            ("window", req.window.as_secs_f64().to_string()),
        ];
        if let Some(ns) = &req.namespace {
            q.push(("namespace", ns.clone()));
        }
        self.get("/api/v1/edges", &q).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let addr = self.addr;
        let uri = format!(
            "{path}?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        let call = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect { addr, source })?;
            let http = |e: &dyn std::fmt::Display| ClientError::Http {
                addr,
                message: e.to_string(),
            };
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| http(&e))?;
            tokio::spawn(conn);
            let req = Request::get(uri)
                .header(http::header::HOST, addr.to_string())
                .body(Empty::<Bytes>::new())
                .map_err(|e| http(&e))?;
            let rsp = tx.send_request(req).await.map_err(|e| http(&e))?;
            let status = rsp.status();
            let body = Limited::new(rsp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| http(&*e))?
                .to_bytes();
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(ClientError::Api {
                    addr,
                    status,
                    message,
                });
            }
            serde_json::from_slice(&body).map_err(|e| http(&e))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Timeout { addr })?
    }
}

/// Encodes everything but unreserved characters (RFC 3986).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
