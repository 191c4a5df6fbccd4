//! Linkerd's retry and timeout annotations on an HTTPRoute, as the
//! `OutboundPolicies` Watch stream serves them (the real index behind a
//! real server, as in `routes`).

use crate::next;
use crate::routes::{Cluster, WEB, canary, detect_routes, names, pb_duration, service};
use crate::support::by_addr;
use linkerd2_proxy_api::outbound::http_route::retry::conditions::StatusRange;
use std::time::Duration;

/// A route to `web` with Linkerd's retry and timeout annotations over two
/// rules, the first with Gateway API timeouts of its own.
fn retried(limit: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-retries
  namespace: default
  annotations:
    retry.linkerd.io/http: 5xx,429
    retry.linkerd.io/limit: "{limit}"
    retry.linkerd.io/timeout: 300ms
    timeout.linkerd.io/request: 5s
spec:
  parentRefs:
    - {{name: web, kind: Service, group: core, port: 8080}}
  rules:
    - matches: [{{path: {{value: /api}}}}]
      timeouts: {{request: 2s, backendRequest: 1s}}
    - backendRefs: [{{name: web-v1, port: 8080}}]
"#
    )
}

#[tokio::test]
async fn retry_and_timeout_annotations_reach_every_rule() {
    let mut cluster = Cluster::start(&[WEB, &service("web-v1", 11), &retried("2")]).await;
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8080")).await;
    let routes = detect_routes(&next(&mut rsp).await);
    assert_eq!(
        names(&routes),
        ["HTTPRoute.gateway.networking.k8s.io/web-retries"]
    );
    let [api, rest] = &routes[0].rules[..] else {
        panic!("two rules: {routes:?}");
    };
    for rule in [api, rest] {
        let retry = rule.retry.clone().expect("retry");
        assert_eq!((retry.max_retries, retry.max_request_bytes), (2, 64 * 1024));
        let ranges: Vec<(u32, u32)> = retry
            .conditions
            .expect("conditions")
            .status_ranges
            .iter()
            .map(|StatusRange { start, end }| (*start, *end))
            .collect();
        assert_eq!(ranges, [(500, 599), (429, 429)]);
        assert_eq!(pb_duration(retry.timeout), Some(Duration::from_millis(300)));
        let backoff = retry.backoff.expect("backoff");
        assert_eq!(
            (
                pb_duration(backoff.min_backoff),
                pb_duration(backoff.max_backoff),
                backoff.jitter_ratio
            ),
            (
                Some(Duration::from_millis(25)),
                Some(Duration::from_millis(250)),
                1.0
            )
        );
    }
    // timeout.linkerd.io/request wins over the rule's `request`; the rule
    // keeps its `backendRequest` as the response timeout.
    let t = api.timeouts.expect("timeouts");
    assert_eq!(
        (
            pb_duration(t.request),
            pb_duration(t.response),
            pb_duration(t.idle)
        ),
        (
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(1)),
            None
        )
    );
    let t = rest.timeouts.expect("timeouts");
    assert_eq!(
        (pb_duration(t.request), pb_duration(t.response)),
        (Some(Duration::from_secs(5)), None)
    );

    // A new limit reaches the stream.
    cluster.apply(&retried("5"));
    let routes = detect_routes(&next(&mut rsp).await);
    let limits: Vec<_> = routes[0]
        .rules
        .iter()
        .map(|r| r.retry.as_ref().map(|r| r.max_retries))
        .collect();
    assert_eq!(limits, [Some(5), Some(5)]);

    // Without the annotations: no retries, the rule's own timeouts.
    cluster.apply(&canary(1, 0).replace("web-canary", "web-retries"));
    let routes = detect_routes(&next(&mut rsp).await);
    let rule = &routes[0].rules[0];
    assert_eq!(rule.retry, None);
    let t = rule.timeouts.expect("timeouts");
    assert_eq!(pb_duration(t.request), Some(Duration::from_secs(2)));
}
