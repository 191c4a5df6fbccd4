//! The proxy's own identity and mesh TLS.
//!
//! ```text
//!  start: ECDSA P-256 key (memory only) + CSR for the local name
//!    └─ Identity/Certify (TLS to the identity service, token from a file)
//!         └─ leaf + intermediates ──► LocalIdentity::current ──► /ready 200
//!              └─ renew at 70% of the lifetime; on failure retry with
//!                 jittered backoff while the current certificate keeps serving
//!
//!  outbound: endpoint identity X ──► TLS 1.3, SNI X, server cert must chain to
//!            the trust anchors and name X; our certificate as client cert
//!  inbound:  ClientHello SNI == local name ──► terminate, verify the client's
//!            certificate (optional), record its identity as client_id
//! ```
//!
//! The key is generated in memory at start and never written anywhere; the
//! same key is used for every renewal (as Linkerd's proxy does), so the CSR
//! is made once.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::sync::watch;

use crate::config::IdentityConfig;

mod certify;
mod tls;

pub use self::certify::IdentityMetrics;
pub use self::tls::ALPN_OPAQUE;

/// Errors building the identity from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("STRAND_PROXY_IDENTITY_TRUST_ANCHORS: {0}")]
    TrustAnchors(String),
    #[error("STRAND_PROXY_IDENTITY_LOCAL_NAME {0:?} is not a DNS-like name")]
    LocalName(String),
    #[error("generating the private key: {0}")]
    Key(String),
    #[error("building TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// This proxy's identity: its name, the trust anchors, its key and its
/// current certificate. Shared by both directions and the renewal task.
pub struct LocalIdentity {
    name: Arc<str>,
    roots: Arc<RootCertStore>,
    key: Arc<dyn rustls::sign::SigningKey>,
    current: RwLock<Option<Current>>,
    ready: watch::Sender<bool>,
    client: Arc<ClientConfig>,
    /// As `client`, offering [`tls::ALPN_OPAQUE`].
    client_opaque: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

/// The certificate in use and when it expires.
#[derive(Clone)]
struct Current {
    key: Arc<CertifiedKey>,
    expiry: SystemTime,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("name", &self.name)
            .field("ready", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// Generates the key and builds the TLS settings. Serves nothing until
    /// [`LocalIdentity::spawn_certify`] has obtained a certificate.
    pub fn new(config: &IdentityConfig) -> Result<(Arc<Self>, rcgen::KeyPair), IdentityError> {
        ServerName::try_from(config.local_name.as_str())
            .map_err(|_| IdentityError::LocalName(config.local_name.clone()))?;
        let roots = Arc::new(tls::roots_from_pem(&config.trust_anchors_pem)?);
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let key = tls::provider()
            .key_provider
            .load_private_key(der)
            .map_err(IdentityError::Tls)?;
        let identity = Arc::new_cyclic(|weak| {
            let resolver = Arc::new(tls::Resolver(weak.clone()));
            let (client, server) = tls::mesh_configs(&roots, resolver)
                .expect("the built-in provider supports TLS 1.3 and the configured groups");
            let mut client_opaque = client.clone();
            client_opaque.alpn_protocols = vec![tls::ALPN_OPAQUE.to_vec()];
            LocalIdentity {
                name: config.local_name.as_str().into(),
                roots,
                key,
                current: RwLock::new(None),
                ready: watch::channel(false).0,
                client: Arc::new(client),
                client_opaque: Arc::new(client_opaque),
                server: Arc::new(server),
            }
        });
        Ok((identity, key_pair))
    }

    /// This proxy's identity name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether the proxy holds a certificate.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the proxy holds a certificate.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// TLS settings for connections to meshed endpoints; `opaque` tells
    /// the server proxy that the stream is opaque TCP.
    pub fn client_config(&self, opaque: bool) -> &Arc<ClientConfig> {
        if opaque {
            &self.client_opaque
        } else {
            &self.client
        }
    }

    /// TLS settings for mesh connections this proxy terminates.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// The certificate chain in use, if any.
    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.lock_current().as_ref().map(|c| c.key.clone())
    }

    /// The current certificate's expiry, if any.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.lock_current().as_ref().map(|c| c.expiry)
    }

    /// Checks a certificate chain from the identity service and puts it in
    /// use: the leaf must name this identity, chain to the trust anchors and
    /// carry this proxy's public key.
    fn install(
        &self,
        leaf: CertificateDer<'static>,
        intermediates: Vec<CertificateDer<'static>>,
        expiry: SystemTime,
    ) -> Result<(), String> {
        tls::verify_own_chain(&self.roots, &self.name, &leaf, &intermediates)?;
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(leaf);
        chain.extend(intermediates);
        let key = CertifiedKey::new(chain, self.key.clone());
        key.keys_match()
            .map_err(|e| format!("the certificate does not carry this proxy's key: {e}"))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            key: Arc::new(key),
            expiry,
        });
        self.ready.send_replace(true);
        Ok(())
    }

    fn lock_current(&self) -> std::sync::RwLockReadGuard<'_, Option<Current>> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the task that obtains and renews the certificate; it runs
    /// until the handle is aborted.
    pub fn spawn_certify(
        self: &Arc<Self>,
        config: IdentityConfig,
        key_pair: &rcgen::KeyPair,
        metrics: IdentityMetrics,
    ) -> Result<tokio::task::JoinHandle<()>, IdentityError> {
        let csr = certify::csr(&self.name, key_pair)?;
        Ok(tokio::spawn(certify::run(
            self.clone(),
            config,
            csr,
            metrics,
        )))
    }
}

/// The identity a verified peer certificate names (its first DNS SAN).
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Arc<str>> {
    let leaf = certs?.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    cert.valid_dns_names().next().map(Arc::from)
}

/// The server name to ask for when connecting to `identity`.
pub fn server_name(identity: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(identity.to_string()).ok()
}

#[cfg(test)]
mod tests;
