//! Request routing and handlers. Every failure is an [`ApiError`]; nothing
//! here panics on input.

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use strand_controller_core::{Kind, PodStatus};

use super::error::ApiError;
use super::{BODY_READ_TIMEOUT, Body, Ctx, MAX_BODY_BYTES, json_response};

/// Past the limit, up to this much more is read and discarded so that the
/// client finishes sending and reads the 413 (closing a socket with unread
/// data resets it, and the client may lose the response).
const DRAIN_LIMIT: usize = 16 << 20;

type Result<T, E = ApiError> = std::result::Result<T, E>;

// === impl Ctx ===

impl Ctx {
    pub(super) async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let rsp = self
            .route(req)
            .await
            .unwrap_or_else(ApiError::into_response);
        tracing::debug!(%method, %path, status = rsp.status().as_u16(), "management API request");
        rsp
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>> {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            return match *req.method() {
                Method::GET | Method::HEAD => {
                    Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
                }
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !self.token.verify_header(auth) {
            return Err(ApiError::unauthorized());
        }
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return Err(not_found_path(&path));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let method = req.method().clone();
        match segments.as_slice() {
            ["apply"] => match method {
                Method::POST => self.apply(req).await,
                _ => Err(ApiError::method_not_allowed("POST")),
            },
            ["watch"] => match method {
                Method::GET => Ok(self.watch()),
                _ => Err(ApiError::method_not_allowed("GET")),
            },
            [plural] => {
                let kind = parse_kind(plural)?;
                match method {
                    Method::GET => self.list(kind, req.uri().query()),
                    _ => Err(ApiError::method_not_allowed("GET")),
                }
            }
            [plural, ns, name] => {
                let kind = parse_kind(plural)?;
                match method {
                    Method::GET => self.get(kind, ns, name),
                    Method::DELETE => self.delete(kind, ns, name).await,
                    _ => Err(ApiError::method_not_allowed("GET, DELETE")),
                }
            }
            [plural, ns, name, "status"] if parse_kind(plural)? == Kind::Pod => match method {
                Method::PUT => self.update_pod_status(ns, name, req).await,
                _ => Err(ApiError::method_not_allowed("PUT")),
            },
            [plural, ns, name, "token"] if parse_kind(plural)? == Kind::Pod => match method {
                Method::POST => self.pod_token(ns, name),
                _ => Err(ApiError::method_not_allowed("POST")),
            },
            _ => Err(not_found_path(&path)),
        }
    }

    async fn apply(&self, req: Request<Incoming>) -> Result<Response<Body>> {
        let body = read_body(req).await?;
        let text = String::from_utf8(body.to_vec())
            .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8 text: {e}")))?;
        let applied = self.store.apply(text).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "applied": applied }),
        ))
    }

    fn list(&self, kind: Kind, query: Option<&str>) -> Result<Response<Body>> {
        let mut namespace = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("namespace", ns)) if !ns.is_empty() => namespace = Some(ns),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {pair:?}; only namespace=<ns> is accepted"
                    )));
                }
            }
        }
        let items: Vec<Value> = self
            .store
            .list(kind, namespace)
            .iter()
            .map(|r| r.to_json())
            .collect();
        Ok(json_response(StatusCode::OK, &json!({ "items": items })))
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Response<Body>> {
        match self.store.get(kind, ns, name) {
            Some(r) => Ok(json_response(StatusCode::OK, &r.to_json())),
            None => Err(ApiError::not_found(format!("{kind} {ns}/{name} not found"))),
        }
    }

    async fn delete(&self, kind: Kind, ns: &str, name: &str) -> Result<Response<Body>> {
        match self.store.delete(kind, ns, name).await? {
            Some(r) => Ok(json_response(StatusCode::OK, &r.to_json())),
            None => Err(ApiError::not_found(format!("{kind} {ns}/{name} not found"))),
        }
    }

    async fn update_pod_status(
        &self,
        ns: &str,
        name: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Body>> {
        let body = read_body(req).await?;
        let status: PodStatus = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a valid PodStatus: {e}"))
        })?;
        let pod = self.store.update_pod_status(ns, name, status).await?;
        let doc = strand_controller_core::Resource::Pod(pod).to_json();
        Ok(json_response(StatusCode::OK, &doc))
    }

    /// An identity token for an existing pod that has an address.
    fn pod_token(&self, ns: &str, name: &str) -> Result<Response<Body>> {
        let Some(minter) = &self.minter else {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this control plane does not mint identity tokens (it serves no identity service)",
            ));
        };
        let Some(strand_controller_core::Resource::Pod(pod)) = self.store.get(Kind::Pod, ns, name)
        else {
            return Err(ApiError::not_found(format!("pod {ns}/{name} not found")));
        };
        if pod.status.pod_ip.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("pod {ns}/{name} has no address yet; a token is bound to one"),
            ));
        }
        let minted = minter.mint(&pod).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot mint a token for pod {ns}/{name}: {e}"),
            )
        })?;
        let body = serde_json::to_value(&minted).expect("tokens always serialize");
        Ok(json_response(StatusCode::OK, &body))
    }

    /// Newline-delimited JSON events until the client goes or the server
    /// shuts down (the chunked body then ends cleanly).
    fn watch(&self) -> Response<Body> {
        let watch = self.store.watch();
        let shutdown = self.shutdown.clone();
        let events =
            futures_util::stream::unfold((watch, shutdown), |(mut watch, shutdown)| async move {
                let ev = tokio::select! {
                    ev = watch.next() => ev?,
                    () = shutdown.cancelled() => return None,
                };
                let mut line =
                    serde_json::to_vec(&ev.to_json()).expect("JSON values always serialize");
                line.push(b'\n');
                Some((Ok(Frame::data(Bytes::from(line))), (watch, shutdown)))
            });
        let mut rsp = Response::new(StreamBody::new(events).boxed_unsync());
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        rsp
    }
}

fn parse_kind(plural: &str) -> Result<Kind> {
    Kind::parse(plural).ok_or_else(|| {
        let known: Vec<_> = Kind::ALL.iter().map(|k| k.plural()).collect();
        ApiError::not_found(format!(
            "unknown resource type {plural:?}; known: {}",
            known.join(", ")
        ))
    })
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "no route for {path:?}; the API is under /api/v1/ (apply, watch, <plural>[/<namespace>/<name>])"
    ))
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within [`BODY_READ_TIMEOUT`].
async fn read_body(req: Request<Incoming>) -> Result<Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {MAX_BODY_BYTES} bytes; split the input"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES + DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let read = async {
        let mut buf = BytesMut::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > MAX_BODY_BYTES + DRAIN_LIMIT {
                break;
            }
            if total <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            }
        }
        if total > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timed out reading the request body",
            ))
        })
}
