//! The checks RFC 9113 §8.2-8.3 asks of an intermediary, made while a
//! decoded header list is encoded for the other connection: lowercase
//! names of token characters, pseudo-header fields first and only the
//! defined ones, no connection-specific fields, values without NUL, CR, LF
//! or surrounding whitespace. A list that fails is malformed: the stream
//! is reset with PROTOCOL_ERROR.

use strand_proxy_h2::hpack::{Encoder, HeaderList};

/// What the proxy needs from a request head.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// `:authority`, else `host`.
    pub authority: Option<&'a [u8]>,
    /// `content-type: application/grpc...`: errors are answered as gRPC.
    pub grpc: bool,
    /// `HEAD`: the response's `content-length` describes no DATA.
    pub head: bool,
    /// `content-length`, which the DATA must add up to.
    pub content_length: Option<u64>,
}

/// What the proxy needs from a response head or trailers.
#[derive(Debug, Default)]
pub struct Response {
    /// `:status` (none in trailers).
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    /// `content-length`, which the DATA must add up to.
    pub content_length: Option<u64>,
}

/// Which message a header list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Response,
    Trailers,
}

/// Checks a request head and encodes it into `out`.
pub fn request<'a>(list: &'a HeaderList, out: &mut Vec<u8>) -> Result<Request<'a>, &'static str> {
    let mut req = Request::default();
    let (mut method, mut scheme, mut path, mut connect) = (false, false, false, false);
    let mut regular = false;
    let mut host = None;
    for f in list.iter() {
        if let Some(pseudo) = f.name.strip_prefix(b":") {
            if regular {
                return Err("pseudo-header field after a regular field");
            }
            let seen = match pseudo {
                b"method" => {
                    connect = f.value == b"CONNECT";
                    req.head = f.value == b"HEAD";
                    &mut method
                }
                b"scheme" => &mut scheme,
                b"path" => {
                    if f.value.is_empty() {
                        return Err("empty :path");
                    }
                    &mut path
                }
                b"authority" => {
                    if req.authority.is_some() {
                        return Err("repeated :authority");
                    }
                    req.authority = Some(f.value);
                    check_value(f.value)?;
                    Encoder::field(f.name, f.value, f.sensitive, out);
                    continue;
                }
                _ => return Err("unknown pseudo-header field"),
            };
            if std::mem::replace(seen, true) {
                return Err("repeated pseudo-header field");
            }
        } else {
            regular = true;
            check_regular(f.name, f.value)?;
            if f.name == b"content-type" {
                req.grpc = f.value.starts_with(b"application/grpc");
            } else if f.name == b"host" {
                host = Some(f.value);
            } else if f.name == b"content-length" {
                req.content_length = Some(content_length(f.value, req.content_length)?);
            }
        }
        check_value(f.value)?;
        Encoder::field(f.name, f.value, f.sensitive, out);
    }
    if !method {
        return Err("request without :method");
    }
    if connect {
        if scheme || path || req.authority.is_none() {
            return Err("CONNECT without :authority or with :scheme or :path");
        }
    } else if !scheme || !path {
        return Err("request without :scheme or :path");
    }
    if req.authority.is_none() {
        req.authority = host;
    }
    Ok(req)
}

/// Checks a response head or trailers and encodes them into `out`.
pub fn response(
    list: &HeaderList,
    kind: Kind,
    out: &mut Vec<u8>,
) -> Result<Response, &'static str> {
    let mut rsp = Response::default();
    let mut regular = false;
    for f in list.iter() {
        if f.name.first() == Some(&b':') {
            if kind != Kind::Response || f.name != b":status" {
                return Err("unexpected pseudo-header field");
            }
            if regular || rsp.status.is_some() {
                return Err("misplaced or repeated :status");
            }
            rsp.status = Some(parse_status(f.value).ok_or("invalid :status")?);
        } else {
            regular = true;
            check_regular(f.name, f.value)?;
            if f.name == b"grpc-status" {
                rsp.grpc_status = std::str::from_utf8(f.value)
                    .ok()
                    .and_then(|v| v.parse().ok());
            } else if f.name == b"content-length" && kind == Kind::Response {
                rsp.content_length = Some(content_length(f.value, rsp.content_length)?);
            }
        }
        check_value(f.value)?;
        Encoder::field(f.name, f.value, f.sensitive, out);
    }
    if kind == Kind::Response && rsp.status.is_none() {
        return Err("response without :status");
    }
    Ok(rsp)
}

/// A `content-length` value: digits, and the same as any earlier one.
fn content_length(v: &[u8], earlier: Option<u64>) -> Result<u64, &'static str> {
    let n = std::str::from_utf8(v)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("invalid content-length")?;
    match earlier {
        Some(e) if e != n => Err("conflicting content-length"),
        _ => Ok(n),
    }
}

fn parse_status(v: &[u8]) -> Option<u16> {
    match v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// A regular field's name (lowercase token characters) and the fields an
/// HTTP/2 message must not carry.
fn check_regular(name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() || !name.iter().all(|&b| is_name_byte(b)) {
        return Err("invalid field name");
    }
    match name {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {
            Err("connection-specific field")
        }
        b"te" if value != b"trailers" => Err("te other than trailers"),
        _ => Ok(()),
    }
}

fn check_value(value: &[u8]) -> Result<(), &'static str> {
    if value.iter().any(|&b| matches!(b, b'\0' | b'\r' | b'\n')) {
        return Err("field value with NUL, CR or LF");
    }
    if matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t')) {
        return Err("field value with leading or trailing whitespace");
    }
    Ok(())
}

/// tchar (RFC 9110 §5.6.2) without uppercase letters.
fn is_name_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
        | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}
