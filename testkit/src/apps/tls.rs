//! `strand-testapp tls` and `tls-client`: an application that does its own
//! TLS, for testing that a proxy passes it through untouched (SNI-based
//! routing, no double encryption). The server makes a throwaway CA and leaf
//! certificate at start and writes the CA for the client to trust.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Deadline, accept, bind_and_announce};

/// `strand-testapp tls` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TlsArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// DNS name the server certificate is issued for.
    #[arg(long)]
    pub name: String,
    /// Where to write the CA certificate (PEM) clients should trust.
    #[arg(long)]
    pub ca_out: PathBuf,
}

/// `strand-testapp tls-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TlsClientArgs {
    /// `HOST:PORT` to connect to.
    #[arg(long)]
    pub connect: String,
    /// Server name to send (SNI) and verify the certificate against.
    #[arg(long)]
    pub sni: String,
    /// CA certificate (PEM) to trust.
    #[arg(long)]
    pub ca: PathBuf,
    /// Line to send.
    #[arg(long, default_value = "hello")]
    pub send: String,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// What `tls-client` prints.
#[derive(Clone, Debug, Serialize)]
pub struct TlsClientSummary {
    /// Always true: a failed handshake or exchange is an error instead.
    pub ok: bool,
    /// The server's line, `tls-echo: <sent>`.
    pub reply: String,
    /// For example `TLSv1_3`.
    pub protocol_version: String,
    /// For example `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// Key exchange group, for example `X25519MLKEM768`.
    pub kx_group: String,
}

/// A CA and a leaf certificate signed by it.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The leaf certificate.
    pub cert: CertificateDer<'static>,
    /// The leaf's private key (PKCS#8 DER).
    pub key: PrivatePkcs8KeyDer<'static>,
}

/// Makes a CA and a leaf certificate for `dns_name`.
pub fn generate_pki(dns_name: &str) -> anyhow::Result<TestPki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "strand-testapp CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![dns_name.to_string()])?.signed_by(&leaf_key, &ca)?;
    Ok(TestPki {
        ca_pem: ca.pem(),
        cert: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    })
}

/// aws-lc-rs with the hybrid post-quantum group preferred, as strand's own
/// TLS does (the workspace builds rustls without `prefer-post-quantum`, which
/// would otherwise put X25519 first).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..default_provider()
    })
}

/// A server config presenting `pki`'s leaf certificate.
pub fn server_config(pki: &TestPki) -> anyhow::Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )?;
    Ok(Arc::new(config))
}

/// Makes the certificates, writes the CA, binds, announces and serves
/// until killed.
pub async fn main(args: TlsArgs) -> anyhow::Result<()> {
    let pki = generate_pki(&args.name)?;
    write_atomically(&args.ca_out, pki.ca_pem.as_bytes())?;
    let config = server_config(&pki)?;
    let listener = bind_and_announce(args.listen).await?;
    serve(listener, config).await
}

/// Written whole or not at all, so a test polling for the file never reads
/// half a certificate.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Serves TLS on `listener`: reads one line and answers `tls-echo: <line>`.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, peer) = accept(&listener).await;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = echo_line(acceptor, stream).await {
                tracing::debug!(%peer, "tls connection ended: {e:#}");
            }
        });
    }
}

async fn echo_line(acceptor: TlsAcceptor, stream: TcpStream) -> anyhow::Result<()> {
    let mut tls = BufReader::new(acceptor.accept(stream).await?);
    let mut line = String::new();
    tls.read_line(&mut line).await?;
    let reply = format!("tls-echo: {}\n", line.trim_end_matches(['\r', '\n']));
    tls.write_all(reply.as_bytes()).await?;
    tls.shutdown().await?;
    Ok(())
}

/// Connects, verifies the server against `--ca`, sends a line and reads the
/// reply.
pub async fn client(args: &TlsClientArgs) -> anyhow::Result<TlsClientSummary> {
    args.deadline.run("tls-client", exchange(args)).await
}

async fn exchange(args: &TlsClientArgs) -> anyhow::Result<TlsClientSummary> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca)
        .with_context(|| format!("reading {}", args.ca.display()))?
    {
        roots.add(cert.with_context(|| format!("parsing {}", args.ca.display()))?)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        ServerName::try_from(args.sni.clone()).with_context(|| format!("--sni {:?}", args.sni))?;
    let tcp = TcpStream::connect(&args.connect)
        .await
        .with_context(|| format!("connecting to {}", args.connect))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let (_, conn) = tls.get_ref();
    let protocol_version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let kx_group = conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default();

    let mut tls = BufReader::new(tls);
    tls.write_all(format!("{}\n", args.send).as_bytes()).await?;
    tls.flush().await?;
    let mut reply = String::new();
    tls.read_line(&mut reply)
        .await
        .context("reading the reply")?;
    if !reply.ends_with('\n') {
        bail!("connection closed before a full reply line (got {reply:?})");
    }
    let _ = tls.shutdown().await;
    Ok(TlsClientSummary {
        ok: true,
        reply: reply.trim_end_matches(['\r', '\n']).to_string(),
        protocol_version,
        cipher,
        kx_group,
    })
}
