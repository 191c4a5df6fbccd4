use super::*;

fn lean(buf: &[u8]) -> RequestHead {
    match parse_request(buf, 64 * 1024) {
        Parsed::Lean(h) => h,
        Parsed::Partial => panic!("partial"),
        Parsed::Other => panic!("not lean"),
    }
}

fn other(buf: &[u8]) -> bool {
    matches!(parse_request(buf, 64 * 1024), Parsed::Other)
}

#[test]
fn a_plain_get_is_forwarded_without_hop_by_hop_fields() {
    let req = b"GET /a?b=1 HTTP/1.1\r\nHost: web:8080\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers, gzip\r\nX-Kept: yes\r\n\r\nGET /next";
    let head = lean(req);
    assert_eq!(head.len, req.len() - b"GET /next".len());
    assert_eq!(
        String::from_utf8_lossy(&head.out),
        "GET /a?b=1 HTTP/1.1\r\nHost: web:8080\r\nX-Kept: yes\r\nte: trailers\r\n\r\n"
    );
    let (a, b) = head.authority.expect("host");
    assert_eq!(&req[a..b], b"web:8080");
    assert!(!head.close && !head.head_method && head.idempotent);
}

#[test]
fn connection_close_and_head_are_noted() {
    let head = lean(b"HEAD / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    assert!(head.close && head.head_method);
    let head = lean(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n");
    assert!(!head.idempotent);
}

#[test]
fn anything_unusual_goes_to_the_general_path() {
    for req in [
        &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"[..],
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
        b"GET / HTTP/1.0\r\nhost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nhost: a\r\n\r\n",
        b"PUT / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: x-secret\r\nx-secret: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nl5d-orig-proto: HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-type: application/grpc\r\n\r\n",
        b"GET / HTTP/1.1\r\nho st: a\r\n\r\n",
    ] {
        assert!(other(req), "{}", String::from_utf8_lossy(req));
    }
    assert!(matches!(
        parse_request(b"GET / HTTP/1.1\r\nhost: a\r\n", 1024),
        Parsed::Partial
    ));
    // Past the head limit: the general path answers 431.
    assert!(matches!(
        parse_request(b"GET / HTTP/1.1\r\nhost: aaaaaaaa\r\n", 16),
        Parsed::Other
    ));
}

#[test]
fn response_framing() {
    let f = |r: &[u8]| parse_response(r).expect("parses").expect("complete");
    let h = f(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!(
        (h.status, h.len, h.framing, h.close),
        (200, 38, Framing::Length(5), false)
    );
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").framing,
        Framing::Chunked
    );
    assert!(f(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").close);
    assert_eq!(f(b"HTTP/1.1 200 OK\r\n\r\n").framing, Framing::Close);
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").framing,
        Framing::Close
    );
    assert!(f(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").close);
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n")
            .is_err()
    );
    assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-le"), Ok(None));
}

#[test]
fn response_head_drops_hop_by_hop() {
    let head = b"HTTP/1.0 200 OK\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked\r\nX-End: 2\r\n\r\n";
    let h = parse_response(head).expect("parses").expect("complete");
    assert_eq!(
        String::from_utf8_lossy(&h.out),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-End: 2\r\n"
    );
    assert!(!h.close, "HTTP/1.0 with keep-alive");
}

#[test]
fn chunked_decoder_finds_the_end_across_splits() {
    let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    let end = body.len() - 4;
    // Whole, and byte by byte.
    let mut d = ChunkedDecoder::default();
    assert_eq!(d.feed(body), Ok(end));
    assert!(d.is_done());
    let mut d = ChunkedDecoder::default();
    let mut taken = 0;
    for b in body.iter() {
        taken += d.feed(std::slice::from_ref(b)).expect("valid");
        if d.is_done() {
            break;
        }
    }
    assert_eq!(taken, end);
    // No trailers.
    let mut d = ChunkedDecoder::default();
    assert_eq!(d.feed(b"0\r\n\r\n"), Ok(5));
    assert!(d.is_done());
    // Malformed.
    for bad in [
        &b"z\r\n"[..],
        b"5\r\nhelloXX",
        b"1\r\nab",
        b"ffffffffffffffffff\r\n",
    ] {
        let mut d = ChunkedDecoder::default();
        assert!(d.feed(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn proxy_errors_become_http_responses() {
    let e = ProxyError::Connect {
        addr: "198.18.0.9:80".parse().expect("addr"),
        source: io::Error::from(io::ErrorKind::ConnectionRefused),
    };
    let out = String::from_utf8(error_response(&e, true)).expect("utf-8");
    assert!(out.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{out}");
    assert!(
        out.contains("l5d-proxy-error: connect to 198.18.0.9:80 failed"),
        "{out}"
    );
    assert!(out.contains("connection: close\r\n"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).expect("body");
    assert!(
        out.contains(&format!("content-length: {}\r\n", body.len())),
        "{out}"
    );
}
