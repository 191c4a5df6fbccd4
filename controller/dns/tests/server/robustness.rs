//! Hostile and broken input: the server neither crashes nor stops
//! answering well-formed queries afterwards.

use std::time::Duration;

use hickory_proto::{
    op::{MessageType, ResponseCode},
    rr::{Name, RecordType},
};
use strand_controller_dns::Config;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::support::{
    closed_by_server, encode, framed, patience, query, read_framed, recv, start, tcp, udp,
    udp_client,
};

#[tokio::test]
async fn garbage_over_udp_is_dropped_or_rejected() {
    let dns = start(Config::default()).await;
    let socket = udp_client(dns.addr).await;

    // Unparseable, too short for a header, or not a query: silence.
    let mut response = query("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    for junk in [
        vec![],
        vec![0xff; 7],
        // Garbage whose "header" has QR set.
        (0..=255u8).rev().collect::<Vec<_>>(),
        encode(&response),
    ] {
        socket.send(&junk).await.expect("sends");
    }
    // The next datagram is the answer to a good query, not a reply to junk.
    let good = query("web.default.svc.cluster.local.", RecordType::A);
    socket.send(&encode(&good)).await.expect("sends");
    let (answer, _) = recv(&socket).await;
    assert_eq!(answer.id, good.id);
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert_eq!(dns.stats.snapshot().malformed, 4);
}

#[tokio::test]
async fn broken_queries_get_formerr() {
    let dns = start(Config::default()).await;

    // A header announcing a question that is cut off.
    let cut = query("web.default.svc.cluster.local.", RecordType::A);
    let mut bytes = encode(&cut);
    bytes.truncate(20);
    let socket = udp_client(dns.addr).await;
    socket.send(&bytes).await.expect("sends");
    let (answer, _) = recv(&socket).await;
    assert_eq!(answer.id, cut.id);
    assert_eq!(answer.response_code, ResponseCode::FormErr);

    // Garbage with a plausible query header (ID 1, QR clear).
    socket
        .send(&(0..=255u8).collect::<Vec<_>>())
        .await
        .expect("sends");
    let (answer, _) = recv(&socket).await;
    assert_eq!(answer.id, 1);
    assert_eq!(answer.response_code, ResponseCode::FormErr);
    assert!(answer.queries.is_empty());

    // Two questions in one message.
    let mut two = query("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("example.com.").expect("valid"),
        RecordType::A,
    ));
    assert_eq!(
        udp(dns.addr, &two).await.response_code,
        ResponseCode::FormErr
    );
    assert_eq!(
        tcp(dns.addr, &two).await.response_code,
        ResponseCode::FormErr
    );

    let good = udp(
        dns.addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(good.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn huge_or_garbage_tcp_frames_do_not_stop_the_server() {
    let dns = start(Config::default()).await;

    // Announces 64 KiB, sends a few bytes, and hangs up.
    let mut huge = TcpStream::connect(dns.addr).await.expect("connects");
    huge.write_all(&[0xff, 0xff, 1, 2, 3])
        .await
        .expect("writes");
    huge.shutdown().await.expect("shuts down");
    assert!(closed_by_server(&mut huge).await);

    // Announces 64 KiB and stays: other clients are still served.
    let mut stalled = TcpStream::connect(dns.addr).await.expect("connects");
    stalled
        .write_all(&[0xff, 0xff, 1, 2, 3])
        .await
        .expect("writes");

    // A well-framed message that is not DNS: the connection is closed.
    let mut junk = TcpStream::connect(dns.addr).await.expect("connects");
    junk.write_all(&framed(&[0xff; 7])).await.expect("writes");
    assert!(closed_by_server(&mut junk).await);

    let good = query("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        tcp(dns.addr, &good).await.response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        udp(dns.addr, &good).await.response_code,
        ResponseCode::NoError
    );
    drop(stalled);
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let config = Config {
        tcp_idle_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let dns = start(config).await;

    let mut idle = TcpStream::connect(dns.addr).await.expect("connects");
    assert!(closed_by_server(&mut idle).await);

    // Half a message, then nothing: closed as well.
    let mut partial = TcpStream::connect(dns.addr).await.expect("connects");
    partial.write_all(&[0, 40, 1, 2]).await.expect("writes");
    assert!(closed_by_server(&mut partial).await);
}

#[tokio::test]
async fn tcp_connections_are_capped() {
    let config = Config {
        max_tcp_connections: 1,
        ..Config::default()
    };
    let dns = start(config).await;
    let good = query("web.default.svc.cluster.local.", RecordType::A);

    let mut first = TcpStream::connect(dns.addr).await.expect("connects");
    first
        .write_all(&framed(&encode(&good)))
        .await
        .expect("writes");
    assert_eq!(read_framed(&mut first).await.id, good.id);

    let mut second = TcpStream::connect(dns.addr).await.expect("connects");
    assert!(closed_by_server(&mut second).await, "over the cap");

    // Once the first client leaves, its slot is free again. The server
    // notices the close asynchronously, so try until it has.
    drop(first);
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let mut next = TcpStream::connect(dns.addr).await.expect("connects");
        next.write_all(&framed(&encode(&good)))
            .await
            .expect("writes");
        let mut len = [0; 2];
        let read = tokio::io::AsyncReadExt::read_exact(&mut next, &mut len);
        if tokio::time::timeout(patience(), read)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
