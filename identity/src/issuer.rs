//! The issuer: checks a proxy's certificate signing request and signs its
//! workload certificate.
//!
//! ```text
//!  CSR (DER) ── parse, verify its signature ── P-256 key? ── DNS SAN == identity?
//!      └──▶ leaf: SAN dNSName=identity, digitalSignature, serverAuth+clientAuth, CA:FALSE,
//!               not_before = now - skew, not_after = min(now + lifetime, issuer's not_after)
//! ```

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::time::{Duration, SystemTime};
use strand_controller_core::IdentityName;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::ca::{CLOCK_SKEW_ALLOWANCE, CaError, CaFiles, CaPart, CaPems, random_serial};
use crate::cert::{CertInfo, format_time, offset_date_time};
use crate::rejection::{Reason, Rejection};

/// Linkerd's default workload certificate lifetime.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Longest common name X.509 allows (ub-common-name); longer identities get
/// an empty subject and a critical SAN instead (RFC 5280 4.2.1.6).
const MAX_COMMON_NAME: usize = 64;

/// A loaded, checked issuer and the trust anchors it chains to.
pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    info: CertInfo,
    anchors: Vec<CertInfo>,
    trust_anchors_pem: String,
}

/// A signed workload certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    pub leaf: CertificateDer<'static>,
    /// The issuer's certificate: what the workload sends after its leaf.
    pub intermediates: Vec<CertificateDer<'static>>,
    pub valid_until: SystemTime,
}

/// A certificate chain (leaf first) with its private key.
#[derive(Debug)]
pub struct KeyedCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    pub valid_until: SystemTime,
}

/// The key of a checked CSR, in the form rcgen writes into a certificate.
struct CsrKey(Vec<u8>);

// === impl Issuer ===

impl Issuer {
    /// Reads `ca.crt`, `issuer.crt` and `issuer.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Issuer, CaError> {
        Self::from_pems(&CaFiles::new(dir).read_pems()?)
    }

    /// Checks that the pieces fit (see [`crate::validate`]); an expired
    /// issuer loads, and then refuses to sign.
    pub fn from_pems(pems: &CaPems) -> Result<Issuer, CaError> {
        let checked = pems.check()?;
        let invalid = |reason: String| CaError::Invalid {
            part: CaPart::IssuerCert,
            reason,
        };
        let signer = rcgen::Issuer::from_ca_cert_der(&checked.issuer_der, checked.key)
            .map_err(|e| invalid(format!("cannot sign with it: {e}")))?;
        let issuer = Issuer {
            signer,
            cert_der: checked.issuer_der,
            info: checked.issuer,
            anchors: checked.anchors,
            trust_anchors_pem: pems.trust_anchor.clone(),
        };
        issuer.self_test().map_err(invalid)?;
        Ok(issuer)
    }

    /// The issuer certificate's fields.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn not_after(&self) -> SystemTime {
        self.info.not_after
    }

    /// The earliest expiry among the trust anchors.
    pub fn trust_anchor_expiry(&self) -> SystemTime {
        self.anchors
            .iter()
            .map(|a| a.not_after)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// `ca.crt` as loaded.
    pub fn trust_anchors_pem(&self) -> &str {
        &self.trust_anchors_pem
    }

    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Whether it can sign at `now`.
    pub fn usable_at(&self, now: SystemTime) -> Result<(), Rejection> {
        if now >= self.info.not_after {
            return Err(Rejection::issuer_unavailable(format!(
                "the issuer certificate {} expired at {}; install a new one in the identity directory",
                self.info.subject,
                format_time(self.info.not_after)
            )));
        }
        if now < self.info.not_before {
            return Err(Rejection::issuer_unavailable(format!(
                "the issuer certificate {} is not valid before {}",
                self.info.subject,
                format_time(self.info.not_before)
            )));
        }
        Ok(())
    }

    /// Checks `csr_der` and signs a certificate for `identity`, valid for
    /// `lifetime` (cut short at the issuer's own expiry).
    pub fn sign(
        &self,
        csr_der: &[u8],
        identity: &IdentityName,
        lifetime: Duration,
    ) -> Result<Issued, Rejection> {
        self.sign_at(csr_der, identity, lifetime, SystemTime::now())
    }

    /// A new P-256 key and a certificate for it naming `identity`, through
    /// the same CSR checks as any workload's (for the identity service's own
    /// certificate, and tools such as the tap client).
    pub fn issue_keyed(
        &self,
        identity: &IdentityName,
        lifetime: Duration,
    ) -> Result<KeyedCert, Rejection> {
        let internal = |e: String| Rejection::issuer_unavailable(e);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| internal(format!("cannot make a key: {e}")))?;
        let csr = rcgen::CertificateParams::new(vec![identity.to_string()])
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| internal(format!("cannot make a CSR for {identity}: {e}")))?;
        let issued = self.sign(csr.der(), identity, lifetime)?;
        let mut chain = vec![issued.leaf];
        chain.extend(issued.intermediates);
        Ok(KeyedCert {
            chain,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            valid_until: issued.valid_until,
        })
    }

    /// [`sign`](Self::sign) as if it were `now`.
    pub fn sign_at(
        &self,
        csr_der: &[u8],
        identity: &IdentityName,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Issued, Rejection> {
        let key = parse_csr(csr_der, identity)?;
        self.usable_at(now)?;
        self.issue(&key, identity, lifetime, now)
    }

    fn issue(
        &self,
        key: &CsrKey,
        identity: &IdentityName,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Issued, Rejection> {
        let valid_until = (now + lifetime).min(self.info.not_after);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if identity.as_str().len() <= MAX_COMMON_NAME {
            dn.push(DnType::CommonName, identity.as_str());
        }
        params.distinguished_name = dn;
        let name = identity
            .as_str()
            .try_into()
            .map_err(|e| Rejection::malformed_csr(format!("{identity} is not a DNS name: {e}")))?;
        params.subject_alt_names = vec![SanType::DnsName(name)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = offset_date_time(now - CLOCK_SKEW_ALLOWANCE);
        params.not_after = offset_date_time(valid_until);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(key, &self.signer).map_err(|e| {
            Rejection::issuer_unavailable(format!("signing the certificate failed: {e}"))
        })?;
        Ok(Issued {
            leaf: leaf.der().clone(),
            intermediates: vec![self.cert_der.clone()],
            // The certificate holds whole seconds.
            valid_until: crate::cert::system_time(crate::cert::unix_seconds(valid_until)),
        })
    }

    /// Signs a throwaway certificate and checks that it names this issuer
    /// byte for byte and verifies with its key: an issuer whose name rcgen
    /// cannot reproduce exactly would sign certificates no one can chain.
    fn self_test(&self) -> Result<(), String> {
        let probe = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot make a test key: {e}"))?;
        let key = CsrKey(probe.public_key_raw().to_vec());
        let name = IdentityName::new("self-test.identity.invalid");
        let now = self
            .info
            .not_before
            .max(SystemTime::now().min(self.info.not_after));
        let issued = self
            .issue(&key, &name, Duration::from_secs(60), now)
            .map_err(|e| e.message)?;
        let (_, leaf) = X509Certificate::from_der(&issued.leaf)
            .map_err(|e| format!("a test certificate does not parse: {e}"))?;
        let (_, me) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| format!("does not parse: {e}"))?;
        if leaf.issuer().as_raw() != me.subject().as_raw() {
            return Err(format!(
                "its subject {} cannot be reproduced exactly in the certificates it signs",
                me.subject()
            ));
        }
        leaf.verify_signature(Some(me.public_key()))
            .map_err(|e| format!("a certificate it signed does not verify with its key: {e}"))
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("subject", &self.info.subject)
            .field("not_after", &format_time(self.info.not_after))
            .finish_non_exhaustive()
    }
}

// === impl CsrKey ===

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Parses a DER PKCS#10 request, checks its signature, that its key is
/// ECDSA P-256, and that it names exactly `identity`, as Linkerd's identity
/// controller does.
fn parse_csr(der: &[u8], identity: &IdentityName) -> Result<CsrKey, Rejection> {
    if der.is_empty() {
        return Err(Rejection::malformed_csr("the request carries none"));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Rejection::malformed_csr(format!("it is not a DER PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Rejection::malformed_csr(format!(
            "{} bytes follow the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|_| {
        Rejection::malformed_csr("its signature does not verify with the key it contains")
    })?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        return Err(Rejection::malformed_csr(format!(
            "its key is of type {} ({}); only ECDSA P-256 keys are certified",
            spki.algorithm.algorithm,
            curve.map_or_else(|| "no curve".to_string(), |c| c.to_id_string()),
        )));
    }

    let mut dns = Vec::new();
    let mut other = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push(*n),
                    n => other.push(crate::cert::general_name(n)),
                }
            }
        }
    }
    if !other.is_empty() {
        return Err(Rejection::malformed_csr(format!(
            "it asks for names other than DNS names ({}); only the identity's DNS name is certified",
            other.join(", ")
        )));
    }
    match dns.as_slice() {
        [name] if *name == identity.as_str() => {}
        [] => {
            return Err(Rejection::malformed_csr(format!(
                "it names no DNS name; it must name exactly {identity}"
            )));
        }
        [name] => {
            return Err(Rejection::new(
                Reason::IdentityMismatch,
                format!("the CSR names {name}, but the request is for identity {identity}"),
            ));
        }
        names => {
            return Err(Rejection::new(
                Reason::IdentityMismatch,
                format!(
                    "the CSR names {} DNS names ({}); it must name exactly {identity}",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(CsrKey(spki.subject_public_key.data.to_vec()))
}
