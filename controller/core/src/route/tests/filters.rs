//! Rule filters: the three strand implements, as written and as clients
//! apply them, and every refusal.

use super::*;

/// Header changes on `/api` (sent to web-v2) and a redirect of `/old`.
const FILTERS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-filters, namespace: default}
spec:
  parentRefs:
    - {name: web, kind: Service, group: core, port: 8080}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-Env, value: canary}]
            add: [{name: x-trace, value: "1"}]
            remove: [x-debug]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            remove: [server]
      backendRefs: [{name: web-v2, port: 8080}]
    - matches:
        - path: {type: PathPrefix, value: /old}
      filters:
        - type: RequestRedirect
          requestRedirect:
            scheme: https
            hostname: new.example.com
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
            port: 8443
            statusCode: 301
    - matches:
        - path: {type: Exact, value: /moved}
      filters:
        - type: RequestRedirect
          requestRedirect:
            path: {type: ReplaceFullPath, replaceFullPath: /here}
"#;

/// A route `web-canary` whose one rule matches prefix `/api` and has
/// `filters` (a YAML flow sequence) and nothing else.
fn rule_with(filters: &str) -> String {
    rule_matching("[{path: {type: PathPrefix, value: /api}}]", filters)
}

/// As [`rule_with`], with `matches` (a YAML flow sequence).
fn rule_matching(matches: &str, filters: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web-canary, namespace: default}}\nspec:\n  parentRefs: [{{name: web, kind: Service, group: core, port: 8080}}]\n  rules:\n  - matches: {matches}\n    filters: {filters}\n"
    )
}

/// A request header filter with `body` (the inside of a YAML flow mapping).
fn headers(body: &str) -> String {
    rule_with(&format!(
        "[{{type: RequestHeaderModifier, requestHeaderModifier: {{{body}}}}}]"
    ))
}

/// A redirect with `body` (the inside of a YAML flow mapping).
fn redirect(body: &str) -> String {
    rule_with(&format!(
        "[{{type: RequestRedirect, requestRedirect: {{{body}}}}}]"
    ))
}

fn header(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn filters_parse_typed_and_as_clients_apply_them() {
    let r = route(FILTERS);
    let api = &r.spec.rules[0];
    assert_eq!(
        api.filters[0],
        HttpRouteFilter {
            kind: HttpRouteFilterType::RequestHeaderModifier,
            request_header_modifier: Some(HttpHeaderFilter {
                set: vec![header("X-Env", "canary")],
                add: vec![header("x-trace", "1")],
                remove: vec!["x-debug".into()],
            }),
            response_header_modifier: None,
            request_redirect: None,
            request_mirror: None,
            url_rewrite: None,
            extension_ref: None,
            cors: None,
            external_auth: None,
        }
    );
    let applied: Vec<_> = r
        .spec
        .rules
        .iter()
        .map(|rule| {
            rule.filters
                .iter()
                .map(|f| f.to_route_filter().expect("implemented"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        applied,
        [
            vec![
                RouteFilter::RequestHeaderModifier(HttpHeaderFilter {
                    set: vec![header("X-Env", "canary")],
                    add: vec![header("x-trace", "1")],
                    remove: vec!["x-debug".into()],
                }),
                RouteFilter::ResponseHeaderModifier(HttpHeaderFilter {
                    remove: vec!["server".into()],
                    ..HttpHeaderFilter::default()
                }),
            ],
            vec![RouteFilter::RequestRedirect(RouteRedirect {
                scheme: Some(RedirectScheme::Https),
                hostname: Some("new.example.com".into()),
                path: Some(PathModifier::ReplacePrefixMatch("/new".into())),
                port: Some(8443),
                status: 301,
            })],
            // Gateway API's default status.
            vec![RouteFilter::RequestRedirect(RouteRedirect {
                scheme: None,
                hostname: None,
                path: Some(PathModifier::ReplaceFullPath("/here".into())),
                port: None,
                status: DEFAULT_REDIRECT_STATUS,
            })],
        ]
    );
    assert_eq!(DEFAULT_REDIRECT_STATUS, 302);
}

#[test]
fn filters_round_trip_as_written() {
    let r = Resource::HttpRoute(route(FILTERS));
    let json = r.to_json();
    let rules = &json["spec"]["rules"];
    assert_eq!(rules[0]["filters"][0]["type"], "RequestHeaderModifier");
    assert_eq!(
        rules[0]["filters"][0]["requestHeaderModifier"]["set"][0]["name"],
        "X-Env"
    );
    assert_eq!(
        rules[1]["filters"][0]["requestRedirect"]["path"],
        serde_json::json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"})
    );
    // Defaults and absent keys stay implicit.
    let moved = &rules[2]["filters"][0];
    assert_eq!(
        moved.as_object().map(|o| o.len()),
        Some(2),
        "type and requestRedirect only: {moved}"
    );
    assert!(moved["requestRedirect"]["statusCode"].is_null());
    assert_eq!(parse_resource_json(json).expect("round trip"), r);
}

#[test]
fn prefix_replacement_takes_the_default_prefix_match() {
    let prefix = "[{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]";
    // A rule without matches, or with a match without a path, matches
    // prefix `/`.
    for matches in ["[]", "[{method: GET}]"] {
        let r = route(&rule_matching(matches, prefix));
        assert_eq!(r.spec.rules[0].filters.len(), 1, "{matches}");
    }
    // Every one of the three once, in any order, with a redirect's
    // parent backend.
    let all = "[{type: ResponseHeaderModifier, responseHeaderModifier: {}}, {type: RequestRedirect, requestRedirect: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]";
    assert_eq!(route(&rule_with(all)).spec.rules[0].filters.len(), 3);
}

#[test]
fn filter_refusals() {
    let set = |n: usize| {
        let list: Vec<_> = (0..n)
            .map(|i| format!("{{name: x-{i}, value: v}}"))
            .collect();
        headers(&format!("set: [{}]", list.join(", ")))
    };
    let remove = |n: usize| {
        let list: Vec<_> = (0..n).map(|i| format!("x-{i}")).collect();
        headers(&format!("remove: [{}]", list.join(", ")))
    };
    let seventeen = vec!["{type: RequestRedirect, requestRedirect: {}}"; 17].join(", ");
    let long_value = "v".repeat(4097);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            rule_with(&format!("[{seventeen}]")),
            "spec.rules[0].filters",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            rule_with(
                "[{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}]",
            ),
            "spec.rules[0].filters[0].type",
            "URLRewrite is not supported yet; strand implements RequestHeaderModifier, ResponseHeaderModifier and RequestRedirect",
        ),
        (
            rule_with(
                "[{type: RequestMirror, requestMirror: {backendRef: {name: web-v2, port: 8080}}}]",
            ),
            "spec.rules[0].filters[0].type",
            "RequestMirror is not supported yet",
        ),
        (
            rule_with(
                "[{type: ExtensionRef, extensionRef: {group: example.com, kind: Foo, name: x}}]",
            ),
            "spec.rules[0].filters[0].type",
            "ExtensionRef is not supported yet",
        ),
        (
            rule_with("[{type: CORS, cors: {allowOrigins: [\"*\"]}}]"),
            "spec.rules[0].filters[0].type",
            "CORS is not supported yet",
        ),
        (
            rule_with("[{type: ExternalAuth, externalAuth: {}}]"),
            "spec.rules[0].filters[0].type",
            "ExternalAuth is not supported yet",
        ),
        (
            rule_with("[{type: RequestHeaderModifer}]"),
            "spec.rules[0].filters[0].type",
            "unknown variant `RequestHeaderModifer`",
        ),
        (
            rule_with("[{requestHeaderModifier: {}}]"),
            "spec.rules[0].filters[0].type",
            "is required",
        ),
        (
            rule_with("[{type: RequestHeaderModifier}]"),
            "spec.rules[0].filters[0].requestHeaderModifier",
            "is required when type is RequestHeaderModifier",
        ),
        (
            rule_with(
                "[{type: ResponseHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]",
            ),
            "spec.rules[0].filters[0].requestHeaderModifier",
            "must be left out: type is ResponseHeaderModifier, whose settings go in responseHeaderModifier",
        ),
        (
            rule_with("[{type: RequestRedirect, requestRedirect: {}, urlRewrite: {}}]"),
            "spec.rules[0].filters[0].urlRewrite",
            "must be left out: type is RequestRedirect",
        ),
        (
            rule_with("[{type: RequestRedirect, requestRedirect: {}, responseHeaders: {}}]"),
            "spec.rules[0].filters[0].responseHeaders",
            "unknown field `responseHeaders`",
        ),
        (
            rule_with(
                "[{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: ResponseHeaderModifier, responseHeaderModifier: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]",
            ),
            "spec.rules[0].filters[2].type",
            "a second RequestHeaderModifier filter (also spec.rules[0].filters[0]): Gateway API allows one of each type per rule",
        ),
        (
            headers("set: [{name: \"x env\", value: a}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].name",
            "\"x env\" is not an HTTP header name",
        ),
        (
            headers("add: [{name: \":authority\", value: a}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.add[0].name",
            "is not an HTTP header name",
        ),
        (
            headers("add: [{name: x-a, value: \"\"}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.add[0].value",
            "must not be empty",
        ),
        (
            headers("set: [{name: x-a, value: \"a\\r\\nx-b: b\"}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
            "has a control character, which no header value can carry",
        ),
        (
            headers(&format!("set: [{{name: x-a, value: {long_value}}}]")),
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
            "is longer than 4096 characters",
        ),
        (
            headers("set: [{name: x-a}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
            "is required",
        ),
        (
            headers("remove: [\"x/a\"]"),
            "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
            "\"x/a\" is not an HTTP header name",
        ),
        (
            headers("replace: [x-a]"),
            "spec.rules[0].filters[0].requestHeaderModifier.replace",
            "unknown field `replace`",
        ),
        (
            set(17),
            "spec.rules[0].filters[0].requestHeaderModifier.set",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            remove(17),
            "spec.rules[0].filters[0].requestHeaderModifier.remove",
            "has 17 entries; Gateway API allows at most 16",
        ),
        (
            headers("add: [{name: X-A, value: a}, {name: x-a, value: b}]"),
            "spec.rules[0].filters[0].requestHeaderModifier.add[1].name",
            "\"x-a\" has an action already (spec.rules[0].filters[0].requestHeaderModifier.add[0].name): Gateway API allows one action per header (names are case-insensitive)",
        ),
        (
            rule_with(
                "[{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: Server, value: a}], remove: [server]}}]",
            ),
            "spec.rules[0].filters[0].responseHeaderModifier.remove[0]",
            "has an action already (spec.rules[0].filters[0].responseHeaderModifier.set[0].name)",
        ),
        (
            rule_matching(
                "[{path: {type: PathPrefix, value: /api}}]",
                "[{type: RequestRedirect, requestRedirect: {statusCode: 301}}]\n    backendRefs: [{name: web-v2, port: 8080}]",
            ),
            "spec.rules[0].backendRefs",
            "must be left out of a rule with a RequestRedirect filter (spec.rules[0].filters[0]): the client's proxy answers the redirect itself and sends nothing to a backend",
        ),
        (
            redirect("scheme: ftp"),
            "spec.rules[0].filters[0].requestRedirect.scheme",
            "unknown variant `ftp`",
        ),
        (
            redirect("hostname: New.Example.com"),
            "spec.rules[0].filters[0].requestRedirect.hostname",
            "must be lower case letters, digits, '-' and '.'",
        ),
        (
            redirect("hostname: \"*.example.com\""),
            "spec.rules[0].filters[0].requestRedirect.hostname",
            "must be lower case letters, digits, '-' and '.'",
        ),
        (
            redirect("port: 0"),
            "spec.rules[0].filters[0].requestRedirect.port",
            "must be between 1 and 65535",
        ),
        (
            redirect("port: 65536"),
            "spec.rules[0].filters[0].requestRedirect.port",
            "invalid value",
        ),
        (
            redirect("statusCode: 200"),
            "spec.rules[0].filters[0].requestRedirect.statusCode",
            "200 is not a redirect status Gateway API allows: use 301, 302 (the default), 303, 307 or 308",
        ),
        (
            redirect("path: {type: Prefix, replacePrefixMatch: /x}"),
            "spec.rules[0].filters[0].requestRedirect.path.type",
            "unknown variant `Prefix`",
        ),
        (
            redirect("path: {type: ReplaceFullPath}"),
            "spec.rules[0].filters[0].requestRedirect.path.replaceFullPath",
            "is required when type is ReplaceFullPath",
        ),
        (
            redirect("path: {type: ReplacePrefixMatch, replaceFullPath: /x}"),
            "spec.rules[0].filters[0].requestRedirect.path.replaceFullPath",
            "must be left out: type is ReplacePrefixMatch, whose value goes in replacePrefixMatch",
        ),
        (
            redirect("path: {type: ReplaceFullPath, replaceFullPath: here}"),
            "spec.rules[0].filters[0].requestRedirect.path.replaceFullPath",
            "\"here\" must start with \"/\"",
        ),
        (
            redirect("path: {type: ReplacePrefixMatch, replacePrefixMatch: \"/a b\"}"),
            "spec.rules[0].filters[0].requestRedirect.path.replacePrefixMatch",
            "may contain only",
        ),
        (
            rule_matching(
                "[{path: {type: Exact, value: /api}}]",
                "[{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]",
            ),
            "spec.rules[0].filters[0].requestRedirect.path.type",
            "ReplacePrefixMatch needs the rule to have exactly one match, a PathPrefix one (Gateway API): it replaces the prefix that match matched; this rule has an Exact match",
        ),
        (
            rule_matching(
                "[{path: {value: /a}}, {path: {value: /b}}]",
                "[{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]",
            ),
            "spec.rules[0].filters[0].requestRedirect.path.type",
            "this rule has 2 matches",
        ),
        (
            canary_with(
                "{name: web-v1, port: 8080, weight: 90}",
                "{name: web-v1, port: 8080, weight: 90, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]}",
            ),
            "spec.rules[0].backendRefs[0].filters",
            "is not supported yet; leave it out (the rule's filters apply to every backend of it)",
        ),
    ];
    for (text, field, reason) in &cases {
        let e = err(text);
        assert_eq!(e.document, 1, "{e}");
        assert_eq!(e.field, *field, "{e}");
        assert!(e.reason.contains(reason), "{reason:?} not in: {e}");
        assert_eq!(
            e.resource.as_deref(),
            Some("HTTPRoute default/web-canary"),
            "{e}"
        );
    }
}
