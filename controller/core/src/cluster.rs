use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// What a local-mode control plane tells the rest of the host about itself:
/// written to `<state-dir>/cluster.json` at start, read by `strand run`,
/// `strand check` and `strand down`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalCluster {
    /// Prefix of pod network namespace names: `<name>_<namespace>_<pod>`.
    pub name: String,
    pub pid: u32,
    pub bridge: String,
    /// The bridge's address, pods' default gateway, where DNS and gRPC listen.
    pub gateway: Ipv4Addr,
    pub pod_cidr: String,
    pub pod_prefix_len: u8,
    pub service_cidr: String,
    pub cluster_domain: String,
    pub api_addr: SocketAddr,
    pub destination_addr: SocketAddr,
    pub policy_addr: SocketAddr,
    pub dns_addr: SocketAddr,
}

pub const CLUSTER_FILE: &str = "cluster.json";

// === impl LocalCluster ===

impl LocalCluster {
    pub fn load(state_dir: &Path) -> std::io::Result<LocalCluster> {
        let path = state_dir.join(CLUSTER_FILE);
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not valid: {e}", path.display()),
            )
        })
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = state_dir.join(CLUSTER_FILE);
        let tmp = state_dir.join(format!(".{CLUSTER_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("cluster info always serializes");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// The network namespace of a pod.
    pub fn pod_netns(&self, namespace: &str, pod: &str) -> String {
        format!("{}_{namespace}_{pod}", self.name)
    }

    /// The bridge-side veth of the pod with address `ip`: `st` and the
    /// address in hex, unique on the bridge and within IFNAMSIZ.
    pub fn host_veth(ip: Ipv4Addr) -> String {
        format!("st{:08x}", u32::from(ip))
    }

    /// `/etc/resolv.conf` for a pod in `namespace`: the control plane's DNS
    /// and Kubernetes' search list, so `web` and `web.default` resolve.
    pub fn resolv_conf(&self, namespace: &str) -> String {
        let d = &self.cluster_domain;
        format!(
            "nameserver {}\nsearch {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n",
            self.dns_addr.ip()
        )
    }
}
