//! Mesh TLS between two real proxies on loopback, with a real control plane
//! in the test process: the identity service (over TLS, tokens, CA files)
//! and the destination/policy APIs over an index holding the services.
//!
//! ```text
//!  client ─► proxy A outbound ══mTLS (HTTP/1 as HTTP/2)══► proxy B inbound ─► app
//!              │ discovery: web → 127.0.0.1:<B inbound>, identity B
//!              └ identity A from Identity/Certify
//! ```

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use strand_controller_core::{IdentityName, TrustDomain, parse_manifests};
use strand_controller_index::Index;
use strand_identity::{
    Claims, GenerateOptions, IdentityService, Issuer, LocalVerifier, Metrics as IdMetrics,
    ReloadingIssuer, ServerCertificate, TokenKey,
};
use strand_proxy::config::Config;
use strand_proxy::orig_dst::FixedOrigDst;
use strand_proxy::proxy::Proxy;
use tokio::net::TcpListener;

const NS: &str = "default";

fn id(sa: &str) -> String {
    TrustDomain::default()
        .service_account_identity(sa, NS)
        .to_string()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "strand-mtls-{label}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The control plane: CA files, identity service, discovery.
struct ControlPlane {
    dir: TempDir,
    identity_addr: SocketAddr,
    discovery_addr: SocketAddr,
    key: TokenKey,
    index: Arc<Index>,
    metrics: IdMetrics,
}

impl ControlPlane {
    async fn start(lifetime: Duration) -> ControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, lifetime).await
    }

    async fn start_on(identity: TcpListener, lifetime: Duration) -> ControlPlane {
        let dir = TempDir::new("ca");
        strand_identity::generate(&dir.0, &GenerateOptions::default()).unwrap();
        Self::serve(dir, identity, lifetime).await
    }

    async fn serve(dir: TempDir, identity: TcpListener, lifetime: Duration) -> ControlPlane {
        let metrics = IdMetrics::default();
        let issuer = ReloadingIssuer::load(&dir.0, metrics.clone()).unwrap();
        let key = TokenKey::load(&dir.0.join("token.key")).unwrap();
        let verifier = Arc::new(LocalVerifier::new(key.clone()));
        let service = IdentityService::new(issuer, verifier, lifetime, metrics.clone());
        let identity_addr = identity.local_addr().unwrap();
        let cert =
            ServerCertificate::new(strand_identity::service_identity(&TrustDomain::default()));
        tokio::spawn(strand_identity::serve(
            identity,
            service,
            cert,
            std::future::pending(),
        ));

        let index = Index::new("cluster.local", TrustDomain::default());
        let discovery = strand_controller_grpc::Discovery::new(index.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let discovery_addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            strand_controller_grpc::server()
                .add_routes(discovery.routes())
                .serve_with_incoming(incoming),
        );
        ControlPlane {
            dir,
            identity_addr,
            discovery_addr,
            key,
            index,
            metrics,
        }
    }

    fn trust_anchors(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("ca.crt")).unwrap()
    }

    fn issuer(&self) -> Issuer {
        Issuer::load(&self.dir.0).unwrap()
    }

    /// A token for `sa`, usable from 127.0.0.1, written to a file.
    fn token_file(&self, sa: &str) -> PathBuf {
        let token = self.key.mint(&Claims {
            namespace: NS.into(),
            pod: format!("{sa}-0"),
            service_account: sa.into(),
            identity: id(sa),
            ip: "127.0.0.1".parse().unwrap(),
        });
        let path = self.dir.0.join(format!("{sa}.token"));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// Service `name` (VIP `vip`:80) with one meshed pod at 127.0.0.1:`port`
    /// running as service account `sa`.
    fn add_service(&self, name: &str, vip: &str, port: u16, sa: &str) {
        let yaml = format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  clusterIP: {vip}
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: {port}}}]
---
apiVersion: local.strand.io/v1alpha1
kind: Pod
metadata: {{name: {name}-0, namespace: {NS}, labels: {{app: {name}}}}}
spec:
  workload: {name}
  serviceAccountName: {sa}
  ports: [{{containerPort: {port}}}]
status: {{podIP: 127.0.0.1, ready: true, meshed: true}}
"
        );
        for r in parse_manifests(&yaml).unwrap() {
            self.index.apply(r);
        }
    }
}

/// A running proxy and its addresses.
struct TestProxy {
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    /// The tap API's port, when a tap service identity is configured.
    control: Option<SocketAddr>,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start_proxy(
    cp: &ControlPlane,
    identity_addr: SocketAddr,
    sa: &str,
    orig_dst: SocketAddr,
) -> TestProxy {
    start_proxy_with(cp, identity_addr, sa, orig_dst, &[]).await
}

/// [`start_proxy`] with the control plane's identity service, once ready.
async fn ready_proxy(cp: &ControlPlane, sa: &str, orig_dst: SocketAddr) -> TestProxy {
    let p = start_proxy(cp, cp.identity_addr, sa, orig_dst).await;
    wait_ready(p.admin, Duration::from_secs(10)).await;
    p
}

async fn start_proxy_with(
    cp: &ControlPlane,
    identity_addr: SocketAddr,
    sa: &str,
    orig_dst: SocketAddr,
    extra: &[(&str, &str)],
) -> TestProxy {
    let token = cp.token_file(sa);
    let anchors = cp.trust_anchors();
    let mut env = discovery_env(cp);
    env.extend([
        ("STRAND_PROXY_IDENTITY_SVC_ADDR", identity_addr.to_string()),
        ("STRAND_PROXY_IDENTITY_LOCAL_NAME", id(sa)),
        ("STRAND_PROXY_IDENTITY_TRUST_ANCHORS", anchors),
        (
            "STRAND_PROXY_IDENTITY_TOKEN_FILE",
            token.display().to_string(),
        ),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    bind_proxy(env, orig_dst).await
}

/// A proxy's environment with discovery and no identity.
fn discovery_env(cp: &ControlPlane) -> Vec<(&'static str, String)> {
    vec![
        ("STRAND_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0".into()),
        ("STRAND_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0".into()),
        ("STRAND_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:0".into()),
        (
            "STRAND_PROXY_DESTINATION_SVC_ADDR",
            cp.discovery_addr.to_string(),
        ),
        ("STRAND_PROXY_POD_NAMESPACE", NS.into()),
    ]
}

async fn bind_proxy(env: Vec<(&str, String)>, orig_dst: SocketAddr) -> TestProxy {
    let env: std::collections::HashMap<String, String> =
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let config = Config::from_env(&env).unwrap();
    let bound = Proxy::new(config)
        .with_orig_dst(FixedOrigDst(orig_dst))
        .allow_loopback_targets(true)
        .bind()
        .await
        .unwrap();
    let p = TestProxy {
        outbound: bound.outbound_addr(),
        inbound: bound.inbound_addr(),
        admin: bound.admin_addr(),
        control: bound.control_addr(),
        _shutdown: bound.shutdown_token().drop_guard(),
    };
    tokio::spawn(bound.run());
    p
}

/// Serves each connection accepted on a fresh loopback port with `handle`,
/// in a task of its own.
async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(tcp));
        }
    });
    addr
}

/// An HTTP/1 app answering with the request's version and body.
async fn app() -> SocketAddr {
    serve(|tcp| async move {
        let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let version = format!("{:?}", req.version());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut rsp = Response::new(Full::new(body));
            rsp.headers_mut()
                .insert("x-app-saw-version", version.parse().unwrap());
            Ok::<_, Infallible>(rsp)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
    })
    .await
}

async fn get(addr: SocketAddr, path: &str, host: &str) -> Response<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", host)
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    let (parts, body) = rsp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// An HTTP/2 client connection (prior knowledge) to `addr`, driven by a
/// task of its own.
async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    tx
}

async fn text(admin: SocketAddr, path: &str) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let rsp = tx
        .send_request(
            Request::get(path)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = rsp.status();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn wait_ready(admin: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if text(admin, "/ready").await.0 == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "proxy not ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, name: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_between_meshed_proxies_is_mtls_over_one_http2_connection() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = app().await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.0.10", server.inbound.port(), "web");
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let client = start_proxy(&cp, cp.identity_addr, "vote-bot", vip).await;
    wait_ready(client.admin, Duration::from_secs(10)).await;

    for i in 0..5 {
        // A new client connection each time.
        let rsp = get(
            client.outbound,
            &format!("/{i}"),
            "web.default.svc.cluster.local",
        )
        .await;
        assert_eq!(rsp.status(), 200, "{:?}", rsp);
        assert_eq!(rsp.body().as_ref(), b"ping");
        // The app got HTTP/1.1 back, and the client an HTTP/1.1 response.
        assert_eq!(rsp.headers()["x-app-saw-version"], "HTTP/1.1");
        assert!(!rsp.headers().contains_key("l5d-orig-proto"));
    }

    let (_, out) = text(client.admin, "/metrics").await;
    let server_id = format!("server_id=\"{}\"", id("web"));
    assert_eq!(
        metric(
            &out,
            "response_total",
            &[
                "direction=\"outbound\"",
                "tls=\"true\"",
                &server_id,
                "classification=\"success\""
            ]
        ),
        5.0,
        "{out}"
    );
    // Five client connections, one mTLS connection between the proxies.
    assert_eq!(
        metric(
            &out,
            "tcp_open_total",
            &["peer=\"dst\"", "tls=\"true\"", &server_id]
        ),
        1.0,
        "{out}"
    );
    assert!(
        metric(&out, "identity_cert_refresh_total", &[]) >= 1.0,
        "{out}"
    );
    let expiry = metric(&out, "identity_cert_expiration_timestamp_seconds", &[]);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 3000.0 && expiry < now + 3700.0,
        "{expiry} vs {now}"
    );

    let (_, out) = text(server.admin, "/metrics").await;
    let client_id = format!("client_id=\"{}\"", id("vote-bot"));
    assert_eq!(
        metric(
            &out,
            "response_total",
            &["direction=\"inbound\"", "tls=\"true\"", &client_id]
        ),
        5.0,
        "{out}"
    );
    assert_eq!(cp.metrics.issued_total(), 2);

    // A client addressing the meshed pod itself, not the service: mTLS too.
    let direct = ready_proxy(&cp, "vote-bot", server.inbound).await;
    let rsp = get(direct.outbound, "/pod", "127.0.0.1").await;
    assert_eq!(rsp.status(), 200, "{rsp:?}");
    assert_eq!(rsp.headers()["x-app-saw-version"], "HTTP/1.1");
    let (_, out) = text(direct.admin, "/metrics").await;
    assert_eq!(
        metric(&out, "response_total", &["tls=\"true\"", &server_id]),
        1.0,
        "{out}"
    );
}

/// A TLS server presenting `chain` (what a compromised or misconfigured
/// endpoint would do).
async fn tls_server(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let _ = acceptor.accept(tcp).await;
        }
    })
    .await
    .port()
}

/// A chain for `name` from `issuer`, valid from `at` for `lifetime`.
fn chain_from(
    issuer: &Issuer,
    name: &str,
    at: SystemTime,
    lifetime: Duration,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let issued = issuer
        .sign_at(csr.der(), &IdentityName::new(name), lifetime, at)
        .unwrap();
    let mut chain = vec![issued.leaf.clone()];
    chain.extend(issued.intermediates.iter().cloned());
    (
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_prove_the_expected_identity_fails_closed() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let issuer = cp.issuer();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let other_ca = TempDir::new("other-ca");
    strand_identity::generate(&other_ca.0, &GenerateOptions::default()).unwrap();
    let other = Issuer::load(&other_ca.0).unwrap();

    let cases = [
        (
            "wrong-name",
            chain_from(&issuer, &id("someone-else"), now, hour),
            &["not valid for name"][..],
        ),
        // Valid for one second, used after two.
        (
            "expired",
            chain_from(&issuer, &id("expired"), now, Duration::from_secs(1)),
            &["expired"][..],
        ),
        // The other CA uses the same names, so the chain is found and its
        // signature fails.
        (
            "foreign",
            chain_from(&other, &id("foreign"), now, hour),
            &["UnknownIssuer", "BadSignature"][..],
        ),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, (sa, (chain, key), want)) in cases.into_iter().enumerate() {
        let port = tls_server(chain, key).await;
        let vip = format!("10.96.1.{}", i + 1);
        cp.add_service(sa, &vip, port, sa);
        let client = ready_proxy(&cp, "vote-bot", format!("{vip}:80").parse().unwrap()).await;
        let rsp = get(
            client.outbound,
            "/",
            &format!("{sa}.default.svc.cluster.local"),
        )
        .await;
        assert_eq!(rsp.status(), 502, "{sa}: {rsp:?}");
        let err = rsp.headers()["l5d-proxy-error"].to_str().unwrap();
        assert!(err.contains("mTLS handshake"), "{sa}: {err}");
        assert!(err.contains(&id(sa)), "{sa}: {err}");
        assert!(
            want.iter().any(|w| err.contains(w)),
            "{sa}: {err} lacks {want:?}"
        );
        let (_, out) = text(client.admin, "/metrics").await;
        assert!(
            metric(
                &out,
                "response_total",
                &["error=\"tls\"", "classification=\"failure\""]
            ) >= 1.0,
            "{sa}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_is_not_ready_until_the_identity_service_answers() {
    // Reserve an address for the identity service, which is not up yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let dir = TempDir::new("late");
    strand_identity::generate(&dir.0, &GenerateOptions::default()).unwrap();
    // A control plane whose identity service listens elsewhere for now;
    // the proxy is pointed at `addr`.
    let spare = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp = ControlPlane::serve(dir, spare, Duration::from_secs(3600)).await;
    let p = start_proxy(&cp, addr, "web", "127.0.0.1:9".parse().unwrap()).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = text(p.admin, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("no identity certificate"), "{body}");
    assert_eq!(text(p.admin, "/live").await.0, StatusCode::OK);
    let (_, out) = text(p.admin, "/metrics").await;
    assert!(
        metric(&out, "identity_cert_refresh_failure_total", &[]) >= 1.0,
        "{out}"
    );

    // The identity service comes up at the address the proxy knows.
    let listener = TcpListener::bind(addr).await.unwrap();
    let metrics = IdMetrics::default();
    let issuer = ReloadingIssuer::load(&cp.dir.0, metrics.clone()).unwrap();
    let verifier = Arc::new(LocalVerifier::new(cp.key.clone()));
    let service =
        IdentityService::new(issuer, verifier, Duration::from_secs(3600), metrics.clone());
    let cert = ServerCertificate::new(strand_identity::service_identity(&TrustDomain::default()));
    tokio::spawn(strand_identity::serve(
        listener,
        service,
        cert,
        std::future::pending(),
    ));
    wait_ready(p.admin, Duration::from_secs(20)).await;
    assert_eq!(metrics.issued_total(), 1);
}

/// A server that speaks first (a banner), then echoes one line.
async fn banner_server() -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    serve(|tcp| async move {
        let (r, mut w) = tcp.into_split();
        w.write_all(b"220 hello\n").await.unwrap();
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await.unwrap();
        w.write_all(line.as_bytes()).await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_over_mtls_is_not_detected_twice() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = banner_server().await;
    let server = ready_proxy(&cp, "smtp", app).await;
    cp.add_service("smtp", "10.96.2.1", server.inbound.port(), "smtp");
    // The client proxy gives up waiting for the client's first bytes
    // quickly; the server proxy keeps the default 10 s detection timeout,
    // which it must not spend on a stream the client proxy marked opaque.
    let client = start_proxy_with(
        &cp,
        cp.identity_addr,
        "mailer",
        "10.96.2.1:80".parse().unwrap(),
        &[("STRAND_PROXY_OUTBOUND_DETECT_TIMEOUT", "200ms")],
    )
    .await;
    wait_ready(client.admin, Duration::from_secs(10)).await;

    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(client.outbound)
        .await
        .unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line, "220 hello\n");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    w.write_all(b"EHLO x\n").await.unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line, "EHLO x\n");

    let (_, out) = text(server.admin, "/metrics").await;
    let client_id = format!("client_id=\"{}\"", id("mailer"));
    assert!(
        metric(
            &out,
            "tcp_open_total",
            &[
                "direction=\"inbound\"",
                "peer=\"src\"",
                "tls=\"true\"",
                &client_id
            ]
        ) >= 1.0,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_for_other_names_passes_through_a_meshed_inbound() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    // The application does its own TLS, for a name of its own.
    let ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.example".to_string()])
        .unwrap()
        .self_signed(&ca)
        .unwrap();
    let port = tls_server(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.serialize_der())),
    )
    .await;
    let server = ready_proxy(&cp, "web", format!("127.0.0.1:{port}").parse().unwrap()).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = client_config_without_certificate(roots);
    let tcp = tokio::net::TcpStream::connect(server.inbound)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.example").unwrap();
    // The handshake completes against the application's own certificate:
    // the proxy did not terminate it.
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the application's certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_identity_still_carries_http1_over_http2_to_meshed_endpoints() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = app().await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.3.1", server.inbound.port(), "web");
    let client = bind_proxy(discovery_env(&cp), "10.96.3.1:80".parse().unwrap()).await;
    wait_ready(client.admin, Duration::from_secs(10)).await;
    for i in 0..3 {
        let rsp = get(client.outbound, &format!("/{i}"), "web").await;
        assert_eq!(rsp.status(), 200, "{rsp:?}");
        assert_eq!(rsp.headers()["x-app-saw-version"], "HTTP/1.1");
    }
    let (_, out) = text(client.admin, "/metrics").await;
    // Three client connections, one plaintext HTTP/2 connection upstream.
    assert_eq!(
        metric(
            &out,
            "tcp_open_total",
            &[
                "peer=\"dst\"",
                "tls=\"no_identity\"",
                "no_tls_reason=\"disabled\""
            ]
        ),
        1.0,
        "{out}"
    );
    let (_, out) = text(server.admin, "/metrics").await;
    assert_eq!(
        metric(
            &out,
            "response_total",
            &[
                "direction=\"inbound\"",
                "no_tls_reason=\"no_tls_from_remote\""
            ]
        ),
        3.0,
        "{out}"
    );
}

/// An app speaking HTTP/1 and HTTP/2 on one port, answering with the
/// request's version.
async fn dual_app() -> SocketAddr {
    serve(|tcp| async move {
        let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let version = format!("{:?}", req.version());
            let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
            rsp.headers_mut()
                .insert("x-app-saw-version", version.parse().unwrap());
            Ok::<_, Infallible>(rsp)
        });
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
    })
    .await
}

/// Native HTTP/2 and HTTP/1 carried as HTTP/2 go to one endpoint over
/// separate connections, so the server proxy serves each connection by its
/// first request (its lean HTTP/2 path, or the general path that turns
/// upgraded requests back into HTTP/1): HTTP/1 after HTTP/2 still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_http2_and_upgraded_http1_keep_separate_connections() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = dual_app().await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.4.2", server.inbound.port(), "web");
    let client = ready_proxy(&cp, "vote-bot", "10.96.4.2:80".parse().unwrap()).await;
    let mut tx = h2_client(client.outbound).await;
    let req = Request::get("http://web.default.svc.cluster.local/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-app-saw-version"], "HTTP/2.0");
    for i in 0..3 {
        let rsp = get(
            client.outbound,
            &format!("/{i}"),
            "web.default.svc.cluster.local",
        )
        .await;
        assert_eq!(rsp.status(), 200, "{rsp:?}");
        assert_eq!(rsp.headers()["x-app-saw-version"], "HTTP/1.1");
    }
    let (_, out) = text(client.admin, "/metrics").await;
    assert_eq!(
        metric(&out, "tcp_open_total", &["peer=\"dst\"", "tls=\"true\""]),
        2.0,
        "{out}"
    );
}

/// An HTTP/2 app answering 200 to everything.
async fn h2_app() -> SocketAddr {
    serve(|tcp| async move {
        let svc = hyper::service::service_fn(|_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
    })
    .await
}

/// 1,000 concurrent streams from 20 client connections, all on the one
/// mTLS connection between the proxies: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_http2_streams_share_the_mtls_connection() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = h2_app().await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.4.1", server.inbound.port(), "web");
    let client = ready_proxy(&cp, "vote-bot", "10.96.4.1:80".parse().unwrap()).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let tx = h2_client(client.outbound).await;
        for _ in 0..50 {
            let mut tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..5 {
                    let req = Request::get("http://web.default.svc.cluster.local/")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match tx.send_request(req).await {
                        Ok(rsp) if rsp.status() == 200 => {
                            let _ = rsp.into_body().collect().await;
                        }
                        Ok(rsp) => failures.push(format!(
                            "{} {:?}",
                            rsp.status(),
                            rsp.headers().get("l5d-proxy-error")
                        )),
                        Err(e) => failures.push(format!("client: {e}")),
                    }
                }
                failures
            }));
        }
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// An HTTP/2 app that reads each request to its end and answers with the
/// body's length (`x-bytes`) and its `x-sum` trailer (`x-trailer`). Tells
/// `events` when a request arrives ("start") and when its body fails
/// ("reset").
async fn h2_counting_app(events: tokio::sync::mpsc::UnboundedSender<&'static str>) -> SocketAddr {
    serve(move |tcp| {
        let events = events.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let events = events.clone();
                async move {
                    let _ = events.send("start");
                    let mut body = req.into_body();
                    let (mut bytes, mut trailer) = (0usize, String::new());
                    while let Some(frame) = body.frame().await {
                        let Ok(frame) = frame else {
                            let _ = events.send("reset");
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())));
                        };
                        match frame.into_data() {
                            Ok(data) => bytes += data.len(),
                            Err(frame) => {
                                if let Some(t) = frame.trailers_ref().and_then(|t| t.get("x-sum")) {
                                    trailer = t.to_str().unwrap().to_string();
                                }
                            }
                        }
                    }
                    let mut rsp = Response::new(Full::new(Bytes::new()));
                    rsp.headers_mut().insert("x-bytes", bytes.into());
                    rsp.headers_mut()
                        .insert("x-trailer", trailer.parse().unwrap());
                    Ok(rsp)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        }
    })
    .await
}

type BodyFrames = tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, Infallible>>;

/// An HTTP/2 request to `web` through `outbound` whose body is what is sent
/// on the returned channel, as it is sent.
async fn streamed_request(
    outbound: SocketAddr,
) -> (
    BodyFrames,
    impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>>,
) {
    let mut tx = h2_client(outbound).await;
    let (frames, rx) = tokio::sync::mpsc::channel(4);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = Request::post("http://web.default.svc.cluster.local/upload")
        .body(body)
        .unwrap();
    (frames, async move { tx.send_request(req).await })
}

/// A request body streamed in 64 KiB pieces as the client makes them,
/// 3 MiB in all (far past every stream window), then trailers: all of it
/// reaches the app through the mTLS pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_http2_body_and_its_trailers_cross_the_mtls_pair() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let (events, _seen) = tokio::sync::mpsc::unbounded_channel();
    let app = h2_counting_app(events).await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.4.3", server.inbound.port(), "web");
    let client = ready_proxy(&cp, "vote-bot", "10.96.4.3:80".parse().unwrap()).await;
    let (frames, response) = streamed_request(client.outbound).await;
    let sender = tokio::spawn(async move {
        for i in 0..48u8 {
            let piece = Bytes::from(vec![i; 64 * 1024]);
            frames
                .send(Ok(http_body::Frame::data(piece)))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", "1128".parse().unwrap());
        frames
            .send(Ok(http_body::Frame::trailers(trailers)))
            .await
            .unwrap();
    });
    let rsp = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("no response within 20 s")
        .unwrap();
    sender.await.unwrap();
    assert_eq!(rsp.status(), 200, "{rsp:?}");
    assert_eq!(
        rsp.headers()["x-bytes"],
        (48 * 64 * 1024).to_string().as_str()
    );
    assert_eq!(rsp.headers()["x-trailer"], "1128");
}

/// A client that resets its stream while its body is still streaming:
/// the app's stream is reset too, rather than left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_reaches_the_app_through_the_mtls_pair() {
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let app = h2_counting_app(events).await;
    let server = ready_proxy(&cp, "web", app).await;
    cp.add_service("web", "10.96.4.4", server.inbound.port(), "web");
    let client = ready_proxy(&cp, "vote-bot", "10.96.4.4:80".parse().unwrap()).await;
    let (frames, response) = streamed_request(client.outbound).await;
    let pending = tokio::spawn(response);
    frames
        .send(Ok(http_body::Frame::data(Bytes::from_static(b"partial"))))
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    let first = tokio::time::timeout(within, seen.recv()).await.unwrap();
    assert_eq!(first, Some("start"));
    // Dropping the request's future while its body is still open resets
    // the stream.
    pending.abort();
    let next = tokio::time::timeout(within, seen.recv())
        .await
        .expect("the app's stream was not reset within 10 s");
    assert_eq!(next, Some("reset"));
    drop(frames);
}

/// An HTTP/1 app that answers an `Upgrade` with 101 and then echoes bytes.
async fn upgrade_echo_app() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    serve(|tcp| async move {
        let svc = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut rsp = Response::new(Full::new(Bytes::new()));
            *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            rsp.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            rsp.headers_mut()
                .insert("upgrade", "test-echo".parse().unwrap());
            Ok::<_, Infallible>(rsp)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades()
            .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_tunnels_over_mtls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = upgrade_echo_app().await;
    let server = ready_proxy(&cp, "ws", app).await;
    cp.add_service("ws", "10.96.5.1", server.inbound.port(), "ws");
    let client = ready_proxy(&cp, "vote-bot", "10.96.5.1:80".parse().unwrap()).await;
    let tcp = tokio::net::TcpStream::connect(client.outbound)
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get("/ws")
        .header("host", "ws.default.svc.cluster.local")
        .header("connection", "upgrade")
        .header("upgrade", "test-echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = tx.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 101);
    let mut io = TokioIo::new(hyper::upgrade::on(rsp).await.unwrap());
    io.write_all(b"ping through the mtls tunnel").await.unwrap();
    let mut buf = [0u8; 28];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the mtls tunnel");
    let (_, out) = text(client.admin, "/metrics").await;
    let server_id = format!("server_id=\"{}\"", id("ws"));
    assert!(
        metric(
            &out,
            "tcp_open_total",
            &["peer=\"dst\"", "tls=\"true\"", &server_id]
        ) >= 1.0,
        "{out}"
    );
}

/// TLS client settings trusting `roots`, with no certificate of its own.
fn client_config_without_certificate(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// A tap client for the proxy whose identity is `server` on `addr`,
/// presenting `client_chain` (or no certificate).
async fn tap_client(
    cp: &ControlPlane,
    addr: SocketAddr,
    server: &str,
    client_chain: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<
    linkerd2_proxy_api::tap::tap_client::TapClient<tonic::transport::Channel>,
    strand_identity::client::ClientError,
> {
    let anchors = cp.trust_anchors();
    let channel = match client_chain {
        Some((chain, key)) => {
            strand_identity::client::mesh_channel(addr, anchors.as_bytes(), server, chain, key)
                .await?
        }
        // Only the client certificate differs from what a tap client does.
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(anchors.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let config = client_config_without_certificate(roots);
            let name = rustls::pki_types::ServerName::try_from(server.to_string()).unwrap();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await;
            // The proxy may accept the handshake and then close: either way
            // no tap can be opened over it.
            let Ok(tls) = tls else {
                return Err(strand_identity::client::ClientError::ClientCert(
                    "handshake refused".into(),
                ));
            };
            let (mut tx, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .map_err(|e| strand_identity::client::ClientError::ClientCert(e.to_string()))?;
            tokio::spawn(conn);
            let rsp = tx
                .send_request(
                    Request::post("/io.linkerd.proxy.tap.Tap/Observe")
                        .header("content-type", "application/grpc")
                        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
                        .unwrap(),
                )
                .await;
            assert!(rsp.is_err(), "a client without a certificate got {rsp:?}");
            return Err(strand_identity::client::ClientError::ClientCert(
                "refused".into(),
            ));
        }
    };
    Ok(linkerd2_proxy_api::tap::tap_client::TapClient::new(channel))
}

fn observe_path_prefix(prefix: &str, limit: u32) -> linkerd2_proxy_api::tap::ObserveRequest {
    use linkerd2_proxy_api::tap::observe_request::{self, r#match as m};
    linkerd2_proxy_api::tap::ObserveRequest {
        limit,
        r#match: Some(observe_request::Match {
            r#match: Some(m::Match::Http(m::Http {
                r#match: Some(m::http::Match::Path(m::http::StringMatch {
                    r#match: Some(m::http::string_match::Match::Prefix(prefix.to_string())),
                })),
            })),
        }),
        extract: Some(observe_request::Extract {
            extract: Some(observe_request::extract::Extract::Http(
                observe_request::extract::Http {
                    extract: Some(observe_request::extract::http::Extract::Headers(
                        observe_request::extract::http::Headers {},
                    )),
                },
            )),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_service_sees_live_requests_and_nobody_else_may_tap() {
    use linkerd2_proxy_api::tap::tap_event::{self, http::Event};

    let cp = ControlPlane::start(Duration::from_secs(3600)).await;
    let app = app().await;
    let tap_id = format!(
        "tap.strand-viz.serviceaccount.identity.linkerd.{}",
        "cluster.local"
    );
    let control = ("STRAND_PROXY_CONTROL_LISTEN_ADDR", "127.0.0.1:0");
    let server = start_proxy_with(
        &cp,
        cp.identity_addr,
        "server",
        app,
        &[control, ("STRAND_PROXY_TAP_SVC_NAME", tap_id.as_str())],
    )
    .await;
    wait_ready(server.admin, Duration::from_secs(10)).await;
    let control = server.control.expect("the tap API is on");
    let issuer = cp.issuer();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();

    // Before any tap, a kept-alive connection's bodiless requests take the
    // lean path; once a tap opens, its next request must be seen too.
    let tcp = tokio::net::TcpStream::connect(server.inbound)
        .await
        .unwrap();
    let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let bodiless = |path: &str| {
        Request::get(path)
            .header("host", "server")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    let rsp = kept.send_request(bodiless("/tapped/before")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    rsp.into_body().collect().await.unwrap();

    let mut tap = tap_client(
        &cp,
        control,
        &id("server"),
        Some(chain_from(&issuer, &tap_id, now, hour)),
    )
    .await
    .unwrap();
    let mut events = tap
        .observe(observe_path_prefix("/tapped", 3))
        .await
        .unwrap()
        .into_inner();
    // The tap is registered when the call returns; these requests arrive on
    // connections of their own, so whether they are lean does not matter.
    let rsp = get(server.inbound, "/other", "server").await;
    assert_eq!(rsp.status(), 200);
    let rsp = kept.send_request(bodiless("/tapped/kept")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    rsp.into_body().collect().await.unwrap();
    for i in 1..=2 {
        let rsp = get(server.inbound, &format!("/tapped/{i}?q=x"), "server").await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.body(), "ping");
    }
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the stream ends once its limit is reached")
        .unwrap()
    {
        seen.push(ev);
    }
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| match &e.event {
            Some(tap_event::Event::Http(h)) => match h.event.as_ref().unwrap() {
                Event::RequestInit(r) => format!("init {}", r.path),
                Event::ResponseInit(r) => format!("response {}", r.http_status),
                Event::ResponseEnd(r) => format!("end {} bytes", r.response_bytes),
            },
            None => "empty".to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "init /tapped/kept",
            "response 200",
            "end 0 bytes",
            "init /tapped/1?q=x",
            "response 200",
            "end 4 bytes",
            "init /tapped/2?q=x",
            "response 200",
            "end 4 bytes"
        ]
    );
    let first = &seen[3];
    assert_eq!(
        first.proxy_direction,
        i32::from(tap_event::ProxyDirection::Inbound)
    );
    assert_eq!(
        first.destination,
        Some(app.into()),
        "the destination is the original destination"
    );
    let labels = &first.source_meta.as_ref().unwrap().labels;
    assert_eq!(labels["tls"], "no_identity", "{labels:?}");
    let Some(tap_event::Event::Http(h)) = &first.event else {
        unreachable!()
    };
    let Some(Event::RequestInit(init)) = &h.event else {
        unreachable!()
    };
    assert_eq!(init.authority, "server");
    assert!(
        init.headers
            .as_ref()
            .unwrap()
            .headers
            .iter()
            .any(|h| h.name == "host" && h.value == b"server")
    );

    // Another workload's certificate, or none: refused.
    let web = chain_from(&issuer, &id("web"), now, hour);
    for (who, chain) in [("web", Some(web)), ("no certificate", None)] {
        let refused = match tap_client(&cp, control, &id("server"), chain).await {
            Err(_) => true,
            Ok(mut c) => c.observe(observe_path_prefix("/", 1)).await.is_err(),
        };
        assert!(refused, "{who} could tap");
    }

    // A tap that asks for nothing is refused with a reason.
    let status = tap.observe(observe_path_prefix("/", 0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("limit"), "{status:?}");
}
