//! The metrics API end to end in one process: real HTTP servers as
//! proxies (one healthy, one answering garbage, one that vanishes), the
//! real scraper and store, the API server and its client.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use strand_viz::api::{InventorySource, MetricsApi};
use strand_viz::client::{ClientError, MetricsApiClient};
use strand_viz::routes::{DEFAULT_ROUTE, RoutesRequest};
use strand_viz::stat::{Inventory, PodInfo, StatRequest};
use strand_viz::{ScrapeConfig, ScrapeTarget, Store, TargetKey};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `body(n)` on every request, `n` counting requests.
async fn serve(body: fn(u64) -> String) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let hits = Arc::clone(&hits);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body(n)))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A proxy that served `100 * n` inbound requests, all fine.
fn healthy(n: u64) -> String {
    let l = r#"direction="inbound",target_addr="10.42.0.5:8080",tls="true""#;
    format!(
        "response_total{{{l},status_code=\"200\",classification=\"success\"}} {}\nresponse_latency_ms_bucket{{{l},le=\"1\"}} {}\nresponse_latency_ms_bucket{{{l},le=\"+Inf\"}} {}\ntcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.5:8080\",tls=\"true\"}} 1\n",
        100 * n,
        100 * n,
        100 * n
    )
}

/// A client proxy that sent `10 * n` requests on a ServiceProfile route of
/// emoji-svc (one in ten failing, each retried once more) and `n` that
/// matched none of its routes.
fn routed(n: u64) -> String {
    let route = |r: &str| {
        format!(
            r#"direction="outbound",dst="emoji-svc.shop.svc.cluster.local:8080",rt_route="{r}""#
        )
    };
    let (list, default) = (route("ListAll"), route(DEFAULT_ROUTE));
    format!(
        "route_response_total{{{list},status_code=\"200\",classification=\"success\"}} {}\n\
         route_response_total{{{list},status_code=\"500\",classification=\"failure\"}} {n}\n\
         route_actual_response_total{{{list},status_code=\"200\",classification=\"success\"}} {}\n\
         route_actual_response_total{{{list},status_code=\"500\",classification=\"failure\"}} {}\n\
         route_response_latency_ms_bucket{{{list},le=\"1\"}} {}\n\
         route_response_latency_ms_bucket{{{list},le=\"+Inf\"}} {}\n\
         route_response_total{{{default},status_code=\"200\",classification=\"success\"}} {n}\n",
        9 * n,
        9 * n,
        2 * n,
        10 * n,
        10 * n,
    )
}

fn garbage(_: u64) -> String {
    "\u{0}\u{1}not { prometheus = text\nresponse_total{direction=\"inbound\" 12 34 56\n".into()
}

struct Fixed(Vec<ScrapeTarget>);

/// The metrics API over a store that scrapes `targets` with `config`: a
/// client for it, and the sender that keeps the target list alive.
async fn metrics_api(
    targets: Vec<ScrapeTarget>,
    config: ScrapeConfig,
) -> (MetricsApiClient, watch::Sender<Vec<ScrapeTarget>>) {
    let store = Arc::new(Store::new(Duration::from_secs(120)));
    let (tx, rx) = watch::channel(targets.clone());
    tokio::spawn(strand_viz::run(
        config,
        Arc::clone(&store),
        rx,
        std::future::pending::<()>(),
    ));
    let api = MetricsApi::new(store.clone(), Arc::new(Fixed(targets)), Some(store), None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = MetricsApiClient::new(listener.local_addr().unwrap());
    tokio::spawn(api.serve(listener, std::future::pending::<()>()));
    (client, tx)
}

impl InventorySource for Fixed {
    fn inventory(&self) -> BoxFuture<'_, Result<Inventory, String>> {
        Box::pin(async move {
            Ok(Inventory {
                pods: self
                    .0
                    .iter()
                    .map(|t| PodInfo {
                        namespace: t.key.namespace.clone(),
                        name: t.key.pod.clone(),
                        workload: t.labels["deployment"].clone(),
                        meshed: true,
                        ready: true,
                        identity: None,
                    })
                    .collect(),
                ..Inventory::default()
            })
        })
    }

    fn targets(&self) -> BoxFuture<'_, Result<Vec<ScrapeTarget>, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn target(pod: &str, addr: SocketAddr) -> ScrapeTarget {
    let labels: BTreeMap<String, String> =
        [("namespace", "shop"), ("pod", pod), ("deployment", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    ScrapeTarget {
        key: TargetKey {
            namespace: "shop".into(),
            pod: pod.into(),
        },
        labels,
        addr,
    }
}

#[tokio::test]
async fn vanished_and_garbage_proxies_are_marked_stale() {
    let (good, _good) = serve(healthy).await;
    let (bad, _bad) = serve(garbage).await;
    let (gone, gone_task) = serve(healthy).await;
    let targets = vec![
        target("web-1", good),
        target("web-2", bad),
        target("web-3", gone),
    ];
    let config = ScrapeConfig {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(500),
        ..ScrapeConfig::default()
    };
    let (client, _targets) = metrics_api(targets, config).await;

    let req = StatRequest {
        resource: "deploy".parse().unwrap(),
        namespace: Some("shop".into()),
        from: None,
        to: None,
        window: Duration::from_secs(60),
    };
    // A few rounds, then web-3's server goes away.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gone_task.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rsp = loop {
        let rsp = client.stat(&req).await.unwrap();
        if rsp.stale.contains_key("shop/web-3") {
            break rsp;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rsp:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        rsp.stale["shop/web-2"].contains("cannot be parsed"),
        "{:?}",
        rsp.stale
    );
    let web = &rsp.rows[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.meshed, Some((3, 3)));
    assert_eq!(web.stale, ["web-2", "web-3"]);
    // web-1 and web-3 (before it went) both served traffic, all of it fine.
    assert!(web.rps > 0.0, "{web:?}");
    assert_eq!(web.success, Some(1.0));
    // Only web-1's connection is counted now: web-3's gauge is stale.
    assert_eq!(web.tcp_conn, Some(1.0));

    // Windows longer than the store keeps are refused, clearly.
    let mut long = req.clone();
    long.window = Duration::from_secs(3600);
    match client.stat(&long).await {
        Err(ClientError::Api { message, .. }) => {
            assert!(message.contains("longer than the 2m"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn routes_are_answered_over_http() {
    let (proxy, _proxy) = serve(routed).await;
    let targets = vec![target("web-1", proxy)];
    let config = ScrapeConfig {
        interval: Duration::from_millis(200),
        ..ScrapeConfig::default()
    };
    let (client, _targets) = metrics_api(targets, config).await;

    let req = RoutesRequest {
        resource: "deploy/web".parse().unwrap(),
        namespace: Some("shop".into()),
        to: Some("svc/emoji-svc".parse().unwrap()),
        to_namespace: None,
        window: Duration::from_secs(60),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rsp = loop {
        let rsp = client.routes(&req).await.unwrap();
        if rsp.routes.len() == 2 && rsp.routes.iter().all(|r| r.requests > 0.0) {
            break rsp;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rsp:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = rsp.routes.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["ListAll", DEFAULT_ROUTE]);
    let list = &rsp.routes[0];
    assert_eq!(list.service, "emoji-svc");
    assert!((list.success.unwrap() - 0.9).abs() < 1e-9, "{list:?}");
    // 9 of 11 attempts: each failed request was tried twice.
    assert!(
        (list.actual_success.unwrap() - 9.0 / 11.0).abs() < 1e-9,
        "{list:?}"
    );
    assert!(list.actual_rps > list.rps, "{list:?}");
    assert!(list.latency_p99_ms.unwrap() <= 1.0, "{list:?}");

    // Elsewhere there is nothing; a bad question is refused, clearly.
    let mut other = req.clone();
    other.to_namespace = Some("elsewhere".into());
    assert!(client.routes(&other).await.unwrap().routes.is_empty());
    let mut bad = req.clone();
    bad.to = Some("deploy/emoji".parse().unwrap());
    match client.routes(&bad).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("takes a Service"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
