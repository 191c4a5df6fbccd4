//! `strand identity POD`: a TLS handshake with the pod's proxy on its
//! inbound port, naming the pod's identity (the proxy then terminates TLS
//! itself and presents its certificate), verified against `ca.crt`.
//!
//! ```text
//!  strand ──TCP──▶ <pod-ip>:4143 ──ClientHello(SNI = identity, no client cert)──▶ proxy
//!         ◀── leaf + issuer ── recorded, then verified (trust anchor, name, dates)
//! ```

use crate::ctx::{Ctx, get_opt};
use anyhow::{Context as _, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use strand_controller_core::{Kind, Resource, TrustDomain};
use strand_identity::CertInfo;

/// The proxy's inbound port, where it answers TLS for its own identity.
pub const PROXY_INBOUND_PORT: u16 = 4143;

/// A pod on this host answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the handshake showed.
struct Probe {
    /// As presented: leaf first.
    chain: Vec<CertificateDer<'static>>,
    /// `None` when the chain verified.
    error: Option<String>,
}

/// Verifies as rustls would, and remembers what it was shown, so that a
/// chain that fails verification can still be displayed.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

/// The chain presented (leaf first) and the verdict on it.
type Seen = (Vec<CertificateDer<'static>>, Result<(), rustls::Error>);

pub async fn inspect(ctx: &Ctx, namespace: &str, name: &str, output: &str) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    let Some(Resource::Pod(pod)) = get_opt(&client, Kind::Pod, namespace, name).await? else {
        bail!("pod {namespace}/{name} not found (list them with `strand get pods -n {namespace}`)");
    };
    let Some(ip) = pod.status.pod_ip else {
        bail!("pod {namespace}/{name} has no address yet");
    };
    let trust = TrustDomain::default();
    let identity = pod
        .identity(&trust)
        .unwrap_or_else(|| pod.workload_identity(&trust));
    let ca_path = super::identity_dir(ctx).join(strand_identity::TRUST_ANCHOR_FILE);
    let ca = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let addr = SocketAddr::new(ip, PROXY_INBOUND_PORT);
    let probe = probe(addr, identity.as_str(), &ca)
        .await
        .with_context(|| format!("asking the proxy of pod {namespace}/{name} at {addr}"))?;

    let now = SystemTime::now();
    let chain: Vec<CertInfo> = probe
        .chain
        .iter()
        .map(|der| CertInfo::from_der(der))
        .collect::<Result<_, _>>()
        .context("the proxy presented a certificate that does not parse")?;
    let expires = chain.first().map(|leaf| leaf.not_after);
    if output == "json" {
        let certs: Vec<_> = chain
            .iter()
            .map(|c| {
                json!({
                    "subject": c.subject,
                    "sans": c.sans,
                    "issuer": c.issuer,
                    "notBefore": strand_identity::format_time(c.not_before),
                    "notAfter": strand_identity::format_time(c.not_after),
                })
            })
            .collect();
        let doc = json!({
            "namespace": namespace,
            "pod": name,
            "address": addr.to_string(),
            "identity": identity.as_str(),
            "trustAnchors": ca_path.display().to_string(),
            "verified": probe.error.is_none(),
            "error": probe.error,
            "chain": certs,
            "expiresAt": expires.map(strand_identity::format_time),
            "expiresInSeconds": expires.map(|t| t.duration_since(now).unwrap_or_default().as_secs()),
        });
        println!("{doc}");
    } else {
        println!("pod {namespace}/{name} at {addr}");
        match &probe.error {
            None => println!(
                "identity: {identity} \u{221a} verified against {}",
                ca_path.display()
            ),
            Some(e) => println!(
                "identity: {identity} \u{d7} NOT verified against {}: {e}",
                ca_path.display()
            ),
        }
        println!("certificate chain:");
        for (i, c) in chain.iter().enumerate() {
            println!("  [{i}] subject  {}", c.subject);
            if !c.sans.is_empty() {
                println!("      SANs     {}", c.sans.join(", "));
            }
            println!("      issuer   {}", c.issuer);
            println!(
                "      valid    {} to {}",
                strand_identity::format_time(c.not_before),
                strand_identity::format_time(c.not_after)
            );
        }
        if let Some(t) = expires {
            match t.duration_since(now) {
                Ok(left) => println!(
                    "expires in {} ({})",
                    strand_identity::format_duration(left),
                    strand_identity::format_time(t)
                ),
                Err(_) => println!("expired at {}", strand_identity::format_time(t)),
            }
        }
    }
    Ok(if probe.error.is_none() { 0 } else { 1 })
}

/// Handshakes with `addr` as a client of `identity` trusting `ca_pem`.
/// Verification failures are reported in the result; other failures
/// (nothing listening, no TLS, a chain never presented) are errors.
async fn probe(addr: SocketAddr, identity: &str, ca_pem: &[u8]) -> anyhow::Result<Probe> {
    let mut roots = rustls::RootCertStore::empty();
    for der in strand_identity::parse_pem_certs(ca_pem).context("reading the trust anchors")? {
        roots.add(der).context("a trust anchor is not usable")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the certificate verifier")?;
    let verifier = Arc::new(Recording {
        inner,
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(identity.to_string())
        .with_context(|| format!("{identity} is not a DNS name"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    let res = tokio::time::timeout(TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    let seen = verifier
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match (seen, res) {
        (Some((chain, Ok(()))), Ok(_)) => Ok(Probe { chain, error: None }),
        (Some((chain, Err(e))), _) => Ok(Probe {
            chain,
            error: Some(e.to_string()),
        }),
        // Verified, then the handshake failed (a bad signature over the
        // handshake, say): the chain is not proven to be the proxy's.
        (Some((chain, Ok(()))), Err(e)) => Ok(Probe {
            chain,
            error: Some(format!(
                "the handshake failed after the chain verified: {e}"
            )),
        }),
        (None, Err(e)) => bail!(
            "no certificate was presented: {e} (is the pod meshed, and does its proxy have an identity?)"
        ),
        (None, Ok(_)) => bail!("the handshake finished without a certificate"),
    }
}

// === impl Recording ===

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let res = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((chain, res.as_ref().map(drop).map_err(Clone::clone)));
        res
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
