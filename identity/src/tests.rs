//! Helpers shared by the unit tests, and the tests by subject.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::cert::offset_date_time;
use crate::{CaPems, Issued};

mod ca;
mod grpc;
mod reload;
mod sign;
mod token;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A fresh directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "strand-identity-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to make a test CA.
struct CaSpec {
    anchor_valid: (SystemTime, SystemTime),
    issuer_valid: (SystemTime, SystemTime),
    issuer_is_ca: bool,
}

impl Default for CaSpec {
    fn default() -> Self {
        let now = SystemTime::now();
        CaSpec {
            anchor_valid: (now - HOUR, now + 365 * DAY),
            issuer_valid: (now - HOUR, now + 30 * DAY),
            issuer_is_ca: true,
        }
    }
}

fn params(cn: &str, ca: bool, valid: (SystemTime, SystemTime)) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    p.not_before = offset_date_time(valid.0);
    p.not_after = offset_date_time(valid.1);
    p
}

/// A trust anchor and an issuer it signed, as PEM.
fn make_ca(spec: CaSpec) -> CaPems {
    let anchor_key = KeyPair::generate().expect("key");
    let anchor_params = params("test-root", true, spec.anchor_valid);
    let anchor = anchor_params.self_signed(&anchor_key).expect("anchor");
    let signer = rcgen::Issuer::new(anchor_params, anchor_key);
    let issuer_key = KeyPair::generate().expect("key");
    let issuer = params("test-issuer", spec.issuer_is_ca, spec.issuer_valid)
        .signed_by(&issuer_key, &signer)
        .expect("issuer");
    CaPems {
        trust_anchor: anchor.pem(),
        issuer_cert: issuer.pem(),
        issuer_key: issuer_key.serialize_pem(),
    }
}

/// A DER CSR for `names` with a new P-256 key.
fn csr(names: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    CertificateParams::new(names)
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .der()
        .to_vec()
}

/// Verifies `issued` as a TLS server certificate for `name` against the
/// anchors of `ca_pem`, as a proxy does.
fn verify_chain(ca_pem: &str, issued: &Issued, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::parse_pem_certs(ca_pem.as_bytes()).expect("anchors") {
        roots.add(der).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("verifier");
    let intermediates: Vec<CertificateDer<'static>> = issued.intermediates.clone();
    verifier
        .verify_server_cert(
            &issued.leaf,
            &intermediates,
            &ServerName::try_from(name.to_string()).expect("name"),
            &[],
            UnixTime::now(),
        )
        .map(drop)
}
