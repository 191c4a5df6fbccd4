//! `OutboundPolicies` and `InboundServerPolicies`.

use crate::next;
use crate::support::{FQDN, FakeDiscover, TestServer, by_addr, by_authority, endpoint, view};
use linkerd2_proxy_api::inbound::inbound_server_policies_client::InboundServerPoliciesClient;
use linkerd2_proxy_api::inbound::{PortSpec, authn, proxy_protocol as inbound_protocol};
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{
    OutboundPolicy, TrafficSpec, backend, http_route, proxy_protocol,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// The discovery path of the HTTP/1 balancer of a Detect policy.
fn detect_balancer_path(policy: &OutboundPolicy) -> String {
    let Some(proxy_protocol::Kind::Detect(detect)) = policy.protocol.clone().and_then(|p| p.kind)
    else {
        panic!("Detect expected: {policy:?}");
    };
    let timeout = Duration::try_from(detect.timeout.expect("timeout")).expect("valid");
    assert_eq!(timeout, Duration::from_secs(10));
    assert!(detect.opaque.is_some() && detect.http2.is_some());
    let rule = &detect.http1.expect("http1").routes[0].rules[0];
    let Some(http_route::distribution::Kind::FirstAvailable(first)) =
        rule.backends.clone().and_then(|d| d.kind)
    else {
        panic!("first-available backends");
    };
    let backend = first.backends[0].backend.clone().expect("backend");
    let Some(backend::Kind::Balancer(p2c)) = backend.kind else {
        panic!("a balancer");
    };
    let Some(backend::endpoint_discovery::Kind::Dst(dst)) = p2c.discovery.and_then(|d| d.kind)
    else {
        panic!("Destination discovery");
    };
    dst.path
}

#[tokio::test]
async fn outbound_watch_detects_or_goes_opaque() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake.clone()).await;
    let mut client = OutboundPoliciesClient::new(server.channel().await);
    let mut rsp = client
        .watch(by_addr("10.96.0.10:80"))
        .await
        .expect("Watch")
        .into_inner();

    let policy = next(&mut rsp).await;
    assert_eq!(detect_balancer_path(&policy), format!("{FQDN}:80"));

    // Endpoint churn sends nothing; marking the port opaque does.
    fake.update(|v| {
        let e = endpoint(2, true);
        v.endpoints.insert(e.addr, e);
    });
    fake.update(|v| v.opaque = true);
    let policy = next(&mut rsp).await;
    let Some(proxy_protocol::Kind::Opaque(opaque)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("Opaque expected");
    };
    assert_eq!(opaque.routes.len(), 1);

    // appProtocol h2c: HTTP/2 without detection.
    fake.update(|v| {
        v.opaque = false;
        v.app_protocol = Some("kubernetes.io/h2c".into());
    });
    let policy = next(&mut rsp).await;
    assert!(matches!(
        policy.protocol.and_then(|p| p.kind),
        Some(proxy_protocol::Kind::Http2(_))
    ));
}

#[tokio::test]
async fn outbound_by_authority_and_unary_get() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([]));
    let server = TestServer::start(fake).await;
    let mut client = OutboundPoliciesClient::new(server.channel().await);
    let mut rsp = client
        .watch(by_authority(&format!("{FQDN}:80")))
        .await
        .expect("Watch")
        .into_inner();
    assert_eq!(
        detect_balancer_path(&next(&mut rsp).await),
        format!("{FQDN}:80")
    );
    let policy = client
        .get(by_authority(FQDN))
        .await
        .expect("Get, port 80 implied");
    assert_eq!(detect_balancer_path(policy.get_ref()), format!("{FQDN}:80"));
}

#[tokio::test]
async fn outbound_not_found_for_what_is_not_a_service() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake).await;
    let mut client = OutboundPoliciesClient::new(server.channel().await);
    let cases = [
        // An address that is neither a service nor a meshed pod.
        (by_addr("10.1.9.9:8080"), Code::NotFound),
        (by_addr("10.96.0.10:81"), Code::NotFound),
        (by_authority("example.com:443"), Code::NotFound),
        (
            by_authority("api.default.svc.cluster.local:80"),
            Code::NotFound,
        ),
        (TrafficSpec::default(), Code::InvalidArgument),
    ];
    for (spec, code) in cases {
        let status = client.watch(spec.clone()).await.expect_err("no policy");
        assert_eq!(status.code(), code, "{spec:?}: {status}");
        let status = client.get(spec.clone()).await.expect_err("no policy");
        assert_eq!(status.code(), code, "{spec:?}: {status}");
    }
}

#[tokio::test]
async fn a_meshed_pod_address_forwards_with_its_identity() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true), endpoint(2, false)]));
    let server = TestServer::start(fake).await;
    let mut client = OutboundPoliciesClient::new(server.channel().await);
    // Any port of the meshed pod.
    let mut stream = client
        .watch(by_addr("10.1.0.1:9999"))
        .await
        .expect("a policy")
        .into_inner();
    let policy = next(&mut stream).await;
    let Some(proxy_protocol::Kind::Detect(detect)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("Detect expected");
    };
    let rule = &detect.http1.expect("http1").routes[0].rules[0];
    let Some(http_route::distribution::Kind::FirstAvailable(first)) =
        rule.backends.clone().and_then(|d| d.kind)
    else {
        panic!("first-available backends");
    };
    let Some(backend::Kind::Forward(addr)) = first.backends[0].backend.clone().and_then(|b| b.kind)
    else {
        panic!("a forward backend");
    };
    assert_eq!(
        SocketAddr::try_from(addr.addr.expect("addr")).expect("valid"),
        "10.1.0.1:9999".parse::<SocketAddr>().expect("addr")
    );
    let id = addr.tls_identity.expect("identity");
    assert!(format!("{id:?}").contains(crate::support::identity().as_str()));
    assert!(addr.protocol_hint.is_some(), "H2 hint");
    // The unmeshed pod's address is not a mesh target.
    let status = client
        .watch(by_addr("10.1.0.2:8080"))
        .await
        .expect_err("no policy");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn inbound_watch_port_answers_the_default() {
    let server = TestServer::start(Arc::new(FakeDiscover::default())).await;
    let mut client = InboundServerPoliciesClient::new(server.channel().await);
    let spec = PortSpec {
        workload: r#"{"ns":"default","pod":"web-0"}"#.into(),
        port: 8080,
    };
    let mut rsp = client
        .watch_port(spec.clone())
        .await
        .expect("WatchPort")
        .into_inner();
    let srv = next(&mut rsp).await;
    assert_eq!(srv.labels["kind"], "default");
    assert_eq!(srv.labels["name"], "all-unauthenticated");
    let Some(inbound_protocol::Kind::Detect(detect)) = srv.protocol.clone().and_then(|p| p.kind)
    else {
        panic!("Detect expected");
    };
    assert_eq!(
        Duration::try_from(detect.timeout.expect("timeout")).expect("valid"),
        Duration::from_secs(10)
    );
    assert_eq!(detect.http_routes.len(), 1, "one route for all requests");
    let [authz] = &srv.authorizations[..] else {
        panic!("one authorization");
    };
    let nets: Vec<String> = authz
        .networks
        .iter()
        .map(|n| {
            let net = n.net.expect("net");
            let ip = std::net::IpAddr::try_from(net.ip.expect("ip")).expect("valid");
            format!("{ip}/{}", net.prefix_len)
        })
        .collect();
    assert_eq!(nets, ["0.0.0.0/0", "::/0"]);
    assert!(matches!(
        authz.authentication.clone().and_then(|a| a.permit),
        Some(authn::Permit::Unauthenticated(_))
    ));

    // The unary call answers the same; a bad port is rejected.
    let unary = client
        .get_port(spec.clone())
        .await
        .expect("GetPort")
        .into_inner();
    assert_eq!(unary, srv);
    let bad = PortSpec {
        port: 70_000,
        ..spec
    };
    assert_eq!(
        client.watch_port(bad).await.expect_err("bad port").code(),
        Code::InvalidArgument
    );
}
