use super::*;
use std::collections::BTreeMap;

fn view(opaque: bool, app_protocol: Option<&str>) -> ServicePortView {
    ServicePortView {
        service: ServiceKey::new("default", "web"),
        fqdn: "web.default.svc.cluster.local".into(),
        cluster_ip: None,
        port: 80,
        opaque,
        app_protocol: app_protocol.map(str::to_string),
        endpoints: BTreeMap::new(),
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        profile: None,
    }
}

#[test]
fn protocol_from_annotation_and_app_protocol() {
    let cases = [
        (false, None, Protocol::Detect),
        (true, None, Protocol::Opaque),
        (true, Some("http"), Protocol::Opaque),
        (false, Some("linkerd.io/opaque"), Protocol::Opaque),
        (false, Some("linkerd.io/tcp"), Protocol::Opaque),
        (false, Some("http"), Protocol::Http1),
        (false, Some("HTTP"), Protocol::Http1),
        (false, Some("kubernetes.io/h2c"), Protocol::Http2),
        (false, Some("grpc"), Protocol::Grpc),
        (false, Some("kubernetes.io/ws"), Protocol::Detect),
    ];
    for (opaque, app, want) in cases {
        assert_eq!(protocol(&view(opaque, app)), want, "{opaque} {app:?}");
    }
}
