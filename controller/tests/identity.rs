//! `strand-controller identity` as a process: it serves Identity/Certify
//! over TLS from the files `strand identity init` writes, with metrics and
//! readiness on its admin endpoint.

use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use strand_controller_core::TrustDomain;
use strand_identity::{Claims, GenerateOptions, TokenKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

/// The controller process and its directory, both gone on drop.
struct Controller {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now (another process could take it before the
/// controller binds it; unlikely on a test machine).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl Controller {
    async fn start() -> Controller {
        let dir =
            std::env::temp_dir().join(format!("strand-controller-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        strand_identity::generate(&dir, &GenerateOptions::default()).expect("generate");
        let (addr, admin) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_strand-controller"))
            .arg("identity")
            .arg("--identity-dir")
            .arg(&dir)
            .args(["--addr", &addr.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--cert-lifetime", "1h"])
            .env("STRAND_CONTROLLER_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start strand-controller");
        let c = Controller {
            child,
            dir,
            addr,
            admin,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while c.get("/ready").await.map(|(s, _)| s) != Some(200) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the controller never turned ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c
    }

    /// `GET path` on the admin endpoint: status and body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = tokio::net::TcpStream::connect(self.admin).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut rsp = String::new();
        s.read_to_string(&mut rsp).await.ok()?;
        let status = rsp.split_whitespace().nth(1)?.parse().ok()?;
        let body = rsp.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    fn token(&self, ip: &str) -> Vec<u8> {
        TokenKey::load(&self.dir.join("token.key"))
            .expect("token key")
            .mint(&Claims {
                namespace: "default".into(),
                pod: "web-1".into(),
                service_account: "web".into(),
                identity: ID.into(),
                ip: ip.parse().expect("ip"),
            })
            .into_bytes()
    }
}

/// A client that verifies the service against `ca.crt` in `dir`, as a
/// proxy does.
async fn client(dir: &Path, addr: SocketAddr) -> IdentityClient<tonic::transport::Channel> {
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
    let name = strand_identity::service_identity(&TrustDomain::default()).to_string();
    strand_identity::client::connect(addr, &ca, &name, None)
        .await
        .expect("connect")
}

fn csr(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .der()
        .to_vec()
}

#[tokio::test]
async fn standalone_identity_certifies_over_tls() {
    let c = Controller::start().await;
    let mut client = client(&c.dir, c.addr).await;

    let rsp = client
        .certify(CertifyRequest {
            identity: ID.into(),
            token: c.token("127.0.0.1"),
            certificate_signing_request: csr(ID),
        })
        .await
        .expect("certified")
        .into_inner();
    let leaf = strand_identity::CertInfo::from_der(&rsp.leaf_certificate).expect("leaf");
    assert_eq!(leaf.sans, vec![ID.to_string()]);
    assert_eq!(rsp.intermediate_certificates.len(), 1);
    let until = std::time::SystemTime::try_from(rsp.valid_until.expect("valid_until")).expect("t");
    let left = until
        .duration_since(std::time::SystemTime::now())
        .expect("future");
    assert!(
        left <= Duration::from_secs(3600) && left > Duration::from_secs(3500),
        "--cert-lifetime 1h: {left:?}"
    );

    let status = client
        .certify(CertifyRequest {
            identity: ID.into(),
            token: c.token("10.42.0.9"),
            certificate_signing_request: csr(ID),
        })
        .await
        .expect_err("a token for another address");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    let (status, metrics) = c.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("identity_cert_issued_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("identity_cert_rejected_total{reason=\"token_peer_mismatch\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("identity_issuer_expiry_timestamp_seconds "),
        "{metrics}"
    );
    assert_eq!(c.get("/live").await.map(|(s, _)| s), Some(200));
}
