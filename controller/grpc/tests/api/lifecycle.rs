//! Streams end with their clients and with the server, and are counted.

use crate::next;
use crate::support::{FQDN, FakeDiscover, TestServer, endpoint, view};
use linkerd2_proxy_api::destination::GetDestination;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::inbound::PortSpec;
use linkerd2_proxy_api::inbound::inbound_server_policies_client::InboundServerPoliciesClient;
use linkerd2_proxy_api::outbound::outbound_policies_client::OutboundPoliciesClient;
use linkerd2_proxy_api::outbound::{TrafficSpec, traffic_spec};
use std::sync::Arc;
use strand_controller_core::DiscoverServices;
use strand_controller_grpc::{Stats, StreamApi};
use strand_testkit::eventually;

fn get() -> GetDestination {
    GetDestination {
        path: format!("{FQDN}:80"),
        ..Default::default()
    }
}

async fn active_becomes(stats: &Stats, api: StreamApi, want: u64) {
    eventually(format!("{api:?} active streams == {want}"), || async {
        stats.api(api).active_streams() == want
    })
    .await;
}

#[tokio::test]
async fn cancelled_get_releases_its_stream() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake.clone()).await;
    let stats = server.discovery.stats().clone();
    let mut dst = DestinationClient::new(server.channel().await);

    let mut first = dst.get(get()).await.expect("Get").into_inner();
    let mut second = dst.get(get()).await.expect("Get").into_inner();
    next(&mut first).await;
    next(&mut second).await;
    assert_eq!(stats.api(StreamApi::DestinationGet).active_streams(), 2);
    assert_eq!(stats.api(StreamApi::DestinationGet).streams_opened(), 2);
    assert_eq!(stats.api(StreamApi::DestinationGet).updates_sent(), 2);

    // Dropping the response resets the HTTP/2 stream; the connection stays.
    drop(first);
    active_becomes(&stats, StreamApi::DestinationGet, 1).await;

    // The other stream still works.
    fake.update(|v| {
        let e = endpoint(2, true);
        v.endpoints.insert(e.addr, e);
    });
    next(&mut second).await;
    drop(second);
    active_becomes(&stats, StreamApi::DestinationGet, 0).await;
    assert_eq!(stats.api(StreamApi::DestinationGet).updates_sent(), 3);
}

#[tokio::test]
async fn closed_connection_releases_every_stream() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake).await;
    let stats = server.discovery.stats().clone();
    let channel = server.channel().await;
    let mut inbound = InboundServerPoliciesClient::new(channel.clone());
    let mut port = inbound
        .watch_port(PortSpec {
            workload: "w".into(),
            port: 80,
        })
        .await
        .expect("WatchPort")
        .into_inner();
    next(&mut port).await;
    let mut dst = DestinationClient::new(channel.clone());
    let mut profile = dst
        .get_profile(get())
        .await
        .expect("GetProfile")
        .into_inner();
    next(&mut profile).await;
    assert_eq!(stats.active_streams(), 2);

    drop((inbound, dst, channel, port, profile));
    active_becomes(&stats, StreamApi::InboundWatchPort, 0).await;
    active_becomes(&stats, StreamApi::DestinationGetProfile, 0).await;
}

#[tokio::test]
async fn shutdown_ends_every_stream() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake).await;
    let stats = server.discovery.stats().clone();
    let channel = server.channel().await;

    let mut dst = DestinationClient::new(channel.clone());
    let mut get_rsp = dst.get(get()).await.expect("Get").into_inner();
    let mut profile = dst
        .get_profile(get())
        .await
        .expect("GetProfile")
        .into_inner();
    let mut outbound = OutboundPoliciesClient::new(channel.clone());
    let spec = TrafficSpec {
        source_workload: "w".into(),
        target: Some(traffic_spec::Target::Authority(format!("{FQDN}:80"))),
    };
    let mut policy = outbound.watch(spec).await.expect("Watch").into_inner();
    let mut inbound = InboundServerPoliciesClient::new(channel);
    let mut port = inbound
        .watch_port(PortSpec {
            workload: "w".into(),
            port: 80,
        })
        .await
        .expect("WatchPort")
        .into_inner();
    next(&mut get_rsp).await;
    next(&mut profile).await;
    next(&mut policy).await;
    next(&mut port).await;
    assert_eq!(stats.active_streams(), 4);

    // Graceful shutdown completes although all four watches were open...
    tokio::time::timeout(strand_testkit::patience(), server.stop())
        .await
        .expect("the server stops while watches are open");
    // ...and each ended cleanly.
    assert!(get_rsp.message().await.expect("clean end").is_none());
    assert!(profile.message().await.expect("clean end").is_none());
    assert!(policy.message().await.expect("clean end").is_none());
    assert!(port.message().await.expect("clean end").is_none());
    assert_eq!(stats.active_streams(), 0);
}

#[tokio::test]
async fn serves_a_trait_object() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let index: Arc<dyn DiscoverServices> = fake;
    let discovery = strand_controller_grpc::Discovery::new(index.clone());
    let _routes = strand_controller_grpc::router(index);
    assert_eq!(discovery.stats().active_streams(), 0);
}
