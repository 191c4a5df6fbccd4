//! The local control plane the metrics API lists pods from, in this
//! process: a real `Store` in a temporary directory behind a real
//! `ApiServer` on `127.0.0.1:0`, holding the workloads, services and meshed
//! pods the proxies belong to.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use strand_controller_core::{PodStatus, WORKLOAD_LABEL};
use strand_controller_local::{AdminToken, ApiClient, ApiServer, Store, StoreConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "bench";

/// Pods per workload: `--proxies 100` makes ten workloads of ten replicas,
/// a small mesh's shape.
pub const REPLICAS: usize = 10;

/// The application port every pod serves and every service exposes.
pub const APP_PORT: u16 = 8080;

/// The store and its API, stopped on drop.
pub struct Cluster {
    pub api_addr: SocketAddr,
    /// Where the admin token is, for `strand-controller metrics-api --state-dir`.
    pub state_dir: PathBuf,
    client: ApiClient,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

/// One registered pod, as the proxies' metrics name it.
#[derive(Clone, Debug)]
pub struct MeshPod {
    pub name: String,
    /// Index into the workloads (`app-<w>`).
    pub workload: usize,
    /// Allocated by the store.
    pub ip: IpAddr,
}

// === impl Cluster ===

impl Cluster {
    /// Opens a store in `state_dir` and serves its management API.
    pub async fn start(state_dir: &Path) -> anyhow::Result<Cluster> {
        let store = Store::open(StoreConfig::new(state_dir))
            .await
            .with_context(|| format!("opening the store in {}", state_dir.display()))?;
        let token = AdminToken::load_or_create(state_dir).context("preparing the admin token")?;
        let api = ApiServer::bind(([127, 0, 0, 1], 0).into(), store, token.clone())
            .await
            .context("binding the management API")?;
        let api_addr = api.local_addr();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(api.run(shutdown.clone()));
        Ok(Cluster {
            api_addr,
            state_dir: state_dir.to_path_buf(),
            client: ApiClient::connect(api_addr, token),
            shutdown,
            server: Some(server),
        })
    }

    /// Creates a workload and a service per [`REPLICAS`] pods, then one
    /// pod per admin address, and marks each meshed and ready with its
    /// proxy's admin address, as `strand run` does.
    pub async fn register(&self, admin_addrs: &[SocketAddr]) -> anyhow::Result<Vec<MeshPod>> {
        let workloads = admin_addrs.len().div_ceil(REPLICAS);
        let mut docs: Vec<String> = (0..workloads)
            .flat_map(|w| [workload(w, REPLICAS), service(w)])
            .collect();
        docs.extend((0..admin_addrs.len()).map(pod));
        self.client
            .apply(&docs.join("\n---\n"))
            .await
            .context("applying the workloads, services and pods")?;
        let mut pods = Vec::with_capacity(admin_addrs.len());
        for (i, addr) in admin_addrs.iter().enumerate() {
            let status = PodStatus {
                ready: true,
                meshed: true,
                proxy_admin_addr: Some(*addr),
                ..PodStatus::default()
            };
            let name = pod_name(i);
            let pod = self
                .client
                .update_pod_status(NAMESPACE, &name, &status)
                .await
                .with_context(|| format!("updating the status of pod {name}"))?;
            let ip = pod
                .status
                .pod_ip
                .with_context(|| format!("the store gave pod {name} no address"))?;
            pods.push(MeshPod {
                name,
                workload: i / REPLICAS,
                ip,
            });
        }
        Ok(pods)
    }

    /// Stops the API and waits for it, so that the store closes (and
    /// releases its directory) before the directory is removed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub fn workload_name(w: usize) -> String {
    format!("app-{w}")
}

pub fn pod_name(i: usize) -> String {
    format!("{}-{}", workload_name(i / REPLICAS), i % REPLICAS)
}

/// The TLS identity of workload `w`'s pods (each workload has its own
/// service account).
pub fn identity(w: usize) -> String {
    format!(
        "{}.{NAMESPACE}.serviceaccount.identity.linkerd.cluster.local",
        workload_name(w)
    )
}

/// `app-<w>.bench.svc.cluster.local:8080`: what clients of workload `w` ask for.
pub fn authority(w: usize) -> String {
    format!(
        "{}.{NAMESPACE}.svc.cluster.local:{APP_PORT}",
        workload_name(w)
    )
}

fn workload(w: usize, replicas: usize) -> String {
    json!({
        "apiVersion": "local.strand.io/v1alpha1",
        "kind": "Workload",
        "metadata": {"name": workload_name(w), "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "serviceAccountName": workload_name(w),
            "ports": [{"containerPort": APP_PORT}],
        },
    })
    .to_string()
}

fn service(w: usize) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": workload_name(w), "namespace": NAMESPACE},
        "spec": {"selector": {"app": workload_name(w)}, "ports": [{"port": APP_PORT}]},
    })
    .to_string()
}

fn pod(i: usize) -> String {
    let w = workload_name(i / REPLICAS);
    json!({
        "apiVersion": "local.strand.io/v1alpha1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i),
            "namespace": NAMESPACE,
            "labels": {"app": w, WORKLOAD_LABEL: w},
        },
        "spec": {
            "workload": w,
            "serviceAccountName": w,
            "ports": [{"containerPort": APP_PORT}],
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_controller_core::{Resource, parse_manifests};

    #[test]
    fn manifests_parse() {
        let docs = [workload(3, REPLICAS), service(3), pod(37)].join("\n---\n");
        let parsed = parse_manifests(&docs).expect("valid manifests");
        assert!(matches!(
            parsed.as_slice(),
            [
                Resource::Workload(_),
                Resource::Service(_),
                Resource::Pod(_)
            ]
        ));
        let Resource::Pod(p) = &parsed[2] else {
            unreachable!()
        };
        assert_eq!(p.metadata.name, "app-3-7");
        assert_eq!(p.spec.workload, "app-3");
        assert_eq!(p.spec.service_account_name, "app-3");
    }
}
