//! HTTP/1 between meshed proxies travels as HTTP/2 (Linkerd's
//! `l5d-orig-proto` scheme): the client-side proxy upgrades the request and
//! marks it with its original version; the server-side proxy turns it back
//! into HTTP/1 for the application. Many HTTP/1 requests then share one
//! multiplexed mTLS connection between the two proxies.
//!
//! ```text
//!  app ─HTTP/1─► outbound ══HTTP/2 + l5d-orig-proto: HTTP/1.1══► inbound ─HTTP/1─► app
//! ```

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};

pub const L5D_ORIG_PROTO: &str = "l5d-orig-proto";

fn version_name(v: Version) -> &'static str {
    if v == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

/// Client side: turns an HTTP/1 request into an HTTP/2 one with an
/// absolute URI. `false` (request unchanged) when it names no authority.
pub fn upgrade<B>(req: &mut Request<B>) -> bool {
    let version = req.version();
    if req.uri().authority().is_none() {
        let Some(host) = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
        else {
            return false;
        };
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(host);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        let Ok(uri) = Uri::from_parts(parts) else {
            return false;
        };
        *req.uri_mut() = uri;
    }
    req.headers_mut().insert(
        L5D_ORIG_PROTO,
        HeaderValue::from_static(version_name(version)),
    );
    *req.version_mut() = Version::HTTP_2;
    true
}

/// Undoes [`upgrade`] (the request goes to an endpoint that takes only
/// HTTP/1 after all).
pub fn revert<B>(req: &mut Request<B>, version: Version) {
    req.headers_mut().remove(L5D_ORIG_PROTO);
    *req.version_mut() = version;
}

/// Client side: the response to an upgraded request, as the HTTP/1 client
/// expects it.
pub fn response_downgrade<B>(rsp: &mut Response<B>, version: Version) {
    rsp.headers_mut().remove(L5D_ORIG_PROTO);
    *rsp.version_mut() = version;
}

/// Server side: turns a marked HTTP/2 request back into HTTP/1 (origin-form
/// target, `Host` from the authority). `false` when it is not marked.
pub fn downgrade<B>(req: &mut Request<B>) -> bool {
    if req.version() != Version::HTTP_2 {
        return false;
    }
    let Some(orig) = req.headers_mut().remove(L5D_ORIG_PROTO) else {
        return false;
    };
    *req.version_mut() = if orig.as_bytes() == b"HTTP/1.0" {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    if !req.headers().contains_key(HOST)
        && let Some(a) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(HOST, v);
    }
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_target_host_and_version() {
        let mut req = Request::builder()
            .version(Version::HTTP_11)
            .uri("/a/b?c=d")
            .header(HOST, "web.default:8080")
            .body(())
            .unwrap();
        assert!(upgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri().to_string(), "http://web.default:8080/a/b?c=d");
        assert_eq!(req.headers()[L5D_ORIG_PROTO], "HTTP/1.1");

        assert!(downgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri().to_string(), "/a/b?c=d");
        assert_eq!(req.headers()[HOST], "web.default:8080");
        assert!(!req.headers().contains_key(L5D_ORIG_PROTO));
    }

    #[test]
    fn http10_is_remembered_and_hostless_requests_stay_http1() {
        let mut req = Request::builder()
            .version(Version::HTTP_10)
            .uri("/")
            .header(HOST, "x")
            .body(())
            .unwrap();
        assert!(upgrade(&mut req));
        assert!(downgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_10);

        let mut bare = Request::builder()
            .version(Version::HTTP_11)
            .uri("/")
            .body(())
            .unwrap();
        assert!(!upgrade(&mut bare));
        assert_eq!(bare.version(), Version::HTTP_11);
    }

    #[test]
    fn unmarked_http2_is_left_alone_and_host_comes_from_authority() {
        let mut h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://svc/x")
            .body(())
            .unwrap();
        assert!(!downgrade(&mut h2));
        assert_eq!(h2.version(), Version::HTTP_2);

        let mut marked = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://svc:80/x")
            .header(L5D_ORIG_PROTO, "HTTP/1.1")
            .body(())
            .unwrap();
        assert!(downgrade(&mut marked));
        assert_eq!(marked.headers()[HOST], "svc:80");
    }
}
