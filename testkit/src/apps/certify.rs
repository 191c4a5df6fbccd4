//! `strand-testapp certify`: one `Identity/Certify` call over TLS, as a
//! proxy makes it, with ways to get it wrong on purpose (someone else's
//! token, a CSR for another name, a malformed CSR). Prints the outcome.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use linkerd2_proxy_api::identity::CertifyRequest;
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
    let mut client =
        strand_identity::client::connect(args.addr, &pem, &args.server_name, None).await?;
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
    let res = client
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
