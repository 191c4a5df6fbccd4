//! Names inside the zone, answered from the records.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use strand_controller_dns::{Config, Stats};

use crate::support::{self, query, start, tcp, udp, with_edns};

/// The answers' addresses, in order.
fn addresses(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn has_soa(answer: &Message) -> bool {
    answer
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

#[tokio::test]
async fn a_and_aaaa_for_a_found_name() {
    let dns = start(Config::default()).await;
    let name = "web.default.svc.cluster.local.";

    let a = udp(dns.addr, &query(name, RecordType::A)).await;
    assert_eq!(a.response_code, ResponseCode::NoError);
    assert!(a.authoritative);
    assert!(!a.truncation);
    assert_eq!(
        addresses(&a),
        ["10.96.0.10".parse::<IpAddr>().expect("valid")]
    );
    assert_eq!(a.answers[0].ttl, 5);
    assert!(a.authorities.is_empty());

    let aaaa = udp(dns.addr, &query(name, RecordType::AAAA)).await;
    assert_eq!(aaaa.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&aaaa),
        ["fd00::10".parse::<IpAddr>().expect("valid")]
    );
}

#[tokio::test]
async fn nodata_for_the_other_family_and_intermediate_names() {
    let dns = start(Config::default()).await;
    for (name, qtype) in [
        ("v4only.default.svc.cluster.local.", RecordType::AAAA),
        ("web.default.svc.cluster.local.", RecordType::TXT),
        ("default.svc.cluster.local.", RecordType::A),
    ] {
        let answer = udp(dns.addr, &query(name, qtype)).await;
        assert_eq!(
            answer.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(answer.authoritative, "{name} {qtype}");
        assert!(answer.answers.is_empty(), "{name} {qtype}");
        assert!(has_soa(&answer), "{name} {qtype}: SOA for negative caching");
    }
}

#[tokio::test]
async fn nxdomain_with_soa_answered_fast() {
    let config = Config {
        negative_ttl: Duration::from_secs(3),
        ..Config::default()
    };
    let dns = start(config).await;
    // Warm up: the first query pays for the client socket and task wake-ups.
    udp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    // What a pod's resolver tries first for "web.default.svc.cluster.local"
    // with ndots:5 and the search path, and a plain unknown name.
    for name in [
        "web.default.svc.cluster.local.default.svc.cluster.local.",
        "web.default.svc.cluster.local.svc.cluster.local.",
        "missing.default.svc.cluster.local.",
        "example.com.cluster.local.",
    ] {
        let start = Instant::now();
        let answer = udp(dns.addr, &query(name, RecordType::A)).await;
        let elapsed = start.elapsed();
        assert_eq!(answer.response_code, ResponseCode::NXDomain, "{name}");
        assert!(answer.authoritative, "{name}");
        assert!(answer.answers.is_empty(), "{name}");
        let soa = answer
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .expect("an SOA for negative caching");
        assert_eq!(soa.ttl, 3, "{name}");
        let RData::SOA(data) = &soa.data else {
            panic!("not an SOA: {soa:?}");
        };
        assert_eq!(data.minimum, 3, "{name}");
        assert!(
            elapsed < Duration::from_millis(50),
            "{name} took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn names_are_case_insensitive_with_or_without_the_trailing_dot() {
    let dns = start(Config::default()).await;
    for name in [
        "web.default.svc.cluster.local.",
        "web.default.svc.cluster.local",
        "WEB.Default.SVC.Cluster.Local.",
        "wEb.dEfAuLt.sVc.ClUsTeR.lOcAl",
    ] {
        let answer = udp(dns.addr, &query(name, RecordType::A)).await;
        assert_eq!(answer.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(addresses(&answer).len(), 1, "{name}");
        // The owner name keeps the client's spelling, as resolvers that
        // randomise case (DNS 0x20) check it.
        let owner = answer.answers[0].name.to_ascii();
        assert_eq!(owner.trim_end_matches('.'), name.trim_end_matches('.'));
    }
}

#[tokio::test]
async fn tcp_queries_are_answered() {
    let dns = start(Config::default()).await;
    let answer = tcp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::AAAA),
    )
    .await;
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert_eq!(
        addresses(&answer),
        ["fd00::10".parse::<IpAddr>().expect("valid")]
    );

    // Several queries on one connection.
    let mut stream = tokio::net::TcpStream::connect(dns.addr)
        .await
        .expect("connects");
    for name in ["web.default.svc.cluster.local.", "nope.cluster.local."] {
        let q = query(name, RecordType::A);
        tokio::io::AsyncWriteExt::write_all(&mut stream, &support::framed(&support::encode(&q)))
            .await
            .expect("writes");
        let answer = support::read_framed(&mut stream).await;
        assert_eq!(answer.id, q.id);
    }
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let dns = start(Config::default()).await;
    let many = query("many.default.svc.cluster.local.", RecordType::A);

    let socket = support::udp_client(dns.addr).await;
    socket.send(&support::encode(&many)).await.expect("sends");
    let (answer, len) = support::recv(&socket).await;
    assert!(answer.truncation, "100 A records do not fit in 512 bytes");
    assert!(len <= 512);
    assert_eq!(answer.id, many.id);
    assert_eq!(answer.queries, many.queries);

    // EDNS raises the limit, but to 1232 bytes at most: still too small.
    let big = with_edns(many.clone(), 4096);
    socket.send(&support::encode(&big)).await.expect("sends");
    let (answer, len) = support::recv(&socket).await;
    assert!(answer.truncation);
    assert!(len <= 1232);
    assert!(answer.edns.is_some(), "an EDNS query gets an OPT back");

    let answer = tcp(dns.addr, &many).await;
    assert!(!answer.truncation);
    assert_eq!(addresses(&answer).len(), 100);
}

#[tokio::test]
async fn stats_count_outcomes_and_shutdown_stops_the_server() {
    let dns = start(Config::default()).await;
    udp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    udp(
        dns.addr,
        &query("v4only.default.svc.cluster.local.", RecordType::AAAA),
    )
    .await;
    udp(dns.addr, &query("nope.cluster.local.", RecordType::A)).await;
    tcp(dns.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(
        dns.stats.snapshot(),
        Stats {
            queries: 4,
            answered: 2,
            nxdomain: 1,
            refused: 1,
            ..Stats::default()
        }
    );

    let addr = dns.addr;
    dns.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
