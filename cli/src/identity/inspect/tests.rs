//! The probe against a TLS server standing in for a proxy: a certificate
//! from a generated CA, served on 127.0.0.1.

use super::*;
use strand_controller_core::IdentityName;
use strand_identity::{GenerateOptions, Issuer, ServerCertificate};

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca(tag: &str) -> (Dir, Issuer, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("strand-cli-inspect-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    strand_identity::generate(&dir, &GenerateOptions::default()).expect("generate");
    let issuer = Issuer::load(&dir).expect("issuer");
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
    (Dir(dir), issuer, ca)
}

/// Accepts TLS connections presenting a certificate for `name` until dropped.
async fn proxy(issuer: &Issuer, name: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let cert = ServerCertificate::new(IdentityName::new(name));
    cert.renew(issuer, Duration::from_secs(3600))
        .expect("certified");
    let config = cert.server_config().expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_good_chain_verifies_and_is_shown() {
    let (_dir, issuer, ca) = ca("good");
    let (addr, task) = proxy(&issuer, ID).await;
    let probe = probe(addr, ID, &ca).await.expect("probe");
    assert_eq!(probe.error, None);
    assert_eq!(probe.chain.len(), 2, "leaf and issuer");
    let leaf = CertInfo::from_der(&probe.chain[0]).expect("leaf");
    assert_eq!(leaf.sans, vec![ID.to_string()]);
    let issuer_info = CertInfo::from_der(&probe.chain[1]).expect("issuer");
    assert_eq!(issuer_info.subject, "CN=identity.linkerd.cluster.local");
    task.abort();
}

#[tokio::test]
async fn a_wrong_name_or_anchor_is_reported_with_the_chain() {
    let (_dir, issuer, anchors) = ca("wrong");
    let other = "db.default.serviceaccount.identity.linkerd.cluster.local";
    let (addr, task) = proxy(&issuer, other).await;
    let probe = probe(addr, ID, &anchors).await.expect("probe");
    let err = probe.error.expect("not verified");
    assert!(err.to_lowercase().contains("name"), "{err}");
    assert_eq!(probe.chain.len(), 2, "still shown");

    let (_dir2, _, stranger) = ca("stranger");
    let probe = super::probe(addr, other, &stranger).await.expect("probe");
    let err = probe.error.expect("not verified");
    // Every generated anchor has the same name, so webpki finds "it" and
    // the signature fails.
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );
    task.abort();
}

#[tokio::test]
async fn nothing_listening_is_an_error() {
    let (_dir, _, ca) = ca("closed");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = probe(addr, ID, &ca).await.err().expect("refused");
    assert!(
        err.to_string().contains("no certificate was presented"),
        "{err}"
    );
}
