//! The management API's client, used by the `strand` CLI and `strand run`.
//!
//! One short-lived HTTP/1 connection per call: calls are rare (a CLI
//! command, a pod starting), and there is then no pool to go stale.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use strand_controller_core::{Kind, ManifestError, Pod, PodStatus, Resource, parse_resource_json};
use tokio::net::TcpStream;

use crate::api::{AdminToken, PodToken, TOKEN_FILE, TokenError};
use crate::store::{Applied, WatchEvent};

/// Loopback answers in microseconds; a few seconds means nobody listens.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Generous for the largest apply (4 MiB, one fsync); watches are exempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one control plane's management API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    addr: SocketAddr,
    token: AdminToken,
}

/// Why a call failed. `Display` is what the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}; is the control plane up? run `strand up`")]
    NoToken(TokenError),
    #[error(transparent)]
    Token(TokenError),
    #[error("cannot connect to the control plane at {addr}: {source}; is it up? run `strand up`")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the control plane rejected the admin token; is it the one in the state directory `strand up` used?"
    )]
    Unauthorized,
    /// An apply was rejected (or a conflict found); nothing was stored.
    #[error("{error}")]
    Apply {
        status: StatusCode,
        error: ManifestError,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{message} (HTTP {status})")]
    Api { status: StatusCode, message: String },
    #[error("the connection to the control plane failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the control plane did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
}

// === impl ApiClient ===

impl ApiClient {
    /// A client for the API at `addr`; connects on each call.
    pub fn connect(addr: SocketAddr, token: AdminToken) -> ApiClient {
        ApiClient { addr, token }
    }

    /// Reads `<state_dir>/admin-token`.
    pub fn from_state_dir(state_dir: &Path, addr: SocketAddr) -> Result<ApiClient, ClientError> {
        let token = AdminToken::read(&state_dir.join(TOKEN_FILE)).map_err(|e| match e {
            TokenError::Read { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ClientError::NoToken(e)
            }
            e => ClientError::Token(e),
        })?;
        Ok(Self::connect(addr, token))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.call(Method::GET, "/healthz", None).await.map(drop)
    }

    pub async fn apply(&self, text: &str) -> Result<Vec<Applied>, ClientError> {
        let body = Bytes::copy_from_slice(text.as_bytes());
        let v = self.call(Method::POST, "/api/v1/apply", Some(body)).await?;
        serde_json::from_value(v.get("applied").cloned().unwrap_or(Value::Null))
            .map_err(|e| ClientError::Protocol(format!("bad apply answer: {e}")))
    }

    /// Sorted by namespace, then name.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<Resource>, ClientError> {
        let path = match namespace {
            Some(ns) => format!("/api/v1/{}?namespace={ns}", kind.plural()),
            None => format!("/api/v1/{}", kind.plural()),
        };
        let v = self.call(Method::GET, &path, None).await?;
        let Some(Value::Array(items)) = v.get("items").cloned() else {
            return Err(ClientError::Protocol("a list answer has no items".into()));
        };
        items.into_iter().map(resource).collect()
    }

    pub async fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Resource, ClientError> {
        let path = format!("/api/v1/{}/{ns}/{name}", kind.plural());
        resource(self.call(Method::GET, &path, None).await?)
    }

    /// Returns the deleted resource.
    pub async fn delete(&self, kind: Kind, ns: &str, name: &str) -> Result<Resource, ClientError> {
        let path = format!("/api/v1/{}/{ns}/{name}", kind.plural());
        resource(self.call(Method::DELETE, &path, None).await?)
    }

    pub async fn update_pod_status(
        &self,
        ns: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<Pod, ClientError> {
        let path = format!("/api/v1/pods/{ns}/{name}/status");
        let body = serde_json::to_vec(status).expect("statuses always serialize");
        match resource(self.call(Method::PUT, &path, Some(body.into())).await?)? {
            Resource::Pod(p) => Ok(p),
            other => Err(ClientError::Protocol(format!(
                "a status update answered with a {}",
                other.kind()
            ))),
        }
    }

    /// The pod's identity token, for its proxy to present to the identity
    /// service. `NotFound` when the pod does not exist.
    pub async fn pod_token(&self, ns: &str, name: &str) -> Result<PodToken, ClientError> {
        let path = format!("/api/v1/pods/{ns}/{name}/token");
        let v = self.call(Method::POST, &path, None).await?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("bad token answer: {e}")))
    }

    /// Every resource as `ADDED`, then `SYNCED`, then changes as they
    /// happen. The stream ends when the server shuts down.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<WatchEvent, ClientError>> + Send + 'static, ClientError>
    {
        let rsp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.send(Method::GET, "/api/v1/watch", None),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        if rsp.status() != StatusCode::OK {
            let status = rsp.status();
            let body = rsp.into_body().collect().await?.to_bytes();
            return Err(error_from(status, &body));
        }
        let state = (rsp.into_body(), BytesMut::new());
        Ok(futures_util::stream::unfold(
            state,
            |(mut body, mut buf)| async move {
                loop {
                    if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let line = buf.split_to(nl + 1);
                        let ev = serde_json::from_slice(&line[..nl])
                            .map_err(|e| e.to_string())
                            .and_then(WatchEvent::from_json)
                            .map_err(|e| ClientError::Protocol(format!("bad watch event: {e}")));
                        return Some((ev, (body, buf)));
                    }
                    match body.frame().await {
                        None if buf.is_empty() => return None,
                        None => {
                            let e = ClientError::Protocol("the watch ended inside an event".into());
                            buf.clear();
                            return Some((Err(e), (body, buf)));
                        }
                        Some(Err(e)) => return Some((Err(e.into()), (body, BytesMut::new()))),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buf.extend_from_slice(data.chunk());
                            }
                        }
                    }
                }
            },
        ))
    }

    /// One request; the JSON of a 2xx answer, or the error it describes.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Value, ClientError> {
        let exchange = async {
            let rsp = self.send(method, path, body).await?;
            let status = rsp.status();
            let bytes = rsp.into_body().collect().await?.to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout)??;
        if !status.is_success() {
            return Err(error_from(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("the answer is not JSON: {e}")))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let connect = |source| ClientError::Connect {
            addr: self.addr,
            source,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect)?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "management API client connection failed");
            }
        });
        let host = HeaderValue::from_str(&self.addr.to_string())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let bearer = HeaderValue::from_str(&self.token.bearer())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, bearer);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/yaml");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Protocol(format!("cannot build a request: {e}")))?;
        Ok(sender.send_request(req).await?)
    }
}

fn resource(v: Value) -> Result<Resource, ClientError> {
    parse_resource_json(v).map_err(|e| ClientError::Protocol(format!("bad resource: {e}")))
}

/// Rebuilds the error an error answer describes.
fn error_from(status: StatusCode, body: &[u8]) -> ClientError {
    let err = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or(Value::Null);
    let text = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
    let message =
        text("message").unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    if status == StatusCode::UNAUTHORIZED {
        return ClientError::Unauthorized;
    }
    if status == StatusCode::NOT_FOUND {
        return ClientError::NotFound(message);
    }
    if let (Some(document), Some(reason)) =
        (err.get("document").and_then(Value::as_u64), text("reason"))
    {
        return ClientError::Apply {
            status,
            error: ManifestError {
                document: usize::try_from(document).unwrap_or(usize::MAX),
                resource: text("resource"),
                field: text("field").unwrap_or_default(),
                reason,
            },
        };
    }
    ClientError::Api { status, message }
}
