//! Obtaining and renewing the certificate through `Identity/Certify`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::atomic::AtomicU64;
use tokio::net::TcpStream;

use super::{IdentityError, LocalIdentity, tls};
use crate::config::IdentityConfig;

/// Renew when this fraction of the certificate's lifetime has passed.
const REFRESH_AT: f64 = 0.7;
/// Bounds on the wait before a renewal.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);
/// Retry backoff after a failed request: doubling from the first to the
/// last, each wait jittered by up to half.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long one Certify call (connect included) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's identity metrics.
#[derive(Clone, Debug, Default)]
pub struct IdentityMetrics {
    /// Unix time at which the current certificate expires.
    expiry: Gauge<f64, AtomicU64>,
    refreshes: Counter,
    failures: Counter,
}

impl IdentityMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "identity_cert_expiration_timestamp_seconds",
            "Time when this proxy's current mTLS identity certificate expires (seconds since the Unix epoch)",
            self.expiry.clone(),
        );
        registry.register(
            "identity_cert_refresh",
            "Certificates obtained from the identity service",
            self.refreshes.clone(),
        );
        registry.register(
            "identity_cert_refresh_failure",
            "Failed requests to the identity service",
            self.failures.clone(),
        );
    }
}

/// A DER CSR for `name` signed by the proxy's key.
pub fn csr(name: &str, key: &rcgen::KeyPair) -> Result<Vec<u8>, IdentityError> {
    let params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| IdentityError::LocalName(format!("{name}: {e}")))?;
    let csr = params
        .serialize_request(key)
        .map_err(|e| IdentityError::Key(format!("building the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// Obtains a certificate, then renews it for ever.
pub async fn run(
    identity: Arc<LocalIdentity>,
    config: IdentityConfig,
    csr: Vec<u8>,
    metrics: IdentityMetrics,
) {
    let roots = identity.roots.clone();
    let connector = match tls::control_client_config(&roots) {
        Ok(c) => TlsConnect {
            addr: config.svc_addr,
            server_name: match ServerName::try_from(config.svc_name.clone()) {
                Ok(n) => n,
                Err(_) => {
                    tracing::error!(name = %config.svc_name, "STRAND_PROXY_IDENTITY_SVC_NAME is not a DNS-like name; no certificate will be requested");
                    return;
                }
            },
            config: Arc::new(c),
            timeout: REQUEST_TIMEOUT,
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot build TLS settings for the identity service");
            return;
        }
    };
    let endpoint = tonic::transport::Endpoint::from_static("http://identity.invalid")
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT);
    let channel = endpoint.connect_with_connector_lazy(connector);
    let mut client = IdentityClient::new(channel);
    let mut backoff = BACKOFF_FIRST;
    loop {
        let wait = match certify(&mut client, &identity, &config, &csr).await {
            Ok(expiry) => {
                metrics.refreshes.inc();
                let secs = expiry
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                metrics.expiry.set(secs);
                backoff = BACKOFF_FIRST;
                let wait = refresh_in(expiry, SystemTime::now());
                tracing::info!(identity = %identity.name, expires_in = ?expiry.duration_since(SystemTime::now()).unwrap_or_default(), renew_in = ?wait, "certified");
                wait
            }
            Err(e) => {
                metrics.failures.inc();
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                match identity.expiry() {
                    Some(expiry) => {
                        tracing::warn!(error = %e, retry_in = ?wait, expires_in = ?expiry.duration_since(SystemTime::now()).unwrap_or_default(), "certificate renewal failed; still serving with the current certificate")
                    }
                    None => {
                        tracing::warn!(error = %e, retry_in = ?wait, "cannot obtain a certificate yet; not ready")
                    }
                }
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One `Certify` call; installs the certificate and returns its expiry.
async fn certify(
    client: &mut IdentityClient<tonic::transport::Channel>,
    identity: &LocalIdentity,
    config: &IdentityConfig,
    csr: &[u8],
) -> Result<SystemTime, String> {
    // Re-read on every request: the token may be rotated on disk.
    let token = tokio::fs::read(&config.token_file)
        .await
        .map_err(|e| format!("reading the token {}: {e}", config.token_file.display()))?;
    let rsp = client
        .certify(CertifyRequest {
            identity: identity.name.to_string(),
            token,
            certificate_signing_request: csr.to_vec(),
        })
        .await
        .map_err(|s| {
            format!(
                "the identity service at {} refused: {} ({:?})",
                config.svc_addr,
                s.message(),
                s.code()
            )
        })?
        .into_inner();
    let expiry = rsp
        .valid_until
        .and_then(|t| {
            let secs = u64::try_from(t.seconds).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::new(secs, u32::try_from(t.nanos).ok()?))
        })
        .ok_or("the identity service's answer has no valid_until")?;
    let leaf = CertificateDer::from(rsp.leaf_certificate);
    let intermediates = rsp
        .intermediate_certificates
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    identity.install(leaf, intermediates, expiry)?;
    Ok(expiry)
}

/// When to renew a certificate that expires at `expiry`.
pub fn refresh_in(expiry: SystemTime, now: SystemTime) -> Duration {
    let lifetime = expiry.duration_since(now).unwrap_or_default();
    lifetime.mul_f64(REFRESH_AT).clamp(MIN_REFRESH, MAX_REFRESH)
}

/// `d` less up to half of it, so that proxies started together spread
/// their retries.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(1.0 - fastrand::f64() / 2.0)
}

/// Connects to the identity service over TLS (tonic's connector).
#[derive(Clone)]
struct TlsConnect {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect = async {
                let tcp = TcpStream::connect(this.addr).await?;
                let _ = tcp.set_nodelay(true);
                tokio_rustls::TlsConnector::from(this.config)
                    .connect(this.server_name, tcp)
                    .await
            };
            match tokio::time::timeout(this.timeout, connect).await {
                Ok(res) => res.map(TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", this.addr),
                )),
            }
        })
    }
}
