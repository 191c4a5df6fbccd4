#![allow(clippy::unwrap_used)]

use super::*;
use crate::stat::PodInfo;
use crate::store::{Store, TargetKey};
use futures_util::future::BoxFuture;
use std::sync::Mutex;
use std::time::SystemTime;

/// The store, evaluated at a fixed time.
struct At(Store, SystemTime);

impl Evaluate for At {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        Box::pin(async move { Ok(self.0.evaluate_at(q, self.1)) })
    }
}

/// Records the PromQL of every query and answers nothing.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Evaluate for Recorder {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        self.0.lock().unwrap().push(q.to_promql());
        Box::pin(async { Ok(Vec::new()) })
    }
}

const EMOJI: &str = "emoji-svc.emojivoto.svc.cluster.local:8080";
const VOTING: &str = "voting-svc.emojivoto.svc.cluster.local:8080";
const WEB: &str = "web-svc.emojivoto.svc.cluster.local:80";

/// One route's traffic per 10 s step: requests that succeed and fail, the
/// failed attempts retried on top, and the bucket (`le`) every response's
/// latency falls in.
struct Route {
    dst: &'static str,
    name: &'static str,
    ok: u64,
    failed: u64,
    retried: u64,
    le: &'static str,
}

const BUCKETS: [&str; 4] = ["1", "2", "5", "+Inf"];

/// A client proxy's route families after `step` steps of `routes`, as the
/// proxy writes them.
fn exposition(routes: &[Route], step: u64) -> String {
    let mut out = String::from("# TYPE route_response_total counter\n");
    for r in routes {
        let labels = format!(
            r#"direction="outbound",dst="{}",rt_route="{}""#,
            r.dst, r.name
        );
        let (ok, failed) = (r.ok * step, r.failed * step);
        let attempts_failed = (r.failed + r.retried) * step;
        out.push_str(&format!(
            "route_request_total{{{labels}}} {}\n",
            ok + failed
        ));
        out.push_str(&format!(
            "route_response_total{{{labels},status_code=\"200\",classification=\"success\"}} {ok}\n\
             route_response_total{{{labels},status_code=\"500\",classification=\"failure\"}} {failed}\n\
             route_actual_request_total{{{labels}}} {}\n\
             route_actual_response_total{{{labels},status_code=\"200\",classification=\"success\"}} {ok}\n\
             route_actual_response_total{{{labels},status_code=\"500\",classification=\"failure\"}} {attempts_failed}\n",
            ok + attempts_failed
        ));
        let mut reached = false;
        for le in BUCKETS {
            reached |= le == r.le;
            let n = if reached { ok + failed } else { 0 };
            out.push_str(&format!(
                "route_response_latency_ms_bucket{{{labels},le=\"{le}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "route_response_latency_ms_sum{{{labels}}} {}\nroute_response_latency_ms_count{{{labels}}} {}\n",
            ok + failed,
            ok + failed
        ));
    }
    out
}

fn route(dst: &'static str, name: &'static str, ok: u64, failed: u64, le: &'static str) -> Route {
    Route {
        dst,
        name,
        ok,
        failed,
        retried: 0,
        le,
    }
}

/// web-1 calls emoji-svc (three routes and unmatched requests) and
/// voting-svc (one route whose failures are retried, one idle); vote-bot-1
/// calls web-svc.
fn clients() -> Vec<(&'static str, &'static str, Vec<Route>)> {
    vec![
        (
            "web-1",
            "web",
            vec![
                route(EMOJI, "ListAll", 100, 0, "2"),
                route(EMOJI, "FindByShortcode", 45, 5, "5"),
                route(EMOJI, "ping", 2, 0, "1"),
                route(EMOJI, DEFAULT_ROUTE, 10, 0, "2"),
                Route {
                    retried: 6,
                    ..route(VOTING, "VoteDoughnut", 27, 3, "2")
                },
                route(VOTING, "VoteBurrito", 0, 0, "1"),
            ],
        ),
        (
            "vote-bot-1",
            "vote-bot",
            vec![
                route(WEB, "GET /api/list", 20, 0, "5"),
                route(WEB, DEFAULT_ROUTE, 10, 0, "5"),
            ],
        ),
    ]
}

fn pod_info(name: &str, workload: &str) -> PodInfo {
    PodInfo {
        namespace: "emojivoto".into(),
        name: name.into(),
        workload: workload.into(),
        meshed: true,
        ready: true,
        identity: None,
    }
}

/// Four scrapes 10 s apart; the store is read at the last one.
fn fixture() -> (At, Inventory) {
    let store = Store::new(Duration::from_secs(600));
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (pod, workload, routes) in clients() {
        let key = TargetKey {
            namespace: "emojivoto".into(),
            pod: pod.into(),
        };
        let labels: BTreeMap<String, String> = [
            ("namespace", "emojivoto"),
            ("pod", pod),
            ("deployment", workload),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for step in 0..4u64 {
            let at = t0 + Duration::from_secs(10 * step);
            store
                .ingest(&key, &labels, at, exposition(&routes, step).as_bytes())
                .unwrap();
        }
    }
    let inv = Inventory {
        pods: vec![
            pod_info("web-1", "web"),
            pod_info("vote-bot-1", "vote-bot"),
            pod_info("emoji-1", "emoji"),
        ],
        services: Vec::new(),
        stale: [
            ("emojivoto/emoji-1".to_string(), "timed out".to_string()),
            ("emojivoto/web-1".to_string(), "refused".to_string()),
        ]
        .into_iter()
        .collect(),
    };
    (At(store, t0 + Duration::from_secs(30)), inv)
}

fn request(resource: &str) -> RoutesRequest {
    RoutesRequest {
        resource: resource.parse().unwrap(),
        namespace: Some("emojivoto".into()),
        to: None,
        to_namespace: None,
        window: Duration::from_secs(30),
    }
}

fn names(rsp: &RoutesResponse) -> Vec<(&str, &str)> {
    rsp.routes
        .iter()
        .map(|r| (r.service.as_str(), r.route.as_str()))
        .collect()
}

fn find<'a>(rsp: &'a RoutesResponse, route: &str) -> &'a RouteRow {
    rsp.routes
        .iter()
        .find(|r| r.route == route)
        .unwrap_or_else(|| panic!("no route {route}: {rsp:?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test]
async fn a_workloads_routes_are_those_of_its_calls() {
    let (eval, inv) = fixture();
    let rsp = routes(&eval, &inv, &request("deploy/web")).await.unwrap();
    assert_eq!(
        names(&rsp),
        [
            ("emoji-svc", "FindByShortcode"),
            ("emoji-svc", "ListAll"),
            ("emoji-svc", "ping"),
            ("emoji-svc", DEFAULT_ROUTE),
            ("voting-svc", "VoteBurrito"),
            ("voting-svc", "VoteDoughnut"),
        ],
        "by service, then route, [DEFAULT] last; vote-bot's calls are not web's"
    );

    // 100 requests per 10 s, all between 1 and 2 ms.
    let list = find(&rsp, "ListAll");
    assert_eq!(list.dst, EMOJI);
    assert_eq!(list.service_namespace.as_deref(), Some("emojivoto"));
    assert!(close(list.requests, 300.0), "{list:?}");
    assert!(close(list.rps, 10.0), "{list:?}");
    assert_eq!(list.success, Some(1.0));
    let p50 = list.latency_p50_ms.unwrap();
    assert!((1.0..=2.0).contains(&p50), "{list:?}");
    assert!(list.latency_p99_ms.unwrap() <= 2.0, "{list:?}");

    // A tenth fail (500s, failures by the default response class); 2-5 ms.
    let find_by = find(&rsp, "FindByShortcode");
    assert!(close(find_by.rps, 5.0), "{find_by:?}");
    assert!(close(find_by.success.unwrap(), 0.9), "{find_by:?}");
    let p95 = find_by.latency_p95_ms.unwrap();
    assert!((2.0..=5.0).contains(&p95), "{find_by:?}");

    let default = &rsp.routes[3];
    assert_eq!(default.route, DEFAULT_ROUTE);
    assert!(close(default.rps, 1.0), "{default:?}");
    assert_eq!(default.success, Some(1.0));

    // Known to the proxy, idle in the window: a row without numbers.
    let idle = find(&rsp, "VoteBurrito");
    assert_eq!(idle.requests, 0.0);
    assert_eq!(idle.success, None);
    assert_eq!(idle.latency_p50_ms, None);
    assert_eq!(idle.actual_success, None);

    // Only web's own proxy is stale for it.
    assert_eq!(
        rsp.stale.keys().collect::<Vec<_>>(),
        ["emojivoto/web-1"],
        "{rsp:?}"
    );
}

#[tokio::test]
async fn a_pod_and_a_namespace_read_the_same_series() {
    let (eval, inv) = fixture();
    let pod = routes(&eval, &inv, &request("po/web-1")).await.unwrap();
    assert_eq!(pod.routes.len(), 6, "{pod:?}");

    let ns = routes(&eval, &inv, &request("ns/emojivoto")).await.unwrap();
    assert_eq!(ns.routes.len(), 8, "web's and vote-bot's: {ns:?}");
}

#[tokio::test]
async fn to_keeps_the_calls_to_one_service() {
    let (eval, inv) = fixture();
    let mut req = request("deploy/web");
    req.to = Some("svc/voting-svc".parse().unwrap());
    let rsp = routes(&eval, &inv, &req).await.unwrap();
    assert_eq!(
        names(&rsp),
        [
            ("voting-svc", "VoteBurrito"),
            ("voting-svc", "VoteDoughnut")
        ]
    );

    // The service's namespace is --to-namespace's, else --namespace's.
    req.to_namespace = Some("emojivoto".into());
    assert_eq!(routes(&eval, &inv, &req).await.unwrap().routes.len(), 2);
    req.to_namespace = Some("other".into());
    assert!(routes(&eval, &inv, &req).await.unwrap().routes.is_empty());

    // A name is matched whole, not as a prefix of another.
    req.to_namespace = None;
    req.to = Some("svc/voting".parse().unwrap());
    assert!(routes(&eval, &inv, &req).await.unwrap().routes.is_empty());
}

#[tokio::test]
async fn a_services_routes_are_every_clients_calls_to_it() {
    let (eval, inv) = fixture();
    let rsp = routes(&eval, &inv, &request("svc/web-svc")).await.unwrap();
    assert_eq!(
        names(&rsp),
        [("web-svc", "GET /api/list"), ("web-svc", DEFAULT_ROUTE)]
    );
    assert!(close(rsp.routes[0].rps, 2.0), "{rsp:?}");
    assert_eq!(rsp.stale.len(), 2, "a service's clients may be anywhere");
}

#[tokio::test]
async fn retries_make_actual_differ_from_effective() {
    let (eval, inv) = fixture();
    let rsp = routes(&eval, &inv, &request("deploy/web")).await.unwrap();
    // 30 requests per 10 s, 3 failing after their retries; 6 failed
    // attempts were retried, so 36 attempts of which 9 failed.
    let vote = find(&rsp, "VoteDoughnut");
    assert!(close(vote.requests, 90.0), "{vote:?}");
    assert!(close(vote.rps, 3.0), "{vote:?}");
    assert!(close(vote.success.unwrap(), 0.9), "{vote:?}");
    assert!(close(vote.actual_requests, 108.0), "{vote:?}");
    assert!(close(vote.actual_rps, 3.6), "{vote:?}");
    assert!(close(vote.actual_success.unwrap(), 0.75), "{vote:?}");

    // Without retries the two agree.
    let list = find(&rsp, "ListAll");
    assert!(close(list.actual_rps, list.rps), "{list:?}");
    assert_eq!(list.actual_success, list.success);
}

#[tokio::test]
async fn no_route_metrics_say_where_to_look() {
    let (eval, inv) = fixture();
    let req = request("deploy/emoji");
    let rsp = routes(&eval, &inv, &req).await.unwrap();
    assert!(rsp.routes.is_empty(), "{rsp:?}");
    assert!(rsp.stale.contains_key("emojivoto/emoji-1"));
    assert_eq!(
        req.no_routes_message(),
        "no route metrics for deploy/emoji in namespace emojivoto in the last 30s: is there a ServiceProfile for the services it calls? see `strand profile --template`"
    );

    let mut req = request("deploy/web");
    req.to = Some("svc/emoji-svc".parse().unwrap());
    assert_eq!(
        req.no_routes_message(),
        "no route metrics for deploy/web in namespace emojivoto to svc/emoji-svc in the last 30s: is there a ServiceProfile for svc/emoji-svc? see `strand profile --template`"
    );
    assert_eq!(
        request("ns/emojivoto").no_routes_message(),
        "no route metrics for ns/emojivoto in the last 30s: is there a ServiceProfile for the services it calls? see `strand profile --template`"
    );
    let mut req = request("svc/web-svc");
    req.namespace = None;
    assert_eq!(
        req.no_routes_message(),
        "no route metrics for svc/web-svc in the last 30s: is there a ServiceProfile for it? see `strand profile --template`"
    );
}

#[tokio::test]
async fn promql_is_linkerds() {
    let rec = Recorder::default();
    let mut req = request("deploy/web");
    req.to = Some("svc/voting-svc".parse().unwrap());
    req.window = Duration::from_secs(60);
    routes(&rec, &Inventory::default(), &req).await.unwrap();
    let sel = r#"{direction="outbound", namespace="emojivoto", deployment="web", dst=~"voting-svc\\.emojivoto\\.svc\\..*"}"#;
    let want = [
        format!("sum by (dst, rt_route, classification) (increase(route_response_total{sel}[1m]))"),
        format!(
            "sum by (dst, rt_route, classification) (increase(route_actual_response_total{sel}[1m]))"
        ),
        format!(
            "histogram_quantile(0.5, sum by (le, dst, rt_route) (irate(route_response_latency_ms_bucket{sel}[1m])))"
        ),
        format!(
            "histogram_quantile(0.95, sum by (le, dst, rt_route) (irate(route_response_latency_ms_bucket{sel}[1m])))"
        ),
        format!(
            "histogram_quantile(0.99, sum by (le, dst, rt_route) (irate(route_response_latency_ms_bucket{sel}[1m])))"
        ),
    ];
    assert_eq!(*rec.0.lock().unwrap(), want);

    let rec = Recorder::default();
    routes(&rec, &Inventory::default(), &request("svc/web-svc"))
        .await
        .unwrap();
    assert_eq!(
        rec.0.lock().unwrap()[0],
        r#"sum by (dst, rt_route, classification) (increase(route_response_total{direction="outbound", dst=~"web-svc\\.emojivoto\\.svc\\..*"}[30s]))"#
    );

    let rec = Recorder::default();
    routes(&rec, &Inventory::default(), &request("po/web-1"))
        .await
        .unwrap();
    assert_eq!(
        rec.0.lock().unwrap()[0],
        r#"sum by (dst, rt_route, classification) (increase(route_response_total{direction="outbound", namespace="emojivoto", pod="web-1"}[30s]))"#
    );
}

#[test]
fn services_are_named_by_their_authority() {
    let s = |dst: &str| service_of(dst);
    assert_eq!(s(EMOJI), ("emoji-svc".into(), Some("emojivoto".into())));
    assert_eq!(
        s("web-svc.emojivoto.svc.example.org"),
        ("web-svc".into(), Some("emojivoto".into()))
    );
    assert_eq!(s("api.example.com:443"), ("api.example.com".into(), None));
    assert_eq!(
        s("web-svc.emojivoto:80"),
        ("web-svc.emojivoto".into(), None)
    );
    assert_eq!(s("10.0.0.1:80"), ("10.0.0.1".into(), None));
}

#[test]
fn requests_are_checked() {
    let bad = |resource: &str, to: Option<&str>, to_ns: Option<&str>| {
        let mut req = request(resource);
        req.to = to.map(|t| t.parse().unwrap());
        req.to_namespace = to_ns.map(str::to_string);
        req.validate().unwrap_err().to_string()
    };
    assert!(bad("deploy", None, None).contains("name the resource"));
    assert!(bad("deploy/web", Some("deploy/emoji"), None).contains("takes a Service"));
    assert!(bad("deploy/web", Some("svc"), None).contains("takes a Service"));
    assert!(bad("svc/web-svc", Some("svc/emoji-svc"), None).contains("already"));
    assert!(bad("deploy/web", None, Some("emojivoto")).contains("needs --to"));
    let mut ok = request("ns/emojivoto");
    ok.to = Some("svc/emoji-svc".parse().unwrap());
    ok.to_namespace = Some("other".into());
    assert!(ok.validate().is_ok());
}
