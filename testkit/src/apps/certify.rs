//! `strand-testapp certify`: one `Identity/Certify` call over TLS, as a
//! proxy makes it, with ways to get it wrong on purpose (someone else's
//! token, a CSR for another name, a malformed CSR). Prints the outcome.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;

/// `strand-testapp certify` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct CertifyArgs {
    /// The identity service.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The identity service's TLS name.
    #[arg(
        long,
        default_value = "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local"
    )]
    pub server_name: String,
    /// Trust anchors (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The identity asked for.
    #[arg(long)]
    pub identity: String,
    /// The token file sent as proof.
    #[arg(long)]
    pub token_file: PathBuf,
    /// The name the CSR carries (default: the identity asked for).
    #[arg(long)]
    pub csr_name: Option<String>,
    /// Send bytes that are not a CSR.
    #[arg(long)]
    pub garbage_csr: bool,
}

/// What `certify` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CertifySummary {
    pub ok: bool,
    /// The gRPC status code name when refused.
    pub code: Option<String>,
    pub message: String,
}

pub async fn run(args: &CertifyArgs) -> anyhow::Result<CertifySummary> {
    let pem = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(args.server_name.clone())?;
    let addr = args.addr;
    let connector = tower_service_fn(move || {
        let (tls, name) = (tls.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://identity.invalid")
        .connect_with_connector(connector)
        .await
        .context("connecting to the identity service")?;
    let csr = if args.garbage_csr {
        b"this is not a certificate signing request".to_vec()
    } else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let name = args
            .csr_name
            .clone()
            .unwrap_or_else(|| args.identity.clone());
        rcgen::CertificateParams::new(vec![name])?
            .serialize_request(&key)?
            .der()
            .to_vec()
    };
    let token = std::fs::read(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?;
    let res = IdentityClient::new(channel)
        .certify(CertifyRequest {
            identity: args.identity.clone(),
            token,
            certificate_signing_request: csr,
        })
        .await;
    Ok(match res {
        Ok(_) => CertifySummary {
            ok: true,
            code: None,
            message: "certified".into(),
        },
        Err(status) => CertifySummary {
            ok: false,
            code: Some(format!("{:?}", status.code())),
            message: status.message().to_string(),
        },
    })
}

/// A tonic connector from a closure.
fn tower_service_fn<F, Fut, T>(f: F) -> ServiceFn<F>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, T> tower_service::Service<http::Uri> for ServiceFn<F>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    type Response = T;
    type Error = std::io::Error;
    type Future = Fut;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Fut {
        (self.0)()
    }
}
