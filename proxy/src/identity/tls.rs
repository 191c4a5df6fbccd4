//! rustls settings for mesh TLS: TLS 1.3 only, the hybrid post-quantum
//! key exchange preferred, certificates from the proxy's current identity.

use std::sync::{Arc, Weak};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

use super::{IdentityError, LocalIdentity};

/// The aws-lc-rs provider with X25519MLKEM768 first, then the classical
/// groups for peers without it.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
    ];
    Arc::new(p)
}

/// Parses the trust anchors (one or more PEM certificates).
pub fn roots_from_pem(pem: &str) -> Result<RootCertStore, IdentityError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| IdentityError::TrustAnchors(format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            IdentityError::TrustAnchors(format!("not a usable CA certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(IdentityError::TrustAnchors(
            "no PEM certificate found".to_string(),
        ));
    }
    Ok(roots)
}

/// ALPN protocol a client proxy offers when the stream inside is opaque
/// TCP it already decided not to inspect, so the server proxy skips
/// protocol detection too (a server-speaks-first protocol would otherwise
/// wait for the detection timeout on both sides).
pub const ALPN_OPAQUE: &[u8] = b"strand.io/opaque";

/// The client and server settings of mesh TLS.
pub fn mesh_configs(
    roots: &Arc<RootCertStore>,
    resolver: Arc<Resolver>,
) -> Result<(ClientConfig, ServerConfig), rustls::Error> {
    let provider = provider();
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_client_cert_resolver(resolver.clone());
    // Meshed clients present a certificate; a client that does not is
    // still served (its requests carry no client_id).
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    // No resumption: every connection proves its identity afresh, and the
    // server keeps no per-client state.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    server.alpn_protocols = vec![ALPN_OPAQUE.to_vec()];
    Ok((client, server))
}

/// Settings for the connection to the identity service: verified against
/// the trust anchors, no client certificate (the proxy has none yet).
pub fn control_client_config(roots: &Arc<RootCertStore>) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Checks that a chain from the identity service names `name` and leads to
/// the trust anchors.
pub fn verify_own_chain(
    roots: &Arc<RootCertStore>,
    name: &str,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), String> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| e.to_string())?;
    let server_name =
        ServerName::try_from(name).map_err(|_| format!("{name:?} is not a DNS-like name"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("the issued certificate is not valid for {name}: {e}"))
}

/// Hands rustls the proxy's current certificate, client and server side.
pub struct Resolver(pub Weak<LocalIdentity>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0.upgrade()?.certified_key()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}
