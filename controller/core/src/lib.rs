//! The domain model of the strand control plane, shared by both modes.
//!
//! Resources arrive as Kubernetes-style documents (`apiVersion`, `kind`,
//! `metadata`, `spec`): from `strand apply` and `strand run` in local mode, from
//! the Kubernetes API in Kubernetes mode. This crate parses and validates them
//! into typed values, and defines what the layers above ask of an index:
//!
//! ```text
//!   YAML / JSON ──parse+validate──▶ Resource ──▶ index ──watch──▶ gRPC (Discover* traits)
//! ```
//!
//! It knows nothing of kube, tonic or the store; it does no I/O.

#![forbid(unsafe_code)]

mod cluster;
mod discover;
mod identity;
mod manifest;
mod meta;
pub mod profile;
mod route;
mod service;
mod workload;

pub use self::cluster::{CLUSTER_FILE, IDENTITY_DIR, LocalCluster};
pub use self::discover::{
    DiscoverServices, Endpoint, OutboundBackend, OutboundGrpcRoute, OutboundGrpcRouteRule,
    OutboundHttpRoute, OutboundRoute, OutboundRouteRule, ServiceKey, ServicePortView, ServiceWatch,
    Target,
};
pub use self::identity::{IdentityName, TrustDomain};
pub use self::manifest::{
    ManifestError, parse_manifests, parse_manifests_numbered, parse_resource_json,
};
pub use self::meta::{Kind, ObjectMeta, ResourceKey, validate_dns_label, validate_dns_subdomain};
pub use self::profile::{
    DEFAULT_ROUTE_TIMEOUT, GoDuration, ProfileRoute, Quantity, RequestMatch, ResponseClass,
    ResponseMatch, RetryBudget, SERVICE_PROFILE_GROUP, ServiceProfile, ServiceProfileApi,
    ServiceProfileSpec, StatusRange, WeightedDst, compile_path_regex,
};
pub use self::route::{
    DEFAULT_REDIRECT_STATUS, GATEWAY_API_GROUP, GRPC_ROUTE_ANNOTATIONS, GatewayDuration,
    GrpcMethodMatch, GrpcRetryConditions, GrpcRoute, GrpcRouteAnnotations, GrpcRouteApi,
    GrpcRouteMatch, GrpcRouteRetry, GrpcRouteRule, GrpcRouteSpec, HttpBackendRef, HttpHeader,
    HttpHeaderFilter, HttpHeaderMatch, HttpMethod, HttpPathMatch, HttpPathModifier,
    HttpQueryParamMatch, HttpRequestRedirectFilter, HttpRoute, HttpRouteApi, HttpRouteFilter,
    HttpRouteFilterType, HttpRouteMatch, HttpRouteRule, HttpRouteSpec, HttpRouteTimeouts,
    LINKERD_POLICY_GROUP, MAX_RETRY_LIMIT, MAX_WEIGHT, ParentReference, PathMatchType,
    PathModifier, PathModifierType, RETRY_GRPC, RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT,
    ROUTE_ANNOTATIONS, RedirectScheme, RouteAnnotations, RouteFilter, RouteRedirect, RouteRetry,
    RouteStatus, RouteTimeouts, ServiceRoute, TIMEOUT_IDLE, TIMEOUT_REQUEST, TIMEOUT_RESPONSE,
    ValueMatchType,
};
pub use self::service::{Service, ServicePort, ServiceSpec, ServiceStatus, TargetPort};
pub use self::workload::{
    ContainerPort, Pod, PodSpec, PodStatus, WORKLOAD_LABEL, Workload, WorkloadSpec, WorkloadStatus,
};

/// A validation failure inside one resource: which field and why.
///
/// `field` is a dotted path such as `spec.ports[1].port`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Any resource the control plane stores.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Resource {
    Service(Service),
    Workload(Workload),
    Pod(Pod),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    ServiceProfile(ServiceProfile),
}

// === impl Resource ===

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Service(_) => Kind::Service,
            Self::Workload(_) => Kind::Workload,
            Self::Pod(_) => Kind::Pod,
            Self::HttpRoute(_) => Kind::HttpRoute,
            Self::GrpcRoute(_) => Kind::GrpcRoute,
            Self::ServiceProfile(_) => Kind::ServiceProfile,
        }
    }

    /// The `apiVersion` the resource was written as.
    pub fn api_version(&self) -> &'static str {
        match self {
            Self::HttpRoute(r) => r.api.api_version(),
            Self::GrpcRoute(r) => r.api.api_version(),
            Self::ServiceProfile(p) => p.api.api_version(),
            _ => self.kind().api_version(),
        }
    }

    /// Records which of its kind's `apiVersion`s (see
    /// [`Kind::api_versions`]) the resource was written as, for the kinds
    /// that have several; an unknown one leaves the first.
    pub fn set_api_version(&mut self, api_version: &str) {
        match self {
            Self::HttpRoute(r) => {
                r.api = HttpRouteApi::from_api_version(api_version).unwrap_or_default();
            }
            Self::GrpcRoute(r) => {
                r.api = GrpcRouteApi::from_api_version(api_version).unwrap_or_default();
            }
            Self::ServiceProfile(p) => {
                p.api = ServiceProfileApi::from_api_version(api_version).unwrap_or_default();
            }
            Self::Service(_) | Self::Workload(_) | Self::Pod(_) => {}
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Service(s) => &s.metadata,
            Self::Workload(w) => &w.metadata,
            Self::Pod(p) => &p.metadata,
            Self::HttpRoute(r) => &r.metadata,
            Self::GrpcRoute(r) => &r.metadata,
            Self::ServiceProfile(p) => &p.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Service(s) => &mut s.metadata,
            Self::Workload(w) => &mut w.metadata,
            Self::Pod(p) => &mut p.metadata,
            Self::HttpRoute(r) => &mut r.metadata,
            Self::GrpcRoute(r) => &mut r.metadata,
            Self::ServiceProfile(p) => &mut p.metadata,
        }
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind(), &self.meta().namespace, &self.meta().name)
    }

    /// Checks everything serde cannot: names, ranges, duplicates.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.meta().validate()?;
        match self {
            Self::Service(s) => s.validate(),
            Self::Workload(w) => w.validate(),
            Self::Pod(p) => p.validate(),
            Self::HttpRoute(r) => r.validate(),
            Self::GrpcRoute(r) => r.validate(),
            Self::ServiceProfile(p) => p.validate(),
        }
    }

    /// The Kubernetes-style JSON document (`apiVersion`, `kind`, ...).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match self {
            Self::Service(s) => serde_json::to_value(s),
            Self::Workload(w) => serde_json::to_value(w),
            Self::Pod(p) => serde_json::to_value(p),
            Self::HttpRoute(r) => serde_json::to_value(r),
            Self::GrpcRoute(r) => serde_json::to_value(r),
            Self::ServiceProfile(p) => serde_json::to_value(p),
        }
        .expect("resources always serialize");
        if let Some(obj) = v.as_object_mut() {
            let mut doc = serde_json::Map::new();
            doc.insert("apiVersion".into(), self.api_version().into());
            doc.insert("kind".into(), self.kind().name().into());
            doc.append(obj);
            return serde_json::Value::Object(doc);
        }
        v
    }
}
