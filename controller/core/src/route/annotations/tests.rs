use super::*;
use crate::{HttpRoute, ManifestError, Resource, parse_manifests};

/// A route to `web` with one rule (`request: 2s, backendRequest: 1s`) and
/// these annotations, as YAML.
fn manifest(annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k:?}: {v:?}\n"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-retries
  namespace: default
  annotations:
{annotations}    example.com/owner: shop
spec:
  parentRefs: [{{name: web, kind: Service, group: core, port: 8080}}]
  rules:
    - timeouts: {{request: 2s, backendRequest: 1s}}
"
    )
}

fn route(annotations: &[(&str, &str)]) -> HttpRoute {
    match parse_manifests(&manifest(annotations))
        .expect("valid")
        .pop()
    {
        Some(Resource::HttpRoute(r)) => r,
        other => panic!("not a route: {other:?}"),
    }
}

fn parsed(annotations: &[(&str, &str)]) -> RouteAnnotations {
    route(annotations).annotations().expect("validated")
}

fn retry(annotations: &[(&str, &str)]) -> RouteRetry {
    parsed(annotations).retry.expect("retries")
}

fn err(annotations: &[(&str, &str)]) -> ManifestError {
    parse_manifests(&manifest(annotations)).expect_err("must be rejected")
}

fn ms(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

/// The README's example.
const WEB_READS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-reads
  namespace: default
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: "2"          # annotation values are strings
    retry.linkerd.io/timeout: 300ms
    timeout.linkerd.io/request: 2s
spec:
  parentRefs:
    - {name: web, kind: Service, group: core, port: 8080}
  rules:
    - matches:
        - {path: {type: PathPrefix, value: /api}, method: GET}
"#;

#[test]
fn the_readme_example() {
    let Some(Resource::HttpRoute(r)) = parse_manifests(WEB_READS).expect("valid").pop() else {
        panic!("a route");
    };
    let a = r.annotations().expect("validated");
    assert_eq!(
        a.retry,
        Some(RouteRetry {
            limit: 2,
            statuses: vec![500..=599],
            timeout: ms(300),
        })
    );
    assert_eq!(
        a.timeouts(r.spec.rules[0].timeouts.as_ref()),
        RouteTimeouts {
            request: ms(2000),
            response: None,
            idle: None,
        }
    );
}

#[test]
fn without_annotations_there_are_no_retries_and_the_rule_keeps_its_timeouts() {
    let a = parsed(&[]);
    assert_eq!(a, RouteAnnotations::default());
    let r = route(&[]);
    assert_eq!(
        a.timeouts(r.spec.rules[0].timeouts.as_ref()),
        RouteTimeouts {
            request: ms(2000),
            response: ms(1000),
            idle: None,
        }
    );
    assert_eq!(a.timeouts(None), RouteTimeouts::default());
}

#[test]
fn conditions() {
    let cases: &[(&str, &[RangeInclusive<u16>])] = &[
        ("5xx", &[500..=599]),
        ("5XX", &[500..=599]),
        ("gateway-error", &[502..=504]),
        ("Gateway-Error", &[502..=504]),
        ("503", &[503..=503]),
        ("500-504", &[500..=504]),
        ("100", &[100..=100]),
        ("599", &[599..=599]),
        ("429,gateway-error", &[429..=429, 502..=504]),
        (" 5xx , 429 ", &[500..=599, 429..=429]),
        ("503-503", &[503..=503]),
    ];
    for (value, want) in cases {
        let r = retry(&[("retry.linkerd.io/http", value)]);
        assert_eq!(r.statuses, *want, "{value:?}");
        assert_eq!((r.limit, r.timeout), (1, None), "{value:?}: defaults");
    }
}

#[test]
fn any_retry_annotation_turns_retries_on_with_linkerd_defaults() {
    // Limit alone: 5xx.
    assert_eq!(
        retry(&[("retry.linkerd.io/limit", "10")]),
        RouteRetry {
            limit: 10,
            statuses: vec![500..=599],
            timeout: None,
        }
    );
    // A per-try timeout alone: one retry of 5xx.
    assert_eq!(
        retry(&[("retry.linkerd.io/timeout", "1m30s")]),
        RouteRetry {
            limit: 1,
            statuses: vec![500..=599],
            timeout: Some(Duration::from_secs(90)),
        }
    );
    // `0s`: retries without a per-try timeout.
    assert_eq!(retry(&[("retry.linkerd.io/timeout", "0s")]).timeout, None);
    // Timeout annotations alone retry nothing.
    assert_eq!(parsed(&[("timeout.linkerd.io/request", "1s")]).retry, None);
}

#[test]
fn timeout_annotations_win_over_the_rules_fields() {
    let rule = route(&[]).spec.rules[0].timeouts.clone();
    let timeouts = |annotations: &[(&str, &str)]| parsed(annotations).timeouts(rule.as_ref());
    assert_eq!(
        timeouts(&[("timeout.linkerd.io/request", "5s")]),
        RouteTimeouts {
            request: ms(5000),
            response: ms(1000),
            idle: None,
        }
    );
    assert_eq!(
        timeouts(&[("timeout.linkerd.io/response", "250ms")]),
        RouteTimeouts {
            request: ms(2000),
            response: ms(250),
            idle: None,
        }
    );
    // `0s` turns the rule's timeout off.
    assert_eq!(
        timeouts(&[
            ("timeout.linkerd.io/request", "0s"),
            ("timeout.linkerd.io/response", "0s"),
        ]),
        RouteTimeouts::default()
    );
    // A rule without timeouts takes the annotations'.
    assert_eq!(
        parsed(&[("timeout.linkerd.io/response", "3s")]).timeouts(None),
        RouteTimeouts {
            request: None,
            response: ms(3000),
            idle: None,
        }
    );
}

#[test]
fn annotations_are_kept_as_written() {
    let r = Resource::HttpRoute(route(&[("retry.linkerd.io/http", "5XX")]));
    let json = r.to_json();
    assert_eq!(
        json["metadata"]["annotations"]["retry.linkerd.io/http"],
        "5XX"
    );
    assert_eq!(crate::parse_resource_json(json).expect("round trip"), r);
}

#[test]
fn the_error_names_document_resource_annotation_and_reason() {
    assert_eq!(
        err(&[("retry.linkerd.io/limit", "0")]).to_string(),
        "document 1 (HTTPRoute default/web-retries): metadata.annotations[\"retry.linkerd.io/limit\"]: \
         \"0\" would retry nothing (for no retries, leave out the retry.linkerd.io/* annotations): use 1 to 10"
    );
    assert_eq!(
        err(&[("retry.linkerd.io/limt", "2")]).to_string(),
        "document 1 (HTTPRoute default/web-retries): metadata.annotations[\"retry.linkerd.io/limt\"]: \
         is not an annotation an HTTPRoute takes; those of retry.linkerd.io/ and timeout.linkerd.io/ are \
         retry.linkerd.io/http, retry.linkerd.io/limit, retry.linkerd.io/timeout, \
         timeout.linkerd.io/request, timeout.linkerd.io/response, timeout.linkerd.io/idle"
    );
}

#[test]
fn refusals() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "retry.linkerd.io/limit",
            "11",
            "\"11\" is too many retries: use 1 to 10",
        ),
        ("retry.linkerd.io/limit", "65536", "is too many retries"),
        (
            "retry.linkerd.io/limit",
            "99999999999",
            "is too many retries",
        ),
        ("retry.linkerd.io/limit", "-1", "is not a number of retries"),
        ("retry.linkerd.io/limit", "+2", "is not a number of retries"),
        (
            "retry.linkerd.io/limit",
            "two",
            "is not a number of retries",
        ),
        ("retry.linkerd.io/limit", " 2", "is not a number of retries"),
        ("retry.linkerd.io/limit", "", "is not a number of retries"),
        ("retry.linkerd.io/http", "", "\"\" is not a retry condition"),
        (
            "retry.linkerd.io/http",
            "5xx,",
            "\"\" (in \"5xx,\") is not a retry condition",
        ),
        (
            "retry.linkerd.io/http",
            "4xx",
            "\"4xx\" is not a retry condition",
        ),
        (
            "retry.linkerd.io/http",
            "600",
            "\"600\" is not a retry condition",
        ),
        ("retry.linkerd.io/http", "99", "is not a retry condition"),
        ("retry.linkerd.io/http", "+503", "is not a retry condition"),
        (
            "retry.linkerd.io/http",
            "504-500",
            "\"504-500\" is not a retry condition",
        ),
        ("retry.linkerd.io/http", "500-", "is not a retry condition"),
        (
            "retry.linkerd.io/http",
            "500-504-599",
            "is not a retry condition",
        ),
        (
            "retry.linkerd.io/http",
            "5xx;503",
            "is not a retry condition",
        ),
        (
            "retry.linkerd.io/http",
            "5xx,internal",
            "\"internal\" (in \"5xx,internal\")",
        ),
        (
            "retry.linkerd.io/timeout",
            "300",
            "\"300\" is not a Gateway API duration",
        ),
        (
            "retry.linkerd.io/timeout",
            "1.5s",
            "is not a Gateway API duration",
        ),
        (
            "timeout.linkerd.io/request",
            "2 s",
            "is not a Gateway API duration",
        ),
        (
            "timeout.linkerd.io/response",
            "-1s",
            "is not a Gateway API duration",
        ),
        (
            "timeout.linkerd.io/idle",
            "10s",
            "is not supported yet: strand's proxies do not end idle streams",
        ),
        (
            "retry.linkerd.io/grpc",
            "internal",
            "is for GRPCRoutes and Services, not HTTPRoutes: an HTTPRoute retries on HTTP statuses with retry.linkerd.io/http",
        ),
        (
            "timeout.linkerd.io/backendRequest",
            "1s",
            "is not an annotation an HTTPRoute takes",
        ),
        (
            "retry.linkerd.io/",
            "5xx",
            "is not an annotation an HTTPRoute takes",
        ),
        ("Retry.linkerd.io/http", "5xx", ""),
    ];
    for (key, value, reason) in cases {
        if reason.is_empty() {
            // Another prefix (keys are case-sensitive): not ours.
            assert_eq!(parsed(&[(key, value)]), RouteAnnotations::default());
            continue;
        }
        let e = err(&[(key, value)]);
        assert_eq!(e.field, format!("metadata.annotations[{key:?}]"), "{e}");
        assert!(e.reason.contains(reason), "{reason:?} not in: {e}");
        assert_eq!(e.resource.as_deref(), Some("HTTPRoute default/web-retries"));
    }
}

#[test]
fn other_annotations_are_left_alone() {
    let a = parsed(&[
        ("linkerd.io/inject", "enabled"),
        ("config.linkerd.io/opaque-ports", "not checked on a route"),
        ("example.com/retry.linkerd.io/http", "whatever"),
    ]);
    assert_eq!(a, RouteAnnotations::default());
}

#[test]
fn annotation_values_must_be_strings() {
    let text = manifest(&[]).replace(
        "    example.com/owner: shop\n",
        "    retry.linkerd.io/limit: 2\n",
    );
    assert_eq!(
        parse_manifests(&text)
            .expect_err("an integer is not a string")
            .to_string(),
        "document 1 (HTTPRoute default/web-retries): metadata.annotations[\"retry.linkerd.io/limit\"]: \
         invalid type: integer `2`, expected a string: quote the value"
    );
}
