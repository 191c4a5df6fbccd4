//! Target lookups for discovery and name resolution for DNS.

use super::*;
use std::net::IpAddr;
use strand_controller_core::Target;

fn name(host: &str, port: u16) -> Target {
    Target::Name {
        host: host.to_string(),
        port,
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter()
        .map(|s| s.parse().expect("test IPs are valid"))
        .collect()
}

#[test]
fn lookup_by_name() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let found = Some((key("web"), 80));
    assert_eq!(index.lookup(&name("web.shop.svc.cluster.local", 80)), found);
    assert_eq!(
        index.lookup(&name("Web.SHOP.svc.Cluster.Local.", 80)),
        found
    );
    assert_eq!(
        index.lookup(&name("web.shop.svc.cluster.local", 9990)),
        Some((key("web"), 9990))
    );
    for (host, port) in [
        ("web.shop.svc.cluster.local", 81),
        ("api.shop.svc.cluster.local", 80),
        ("web.other.svc.cluster.local", 80),
        ("web.shop.svc.example.org", 80),
        ("web.shop.svc", 80),
        ("web.shop", 80),
        ("web", 80),
        ("10.96.0.10", 80),
    ] {
        assert_eq!(index.lookup(&name(host, port)), None, "{host}:{port}");
    }
    assert_eq!(index.cluster_domain(), "cluster.local");
}

#[test]
fn lookup_by_virtual_ip() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    index.apply(Resource::Pod(pod("a", "web", "10.1.0.1")));
    let at = |s: &str| index.lookup(&Target::Addr(addr(s)));
    assert_eq!(at("10.96.0.10:80"), Some((key("web"), 80)));
    assert_eq!(at("10.96.0.10:81"), None, "wrong port");
    assert_eq!(at("10.96.0.11:80"), None, "no such address");
    assert_eq!(at("10.1.0.1:8080"), None, "pod IPs are not services");

    // A new virtual IP replaces the old one.
    index.apply(Resource::Service(service("web", "web", "10.96.0.12")));
    assert_eq!(at("10.96.0.10:80"), None);
    assert_eq!(at("10.96.0.12:80"), Some((key("web"), 80)));
    index.delete(&svc_key("web"));
    assert_eq!(at("10.96.0.12:80"), None);
}

#[test]
fn a_duplicate_virtual_ip_goes_to_the_later_service() {
    let index = index();
    index.apply(Resource::Service(service("first", "a", "10.96.0.10")));
    index.apply(Resource::Service(service("second", "b", "10.96.0.10")));
    let at = || index.lookup(&Target::Addr(addr("10.96.0.10:80")));
    assert_eq!(at(), Some((key("second"), 80)));
    // Re-applying the earlier one unchanged does not take the address back.
    index.apply(Resource::Service(service("first", "a", "10.96.0.10")));
    assert_eq!(at(), Some((key("second"), 80)));
    index.delete(&svc_key("second"));
    assert_eq!(at(), Some((key("first"), 80)), "the earlier claim remains");
    index.delete(&svc_key("first"));
    assert_eq!(at(), None);
}

#[test]
fn resolve_name_gives_the_virtual_ip_or_ready_pod_ips() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    assert_eq!(
        index.resolve_name("web.shop.svc.cluster.local"),
        Some(ips(&["10.96.0.10"]))
    );
    assert_eq!(
        index.resolve_name("WEB.shop.svc.cluster.local."),
        Some(ips(&["10.96.0.10"]))
    );
    assert_eq!(index.resolve_name("api.shop.svc.cluster.local"), None);
    assert_eq!(index.resolve_name("web.shop"), None);

    index.apply(Resource::Service(service("db", "db", "None")));
    let db = "db.shop.svc.cluster.local";
    assert_eq!(index.resolve_name(db), Some(vec![]), "headless, no pods");
    let mut not_ready = pod("db-2", "db", "10.1.0.3");
    not_ready.status.ready = false;
    for p in [
        pod("db-1", "db", "10.1.0.2"),
        pod("db-0", "db", "10.1.0.1"),
        not_ready,
        pod("web-0", "web", "10.1.0.4"),
    ] {
        index.apply(Resource::Pod(p));
    }
    assert_eq!(index.resolve_name(db), Some(ips(&["10.1.0.1", "10.1.0.2"])));

    // Headless services still have endpoint views.
    let mut rx = index.watch(&key("db"), 80);
    let view = seen(&mut rx).expect("exists");
    assert_eq!(view.cluster_ip, None);
    assert_eq!(view.endpoints.len(), 2);
}

#[test]
fn a_meshed_ready_pod_is_found_by_its_address_on_any_port() {
    let index = index();
    let mut meshed = pod("web-1", "web", "10.42.0.5");
    meshed.status.meshed = true;
    index.apply(Resource::Pod(meshed.clone()));
    index.apply(Resource::Pod(pod("plain-1", "plain", "10.42.0.6")));
    let ep = index
        .pod_endpoint(addr("10.42.0.5:7000"))
        .expect("meshed pod");
    assert_eq!(ep.addr, addr("10.42.0.5:7000"));
    assert_eq!(ep.pod, "web-1");
    assert_eq!(
        ep.identity.map(|i| i.to_string()).as_deref(),
        Some("web-sa.shop.serviceaccount.identity.linkerd.cluster.local")
    );
    // Unmeshed, not ready, or nobody there: not a mesh endpoint.
    assert!(index.pod_endpoint(addr("10.42.0.6:8080")).is_none());
    assert!(index.pod_endpoint(addr("10.42.0.7:8080")).is_none());
    meshed.status.ready = false;
    index.apply(Resource::Pod(meshed));
    assert!(index.pod_endpoint(addr("10.42.0.5:7000")).is_none());
}
