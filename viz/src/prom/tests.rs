//! The client against a tiny server that answers like Prometheus's HTTP
//! API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::query::{Matcher, Selector};

/// Requests the fake saw: path and decoded `query`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn answer(req: &Request<Incoming>, seen: &Seen) -> (StatusCode, String) {
    let path = req.uri().path().to_string();
    let query = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("query="))
        .map(percent_decode);
    seen.lock().unwrap().push((path.clone(), query.clone()));
    match (path.as_str(), query.as_deref()) {
        ("/prom/api/v1/status/buildinfo", _) => (
            StatusCode::OK,
            r#"{"status":"success","data":{"version":"3.1.0","revision":"abc","branch":"HEAD"}}"#
                .into(),
        ),
        ("/prom/api/v1/query", Some(q)) if q.contains("bad") => (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error: unexpected identifier"}"#
                .into(),
        ),
        ("/prom/api/v1/query", Some(q)) if q.contains("scalar") => (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}"#
                .into(),
        ),
        ("/prom/api/v1/query", Some(_)) => (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"deployment":"web","classification":"success"},"value":[1700000000.123,"42.5"]},
                {"metric":{"deployment":"emoji","classification":"success"},"value":[1700000000.123,"+Inf"]},
                {"metric":{"deployment":"voting","classification":"failure"},"value":[1700000000.123,"NaN"]},
                {"metric":{},"value":[1700000000.123,"1e3"]}
            ]}}"#
                .into(),
        ),
        ("/prom/api/v1/targets", _) => (
            StatusCode::OK,
            r#"{"status":"success","data":{"activeTargets":[
                {"labels":{"instance":"10.42.0.5:4191","job":"strand-proxy","namespace":"emojivoto","pod":"web-1"},"health":"up","lastError":""},
                {"labels":{"instance":"10.42.0.6:4191","job":"strand-proxy","namespace":"emojivoto","pod":"web-2"},"health":"down","lastError":"connection refused"},
                {"labels":{"instance":"10.42.0.7:4191","job":"other"},"health":"down","lastError":"context deadline exceeded"},
                {"labels":{"instance":"10.42.0.8:4191"},"health":"unknown","lastError":""}
            ],"droppedTargets":[]}}"#
                .into(),
        ),
        ("/gateway/api/v1/query", _) => (StatusCode::BAD_GATEWAY, "upstream is down\n".into()),
        _ => (StatusCode::NOT_FOUND, "404 page not found".into()),
    }
}

async fn fake_prometheus() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (io, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (status, body) = answer(&req, &s);
                    async move {
                        let mut rsp = Response::new(Full::new(Bytes::from(body)));
                        *rsp.status_mut() = status;
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn query() -> Query {
    Query::Increase {
        sel: Selector::new("response_total")
            .with(Matcher::Eq("direction".into(), "inbound".into()))
            .with(Matcher::one_of("deployment", ["web", "emoji"])),
        window: Duration::from_secs(60),
        by: vec!["deployment".into(), "classification".into()],
    }
}

#[tokio::test]
async fn evaluates_through_the_query_api() {
    let (addr, seen) = fake_prometheus().await;
    let client = PrometheusClient::new(&format!("http://{addr}/prom/")).unwrap();
    assert_eq!(client.url(), format!("http://{addr}/prom"));
    assert_eq!(client.check().await.unwrap(), "3.1.0");

    let q = query();
    let got = client.eval(&q).await.unwrap();
    // Sorted by labels; NaN dropped; labels outside `by` are not invented.
    assert_eq!(
        got,
        vec![
            Sample {
                labels: BTreeMap::new(),
                value: 1000.0,
            },
            Sample {
                labels: [
                    ("classification".to_string(), "success".to_string()),
                    ("deployment".to_string(), "emoji".to_string()),
                ]
                .into(),
                value: f64::INFINITY,
            },
            Sample {
                labels: [
                    ("classification".to_string(), "success".to_string()),
                    ("deployment".to_string(), "web".to_string()),
                ]
                .into(),
                value: 42.5,
            },
        ]
    );
    assert_eq!(
        client.down_targets().await.unwrap(),
        BTreeMap::from([
            (
                "10.42.0.7:4191".to_string(),
                "context deadline exceeded".to_string()
            ),
            (
                "emojivoto/web-2".to_string(),
                "connection refused".to_string()
            ),
        ])
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("/prom/api/v1/status/buildinfo".to_string(), None),
            ("/prom/api/v1/query".to_string(), Some(q.to_promql())),
            ("/prom/api/v1/targets".to_string(), None),
        ]
    );
}

#[tokio::test]
async fn errors_say_what_prometheus_said() {
    let (addr, _) = fake_prometheus().await;
    let client = PrometheusClient::new(&format!("http://{addr}/prom")).unwrap();
    let err = client.query("bad query").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Prometheus at http://{addr}/prom: HTTP 400: invalid parameter \"query\": 1:1: parse error: unexpected identifier"
        )
    );
    let err = client.query("scalar(1)").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Prometheus at http://{addr}/prom: the query answered a scalar, not a vector")
    );

    let gateway = PrometheusClient::new(&format!("http://{addr}/gateway")).unwrap();
    let err = gateway.query("up").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Prometheus at http://{addr}/gateway: HTTP 502: upstream is down")
    );

    let root = PrometheusClient::new(&format!("http://{addr}")).unwrap();
    let err = root.check().await.unwrap_err();
    assert!(
        matches!(err, EvalError::Status { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn connect_and_timeout_errors() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let client = PrometheusClient::new(&format!("http://{refused}")).unwrap();
    let err = client.check().await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to Prometheus at http://{refused}: "
        )),
        "{err}"
    );

    // Accepts, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((io, _)) = listener.accept().await {
            held.push(io);
        }
    });
    let client = PrometheusClient::new(&format!("http://{addr}"))
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let err = client.eval(&query()).await.unwrap_err();
    assert!(matches!(err, EvalError::Timeout { .. }), "{err}");
}

#[test]
fn urls() {
    let ok = |url: &str, authority: &str, prefix: &str| {
        let c = PrometheusClient::new(url).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            (authority, prefix),
            "{url}"
        );
    };
    ok(
        "http://prometheus.linkerd-viz:9090",
        "prometheus.linkerd-viz:9090",
        "",
    );
    ok("http://prometheus", "prometheus:80", "");
    ok("HTTP://10.0.0.1:9090/", "10.0.0.1:9090", "");
    ok("http://[::1]:9090/a/b/", "[::1]:9090", "/a/b");
    ok("http://[::1]", "[::1]:80", "");
    ok(" http://p:1/x ", "p:1", "/x");

    let bad = |url: &str, reason: &str| {
        let e = PrometheusClient::new(url).unwrap_err().to_string();
        assert!(e.contains(reason), "{url}: {e}");
    };
    bad("https://p:9090", "only http:// is supported");
    bad("p:9090", "it must start with http://");
    bad("http://", "the host is missing");
    bad("http://:9090", "the host is missing");
    bad("http://p:x", "invalid port \"x\"");
    bad("http://p:70000", "invalid port");
    bad("http://user:pw@p:9090", "credentials are not supported");
    bad("http://p:9090/?x=1", "a query or fragment");
    bad("http://[::1:9090", "without its closing ']'");
    bad("http://a:b:9090", "invalid host");
    bad("http://p q:9090", "invalid host");
}

#[test]
fn url_encoding() {
    assert_eq!(url_encode("aZ09-._~"), "aZ09-._~");
    assert_eq!(
        url_encode(r#"sum by (a) (x{b=~"c\\.d|e"}[1m])"#),
        "sum%20by%20%28a%29%20%28x%7Bb%3D~%22c%5C%5C.d%7Ce%22%7D%5B1m%5D%29"
    );
    assert_eq!(url_encode("é+&"), "%C3%A9%2B%26");
    assert_eq!(
        percent_decode(&url_encode("sum(x{a=\"é\"})")),
        "sum(x{a=\"é\"})"
    );
}
