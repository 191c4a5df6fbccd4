//! The control plane of `strand-pair-disc` and `strand-pair-mtls`, hosted by
//! strand-bench itself: the identity service (CA files, tokens,
//! `Identity/Certify` over TLS) and the destination and policy APIs over an
//! index holding the scenario's one Service. It runs on a thread that lives
//! in the scenario's `control` pod, so the proxies reach it across the
//! scenario's bridge as they would a real control plane, from their pods'
//! addresses (which the identity tokens are bound to).
//!
//! ```text
//!   control pod (a thread of strand-bench)
//!     :<identity>   Identity/Certify, TLS ◄──── token ── strand-proxy (load, server)
//!     :<discovery>  Destination, OutboundPolicies ◄───── strand-proxy (load, server)
//!   Service `server`: VIP:8080, VIP:9090 ─► server pod (meshed, SA `server`)
//! ```
//!
//! The control plane's CPU is strand-bench's, not the proxies': after
//! start-up it only keeps idle watch streams open.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use strand_controller_core::{IdentityName, TrustDomain, parse_manifests};
use strand_controller_index::Index;
use strand_identity::{
    Claims, GenerateOptions, IdentityService, Issuer, LocalVerifier, Metrics, ReloadingIssuer,
    ServerCertificate, TOKEN_KEY_FILE, TokenKey,
};
use strand_testkit::Pod;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The namespace of every pod and Service in the scenario.
pub const NAMESPACE: &str = "default";

/// Linkerd's cluster domain, which the proxies assume by default.
const CLUSTER_DOMAIN: &str = "cluster.local";

/// Lifetime of the proxies' certificates: Linkerd's default (24 h). They
/// renew at 70% of it, so never during a run.
const CERT_LIFETIME: Duration = strand_identity::DEFAULT_CERT_LIFETIME;

/// A running in-process control plane; dropping it stops the thread.
pub struct ControlPlane {
    /// CA files (`ca.crt`, `issuer.*`, `token.key`), readable by root only.
    ca_dir: PathBuf,
    /// Token files, readable by the proxies' user.
    token_dir: PathBuf,
    identity_addr: SocketAddr,
    discovery_addr: SocketAddr,
    key: TokenKey,
    trust_anchors: String,
    index: Arc<Index>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A workload's certificate chain and private key.
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Generates a CA in `dir`/ca and serves both APIs from a thread in
    /// `pod`'s network namespace, on the pod's address.
    pub fn start(pod: &Pod, dir: &Path) -> anyhow::Result<ControlPlane> {
        let ca_dir = dir.join("ca");
        let token_dir = dir.join("tokens");
        std::fs::create_dir_all(&ca_dir)
            .with_context(|| format!("creating {}", ca_dir.display()))?;
        std::fs::create_dir_all(&token_dir)
            .with_context(|| format!("creating {}", token_dir.display()))?;
        for d in [dir, token_dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 755 {}", d.display()))?;
        }
        strand_identity::generate(&ca_dir, &GenerateOptions::default())
            .context("generating the mesh CA")?;
        let metrics = Metrics::default();
        let issuer =
            ReloadingIssuer::load(&ca_dir, metrics.clone()).context("loading the issuer")?;
        let trust_anchors = issuer.current().trust_anchors_pem().to_string();
        let key = TokenKey::load(&ca_dir.join(TOKEN_KEY_FILE)).context("loading the token key")?;
        let verifier = Arc::new(LocalVerifier::new(key.clone()));
        let service = IdentityService::new(issuer, verifier, CERT_LIFETIME, metrics);
        let index = Index::new(CLUSTER_DOMAIN, TrustDomain::default());

        let netns = pod.netns_path();
        let ip = pod.ip();
        let discovery = strand_controller_grpc::Discovery::new(index.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("control-plane".to_string())
            .spawn(move || {
                let served = serve(&netns, ip, service, discovery, shutdown_rx, &ready_tx);
                if let Err(e) = served {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .context("starting the control-plane thread")?;
        let mut cp = ControlPlane {
            ca_dir,
            token_dir,
            identity_addr: SocketAddr::new(ip, 0),
            discovery_addr: SocketAddr::new(ip, 0),
            key,
            trust_anchors,
            index,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        // Dropping `cp` on an error below stops the thread.
        let (identity_addr, discovery_addr) = ready_rx
            .recv()
            .map_err(|_| anyhow!("the control-plane thread ended before it was serving"))??;
        cp.identity_addr = identity_addr;
        cp.discovery_addr = discovery_addr;
        Ok(cp)
    }

    /// Adds Service `name` at `vip` with `ports` (each forwarded to the same
    /// port of the pod) and one ready, meshed pod at `pod_ip` running as
    /// service account `sa`.
    pub fn add_service(
        &self,
        name: &str,
        vip: IpAddr,
        ports: &[u16],
        pod_ip: IpAddr,
        sa: &str,
    ) -> anyhow::Result<()> {
        let yaml = service_yaml(name, vip, ports, pod_ip, sa);
        let resources = parse_manifests(&yaml)
            .map_err(|e| anyhow!("the scenario's Service manifest is invalid: {e}"))?;
        for r in resources {
            self.index.apply(r);
        }
        Ok(())
    }

    /// The environment that points a proxy in pod `pod` at discovery.
    pub fn discovery_env(&self, pod: &str) -> Vec<(String, String)> {
        vec![
            env(
                "STRAND_PROXY_DESTINATION_SVC_ADDR",
                self.discovery_addr.to_string(),
            ),
            env("STRAND_PROXY_POD_NAME", pod.to_string()),
            env("STRAND_PROXY_POD_NAMESPACE", NAMESPACE.to_string()),
        ]
    }

    /// The environment that gives the proxy of pod `pod` (at `ip`, as
    /// service account `sa`) its identity: a token minted for it, written
    /// where the proxy's user can read it.
    pub fn identity_env(
        &self,
        pod: &str,
        sa: &str,
        ip: IpAddr,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let identity = identity(sa);
        let token = self.key.mint(&Claims {
            namespace: NAMESPACE.to_string(),
            pod: pod.to_string(),
            service_account: sa.to_string(),
            identity: identity.clone(),
            ip,
        });
        let path = self.token_dir.join(format!("{pod}.token"));
        std::fs::write(&path, token).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 644 {}", path.display()))?;
        Ok(vec![
            env(
                "STRAND_PROXY_IDENTITY_SVC_ADDR",
                self.identity_addr.to_string(),
            ),
            env("STRAND_PROXY_IDENTITY_LOCAL_NAME", identity),
            env(
                "STRAND_PROXY_IDENTITY_TRUST_ANCHORS",
                self.trust_anchors.clone(),
            ),
            env(
                "STRAND_PROXY_IDENTITY_TOKEN_FILE",
                path.display().to_string(),
            ),
        ])
    }

    /// The trust anchors, PEM.
    pub fn trust_anchors(&self) -> &str {
        &self.trust_anchors
    }

    /// A certificate for service account `sa` straight from the issuer, as
    /// the identity service would give a proxy (ECDSA P-256, like the
    /// proxies' keys).
    pub fn credentials(&self, sa: &str) -> anyhow::Result<Credentials> {
        let issuer = Issuer::load(&self.ca_dir).context("loading the issuer")?;
        let name = identity(sa);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating a key")?;
        let csr = rcgen::CertificateParams::new(vec![name.clone()])
            .and_then(|params| params.serialize_request(&key))
            .context("building a CSR")?;
        let issued = issuer
            .sign(csr.der(), &IdentityName::new(name.as_str()), CERT_LIFETIME)
            .map_err(|e| anyhow!("signing a certificate for {name}: {e}"))?;
        let mut chain = vec![issued.leaf];
        chain.extend(issued.intermediates);
        Ok(Credentials {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The control-plane thread: enters the pod, binds both listeners on the
/// pod's address, reports them on `ready` and serves until `shutdown`.
fn serve(
    netns: &Path,
    ip: IpAddr,
    service: IdentityService,
    discovery: strand_controller_grpc::Discovery<Index>,
    shutdown: oneshot::Receiver<()>,
    ready: &mpsc::Sender<anyhow::Result<(SocketAddr, SocketAddr)>>,
) -> anyhow::Result<()> {
    strand_sys::enter_netns(netns)
        .with_context(|| format!("entering network namespace {}", netns.display()))?;
    // One thread is plenty: after start-up the control plane only holds a
    // few idle watch streams.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the control plane's runtime")?;
    rt.block_on(async move {
        let identity = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .context("binding the identity service")?;
        let api = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .context("binding the discovery service")?;
        let addrs = (identity.local_addr()?, api.local_addr()?);
        let cert =
            ServerCertificate::new(strand_identity::service_identity(&TrustDomain::default()));
        tokio::spawn(strand_identity::serve(
            identity,
            service,
            cert,
            std::future::pending(),
        ));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(api);
        tokio::spawn(
            strand_controller_grpc::server()
                .add_routes(discovery.routes())
                .serve_with_incoming(incoming),
        );
        let _ = ready.send(Ok(addrs));
        // A dropped sender (strand-bench unwinding) stops it too.
        let _ = shutdown.await;
        discovery.shutdown();
        Ok(())
    })
}

/// `<sa>.default.serviceaccount.identity.linkerd.cluster.local`.
pub fn identity(sa: &str) -> String {
    TrustDomain::default()
        .service_account_identity(sa, NAMESPACE)
        .to_string()
}

fn env(name: &str, value: String) -> (String, String) {
    (name.to_string(), value)
}

/// A Service and its one pod, as `strand apply` would take them.
fn service_yaml(name: &str, vip: IpAddr, ports: &[u16], pod_ip: IpAddr, sa: &str) -> String {
    let service_ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{{name: p{p}, port: {p}, targetPort: {p}}}"))
        .collect();
    let container_ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{{containerPort: {p}}}"))
        .collect();
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  clusterIP: {vip}
  selector: {{app: {name}}}
  ports: [{service_ports}]
---
apiVersion: local.strand.io/v1alpha1
kind: Pod
metadata: {{name: {name}-0, namespace: {NAMESPACE}, labels: {{app: {name}}}}}
spec:
  workload: {name}
  serviceAccountName: {sa}
  ports: [{container_ports}]
status: {{podIP: {pod_ip}, ready: true, meshed: true}}
",
        service_ports = service_ports.join(", "),
        container_ports = container_ports.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_manifest_parses() {
        let yaml = service_yaml(
            "server",
            "10.96.0.10".parse().unwrap(),
            &[8080, 9090],
            "198.18.0.3".parse().unwrap(),
            "server",
        );
        let resources = parse_manifests(&yaml).unwrap();
        assert_eq!(resources.len(), 2, "{yaml}");
        let index = Index::new(CLUSTER_DOMAIN, TrustDomain::default());
        for r in resources {
            index.apply(r);
        }
        let services = index.services();
        assert_eq!(services.len(), 1);
        assert_eq!(index.pods().len(), 1);
    }

    #[test]
    fn identities_are_linkerds() {
        assert_eq!(
            identity("server"),
            "server.default.serviceaccount.identity.linkerd.cluster.local"
        );
    }
}
