//! Gateway API GRPCRoutes attached to Services, as Linkerd reads them:
//! calls that clients make to a Service are matched by gRPC service and
//! method and by headers, split by weight between backend Services, their
//! request headers changed, and retried and bounded in time by Linkerd's
//! annotations (`retry.linkerd.io/grpc`, `/limit`, `/timeout`,
//! `timeout.linkerd.io/request`, `/response`).
//!
//! The schema is Gateway API's `GRPCRoute` (`gateway.networking.k8s.io/v1`
//! and `v1alpha2`), sharing the parts that are HTTPRoute's too: parentRefs,
//! backendRefs, header matches and the filter shape. As Linkerd's policy
//! controller, strand implements only the `RequestHeaderModifier` filter
//! (the outbound policy's gRPC routes carry no other) and exact method
//! matches; other filters, method regular expressions and session
//! persistence are refused. `hostnames` are accepted and not used: a route
//! attached to a Service applies to every name of it.

use super::{
    HttpBackendRef, HttpHeaderMatch, HttpRouteFilter, ParentReference, RouteStatus, ValueMatchType,
    validate,
};
use crate::{FieldError, GrpcRouteAnnotations, ObjectMeta};
use serde::{Deserialize, Serialize};

/// A Gateway API GRPCRoute whose parents are Services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcRoute {
    /// The `apiVersion` the document was written as (the schema is the
    /// same); written back as given.
    #[serde(skip)]
    pub api: GrpcRouteApi,
    pub metadata: ObjectMeta,
    pub spec: GrpcRouteSpec,
    /// Accepted (so that exported routes apply again) and not kept.
    #[serde(default, skip_serializing_if = "RouteStatus::is_empty")]
    pub status: RouteStatus,
}

/// The `apiVersion`s a GRPCRoute is accepted as.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum GrpcRouteApi {
    /// `gateway.networking.k8s.io/v1`
    #[default]
    GatewayV1,
    /// `gateway.networking.k8s.io/v1alpha2`
    GatewayV1alpha2,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// The Services the route attaches to; at least one.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Accepted (valid Gateway API hostnames) and not used: the route
    /// applies to every name of its parent Services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Empty means Gateway API's default: one rule matching every call,
    /// sent to the parent Service.
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// Gateway API's optional rule name; unique within the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A call matching any of these takes this rule. Empty means every
    /// call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<GrpcRouteMatch>,
    /// Only `RequestHeaderModifier` (Gateway API's `GRPCRouteFilter` has
    /// HTTPRoute's shape); other types are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Empty means the parent Service itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Refused: no part of Gateway API's GRPCRoute (an HTTPRoute habit);
    /// Linkerd's `timeout.linkerd.io/*` annotations on the route do it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<serde_json::Value>,
    /// Refused, as for HTTPRoutes: `retry.linkerd.io/*` annotations do it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<serde_json::Value>,
    /// Refused (not implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<serde_json::Value>,
}

/// All of its conditions must hold; an empty match takes every call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
    /// `Exact` or `RegularExpression` (compiled as the proxies compile
    /// regular expressions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeaderMatch>,
}

/// The call's `/<service>/<method>`: either part absent matches any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcMethodMatch {
    /// `Exact` (the default); `RegularExpression` is refused.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The fully qualified service, e.g. `emojivoto.v1.EmojiService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// e.g. `ListAll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

// === impl GrpcRoute ===

impl GrpcRoute {
    /// Linkerd's retry and timeout annotations of the route. Validation
    /// refuses a route whose annotations do not parse.
    pub fn annotations(&self) -> Result<GrpcRouteAnnotations, FieldError> {
        GrpcRouteAnnotations::parse_grpc(&self.metadata.annotations)
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate::grpc::route(self)
    }
}

// === impl GrpcRouteApi ===

impl GrpcRouteApi {
    pub const ALL: [GrpcRouteApi; 2] = [Self::GatewayV1, Self::GatewayV1alpha2];

    pub fn api_version(self) -> &'static str {
        match self {
            Self::GatewayV1 => "gateway.networking.k8s.io/v1",
            Self::GatewayV1alpha2 => "gateway.networking.k8s.io/v1alpha2",
        }
    }

    /// The API group, as the outbound policy's route metadata names it.
    pub fn group(self) -> &'static str {
        super::GATEWAY_API_GROUP
    }

    pub fn from_api_version(api_version: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.api_version() == api_version)
    }
}
