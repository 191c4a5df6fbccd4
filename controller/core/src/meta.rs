use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The kinds of resource the control plane knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Service,
    Workload,
    Pod,
    HttpRoute,
    GrpcRoute,
    ServiceProfile,
}

/// `metadata` of every resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Bumped by the store on every change; 0 before it is stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// RFC 3339 time the store first saw the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

/// Identifies one stored resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// RFC 1123 label: what Kubernetes requires of namespace, service and port names.
pub fn validate_dns_label(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(FieldError::new(
            field,
            format!("{value:?} is longer than 63 characters"),
        ));
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !value.starts_with('-') && !value.ends_with('-');
    if !ok_chars || !ok_ends {
        return Err(FieldError::new(
            field,
            format!(
                "{value:?} must consist of lower case letters, digits and '-', and start and end with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn validate_dns_subdomain(field: &str, value: &str) -> Result<(), FieldError> {
    if value.len() > 253 {
        return Err(FieldError::new(
            field,
            format!("{value:?} is longer than 253 characters"),
        ));
    }
    for label in value.split('.') {
        validate_dns_label(field, label).map_err(|_| {
            FieldError::new(
                field,
                format!("{value:?} must be lower case letters, digits, '-' and '.'"),
            )
        })?;
    }
    Ok(())
}

// === impl Kind ===

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Service,
        Kind::Workload,
        Kind::Pod,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::ServiceProfile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::Workload => "Workload",
            Self::Pod => "Pod",
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::ServiceProfile => "ServiceProfile",
        }
    }

    /// The `apiVersion` written out (the first of [`Kind::api_versions`]).
    pub fn api_version(self) -> &'static str {
        self.api_versions()[0]
    }

    /// Every `apiVersion` the kind is accepted as.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Self::Service => &["v1"],
            Self::Workload | Self::Pod => &["local.strand.io/v1alpha1"],
            Self::HttpRoute => &["gateway.networking.k8s.io/v1", "policy.linkerd.io/v1beta3"],
            Self::GrpcRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1alpha2",
            ],
            Self::ServiceProfile => &["linkerd.io/v1alpha2", "linkerd.io/v1alpha1"],
        }
    }

    /// The lower-case plural used in URLs and by `strand get`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Service => "services",
            Self::Workload => "workloads",
            Self::Pod => "pods",
            Self::HttpRoute => "httproutes",
            Self::GrpcRoute => "grpcroutes",
            Self::ServiceProfile => "serviceprofiles",
        }
    }

    /// Accepts what `kubectl get` accepts: singular, plural, short name, any case.
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "service" | "services" | "svc" => Some(Self::Service),
            "workload" | "workloads" | "deploy" | "deployment" | "deployments" => {
                Some(Self::Workload)
            }
            "pod" | "pods" | "po" => Some(Self::Pod),
            "httproute"
            | "httproutes"
            | "httproutes.gateway.networking.k8s.io"
            | "httproutes.policy.linkerd.io" => Some(Self::HttpRoute),
            "grpcroute" | "grpcroutes" | "grpcroutes.gateway.networking.k8s.io" => {
                Some(Self::GrpcRoute)
            }
            "serviceprofile" | "serviceprofiles" | "sp" | "serviceprofiles.linkerd.io" => {
                Some(Self::ServiceProfile)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl ObjectMeta ===

impl ObjectMeta {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.is_empty() {
            return Err(FieldError::new("metadata.name", "is required"));
        }
        validate_dns_subdomain("metadata.name", &self.name)?;
        validate_dns_label("metadata.namespace", &self.namespace)?;
        for (k, v) in &self.labels {
            validate_label_key(&format!("metadata.labels[{k:?}]"), k)?;
            if v.len() > 63 {
                return Err(FieldError::new(
                    format!("metadata.labels[{k:?}]"),
                    "values are at most 63 characters",
                ));
            }
        }
        Ok(())
    }
}

fn validate_label_key(field: &str, key: &str) -> Result<(), FieldError> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            validate_dns_subdomain(field, prefix)?;
            name
        }
        None => key,
    };
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(FieldError::new(
            field,
            format!("{key:?} is not a valid label key"),
        ));
    }
    Ok(())
}

// === impl ResourceKey ===

impl ResourceKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}
