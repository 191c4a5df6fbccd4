use std::net::Ipv6Addr;

use hickory_proto::op::Query;

use super::*;

fn responder(forwarding: bool) -> Responder {
    let records = |name: &str| match name {
        "web.default.svc.cluster.local" => Lookup::Found(vec![
            "10.96.0.10".parse().expect("valid"),
            "fd00::10".parse().expect("valid"),
        ]),
        "v4.default.svc.cluster.local" => Lookup::Found(vec!["10.96.0.11".parse().expect("valid")]),
        "default.svc.cluster.local" => Lookup::Found(vec![]),
        _ => Lookup::NoSuchName,
    };
    Responder::new(Zone::default(), 5, 5, Arc::new(records), forwarding)
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("test names are valid");
    message.add_query(Query::query(name, qtype));
    message
}

fn bytes(message: &Message) -> Vec<u8> {
    message.to_vec().expect("test messages encode")
}

fn reply_to(responder: &Responder, message: &Message) -> Message {
    match responder.handle(&bytes(message)) {
        Action::Reply(reply) => reply.message,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn in_zone_answers() {
    use RecordType::*;
    let r = responder(false);
    // name, type, rcode, answers, SOA in authority
    let cases: &[(&str, RecordType, ResponseCode, usize, bool)] = &[
        (
            "web.default.svc.cluster.local.",
            A,
            ResponseCode::NoError,
            1,
            false,
        ),
        (
            "web.default.svc.cluster.local.",
            AAAA,
            ResponseCode::NoError,
            1,
            false,
        ),
        (
            "web.default.svc.cluster.local.",
            ANY,
            ResponseCode::NoError,
            2,
            false,
        ),
        (
            "v4.default.svc.cluster.local.",
            AAAA,
            ResponseCode::NoError,
            0,
            true,
        ),
        (
            "web.default.svc.cluster.local.",
            MX,
            ResponseCode::NoError,
            0,
            true,
        ),
        (
            "default.svc.cluster.local.",
            A,
            ResponseCode::NoError,
            0,
            true,
        ),
        (
            "nope.default.svc.cluster.local.",
            A,
            ResponseCode::NXDomain,
            0,
            true,
        ),
        ("cluster.local.", A, ResponseCode::NoError, 0, true),
        ("cluster.local.", SOA, ResponseCode::NoError, 1, false),
        (
            "WEB.Default.SVC.cluster.LOCAL.",
            A,
            ResponseCode::NoError,
            1,
            false,
        ),
    ];
    for &(name, qtype, rcode, answers, soa) in cases {
        let reply = reply_to(&r, &query(name, qtype));
        let what = format!("{name} {qtype}");
        assert_eq!(reply.response_code, rcode, "{what}");
        assert!(reply.authoritative, "{what}");
        assert!(reply.recursion_desired, "{what}");
        assert!(!reply.recursion_available, "{what}");
        assert_eq!(reply.answers.len(), answers, "{what}");
        let has_soa = reply.authorities.iter().any(|r| r.record_type() == SOA);
        assert_eq!(has_soa, soa, "{what}");
        for answer in &reply.answers {
            // The owner keeps the client's spelling (0x20 randomisation).
            assert_eq!(answer.name.to_ascii(), name, "{what}");
        }
    }
}

#[test]
fn answers_carry_the_configured_ttls() {
    let r = Responder::new(
        Zone::default(),
        30,
        7,
        Arc::new(|_: &str| Lookup::NoSuchName),
        false,
    );
    let reply = reply_to(&r, &query("x.cluster.local.", RecordType::A));
    let soa = &reply.authorities[0];
    assert_eq!(soa.ttl, 7);
    let RData::SOA(data) = &soa.data else {
        panic!("expected an SOA, got {soa:?}");
    };
    assert_eq!(data.minimum, 7);
    assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");

    let r = responder(false);
    let reply = reply_to(
        &r,
        &query("web.default.svc.cluster.local.", RecordType::AAAA),
    );
    assert_eq!(reply.answers[0].ttl, 5);
    assert_eq!(
        reply.answers[0].data,
        RData::AAAA(AAAA::from("fd00::10".parse::<Ipv6Addr>().expect("valid")))
    );
}

#[test]
fn odd_labels_never_reach_the_records() {
    let r = Responder::new(
        Zone::default(),
        5,
        5,
        Arc::new(|name: &str| panic!("looked up {name:?}")),
        false,
    );
    let name = Name::from_labels([&b"we.b"[..], b"cluster", b"local"]).expect("valid labels");
    let mut message = Message::query();
    message.add_query(Query::query(name, RecordType::A));
    assert_eq!(reply_to(&r, &message).response_code, ResponseCode::NXDomain);
}

#[test]
fn out_of_zone_is_forwarded_or_refused() {
    let q = query("example.com.", RecordType::A);
    assert!(matches!(
        responder(true).handle(&bytes(&q)),
        Action::Forward(_)
    ));
    let reply = reply_to(&responder(false), &q);
    assert_eq!(reply.response_code, ResponseCode::Refused);
    assert!(!reply.authoritative);
    // A name that merely ends like the zone is not in it.
    let q = query("notcluster.local.", RecordType::A);
    assert!(matches!(
        responder(true).handle(&bytes(&q)),
        Action::Forward(_)
    ));
}

#[test]
fn malformed_and_unsupported_queries() {
    let r = responder(true);

    let mut two = query("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("example.com.").expect("valid"),
        RecordType::A,
    ));
    assert_eq!(reply_to(&r, &two).response_code, ResponseCode::FormErr);

    let none = Message::query();
    assert_eq!(reply_to(&r, &none).response_code, ResponseCode::FormErr);

    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(reply_to(&r, &chaos).response_code, ResponseCode::Refused);

    let mut notify = query("cluster.local.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(reply_to(&r, &notify).response_code, ResponseCode::NotImp);

    let mut future_edns = query("web.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    future_edns.edns = Some(edns);
    let encoded = bytes(&reply_to(&r, &future_edns));
    let decoded = Message::from_vec(&encoded).expect("reply decodes");
    // BADVERS shares code 16 with BADSIG, which hickory decodes it as.
    assert_eq!(u16::from(decoded.response_code), 16);
    assert!(decoded.edns.is_some(), "the extended RCODE needs an OPT");

    let mut response = query("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    assert!(matches!(r.handle(&bytes(&response)), Action::Drop));

    // Header says one question, body is missing: FORMERR with the ID.
    let mut cut = bytes(&query("web.default.svc.cluster.local.", RecordType::A));
    cut.truncate(14);
    let id = u16::from_be_bytes([cut[0], cut[1]]);
    match r.handle(&cut) {
        Action::Reply(reply) => {
            assert_eq!(reply.message.response_code, ResponseCode::FormErr);
            assert_eq!(reply.message.id, id);
        }
        other => panic!("expected FORMERR, got {other:?}"),
    }

    assert!(matches!(r.handle(&[]), Action::Drop));
    assert!(matches!(r.handle(&[0xff; 7]), Action::Drop));
}

#[test]
fn udp_replies_are_truncated_to_the_client_limit() {
    let many = |_: &str| Lookup::Found((0..50u8).map(|i| IpAddr::from([10, 0, 0, i])).collect());
    let r = Responder::new(Zone::default(), 5, 5, Arc::new(many), false);

    let plain = query("many.cluster.local.", RecordType::A);
    let Action::Reply(reply) = r.handle(&bytes(&plain)) else {
        panic!("expected a reply");
    };
    let udp = Message::from_vec(&reply.encode(Transport::Udp).expect("encodes")).expect("decodes");
    assert!(udp.truncation);
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1);
    let tcp = Message::from_vec(&reply.encode(Transport::Tcp).expect("encodes")).expect("decodes");
    assert!(!tcp.truncation);
    assert_eq!(tcp.answers.len(), 50);

    let mut with_edns = plain.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.edns = Some(edns);
    let Action::Reply(reply) = r.handle(&bytes(&with_edns)) else {
        panic!("expected a reply");
    };
    let encoded = reply.encode(Transport::Udp).expect("encodes");
    assert!(encoded.len() <= usize::from(MAX_UDP_PAYLOAD));
    let udp = Message::from_vec(&encoded).expect("decodes");
    assert!(!udp.truncation);
    assert_eq!(udp.answers.len(), 50);
    assert_eq!(udp.edns.map(|e| e.max_payload()), Some(MAX_UDP_PAYLOAD));
}

#[test]
fn zones_are_validated() {
    assert_eq!(
        Zone::new("Cluster.Local").expect("valid").to_string(),
        "cluster.local."
    );
    assert_eq!(Zone::new("cluster.local.").expect("valid"), Zone::default());
    assert!(Zone::new(".").is_err());
    assert!(Zone::new("a..b").is_err());
    assert!(Zone::new(&"a".repeat(64)).is_err());
    let fits = vec!["abcdefghi"; 24].join(".");
    assert!(Zone::new(&fits).is_ok());
    let long = vec!["abcdefghi"; 25].join(".");
    assert!(Zone::new(&long).is_err(), "no room for the SOA names");
}

/// A poor man's fuzzer until the workspace's fuzz crate gets a target:
/// random bytes and bit-flipped real queries never panic, and whatever is
/// answered still encodes.
#[test]
fn random_and_mutated_input_never_panics() {
    let r = responder(true);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut seeds = vec![
        bytes(&query("web.default.svc.cluster.local.", RecordType::A)),
        bytes(&query("example.com.", RecordType::AAAA)),
    ];
    let mut with_edns = query("cluster.local.", RecordType::SOA);
    with_edns.edns = Some(Edns::new());
    seeds.push(bytes(&with_edns));

    for i in 0..20_000 {
        let input = if i % 4 == 0 {
            let len = rng.usize(..64);
            (0..len).map(|_| rng.u8(..)).collect()
        } else {
            let mut input = seeds[rng.usize(..seeds.len())].clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..input.len());
                input[at] ^= 1 << rng.u8(..8);
            }
            input.truncate(rng.usize(input.len() / 2..=input.len()));
            input
        };
        if let Action::Reply(reply) = r.handle(&input) {
            assert!(reply.encode(Transport::Udp).is_some(), "{input:?}");
        }
    }
}
