//! Gateway API's rule filters, of which strand implements three, as
//! Linkerd's outbound policy does: `RequestHeaderModifier` and
//! `ResponseHeaderModifier` (set, add and remove headers on the way to the
//! backend and back) and `RequestRedirect` (the client's proxy answers with
//! a redirect; nothing is sent on).
//!
//! [`HttpRouteFilter`] is the filter as written (Gateway API's shape: a
//! `type` and the one key of that type), so that a stored route reads back
//! as it was applied; validation checks that the key matches the type.
//! [`RouteFilter`] is what a rule's clients apply, with Gateway API's
//! defaults filled in.

use serde::{Deserialize, Serialize};

/// Gateway API's default `statusCode` of a `RequestRedirect`.
pub const DEFAULT_REDIRECT_STATUS: u16 = 302;

/// `spec.rules[].filters[]` (and `backendRefs[].filters[]`, which are
/// refused): the `type` and the key it names; validation refuses any other
/// key and the types strand does not implement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub kind: HttpRouteFilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    /// The keys of the types strand refuses (not implemented), accepted
    /// here so that the refusal names the type rather than the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<serde_json::Value>,
}

/// Gateway API's filter types (standard and experimental channels).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpRouteFilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    /// Refused (not implemented), as are the types below.
    RequestMirror,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    ExtensionRef,
    #[serde(rename = "CORS")]
    Cors,
    ExternalAuth,
}

/// Gateway API's `HTTPHeaderFilter`: headers to replace, to append to and
/// to remove. Names are case-insensitive; each may have one action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaderFilter {
    /// Replaces any value the header had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    /// Adds a value, keeping any the header had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    /// Header names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// Gateway API's `HTTPRequestRedirectFilter`: what of the request's URL
/// the `Location` changes (whatever is absent stays the request's), and
/// the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRequestRedirectFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<RedirectScheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
    /// Absent: the request's port, or the scheme's when `scheme` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectScheme {
    Http,
    Https,
}

/// Gateway API's `HTTPPathModifier`: the `type` and the key it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifierType {
    ReplaceFullPath,
    /// Replaces the prefix that the rule's (one, PathPrefix) match matched.
    ReplacePrefixMatch,
}

/// A rule's filter as its clients apply it, in the rule's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteFilter {
    /// Applied to the request before it is sent to a backend.
    RequestHeaderModifier(HttpHeaderFilter),
    /// Applied to the backend's response before the client gets it.
    ResponseHeaderModifier(HttpHeaderFilter),
    /// The client's proxy answers with `status` and a `Location`.
    RequestRedirect(RouteRedirect),
}

/// A `RequestRedirect` with Gateway API's default status filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRedirect {
    /// `None`: the request's scheme.
    pub scheme: Option<RedirectScheme>,
    /// `None`: the request's host.
    pub hostname: Option<String>,
    /// `None`: the request's path.
    pub path: Option<PathModifier>,
    /// `None`: the request's port, or the scheme's when `scheme` is given.
    pub port: Option<u16>,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The prefix the rule matched becomes this.
    ReplacePrefixMatch(String),
}

// === impl HttpRouteFilter ===

impl HttpRouteFilter {
    /// The filter clients apply; `None` for a type strand does not
    /// implement or without the key its type names (validation refuses
    /// both).
    pub fn to_route_filter(&self) -> Option<RouteFilter> {
        match self.kind {
            HttpRouteFilterType::RequestHeaderModifier => self
                .request_header_modifier
                .clone()
                .map(RouteFilter::RequestHeaderModifier),
            HttpRouteFilterType::ResponseHeaderModifier => self
                .response_header_modifier
                .clone()
                .map(RouteFilter::ResponseHeaderModifier),
            HttpRouteFilterType::RequestRedirect => self
                .request_redirect
                .as_ref()
                .and_then(HttpRequestRedirectFilter::to_redirect)
                .map(RouteFilter::RequestRedirect),
            HttpRouteFilterType::RequestMirror
            | HttpRouteFilterType::UrlRewrite
            | HttpRouteFilterType::ExtensionRef
            | HttpRouteFilterType::Cors
            | HttpRouteFilterType::ExternalAuth => None,
        }
    }

    /// Whether the key of filter type `kind` is given.
    pub fn has_key(&self, kind: HttpRouteFilterType) -> bool {
        use HttpRouteFilterType as T;
        match kind {
            T::RequestHeaderModifier => self.request_header_modifier.is_some(),
            T::ResponseHeaderModifier => self.response_header_modifier.is_some(),
            T::RequestRedirect => self.request_redirect.is_some(),
            T::RequestMirror => self.request_mirror.is_some(),
            T::UrlRewrite => self.url_rewrite.is_some(),
            T::ExtensionRef => self.extension_ref.is_some(),
            T::Cors => self.cors.is_some(),
            T::ExternalAuth => self.external_auth.is_some(),
        }
    }
}

// === impl HttpRouteFilterType ===

impl HttpRouteFilterType {
    pub const ALL: [Self; 8] = [
        Self::RequestHeaderModifier,
        Self::ResponseHeaderModifier,
        Self::RequestRedirect,
        Self::RequestMirror,
        Self::UrlRewrite,
        Self::ExtensionRef,
        Self::Cors,
        Self::ExternalAuth,
    ];

    /// As Gateway API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestHeaderModifier => "RequestHeaderModifier",
            Self::ResponseHeaderModifier => "ResponseHeaderModifier",
            Self::RequestRedirect => "RequestRedirect",
            Self::RequestMirror => "RequestMirror",
            Self::UrlRewrite => "URLRewrite",
            Self::ExtensionRef => "ExtensionRef",
            Self::Cors => "CORS",
            Self::ExternalAuth => "ExternalAuth",
        }
    }

    /// The key of the filter that this type names.
    pub fn key(self) -> &'static str {
        match self {
            Self::RequestHeaderModifier => "requestHeaderModifier",
            Self::ResponseHeaderModifier => "responseHeaderModifier",
            Self::RequestRedirect => "requestRedirect",
            Self::RequestMirror => "requestMirror",
            Self::UrlRewrite => "urlRewrite",
            Self::ExtensionRef => "extensionRef",
            Self::Cors => "cors",
            Self::ExternalAuth => "externalAuth",
        }
    }
}

// === impl HttpRequestRedirectFilter ===

impl HttpRequestRedirectFilter {
    /// The status, defaulted.
    pub fn status(&self) -> u16 {
        self.status_code.unwrap_or(DEFAULT_REDIRECT_STATUS)
    }

    /// `None` when the path modifier lacks the key its type names.
    fn to_redirect(&self) -> Option<RouteRedirect> {
        let path = match &self.path {
            None => None,
            Some(p) => Some(p.to_modifier()?),
        };
        Some(RouteRedirect {
            scheme: self.scheme,
            hostname: self.hostname.clone(),
            path,
            port: self.port,
            status: self.status(),
        })
    }
}

// === impl RedirectScheme ===

impl RedirectScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

// === impl HttpPathModifier ===

impl HttpPathModifier {
    /// `None` without the key its type names (validation refuses that).
    pub fn to_modifier(&self) -> Option<PathModifier> {
        match self.kind {
            PathModifierType::ReplaceFullPath => self
                .replace_full_path
                .clone()
                .map(PathModifier::ReplaceFullPath),
            PathModifierType::ReplacePrefixMatch => self
                .replace_prefix_match
                .clone()
                .map(PathModifier::ReplacePrefixMatch),
        }
    }
}
