//! The Gateway API filters of an HTTPRoute rule, as the outbound policy
//! gives them: header changes on requests and responses, and redirects
//! that the client's proxy answers itself.
//!
//! A filter this proxy cannot apply as given makes its rule answer an
//! error ([`RouteFilter::Invalid`]) rather than route without it: a route
//! never does less than it says.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use linkerd2_proxy_api::http_route as api;
use linkerd2_proxy_api::http_types::Headers;
use linkerd2_proxy_api::outbound::http_route::{Filter, filter};

/// One filter of a rule, in the order the rule lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteFilter {
    /// Applied to the request before it is sent.
    RequestHeaders(HeaderModifier),
    /// Applied to the backend's response before the client gets it.
    ResponseHeaders(HeaderModifier),
    /// The proxy answers with a redirect; nothing is sent upstream.
    Redirect(Redirect),
    /// A filter that cannot be applied, and why.
    Invalid(String),
}

/// Gateway API's `HTTPHeaderFilter`: set (replace), add (append), remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// Gateway API's `HTTPRequestRedirectFilter`: what of the request's URL
/// the `Location` changes, and the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<http::uri::Scheme>,
    pub host: Option<String>,
    pub path: Option<PathRewrite>,
    pub port: Option<u16>,
    pub status: http::StatusCode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path.
    Full(String),
    /// The path prefix the rule matched.
    Prefix(String),
}

// === impl HeaderModifier ===

impl HeaderModifier {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }

    fn from_proto(
        add: Option<&Headers>,
        set: Option<&Headers>,
        remove: &[String],
    ) -> Result<Self, String> {
        let pairs = |h: Option<&Headers>| {
            h.map_or(&[][..], |h| &h.headers[..])
                .iter()
                .map(|h| {
                    let name = HeaderName::from_bytes(h.name.as_bytes())
                        .map_err(|_| format!("{:?} is not a header name", h.name))?;
                    let value = HeaderValue::from_bytes(&h.value)
                        .map_err(|_| format!("the value of {name} is not a header value"))?;
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let remove = remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("{n:?} is not a header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(HeaderModifier {
            set: pairs(set)?,
            add: pairs(add)?,
            remove,
        })
    }
}

// === impl Redirect ===

impl Redirect {
    /// The `Location` for a request to `uri` with `authority` (its Host),
    /// having matched the path prefix `matched_prefix` (for a prefix
    /// rewrite). A port is left out when it is the scheme's default; when
    /// the filter changes the scheme and names no port, the scheme's
    /// default applies.
    pub fn location(
        &self,
        uri: &http::Uri,
        authority: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> Result<HeaderValue, String> {
        let scheme = self
            .scheme
            .as_ref()
            .or(uri.scheme())
            .map_or("http", |s| s.as_str());
        let (orig_host, orig_port) = split_authority(authority.unwrap_or(""));
        let host = self.host.as_deref().unwrap_or(orig_host);
        if host.is_empty() {
            return Err("the request names no host to redirect to".into());
        }
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => orig_port,
        };
        let default = match scheme {
            "https" => 443,
            _ => 80,
        };
        let path = match &self.path {
            None => uri.path().to_string(),
            Some(PathRewrite::Full(p)) => p.clone(),
            Some(PathRewrite::Prefix(new)) => {
                let prefix = matched_prefix.unwrap_or("").trim_end_matches('/');
                let rest = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
                let joined = format!("{}{rest}", new.trim_end_matches('/'));
                if joined.is_empty() {
                    "/".to_string()
                } else {
                    joined
                }
            }
        };
        let mut location = format!("{scheme}://{host}");
        if let Some(p) = port.filter(|p| *p != default) {
            location.push_str(&format!(":{p}"));
        }
        location.push_str(&path);
        if let Some(q) = uri.query() {
            location.push('?');
            location.push_str(q);
        }
        HeaderValue::from_str(&location)
            .map_err(|_| format!("{location:?} is not a valid Location"))
    }

    fn from_proto(r: &api::RequestRedirect) -> Result<Self, String> {
        let scheme = match &r.scheme {
            None => None,
            Some(s) => Some(
                http::uri::Scheme::try_from(s.clone())
                    .map_err(|e| format!("a redirect scheme: {e}"))?,
            ),
        };
        let path = match r.path.as_ref().and_then(|p| p.replace.as_ref()) {
            None => None,
            Some(api::path_modifier::Replace::Full(p)) => Some(PathRewrite::Full(p.clone())),
            Some(api::path_modifier::Replace::Prefix(p)) => Some(PathRewrite::Prefix(p.clone())),
        };
        let port = match r.port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| format!("redirect port {p}"))?),
        };
        let status = match r.status {
            0 => http::StatusCode::FOUND,
            s => u16::try_from(s)
                .ok()
                .and_then(|s| http::StatusCode::from_u16(s).ok())
                .filter(http::StatusCode::is_redirection)
                .ok_or_else(|| format!("redirect status {s}"))?,
        };
        Ok(Redirect {
            scheme,
            host: (!r.host.is_empty()).then(|| r.host.clone()),
            path,
            port,
            status,
        })
    }
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// A rule's filters; one that cannot be read becomes [`RouteFilter::Invalid`].
pub(super) fn filters(filters: &[Filter]) -> Vec<RouteFilter> {
    filters
        .iter()
        .map(|f| {
            let parsed = match f.kind.as_ref() {
                Some(filter::Kind::RequestHeaderModifier(m)) => {
                    HeaderModifier::from_proto(m.add.as_ref(), m.set.as_ref(), &m.remove)
                        .map(RouteFilter::RequestHeaders)
                }
                Some(filter::Kind::ResponseHeaderModifier(m)) => {
                    HeaderModifier::from_proto(m.add.as_ref(), m.set.as_ref(), &m.remove)
                        .map(RouteFilter::ResponseHeaders)
                }
                Some(filter::Kind::Redirect(r)) => {
                    Redirect::from_proto(r).map(RouteFilter::Redirect)
                }
                Some(filter::Kind::FailureInjector(_)) => {
                    Err("failure injection filters are not supported".into())
                }
                None => Err("a filter of an unknown kind".into()),
            };
            parsed.unwrap_or_else(RouteFilter::Invalid)
        })
        .collect()
}

/// A gRPC rule's filters (`RequestHeaderModifier` only, as Linkerd's).
pub(super) fn grpc_filters(
    filters: &[linkerd2_proxy_api::outbound::grpc_route::Filter],
) -> Vec<RouteFilter> {
    use linkerd2_proxy_api::outbound::grpc_route::filter::Kind;
    filters
        .iter()
        .map(|f| {
            let parsed = match f.kind.as_ref() {
                Some(Kind::RequestHeaderModifier(m)) => {
                    HeaderModifier::from_proto(m.add.as_ref(), m.set.as_ref(), &m.remove)
                        .map(RouteFilter::RequestHeaders)
                }
                Some(Kind::FailureInjector(_)) => {
                    Err("failure injection filters are not supported".into())
                }
                None => Err("a filter of an unknown kind".into()),
            };
            parsed.unwrap_or_else(RouteFilter::Invalid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(path: Option<PathRewrite>) -> Redirect {
        Redirect {
            scheme: None,
            host: None,
            path,
            port: None,
            status: http::StatusCode::FOUND,
        }
    }

    fn location(r: &Redirect, uri: &str, authority: &str, prefix: Option<&str>) -> String {
        let uri: http::Uri = uri.parse().unwrap();
        r.location(&uri, Some(authority), prefix)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn redirect_locations_follow_the_gateway_api() {
        let keep = redirect(None);
        assert_eq!(
            location(&keep, "/a?x=1", "web:8080", None),
            "http://web:8080/a?x=1"
        );
        assert_eq!(location(&keep, "/a", "web:80", None), "http://web/a");
        let full = Redirect {
            host: Some("new.example".into()),
            ..redirect(Some(PathRewrite::Full("/moved".into())))
        };
        assert_eq!(
            location(&full, "/a/b", "web:8080", None),
            "http://new.example:8080/moved"
        );
        let https = Redirect {
            scheme: Some(http::uri::Scheme::HTTPS),
            ..redirect(None)
        };
        assert_eq!(
            location(&https, "/a", "web:8080", None),
            "https://web/a",
            "the scheme's port"
        );
        let port = Redirect {
            port: Some(8443),
            ..https.clone()
        };
        assert_eq!(
            location(&port, "/a", "web:8080", None),
            "https://web:8443/a"
        );
        let prefix = redirect(Some(PathRewrite::Prefix("/new".into())));
        assert_eq!(
            location(&prefix, "/old/x", "web", Some("/old")),
            "http://web/new/x"
        );
        assert_eq!(
            location(&prefix, "/old", "web", Some("/old/")),
            "http://web/new"
        );
        let root = redirect(Some(PathRewrite::Prefix("/".into())));
        assert_eq!(
            location(&root, "/old/x", "web", Some("/old")),
            "http://web/x"
        );
        assert_eq!(location(&root, "/old", "web", Some("/old")), "http://web/");
        assert_eq!(
            location(&keep, "/", "[::1]:8080", None),
            "http://[::1]:8080/"
        );
        let uri: http::Uri = "/".parse().unwrap();
        assert!(keep.location(&uri, None, None).is_err(), "no host");
    }

    #[test]
    fn header_modifiers_set_add_and_remove() {
        let m = HeaderModifier::from_proto(
            Some(&headers(&[("x-add", "2")])),
            Some(&headers(&[("x-set", "new")])),
            &["x-gone".into()],
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-add", HeaderValue::from_static("1"));
        h.insert("x-gone", HeaderValue::from_static("bye"));
        m.apply(&mut h);
        assert_eq!(h.get_all("x-set").iter().collect::<Vec<_>>(), ["new"]);
        assert_eq!(h.get_all("x-add").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert!(!h.contains_key("x-gone"));
        let bad = HeaderModifier::from_proto(Some(&headers(&[("bad name", "v")])), None, &[]);
        assert!(bad.is_err());
    }

    #[test]
    fn unreadable_filters_are_kept_as_invalid() {
        let redirect = |status| Filter {
            kind: Some(filter::Kind::Redirect(api::RequestRedirect {
                status,
                ..Default::default()
            })),
        };
        let parsed = filters(&[redirect(301), redirect(200), Filter { kind: None }]);
        assert!(matches!(&parsed[0], RouteFilter::Redirect(r) if r.status == 301));
        assert!(matches!(&parsed[1], RouteFilter::Invalid(why) if why.contains("200")));
        assert!(matches!(&parsed[2], RouteFilter::Invalid(_)));
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers {
            headers: pairs
                .iter()
                .map(|(n, v)| linkerd2_proxy_api::http_types::headers::Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }
}
