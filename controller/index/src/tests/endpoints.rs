//! Which pods become endpoints, and how they follow pod changes.

use super::*;
use strand_controller_core::IdentityName;

#[test]
fn ready_selected_pods_become_endpoints_on_numeric_and_named_ports() {
    let index = index();
    let mut web = service("web", "web", "10.96.0.10");
    web.metadata
        .annotations
        .insert("config.linkerd.io/opaque-ports".into(), "9990".into());
    web.spec.ports[0].app_protocol = Some("http".into());
    index.apply(Resource::Service(web));
    let mut a = pod("a", "web", "10.1.0.1");
    a.status.meshed = true;
    a.spec.ports.push(admin_port(9991));
    index.apply(Resource::Pod(a));
    // b has no port named `admin`: an endpoint of port 80 only.
    index.apply(Resource::Pod(pod("b", "web", "10.1.0.2")));

    let mut http = index.watch(&key("web"), 80);
    let view = seen(&mut http).expect("service port exists");
    assert_eq!(view.service, key("web"));
    assert_eq!(view.fqdn, "web.shop.svc.cluster.local");
    assert_eq!(view.cluster_ip, Some("10.96.0.10".parse().expect("ip")));
    assert_eq!(view.port, 80);
    assert!(!view.opaque);
    assert_eq!(view.app_protocol.as_deref(), Some("http"));
    assert_eq!(
        view.endpoints.keys().copied().collect::<Vec<_>>(),
        vec![addr("10.1.0.1:8080"), addr("10.1.0.2:8080")]
    );
    let ep = &view.endpoints[&addr("10.1.0.1:8080")];
    assert_eq!(ep.pod, "a");
    assert_eq!(ep.namespace, NS);
    assert_eq!(ep.workload, "web");
    assert_eq!(ep.service_account, "web-sa");
    assert_eq!(ep.labels, labels(&[("app", "web")]));
    assert_eq!(
        ep.identity,
        Some(IdentityName::new(
            "web-sa.shop.serviceaccount.identity.linkerd.cluster.local"
        ))
    );
    assert_eq!(view.endpoints[&addr("10.1.0.2:8080")].identity, None);

    let mut admin = index.watch(&key("web"), 9990);
    let view = seen(&mut admin).expect("service port exists");
    assert!(view.opaque);
    assert_eq!(
        view.endpoints.keys().copied().collect::<Vec<_>>(),
        vec![addr("10.1.0.1:9991")]
    );
}

#[test]
fn pods_that_cannot_serve_are_left_out() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let mut not_ready = pod("not-ready", "web", "10.1.0.1");
    not_ready.status.ready = false;
    let mut no_ip = pod("no-ip", "web", "10.1.0.2");
    no_ip.status.pod_ip = None;
    let mut elsewhere = pod("elsewhere", "web", "10.1.0.3");
    elsewhere.metadata.namespace = "other".into();
    let other_app = pod("other-app", "db", "10.1.0.4");
    let good = pod("good", "web", "10.1.0.5");
    for p in [not_ready, no_ip, elsewhere, other_app, good] {
        index.apply(Resource::Pod(p));
    }
    let mut rx = index.watch(&key("web"), 80);
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.5:8080")]);

    // An empty selector selects nothing.
    let mut all = service("all", "web", "10.96.0.11");
    all.spec.selector.clear();
    index.apply(Resource::Service(all));
    let mut rx = index.watch(&key("all"), 80);
    assert!(seen(&mut rx).expect("service exists").endpoints.is_empty());
}

#[test]
fn endpoints_follow_readiness_labels_and_deletion() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let mut a = pod("a", "web", "10.1.0.1");
    a.status.ready = false;
    index.apply(Resource::Pod(a.clone()));
    let mut rx = index.watch(&key("web"), 80);
    assert_eq!(endpoints(&mut rx), vec![]);

    a.status.ready = true;
    index.apply(Resource::Pod(a.clone()));
    assert!(changed(&rx), "a pod turning ready is published");
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.1:8080")]);

    a.metadata.labels = labels(&[("app", "web-canary")]);
    index.apply(Resource::Pod(a.clone()));
    assert!(changed(&rx), "labels changed away are published");
    assert_eq!(endpoints(&mut rx), vec![]);

    a.metadata.labels = labels(&[("app", "web")]);
    index.apply(Resource::Pod(a));
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.1:8080")]);
    index.delete(&pod_key("a"));
    assert!(changed(&rx), "a deleted pod is published");
    assert_eq!(endpoints(&mut rx), vec![]);
}

#[test]
fn endpoint_details_changes_are_published() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    let mut a = pod("a", "web", "10.1.0.1");
    index.apply(Resource::Pod(a.clone()));
    let mut rx = index.watch(&key("web"), 80);
    assert_eq!(seen(&mut rx).expect("exists").endpoints.len(), 1);

    a.status.meshed = true;
    index.apply(Resource::Pod(a.clone()));
    assert!(changed(&rx), "a pod becoming meshed gains an identity");
    let view = seen(&mut rx).expect("exists");
    assert!(view.endpoints[&addr("10.1.0.1:8080")].identity.is_some());

    a.status.pod_ip = Some("10.1.0.9".parse().expect("ip"));
    index.apply(Resource::Pod(a));
    assert!(changed(&rx), "a new pod IP is published");
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.9:8080")]);
}

#[test]
fn service_changes_are_published() {
    let index = index();
    index.apply(Resource::Service(service("web", "web", "10.96.0.10")));
    index.apply(Resource::Pod(pod("a", "web", "10.1.0.1")));
    index.apply(Resource::Pod(pod("b", "api", "10.1.0.2")));
    let mut rx = index.watch(&key("web"), 80);
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.1:8080")]);

    let mut web = service("web", "api", "10.96.0.10");
    web.spec.ports[0].target_port = Some(TargetPort::Number(9000));
    index.apply(Resource::Service(web));
    assert!(changed(&rx), "a new selector and target port are published");
    assert_eq!(endpoints(&mut rx), vec![addr("10.1.0.2:9000")]);
}
