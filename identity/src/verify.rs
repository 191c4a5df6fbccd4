//! Deciding which identity a token proves. Local mode checks its own tokens
//! ([`LocalVerifier`]); Kubernetes mode will check ServiceAccount tokens
//! with the API server behind the same trait.

use std::net::IpAddr;
use std::sync::Arc;
use strand_controller_core::IdentityName;

use crate::rejection::{Reason, Rejection};
use crate::token::{TokenError, TokenKey};

/// Turns a token, presented from `peer`, into the identity it proves.
pub trait TokenVerifier: Send + Sync {
    fn verify(&self, token: &[u8], peer: Option<IpAddr>) -> Result<IdentityName, Rejection>;
}

/// What the control plane knows of a pod now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub ip: Option<IpAddr>,
    pub identity: IdentityName,
}

/// Looks pods up by namespace and name (the store or the index), so this
/// crate depends on neither.
pub trait PodLookup: Send + Sync {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo>;
}

impl<F> PodLookup for F
where
    F: Fn(&str, &str) -> Option<PodInfo> + Send + Sync,
{
    fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        self(namespace, name)
    }
}

/// Verifies tokens minted with a [`TokenKey`]: the signature, that the
/// caller is at the pod's address, and (with a lookup) that the pod still
/// exists with that address and identity.
#[derive(Clone)]
pub struct LocalVerifier {
    key: TokenKey,
    pods: Option<Arc<dyn PodLookup>>,
}

// === impl LocalVerifier ===

impl LocalVerifier {
    /// Checks signature and address only (the standalone service, which
    /// cannot see pods).
    pub fn new(key: TokenKey) -> LocalVerifier {
        LocalVerifier { key, pods: None }
    }

    /// Also checks that the pod exists, at the token's address, with the
    /// token's identity.
    pub fn with_pods(key: TokenKey, pods: Arc<dyn PodLookup>) -> LocalVerifier {
        LocalVerifier {
            key,
            pods: Some(pods),
        }
    }
}

impl TokenVerifier for LocalVerifier {
    fn verify(&self, token: &[u8], peer: Option<IpAddr>) -> Result<IdentityName, Rejection> {
        if token.is_empty() {
            return Err(Rejection::invalid_token("the request carries no token"));
        }
        let token = std::str::from_utf8(token).map_err(|_| {
            Rejection::invalid_token(TokenError::Malformed("it is not text").to_string())
        })?;
        let claims = self
            .key
            .verify(token)
            .map_err(|e| Rejection::invalid_token(e.to_string()))?;
        let pod = format!("{}/{}", claims.namespace, claims.pod);
        let peer = peer.map(canonical);
        if peer != Some(canonical(claims.ip)) {
            let from = peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string());
            return Err(Rejection::new(
                Reason::TokenPeerMismatch,
                format!(
                    "the token of pod {pod} is bound to {}, but it was presented from {from}",
                    claims.ip
                ),
            ));
        }
        if let Some(pods) = &self.pods {
            let Some(now) = pods.pod(&claims.namespace, &claims.pod) else {
                return Err(Rejection::new(
                    Reason::UnknownPod,
                    format!("the token names pod {pod}, which does not exist"),
                ));
            };
            if now.ip.map(canonical) != Some(canonical(claims.ip)) {
                let ip = now
                    .ip
                    .map_or_else(|| "no address".to_string(), |ip| ip.to_string());
                return Err(Rejection::new(
                    Reason::UnknownPod,
                    format!(
                        "the token was minted for pod {pod} at {}, but that pod now has {ip}",
                        claims.ip
                    ),
                ));
            }
            if now.identity.as_str() != claims.identity {
                return Err(Rejection::new(
                    Reason::IdentityMismatch,
                    format!(
                        "the token of pod {pod} is for identity {}, but the pod's identity is now {}",
                        claims.identity, now.identity
                    ),
                ));
            }
        }
        Ok(IdentityName::new(claims.identity))
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d` (a dual-stack listener reports v4 peers so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
