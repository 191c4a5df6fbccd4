use std::net::Ipv6Addr;

use linkerd2_proxy_api::destination::{
    AddrSet, NoEndpoints, ProtocolHint, WeightedAddrSet, tls_identity::DnsLikeIdentity,
};
use linkerd2_proxy_api::net::{IPv6, IpAddress, ip_address};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn weighted(addr: &str, own: &[(&str, &str)]) -> WeightedAddr {
    WeightedAddr {
        addr: Some(sa(addr).into()),
        weight: 10_000,
        metric_labels: labels(own),
        ..Default::default()
    }
}

fn add(addrs: Vec<WeightedAddr>, set: &[(&str, &str)]) -> update::Update {
    update::Update::Add(WeightedAddrSet {
        addrs,
        metric_labels: labels(set),
    })
}

fn remove(addrs: &[&str]) -> update::Update {
    update::Update::Remove(AddrSet {
        addrs: addrs.iter().map(|a| sa(a).into()).collect(),
    })
}

fn keys(eps: &Endpoints) -> Vec<SocketAddr> {
    eps.addrs.keys().copied().collect()
}

#[test]
fn add_merges_set_labels_under_endpoint_labels_and_reads_identity_and_hint() {
    let mut addr = weighted("10.0.0.1:8080", &[("pod", "web-1"), ("zone", "own")]);
    addr.tls_identity = Some(TlsIdentity {
        strategy: Some(tls_identity::Strategy::DnsLikeIdentity(DnsLikeIdentity {
            name: "web.default.serviceaccount.identity.linkerd.cluster.local".into(),
        })),
        server_name: None,
    });
    addr.protocol_hint = Some(ProtocolHint {
        protocol: Some(protocol_hint::Protocol::H2(Default::default())),
        opaque_transport: None,
    });
    let set = [("namespace", "default"), ("zone", "set")];
    let eps = apply(&Endpoints::default(), add(vec![addr], &set), true);

    assert_eq!((eps.version, eps.exists, eps.len()), (1, true, 1));
    let meta = &eps.addrs[&sa("10.0.0.1:8080")];
    let want: BTreeMap<String, String> =
        labels(&[("namespace", "default"), ("pod", "web-1"), ("zone", "own")])
            .into_iter()
            .collect();
    assert_eq!(meta.labels, want);
    assert_eq!(
        meta.identity.as_deref(),
        Some("web.default.serviceaccount.identity.linkerd.cluster.local")
    );
    assert!(meta.http2);
    assert_eq!(meta.weight, 10_000);
}

#[test]
fn remove_and_no_endpoints_amend_the_set() {
    let first = add(
        vec![weighted("10.0.0.1:80", &[]), weighted("10.0.0.2:80", &[])],
        &[],
    );
    let eps = apply(&Endpoints::default(), first, true);
    let eps = apply(&eps, add(vec![weighted("10.0.0.3:80", &[])], &[]), false);
    assert_eq!(
        keys(&eps),
        [sa("10.0.0.1:80"), sa("10.0.0.2:80"), sa("10.0.0.3:80")]
    );

    let eps = apply(&eps, remove(&["10.0.0.2:80", "10.9.9.9:80"]), false);
    assert_eq!(keys(&eps), [sa("10.0.0.1:80"), sa("10.0.0.3:80")]);
    assert_eq!((eps.version, eps.exists), (3, true));

    let none = update::Update::NoEndpoints(NoEndpoints { exists: true });
    let eps = apply(&eps, none, false);
    assert_eq!((eps.version, eps.exists, eps.is_empty()), (4, true, true));

    let gone = update::Update::NoEndpoints(NoEndpoints { exists: false });
    let eps = apply(&eps, gone, false);
    assert_eq!((eps.version, eps.exists, eps.is_empty()), (5, false, true));
}

#[test]
fn the_first_update_of_a_new_stream_replaces_the_set() {
    let old = apply(
        &Endpoints::default(),
        add(vec![weighted("10.0.0.1:80", &[])], &[]),
        true,
    );
    let new = apply(&old, add(vec![weighted("10.0.0.7:80", &[])], &[]), true);
    assert_eq!(keys(&new), [sa("10.0.0.7:80")]);
    assert_eq!(new.version, 2, "versions keep counting across streams");
}

#[test]
fn ipv6_addresses_convert_hextet_by_hextet() {
    let ip = IpAddress {
        ip: Some(ip_address::Ip::Ipv6(IPv6 {
            first: 0xfd00_0000_0000_0001,
            last: 0x0000_0000_0a0b_0c0d,
        })),
    };
    let addr = TcpAddress {
        ip: Some(ip),
        port: 8443,
    };
    let want = SocketAddr::new(
        Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0x0a0b, 0x0c0d).into(),
        8443,
    );
    assert_eq!(socket_addr(addr), Some(want));

    // And the round trip the control plane uses to encode them.
    for s in [
        "[::1]:80",
        "[2001:db8::8a2e:370:7334]:65535",
        "[::ffff:10.1.2.3]:1",
    ] {
        assert_eq!(socket_addr(sa(s).into()), Some(sa(s)), "{s}");
    }
}

#[test]
fn ipv4_addresses_are_big_endian() {
    let addr = TcpAddress {
        ip: Some(IpAddress {
            ip: Some(ip_address::Ip::Ipv4(0x0a00_0102)),
        }),
        port: 80,
    };
    assert_eq!(socket_addr(addr), Some(sa("10.0.1.2:80")));
}

#[test]
fn invalid_addresses_are_skipped() {
    let no_ip = TcpAddress { ip: None, port: 80 };
    assert_eq!(socket_addr(no_ip), None);
    let big_port = TcpAddress {
        ip: Some(IpAddress::from(IpAddr::from([10, 0, 0, 1]))),
        port: 70_000,
    };
    assert_eq!(socket_addr(big_port), None);

    let bad = WeightedAddr {
        addr: Some(big_port),
        ..Default::default()
    };
    let eps = apply(
        &Endpoints::default(),
        add(vec![bad, weighted("10.0.0.1:80", &[])], &[]),
        true,
    );
    assert_eq!(keys(&eps), [sa("10.0.0.1:80")]);
}

#[test]
fn an_empty_identity_is_none() {
    let tls = TlsIdentity {
        strategy: Some(tls_identity::Strategy::DnsLikeIdentity(DnsLikeIdentity {
            name: String::new(),
        })),
        server_name: None,
    };
    assert_eq!(identity(Some(tls)), None);
    assert_eq!(identity(None), None);
}
