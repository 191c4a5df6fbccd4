//! `strand viz dashboard`: the web dashboard, served from this process as
//! `linkerd viz dashboard` serves Linkerd's (through a port-forward).
//!
//! ```text
//!  browser ──http://127.0.0.1:50750/──▶ strand viz dashboard
//!     /, /app.js, /style.css   the page (in the binary; no build step, no CDN)
//!     /api/config              where the numbers come from, Grafana's URL
//!     /api/stat, /api/edges,   ──▶ the metrics API, or Prometheus (--prometheus-url)
//!     /api/routes
//!     /api/tap                 ──▶ every pod's tap API over mTLS, one JSON event per line
//! ```
//!
//! The page lists namespaces, then a namespace's workloads, pods, Services
//! and edges, then a workload's or pod's callers and callees, the
//! ServiceProfile routes of its calls and its live requests; tables
//! refresh every 2 s.
//!
//! Live requests carry their headers, so the dashboard answers only
//! requests addressed to the loopback names it listens on (a page
//! elsewhere cannot reach it through DNS rebinding); listening on another
//! address is a choice the user makes with `--address`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use strand_viz::stat::{ResourceKind, ResourceRef};
use tokio::net::TcpListener;

use super::tap::{self, TapFilter};
use crate::ctx::Ctx;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Requests a live-requests stream follows at most (`max`), and by default.
const TAP_MAX: u32 = 10_000;
const TAP_DEFAULT: u32 = 1_000;

/// A browser sends its request head at once; a slow one is cut off.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, Infallible>;

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// The address to listen on. Live requests show headers: anyone who can
    /// reach a non-loopback address sees them.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// The port to listen on (0: any free one; the printed URL says which).
    #[arg(long, default_value_t = 50750)]
    port: u16,
    /// Ask this Prometheus server (which scrapes the proxies with the
    /// configuration `strand viz prometheus-config` prints) instead of the
    /// control plane's metrics API.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    /// A Grafana server with strand's dashboards: workload and pod pages
    /// link to their Grafana dashboards there.
    #[arg(long, value_name = "URL")]
    grafana_url: Option<String>,
}

/// What every request needs.
struct Dashboard {
    ctx: Ctx,
    prometheus_url: Option<String>,
    grafana_url: Option<String>,
    /// The address listened on, for the `Host` check.
    listen: IpAddr,
}

pub async fn dashboard(ctx: &Ctx, args: DashboardArgs) -> anyhow::Result<u8> {
    // Fail now, not on the first page load, when there is nothing to show.
    ctx.cluster()?;
    if let Some(url) = &args.prometheus_url {
        strand_viz::prom::PrometheusClient::new(url).context("--prometheus-url")?;
    }
    let grafana_url = match args.grafana_url {
        Some(url) => Some(grafana_base(&url)?),
        None => None,
    };
    let addr = SocketAddr::new(args.address, args.port);
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (another dashboard running? choose one with --port)")
    })?;
    let addr = listener.local_addr()?;
    let dashboard = Arc::new(Dashboard {
        ctx: ctx.clone(),
        prometheus_url: args.prometheus_url,
        grafana_url,
        listen: addr.ip(),
    });
    println!("strand dashboard available at http://{addr}/");
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {addr}: whoever reaches it sees the mesh's live requests and their headers"
        );
    }
    println!("Press Ctrl-C to stop");
    loop {
        let (tcp, _) = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("strand: dashboard: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let dashboard = Arc::clone(&dashboard);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let dashboard = Arc::clone(&dashboard);
                async move { Ok::<_, Infallible>(dashboard.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
    Ok(0)
}

/// Grafana's URL without a trailing `/`; only http(s).
fn grafana_base(url: &str) -> anyhow::Result<String> {
    let base = url.trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(base.to_string())
        }
        _ => bail!("--grafana-url {url:?}: expected http://HOST[:PORT][/PATH] or https://..."),
    }
}

// === impl Dashboard ===

impl Dashboard {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !host_allowed(host, self.listen) {
            return error(
                StatusCode::FORBIDDEN,
                "the dashboard answers requests for localhost, 127.0.0.1 or [::1] only (or the address given with --address)",
            );
        }
        if req.method() != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
        }
        let query = strand_viz::api::parse_query(req.uri().query().unwrap_or(""));
        match req.uri().path() {
            "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
            "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
            "/api/config" => json_response(
                StatusCode::OK,
                &json!({
                    "source": match &self.prometheus_url {
                        Some(url) => format!("Prometheus at {url}"),
                        None => "the control plane's metrics API".to_string(),
                    },
                    "grafanaUrl": self.grafana_url,
                    "grafanaDashboards": grafana_uids(),
                }),
            ),
            "/api/stat" => match strand_viz::api::stat_request(&query) {
                Ok(req) => {
                    answer(super::fetch_stat(&self.ctx, self.prometheus_url.as_deref(), &req).await)
                }
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/edges" => match strand_viz::api::edges_request(&query) {
                Ok(req) => answer(
                    super::fetch_edges(&self.ctx, self.prometheus_url.as_deref(), &req).await,
                ),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/routes" => match strand_viz::api::routes_request(&query) {
                Ok(req) => answer(
                    super::fetch_routes(&self.ctx, self.prometheus_url.as_deref(), &req).await,
                ),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            "/api/tap" => match tap_filter(&query) {
                Ok(filter) => self.tap(filter).await,
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            _ => error(StatusCode::NOT_FOUND, "no such page"),
        }
    }

    /// The live requests `filter` names, one JSON object per line (as
    /// `strand viz tap -o json` prints them), until `max` requests ended,
    /// every pod's stream ended, or the browser went away. A pod that
    /// cannot be tapped is a `{"type":"error"}` line.
    async fn tap(&self, filter: TapFilter) -> Response<Body> {
        let rx = match tap::open(&self.ctx, &filter, true).await {
            Ok(rx) => rx,
            Err(e) => return error(StatusCode::BAD_GATEWAY, &format!("{e:#}")),
        };
        let max = filter.max_requests.unwrap_or(TAP_DEFAULT);
        // When the browser leaves, hyper drops the body and with it `rx`:
        // every pod's stream then ends at its next event.
        let lines = futures_util::stream::unfold((rx, 0u32), move |(mut rx, ended)| async move {
            if ended >= max {
                return None;
            }
            let (doc, end) = match rx.recv().await? {
                Ok(ev) => (tap::render_json(&ev), tap::is_end(&ev)),
                Err(e) => (json!({"type": "error", "error": e}), false),
            };
            let mut line = serde_json::to_vec(&doc).unwrap_or_default();
            line.push(b'\n');
            let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(line)));
            Some((frame, (rx, ended + u32::from(end))))
        });
        let mut rsp = Response::new(StreamBody::new(lines).boxed());
        set_headers(&mut rsp, "application/x-ndjson");
        rsp
    }
}

/// The `/api/tap` parameters: `resource` (`deploy/NAME`, `po/NAME`,
/// `ns/NAME`), `namespace`, and optionally `path` (a prefix), `method`,
/// `authority`, `scheme` and `max` (requests, 1 to 10,000; 1,000 by
/// default).
fn tap_filter(q: &std::collections::BTreeMap<String, String>) -> Result<TapFilter, String> {
    let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let resource: ResourceRef = get("resource")
        .ok_or("missing `resource` (deploy/NAME, po/NAME or ns/NAME)")?
        .parse()
        .map_err(|e: strand_viz::stat::BadResource| e.to_string())?;
    if resource.name.is_none() || resource.kind == ResourceKind::Service {
        return Err(
            "`resource` must name a workload, pod or namespace: deploy/NAME, po/NAME or ns/NAME"
                .into(),
        );
    }
    let max = match get("max") {
        None => TAP_DEFAULT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=TAP_MAX).contains(n))
            .ok_or_else(|| format!("max: {v:?} is not a number of requests from 1 to {TAP_MAX}"))?,
    };
    Ok(TapFilter {
        resource,
        namespace: get("namespace").unwrap_or_else(|| "default".into()),
        path: get("path"),
        method: get("method"),
        authority: get("authority"),
        scheme: get("scheme"),
        max_requests: Some(max),
    })
}

/// Whether a request's `Host` is one this dashboard answers: the loopback
/// names, or the address it listens on; anything when it listens on every
/// address.
fn host_allowed(host: Option<&str>, listen: IpAddr) -> bool {
    if listen.is_unspecified() {
        return true;
    }
    let Some(host) = host else { return false };
    // `name[:port]`, `[v6][:port]`.
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => v6,
            _ => return false,
        },
        None => host.split(':').next().unwrap_or(host),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == listen,
        Err(_) => false,
    }
}

/// The uids of the Grafana dashboards the page links to (`strand viz
/// grafana` writes them), by the kind of page: `deployment`, `pod`,
/// `namespace`. Each takes `var-namespace` and `var-<kind>`.
fn grafana_uids() -> serde_json::Map<String, serde_json::Value> {
    strand_viz::grafana::dashboards()
        .into_iter()
        .filter_map(|d| {
            let kind = d.file_name.strip_suffix(".json")?;
            matches!(kind, "deployment" | "pod" | "namespace")
                .then(|| (kind.to_string(), serde_json::Value::String(d.uid)))
        })
        .collect()
}

fn answer<T: serde::Serialize>(res: anyhow::Result<T>) -> Response<Body> {
    match res {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => error(StatusCode::BAD_GATEWAY, &format!("{e:#}")),
    }
}

fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => full(status, "application/json", Bytes::from(bytes)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    full(status, "application/json", Bytes::from(body))
}

fn asset(body: &'static str, content_type: &str) -> Response<Body> {
    full(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    )
}

fn full(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut rsp = Response::new(Full::new(body).boxed());
    *rsp.status_mut() = status;
    set_headers(&mut rsp, content_type);
    rsp
}

/// The content type, and what keeps the page to itself: nothing cached
/// (the numbers are live), scripts and styles from this server only.
fn set_headers(rsp: &mut Response<Body>, content_type: &str) {
    let h = rsp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

#[cfg(test)]
mod tests;
