//! A client of the identity service, reached as a proxy reaches it: TLS
//! verified against the trust anchors for the service's own name. For tools
//! and tests that send `Certify` requests (the proxy has its own, with its
//! mesh TLS settings and timeouts).

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
    #[error("connecting to the identity service at {addr}: {source}")]
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
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::parse_pem_certs(trust_anchors_pem)
        .map_err(|e| ClientError::TrustAnchors(e.to_string()))?
    {
        roots
            .add(der)
            .map_err(|e| ClientError::TrustAnchors(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TrustAnchors(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ClientError::ServerName(server_name.to_string()))?;
    let connector = Connector {
        source,
        server: addr,
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
    };
    let channel = tonic::transport::Endpoint::from_static("http://identity.invalid")
        .connect_with_connector(connector)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    Ok(IdentityClient::new(channel))
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
