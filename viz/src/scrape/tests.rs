//! The scraper against real HTTP servers on 127.0.0.1: good, garbage,
//! oversized, silent and vanishing targets.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::*;
use crate::query::{Query, Selector};

/// How long a condition may take to turn true; `STRAND_TEST_PATIENCE_MS`
/// gives a slow machine more (as strand-testkit's `assert_eventually!`).
fn patience() -> Duration {
    std::env::var("STRAND_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < patience(),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// What a test server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Good,
    Garbage,
    /// 20 MiB, declared in `Content-Length`.
    Huge,
    /// 20 MiB, chunked: the limit must hold while reading.
    HugeChunked,
    NotFound,
}

struct Server {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

const GOOD: &str = "# HELP tcp_open_connections Number of currently-open connections.
# TYPE tcp_open_connections gauge
tcp_open_connections{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.5:8080\",tls=\"true\"} 3
# TYPE request_total counter
request_total{direction=\"inbound\",authority=\"web-svc.emojivoto:80\",target_addr=\"10.42.0.5:8080\",tls=\"true\"} 12
# EOF
";

fn respond(mode: Mode) -> Response<Body> {
    const HUGE: usize = 20 * 1024 * 1024;
    let (status, body): (StatusCode, Body) = match mode {
        Mode::Good => (
            StatusCode::OK,
            Full::new(Bytes::from_static(GOOD.as_bytes())).boxed(),
        ),
        Mode::Garbage => (
            StatusCode::OK,
            Full::new(Bytes::from_static(b"<html>\x00\xff{{{ not metrics\n")).boxed(),
        ),
        Mode::Huge => (
            StatusCode::OK,
            Full::new(Bytes::from(vec![b'#'; HUGE])).boxed(),
        ),
        Mode::HugeChunked => {
            let chunk = Bytes::from(vec![b'#'; 1024 * 1024]);
            let frames = (0..HUGE / chunk.len())
                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
            (
                StatusCode::OK,
                BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames))),
            )
        }
        Mode::NotFound => (StatusCode::NOT_FOUND, Full::new(Bytes::new()).boxed()),
    };
    let mut rsp = Response::new(body);
    *rsp.status_mut() = status;
    rsp
}

/// An HTTP/1 server on 127.0.0.1 answering every request per its mode.
async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = Arc::new(Mutex::new(mode));
    let requests = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let (m, n) = (mode.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (io, _) = tokio::select! {
                _ = &mut stopped => return,
                r = listener.accept() => r.unwrap(),
            };
            let (m, n) = (m.clone(), n.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    n.fetch_add(1, Ordering::SeqCst);
                    let mode = *m.lock().unwrap();
                    async move { Ok::<_, Infallible>(respond(mode)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        mode,
        requests,
        stop: Some(stop),
    }
}

/// Accepts connections and never answers; counts those the client closed.
async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let c = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut io, _) = listener.accept().await.unwrap();
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

fn target(pod: &str, addr: SocketAddr) -> ScrapeTarget {
    ScrapeTarget {
        key: TargetKey {
            namespace: "emojivoto".into(),
            pod: pod.into(),
        },
        labels: [
            ("namespace", "emojivoto"),
            ("pod", pod),
            ("deployment", pod.split('-').next().unwrap_or(pod)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        addr,
    }
}

fn info(store: &Store, pod: &str) -> Option<crate::store::TargetInfo> {
    store.targets().into_iter().find(|t| t.key.pod == pod)
}

fn error_of(store: &Store, pod: &str) -> String {
    info(store, pod)
        .and_then(|i| i.last_error)
        .unwrap_or_default()
}

const INTERVAL: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_good_targets_and_records_failures() {
    let good = server(Mode::Good).await;
    let garbage = server(Mode::Garbage).await;
    let huge = server(Mode::Huge).await;
    let chunked = server(Mode::HugeChunked).await;
    let missing = server(Mode::NotFound).await;
    let mut vanishing = server(Mode::Good).await;
    let (silent, closed) = silent_server().await;
    // A port nobody listens on: bind one, then free it.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };

    let targets = vec![
        target("web-1", good.addr),
        target("garbage-1", garbage.addr),
        target("huge-1", huge.addr),
        target("chunked-1", chunked.addr),
        target("missing-1", missing.addr),
        target("vanishing-1", vanishing.addr),
        target("silent-1", silent),
        target("refused-1", refused),
    ];
    let (tx, rx) = watch::channel(targets.clone());
    let store = Arc::new(Store::default());
    let config = ScrapeConfig {
        interval: INTERVAL,
        timeout: Duration::from_millis(500),
        max_body: 8 * 1024 * 1024,
        concurrency: 3,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(run(config, store.clone(), rx, stopped));

    eventually("every target scraped twice", || {
        store.targets().len() == 8 && good.requests.load(Ordering::SeqCst) >= 2
    })
    .await;
    eventually("every failure recorded", || {
        error_of(&store, "silent-1").contains("did not answer within 500ms")
    })
    .await;

    let web = info(&store, "web-1").unwrap();
    assert_eq!(web.last_error, None);
    assert!(web.last_success.is_some());
    assert_eq!(web.series, 2);
    assert_eq!(
        store.evaluate_at(
            &Query::Sum {
                sel: Selector::new("tcp_open_connections")
                    .with(crate::query::Matcher::Eq("pod".into(), "web-1".into())),
                by: vec!["deployment".into()],
            },
            SystemTime::now(),
        ),
        vec![crate::query::Sample {
            labels: [("deployment".to_string(), "web".to_string())].into(),
            value: 3.0,
        }]
    );

    let garbage_error = error_of(&store, "garbage-1");
    assert!(
        garbage_error.contains("the metrics cannot be parsed: line 1:"),
        "{garbage_error}"
    );
    for pod in ["huge-1", "chunked-1"] {
        let e = error_of(&store, pod);
        assert!(
            e.contains("the body is over the 8388608-byte limit"),
            "{pod}: {e}"
        );
    }
    let e = error_of(&store, "missing-1");
    assert!(e.ends_with("answered HTTP 404"), "{e}");
    let e = error_of(&store, "refused-1");
    assert!(
        e.starts_with(&format!("cannot connect to {refused}: ")),
        "{e}"
    );
    for pod in ["garbage-1", "huge-1", "missing-1", "refused-1"] {
        let i = info(&store, pod).unwrap();
        assert_eq!(
            (i.series, i.snapshots, i.last_success),
            (0, 0, None),
            "{pod}"
        );
    }
    // Timed-out scrapes leave no connection behind.
    eventually("the silent server's connections closed", || {
        closed.load(Ordering::SeqCst) >= 1
    })
    .await;

    // A target whose server goes away turns stale but keeps its data...
    eventually("the vanishing target scraped", || {
        info(&store, "vanishing-1").is_some_and(|i| i.snapshots >= 1)
    })
    .await;
    drop(vanishing.stop.take());
    eventually("the vanishing target failing", || {
        !error_of(&store, "vanishing-1").is_empty()
    })
    .await;
    assert!(info(&store, "vanishing-1").unwrap().snapshots >= 1);
    // ...until it leaves the list, when it is dropped at once.
    let rest: Vec<ScrapeTarget> = targets
        .iter()
        .filter(|t| t.key.pod != "vanishing-1")
        .cloned()
        .collect();
    tx.send(rest).unwrap();
    eventually("the vanishing target removed", || {
        info(&store, "vanishing-1").is_none()
    })
    .await;
    assert_eq!(store.targets().len(), 7);

    // A failing target recovers, and a good one can fail.
    *garbage.mode.lock().unwrap() = Mode::Good;
    *good.mode.lock().unwrap() = Mode::Garbage;
    eventually("garbage-1 recovered and web-1 failing", || {
        error_of(&store, "garbage-1").is_empty() && !error_of(&store, "web-1").is_empty()
    })
    .await;
    assert_eq!(info(&store, "garbage-1").unwrap().series, 2);

    // At most one scrape per interval, however slow the round.
    let scrapes = good.requests.load(Ordering::SeqCst);
    let intervals = started.elapsed().as_millis() / INTERVAL.as_millis() + 1;
    assert!(
        scrapes as u128 <= intervals,
        "{scrapes} scrapes in {intervals} intervals"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(patience(), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_closed_target_list_keeps_scraping_the_last_one() {
    let good = server(Mode::Good).await;
    let (tx, rx) = watch::channel(vec![target("web-1", good.addr)]);
    let store = Arc::new(Store::default());
    let config = ScrapeConfig {
        interval: Duration::from_millis(50),
        ..ScrapeConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config, store.clone(), rx, stopped));
    drop(tx);
    eventually("web-1 scraped three times", || {
        info(&store, "web-1").is_some_and(|i| i.snapshots >= 3)
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(patience(), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn targets_leave_at_once_even_during_a_slow_round() {
    let good = server(Mode::Good).await;
    let (silent, _) = silent_server().await;
    let targets = vec![target("silent-1", silent), target("web-1", good.addr)];
    let (tx, rx) = watch::channel(targets);
    let store = Arc::new(Store::default());
    let config = ScrapeConfig {
        interval: INTERVAL,
        timeout: Duration::from_secs(30),
        ..ScrapeConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config, store.clone(), rx, stopped));
    eventually("web-1 scraped", || info(&store, "web-1").is_some()).await;
    // The round waits on silent-1 for 30 s; web-1 goes now.
    let removed = Instant::now();
    tx.send(vec![target("silent-1", silent)]).unwrap();
    eventually("web-1 removed", || info(&store, "web-1").is_none()).await;
    assert!(removed.elapsed() < Duration::from_secs(5));
    // Shutdown does not wait for the round either.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn run_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (_tx, rx) = watch::channel(Vec::new());
    let fut = run(
        ScrapeConfig::default(),
        Arc::new(Store::default()),
        rx,
        std::future::pending::<()>(),
    );
    assert_send(&fut);
}

#[test]
fn default_config() {
    assert_eq!(
        ScrapeConfig::default(),
        ScrapeConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            max_body: 8 << 20,
            concurrency: 16,
        }
    );
}
