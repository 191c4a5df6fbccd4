//! Names outside the zone, relayed to upstream resolvers.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType, rdata::A},
};
use strand_controller_dns::Config;
use tokio::net::UdpSocket;

use crate::support::{FakeUpstream, UPSTREAM_ANSWER, query, start, tcp, udp};

fn config(upstreams: Vec<SocketAddr>, forward_timeout: Duration) -> Config {
    Config {
        upstreams,
        forward_timeout,
        ..Config::default()
    }
}

fn relayed_answer(answer: &Message) -> bool {
    answer.response_code == ResponseCode::NoError
        && answer.recursion_available
        && answer.answers.len() == 1
        && answer.answers[0].data == RData::A(A(UPSTREAM_ANSWER))
}

/// A UDP socket that reads nothing: an upstream that never answers.
async fn silent_upstream() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binds")
}

#[tokio::test]
async fn udp_queries_are_relayed_with_the_clients_id() {
    let upstream = FakeUpstream::start().await;
    let dns = start(config(vec![upstream.addr], Duration::from_secs(2))).await;

    let q = query("example.com.", RecordType::A);
    let answer = udp(dns.addr, &q).await;
    assert!(relayed_answer(&answer), "{answer:?}");
    assert_eq!(answer.id, q.id);
    assert_eq!(answer.queries, q.queries);
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.tcp_queries.load(Ordering::SeqCst), 0);
    // The answer was mapped back even if the upstream saw another ID.
    assert_eq!(upstream.ids.lock().expect("not poisoned").len(), 1);
    assert_eq!(dns.stats.snapshot().forwarded, 1);

    // In-zone names never reach the upstream.
    let local = udp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert!(local.authoritative);
    assert!(
        local.recursion_available,
        "RA: this server recurses for other names"
    );
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tcp_queries_are_relayed_over_tcp() {
    let upstream = FakeUpstream::start().await;
    let dns = start(config(vec![upstream.addr], Duration::from_secs(2))).await;

    let q = query("example.org.", RecordType::A);
    let answer = tcp(dns.addr, &q).await;
    assert!(relayed_answer(&answer), "{answer:?}");
    assert_eq!(upstream.tcp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_silent_upstream_is_retried_on_the_next_one() {
    let silent = silent_upstream().await;
    let upstream = FakeUpstream::start().await;
    let timeout = Duration::from_millis(100);
    let dns = start(config(
        vec![silent.local_addr().expect("bound"), upstream.addr],
        timeout,
    ))
    .await;

    let start = Instant::now();
    let answer = udp(dns.addr, &query("example.net.", RecordType::A)).await;
    assert!(relayed_answer(&answer), "{answer:?}");
    assert!(
        start.elapsed() >= timeout,
        "the first upstream was tried first"
    );
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() {
    let silent = silent_upstream().await;
    let timeout = Duration::from_millis(100);
    let dns = start(config(vec![silent.local_addr().expect("bound")], timeout)).await;

    let start = Instant::now();
    let q = query("example.com.", RecordType::A);
    let answer = udp(dns.addr, &q).await;
    let elapsed = start.elapsed();
    assert_eq!(answer.response_code, ResponseCode::ServFail);
    assert_eq!(answer.queries, q.queries);
    // Tried twice (the one upstream, then the "next", which is itself).
    assert!(elapsed >= 2 * timeout, "gave up after {elapsed:?}");
    assert_eq!(dns.stats.snapshot().servfail, 1);
}

#[tokio::test]
async fn refused_without_upstreams() {
    let dns = start(Config::default()).await;
    for answer in [
        udp(dns.addr, &query("example.com.", RecordType::A)).await,
        tcp(dns.addr, &query("example.com.", RecordType::AAAA)).await,
    ] {
        assert_eq!(answer.response_code, ResponseCode::Refused);
        assert!(!answer.authoritative);
        assert!(!answer.recursion_available);
    }
}

#[tokio::test]
async fn excess_forwards_get_servfail_at_once() {
    let silent = silent_upstream().await;
    let config = Config {
        max_forwards: 1,
        ..config(
            vec![silent.local_addr().expect("bound")],
            Duration::from_secs(5),
        )
    };
    let dns = start(config).await;

    // The first query occupies the only slot for 2 × 5 s...
    let first = crate::support::udp_client(dns.addr).await;
    let waiting = query("slow.example.", RecordType::A);
    first
        .send(&crate::support::encode(&waiting))
        .await
        .expect("sends");
    // ...so the second is answered SERVFAIL long before that.
    let start = Instant::now();
    let answer = udp(dns.addr, &query("fast.example.", RecordType::A)).await;
    assert_eq!(answer.response_code, ResponseCode::ServFail);
    assert!(start.elapsed() < Duration::from_secs(5));
    // In-zone names do not need a slot.
    let local = udp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(local.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn the_server_never_forwards_to_itself() {
    // Find a free port, free it, then point the server's upstream at the
    // address it is about to bind.
    let addr = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|probe| probe.local_addr())
        .expect("binds a probe socket");
    let server = strand_controller_dns::Server::bind(
        addr,
        config(vec![addr], Duration::from_millis(100)),
        std::sync::Arc::new(crate::support::lookup),
    )
    .await;
    let Ok(server) = server else {
        // Someone else took the port in between: nothing to check.
        return;
    };
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    let answer = udp(addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(answer.response_code, ResponseCode::Refused);
}
