use strand_proxy_h2::hpack::{Decoder, HeaderList};

use super::Half;
use super::fields::{self, Kind};

fn list(fields: &[(&str, &str)]) -> HeaderList {
    let mut l = HeaderList::default();
    for (n, v) in fields {
        l.push(n.as_bytes(), v.as_bytes());
    }
    l
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "web:80"),
];

#[test]
fn requests_are_checked_as_rfc_9113_asks() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f = GET.to_vec();
        f.extend_from_slice(extra);
        fields::request(&list(&f), &mut Vec::new()).map(|r| r.grpc)
    };
    assert_eq!(with(&[]), Ok(false));
    assert_eq!(
        with(&[("content-type", "application/grpc+proto")]),
        Ok(true)
    );
    assert_eq!(with(&[("te", "trailers")]), Ok(false));
    for bad in [
        ("X-Upper", "1"),
        ("connection", "close"),
        ("keep-alive", "5"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("te", "gzip"),
        ("x-nul", "a\0b"),
        ("x-crlf", "a\r\nb"),
        ("x-space", " padded"),
        ("", "empty name"),
        (":path", "/again"),
        (":protocol", "websocket"),
    ] {
        assert!(with(&[bad]).is_err(), "{bad:?} accepted");
    }
    // A pseudo-header after a regular field; missing ones.
    let late = list(&[
        (":method", "GET"),
        ("x", "1"),
        (":path", "/"),
        (":scheme", "http"),
    ]);
    assert!(fields::request(&late, &mut Vec::new()).is_err());
    let no_path = list(&[(":method", "GET"), (":scheme", "http")]);
    assert!(fields::request(&no_path, &mut Vec::new()).is_err());
    // CONNECT: an authority and no scheme or path.
    let connect = list(&[(":method", "CONNECT"), (":authority", "db:5432")]);
    assert!(fields::request(&connect, &mut Vec::new()).is_ok());
    let bad_connect = list(&[
        (":method", "CONNECT"),
        (":authority", "db:5432"),
        (":path", "/"),
    ]);
    assert!(fields::request(&bad_connect, &mut Vec::new()).is_err());
    // The authority falls back to host.
    let host = list(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        ("host", "h:1"),
    ]);
    let req = fields::request(&host, &mut Vec::new()).expect("valid");
    assert_eq!(req.authority, Some(&b"h:1"[..]));
}

#[test]
fn responses_need_one_valid_status_and_trailers_none() {
    let rsp = |f: &[(&str, &str)], kind| fields::response(&list(f), kind, &mut Vec::new());
    let ok = rsp(&[(":status", "200"), ("grpc-status", "3")], Kind::Response).expect("valid");
    assert_eq!((ok.status, ok.grpc_status), (Some(200), Some(3)));
    assert!(rsp(&[("x", "1")], Kind::Response).is_err());
    assert!(rsp(&[(":status", "20")], Kind::Response).is_err());
    assert!(rsp(&[(":status", "200"), (":status", "204")], Kind::Response).is_err());
    assert!(rsp(&[(":status", "200")], Kind::Trailers).is_err());
    let t = rsp(&[("grpc-status", "0")], Kind::Trailers).expect("valid");
    assert_eq!(t.grpc_status, Some(0));
}

#[test]
fn checked_fields_are_encoded_for_the_other_connection() {
    let mut out = Vec::new();
    fields::request(&list(&GET), &mut out).expect("valid");
    let mut back = HeaderList::default();
    Decoder::new(4096)
        .decode(&out, &mut back, usize::MAX)
        .expect("decodes");
    let got: Vec<_> = back
        .iter()
        .map(|f| (f.name.to_vec(), f.value.to_vec()))
        .collect();
    let want: Vec<_> = GET
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn data_must_add_up_to_the_content_length() {
    let mut h = Half {
        remaining: Some(10),
        ..Half::default()
    };
    assert!(h.count(4, false));
    assert!(!h.count(7, false), "more than announced");
    let mut h = Half {
        remaining: Some(10),
        ..Half::default()
    };
    assert!(h.count(4, false));
    assert!(!h.count(5, true), "ended short");
    let mut h = Half {
        remaining: Some(3),
        ..Half::default()
    };
    assert!(h.count(3, true));
    assert!(Half::default().count(1 << 20, true), "no content-length");
    let cl = |v: &'static str| {
        let mut f = GET.to_vec();
        f.push(("content-length", v));
        fields::request(&list(&f), &mut Vec::new()).map(|r| r.content_length)
    };
    assert_eq!(cl("42"), Ok(Some(42)));
    assert!(cl("4x").is_err());
    assert!(cl("").is_err());
    assert!(cl("-1").is_err());
}
