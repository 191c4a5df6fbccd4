//! The metrics API's HTTP server (`strand-controller metrics-api`, and the
//! local mode's): JSON answers to `stat`, `edges` and `routes`, the scrape
//! targets' health, the proxies' list for Prometheus's HTTP service
//! discovery, and (with a trace collector) the traces proxies reported.
//!
//! ```text
//!  GET /api/v1/stat?resource=deploy/web&namespace=ns&from=..&to=..&window=60
//!  GET /api/v1/edges?resource=deploy&namespace=ns&window=60
//!  GET /api/v1/routes?resource=deploy/web&namespace=ns&to=svc/emoji-svc&to_namespace=ns&window=60
//!  GET /api/v1/targets          every proxy: last scrape, last error
//!  GET /api/v1/prometheus-sd    [{"targets":["10.42.0.5:4191"],"labels":{..}}]
//!  GET /api/v1/traces?limit=20  the most recent traces, newest first
//!  GET /api/v1/traces/<id>      one trace's spans (32 hex digits)
//!  GET /ready  /live
//! ```
//!
//! No `namespace` means every namespace.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::query::Evaluate;
use crate::routes::{self, RoutesRequest};
use crate::scrape::ScrapeTarget;
use crate::stat::{self, EdgesRequest, Inventory, ResourceKind, ResourceRef, StatRequest};
use crate::store::Store;
use crate::traces::{TraceId, TraceList, TraceStore};

/// The longest window a request may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Traces listed when the request does not say: a screenful.
pub const DEFAULT_TRACES_LIMIT: usize = 20;
/// The most traces one answer lists (summaries of ~300 bytes each).
pub const MAX_TRACES_LIMIT: usize = 1_000;

/// Where the API learns which pods and services exist, and which proxies
/// to scrape.
pub trait InventorySource: Send + Sync + 'static {
    /// Pods and services, with `stale` filled in.
    fn inventory(&self) -> BoxFuture<'_, Result<Inventory, String>>;
    /// The proxies to scrape.
    fn targets(&self) -> BoxFuture<'_, Result<Vec<ScrapeTarget>, String>>;
}

/// The API: an evaluator (the embedded store, or Prometheus) and where the
/// inventory comes from.
pub struct MetricsApi {
    eval: Arc<dyn Evaluate>,
    source: Arc<dyn InventorySource>,
    /// The embedded store, when the API scrapes the proxies itself.
    store: Option<Arc<Store>>,
    /// The spans the trace collector received, when there is one.
    traces: Option<Arc<TraceStore>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// One scrape target as `/api/v1/targets` shows it.
#[derive(Serialize)]
struct TargetStatus {
    namespace: String,
    pod: String,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success_unix: Option<f64>,
    series: usize,
}

/// One Prometheus HTTP SD target group.
#[derive(Serialize)]
struct SdGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

// === impl MetricsApi ===

impl MetricsApi {
    /// The API over `eval`, with `store` when it is the embedded store
    /// that scrapes the proxies, and `traces` when a trace collector feeds
    /// one.
    pub fn new(
        eval: Arc<dyn Evaluate>,
        source: Arc<dyn InventorySource>,
        store: Option<Arc<Store>>,
        traces: Option<Arc<TraceStore>>,
    ) -> Arc<Self> {
        Arc::new(MetricsApi {
            eval,
            source,
            store,
            traces,
        })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let api = Arc::clone(&self);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let api = Arc::clone(&api);
                    async move { Ok::<_, Infallible>(api.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), svc);
                let _ = conn.await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
        }
        let query = parse_query(req.uri().query().unwrap_or(""));
        match req.uri().path() {
            "/ready" | "/live" => text(StatusCode::OK, "ok\n"),
            "/api/v1/stat" => match stat_request(&query).and_then(|r| self.kept(r)) {
                Ok(r) => self.stat(&r).await,
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/v1/edges" => match edges_request(&query).and_then(|r| self.kept(r)) {
                Ok(r) => self.edges(&r).await,
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/v1/routes" => match routes_request(&query).and_then(|r| self.kept(r)) {
                Ok(r) => self.routes(&r).await,
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/v1/targets" => self.targets(),
            "/api/v1/prometheus-sd" => self.prometheus_sd().await,
            "/api/v1/traces" => match traces_limit(&query) {
                Ok(limit) => self.traces(limit),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            path => match path.strip_prefix("/api/v1/traces/") {
                Some(id) => match id.parse::<TraceId>() {
                    Ok(id) => self.trace(&id),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                },
                None => error(StatusCode::NOT_FOUND, "no such endpoint"),
            },
        }
    }

    /// The source's inventory; with the embedded store, the proxies whose
    /// last scrape failed are the stale ones.
    async fn inventory(&self) -> Result<Inventory, String> {
        let mut inv = self.source.inventory().await?;
        if let Some(store) = &self.store {
            inv.stale = store
                .targets()
                .into_iter()
                .filter_map(|t| {
                    let why = t.last_error?;
                    Some((format!("{}/{}", t.key.namespace, t.key.pod), why))
                })
                .collect();
        }
        Ok(inv)
    }

    /// Refuses a window longer than the embedded store keeps.
    fn kept<R: Windowed>(&self, req: R) -> Result<R, String> {
        match &self.store {
            Some(store) if req.window() > store.retention() => Err(format!(
                "a {} window is longer than the {} of history this metrics API keeps (strand-controller --metrics-retention); ask a Prometheus server with --prometheus-url",
                crate::format_duration(req.window()),
                crate::format_duration(store.retention()),
            )),
            _ => Ok(req),
        }
    }

    async fn stat(&self, req: &StatRequest) -> Response<Full<Bytes>> {
        let inv = match self.inventory().await {
            Ok(inv) => inv,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
        };
        match stat::stat(&*self.eval, &inv, req).await {
            Ok(rsp) => json(StatusCode::OK, &rsp),
            Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    }

    async fn edges(&self, req: &EdgesRequest) -> Response<Full<Bytes>> {
        let inv = match self.inventory().await {
            Ok(inv) => inv,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
        };
        match stat::edges(&*self.eval, &inv, req).await {
            Ok(rsp) => json(StatusCode::OK, &rsp),
            Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    }

    async fn routes(&self, req: &RoutesRequest) -> Response<Full<Bytes>> {
        let inv = match self.inventory().await {
            Ok(inv) => inv,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
        };
        match routes::routes(&*self.eval, &inv, req).await {
            Ok(rsp) => json(StatusCode::OK, &rsp),
            Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    }

    fn targets(&self) -> Response<Full<Bytes>> {
        let Some(store) = &self.store else {
            return error(
                StatusCode::NOT_FOUND,
                "this metrics API reads Prometheus; it scrapes nothing itself",
            );
        };
        let out: Vec<TargetStatus> = store
            .targets()
            .into_iter()
            .map(|t| TargetStatus {
                namespace: t.key.namespace,
                pod: t.key.pod,
                labels: t.labels,
                last_error: t.last_error,
                last_success_unix: t.last_success.and_then(|s| {
                    s.duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs_f64())
                }),
                series: t.series,
            })
            .collect();
        json(StatusCode::OK, &out)
    }

    fn traces(&self, limit: usize) -> Response<Full<Bytes>> {
        let Some(store) = self.traces.as_deref() else {
            return no_trace_store();
        };
        let list = TraceList {
            traces: store.list(limit),
            stats: store.stats(),
        };
        json(StatusCode::OK, &list)
    }

    fn trace(&self, id: &TraceId) -> Response<Full<Bytes>> {
        let Some(store) = self.traces.as_deref() else {
            return no_trace_store();
        };
        match store.get(id) {
            Some(trace) => json(StatusCode::OK, &trace),
            None => error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no trace {id}: no proxy reported it, or it was dropped (the control plane keeps the last {} spans)",
                    store.limits().max_spans
                ),
            ),
        }
    }

    async fn prometheus_sd(&self) -> Response<Full<Bytes>> {
        match self.source.targets().await {
            Ok(targets) => {
                let groups: Vec<SdGroup> = targets
                    .into_iter()
                    .map(|t| SdGroup {
                        targets: vec![t.addr.to_string()],
                        labels: t.labels,
                    })
                    .collect();
                json(StatusCode::OK, &groups)
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
        }
    }
}

/// A request over a time window.
trait Windowed {
    fn window(&self) -> Duration;
}

impl Windowed for StatRequest {
    fn window(&self) -> Duration {
        self.window
    }
}

impl Windowed for EdgesRequest {
    fn window(&self) -> Duration {
        self.window
    }
}

impl Windowed for RoutesRequest {
    fn window(&self) -> Duration {
        self.window
    }
}

/// A `stat` question from its query parameters (`resource`, `namespace`,
/// `from`, `to`, `window` in seconds).
pub fn stat_request(q: &BTreeMap<String, String>) -> Result<StatRequest, String> {
    let resource: ResourceRef = q
        .get("resource")
        .ok_or("missing `resource` (deploy, po, svc, ns, optionally /NAME)")?
        .parse()
        .map_err(|e: stat::BadResource| e.to_string())?;
    let parse_ref = |k: &str| -> Result<Option<ResourceRef>, String> {
        match q.get(k).filter(|v| !v.is_empty()) {
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e: stat::BadResource| format!("{k}: {e}")),
            None => Ok(None),
        }
    };
    Ok(StatRequest {
        resource,
        namespace: q.get("namespace").filter(|v| !v.is_empty()).cloned(),
        from: parse_ref("from")?,
        to: parse_ref("to")?,
        window: window(q)?,
    })
}

/// An `edges` question from its query parameters (`resource` `deploy` or
/// `po`, `namespace`, `window` in seconds).
pub fn edges_request(q: &BTreeMap<String, String>) -> Result<EdgesRequest, String> {
    let resource: ResourceRef = q
        .get("resource")
        .ok_or("missing `resource` (deploy or po)")?
        .parse()
        .map_err(|e: stat::BadResource| e.to_string())?;
    if !matches!(resource.kind, ResourceKind::Deployment | ResourceKind::Pod) {
        return Err("edges are between deployments (deploy) or pods (po)".into());
    }
    Ok(EdgesRequest {
        kind: resource.kind,
        namespace: q.get("namespace").filter(|v| !v.is_empty()).cloned(),
        window: window(q)?,
    })
}

/// A `routes` question from its query parameters: `resource`
/// (`deploy/NAME`, `po/NAME`, `ns/NAME` or `svc/NAME`), `namespace`, `to`
/// (`svc/NAME`), `to_namespace` (the `to` Service's; default `namespace`)
/// and `window` in seconds.
pub fn routes_request(q: &BTreeMap<String, String>) -> Result<RoutesRequest, String> {
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty());
    let resource: ResourceRef = get("resource")
        .ok_or("missing `resource` (deploy/NAME, po/NAME, ns/NAME or svc/NAME)")?
        .parse()
        .map_err(|e: stat::BadResource| e.to_string())?;
    let to = match get("to") {
        Some(v) => Some(
            v.parse()
                .map_err(|e: stat::BadResource| format!("to: {e}"))?,
        ),
        None => None,
    };
    let req = RoutesRequest {
        resource,
        namespace: get("namespace").cloned(),
        to,
        to_namespace: get("to_namespace").cloned(),
        window: window(q)?,
    };
    req.validate().map_err(|e| e.to_string())?;
    Ok(req)
}

/// How many traces to list: `limit`, default [`DEFAULT_TRACES_LIMIT`],
/// 1 to [`MAX_TRACES_LIMIT`].
pub fn traces_limit(q: &BTreeMap<String, String>) -> Result<usize, String> {
    let Some(v) = q.get("limit") else {
        return Ok(DEFAULT_TRACES_LIMIT);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_TRACES_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit: {v:?} is not a number of traces from 1 to {MAX_TRACES_LIMIT}"
        )),
    }
}

/// `window` in seconds, default 60.
fn window(q: &BTreeMap<String, String>) -> Result<Duration, String> {
    let secs = match q.get("window") {
        None => 60.0,
        Some(v) => v
            .parse::<f64>()
            .map_err(|_| format!("window: {v:?} is not a number of seconds"))?,
    };
    let w = Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("window: {secs} is not a duration"))?;
    if w < Duration::from_secs(1) || w > MAX_WINDOW {
        return Err(format!(
            "window: {secs}s is out of range (1s to {}s)",
            MAX_WINDOW.as_secs()
        ));
    }
    Ok(w)
}

/// `a=1&b=x%2Fy` into a map (the last of repeated keys wins).
pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' => bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer about traces when no collector feeds this API.
fn no_trace_store() -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "this metrics API collects no traces (the local control plane's does)",
    )
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(status, "application/json", bytes),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    respond(status, "application/json", body)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain", body.as_bytes().to_vec())
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        rsp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    rsp
}

#[cfg(test)]
mod tests;
