//! `Destination/Get`.

use crate::next;
use crate::support::{FQDN, FakeDiscover, TestServer, endpoint, view, web};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::update::Update as U;
use linkerd2_proxy_api::destination::{
    GetDestination, Update, WeightedAddr, protocol_hint, tls_identity,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::Code;

fn get(path: &str) -> GetDestination {
    GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: String::new(),
    }
}

fn addr(wa: &WeightedAddr) -> SocketAddr {
    SocketAddr::try_from(wa.addr.expect("addr")).expect("valid")
}

/// The addresses of an `Add`, sorted, with the set's labels.
fn added(u: Update) -> (Vec<WeightedAddr>, HashMap<String, String>) {
    match u.update {
        Some(U::Add(set)) => (set.addrs, set.metric_labels),
        other => panic!("expected Add, got {other:?}"),
    }
}

async fn client(server: &TestServer) -> DestinationClient<tonic::transport::Channel> {
    DestinationClient::new(server.channel().await)
}

#[tokio::test]
async fn get_streams_the_set_then_its_changes() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true), endpoint(2, false)]));
    let server = TestServer::start(fake.clone()).await;
    let mut dst = client(&server).await;
    let mut rsp = dst
        .get(get(&format!("{FQDN}:80")))
        .await
        .expect("Get")
        .into_inner();

    // The whole set, with set labels, and identity and hint only when meshed.
    let (addrs, labels) = added(next(&mut rsp).await);
    assert_eq!(
        labels,
        HashMap::from([
            ("namespace".to_string(), "default".to_string()),
            ("service".to_string(), "web".to_string()),
        ])
    );
    assert_eq!(addrs.len(), 2);
    let (meshed, plain) = (&addrs[0], &addrs[1]);
    assert_eq!(addr(meshed), endpoint(1, true).addr);
    assert_eq!(meshed.weight, 10_000);
    assert_eq!(meshed.metric_labels["pod"], "web-7c9f8d6b5-00001");
    assert_eq!(meshed.metric_labels["serviceaccount"], "web");
    assert_eq!(meshed.metric_labels["deployment"], "web");
    let id = meshed.tls_identity.clone().expect("meshed: identity");
    let Some(tls_identity::Strategy::DnsLikeIdentity(dns)) = id.strategy else {
        panic!("DNS-like identity expected: {id:?}");
    };
    assert_eq!(
        dns.name,
        "web.default.serviceaccount.identity.linkerd.cluster.local"
    );
    let hint = meshed.protocol_hint.expect("meshed: hint");
    assert!(matches!(
        hint.protocol,
        Some(protocol_hint::Protocol::H2(_))
    ));
    assert_eq!(hint.opaque_transport, None);
    assert_eq!(meshed.authority_override, None);
    assert_eq!(addr(plain), endpoint(2, false).addr);
    assert_eq!((&plain.tls_identity, &plain.protocol_hint), (&None, &None));

    // One endpoint added: an Add of that one.
    fake.update(|v| {
        let e = endpoint(3, true);
        v.endpoints.insert(e.addr, e);
    });
    let (addrs, _) = added(next(&mut rsp).await);
    assert_eq!(
        addrs.iter().map(addr).collect::<Vec<_>>(),
        [endpoint(3, true).addr]
    );

    // One removed: a Remove of that one.
    fake.update(|v| {
        v.endpoints.remove(&endpoint(1, true).addr);
    });
    match next(&mut rsp).await.update {
        Some(U::Remove(set)) => {
            let gone: Vec<SocketAddr> = set
                .addrs
                .into_iter()
                .map(|a| a.try_into().expect("valid"))
                .collect();
            assert_eq!(gone, [endpoint(1, true).addr]);
        }
        other => panic!("expected Remove, got {other:?}"),
    }

    // All removed: NoEndpoints, the service exists.
    fake.update(|v| v.endpoints.clear());
    assert_no_endpoints(next(&mut rsp).await, true);

    // Deleted: NoEndpoints, it does not.
    fake.delete(&web(), 80);
    assert_no_endpoints(next(&mut rsp).await, false);

    // Back: the full set again.
    fake.publish(view([endpoint(4, true), endpoint(5, true)]));
    let (addrs, _) = added(next(&mut rsp).await);
    assert_eq!(
        addrs.iter().map(addr).collect::<Vec<_>>(),
        [endpoint(4, true).addr, endpoint(5, true).addr]
    );
}

fn assert_no_endpoints(u: Update, exists: bool) {
    match u.update {
        Some(U::NoEndpoints(n)) => assert_eq!(n.exists, exists, "NoEndpoints.exists"),
        other => panic!("expected NoEndpoints {{ exists: {exists} }}, got {other:?}"),
    }
}

/// `Get` sends updates encoded once for all its streams: a set larger than
/// one message, then a change, a removal of many and `NoEndpoints`, must
/// decode the same on every stream of a real tonic client.
#[tokio::test]
async fn get_streams_share_updates_of_many_messages() {
    const N: u32 = 2_500;
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view((0..N).map(|i| endpoint(i, i % 2 == 0))));
    let server = TestServer::start(fake.clone()).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut dst = client(&server).await;
        let rsp = dst.get(get(&format!("{FQDN}:80"))).await.expect("Get");
        streams.push(rsp.into_inner());
    }
    for rsp in &mut streams {
        let mut seen = Vec::new();
        while seen.len() < N as usize {
            let (addrs, labels) = added(next(rsp).await);
            assert!(addrs.len() < N as usize, "a big set takes several messages");
            assert_eq!(labels["service"], "web");
            seen.extend(addrs.iter().map(addr));
        }
        let want: Vec<_> = (0..N).map(|i| endpoint(i, false).addr).collect();
        assert_eq!(seen, want, "every endpoint once, in order");
    }

    // Endpoint 8 loses its identity and all the others go: one Add, then
    // Removes of 2,499 addresses in several messages.
    let changed = endpoint(8, false);
    fake.update(|v| {
        v.endpoints.retain(|a, _| *a == changed.addr);
        v.endpoints.insert(changed.addr, changed.clone());
    });
    for rsp in &mut streams {
        let (addrs, _) = added(next(rsp).await);
        assert_eq!(addrs.len(), 1);
        assert_eq!(addr(&addrs[0]), changed.addr);
        assert_eq!(addrs[0].tls_identity, None, "the change itself");
        let mut gone = 0;
        while gone < N as usize - 1 {
            match next(rsp).await.update {
                Some(U::Remove(set)) => gone += set.addrs.len(),
                other => panic!("expected Remove, got {other:?}"),
            }
        }
    }

    fake.update(|v| v.endpoints.clear());
    for rsp in &mut streams {
        assert_no_endpoints(next(rsp).await, true);
    }
    fake.delete(&web(), 80);
    for rsp in &mut streams {
        assert_no_endpoints(next(rsp).await, false);
    }
    let stats = server.discovery.stats();
    let get = stats.api(strand_controller_grpc::StreamApi::DestinationGet);
    assert_eq!(get.active_streams(), 3);
}

#[tokio::test]
async fn get_by_cluster_ip_and_of_an_empty_service() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([]));
    let server = TestServer::start(fake.clone()).await;
    let mut dst = client(&server).await;
    let mut rsp = dst
        .get(get("10.96.0.10:80"))
        .await
        .expect("Get")
        .into_inner();
    assert_no_endpoints(next(&mut rsp).await, true);
    fake.update(|v| {
        let e = endpoint(1, false);
        v.endpoints.insert(e.addr, e);
    });
    let (addrs, _) = added(next(&mut rsp).await);
    assert_eq!(addrs.len(), 1);
}

#[tokio::test]
async fn get_rejects_what_is_not_a_service() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake).await;
    let mut dst = client(&server).await;
    let cases = [
        // Unknown service of the cluster domain: the proxy retries later.
        ("api.default.svc.cluster.local:80", Code::NotFound),
        ("web.default.svc.cluster.local:81", Code::NotFound),
        // Rejected: the proxy stops asking and uses the original destination.
        ("10.1.0.1:8080", Code::InvalidArgument),
        ("example.com:443", Code::InvalidArgument),
        // Not a path at all.
        ("web.default.svc.cluster.local", Code::InvalidArgument),
        ("", Code::InvalidArgument),
    ];
    for (path, code) in cases {
        let status = dst.get(get(path)).await.expect_err(path);
        assert_eq!(status.code(), code, "{path}: {status}");
        assert!(!status.message().is_empty(), "{path}: a message says why");
    }
}
