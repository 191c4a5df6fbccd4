#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::{Store, TargetKey};
use futures_util::future::BoxFuture;
use std::time::SystemTime;

/// The store, evaluated at a fixed time.
struct At(Store, SystemTime);

impl Evaluate for At {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        Box::pin(async move { Ok(self.0.evaluate_at(q, self.1)) })
    }
}

const ID: &str = "serviceaccount.identity.linkerd.cluster.local";

/// A proxy's exposition after `n` of its requests: `web-1` serves
/// inbound requests (a tenth fail) and calls emoji over mTLS; `emoji-1`
/// serves them.
fn exposition(pod: &str, n: u64) -> String {
    let bucket = |labels: &str, n: u64| {
        // Every response took between 1 and 2 ms.
        format!(
            "response_latency_ms_bucket{{{labels},le=\"1\"}} 0\nresponse_latency_ms_bucket{{{labels},le=\"2\"}} {n}\nresponse_latency_ms_bucket{{{labels},le=\"+Inf\"}} {n}\n"
        )
    };
    match pod {
        "web-1" => {
            let inbound = r#"direction="inbound",authority="web-svc.emojivoto:80",target_addr="10.42.0.5:8080",tls="true",client_id="default.emojivoto.serviceaccount.identity.linkerd.cluster.local""#;
            let outbound = format!(
                r#"direction="outbound",authority="emoji-svc.emojivoto:8080",target_addr="10.96.0.3:8080",tls="true",server_id="emoji.emojivoto.{ID}",dst_namespace="emojivoto",dst_service="emoji-svc",dst_deployment="emoji",dst_pod="emoji-1""#
            );
            format!(
                "# TYPE response_total counter\nresponse_total{{{inbound},status_code=\"200\",classification=\"success\"}} {}\nresponse_total{{{inbound},status_code=\"500\",classification=\"failure\"}} {}\n{}response_total{{{outbound},status_code=\"200\",classification=\"success\",grpc_status=\"0\"}} {n}\n{}tcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.5:8080\",tls=\"true\"}} 1\n",
                n * 9 / 10,
                n / 10,
                bucket(inbound, n),
                bucket(&outbound, n),
            )
        }
        _ => {
            let inbound = format!(
                r#"direction="inbound",target_addr="10.42.0.6:8080",tls="true",client_id="web.emojivoto.{ID}""#
            );
            format!(
                "response_total{{{inbound},status_code=\"200\",classification=\"success\",grpc_status=\"0\"}} {n}\n{}tcp_open_connections{{direction=\"inbound\",peer=\"src\",target_addr=\"10.42.0.6:8080\",tls=\"true\"}} 2\n",
                bucket(&inbound, n)
            )
        }
    }
}

fn pod_info(name: &str, workload: &str) -> PodInfo {
    PodInfo {
        namespace: "emojivoto".into(),
        name: name.into(),
        workload: workload.into(),
        meshed: true,
        ready: true,
        identity: Some(format!("{workload}.emojivoto.{ID}")),
    }
}

/// Two scrapes 30 s apart, 300 requests each way in between.
fn fixture() -> (At, Inventory) {
    let store = Store::new(Duration::from_secs(600));
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (pod, workload) in [("web-1", "web"), ("emoji-1", "emoji")] {
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
        for (i, n) in [0u64, 100, 200, 300].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * i as u64);
            store
                .ingest(&key, &labels, at, exposition(pod, n).as_bytes())
                .unwrap();
        }
    }
    let inv = Inventory {
        pods: vec![
            pod_info("web-1", "web"),
            pod_info("emoji-1", "emoji"),
            pod_info("emoji-2", "emoji"),
            pod_info("voting-1", "voting"),
        ],
        services: vec![("emojivoto".into(), "emoji-svc".into())],
        stale: [("emojivoto/emoji-2".to_string(), "timed out".to_string())]
            .into_iter()
            .collect(),
    };
    (At(store, t0 + Duration::from_secs(30)), inv)
}

fn request(resource: &str) -> StatRequest {
    StatRequest {
        resource: resource.parse().unwrap(),
        namespace: Some("emojivoto".into()),
        from: None,
        to: None,
        window: Duration::from_secs(30),
    }
}

fn find<'a>(rows: &'a [StatRow], name: &str) -> &'a StatRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
}

#[tokio::test]
async fn workloads_get_golden_metrics_from_their_inbound_side() {
    let (eval, inv) = fixture();
    let rsp = stat(&eval, &inv, &request("deploy")).await.unwrap();
    let names: Vec<&str> = rsp.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["emoji", "voting", "web"],
        "every workload, traffic or not"
    );

    let web = find(&rsp.rows, "web");
    assert_eq!(web.meshed, Some((1, 1)));
    // 300 requests in 30 s (the samples span the window exactly).
    assert!((web.requests - 300.0).abs() < 1e-6, "{web:?}");
    assert!((web.rps - 10.0).abs() < 1e-6, "{web:?}");
    assert!((web.success.unwrap() - 0.9).abs() < 1e-6, "{web:?}");
    assert_eq!(web.mtls, Some(1.0));
    let p50 = web.latency_p50_ms.unwrap();
    assert!((1.0..=2.0).contains(&p50), "{web:?}");
    assert!(web.latency_p99_ms.unwrap() <= 2.0, "{web:?}");
    assert_eq!(web.tcp_conn, Some(1.0));

    let emoji = find(&rsp.rows, "emoji");
    assert_eq!(emoji.meshed, Some((2, 2)));
    assert_eq!(emoji.success, Some(1.0));
    assert_eq!(emoji.tcp_conn, Some(2.0));
    assert_eq!(emoji.stale, ["emoji-2"]);

    let voting = find(&rsp.rows, "voting");
    assert_eq!(voting.requests, 0.0);
    assert_eq!(voting.success, None);
    assert_eq!(voting.latency_p50_ms, None);
}

#[tokio::test]
async fn from_and_to_read_the_clients_outbound_side() {
    let (eval, inv) = fixture();
    let mut req = request("deploy");
    req.from = Some("deploy/web".parse().unwrap());
    let rsp = stat(&eval, &inv, &req).await.unwrap();
    assert_eq!(rsp.rows.len(), 1, "{rsp:?}");
    let emoji = &rsp.rows[0];
    assert_eq!(emoji.name, "emoji");
    assert!((emoji.rps - 10.0).abs() < 1e-6, "{emoji:?}");
    assert_eq!(emoji.success, Some(1.0));

    let mut req = request("deploy");
    req.to = Some("deploy/emoji".parse().unwrap());
    let rsp = stat(&eval, &inv, &req).await.unwrap();
    assert_eq!(rsp.rows.len(), 1, "{rsp:?}");
    assert_eq!(rsp.rows[0].name, "web");

    let mut req = request("deploy");
    req.to = Some("deploy/voting".parse().unwrap());
    assert!(stat(&eval, &inv, &req).await.unwrap().rows.is_empty());
}

#[tokio::test]
async fn services_and_namespaces() {
    let (eval, inv) = fixture();
    let rsp = stat(&eval, &inv, &request("svc")).await.unwrap();
    let svc = find(&rsp.rows, "emoji-svc");
    assert_eq!(svc.meshed, None);
    assert!((svc.rps - 10.0).abs() < 1e-6, "{svc:?}");

    let rsp = stat(&eval, &inv, &request("ns")).await.unwrap();
    let ns = find(&rsp.rows, "emojivoto");
    assert_eq!(ns.meshed, Some((4, 4)));
    assert!((ns.rps - 20.0).abs() < 1e-6, "{ns:?}");

    let rsp = stat(&eval, &inv, &request("po/web-1")).await.unwrap();
    assert_eq!(rsp.rows.len(), 1);
    assert_eq!(rsp.rows[0].meshed, Some((1, 1)));
}

#[tokio::test]
async fn edges_name_both_identities() {
    let (eval, inv) = fixture();
    let req = EdgesRequest {
        kind: ResourceKind::Deployment,
        namespace: Some("emojivoto".into()),
        window: Duration::from_secs(30),
    };
    let rsp = edges(&eval, &inv, &req).await.unwrap();
    assert_eq!(rsp.edges.len(), 1, "{rsp:?}");
    let e = &rsp.edges[0];
    assert_eq!((e.src.as_str(), e.dst.as_str()), ("web", "emoji"));
    assert!(e.secured);
    assert_eq!(
        e.client_id.as_deref(),
        Some("web.emojivoto.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(
        e.server_id.as_deref(),
        Some("emoji.emojivoto.serviceaccount.identity.linkerd.cluster.local")
    );
}

#[test]
fn resources_parse_like_linkerds() {
    let r: ResourceRef = "deploy/web".parse().unwrap();
    assert_eq!(r.kind, ResourceKind::Deployment);
    assert_eq!(r.to_string(), "deploy/web");
    for s in ["po", "pods", "svc", "authority", "ns", "workloads"] {
        assert!(s.parse::<ResourceRef>().is_ok(), "{s}");
    }
    for s in ["gadget", "deploy/", "deploy/a/b", ""] {
        assert!(s.parse::<ResourceRef>().is_err(), "{s}");
    }
}
