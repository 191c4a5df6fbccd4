//! GRPCRoutes: parsing, Linkerd's annotations on them, and every refusal.

use super::*;
use crate::{GrpcRetryConditions, GrpcRoute, GrpcRouteApi, ServiceRoute};

/// The emojivoto split: `ListAll` of the emoji service (with a header), and
/// any method of the voting service, to weighted backends; retried on
/// `unavailable`.
const EMOJI: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: emoji-split
  namespace: default
  annotations:
    retry.linkerd.io/grpc: unavailable
    timeout.linkerd.io/request: 2s
spec:
  parentRefs:
    - {name: emoji, kind: Service, group: core, port: 8080}
  hostnames: [emoji.example.com, "*.example.com"]
  rules:
    - matches:
        - method: {service: emojivoto.v1.EmojiService, method: ListAll}
          headers:
            - {name: x-canary, value: "true"}
            - {name: x-user, value: "a[0-9]+", type: RegularExpression}
        - method: {type: Exact, service: emojivoto.v1.VotingService}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-env, value: canary}]
      backendRefs:
        - {name: emoji-v1, port: 8080, weight: 90}
        - {name: emoji-v2, port: 8080}
    - {}
"#;

fn grpc_route(text: &str) -> GrpcRoute {
    match parse_manifests(text).expect("valid").pop() {
        Some(Resource::GrpcRoute(r)) => r,
        other => panic!("not a GRPCRoute: {other:?}"),
    }
}

/// The emoji route with `from` replaced by `to` (once, and it must be there).
fn emoji_with(from: &str, to: &str) -> String {
    assert!(EMOJI.contains(from), "{from:?} is not in the emoji route");
    EMOJI.replacen(from, to, 1)
}

/// The emoji route with only these annotations.
fn annotated(annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k:?}: {v:?}\n"))
        .collect();
    emoji_with(
        "    retry.linkerd.io/grpc: unavailable\n    timeout.linkerd.io/request: 2s\n",
        &format!("{annotations}    example.com/owner: shop\n"),
    )
}

#[test]
fn parses_the_emoji_route() {
    let r = grpc_route(EMOJI);
    assert_eq!(r.api, GrpcRouteApi::GatewayV1);
    assert!(r.attaches_to("emoji", 8080));
    assert!(!r.attaches_to("emoji", 80));
    assert_eq!(r.spec.hostnames.len(), 2, "accepted");
    let rule = &r.spec.rules[0];
    let m = &rule.matches[0];
    let method = m.method.as_ref().expect("a method match");
    assert_eq!(method.kind, ValueMatchType::Exact, "the default");
    assert_eq!(
        (method.service.as_deref(), method.method.as_deref()),
        (Some("emojivoto.v1.EmojiService"), Some("ListAll"))
    );
    assert_eq!(m.headers[0].kind, ValueMatchType::Exact);
    assert_eq!(m.headers[1].kind, ValueMatchType::RegularExpression);
    let service_only = rule.matches[1].method.as_ref().expect("a method match");
    assert_eq!(service_only.method, None);
    assert_eq!(
        rule.filters[0].to_route_filter(),
        Some(RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
            set: vec![HttpHeader {
                name: "x-env".into(),
                value: "canary".into()
            }],
            ..HttpHeaderFilter::default()
        }))
    );
    let weights: Vec<u32> = rule
        .backend_refs
        .iter()
        .map(HttpBackendRef::weight)
        .collect();
    assert_eq!(weights, [90, 1]);
    assert_eq!(
        r.backend_services().collect::<Vec<_>>(),
        ["emoji-v1", "emoji-v2"]
    );
    assert_eq!(r.parent_services().collect::<Vec<_>>(), ["emoji"]);
    // The second rule: every call, to the parent.
    assert_eq!(r.spec.rules[1], GrpcRouteRule::default());
}

#[test]
fn api_versions_are_kept_and_round_trip() {
    let text = emoji_with(
        "gateway.networking.k8s.io/v1\n",
        "gateway.networking.k8s.io/v1alpha2\n",
    );
    let r = grpc_route(&text);
    assert_eq!(r.api, GrpcRouteApi::GatewayV1alpha2);
    assert_eq!(r.api.group(), "gateway.networking.k8s.io");
    let json = Resource::GrpcRoute(r.clone()).to_json();
    assert_eq!(json["apiVersion"], "gateway.networking.k8s.io/v1alpha2");
    assert_eq!(json["kind"], "GRPCRoute");
    // Defaults stay implicit.
    assert!(json["spec"]["rules"][0]["backendRefs"][1]["weight"].is_null());
    assert_eq!(
        parse_resource_json(json).expect("round trip"),
        Resource::GrpcRoute(r)
    );

    let versions: Vec<_> = GrpcRouteApi::ALL.iter().map(|a| a.api_version()).collect();
    assert_eq!(Kind::GrpcRoute.api_versions(), versions.as_slice());
    for name in [
        "grpcroute",
        "grpcroutes",
        "GRPCRoute",
        "grpcroutes.gateway.networking.k8s.io",
    ] {
        assert_eq!(Kind::parse(name), Some(Kind::GrpcRoute), "{name}");
    }
    assert_eq!(Kind::GrpcRoute.plural(), "grpcroutes");
    assert_eq!(Kind::GrpcRoute.name(), "GRPCRoute");
}

#[test]
fn a_route_may_have_no_rules() {
    let r = grpc_route(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: emoji, group: core}]}\n",
    );
    assert!(r.spec.rules.is_empty());
    assert!(r.attaches_to("emoji", 1) && r.attaches_to("emoji", 65535));
}

#[test]
fn retry_and_timeout_annotations() {
    let a = grpc_route(EMOJI).annotations().expect("validated");
    assert_eq!(
        a.retry,
        Some(RouteRetry {
            limit: 1,
            statuses: GrpcRetryConditions {
                unavailable: true,
                ..GrpcRetryConditions::default()
            },
            timeout: None,
        }),
        "Linkerd's default limit"
    );
    assert_eq!(
        a.timeouts(None),
        RouteTimeouts {
            request: Some(Duration::from_secs(2)),
            response: None,
            idle: None,
        }
    );

    let all = grpc_route(&annotated(&[
        (
            "retry.linkerd.io/grpc",
            " Cancelled,deadline-exceeded , internal,resource-exhausted,unavailable,internal",
        ),
        ("retry.linkerd.io/limit", "3"),
        ("retry.linkerd.io/timeout", "300ms"),
        ("timeout.linkerd.io/response", "1s"),
    ]))
    .annotations()
    .expect("validated");
    assert_eq!(
        all.retry,
        Some(RouteRetry {
            limit: 3,
            statuses: GrpcRetryConditions {
                cancelled: true,
                deadline_exceeded: true,
                internal: true,
                resource_exhausted: true,
                unavailable: true,
            },
            timeout: Some(Duration::from_millis(300)),
        })
    );
    assert_eq!(all.timeouts(None).response, Some(Duration::from_secs(1)));

    // Timeouts alone retry nothing; no annotations, nothing at all.
    let timeouts = grpc_route(&annotated(&[("timeout.linkerd.io/request", "1s")]));
    assert_eq!(timeouts.annotations().expect("validated").retry, None);
    let none = grpc_route(&annotated(&[]))
        .annotations()
        .expect("validated");
    assert_eq!(none, crate::GrpcRouteAnnotations::default());
}

#[test]
fn the_error_names_document_resource_field_and_reason() {
    let e = parse_manifests(&emoji_with("ListAll}", "List/All}")).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "document 1 (GRPCRoute default/emoji-split): spec.rules[0].matches[0].method.method: \
         \"List/All\" must not contain \"/\": a call's path is /<service>/<method>, and this names one part"
    );
}

/// Annotations, the key refused, and (part of) the reason.
type AnnotationCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn annotation_refusals() {
    let cases: &[AnnotationCase] = &[
        (
            &[("retry.linkerd.io/grpc", "unavailable,5xx")],
            "retry.linkerd.io/grpc",
            "\"5xx\" (in \"unavailable,5xx\") is not a gRPC retry condition: use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable",
        ),
        (
            &[("retry.linkerd.io/grpc", "")],
            "retry.linkerd.io/grpc",
            "\"\" is not a gRPC retry condition",
        ),
        (
            &[("retry.linkerd.io/grpc", "unknown")],
            "retry.linkerd.io/grpc",
            "is not a gRPC retry condition",
        ),
        (
            &[("retry.linkerd.io/http", "5xx")],
            "retry.linkerd.io/http",
            "is for HTTPRoutes and Services, not GRPCRoutes: a GRPCRoute retries on gRPC statuses with retry.linkerd.io/grpc",
        ),
        (
            &[("retry.linkerd.io/limit", "2")],
            "retry.linkerd.io/limit",
            "retries nothing without retry.linkerd.io/grpc, which names the statuses a GRPCRoute retries",
        ),
        (
            &[("retry.linkerd.io/timeout", "1s")],
            "retry.linkerd.io/timeout",
            "retries nothing without retry.linkerd.io/grpc",
        ),
        (
            &[
                ("retry.linkerd.io/grpc", "internal"),
                ("retry.linkerd.io/limit", "0"),
            ],
            "retry.linkerd.io/limit",
            "would retry nothing",
        ),
        (
            &[
                ("retry.linkerd.io/grpc", "internal"),
                ("retry.linkerd.io/timeout", "1"),
            ],
            "retry.linkerd.io/timeout",
            "is not a Gateway API duration",
        ),
        (
            &[("timeout.linkerd.io/idle", "10s")],
            "timeout.linkerd.io/idle",
            "is not supported yet",
        ),
        (
            &[("retry.linkerd.io/grcp", "internal")],
            "retry.linkerd.io/grcp",
            "is not an annotation a GRPCRoute takes; those of retry.linkerd.io/ and timeout.linkerd.io/ are retry.linkerd.io/grpc, retry.linkerd.io/limit",
        ),
    ];
    for (annotations, key, reason) in cases {
        let e = parse_manifests(&annotated(annotations)).expect_err("refused");
        assert_eq!(e.field, format!("metadata.annotations[{key:?}]"), "{e}");
        assert!(e.reason.contains(reason), "{reason:?} not in: {e}");
        assert_eq!(e.resource.as_deref(), Some("GRPCRoute default/emoji-split"));
    }
}

#[test]
fn refusals() {
    let rules17 = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: emoji-split}}\nspec:\n  parentRefs: [{{name: emoji, group: core, kind: Service}}]\n  rules: [{}]\n",
        vec!["{}"; 17].join(", ")
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (
            emoji_with(
                "gateway.networking.k8s.io/v1\n",
                "gateway.networking.k8s.io/v1beta1\n",
            ),
            "apiVersion",
            "GRPCRoute is served as \"gateway.networking.k8s.io/v1\" or \"gateway.networking.k8s.io/v1alpha2\"",
        ),
        (
            emoji_with(
                "  parentRefs:\n    - {name: emoji, kind: Service, group: core, port: 8080}\n",
                "",
            ),
            "spec.parentRefs",
            "at least one parentRef",
        ),
        (
            emoji_with(
                "{name: emoji, kind: Service, group: core, port: 8080}",
                "{name: emoji}",
            ),
            "spec.parentRefs[0].kind",
            "must be Service (with group \"core\"), not Gateway",
        ),
        (
            emoji_with("group: core, port: 8080}", "group: core, port: 0}"),
            "spec.parentRefs[0].port",
            "must be between 1 and 65535",
        ),
        (
            emoji_with("emoji.example.com,", "emoji_example.com,"),
            "spec.hostnames[0]",
            "must be lower case letters",
        ),
        (
            rules17,
            "spec.rules",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            emoji_with(
                "        - method: {type: Exact, service: emojivoto.v1.VotingService}\n",
                &"        - method: {type: Exact, service: emojivoto.v1.VotingService}\n".repeat(8),
            ),
            "spec.rules[0].matches",
            "has 9 entries; Gateway API allows at most 8",
        ),
        (
            emoji_with(
                "{type: Exact, service:",
                "{type: RegularExpression, service:",
            ),
            "spec.rules[0].matches[1].method.type",
            "RegularExpression is not supported (nor is it by Linkerd)",
        ),
        (
            emoji_with("{type: Exact, service:", "{type: Prefix, service:"),
            "spec.rules[0].matches[1].method.type",
            "unknown variant `Prefix`",
        ),
        (
            emoji_with(
                "{type: Exact, service: emojivoto.v1.VotingService}",
                "{type: Exact}",
            ),
            "spec.rules[0].matches[1].method",
            "needs a service, a method or both",
        ),
        (
            emoji_with("{service: emojivoto.v1.EmojiService,", "{service: \"\","),
            "spec.rules[0].matches[0].method.service",
            "must not be empty",
        ),
        (
            emoji_with(
                "{service: emojivoto.v1.EmojiService,",
                "{service: emojivoto.v1/EmojiService,",
            ),
            "spec.rules[0].matches[0].method.service",
            "must not contain \"/\"",
        ),
        (
            emoji_with(
                "{service: emojivoto.v1.EmojiService,",
                "{service: emojivoto.1v.EmojiService,",
            ),
            "spec.rules[0].matches[0].method.service",
            "\"emojivoto.1v.EmojiService\" is not a gRPC service name",
        ),
        (
            emoji_with(
                "{service: emojivoto.v1.EmojiService,",
                "{service: emojivoto..EmojiService,",
            ),
            "spec.rules[0].matches[0].method.service",
            "is not a gRPC service name",
        ),
        (
            emoji_with("method: ListAll}", "method: \"\"}"),
            "spec.rules[0].matches[0].method.method",
            "must not be empty",
        ),
        (
            emoji_with("method: ListAll}", "method: List.All}"),
            "spec.rules[0].matches[0].method.method",
            "\"List.All\" is not a gRPC method name",
        ),
        (
            emoji_with(
                "method: ListAll}",
                &format!("method: {}}}", "a".repeat(1025)),
            ),
            "spec.rules[0].matches[0].method.method",
            "is longer than 1024 characters",
        ),
        (
            emoji_with("\"a[0-9]+\"", "\"a[0-9\""),
            "spec.rules[0].matches[0].headers[1].value",
            "\"a[0-9\" is not a usable header regex",
        ),
        (
            emoji_with("{name: x-canary,", "{name: \"x canary\","),
            "spec.rules[0].matches[0].headers[0].name",
            "is not an HTTP header name",
        ),
        (
            emoji_with("{name: x-user,", "{name: X-Canary,"),
            "spec.rules[0].matches[0].headers[1].name",
            "duplicate header \"X-Canary\" (also spec.rules[0].matches[0].headers[0])",
        ),
        (
            emoji_with("value: \"true\"}", "value: \"\"}"),
            "spec.rules[0].matches[0].headers[0].value",
            "must not be empty",
        ),
        (
            emoji_with(
                "        - type: RequestHeaderModifier\n          requestHeaderModifier:",
                "        - type: ResponseHeaderModifier\n          responseHeaderModifier:",
            ),
            "spec.rules[0].filters[0].type",
            "ResponseHeaderModifier is not supported in a GRPCRoute; strand implements RequestHeaderModifier there, as Linkerd does",
        ),
        (
            emoji_with(
                "      filters:\n",
                "      filters:\n        - {type: RequestMirror, requestMirror: {backendRef: {name: x, port: 1}}}\n",
            ),
            "spec.rules[0].filters[0].type",
            "RequestMirror is not supported in a GRPCRoute",
        ),
        (
            emoji_with(
                "      filters:\n",
                "      filters:\n        - {type: RequestHeaderModifier, requestHeaderModifier: {remove: [x-a]}}\n",
            ),
            "spec.rules[0].filters[1].type",
            "a second RequestHeaderModifier filter (also spec.rules[0].filters[0])",
        ),
        (
            emoji_with("requestHeaderModifier:\n", "responseHeaderModifier:\n"),
            "spec.rules[0].filters[0].responseHeaderModifier",
            "must be left out: type is RequestHeaderModifier, whose settings go in requestHeaderModifier",
        ),
        (
            emoji_with("{name: x-env, value: canary}", "{name: x-env, value: \"\"}"),
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
            "must not be empty",
        ),
        (
            emoji_with("    - {}\n", "    - {timeouts: {request: 1s}}\n"),
            "spec.rules[1].timeouts",
            "is not part of a GRPCRoute rule (Gateway API); leave it out and annotate the route with Linkerd's timeout.linkerd.io/request and timeout.linkerd.io/response",
        ),
        (
            emoji_with("    - {}\n", "    - {retry: {attempts: 2}}\n"),
            "spec.rules[1].retry",
            "annotate the route with Linkerd's retry.linkerd.io/grpc",
        ),
        (
            emoji_with("    - {}\n", "    - {sessionPersistence: {}}\n"),
            "spec.rules[1].sessionPersistence",
            "is not supported yet",
        ),
        (
            emoji_with("    - {}\n", "    - {name: a}\n    - {name: a}\n"),
            "spec.rules[2].name",
            "duplicate rule name \"a\" (also spec.rules[1])",
        ),
        (
            emoji_with("weight: 90}", "weight: 1000001}"),
            "spec.rules[0].backendRefs[0].weight",
            "must be 0..=1000000",
        ),
        (
            emoji_with("{name: emoji-v2, port: 8080}", "{name: emoji-v2}"),
            "spec.rules[0].backendRefs[1].port",
            "is required for a Service backend",
        ),
        (
            emoji_with(
                "{name: emoji-v2, port: 8080}",
                "{name: emoji-v2, port: 8080, namespace: prod}",
            ),
            "spec.rules[0].backendRefs[1].namespace",
            "is not the route's namespace",
        ),
        (
            emoji_with(
                "{name: emoji-v2, port: 8080}",
                "{name: emoji-v2, port: 8080, filters: [{type: RequestHeaderModifier}]}",
            ),
            "spec.rules[0].backendRefs[1].filters",
            "is not supported yet",
        ),
        (
            emoji_with("spec:\n", "sepc: {}\nspec:\n"),
            "sepc",
            "unknown field `sepc`",
        ),
    ];
    for (text, field, reason) in &cases {
        let e = parse_manifests(text).expect_err("must be rejected");
        assert_eq!(e.document, 1, "{e}");
        assert_eq!(e.field, *field, "{e}");
        assert!(e.reason.contains(reason), "{reason:?} not in: {e}");
        assert_eq!(
            e.resource.as_deref(),
            Some("GRPCRoute default/emoji-split").filter(|_| field != &"apiVersion"),
            "{e}"
        );
    }
}
