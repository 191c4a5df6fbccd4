//! The conversion of a profile to `DestinationProfile`, case by case (the
//! cases of Linkerd's profile translator tests, and strand's defaults).

use super::*;
use std::collections::BTreeMap;
use std::time::Duration;
use strand_controller_core::{Resource, parse_manifests};

fn view(spec: Option<&str>) -> ServicePortView {
    ServicePortView {
        service: ServiceKey::new("bar", "foo"),
        fqdn: "foo.bar.svc.cluster.local".into(),
        cluster_ip: None,
        port: 80,
        opaque: false,
        app_protocol: None,
        endpoints: BTreeMap::new(),
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        profile: spec.map(|spec| Arc::new(parse(spec))),
    }
}

/// A profile of foo.bar with `spec` (YAML lines indented two spaces).
fn parse(spec: &str) -> ServiceProfile {
    let text = format!(
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: foo.bar.svc.cluster.local, namespace: bar}}\nspec:\n{spec}"
    );
    match parse_manifests(&text).expect("valid").pop() {
        Some(Resource::ServiceProfile(p)) => p,
        other => panic!("not a profile: {other:?}"),
    }
}

fn profile(spec: &str) -> DestinationProfile {
    service(&view(Some(spec)), "cluster.local")
}

/// The only route of a profile with this one route (YAML flow mapping).
fn one_route(route: &str) -> api::Route {
    let mut p = profile(&format!("  routes: [{route}]\n"));
    assert_eq!(p.routes.len(), 1);
    p.routes.remove(0)
}

fn m(m: request_match::Match) -> api::RequestMatch {
    api::RequestMatch { r#match: Some(m) }
}

fn method(name: &str) -> api::RequestMatch {
    m(request_match::Match::Method(HttpMethod::from(
        http::Method::from_bytes(name.as_bytes()).expect("a method"),
    )))
}

fn path(re: &str) -> api::RequestMatch {
    m(request_match::Match::Path(PathMatch { regex: re.into() }))
}

fn all(ms: Vec<api::RequestMatch>) -> api::RequestMatch {
    m(request_match::Match::All(request_match::Seq {
        matches: ms,
    }))
}

fn not(inner: api::RequestMatch) -> api::RequestMatch {
    m(request_match::Match::Not(Box::new(inner)))
}

fn status(min: u32, max: u32) -> api::ResponseMatch {
    api::ResponseMatch {
        r#match: Some(response_match::Match::Status(HttpStatusRange { min, max })),
    }
}

/// A protobuf duration (typed by where it comes from) as a std one.
fn std_duration<T>(d: Option<T>) -> Option<Duration>
where
    Duration: TryFrom<T>,
    <Duration as TryFrom<T>>::Error: std::fmt::Debug,
{
    d.map(|d| Duration::try_from(d).expect("a valid duration"))
}

#[test]
fn without_a_profile_routes_are_empty_and_the_budget_absent() {
    let p = service(&view(None), "cluster.local");
    assert_eq!(p.fully_qualified_name, "foo.bar.svc.cluster.local");
    assert!(p.routes.is_empty() && p.dst_overrides.is_empty());
    assert_eq!((p.retry_budget, p.profile_ref), (None, None));
    assert!(p.parent_ref.is_some());
}

#[test]
fn a_route_with_every_field() {
    let p = profile(
        "  routes:\n  - name: route1\n    condition: {all: [{method: GET}, {not: {pathRegex: /private/.*}}]}\n    responseClasses: [{condition: {status: {min: 500, max: 599}}, isFailure: true}]\n    isRetryable: true\n    timeout: 200ms\n",
    );
    let [r] = &p.routes[..] else {
        panic!("one route");
    };
    assert_eq!(
        r.condition,
        Some(all(vec![method("GET"), not(path("/private/.*"))]))
    );
    assert_eq!(
        r.response_classes,
        [api::ResponseClass {
            condition: Some(status(500, 599)),
            is_failure: true,
        }]
    );
    assert_eq!(
        r.metrics_labels,
        HashMap::from([("route".to_string(), "route1".to_string())])
    );
    assert!(r.is_retryable);
    assert_eq!(std_duration(r.timeout), Some(Duration::from_millis(200)));
    // The profile's own metadata.
    let Some(metadata::Kind::Resource(meta)) = p.profile_ref.and_then(|m| m.kind) else {
        panic!("the profile is a resource");
    };
    assert_eq!(
        (
            &*meta.group,
            &*meta.kind,
            &*meta.name,
            &*meta.namespace,
            meta.port
        ),
        (
            "linkerd.io",
            "ServiceProfile",
            "foo.bar.svc.cluster.local",
            "bar",
            0
        )
    );
}

#[test]
fn a_condition_with_several_fields_is_their_all() {
    let r = one_route("{name: r, condition: {method: GET, pathRegex: /my/path}}");
    assert_eq!(
        r.condition,
        Some(all(vec![method("GET"), path("/my/path")]))
    );
    // One field stays itself.
    let r = one_route("{name: r, condition: {pathRegex: /login}}");
    assert_eq!(r.condition, Some(path("/login")));

    let r = one_route(
        "{name: r, condition: {method: GET}, responseClasses: [{condition: {status: {min: 400, max: 499}, not: {status: {min: 404, max: 404}}}}]}",
    );
    let not_404 = api::ResponseMatch {
        r#match: Some(response_match::Match::Not(Box::new(status(404, 404)))),
    };
    assert_eq!(
        r.response_classes[0].condition,
        Some(api::ResponseMatch {
            r#match: Some(response_match::Match::All(response_match::Seq {
                matches: vec![status(400, 499), not_404],
            })),
        })
    );
    assert!(!r.response_classes[0].is_failure);
}

#[test]
fn defaults_are_sent_explicitly() {
    let p = profile(
        "  routes: [{name: r, condition: {method: GET}, responseClasses: [{condition: {status: {min: 500}}}, {condition: {status: {max: 299}}}]}]\n",
    );
    let r = &p.routes[0];
    assert!(!r.is_retryable);
    assert_eq!(std_duration(r.timeout), Some(Duration::from_secs(10)));
    // A one-sided range is sent with both bounds (100 and 599 by default).
    let classes: Vec<_> = r
        .response_classes
        .iter()
        .map(|c| c.condition.clone())
        .collect();
    assert_eq!(classes, [Some(status(500, 599)), Some(status(100, 299))]);
    let budget = p.retry_budget.expect("always sent with a profile");
    assert_eq!(
        (
            budget.retry_ratio,
            budget.min_retries_per_second,
            std_duration(budget.ttl)
        ),
        (0.2, 10, Some(Duration::from_secs(10)))
    );
}

#[test]
fn methods_registered_and_not() {
    let r = one_route("{name: r, condition: {any: [{method: PATCH}, {method: PROPFIND}]}}");
    let Some(request_match::Match::Any(any)) = r.condition.and_then(|c| c.r#match) else {
        panic!("any");
    };
    let types: Vec<_> = any
        .matches
        .iter()
        .map(|m| match &m.r#match {
            Some(request_match::Match::Method(m)) => m.r#type.clone(),
            other => panic!("a method: {other:?}"),
        })
        .collect();
    assert_eq!(
        types,
        [
            Some(http_method::Type::Registered(
                http_method::Registered::Patch.into()
            )),
            Some(http_method::Type::Unregistered("PROPFIND".into())),
        ]
    );
}

#[test]
fn retry_budget_and_dst_overrides() {
    let p = profile(
        "  retryBudget: {retryRatio: 0.5, minRetriesPerSecond: 3, ttl: 30s}\n  dstOverrides:\n  - {authority: foo-v2.bar.svc.cluster.local:8080, weight: 500m}\n  - {authority: example.com:443, weight: 1}\n",
    );
    assert!(p.routes.is_empty());
    let budget = p.retry_budget.expect("budget");
    assert_eq!(
        (
            budget.retry_ratio,
            budget.min_retries_per_second,
            std_duration(budget.ttl)
        ),
        (0.5, 3, Some(Duration::from_secs(30)))
    );
    let weights: Vec<_> = p
        .dst_overrides
        .iter()
        .map(|d| (d.authority.as_str(), d.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("foo-v2.bar.svc.cluster.local:8080", 500),
            ("example.com:443", 1000)
        ]
    );
    // A service authority names its Service port; another does not.
    let Some(metadata::Kind::Resource(svc)) =
        p.dst_overrides[0].backend_ref.clone().and_then(|m| m.kind)
    else {
        panic!("a service backend");
    };
    assert_eq!(
        (&*svc.kind, &*svc.name, &*svc.namespace, svc.port),
        ("Service", "foo-v2", "bar", 8080)
    );
    assert_eq!(p.dst_overrides[1].backend_ref, None);
}

#[test]
fn an_empty_stored_condition_stays_empty() {
    // Validation refuses it; one stored before must not match everything.
    let mut view = view(Some("  routes: [{name: r, condition: {method: GET}}]\n"));
    let mut p = (*view.profile.take().expect("profile")).clone();
    p.spec.routes[0].condition = RequestMatch::default();
    view.profile = Some(Arc::new(p));
    let out = service(&view, "cluster.local");
    assert_eq!(
        out.routes[0].condition,
        Some(api::RequestMatch { r#match: None })
    );
}
