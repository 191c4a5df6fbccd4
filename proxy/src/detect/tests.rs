use super::*;

/// A minimal but well-formed TLS 1.2-style ClientHello carrying `sni`.
pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        let mut sn = Vec::new();
        sn.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        sn.push(0);
        sn.extend_from_slice(&(n.len() as u16).to_be_bytes());
        sn.extend_from_slice(n);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(sn.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sn);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn table() {
    let cases: &[(&[u8], Detection)] = &[
        (b"", Detection::NeedMore),
        (b"G", Detection::NeedMore),
        (b"GE", Detection::NeedMore),
        (b"GET", Detection::NeedMore),
        (b"GET ", Detection::Done(Protocol::Http1)),
        (b"GET / HTTP/1.1\r\n", Detection::Done(Protocol::Http1)),
        (
            b"PROPFIND /x HTTP/1.1\r\n",
            Detection::Done(Protocol::Http1),
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\n",
            Detection::Done(Protocol::Http1),
        ),
        (b"get / HTTP/1.1\r\n", Detection::Done(Protocol::Opaque)),
        (b"GETX / HTTP/1.1", Detection::Done(Protocol::Opaque)),
        (b"hello\n", Detection::Done(Protocol::Opaque)),
        (b"H", Detection::NeedMore),
        (b"HELO mail\r\n", Detection::Done(Protocol::Opaque)),
        (b"ping", Detection::Done(Protocol::Opaque)),
        (b"\x00\x01\x02", Detection::Done(Protocol::Opaque)),
        (b"*1\r\n$4\r\nPING\r\n", Detection::Done(Protocol::Opaque)),
        (b"PRI", Detection::NeedMore),
        (b"PRI * HTTP/2.0\r\n", Detection::NeedMore),
        (H2_PREFACE, Detection::Done(Protocol::Http2)),
        (
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
            Detection::Done(Protocol::Opaque),
        ),
        (b"\x16", Detection::NeedMore),
        (b"\x16\x03", Detection::NeedMore),
        (b"\x16\x09", Detection::Done(Protocol::Opaque)),
        (
            b"\x16\x03\x01\x00\x05\x02",
            Detection::Done(Protocol::Opaque),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            &classify(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn tls_with_and_without_sni() {
    let hello = client_hello(Some("Web.Default.svc.cluster.local"));
    assert_eq!(
        classify(&hello),
        Detection::Done(Protocol::Tls {
            sni: Some("web.default.svc.cluster.local".into())
        })
    );
    assert_eq!(
        classify(&client_hello(None)),
        Detection::Done(Protocol::Tls { sni: None })
    );
    // Every strict prefix asks for more.
    for n in 1..hello.len() {
        assert_eq!(classify(&hello[..n]), Detection::NeedMore, "prefix {n}");
    }
}

#[test]
fn corrupt_tls_lengths_do_not_panic() {
    let mut hello = client_hello(Some("a.b"));
    for i in 5..hello.len() {
        let saved = hello[i];
        for v in [0u8, 1, 0x7f, 0xff] {
            hello[i] = v;
            let _ = classify(&hello);
        }
        hello[i] = saved;
    }
}

#[tokio::test]
async fn detect_reads_until_known() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let task = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let p = detect(&mut server, &mut buf, Duration::from_secs(5)).await;
        (p.unwrap(), buf)
    });
    use tokio::io::AsyncWriteExt;
    client.write_all(b"PO").await.unwrap();
    tokio::task::yield_now().await;
    client.write_all(b"ST /x HTTP/1.1\r\n").await.unwrap();
    let (p, buf) = task.await.unwrap();
    assert_eq!(p, Protocol::Http1);
    assert!(buf.starts_with(b"POST"));
}

#[tokio::test(start_paused = true)]
async fn silent_client_is_opaque_after_timeout() {
    let (_client, mut server) = tokio::io::duplex(64);
    let mut buf = BytesMut::new();
    let p = detect(&mut server, &mut buf, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(p, Protocol::Opaque);
    assert!(buf.is_empty());
}

#[tokio::test(start_paused = true)]
async fn truncated_preface_is_an_error() {
    let (mut client, mut server) = tokio::io::duplex(64);
    use tokio::io::AsyncWriteExt;
    client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut buf = BytesMut::new();
    let err = detect(&mut server, &mut buf, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DetectError::TruncatedH2Preface(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn stalling_inside_a_method_name_is_an_error() {
    let (mut client, mut server) = tokio::io::duplex(64);
    use tokio::io::AsyncWriteExt;
    client.write_all(b"GE").await.unwrap();
    let mut buf = BytesMut::new();
    let err = detect(&mut server, &mut buf, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DetectError::Stalled(2, _)), "{err}");
}

#[tokio::test]
async fn eof_mid_method_is_opaque() {
    let (mut client, mut server) = tokio::io::duplex(64);
    use tokio::io::AsyncWriteExt;
    client.write_all(b"GE").await.unwrap();
    drop(client);
    let mut buf = BytesMut::new();
    let p = detect(&mut server, &mut buf, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(p, Protocol::Opaque);
    assert_eq!(&buf[..], b"GE");
}
