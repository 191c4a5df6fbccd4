//! ServiceProfiles: which service a profile describes, and which changes
//! wake that service's watchers.

use super::*;
use strand_controller_core::{Kind, ServiceProfile, parse_manifests};

/// A profile `name` in `namespace` with one route per name in `routes`.
fn profile_in(namespace: &str, name: &str, routes: &[&str]) -> ServiceProfile {
    let routes: Vec<String> = routes
        .iter()
        .map(|r| format!("{{name: {r}, condition: {{pathRegex: /{r}}}}}"))
        .collect();
    let text = format!(
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  routes: [{}]\n",
        routes.join(", ")
    );
    match parse_manifests(&text).expect("a valid profile").pop() {
        Some(Resource::ServiceProfile(p)) => p,
        other => panic!("not a profile: {other:?}"),
    }
}

const WEB_FQDN: &str = "web.shop.svc.cluster.local";

fn profile(routes: &[&str]) -> ServiceProfile {
    profile_in(NS, WEB_FQDN, routes)
}

fn profile_key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::ServiceProfile, NS, name)
}

/// The route names of the current view's profile, marking it seen; `None`
/// without a profile.
fn routes(rx: &mut ServiceWatch) -> Option<Vec<String>> {
    let view = seen(rx).expect("a view");
    let profile = view.profile.as_ref()?;
    Some(profile.spec.routes.iter().map(|r| r.name.clone()).collect())
}

#[test]
fn a_profile_follows_its_service_through_apply_change_and_delete() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    index.apply(Resource::Service(service("api", "api", "10.96.0.11")));
    let mut http = index.watch(&key("web"), 80);
    let mut admin = index.watch(&key("web"), 9990);
    let mut api = index.watch(&key("api"), 80);
    assert_eq!(routes(&mut http), None);
    seen(&mut admin);
    seen(&mut api);

    // Every port of the service carries it; other services are untouched.
    index.apply(Resource::ServiceProfile(profile(&["list"])));
    assert!(changed(&http) && changed(&admin));
    assert!(!changed(&api));
    assert_eq!(
        routes(&mut http).as_deref(),
        Some(&["list".to_string()][..])
    );
    assert_eq!(
        routes(&mut admin).as_deref(),
        Some(&["list".to_string()][..])
    );

    // The same again wakes nobody; a change does.
    index.apply(Resource::ServiceProfile(profile(&["list"])));
    assert!(!changed(&http));
    index.apply(Resource::ServiceProfile(profile(&["list", "vote"])));
    assert_eq!(
        routes(&mut http),
        Some(vec!["list".to_string(), "vote".to_string()])
    );

    // Endpoint churn keeps the very same profile (no copy per view).
    let before = seen(&mut http)
        .and_then(|v| v.profile.clone())
        .expect("profile");
    index.apply(Resource::Pod(pod("web-1", "web", "10.1.0.1")));
    assert!(changed(&http));
    let after = seen(&mut http)
        .and_then(|v| v.profile.clone())
        .expect("profile");
    assert!(Arc::ptr_eq(&before, &after));

    index.delete(&profile_key(WEB_FQDN));
    assert!(changed(&http));
    assert_eq!(routes(&mut http), None);
    assert_eq!(routes(&mut admin), None);
    assert!(!changed(&api));
}

#[test]
fn a_profile_applied_before_its_service_is_there_when_it_comes() {
    let index = index();
    index.apply(Resource::ServiceProfile(profile(&["list"])));
    let mut http = index.watch(&key("web"), 80);
    assert!(seen(&mut http).is_none(), "no service yet");
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    assert_eq!(routes(&mut http), Some(vec!["list".to_string()]));
}

#[test]
fn profiles_named_otherwise_describe_nothing() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let mut http = index.watch(&key("web"), 80);
    seen(&mut http);
    // Another cluster domain, the service's name in another namespace, a
    // name that is no service's: stored, and no view changes.
    for (ns, name) in [
        (NS, "web.shop.svc.example.org"),
        ("other", WEB_FQDN),
        (NS, "web.example.com"),
    ] {
        index.apply(Resource::ServiceProfile(profile_in(ns, name, &["x"])));
        assert!(!changed(&http), "{ns}/{name}");
    }
    assert_eq!(routes(&mut http), None);
    index.delete(&ResourceKey::new(
        Kind::ServiceProfile,
        NS,
        "web.shop.svc.example.org",
    ));
    assert!(!changed(&http));
}

#[test]
fn reset_removes_profiles_it_does_not_list() {
    let index = index();
    let web = Resource::Service(service("web", "web", "10.96.0.10"));
    index.reset(vec![
        web.clone(),
        Resource::ServiceProfile(profile(&["list"])),
    ]);
    let mut http = index.watch(&key("web"), 80);
    assert_eq!(routes(&mut http), Some(vec!["list".to_string()]));
    index.reset(vec![web]);
    assert!(changed(&http));
    assert_eq!(routes(&mut http), None);
}
