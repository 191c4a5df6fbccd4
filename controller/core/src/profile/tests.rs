use super::*;
use crate::{Kind, ManifestError, Resource, parse_manifests};

const WEB: &str = r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
  - name: GET /api/list
    condition:
      method: GET
      pathRegex: /api/list
    responseClasses:
    - condition:
        status: {min: 500, max: 599}
      isFailure: true
    isRetryable: true
    timeout: 300ms
  - name: vote
    condition:
      any:
      - pathRegex: '/api/vote/\d+'
      - all: [{method: POST}, {not: {pathRegex: /private/.*}}]
    responseClasses:
    - condition: {status: {min: 404}}
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
  dstOverrides:
  - authority: web-v2.emojivoto.svc.cluster.local:80
    weight: 500m
  - authority: web-v1.emojivoto.svc.cluster.local:80
    weight: 1
"#;

fn profile(text: &str) -> ServiceProfile {
    match parse_manifests(text).expect("valid").pop() {
        Some(Resource::ServiceProfile(p)) => p,
        other => panic!("not a profile: {other:?}"),
    }
}

fn err(text: &str) -> ManifestError {
    parse_manifests(text).expect_err("must be rejected")
}

/// The web profile with `from` replaced by `to` (once, and it must be there).
fn web_with(from: &str, to: &str) -> String {
    assert!(WEB.contains(from), "{from:?} is not in the web profile");
    WEB.replacen(from, to, 1)
}

/// The error of the web profile changed so, as `field: reason`.
fn web_err(from: &str, to: &str) -> String {
    let e = err(&web_with(from, to));
    assert_eq!(
        e.resource.as_deref(),
        Some("ServiceProfile emojivoto/web-svc.emojivoto.svc.cluster.local")
    );
    format!("{}: {}", e.field, e.reason)
}

/// A profile whose only route has the condition `condition` (YAML flow).
fn with_condition(condition: &str) -> String {
    format!(
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: web.default.svc.cluster.local}}\nspec:\n  routes: [{{name: r, condition: {condition}}}]\n"
    )
}

fn condition_err(condition: &str) -> String {
    let e = err(&with_condition(condition));
    format!("{}: {}", e.field, e.reason)
}

#[test]
fn parses_the_web_profile() {
    let p = profile(WEB);
    assert_eq!(p.api, ServiceProfileApi::V1alpha2);
    assert_eq!(
        p.service("cluster.local"),
        Some(ServiceKey::new("emojivoto", "web-svc"))
    );
    let [list, vote] = &p.spec.routes[..] else {
        panic!("two routes");
    };
    assert_eq!(list.name, "GET /api/list");
    assert_eq!(list.condition.method.as_deref(), Some("GET"));
    assert_eq!(list.condition.path_regex.as_deref(), Some("/api/list"));
    assert_eq!(
        list.condition.len(),
        2,
        "method and pathRegex: both must hold"
    );
    assert!(list.is_retryable());
    assert_eq!(list.timeout(), Duration::from_millis(300));
    let class = &list.response_classes[0];
    assert!(class.is_failure());
    assert_eq!(
        class.condition.status.as_ref().map(StatusRange::bounds),
        Some((500, 599))
    );
    // Defaults: not retryable, 10s, a one-sided range up to 599.
    assert!(!vote.is_retryable());
    assert_eq!(vote.timeout(), DEFAULT_ROUTE_TIMEOUT);
    let class = &vote.response_classes[0];
    assert!(!class.is_failure());
    assert_eq!(
        class.condition.status.as_ref().map(StatusRange::bounds),
        Some((404, 599))
    );
    let any = vote.condition.any.as_ref().expect("any");
    assert_eq!(any[0].path_regex.as_deref(), Some(r"/api/vote/\d+"));
    let b = p.spec.retry_budget();
    assert_eq!(
        (b.retry_ratio, b.min_retries_per_second, b.ttl()),
        (0.2, 10, Duration::from_secs(10))
    );
    let weights: Vec<u32> = p
        .spec
        .dst_overrides
        .iter()
        .map(|d| d.weight.milli())
        .collect();
    assert_eq!(weights, [500, 1000]);
}

#[test]
fn writes_back_as_applied() {
    let p = profile(WEB);
    let json = Resource::ServiceProfile(p.clone()).to_json();
    assert_eq!(json["apiVersion"], "linkerd.io/v1alpha2");
    assert_eq!(json["kind"], "ServiceProfile");
    let route = &json["spec"]["routes"][0];
    assert_eq!(route["condition"]["pathRegex"], "/api/list");
    assert_eq!(route["timeout"], "300ms");
    assert_eq!(route["isRetryable"], true);
    assert_eq!(json["spec"]["dstOverrides"][0]["weight"], "500m");
    assert_eq!(json["spec"]["dstOverrides"][1]["weight"], "1");
    assert_eq!(json["spec"]["retryBudget"]["retryRatio"], 0.2);
    // Absent fields stay absent (defaults are implicit).
    assert!(json["spec"]["routes"][1].get("timeout").is_none());
    assert!(json["spec"]["routes"][1].get("isRetryable").is_none());
    // And the document parses back to the same profile.
    let back = crate::parse_resource_json(json).expect("parses back");
    assert_eq!(back, Resource::ServiceProfile(p));
}

#[test]
fn v1alpha1_is_the_same_schema_and_is_kept() {
    let text = WEB.replace("linkerd.io/v1alpha2", "linkerd.io/v1alpha1");
    let p = profile(&text);
    assert_eq!(p.api, ServiceProfileApi::V1alpha1);
    let r = Resource::ServiceProfile(p);
    assert_eq!(r.api_version(), "linkerd.io/v1alpha1");
    assert_eq!(r.kind(), Kind::ServiceProfile);
    let e = err(&WEB.replace("linkerd.io/v1alpha2", "linkerd.io/v1"));
    assert_eq!(e.field, "apiVersion");
    assert!(
        e.reason
            .contains("\"linkerd.io/v1alpha2\" or \"linkerd.io/v1alpha1\"")
    );
}

#[test]
fn kind_names() {
    for s in [
        "sp",
        "ServiceProfile",
        "serviceprofiles",
        "serviceprofiles.linkerd.io",
    ] {
        assert_eq!(Kind::parse(s), Some(Kind::ServiceProfile), "{s}");
    }
    assert_eq!(Kind::ServiceProfile.plural(), "serviceprofiles");
}

#[test]
fn a_profile_describes_the_service_its_name_points_at() {
    let named = |name: &str, ns: &str| {
        let mut p = profile(WEB);
        p.metadata.name = name.into();
        p.metadata.namespace = ns.into();
        (p.service("cluster.local"), p.named_service())
    };
    let web = Some(ServiceKey::new("emojivoto", "web"));
    assert_eq!(
        named("web.emojivoto.svc.cluster.local", "emojivoto"),
        (web.clone(), web.clone())
    );
    // Another cluster domain: only the domain-blind form sees the service.
    assert_eq!(
        named("web.emojivoto.svc.example.org", "emojivoto"),
        (None, web)
    );
    // Another namespace's service, or not a service name: nothing.
    assert_eq!(
        named("web.other.svc.cluster.local", "emojivoto"),
        (None, None)
    );
    assert_eq!(named("example.com", "emojivoto"), (None, None));
    assert_eq!(named("web.emojivoto.svc", "emojivoto"), (None, None));
    // Accepted all the same.
    let text = WEB.replace("web-svc.emojivoto.svc.cluster.local", "api.example.com");
    assert_eq!(profile(&text).service("cluster.local"), None);
}

#[test]
fn path_regexes_compile_as_the_proxy_compiles_them() {
    use regex_automata::Input;
    let re = compile_path_regex(r"/api/vote/\d+").expect("compiles");
    let m = |path: &str| re.is_match(Input::new(path));
    assert!(m("/api/vote/12"));
    assert!(!m("/api/vote/12/x"), "anchored at the end");
    assert!(!m("/x/api/vote/12"), "anchored at the start");
    assert!(!m("/api/vote/٣"), "\\d is ASCII only");
    let alt = compile_path_regex("/a|/b").expect("compiles");
    assert!(
        alt.is_match("/b") && !alt.is_match("/b/c"),
        "the group anchors alternations"
    );
}

#[test]
fn refuses_bad_routes() {
    assert_eq!(
        web_err("name: vote", "name: GET /api/list"),
        "spec.routes[1].name: duplicate route name \"GET /api/list\" (also spec.routes[0])"
    );
    assert_eq!(
        web_err("name: vote", "name: ''"),
        "spec.routes[1].name: must not be empty"
    );
    assert_eq!(
        web_err("  - name: vote\n", "  - condition: {method: GET}\n"),
        "spec.routes[1].name: is required"
    );
    assert_eq!(
        web_err(
            "    condition:\n      method: GET\n      pathRegex: /api/list\n",
            ""
        ),
        "spec.routes[0].condition: is required"
    );
    assert_eq!(
        web_err("timeout: 300ms", "timeout: 0s"),
        "spec.routes[0].timeout: 0s would fail every request: give a positive duration, or leave it out for the default 10s"
    );
    assert_eq!(
        web_err("timeout: 300ms", "timeout: 300"),
        "spec.routes[0].timeout: 300 has no unit: write a duration as a string such as \"300s\" or \"300ms\""
    );
    assert_eq!(
        web_err("timeout: 300ms", "timeout: 3 s"),
        "spec.routes[0].timeout: \"3 s\" has an unknown unit \" s\": use ns, us, ms, s, m or h"
    );
    assert_eq!(
        web_err("isRetryable: true", "isRetriable: true"),
        "spec.routes[0].isRetriable: unknown field `isRetriable`, expected one of `name`, `condition`, `responseClasses`, `isRetryable`, `timeout`"
    );
    assert_eq!(
        web_err("  retryBudget:", "  opaquePorts: [80]\n  retryBudget:"),
        "spec.opaquePorts: unknown field `opaquePorts`, expected one of `routes`, `retryBudget`, `dstOverrides`"
    );
}

#[test]
fn refuses_bad_request_conditions() {
    assert_eq!(
        condition_err("{}"),
        "spec.routes[0].condition: is empty: set at least one of method, pathRegex, all, any or not"
    );
    assert_eq!(
        condition_err("{all: []}"),
        "spec.routes[0].condition.all: must not be empty: give at least one condition, or leave it out"
    );
    assert_eq!(
        condition_err("{any: [{method: GET}, {}]}"),
        "spec.routes[0].condition.any[1]: is empty: set at least one of method, pathRegex, all, any or not"
    );
    assert_eq!(
        condition_err("{not: {}}"),
        "spec.routes[0].condition.not: is empty: set at least one of method, pathRegex, all, any or not"
    );
    assert_eq!(
        condition_err("{method: 'GET /'}"),
        "spec.routes[0].condition.method: \"GET /\" is not an HTTP method: 1 to 64 letters, digits or !#$%&'*+-.^_`|~"
    );
    assert_eq!(
        condition_err("{method: get}"),
        "spec.routes[0].condition.method: \"get\" would match no request (methods are case-sensitive): write \"GET\""
    );
    assert_eq!(
        condition_err("{all: [{pathRegex: ''}]}"),
        "spec.routes[0].condition.all[0].pathRegex: must not be empty (it must match the whole path, e.g. \"/api/.*\")"
    );
    assert_eq!(
        condition_err("{pathRegex: x, headers: {}}"),
        "spec.routes[0].condition.headers: unknown field `headers`, expected one of `method`, `pathRegex`, `all`, `any`, `not`"
    );
    // Extension methods are tokens like any other.
    assert!(parse_manifests(&with_condition("{method: PROPFIND}")).is_ok());
    let deep =
        (0..=MAX_CONDITION_DEPTH).fold("{method: GET}".to_string(), |c, _| format!("{{not: {c}}}"));
    let e = condition_err(&deep);
    assert!(
        e.ends_with("conditions nest more than 8 levels deep"),
        "{e}"
    );
    let ok =
        (0..MAX_CONDITION_DEPTH).fold("{method: GET}".to_string(), |c, _| format!("{{not: {c}}}"));
    assert!(parse_manifests(&with_condition(&ok)).is_ok());
}

#[test]
fn refuses_path_regexes_the_proxy_cannot_use() {
    assert_eq!(
        condition_err("{pathRegex: '/api/(v1'}"),
        "spec.routes[0].condition.pathRegex: \"/api/(v1\" is not a usable path regex: unclosed group"
    );
    // Too large a DFA (a counted repetition after a wildcard explodes).
    assert_eq!(
        condition_err(r"{pathRegex: '.*a.{30}'}"),
        "spec.routes[0].condition.pathRegex: \".*a.{30}\" is not a usable path regex: determinization exceeded size limit of 1048576 (too complex to match within a proxy's memory bound)"
    );
    // RE2 has no look-around; neither has the proxy.
    let e = condition_err(r"{pathRegex: '(?=x)'}");
    assert!(e.contains("is not a usable path regex"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn refuses_bad_response_classes() {
    let with_class = |class: &str| {
        let e = err(&format!(
            "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: web.default.svc.cluster.local}}\nspec:\n  routes: [{{name: r, condition: {{method: GET}}, responseClasses: [{class}]}}]\n"
        ));
        format!("{}: {}", e.field, e.reason)
    };
    let field = "spec.routes[0].responseClasses[0]";
    assert_eq!(
        with_class("{condition: {}}"),
        format!("{field}.condition: is empty: set at least one of status, all, any or not")
    );
    assert_eq!(
        with_class("{isFailure: true}"),
        format!("{field}.condition: is required")
    );
    assert_eq!(
        with_class("{condition: {status: {min: 99}}}"),
        format!("{field}.condition.status.min: 99 is not an HTTP status: use 100 to 599")
    );
    assert_eq!(
        with_class("{condition: {any: [{status: {max: 600}}]}}"),
        format!("{field}.condition.any[0].status.max: 600 is not an HTTP status: use 100 to 599")
    );
    assert_eq!(
        with_class("{condition: {status: {min: 500, max: 404}}}"),
        format!("{field}.condition.status: min 500 is above max 404")
    );
    assert_eq!(
        with_class("{condition: {not: {status: {min: 500}}, all: []}}"),
        format!(
            "{field}.condition.all: must not be empty: give at least one condition, or leave it out"
        )
    );
    assert_eq!(
        with_class("{condition: {status: {min: 500, mx: 599}}}"),
        format!("{field}.condition.status.mx: unknown field `mx`, expected `min` or `max`")
    );
}

#[test]
fn refuses_bad_retry_budgets() {
    assert_eq!(
        web_err("retryRatio: 0.2", "retryRatio: -0.1"),
        "spec.retryBudget.retryRatio: -0.1 is out of range: use 0 to 1000 (0.2 lets retries add 20% to the load)"
    );
    assert_eq!(
        web_err("retryRatio: 0.2", "retryRatio: 1001"),
        "spec.retryBudget.retryRatio: 1001 is out of range: use 0 to 1000 (0.2 lets retries add 20% to the load)"
    );
    assert_eq!(
        web_err("    ttl: 10s", "    ttl: 500ms"),
        "spec.retryBudget.ttl: 500ms is out of range: use 1s to 60s"
    );
    assert_eq!(
        web_err("    ttl: 10s", "    ttl: 1m1s"),
        "spec.retryBudget.ttl: 1m1s is out of range: use 1s to 60s"
    );
    assert_eq!(
        web_err("    ttl: 10s\n", ""),
        "spec.retryBudget.ttl: is required"
    );
    let e = web_err("minRetriesPerSecond: 10", "minRetriesPerSecond: -1");
    assert!(
        e.starts_with("spec.retryBudget.minRetriesPerSecond: "),
        "{e}"
    );
    // Within the bounds, fractions included.
    assert!(parse_manifests(&web_with("    ttl: 10s", "    ttl: 1.5s")).is_ok());
    assert!(parse_manifests(&web_with("retryRatio: 0.2", "retryRatio: 0")).is_ok());
}

#[test]
fn refuses_bad_dst_overrides() {
    let field = "spec.dstOverrides[0]";
    let authority = |a: &str| web_err("web-v2.emojivoto.svc.cluster.local:80", a);
    assert_eq!(
        authority("web-v2.emojivoto.svc.cluster.local"),
        format!(
            "{field}.authority: \"web-v2.emojivoto.svc.cluster.local\" has no port: write host:port, e.g. web-v2.emojivoto.svc.cluster.local:80"
        )
    );
    assert_eq!(
        authority("web-v2:0"),
        format!("{field}.authority: \"0\" is not a port: use 1 to 65535")
    );
    assert_eq!(
        authority("web-v2:http"),
        format!("{field}.authority: \"http\" is not a port: use 1 to 65535")
    );
    assert_eq!(
        authority("Web_V2:80"),
        format!(
            "{field}.authority: \"Web_V2\" is not a host name: lower case letters, digits, '-' and '.' (or an IP address)"
        )
    );
    assert_eq!(
        authority("'[::1:80'"),
        format!(
            "{field}.authority: \"[::1\" is not a host name: lower case letters, digits, '-' and '.' (or an IP address)"
        )
    );
    assert_eq!(
        authority("':80'"),
        format!("{field}.authority: \":80\" has no host: write host:port")
    );
    // Addresses are authorities too.
    assert!(
        parse_manifests(&web_with(
            "web-v2.emojivoto.svc.cluster.local:80",
            "10.96.0.7:80"
        ))
        .is_ok()
    );
    assert!(
        parse_manifests(&web_with(
            "web-v2.emojivoto.svc.cluster.local:80",
            "'[fd00::7]:80'"
        ))
        .is_ok()
    );

    let weight = |w: &str| web_err("weight: 500m", &format!("weight: {w}"));
    assert_eq!(
        weight("-1"),
        format!("{field}.weight: \"-1\" is negative: a weight is 0 or more")
    );
    assert_eq!(
        weight("1k"),
        format!(
            "{field}.weight: \"1k\" is not a weight: use a whole number (\"1\"), a decimal with at most three places (\"0.5\") or milli-units (\"500m\")"
        )
    );
    assert_eq!(
        weight("0.0001"),
        format!(
            "{field}.weight: \"0.0001\" has more than three decimal places: weights are read in milli-units"
        )
    );
    assert_eq!(
        weight("5000000"),
        format!("{field}.weight: \"5000000\" is too large: at most 4294967295 (in milli-units)")
    );
    assert_eq!(
        weight("[1]"),
        format!(
            "{field}.weight: [1] is not a weight: use a number such as 1 or a quantity such as \"500m\""
        )
    );
    assert_eq!(
        web_err("    weight: 1\n", ""),
        "spec.dstOverrides[1].weight: is required"
    );
}

#[test]
fn refuses_names_that_are_no_dns_names() {
    let e = err(&WEB.replace(
        "web-svc.emojivoto.svc.cluster.local,",
        "Web.emojivoto.svc.cluster.local,",
    ));
    assert_eq!(e.field, "metadata.name");
}

#[test]
fn yaml_numbers_are_weights_too() {
    let p = profile(&web_with("weight: 500m", "weight: 0.5"));
    assert_eq!(p.spec.dst_overrides[0].weight.milli(), 500);
    assert_eq!(p.spec.dst_overrides[0].weight.as_str(), "0.5");
}
