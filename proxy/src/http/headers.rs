//! Header handling: hop-by-hop fields (RFC 9110 §7.6.1), authority, gRPC.

use http::Request;
use http::header::{self, HeaderMap, HeaderName};

/// Fields that describe one connection and must not be forwarded, besides
/// those the `Connection` field itself names.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::PROXY_AUTHENTICATE,
];
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop fields. `TE: trailers` survives, because gRPC over
/// HTTP/2 requires it end to end. With `upgrade`, `Connection: upgrade` and
/// `Upgrade` are kept so the next hop sees the upgrade request.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these fields (and any field a
    // `Connection` header names can only matter if `Connection` is there):
    // one pass of cheap name comparisons instead of a hashed removal per
    // field, which was a tenth of the proxy's per-request instructions.
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Names listed in Connection go too (`Connection: close, x-foo`).
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in &HOP_BY_HOP {
        if upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    if te_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == KEEP_ALIVE || name == PROXY_CONNECTION
}

/// [`is_hop_by_hop`] for a raw field name in any case (the lean HTTP/1
/// path, which never builds a `HeaderName`). `TE` is the caller's to keep
/// as `TE: trailers`.
pub fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .chain([&KEEP_ALIVE, &PROXY_CONNECTION])
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// The request's authority: the URI's (HTTP/2, absolute-form HTTP/1) or the
/// `Host` field.
pub fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .filter(|a| !a.is_empty())
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_listed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn raw_names_are_hop_by_hop_in_any_case() {
        for name in [
            "Connection",
            "KEEP-ALIVE",
            "proxy-connection",
            "Transfer-Encoding",
            "upgrade",
            "TE",
            "Proxy-Authenticate",
        ] {
            assert!(is_hop_by_hop_name(name), "{name}");
            let parsed = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_hop_by_hop(&parsed), "{name}");
        }
        for name in ["host", "content-length", "trailer", "x-connection"] {
            assert!(!is_hop_by_hop_name(name), "{name}");
        }
    }

    #[test]
    fn keeps_te_trailers_for_grpc() {
        let mut h = map(&[
            ("te", "trailers"),
            ("content-type", "application/grpc+proto"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        assert!(is_grpc(&h));
    }

    #[test]
    fn keeps_upgrade_when_upgrading() {
        let mut h = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(h.get("x-a").is_none());
    }

    #[test]
    fn leaves_end_to_end_fields_alone() {
        let mut h = map(&[("x-a", "1"), ("content-length", "3"), ("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 3, "{h:?}");
        let mut h = map(&[("x-a", "1"), ("Keep-Alive", "timeout=5")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
    }
}
