//! Reading certificates: PEM bundles, and the few fields people ask about
//! (`strand check`, `strand identity`).

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name, e.g. `CN=root.linkerd.cluster.local`.
    pub subject: String,
    /// DNS names, then any other subject alternative names as text.
    pub sans: Vec<String>,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Whether basicConstraints says it may sign certificates.
    pub is_ca: bool,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("the PEM is not valid: {0}")]
    Pem(String),
    #[error("the certificate is not valid X.509: {0}")]
    X509(String),
}

// === impl CertInfo ===

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::X509(e.to_string()))?;
        Ok(Self::from_x509(&cert))
    }

    pub(crate) fn from_x509(cert: &X509Certificate<'_>) -> CertInfo {
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                sans.push(general_name(name));
            }
        }
        let validity = cert.validity();
        CertInfo {
            subject: cert.subject().to_string(),
            sans,
            issuer: cert.issuer().to_string(),
            not_before: system_time(validity.not_before.timestamp()),
            not_after: system_time(validity.not_after.timestamp()),
            is_ca: cert.is_ca(),
        }
    }

    /// Time left until `not_after`; zero once expired.
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }
}

/// A subject alternative name as people write it: `web.example`,
/// `IP:10.42.0.7`, `URI:spiffe://...`.
pub(crate) fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(n) => (*n).to_string(),
        GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
            Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(*b) {
                Ok(v6) => format!("IP:{}", std::net::Ipv6Addr::from(v6)),
                Err(_) => format!("IP:{b:02x?}"),
            },
        },
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        other => other.to_string(),
    }
}

/// Every `CERTIFICATE` block of a PEM text, in order. Other blocks are skipped.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(certs)
}

/// The first certificate of a PEM text.
pub fn cert_info(pem: &[u8]) -> Result<CertInfo, CertError> {
    let certs = parse_pem_certs(pem)?;
    CertInfo::from_der(&certs[0])
}

/// Every certificate of a PEM text (a trust-anchor bundle may hold several).
pub fn cert_infos(pem: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    parse_pem_certs(pem)?
        .iter()
        .map(|der| CertInfo::from_der(der))
        .collect()
}

/// When the first certificate of a PEM text expires.
pub fn cert_expiry(pem: &[u8]) -> Result<SystemTime, CertError> {
    cert_info(pem).map(|i| i.not_after)
}

/// `2026-08-01T12:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let secs = unix_seconds(t);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// `23h59m`, `59d`, `45s`: the two largest units of a duration.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m{secs}s"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

pub(crate) fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn offset_date_time(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds(t))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
