//! The CA files of a directory (local mode: `<state-dir>/identity/`):
//!
//! ```text
//!  ca.crt       trust anchor(s), PEM; what proxies verify peers against
//!  issuer.crt   the intermediate CA that signs workload certificates, PEM
//!  issuer.key   its private key, PEM (PKCS#8 or SEC1), mode 0600
//!  token.key    32 random bytes that sign workload tokens, mode 0600
//! ```
//!
//! [`generate`] makes a new trust anchor and issuer (the anchor's key is not
//! kept, as `linkerd install` does: replacing the issuer later means a new
//! anchor); [`import`] takes ones made elsewhere after [`validate`] agrees.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::{CertInfo, offset_date_time, parse_pem_certs};

pub const TRUST_ANCHOR_FILE: &str = "ca.crt";
pub const ISSUER_CERT_FILE: &str = "issuer.crt";
pub const ISSUER_KEY_FILE: &str = "issuer.key";
pub const TOKEN_KEY_FILE: &str = "token.key";

/// Linkerd's names, so that existing tooling recognises the certificates.
pub const TRUST_ANCHOR_NAME: &str = "root.linkerd.cluster.local";
pub const ISSUER_NAME: &str = "identity.linkerd.cluster.local";

/// Ten years: the anchor is in every proxy's configuration, so replacing it
/// is the expensive operation.
pub const DEFAULT_TRUST_ANCHOR_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// One year, Linkerd's default for the issuer.
pub const DEFAULT_ISSUER_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Certificates start this long before they are made, so a peer whose
/// clock is a little behind accepts them (Linkerd allows 20 s of skew).
pub(crate) const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(20);

/// The paths of a CA directory's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    dir: PathBuf,
}

/// The three PEM texts that make an issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaPems {
    pub trust_anchor: String,
    pub issuer_cert: String,
    pub issuer_key: String,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub trust_anchor_lifetime: Duration,
    pub issuer_lifetime: Duration,
    /// Replace existing files (the token key is always kept if present, so
    /// tokens already handed out stay valid).
    pub force: bool,
}

/// Which file a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaPart {
    TrustAnchor,
    IssuerCert,
    IssuerKey,
    TokenKey,
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{} already exists; refusing to replace it without force", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{part}: {reason}")]
    Invalid { part: CaPart, reason: String },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A checked CA: what [`validate`] and the issuer share.
pub(crate) struct Checked {
    pub anchors: Vec<CertInfo>,
    pub issuer_der: CertificateDer<'static>,
    pub issuer: CertInfo,
    pub key: KeyPair,
}

// === impl CaFiles ===

impl CaFiles {
    pub fn new(dir: impl Into<PathBuf>) -> CaFiles {
        CaFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn trust_anchor(&self) -> PathBuf {
        self.dir.join(TRUST_ANCHOR_FILE)
    }

    pub fn issuer_cert(&self) -> PathBuf {
        self.dir.join(ISSUER_CERT_FILE)
    }

    pub fn issuer_key(&self) -> PathBuf {
        self.dir.join(ISSUER_KEY_FILE)
    }

    pub fn token_key(&self) -> PathBuf {
        self.dir.join(TOKEN_KEY_FILE)
    }

    pub fn path(&self, part: CaPart) -> PathBuf {
        match part {
            CaPart::TrustAnchor => self.trust_anchor(),
            CaPart::IssuerCert => self.issuer_cert(),
            CaPart::IssuerKey => self.issuer_key(),
            CaPart::TokenKey => self.token_key(),
        }
    }

    /// Reads the three PEM files.
    pub fn read_pems(&self) -> Result<CaPems, CaError> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| CaError::Io { path, source })
        };
        Ok(CaPems {
            trust_anchor: read(self.trust_anchor())?,
            issuer_cert: read(self.issuer_cert())?,
            issuer_key: read(self.issuer_key())?,
        })
    }
}

// === impl CaPart ===

impl CaPart {
    /// `the issuer certificate`.
    pub fn what(self) -> &'static str {
        match self {
            CaPart::TrustAnchor => "the trust anchor",
            CaPart::IssuerCert => "the issuer certificate",
            CaPart::IssuerKey => "the issuer key",
            CaPart::TokenKey => "the token key",
        }
    }

    /// Its file in a CA directory.
    pub fn file_name(self) -> &'static str {
        match self {
            CaPart::TrustAnchor => TRUST_ANCHOR_FILE,
            CaPart::IssuerCert => ISSUER_CERT_FILE,
            CaPart::IssuerKey => ISSUER_KEY_FILE,
            CaPart::TokenKey => TOKEN_KEY_FILE,
        }
    }
}

impl fmt::Display for CaPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what(), self.file_name())
    }
}

// === impl GenerateOptions ===

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            trust_anchor_lifetime: DEFAULT_TRUST_ANCHOR_LIFETIME,
            issuer_lifetime: DEFAULT_ISSUER_LIFETIME,
            force: false,
        }
    }
}

// === impl CaPems ===

impl CaPems {
    /// Parses everything and checks that the pieces fit together: the
    /// anchors and the issuer are CAs, the issuer is signed by one of the
    /// anchors, and the key is the issuer's. Validity dates are not checked.
    pub(crate) fn check(&self) -> Result<Checked, CaError> {
        let invalid = |part, reason: String| CaError::Invalid { part, reason };
        let anchor_ders = parse_pem_certs(self.trust_anchor.as_bytes())
            .map_err(|e| invalid(CaPart::TrustAnchor, e.to_string()))?;
        let mut anchors = Vec::with_capacity(anchor_ders.len());
        for der in &anchor_ders {
            let (_, cert) = X509Certificate::from_der(der)
                .map_err(|e| invalid(CaPart::TrustAnchor, format!("not valid X.509: {e}")))?;
            if !cert.is_ca() {
                return Err(invalid(
                    CaPart::TrustAnchor,
                    format!(
                        "{} is not a CA certificate (basicConstraints does not say CA:TRUE)",
                        cert.subject()
                    ),
                ));
            }
            anchors.push(cert);
        }

        let issuer_ders = parse_pem_certs(self.issuer_cert.as_bytes())
            .map_err(|e| invalid(CaPart::IssuerCert, e.to_string()))?;
        if issuer_ders.len() > 1 {
            return Err(invalid(
                CaPart::IssuerCert,
                format!(
                    "holds {} certificates; it must hold only the issuer's, signed directly by the trust anchor",
                    issuer_ders.len()
                ),
            ));
        }
        let issuer_der = issuer_ders[0].clone();
        let (_, issuer) = X509Certificate::from_der(&issuer_der)
            .map_err(|e| invalid(CaPart::IssuerCert, format!("not valid X.509: {e}")))?;
        if !issuer.is_ca() {
            return Err(invalid(
                CaPart::IssuerCert,
                format!(
                    "{} is not a CA certificate (basicConstraints does not say CA:TRUE), so it cannot sign workload certificates",
                    issuer.subject()
                ),
            ));
        }
        if let Ok(Some(ku)) = issuer.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(invalid(
                CaPart::IssuerCert,
                format!(
                    "{}'s key usage does not allow signing certificates (keyCertSign)",
                    issuer.subject()
                ),
            ));
        }
        let signed_by_anchor = anchors.iter().any(|a| {
            a.subject().as_raw() == issuer.issuer().as_raw()
                && issuer.verify_signature(Some(a.public_key())).is_ok()
        });
        if !signed_by_anchor {
            let names: Vec<String> = anchors.iter().map(|a| a.subject().to_string()).collect();
            return Err(invalid(
                CaPart::IssuerCert,
                format!(
                    "{} is not signed by the trust anchor: its issuer is {}, the trust anchor is {}",
                    issuer.subject(),
                    issuer.issuer(),
                    names.join(", ")
                ),
            ));
        }

        let key_der = PrivateKeyDer::from_pem_slice(self.issuer_key.as_bytes()).map_err(|e| {
            invalid(
                CaPart::IssuerKey,
                format!(
                    "no private key found (expected a PEM PRIVATE KEY or EC PRIVATE KEY block): {e}"
                ),
            )
        })?;
        let key = KeyPair::try_from(&key_der).map_err(|e| {
            invalid(
                CaPart::IssuerKey,
                format!("not a supported private key (ECDSA P-256/P-384, Ed25519 or RSA): {e}"),
            )
        })?;
        if key.public_key_raw() != issuer.public_key().subject_public_key.data.as_ref() {
            return Err(invalid(
                CaPart::IssuerKey,
                format!(
                    "the key does not belong to the issuer certificate ({})",
                    issuer.subject()
                ),
            ));
        }

        Ok(Checked {
            anchors: anchors.iter().map(CertInfo::from_x509).collect(),
            issuer: CertInfo::from_x509(&issuer),
            issuer_der,
            key,
        })
    }
}

// === impl Checked ===

impl Checked {
    /// Every certificate is valid at `now`.
    pub(crate) fn check_validity(&self, now: SystemTime) -> Result<(), CaError> {
        let anchors = self.anchors.iter().map(|a| (CaPart::TrustAnchor, a));
        for (part, info) in anchors.chain([(CaPart::IssuerCert, &self.issuer)]) {
            if now >= info.not_after {
                return Err(CaError::Invalid {
                    part,
                    reason: format!(
                        "{} expired at {}",
                        info.subject,
                        crate::format_time(info.not_after)
                    ),
                });
            }
            if now < info.not_before {
                return Err(CaError::Invalid {
                    part,
                    reason: format!(
                        "{} is not valid before {} (is the clock right?)",
                        info.subject,
                        crate::format_time(info.not_before)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Checks that `pems` make a usable issuer at `now`: everything [`import`]
/// requires.
pub fn validate(pems: &CaPems, now: SystemTime) -> Result<(), CaError> {
    pems.check()?.check_validity(now)
}

/// Writes a new ECDSA P-256 trust anchor (CN `root.linkerd.cluster.local`)
/// and issuer (CN `identity.linkerd.cluster.local`, path length 0) into
/// `dir`, and a token key unless one exists.
pub fn generate(dir: &Path, opts: &GenerateOptions) -> Result<(), CaError> {
    let files = CaFiles::new(dir);
    refuse_existing(&files, opts.force)?;
    let now = SystemTime::now();

    let anchor_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let anchor_params = ca_params(
        TRUST_ANCHOR_NAME,
        BasicConstraints::Unconstrained,
        now,
        opts.trust_anchor_lifetime,
    );
    let anchor = anchor_params.self_signed(&anchor_key)?;
    let signer = rcgen::Issuer::new(anchor_params, anchor_key);

    let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut issuer_params = ca_params(
        ISSUER_NAME,
        BasicConstraints::Constrained(0),
        now,
        opts.issuer_lifetime,
    );
    issuer_params.use_authority_key_identifier_extension = true;
    let issuer = issuer_params.signed_by(&issuer_key, &signer)?;

    write_files(
        &files,
        &CaPems {
            trust_anchor: anchor.pem(),
            issuer_cert: issuer.pem(),
            issuer_key: issuer_key.serialize_pem(),
        },
    )
}

/// Validates `pems` (see [`validate`]) and writes them into `dir`, with a
/// token key unless one exists.
pub fn import(dir: &Path, pems: &CaPems, force: bool) -> Result<(), CaError> {
    validate(pems, SystemTime::now())?;
    let files = CaFiles::new(dir);
    refuse_existing(&files, force)?;
    write_files(&files, pems)
}

/// Loads `<dir>/token.key`, making one first if there is none (a directory
/// written by hand, or by an older version).
pub fn load_or_create_token_key(dir: &Path) -> Result<crate::TokenKey, CaError> {
    let path = CaFiles::new(dir).token_key();
    if !path.exists() {
        write_atomic(&path, crate::TokenKey::generate().secret_bytes(), 0o600)?;
    }
    crate::TokenKey::load(&path).map_err(|e| CaError::Invalid {
        part: CaPart::TokenKey,
        reason: e.to_string(),
    })
}

fn refuse_existing(files: &CaFiles, force: bool) -> Result<(), CaError> {
    if force {
        return Ok(());
    }
    for part in [CaPart::TrustAnchor, CaPart::IssuerCert, CaPart::IssuerKey] {
        let path = files.path(part);
        if path.exists() {
            return Err(CaError::Exists(path));
        }
    }
    Ok(())
}

/// The key first and the anchor last: a reloading issuer that sees a new
/// `ca.crt` then finds the issuer that goes with it.
fn write_files(files: &CaFiles, pems: &CaPems) -> Result<(), CaError> {
    let dir = files.dir();
    std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomic(&files.issuer_key(), pems.issuer_key.as_bytes(), 0o600)?;
    write_atomic(&files.issuer_cert(), pems.issuer_cert.as_bytes(), 0o644)?;
    write_atomic(&files.trust_anchor(), pems.trust_anchor.as_bytes(), 0o644)?;
    let token_key = files.token_key();
    if !token_key.exists() {
        let key = crate::TokenKey::generate();
        write_atomic(&token_key, key.secret_bytes(), 0o600)?;
    }
    Ok(())
}

/// A temporary file created with `mode`, then renamed over `path`, so that
/// readers see the old file or the new one, and a key is never readable by
/// others, even briefly.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn ca_params(
    name: &str,
    constraints: BasicConstraints,
    now: SystemTime,
    lifetime: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset_date_time(now - CLOCK_SKEW_ALLOWANCE);
    params.not_after = offset_date_time(now + lifetime);
    params.serial_number = Some(random_serial());
    params
}

/// 16 random bytes, positive (top bit clear) as RFC 5280 asks of a serial
/// number, and with a non-zero first byte so that DER keeps all 16.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    crate::token::fill_random(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
