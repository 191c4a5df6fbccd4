//! `Destination/GetProfile`.

use crate::next;
use crate::support::{FQDN, FakeDiscover, TestServer, endpoint, view};
use linkerd2_proxy_api::destination::GetDestination;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::meta::metadata;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::Code;

fn get(path: &str) -> GetDestination {
    GetDestination {
        path: path.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn profile_of_a_service_follows_its_opaque_flag() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake.clone()).await;
    let mut dst = DestinationClient::new(server.channel().await);
    let mut rsp = dst
        .get_profile(get(&format!("{FQDN}:80")))
        .await
        .expect("GetProfile")
        .into_inner();

    let p = next(&mut rsp).await;
    assert_eq!(p.fully_qualified_name, FQDN);
    assert!(!p.opaque_protocol);
    assert!(p.routes.is_empty());
    assert_eq!((p.retry_budget, p.endpoint), (None, None));
    let Some(metadata::Kind::Resource(parent)) = p.parent_ref.and_then(|m| m.kind) else {
        panic!("the parent is the service");
    };
    assert_eq!(
        (&*parent.kind, &*parent.name, parent.port),
        ("Service", "web", 80)
    );

    // Endpoint churn sends nothing: the next profile is the opaque change.
    fake.update(|v| {
        let e = endpoint(2, true);
        v.endpoints.insert(e.addr, e);
    });
    fake.update(|v| v.opaque = true);
    let p = next(&mut rsp).await;
    assert!(p.opaque_protocol, "opaque after the change: {p:?}");
    assert_eq!(p.fully_qualified_name, FQDN);

    fake.update(|v| {
        v.opaque = false;
        v.app_protocol = Some("linkerd.io/opaque".into());
    });
    fake.update(|v| v.app_protocol = None);
    assert!(!next(&mut rsp).await.opaque_protocol);
}

#[tokio::test]
async fn profile_by_cluster_ip_names_the_service() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([]));
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    let mut rsp = dst
        .get_profile(get("10.96.0.10:80"))
        .await
        .expect("GetProfile")
        .into_inner();
    assert_eq!(next(&mut rsp).await.fully_qualified_name, FQDN);
}

#[tokio::test]
async fn profile_of_another_address_is_that_endpoint() {
    let fake = Arc::new(FakeDiscover::default());
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    for (path, opaque) in [("10.1.0.7:8080", false), ("10.1.0.7:5432", true)] {
        let mut rsp = dst
            .get_profile(get(path))
            .await
            .expect("GetProfile")
            .into_inner();
        let p = next(&mut rsp).await;
        assert_eq!(p.fully_qualified_name, "", "{path}");
        assert_eq!(p.opaque_protocol, opaque, "{path}: default opaque ports");
        let ep = p.endpoint.expect("the address itself");
        let addr = SocketAddr::try_from(ep.addr.expect("addr")).expect("valid");
        assert_eq!(addr.to_string(), path);
        assert_eq!((ep.tls_identity, ep.protocol_hint), (None, None));
    }
}

#[tokio::test]
async fn profile_rejects_names_without_a_service() {
    let fake = Arc::new(FakeDiscover::default());
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    for path in [
        "api.default.svc.cluster.local:80",
        "example.com:443",
        "nonsense",
    ] {
        let status = dst.get_profile(get(path)).await.expect_err(path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status}");
    }
}
