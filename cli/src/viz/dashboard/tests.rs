use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn only_loopback_names_reach_a_loopback_dashboard() {
    for host in [
        "localhost:50750",
        "LOCALHOST",
        "127.0.0.1:50750",
        "127.0.0.1",
        "[::1]:50750",
        "[::1]",
    ] {
        assert!(host_allowed(Some(host), LOOPBACK), "{host}");
    }
    // A page elsewhere whose name was rebound to 127.0.0.1 sends its own
    // name; a missing or malformed Host is refused too.
    for host in [
        "evil.example:50750",
        "localhost.evil.example",
        "10.0.0.1:50750",
        "[::1",
        "[::1]x",
        "",
    ] {
        assert!(!host_allowed(Some(host), LOOPBACK), "{host}");
    }
    assert!(!host_allowed(None, LOOPBACK));
}

#[test]
fn the_listen_address_is_a_host_too() {
    let ip: IpAddr = "10.42.0.1".parse().unwrap();
    assert!(host_allowed(Some("10.42.0.1:50750"), ip));
    assert!(host_allowed(Some("localhost"), ip));
    assert!(!host_allowed(Some("10.42.0.2:50750"), ip));
    // Every address: the user chose to be reachable by any name.
    assert!(host_allowed(
        Some("dashboard.example"),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    ));
}

fn query(q: &str) -> std::collections::BTreeMap<String, String> {
    strand_viz::api::parse_query(q)
}

#[test]
fn tap_parameters() {
    let f = tap_filter(&query(
        "resource=deploy%2Fweb&namespace=emojivoto&path=%2Fapi&method=GET&max=5",
    ))
    .unwrap();
    assert_eq!(f.resource.kind, ResourceKind::Deployment);
    assert_eq!(f.resource.name.as_deref(), Some("web"));
    assert_eq!(f.namespace, "emojivoto");
    assert_eq!(f.path.as_deref(), Some("/api"));
    assert_eq!(f.method.as_deref(), Some("GET"));
    assert_eq!(f.authority, None);
    assert_eq!(f.max_requests, Some(5));

    let f = tap_filter(&query("resource=po/web-1&path=")).unwrap();
    assert_eq!(f.namespace, "default");
    assert_eq!(f.path, None, "an empty field is no filter");
    assert_eq!(f.max_requests, Some(TAP_DEFAULT));
}

#[test]
fn bad_tap_parameters_are_explained() {
    for (q, says) in [
        ("", "missing `resource`"),
        ("resource=deploy", "must name"),
        ("resource=svc/web-svc", "must name a workload"),
        ("resource=pods/a/b", "unknown resource"),
        ("resource=deploy/web&max=0", "1 to 10000"),
        ("resource=deploy/web&max=10001", "1 to 10000"),
        ("resource=deploy/web&max=many", "not a number"),
    ] {
        let e = tap_filter(&query(q)).err().unwrap_or_default();
        assert!(e.contains(says), "{q}: {e}");
    }
}

#[test]
fn grafana_urls() {
    assert_eq!(
        grafana_base("http://127.0.0.1:3000/").unwrap(),
        "http://127.0.0.1:3000"
    );
    assert_eq!(
        grafana_base("https://grafana.example/sub").unwrap(),
        "https://grafana.example/sub"
    );
    for bad in [
        "127.0.0.1:3000",
        "ftp://x",
        "http://",
        "javascript:alert(1)",
    ] {
        assert!(grafana_base(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_page_uses_only_what_the_server_serves() {
    // Scripts and styles come from this server (the page's Content-Security-Policy
    // allows nothing else), and every API path the script calls exists.
    assert!(INDEX_HTML.contains(r#"src="/app.js""#));
    assert!(INDEX_HTML.contains(r#"href="/style.css""#));
    assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    for path in [
        "/api/config",
        "/api/stat",
        "/api/edges",
        "/api/routes",
        "/api/tap",
    ] {
        assert!(
            APP_JS.contains(&format!("'{path}'")) || APP_JS.contains(&format!("`{path}?")),
            "{path}"
        );
    }
    assert!(
        !APP_JS.contains("innerHTML"),
        "text is set with textContent only"
    );
}

#[test]
fn no_routes_says_where_profiles_come_from() {
    // The routes table's empty state points at the command that writes a
    // ServiceProfile, as `strand viz routes` does.
    assert!(
        APP_JS.contains("No ServiceProfile routes: see `strand profile --template`."),
        "the routes table's empty state"
    );
}

#[test]
fn grafana_links_name_shipped_dashboards_and_their_variables() {
    let uids = grafana_uids();
    for kind in ["deployment", "pod", "namespace"] {
        let uid = uids[kind].as_str().unwrap();
        let d = strand_viz::grafana::dashboards()
            .into_iter()
            .find(|d| d.uid == uid)
            .unwrap();
        // The page links with `var-namespace` and `var-<kind>`.
        let vars = d.variables();
        assert!(vars.iter().any(|v| v == "namespace"), "{uid}: {vars:?}");
        if kind != "namespace" {
            assert!(vars.iter().any(|v| v == kind), "{uid}: {vars:?}");
        }
    }
}
