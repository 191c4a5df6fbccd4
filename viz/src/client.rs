//! The metrics API's client, for `strand viz` and `strand demo`.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::routes::{RoutesRequest, RoutesResponse};
use crate::stat::{EdgesRequest, EdgesResponse, ResourceRef, StatRequest, StatResponse};
use crate::traces::{TraceDetail, TraceId, TraceList};

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
    // `error` is in the message, not the error's source, so that a chain
    // printed whole (`{:#}`) says it once.
    #[error(
        "cannot reach the metrics API at {addr}: {error}; is the control plane up? (`strand check`)"
    )]
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
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

    pub async fn routes(&self, req: &RoutesRequest) -> Result<RoutesResponse, ClientError> {
        let mut q = vec![
            ("resource", req.resource.to_string()),
            ("window", req.window.as_secs_f64().to_string()),
        ];
        if let Some(ns) = &req.namespace {
            q.push(("namespace", ns.clone()));
        }
        if let Some(r) = &req.to {
            q.push(("to", r.to_string()));
        }
        if let Some(ns) = &req.to_namespace {
            q.push(("to_namespace", ns.clone()));
        }
        self.get("/api/v1/routes", &q).await
    }

    /// The `limit` most recent traces, newest first (`limit` from 1 to
    /// [`crate::api::MAX_TRACES_LIMIT`]).
    pub async fn traces(&self, limit: usize) -> Result<TraceList, ClientError> {
        self.get("/api/v1/traces", &[("limit", limit.to_string())])
            .await
    }

    /// One trace's spans; an unknown trace is [`ClientError::Api`] with
    /// status 404.
    pub async fn trace(&self, id: &TraceId) -> Result<TraceDetail, ClientError> {
        self.get(&format!("/api/v1/traces/{id}"), &[]).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let addr = self.addr;
        let mut uri = path.to_string();
        for (i, (k, v)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(k);
            uri.push('=');
            uri.push_str(&crate::prom::url_encode(v));
        }
        let rsp = crate::fetch::get(
            &addr.to_string(),
            &uri,
            "application/json",
            TIMEOUT,
            MAX_BODY,
        )
        .await
        .map_err(|e| match e {
            crate::fetch::HttpError::Connect(error) => ClientError::Connect { addr, error },
            crate::fetch::HttpError::Timeout(_) => ClientError::Timeout { addr },
            other => ClientError::Http {
                addr,
                message: other.to_string(),
            },
        })?;
        if !rsp.status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&rsp.body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&rsp.body).into_owned());
            return Err(ClientError::Api {
                addr,
                status: rsp.status,
                message,
            });
        }
        serde_json::from_slice(&rsp.body).map_err(|e| ClientError::Http {
            addr,
            message: e.to_string(),
        })
    }
}
