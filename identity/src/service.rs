//! `io.linkerd.proxy.identity.Identity/Certify`.
//!
//! ```text
//!  CertifyRequest{identity, token, csr} + peer address
//!     ── TokenVerifier ──▶ identity the token proves ══ request identity?
//!     ── Issuer::sign (CSR names that identity) ──▶ CertifyResponse{leaf, [issuer], valid_until}
//! ```

use linkerd2_proxy_api::identity::{self as api, identity_server};
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::IdentityName;

use crate::issuer::Issued;
use crate::metrics::Metrics;
use crate::rejection::{Reason, Rejection};
use crate::reload::ReloadingIssuer;
use crate::verify::TokenVerifier;

/// The gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct IdentityService {
    issuer: ReloadingIssuer,
    verifier: Arc<dyn TokenVerifier>,
    lifetime: Duration,
    metrics: Metrics,
}

// === impl IdentityService ===

impl IdentityService {
    pub fn new(
        issuer: ReloadingIssuer,
        verifier: Arc<dyn TokenVerifier>,
        lifetime: Duration,
        metrics: Metrics,
    ) -> IdentityService {
        IdentityService {
            issuer,
            verifier,
            lifetime,
            metrics,
        }
    }

    pub fn issuer(&self) -> &ReloadingIssuer {
        &self.issuer
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The tonic service to mount.
    pub fn server(self) -> identity_server::IdentityServer<IdentityService> {
        identity_server::IdentityServer::new(self)
    }

    /// The whole decision, apart from gRPC; counts the outcome.
    pub fn certify(
        &self,
        req: &api::CertifyRequest,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Issued, Rejection> {
        let res = self.decide(req, peer);
        match &res {
            Ok(issued) => {
                self.metrics.issued();
                tracing::debug!(
                    identity = %req.identity,
                    peer = ?peer,
                    valid_until = %crate::format_time(issued.valid_until),
                    "certificate issued"
                );
            }
            Err(r) => {
                self.metrics.rejected(r.reason);
                tracing::info!(
                    identity = %req.identity,
                    peer = ?peer,
                    reason = r.reason.label(),
                    "certificate refused: {}",
                    r.message
                );
            }
        }
        res
    }

    fn decide(
        &self,
        req: &api::CertifyRequest,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Issued, Rejection> {
        if req.identity.is_empty() {
            return Err(Rejection::new(
                Reason::IdentityMismatch,
                "the request names no identity",
            ));
        }
        let proven = self.verifier.verify(&req.token, peer)?;
        if proven.as_str() != req.identity {
            return Err(Rejection::new(
                Reason::IdentityMismatch,
                format!(
                    "the request asks for identity {}, but the token is for {proven}",
                    req.identity
                ),
            ));
        }
        let identity = IdentityName::new(req.identity.clone());
        self.issuer
            .current()
            .sign(&req.certificate_signing_request, &identity, self.lifetime)
    }
}

#[tonic::async_trait]
impl identity_server::Identity for IdentityService {
    async fn certify(
        &self,
        request: tonic::Request<api::CertifyRequest>,
    ) -> Result<tonic::Response<api::CertifyResponse>, tonic::Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let req = request.into_inner();
        // Signing is a few hundred microseconds of CPU; not worth a
        // blocking-pool hop.
        let issued = IdentityService::certify(self, &req, peer)?;
        Ok(tonic::Response::new(api::CertifyResponse {
            leaf_certificate: issued.leaf.to_vec(),
            intermediate_certificates: issued.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until: Some(prost_types::Timestamp::from(issued.valid_until)),
        }))
    }
}
