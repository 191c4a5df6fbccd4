//! The proxies the metrics API scrapes: one HTTP/1 listener each on
//! `127.0.0.1`, answering `GET /metrics` with what the proxy's own
//! `strand_proxy::metrics::Metrics` encodes for a busy proxy's traffic.
//!
//! ```text
//!  pod app-<w>-<r> (workload w of W)
//!   inbound:  from app-<w-1>, app-<w-2>, app-<w-3> (mTLS client_id) ─► 200 | 500
//!   outbound: to app-<w+1> .. app-<w+4>, 2 endpoints each (dst_*, server_id) ─► 200 | 500
//!   each with request/response counters, a latency histogram, tcp open/close
//! ```
//!
//! Every route is primed with both statuses and a failed connection, so the
//! set of series is fixed from the first scrape; before every answer a
//! little more traffic is recorded, so that counters advance between
//! scrapes as they do on a live proxy.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use strand_proxy::metrics::{
    Classification, Direction, DstLabels, Metrics, Peer, PeerId, ResponseLabels, TargetLabels,
    TcpConn, TcpLabels, Tls,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::cluster::{self, MeshPod};

/// Callers of each workload, and services each calls (two endpoints each).
const CLIENTS: usize = 3;
const SERVICES: usize = 4;
const ENDPOINTS_PER_SERVICE: usize = 2;

/// Requests recorded per route before each scrape: at the default 10 s
/// interval, 9 inbound and 12 outbound requests per second per proxy. The
/// numbers only change the counters' values, not the series.
const INBOUND_REQUESTS: u32 = 30;
const OUTBOUND_REQUESTS: u32 = 15;

/// One request in this many fails with a 500 (after priming).
const ERROR_ONE_IN: u32 = 50;

/// A scraper that connects and sends nothing is dropped after this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running proxies' metrics endpoints; stopped on drop.
pub struct Proxies {
    proxies: Vec<Arc<Proxy>>,
    scrapes: Arc<ScrapeLog>,
    _tasks: JoinSet<()>,
}

/// When each scrape arrived.
#[derive(Default)]
struct ScrapeLog(Mutex<Vec<Instant>>);

/// One proxy's metrics and the traffic it records.
struct Proxy {
    metrics: Arc<Metrics>,
    routes: Vec<Route>,
    /// One long-lived connection per route, so `tcp_open_connections` is
    /// not zero.
    open: Vec<TcpConn>,
}

/// Requests from one client, or to one endpoint.
struct Route {
    target: TargetLabels,
    ok: ResponseLabels,
    failed: ResponseLabels,
    tcp: TcpLabels,
    requests: u32,
    /// The typical latency, in milliseconds.
    base_ms: f64,
}

/// One encoded exposition.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Exposition {
    pub body_bytes: usize,
    /// Sample lines (not comments).
    pub series: usize,
}

// === impl Proxies ===

impl Proxies {
    /// One listener per proxy, before the pods that name them exist.
    pub async fn bind(n: usize) -> anyhow::Result<Vec<TcpListener>> {
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            listeners.push(
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .context("binding a proxy's metrics listener")?,
            );
        }
        Ok(listeners)
    }

    /// Serves pod `i`'s proxy on `listeners[i]`.
    pub fn start(listeners: Vec<TcpListener>, pods: &[MeshPod]) -> Proxies {
        let scrapes = Arc::new(ScrapeLog::default());
        let mut tasks = JoinSet::new();
        let mut proxies = Vec::with_capacity(pods.len());
        for (listener, pod) in listeners.into_iter().zip(pods) {
            let proxy = Arc::new(Proxy::new(pod, pods));
            tasks.spawn(serve(listener, Arc::clone(&proxy), Arc::clone(&scrapes)));
            proxies.push(proxy);
        }
        Proxies {
            proxies,
            scrapes,
            _tasks: tasks,
        }
    }

    /// What the first proxy would answer now (without adding traffic).
    pub fn exposition(&self) -> Exposition {
        let text = self
            .proxies
            .first()
            .map(|p| p.metrics.encode())
            .unwrap_or_default();
        Exposition {
            body_bytes: text.len(),
            series: text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count(),
        }
    }

    /// When the scrapes since `since` arrived, in order.
    pub fn scrapes_since(&self, since: Instant) -> Vec<Instant> {
        let log = self
            .scrapes
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.iter().copied().filter(|t| *t >= since).collect()
    }
}

async fn serve(listener: TcpListener, proxy: Arc<Proxy>, scrapes: Arc<ScrapeLog>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Usually EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (proxy, scrapes) = (Arc::clone(&proxy), Arc::clone(&scrapes));
        let svc = hyper::service::service_fn(move |req| {
            let (proxy, scrapes) = (Arc::clone(&proxy), Arc::clone(&scrapes));
            async move { Ok::<_, Infallible>(proxy.handle(&req, &scrapes)) }
        });
        // One connection at a time, as the scraper opens one per scrape;
        // served inline so that stopping the task closes it.
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
    }
}

// === impl Proxy ===

impl Proxy {
    /// Pod `pod`'s proxy, its peers taken from `pods`.
    fn new(pod: &MeshPod, pods: &[MeshPod]) -> Proxy {
        let workloads = pods.iter().map(|p| p.workload + 1).max().unwrap_or(1);
        let own_addr: Arc<str> = app_addr(pod.ip).into();
        let mut routes = Vec::with_capacity(CLIENTS + SERVICES * ENDPOINTS_PER_SERVICE);
        for k in 1..=CLIENTS {
            let client = (pod.workload + workloads * CLIENTS - k) % workloads;
            let tls = Tls::Established(PeerId::Client(Some(cluster::identity(client).into())));
            let target = TargetLabels {
                direction: Direction::Inbound,
                authority: Some(cluster::authority(pod.workload).into()),
                target_addr: Arc::clone(&own_addr),
                tls: tls.clone(),
                dst: DstLabels::default(),
            };
            let tcp = TcpLabels {
                direction: Direction::Inbound,
                peer: Peer::Src,
                target_addr: Arc::clone(&own_addr),
                tls,
            };
            routes.push(Route::new(target, tcp, INBOUND_REQUESTS, 4.0 * k as f64));
        }
        for k in 1..=SERVICES {
            let service = (pod.workload + k) % workloads;
            let replicas: Vec<&MeshPod> = pods.iter().filter(|p| p.workload == service).collect();
            let mut endpoints: Vec<&MeshPod> = (0..ENDPOINTS_PER_SERVICE)
                .filter_map(|j| replicas.get((pod_index(pod) + j) % replicas.len().max(1)))
                .copied()
                .collect();
            endpoints.dedup_by_key(|p| p.ip);
            for ep in endpoints {
                let tls = Tls::Established(PeerId::Server(cluster::identity(service).into()));
                let addr: Arc<str> = app_addr(ep.ip).into();
                let target = TargetLabels {
                    direction: Direction::Outbound,
                    authority: Some(cluster::authority(service).into()),
                    target_addr: Arc::clone(&addr),
                    tls: tls.clone(),
                    dst: dst_labels(ep, service),
                };
                let tcp = TcpLabels {
                    direction: Direction::Outbound,
                    peer: Peer::Dst,
                    target_addr: addr,
                    tls,
                };
                routes.push(Route::new(target, tcp, OUTBOUND_REQUESTS, 2.0 * k as f64));
            }
        }
        let metrics = Metrics::new();
        let open = routes
            .iter()
            .map(|r| metrics.tcp_open(r.tcp.clone()))
            .collect();
        let proxy = Proxy {
            metrics,
            routes,
            open,
        };
        proxy.prime();
        proxy
    }

    fn handle(&self, req: &Request<Incoming>, scrapes: &ScrapeLog) -> Response<Full<Bytes>> {
        if req.method() != Method::GET || req.uri().path() != "/metrics" {
            let mut rsp = Response::new(Full::new(Bytes::from_static(b"try GET /metrics\n")));
            *rsp.status_mut() = StatusCode::NOT_FOUND;
            return rsp;
        }
        scrapes
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        self.traffic();
        let mut rsp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ),
        );
        rsp
    }

    /// Records one of each outcome on every route, so every series exists.
    fn prime(&self) {
        for r in &self.routes {
            for rsp in [&r.ok, &r.failed] {
                self.metrics.request(&r.target);
                self.metrics.response_latency(rsp, ago(r.base_ms));
                self.metrics.response_end(rsp);
            }
            let mut conn = self.metrics.tcp_open(r.tcp.clone());
            conn.set_failed();
            drop(conn);
            drop(self.metrics.tcp_open(r.tcp.clone()));
        }
        self.traffic();
    }

    /// A scrape interval's worth of traffic: requests with a spread of
    /// latencies and a few errors, and one short connection per route.
    fn traffic(&self) {
        for (r, open) in self.routes.iter().zip(&self.open) {
            for _ in 0..r.requests {
                self.metrics.request(&r.target);
                let rsp = if fastrand::u32(..ERROR_ONE_IN) == 0 {
                    &r.failed
                } else {
                    &r.ok
                };
                // Mostly within 0.25-1.75x the typical latency; one in 50
                // ten times slower, for a tail.
                let mut ms = r.base_ms * (0.25 + 1.5 * fastrand::f64());
                if fastrand::u32(..50) == 0 {
                    ms *= 10.0;
                }
                self.metrics.response_latency(rsp, ago(ms));
                self.metrics.response_end(rsp);
            }
            let bytes = u64::from(r.requests);
            open.read.inc_by(bytes * 300);
            open.written.inc_by(bytes * 1_200);
            let mut conn = self.metrics.tcp_open(r.tcp.clone());
            conn.read.inc_by(300);
            conn.written.inc_by(1_200);
            if fastrand::u32(..10) == 0 {
                conn.set_failed();
            }
        }
    }
}

// === impl Route ===

impl Route {
    fn new(target: TargetLabels, tcp: TcpLabels, requests: u32, base_ms: f64) -> Route {
        let response = |status, classification| ResponseLabels {
            target: target.clone(),
            status_code: Some(status),
            classification,
            grpc_status: None,
            error: None,
        };
        Route {
            ok: response(200, Classification::Success),
            failed: response(500, Classification::Failure),
            target,
            tcp,
            requests,
            base_ms,
        }
    }
}

/// The `dst_*` labels discovery gives endpoint `ep` of service `service`
/// (set labels `namespace` and `service`, and the endpoint's `pod`,
/// `serviceaccount` and `deployment`; `controller/grpc`'s `weighted_addr`).
fn dst_labels(ep: &MeshPod, service: usize) -> DstLabels {
    let workload = cluster::workload_name(service);
    let labels: std::collections::BTreeMap<String, String> = [
        ("namespace", cluster::NAMESPACE.to_string()),
        ("service", workload.clone()),
        ("pod", ep.name.clone()),
        ("serviceaccount", workload.clone()),
        ("deployment", workload),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    DstLabels::from_discovery(&labels)
}

fn app_addr(ip: IpAddr) -> String {
    SocketAddr::new(ip, cluster::APP_PORT).to_string()
}

/// The replica number within its workload (the pod name's suffix).
fn pod_index(pod: &MeshPod) -> usize {
    pod.name
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An instant `ms` milliseconds ago: `response_latency` measures from it.
fn ago(ms: f64) -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs_f64(ms / 1e3))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(n: usize) -> Vec<MeshPod> {
        (0..n)
            .map(|i| MeshPod {
                name: cluster::pod_name(i),
                workload: i / cluster::REPLICAS,
                ip: IpAddr::from([10, 42, 0, u8::try_from(i + 2).expect("a small mesh")]),
            })
            .collect()
    }

    #[test]
    fn a_proxy_has_the_full_mix_from_the_first_scrape() {
        let pods = pods(100);
        let proxy = Proxy::new(&pods[37], &pods);
        assert_eq!(
            proxy.routes.len(),
            CLIENTS + SERVICES * ENDPOINTS_PER_SERVICE
        );
        let before = proxy.metrics.encode();
        proxy.traffic();
        let after = proxy.metrics.encode();
        let series = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
        // Traffic moves counters but adds no series.
        assert_eq!(series(&before), series(&after));
        assert_ne!(before, after);
        for needle in [
            r#"request_total{direction="inbound",authority="app-3.bench.svc.cluster.local:8080",target_addr="10.42.0.39:8080",tls="true",client_id="app-2.bench.serviceaccount.identity.linkerd.cluster.local"}"#,
            r#"client_id="app-0.bench.serviceaccount.identity.linkerd.cluster.local""#,
            r#"direction="outbound",authority="app-7.bench.svc.cluster.local:8080""#,
            r#"tls="true",server_id="app-4.bench.serviceaccount.identity.linkerd.cluster.local",dst_deployment="app-4",dst_namespace="bench",dst_pod="app-4-7",dst_service="app-4",dst_serviceaccount="app-4""#,
            r#"status_code="500",classification="failure""#,
            r#"tcp_close_total{direction="outbound",peer="dst""#,
            r#"classification="failure"}"#,
            "response_latency_ms_bucket{",
        ] {
            assert!(after.contains(needle), "no {needle} in:\n{after}");
        }
    }

    #[test]
    fn small_meshes_wrap_around() {
        let pods = pods(1);
        let proxy = Proxy::new(&pods[0], &pods);
        // Every route of the one workload is itself; outbound has one
        // endpoint per service.
        assert_eq!(proxy.routes.len(), CLIENTS + SERVICES);
        assert!(proxy.metrics.encode().contains("dst_pod=\"app-0-0\""));
    }
}
