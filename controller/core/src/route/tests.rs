use super::*;
use crate::{Kind, ManifestError, Resource, parse_manifests, parse_resource_json};

mod filters;
mod grpc;

const CANARY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-canary, namespace: default}
spec:
  parentRefs:
    - {name: web, kind: Service, group: core, port: 8080}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
          headers: [{name: x-canary, value: "true"}]
          queryParams: [{name: v, value: "2"}]
          method: GET
      backendRefs:
        - {name: web-v1, port: 8080, weight: 90}
        - {name: web-v2, port: 8080, weight: 10}
      timeouts: {request: 2s, backendRequest: 1s}
    - backendRefs: [{name: web-v1, port: 8080}]
"#;

fn route(text: &str) -> HttpRoute {
    match parse_manifests(text).expect("valid").pop() {
        Some(Resource::HttpRoute(r)) => r,
        other => panic!("not a route: {other:?}"),
    }
}

fn err(text: &str) -> ManifestError {
    parse_manifests(text).expect_err("must be rejected")
}

/// The canary route with `from` replaced by `to` (once, and it must be there).
fn canary_with(from: &str, to: &str) -> String {
    assert!(CANARY.contains(from), "{from:?} is not in the canary route");
    CANARY.replacen(from, to, 1)
}

#[test]
fn parses_the_canary_route() {
    let r = route(CANARY);
    assert_eq!(r.api, HttpRouteApi::GatewayV1);
    assert_eq!(r.metadata.name, "web-canary");
    assert!(r.attaches_to("web", 8080));
    assert!(!r.attaches_to("web", 80));
    assert!(!r.attaches_to("api", 8080));
    let rule = &r.spec.rules[0];
    let m = &rule.matches[0];
    assert_eq!(
        m.path,
        Some(HttpPathMatch {
            kind: PathMatchType::PathPrefix,
            value: "/api".into()
        })
    );
    assert_eq!(m.headers[0].kind, ValueMatchType::Exact);
    assert_eq!(
        (&*m.query_params[0].name, &*m.query_params[0].value),
        ("v", "2")
    );
    assert_eq!(m.method, Some(HttpMethod::Get));
    let weights: Vec<u32> = rule
        .backend_refs
        .iter()
        .map(HttpBackendRef::weight)
        .collect();
    assert_eq!(weights, [90, 10]);
    let t = rule.timeouts.as_ref().expect("timeouts");
    assert_eq!(t.request(), Some(Duration::from_secs(2)));
    assert_eq!(t.backend_request(), Some(Duration::from_secs(1)));
    // Defaults: weight 1, no timeouts.
    let second = &r.spec.rules[1];
    assert_eq!(second.backend_refs[0].weight(), 1);
    assert!(second.timeouts.is_none());
    assert_eq!(
        r.backend_services().collect::<Vec<_>>(),
        ["web-v1", "web-v2", "web-v1"]
    );
}

#[test]
fn linkerd_api_version_is_kept() {
    let text = canary_with("gateway.networking.k8s.io/v1", "policy.linkerd.io/v1beta3");
    let r = route(&text);
    assert_eq!(r.api, HttpRouteApi::LinkerdV1beta3);
    assert_eq!(r.api.group(), "policy.linkerd.io");
    let json = Resource::HttpRoute(r.clone()).to_json();
    assert_eq!(json["apiVersion"], "policy.linkerd.io/v1beta3");
    assert_eq!(json["kind"], "HTTPRoute");
    assert_eq!(
        parse_resource_json(json).expect("round trip"),
        Resource::HttpRoute(r)
    );
}

#[test]
fn json_round_trip_keeps_what_was_written() {
    let r = Resource::HttpRoute(route(CANARY));
    let json = r.to_json();
    assert_eq!(json["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(json["spec"]["rules"][0]["timeouts"]["request"], "2s");
    assert_eq!(json["spec"]["parentRefs"][0]["group"], "core");
    // Defaults stay implicit.
    assert!(json["spec"]["rules"][1]["backendRefs"][0]["weight"].is_null());
    assert_eq!(parse_resource_json(json).expect("round trip"), r);
}

#[test]
fn kinds_and_api_versions_agree() {
    let versions: Vec<_> = HttpRouteApi::ALL.iter().map(|a| a.api_version()).collect();
    assert_eq!(Kind::HttpRoute.api_versions(), versions.as_slice());
    assert_eq!(Kind::parse("httproutes"), Some(Kind::HttpRoute));
    assert_eq!(Kind::parse("HTTPRoute"), Some(Kind::HttpRoute));
    assert_eq!(Kind::HttpRoute.plural(), "httproutes");
}

#[test]
fn defaults_of_gateway_api() {
    let r = route(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n\
         spec:\n  parentRefs: [{name: web, group: \"\"}]\n  rules:\n  - matches: [{path: {value: /x}}, {headers: [{name: a, value: b}]}]\n",
    );
    assert!(r.attaches_to("web", 1) && r.attaches_to("web", 65535));
    let m = &r.spec.rules[0].matches;
    assert_eq!(
        m[0].path.as_ref().map(|p| p.kind),
        Some(PathMatchType::PathPrefix)
    );
    assert_eq!(m[1].path, None);
    // A route may have no rules at all (one default rule).
    let r = route(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: web, group: core, kind: Service}]}\n",
    );
    assert!(r.spec.rules.is_empty());
}

#[test]
fn status_is_accepted_and_dropped() {
    let text = format!("{CANARY}status: {{parents: [{{conditions: []}}]}}\n");
    let r = Resource::HttpRoute(route(&text));
    assert!(r.to_json().get("status").is_none());
}

#[test]
fn durations() {
    let ok = [
        ("2s", Duration::from_secs(2)),
        ("500ms", Duration::from_millis(500)),
        ("1m30s", Duration::from_secs(90)),
        ("1h", Duration::from_secs(3600)),
        ("0s", Duration::ZERO),
        ("99999ms", Duration::from_millis(99_999)),
        ("1h1m1s1ms", Duration::from_millis(3_661_001)),
    ];
    for (text, want) in ok {
        let d: GatewayDuration = text.parse().expect(text);
        assert_eq!(d.as_duration(), want, "{text}");
        assert_eq!(d.as_str(), text);
    }
    for bad in [
        "",
        "2",
        "s",
        "2 s",
        "1.5s",
        "-1s",
        "2S",
        "100000s",
        "1d",
        "1h1m1s1ms1s",
        "2us",
    ] {
        assert!(bad.parse::<GatewayDuration>().is_err(), "{bad:?}");
    }
}

#[test]
fn zero_timeouts_are_none() {
    let text = canary_with(
        "{request: 2s, backendRequest: 1s}",
        "{request: 0s, backendRequest: 5s}",
    );
    let r = route(&text);
    let t = r.spec.rules[0].timeouts.as_ref().expect("timeouts");
    assert_eq!(t.request(), None);
    assert_eq!(t.backend_request(), Some(Duration::from_secs(5)));
}

#[test]
fn the_error_names_document_resource_field_and_reason() {
    let text = format!(
        "{}---\n{}",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 8080}]}\n",
        canary_with("weight: 10", "weight: 1000001")
    );
    assert_eq!(
        err(&text).to_string(),
        "document 2 (HTTPRoute default/web-canary): spec.rules[0].backendRefs[1].weight: must be 0..=1000000"
    );
}

#[test]
fn refusals() {
    let many = |n: usize, item: &str| vec![item; n].join(", ");
    let rules17 = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web-canary}}\nspec:\n  parentRefs: [{{name: web, group: core, kind: Service}}]\n  rules: [{}]\n",
        many(17, "{}")
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (
            canary_with(
                "apiVersion: gateway.networking.k8s.io/v1",
                "apiVersion: gateway.networking.k8s.io/v1beta1",
            ),
            "apiVersion",
            "served as \"gateway.networking.k8s.io/v1\" or \"policy.linkerd.io/v1beta3\"",
        ),
        (
            canary_with(
                "  parentRefs:\n    - {name: web, kind: Service, group: core, port: 8080}\n",
                "",
            ),
            "spec.parentRefs",
            "at least one parentRef",
        ),
        (
            canary_with(
                "{name: web, kind: Service, group: core, port: 8080}",
                "{name: web}",
            ),
            "spec.parentRefs[0].kind",
            "must be Service (with group \"core\"), not Gateway",
        ),
        (
            canary_with("kind: Service, group: core,", "kind: Service,"),
            "spec.parentRefs[0].group",
            "is not the group of Services",
        ),
        (
            canary_with(
                "kind: Service, group: core,",
                "kind: Gateway, group: gateway.networking.k8s.io,",
            ),
            "spec.parentRefs[0].kind",
            "not Gateway",
        ),
        (
            canary_with(
                "group: core, port: 8080}",
                "group: core, port: 8080, namespace: other}",
            ),
            "spec.parentRefs[0].namespace",
            "is not the route's namespace",
        ),
        (
            canary_with(
                "group: core, port: 8080}",
                "group: core, sectionName: http}",
            ),
            "spec.parentRefs[0].sectionName",
            "is not supported",
        ),
        (
            canary_with("group: core, port: 8080}", "group: core, port: 0}"),
            "spec.parentRefs[0].port",
            "must be between 1 and 65535",
        ),
        (
            canary_with(
                "  parentRefs:",
                "  hostnames: [web.example.com]\n  parentRefs:",
            ),
            "spec.hostnames",
            "is not supported yet",
        ),
        (
            rules17,
            "spec.rules",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            canary_with(
                "          method: GET\n",
                &format!("          method: GET\n{}", "        - {}\n".repeat(8)),
            ),
            "spec.rules[0].matches",
            "has 9 entries; Gateway API allows at most 8",
        ),
        (
            canary_with(
                "        - {name: web-v2, port: 8080, weight: 10}\n",
                &"        - {name: web-v2, port: 8080, weight: 10}\n".repeat(16),
            ),
            "spec.rules[0].backendRefs",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            canary_with("value: /api}", "value: api}"),
            "spec.rules[0].matches[0].path.value",
            "must start with \"/\"",
        ),
        (
            canary_with("value: /api}", "value: /a//b}"),
            "spec.rules[0].matches[0].path.value",
            "must not contain \"//\"",
        ),
        (
            canary_with("value: /api}", "value: \"/a?b=1\"}"),
            "spec.rules[0].matches[0].path.value",
            "may contain only",
        ),
        (
            canary_with(
                "{type: PathPrefix, value: /api}",
                "{type: RegularExpression, value: \"/api/.*\"}",
            ),
            "spec.rules[0].matches[0].path.type",
            "RegularExpression is not supported yet; use Exact or PathPrefix",
        ),
        (
            canary_with(
                "{type: PathPrefix, value: /api}",
                "{type: Prefix, value: /api}",
            ),
            "spec.rules[0].matches[0].path.type",
            "unknown variant `Prefix`",
        ),
        (
            canary_with(
                "{name: x-canary, value: \"true\"}",
                "{name: x-canary, value: \"t.*\", type: RegularExpression}",
            ),
            "spec.rules[0].matches[0].headers[0].type",
            "RegularExpression is not supported yet; use Exact",
        ),
        (
            canary_with("{name: x-canary,", "{name: \"x canary\","),
            "spec.rules[0].matches[0].headers[0].name",
            "is not an HTTP header name",
        ),
        (
            canary_with(
                "[{name: x-canary, value: \"true\"}]",
                "[{name: x-canary, value: a}, {name: X-Canary, value: b}]",
            ),
            "spec.rules[0].matches[0].headers[1].name",
            "duplicate header \"X-Canary\" (also spec.rules[0].matches[0].headers[0])",
        ),
        (
            canary_with("value: \"true\"}", "value: \"a\\nb\"}"),
            "spec.rules[0].matches[0].headers[0].value",
            "control character",
        ),
        (
            canary_with("{name: v, value: \"2\"}", "{name: v, value: \"\"}"),
            "spec.rules[0].matches[0].queryParams[0].value",
            "must not be empty",
        ),
        (
            canary_with(
                "{name: v, value: \"2\"}",
                "{name: v, value: \"2\", type: RegularExpression}",
            ),
            "spec.rules[0].matches[0].queryParams[0].type",
            "RegularExpression is not supported yet",
        ),
        (
            canary_with("method: GET", "method: get"),
            "spec.rules[0].matches[0].method",
            "unknown variant `get`",
        ),
        (
            canary_with("method: GET", "method: PURGE"),
            "spec.rules[0].matches[0].method",
            "unknown variant `PURGE`",
        ),
        (
            canary_with("weight: 90", "weight: -1"),
            "spec.rules[0].backendRefs[0].weight",
            "must be 0..=1000000",
        ),
        (
            canary_with(
                "{name: web-v2, port: 8080, weight: 10}",
                "{name: web-v2, weight: 10}",
            ),
            "spec.rules[0].backendRefs[1].port",
            "is required for a Service backend",
        ),
        (
            canary_with(
                "{name: web-v2, port: 8080,",
                "{name: web-v2, port: 8080, kind: Pod,",
            ),
            "spec.rules[0].backendRefs[1].kind",
            "must be Service, not Pod",
        ),
        (
            canary_with(
                "{name: web-v2, port: 8080,",
                "{name: web-v2, port: 8080, namespace: prod,",
            ),
            "spec.rules[0].backendRefs[1].namespace",
            "is not the route's namespace",
        ),
        (
            canary_with("{name: web-v2,", "{name: Web_V2,"),
            "spec.rules[0].backendRefs[1].name",
            "lower case",
        ),
        (
            canary_with("request: 2s", "request: 2 seconds"),
            "spec.rules[0].timeouts.request",
            "is not a Gateway API duration",
        ),
        (
            canary_with("backendRequest: 1s", "backendRequest: 3s"),
            "spec.rules[0].timeouts.backendRequest",
            "3s is longer than the request timeout 2s",
        ),
        (
            canary_with(
                "      timeouts:",
                "      filters: [{type: URLRewrite, urlRewrite: {}}]\n      timeouts:",
            ),
            "spec.rules[0].filters[0].type",
            "URLRewrite is not supported yet",
        ),
        (
            canary_with(
                "      timeouts:",
                "      retry: {attempts: 2}\n      timeouts:",
            ),
            "spec.rules[0].retry",
            "is not supported (it is experimental in Gateway API); leave it out and annotate the route with Linkerd's retry.linkerd.io/http, retry.linkerd.io/limit and retry.linkerd.io/timeout",
        ),
        (
            canary_with(
                "weight: 10}",
                "weight: 10, filters: [{type: RequestMirror}]}",
            ),
            "spec.rules[0].backendRefs[1].filters",
            "is not supported yet",
        ),
        (
            canary_with(
                "    - backendRefs: [{name: web-v1, port: 8080}]",
                "    - {name: a}\n    - {name: a}",
            ),
            "spec.rules[2].name",
            "duplicate rule name \"a\" (also spec.rules[1])",
        ),
        (
            canary_with("spec:\n", "sepc: {}\nspec:\n"),
            "sepc",
            "unknown field `sepc`",
        ),
    ];
    for (text, field, reason) in &cases {
        let e = err(text);
        assert_eq!(e.document, 1, "{e}");
        assert_eq!(e.field, *field, "{e}");
        assert!(e.reason.contains(reason), "{reason:?} not in: {e}");
        assert_eq!(
            e.resource.as_deref(),
            Some("HTTPRoute default/web-canary").filter(|_| field != &"apiVersion"),
            "{e}"
        );
    }
}
