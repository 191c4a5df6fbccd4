use serde::{Deserialize, Serialize};
use std::fmt;

/// A workload's TLS identity:
/// `<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityName(String);

/// Where identities live: the control plane's namespace and the trust domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustDomain {
    /// Linkerd's default is `linkerd`; keeping it means existing
    /// `MeshTLSAuthentication` manifests match unchanged.
    pub control_plane_namespace: String,
    pub domain: String,
}

// === impl IdentityName ===

impl IdentityName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl TrustDomain ===

impl Default for TrustDomain {
    fn default() -> Self {
        Self {
            control_plane_namespace: "linkerd".to_string(),
            domain: "cluster.local".to_string(),
        }
    }
}

impl TrustDomain {
    pub fn service_account_identity(&self, sa: &str, ns: &str) -> IdentityName {
        IdentityName(format!(
            "{sa}.{ns}.serviceaccount.identity.{}.{}",
            self.control_plane_namespace, self.domain
        ))
    }
}
