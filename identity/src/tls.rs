//! Serving the identity service over TLS: the token must not cross the
//! bridge in clear. The service certifies itself, as
//! `linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local`,
//! from its own issuer at start, again at 70% of the certificate's life, and
//! whenever the issuer is replaced. Proxies verify it against the trust
//! anchor; clients do not present certificates.
//!
//! ```text
//!  TcpListener ─accept─▶ handshake task (timeout) ─▶ channel ─▶ tonic serve_with_incoming
//!                            ▲ ServerCertificate (resolver, swapped on renewal)
//! ```

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use strand_controller_core::IdentityName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::issuer::Issuer;
use crate::rejection::Rejection;
use crate::reload::ReloadingIssuer;
use crate::service::IdentityService;

/// A client has this long to finish its handshake; bounds what a silent
/// connection costs.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed renewal, try again this soon (the issuer may come back).
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// Renew when this share of the certificate's life has passed, as proxies do.
const RENEW_AT: f64 = 0.7;

/// Handshaken connections waiting for the server to take them; past this,
/// their handshake tasks wait too.
const ACCEPT_BACKLOG: usize = 128;

/// The service's own certificate, for rustls to present; replaced on
/// renewal without touching open connections.
#[derive(Debug)]
pub struct ServerCertificate {
    name: IdentityName,
    /// The certificate and when it expires.
    current: RwLock<Option<(Arc<CertifiedKey>, SystemTime)>>,
}

/// One accepted TLS connection; tells tonic the peer's address so that
/// `Request::remote_addr` works.
pub struct TlsConn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

// === impl ServerCertificate ===

impl ServerCertificate {
    pub fn new(name: IdentityName) -> Arc<ServerCertificate> {
        Arc::new(ServerCertificate {
            name,
            current: RwLock::new(None),
        })
    }

    pub fn name(&self) -> &IdentityName {
        &self.name
    }

    pub fn is_ready(&self) -> bool {
        self.valid_until().is_some()
    }

    /// When the certificate in use expires.
    pub fn valid_until(&self) -> Option<SystemTime> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, until)| *until)
    }

    /// A new key and a certificate for it from `issuer`, through the same
    /// CSR checks as any workload's. Returns when it expires.
    pub fn renew(&self, issuer: &Issuer, lifetime: Duration) -> Result<SystemTime, Rejection> {
        let issued = issuer.issue_keyed(&self.name, lifetime)?;
        let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&issued.key)
            .map_err(|e| Rejection::issuer_unavailable(format!("rustls refuses the key: {e}")))?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some((
            Arc::new(CertifiedKey::new(issued.chain, signing)),
            issued.valid_until,
        ));
        Ok(issued.valid_until)
    }

    /// Keeps the certificate fresh: renews at 70% of its life and when the
    /// issuer is replaced; retries failures every few seconds.
    pub async fn maintain(self: Arc<Self>, issuer: ReloadingIssuer, lifetime: Duration) {
        let mut updates = issuer.subscribe();
        let mut renew = !self.is_ready();
        loop {
            let current = updates.borrow_and_update().clone();
            let ok = !renew
                || match self.renew(&current, lifetime) {
                    Ok(until) => {
                        tracing::debug!(
                            name = %self.name,
                            valid_until = %crate::format_time(until),
                            "identity service certificate renewed"
                        );
                        true
                    }
                    Err(e) => {
                        tracing::warn!(name = %self.name, "cannot certify the identity service itself: {e}");
                        false
                    }
                };
            let wait = match self.valid_until() {
                Some(until) if ok => until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .mul_f64(RENEW_AT)
                    .max(Duration::from_secs(1)),
                _ => RENEW_RETRY,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                res = updates.changed() => {
                    if res.is_err() {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            renew = true;
        }
    }

    /// A rustls server configuration presenting this certificate, speaking
    /// HTTP/2 (ALPN `h2`), not asking for client certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(key, _)| key.clone())
    }
}

/// Serves `service` over TLS on `listener` until `shutdown` resolves,
/// presenting `cert`, which is issued before the first connection is taken
/// and renewed from then on (see the module docs).
pub async fn serve(
    listener: TcpListener,
    service: IdentityService,
    cert: Arc<ServerCertificate>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let config = cert.server_config()?;
    if !cert.is_ready()
        && let Err(e) = cert.renew(&service.issuer().current(), service.lifetime())
    {
        tracing::warn!(name = %cert.name(), "cannot certify the identity service itself: {e}");
    }
    let maintaining = tokio::spawn(
        cert.clone()
            .maintain(service.issuer().clone(), service.lifetime()),
    );
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    let accepting = tokio::spawn(accept(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
        tx,
    ));
    let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (Ok::<_, io::Error>(c), rx))
    });
    let res = tonic::transport::Server::builder()
        .add_service(service.server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accepting.abort();
    maintaining.abort();
    Ok(res?)
}

/// Accepts connections and handshakes each in a task of its own, so a slow
/// client holds up no one, until the server stops taking connections.
async fn accept(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<TlsConn>,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "identity accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(io)) => {
                    let info = TcpConnectInfo {
                        local_addr: local,
                        remote_addr: Some(remote),
                    };
                    let _ = tx.send(TlsConn { io, info }).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, "identity TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%remote, "identity TLS handshake timed out"),
            }
        });
    }
}

// === impl TlsConn ===

impl TlsConn {
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
