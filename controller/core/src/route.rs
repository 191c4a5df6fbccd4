//! Gateway API HTTPRoutes attached to Services (GAMMA, "mesh mode"), as
//! Linkerd reads them: requests that clients send to a Service are matched
//! by path, headers, query parameters and method, split by weight between
//! backend Services, given timeouts and retries, and filtered (headers set,
//! added or removed; redirects).
//!
//! The schema is Gateway API's `HTTPRoute` (served as
//! `gateway.networking.k8s.io/v1` and as Linkerd's `policy.linkerd.io/v1beta3`),
//! narrowed to what strand's outbound policy implements, with Linkerd's
//! retry and timeout annotations (module `annotations`) and the rule
//! filters Linkerd implements (module `filter`). Fields that would change
//! where or how a request goes and that strand does not implement yet
//! (other filters, backendRef filters, hostnames, regular expressions,
//! Gateway API's experimental `retry`, session persistence) are refused
//! rather than ignored, so that a route never does less than it says.
//!
//! GRPCRoutes (module `grpc`) share the parentRefs, backendRefs, header
//! matches, filter shape and annotations; [`ServiceRoute`] is what the
//! index needs of either kind.

use crate::{FieldError, Kind, ObjectMeta};
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod annotations;
mod duration;
mod filter;
mod grpc;
mod validate;

pub use self::annotations::{
    GRPC_ROUTE_ANNOTATIONS, GrpcRetryConditions, GrpcRouteAnnotations, GrpcRouteRetry,
    MAX_RETRY_LIMIT, RETRY_GRPC, RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT, ROUTE_ANNOTATIONS,
    RouteAnnotations, RouteRetry, RouteTimeouts, TIMEOUT_IDLE, TIMEOUT_REQUEST, TIMEOUT_RESPONSE,
};
pub use self::duration::GatewayDuration;
pub use self::filter::{
    DEFAULT_REDIRECT_STATUS, HttpHeader, HttpHeaderFilter, HttpPathModifier,
    HttpRequestRedirectFilter, HttpRouteFilter, HttpRouteFilterType, PathModifier,
    PathModifierType, RedirectScheme, RouteFilter, RouteRedirect,
};
pub use self::grpc::{
    GrpcMethodMatch, GrpcRoute, GrpcRouteApi, GrpcRouteMatch, GrpcRouteRule, GrpcRouteSpec,
};

/// The group Linkerd names Gateway API resources with.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Linkerd's own copy of the HTTPRoute schema.
pub const LINKERD_POLICY_GROUP: &str = "policy.linkerd.io";

/// What HTTPRoutes and GRPCRoutes have in common: Services as parents and
/// as backends. The index attaches, orders and resolves both through it.
pub trait ServiceRoute {
    const KIND: Kind;

    fn meta(&self) -> &ObjectMeta;

    /// Why the route's Linkerd annotations do not parse, if they do not
    /// (validation refuses such a route; one stored earlier is served
    /// without them).
    fn check_annotations(&self) -> Result<(), FieldError>;

    /// `spec.parentRefs`.
    fn parent_refs(&self) -> &[ParentReference];

    /// Each rule's `backendRefs`, in order.
    fn rule_backend_refs(&self) -> impl Iterator<Item = &[HttpBackendRef]>;

    /// True when the route attaches to port `port` of Service `name` in the
    /// route's namespace (a parentRef with that port, or with none).
    fn attaches_to(&self, name: &str, port: u16) -> bool {
        self.parent_refs()
            .iter()
            .any(|p| p.name == name && p.port.is_none_or(|p| p == port))
    }

    /// The names of the Services the route attaches to.
    fn parent_services(&self) -> impl Iterator<Item = &str> {
        self.parent_refs().iter().map(|p| p.name.as_str())
    }

    /// Every rule's backendRefs, in order.
    fn backend_refs(&self) -> impl Iterator<Item = &HttpBackendRef> {
        self.rule_backend_refs().flatten()
    }

    /// The names of the Services its rules send to (without the parents a
    /// rule without backends sends to).
    fn backend_services(&self) -> impl Iterator<Item = &str> {
        self.backend_refs().map(|b| b.name.as_str())
    }
}

/// A Gateway API HTTPRoute whose parents are Services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    /// The API the document was written against (its `apiVersion`); both
    /// have the same schema here, and the outbound policy names the route
    /// with its group.
    #[serde(skip)]
    pub api: HttpRouteApi,
    pub metadata: ObjectMeta,
    pub spec: HttpRouteSpec,
    /// Accepted (so that exported routes apply again) and not kept: strand
    /// writes no route status yet.
    #[serde(default, skip_serializing_if = "RouteStatus::is_empty")]
    pub status: RouteStatus,
}

/// The `apiVersion`s an HTTPRoute is accepted as.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum HttpRouteApi {
    /// `gateway.networking.k8s.io/v1`
    #[default]
    GatewayV1,
    /// `policy.linkerd.io/v1beta3`
    LinkerdV1beta3,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Services the route attaches to; at least one.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Refused unless empty (host matching is not implemented).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Empty means Gateway API's default: one rule matching every request,
    /// sent to the parent Service.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// `spec.parentRefs[]`. Without `group` and `kind` it names a Gateway, as in
/// Gateway API; a Service is `{group: core, kind: Service}` (`group: ""` too,
/// and `kind` defaults to Service once the group is the core group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Must be the route's own namespace when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// Refused: use `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The Service port the route applies to; every port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Gateway API's optional rule name; unique within the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A request matching any of these takes this rule. Empty means one
    /// match of every path (prefix `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// Empty means the parent Service itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Applied in order to the rule's requests (and their responses):
    /// `RequestHeaderModifier`, `ResponseHeaderModifier` and
    /// `RequestRedirect`, at most one of each; other types are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Refused: Gateway API's retry is experimental; Linkerd's
    /// `retry.linkerd.io/*` annotations on the route do it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<serde_json::Value>,
    /// Refused (not implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<serde_json::Value>,
}

/// All of its conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Absent means prefix `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HttpQueryParamMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpPathMatch {
    #[serde(rename = "type", default = "PathMatchType::path_prefix")]
    pub kind: PathMatchType,
    #[serde(default = "root_path")]
    pub value: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    Exact,
    /// Path elements: `/api` matches `/api` and `/api/v1`, not `/apis`.
    PathPrefix,
    /// Refused (not implemented).
    RegularExpression,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeaderMatch {
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// Compared without regard to case.
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpQueryParamMatch {
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// Compared exactly (case matters).
    pub name: String,
    pub value: String,
}

/// How a header or query parameter value (or a GRPCRoute's method) is
/// compared.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchType {
    #[default]
    Exact,
    /// Refused for HTTPRoutes and gRPC methods (not implemented); a
    /// GRPCRoute's header matches take it.
    RegularExpression,
}

/// The methods Gateway API's `HTTPMethod` allows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

/// `spec.rules[].backendRefs[]`: a Service port of the route's namespace.
/// A GRPCRoute's (Gateway API's `GRPCBackendRef`) has the same shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// `""` or `core` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Service` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    /// Must be the route's own namespace when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Required for a Service, as in Gateway API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Share of the rule's requests, relative to the other backends:
    /// 0..=1,000,000, default 1; 0 sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Refused unless empty (not implemented; the rule's filters apply to
    /// every backend).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// From the request's start until the response's end, retries and all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GatewayDuration>,
    /// For one request to a backend; at most `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<GatewayDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {}

fn root_path() -> String {
    "/".to_string()
}

// === impl HttpRoute ===

/// HTTPRoutes and GRPCRoutes keep these in the same fields.
macro_rules! service_route {
    ($route:ty, $kind:expr) => {
        impl ServiceRoute for $route {
            const KIND: Kind = $kind;

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn check_annotations(&self) -> Result<(), FieldError> {
                self.annotations().map(drop)
            }

            fn parent_refs(&self) -> &[ParentReference] {
                &self.spec.parent_refs
            }

            fn rule_backend_refs(&self) -> impl Iterator<Item = &[HttpBackendRef]> {
                self.spec.rules.iter().map(|r| r.backend_refs.as_slice())
            }
        }
    };
}

service_route!(HttpRoute, Kind::HttpRoute);
service_route!(GrpcRoute, Kind::GrpcRoute);

impl HttpRoute {
    /// Linkerd's retry and timeout annotations of the route. Validation
    /// refuses a route whose annotations do not parse.
    pub fn annotations(&self) -> Result<RouteAnnotations, FieldError> {
        RouteAnnotations::parse(&self.metadata.annotations)
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate::route(self)
    }
}

// === impl HttpRouteApi ===

impl HttpRouteApi {
    pub const ALL: [HttpRouteApi; 2] = [Self::GatewayV1, Self::LinkerdV1beta3];

    pub fn api_version(self) -> &'static str {
        match self {
            Self::GatewayV1 => "gateway.networking.k8s.io/v1",
            Self::LinkerdV1beta3 => "policy.linkerd.io/v1beta3",
        }
    }

    /// The API group, as the outbound policy's route metadata names it.
    pub fn group(self) -> &'static str {
        match self {
            Self::GatewayV1 => GATEWAY_API_GROUP,
            Self::LinkerdV1beta3 => LINKERD_POLICY_GROUP,
        }
    }

    pub fn from_api_version(api_version: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.api_version() == api_version)
    }
}

// === impl PathMatchType ===

impl PathMatchType {
    fn path_prefix() -> Self {
        Self::PathPrefix
    }
}

// === impl HttpMethod ===

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
        }
    }
}

// === impl HttpBackendRef ===

impl HttpBackendRef {
    /// The weight, defaulted; validation keeps it within 0..=1,000,000.
    pub fn weight(&self) -> u32 {
        self.weight
            .map_or(1, |w| u32::try_from(w.clamp(0, MAX_WEIGHT)).unwrap_or(0))
    }
}

/// Gateway API's bound on a backend's weight.
pub const MAX_WEIGHT: i64 = 1_000_000;

// === impl HttpRouteTimeouts ===

impl HttpRouteTimeouts {
    /// `request`, unless absent or zero (Gateway API: `0s` disables it).
    pub fn request(&self) -> Option<Duration> {
        nonzero(self.request.as_ref())
    }

    /// `backendRequest`, unless absent or zero.
    pub fn backend_request(&self) -> Option<Duration> {
        nonzero(self.backend_request.as_ref())
    }
}

fn nonzero(d: Option<&GatewayDuration>) -> Option<Duration> {
    d.map(GatewayDuration::as_duration).filter(|d| !d.is_zero())
}

// === impl RouteStatus ===

impl RouteStatus {
    fn is_empty(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
