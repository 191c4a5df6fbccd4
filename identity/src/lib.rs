//! The identity service: Linkerd's `io.linkerd.proxy.identity.Identity/Certify`,
//! which gives each proxy a short-lived certificate for its workload's
//! identity, so that proxies can speak mutual TLS to each other.
//!
//! ```text
//!  <dir>/ca.crt issuer.crt issuer.key ──ReloadingIssuer (every 2 s)──┐
//!  <dir>/token.key ──TokenKey──▶ mint (management API, per pod)       │
//!                         └─────▶ LocalVerifier ─┐                    ▼
//!  proxy ──TLS──▶ IdentityService::certify: token + peer IP ─▶ identity ─▶ Issuer::sign(CSR)
//!                                   └──▶ Metrics (issued, rejected{reason}, expiries)
//! ```
//!
//! The proxy proves which pod it runs in with a token the control plane
//! minted for that pod (bound to its address and identity); the service
//! checks the token, that the request comes from the pod's address, that the
//! pod still exists, and that the CSR names exactly that identity. The
//! service itself is served over TLS with a certificate from its own issuer.

#![forbid(unsafe_code)]

mod ca;
mod cert;
pub mod client;
mod issuer;
mod metrics;
mod rejection;
mod reload;
mod service;
mod tls;
mod token;
mod verify;

pub use self::ca::{
    CaError, CaFiles, CaPart, CaPems, DEFAULT_ISSUER_LIFETIME, DEFAULT_TRUST_ANCHOR_LIFETIME,
    GenerateOptions, ISSUER_CERT_FILE, ISSUER_KEY_FILE, ISSUER_NAME, TOKEN_KEY_FILE,
    TRUST_ANCHOR_FILE, TRUST_ANCHOR_NAME, generate, import, load_or_create_token_key, validate,
};
pub use self::cert::{
    CertError, CertInfo, cert_expiry, cert_info, cert_infos, format_duration, format_time,
    parse_pem_certs,
};
pub use self::issuer::{DEFAULT_CERT_LIFETIME, Issued, Issuer, KeyedCert};
pub use self::metrics::Metrics;
pub use self::rejection::{Reason, Rejection};
pub use self::reload::{RELOAD_INTERVAL, Reload, ReloadingIssuer};
pub use self::service::IdentityService;
pub use self::tls::{ServeError, ServerCertificate, TlsConn, serve};
pub use self::token::{Claims, TOKEN_KEY_LEN, TokenError, TokenKey};
pub use self::verify::{LocalVerifier, PodInfo, PodLookup, TokenVerifier};

/// The identity service's own name, as Linkerd's: the `linkerd-identity`
/// service account in the control plane's namespace.
pub fn service_identity(
    trust: &strand_controller_core::TrustDomain,
) -> strand_controller_core::IdentityName {
    trust.service_account_identity("linkerd-identity", &trust.control_plane_namespace)
}

/// The tap service's name, as Linkerd's: the `tap` service account in
/// `linkerd-viz`. Proxies let only this identity open taps.
pub fn tap_identity(
    trust: &strand_controller_core::TrustDomain,
) -> strand_controller_core::IdentityName {
    trust.service_account_identity("tap", "linkerd-viz")
}

#[cfg(test)]
mod tests;
