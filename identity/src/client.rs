//! A client of the identity service, reached as a proxy reaches it: TLS
//! verified against the trust anchors for the service's own name. For tools
//! and tests that send `Certify` requests (the proxy has its own, with its
//! mesh TLS settings and timeouts). And [`mesh_channel`]: gRPC to a proxy
//! over mTLS, as the tap client speaks to proxies' control ports.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the trust anchors: {0}")]
    TrustAnchors(String),
    #[error("{0:?} is not a DNS-like server name")]
    ServerName(String),
    #[error("the client certificate: {0}")]
    ClientCert(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
}

/// Connects to the identity service at `addr`, verifying it against
/// `trust_anchors_pem` as `server_name`; from `source` when given (the
/// address the service sees, which tokens are bound to).
pub async fn connect(
    addr: SocketAddr,
    trust_anchors_pem: &[u8],
    server_name: &str,
    source: Option<IpAddr>,
) -> Result<IdentityClient<tonic::transport::Channel>, ClientError> {
    let mut config = tls_builder(trust_anchors_pem)?.with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel = channel(addr, config, server_name, source).await?;
    Ok(IdentityClient::new(channel))
}

/// A gRPC channel to the proxy at `addr` whose identity is `server_name`,
/// over TLS 1.3 presenting `chain` (leaf first) and `key`, as one meshed
/// proxy speaks to another: no ALPN (a proxy's mesh TLS takes none from
/// clients other than proxies).
pub async fn mesh_channel(
    addr: SocketAddr,
    trust_anchors_pem: &[u8],
    server_name: &str,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<tonic::transport::Channel, ClientError> {
    let config = tls_builder(trust_anchors_pem)?
        .with_client_auth_cert(chain, key)
        .map_err(|e| ClientError::ClientCert(e.to_string()))?;
    channel(addr, config, server_name, None).await
}

/// TLS settings trusting `trust_anchors_pem`, before the client's own
/// certificate is chosen.
fn tls_builder(
    trust_anchors_pem: &[u8],
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, ClientError>
{
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::parse_pem_certs(trust_anchors_pem)
        .map_err(|e| ClientError::TrustAnchors(e.to_string()))?
    {
        roots
            .add(der)
            .map_err(|e| ClientError::TrustAnchors(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TrustAnchors(e.to_string()))?
        .with_root_certificates(roots))
}

async fn channel(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    server_name: &str,
    source: Option<IpAddr>,
) -> Result<tonic::transport::Channel, ClientError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ClientError::ServerName(server_name.to_string()))?;
    let connector = Connector {
        source,
        server: addr,
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
    };
    tonic::transport::Endpoint::from_static("http://mesh.invalid")
        .connect_with_connector(connector)
        .await
        .map_err(|source| ClientError::Connect { addr, source })
}

/// tonic's connector: TCP (from `source`, any port), then TLS.
#[derive(Clone)]
struct Connector {
    source: Option<IpAddr>,
    server: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = match this.source {
                Some(ip) => {
                    let socket = if ip.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    socket.bind(SocketAddr::new(ip, 0))?;
                    socket.connect(this.server).await?
                }
                None => TcpStream::connect(this.server).await?,
            };
            let tls = this.tls.connect(this.name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
