//! The service end to end: a real TLS server on 127.0.0.1, clients that
//! verify it against the trust anchor and connect from a chosen address.

use super::*;
use crate::{
    Claims, GenerateOptions, IdentityService, LocalVerifier, Metrics, Reason, ReloadingIssuer,
    ServerCertificate, TokenKey,
};
use linkerd2_proxy_api::identity::CertifyRequest;
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use std::net::SocketAddr;
use strand_controller_core::TrustDomain;
use tokio::sync::oneshot;

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

struct Harness {
    dir: TempDir,
    addr: SocketAddr,
    key: TokenKey,
    metrics: Metrics,
    cert: Arc<ServerCertificate>,
    /// Dropping it stops the server.
    _stop: oneshot::Sender<()>,
    reloader: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new("grpc");
        crate::generate(dir.path(), &GenerateOptions::default()).expect("generate");
        let metrics = Metrics::default();
        let issuer = ReloadingIssuer::load(dir.path(), metrics.clone()).expect("issuer");
        let key = TokenKey::load(&dir.path().join("token.key")).expect("token key");
        let verifier = Arc::new(LocalVerifier::new(key.clone()));
        let service = IdentityService::new(issuer.clone(), verifier, HOUR, metrics.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cert = ServerCertificate::new(crate::service_identity(&TrustDomain::default()));
        let reloader = tokio::spawn(issuer.clone().run(Duration::from_millis(50)));
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        tokio::spawn(crate::serve(listener, service, cert.clone(), stopped));
        Harness {
            dir,
            addr,
            key,
            metrics,
            cert,
            _stop: stop,
            reloader,
        }
    }

    async fn client(&self, source: &str) -> IdentityClient<tonic::transport::Channel> {
        let ca = std::fs::read(self.dir.path().join("ca.crt")).expect("ca");
        let name = crate::service_identity(&TrustDomain::default()).to_string();
        let source = source.parse().expect("ip");
        crate::client::connect(self.addr, &ca, &name, Some(source))
            .await
            .expect("connect")
    }

    fn token(&self, ip: &str) -> Vec<u8> {
        self.key
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

fn request(identity: &str, token: Vec<u8>, names: &[&str]) -> CertifyRequest {
    CertifyRequest {
        identity: identity.into(),
        token,
        certificate_signing_request: csr(names),
    }
}

#[tokio::test]
async fn certify_over_tls() {
    let h = Harness::start().await;
    let mut client = h.client("127.0.0.1").await;
    assert!(h.cert.is_ready());

    let rsp = client
        .certify(request(ID, h.token("127.0.0.1"), &[ID]))
        .await
        .expect("certified")
        .into_inner();
    let valid_until = SystemTime::try_from(rsp.valid_until.expect("valid_until")).expect("time");
    let issued = Issued {
        leaf: rsp.leaf_certificate.into(),
        intermediates: rsp
            .intermediate_certificates
            .into_iter()
            .map(Into::into)
            .collect(),
        valid_until,
    };
    let ca = std::fs::read_to_string(h.dir.path().join("ca.crt")).expect("ca");
    verify_chain(&ca, &issued, ID).expect("chains to the anchor");
    let left = valid_until
        .duration_since(SystemTime::now())
        .expect("future");
    assert!(
        left > HOUR - Duration::from_secs(60) && left <= HOUR,
        "{left:?}"
    );
    assert_eq!(h.metrics.issued_total(), 1);

    // The request's identity must be the token's.
    let other = "db.default.serviceaccount.identity.linkerd.cluster.local";
    let status = client
        .certify(request(other, h.token("127.0.0.1"), &[other]))
        .await
        .expect_err("another identity");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains(other), "{status:?}");
    assert_eq!(h.metrics.rejected_total(Reason::IdentityMismatch), 1);

    // A malformed CSR.
    let mut req = request(ID, h.token("127.0.0.1"), &[ID]);
    req.certificate_signing_request = b"junk".to_vec();
    let status = client.certify(req).await.expect_err("junk CSR");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(h.metrics.rejected_total(Reason::MalformedCsr), 1);
    assert_eq!(h.metrics.issued_total(), 1);
}

#[tokio::test]
async fn a_token_used_from_another_address_is_refused() {
    let h = Harness::start().await;
    let mut thief = h.client("127.0.0.2").await;
    let status = thief
        .certify(request(ID, h.token("127.0.0.1"), &[ID]))
        .await
        .expect_err("stolen token");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("127.0.0.1") && status.message().contains("127.0.0.2"),
        "{status:?}"
    );
    assert_eq!(h.metrics.rejected_total(Reason::TokenPeerMismatch), 1);
    assert_eq!(h.metrics.issued_total(), 0);

    // The same token from its own address works.
    let mut owner = h.client("127.0.0.1").await;
    owner
        .certify(request(ID, h.token("127.0.0.1"), &[ID]))
        .await
        .expect("certified");
    assert_eq!(h.metrics.issued_total(), 1);
}

#[tokio::test]
async fn the_server_certificate_is_renewed_when_the_issuer_changes() {
    let h = Harness::start().await;
    // Connect once so the server has certified itself with the first issuer.
    h.client("127.0.0.1").await;
    let first = h.cert.valid_until();
    let opts = GenerateOptions {
        force: true,
        ..GenerateOptions::default()
    };
    crate::generate(h.dir.path(), &opts).expect("rotate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A client trusting only the new anchor connects once the server
        // presents a chain from the new issuer.
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            let ca = std::fs::read(h.dir.path().join("ca.crt")).expect("ca");
            let mut roots = rustls::RootCertStore::empty();
            for der in crate::parse_pem_certs(&ca).expect("anchors") {
                roots.add(der).expect("root");
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(h.addr).await.expect("tcp");
            let name = crate::service_identity(&TrustDomain::default()).to_string();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(
                    rustls_pki_types::ServerName::try_from(name).expect("name"),
                    tcp,
                )
                .await
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never presented the new chain (valid until {first:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
