use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

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
    /// Where proxies get certificates (`Identity/Certify`, over TLS);
    /// `0.0.0.0:0` in files from before identity.
    #[serde(default = "unspecified")]
    pub identity_addr: SocketAddr,
    /// The name the identity service's certificate proves; empty when the
    /// control plane serves no identity.
    #[serde(default)]
    pub identity_server_name: String,
    /// The CA files: `ca.crt`, `issuer.crt`, `issuer.key`, `token.key`.
    #[serde(default)]
    pub identity_dir: PathBuf,
    /// The metrics API (`strand viz`); `0.0.0.0:0` in files from before it.
    #[serde(default = "unspecified")]
    pub metrics_api_addr: SocketAddr,
    /// The trace collector (OTLP/gRPC) proxies send their spans to, on the
    /// bridge address; `0.0.0.0:0` in files from before it.
    #[serde(default = "unspecified")]
    pub trace_collector_addr: SocketAddr,
}

pub const CLUSTER_FILE: &str = "cluster.json";

/// Where a local-mode control plane keeps its CA files, under its state
/// directory.
pub const IDENTITY_DIR: &str = "identity";

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

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

    /// Whether the control plane serves identity (files written before it
    /// did have no identity address).
    pub fn identity_enabled(&self) -> bool {
        self.identity_addr.port() != 0 && !self.identity_server_name.is_empty()
    }

    /// Whether the control plane collects traces (files written before it
    /// did have no collector address).
    pub fn tracing_enabled(&self) -> bool {
        self.trace_collector_addr.port() != 0
    }

    /// Files that belong to one pod on this host (its identity token):
    /// `<state-dir>/pods/<namespace>_<pod>`.
    pub fn pod_state_dir(state_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
        state_dir.join("pods").join(format!("{namespace}_{pod}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_before_identity_still_loads() {
        let old = r#"{"name":"strand","pid":7,"bridge":"strand0","gateway":"10.42.0.1",
            "podCidr":"10.42.0.0/16","podPrefixLen":16,"serviceCidr":"10.96.0.0/16",
            "clusterDomain":"cluster.local","apiAddr":"127.0.0.1:8089",
            "destinationAddr":"10.42.0.1:8086","policyAddr":"10.42.0.1:8090",
            "dnsAddr":"10.42.0.1:53"}"#;
        let c: LocalCluster = serde_json::from_str(old).expect("parses");
        assert!(!c.identity_enabled());
        assert!(!c.tracing_enabled());
        assert_eq!(c.identity_dir, PathBuf::new());

        let with = LocalCluster {
            identity_addr: "10.42.0.1:8080".parse().expect("addr"),
            identity_server_name:
                "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local".into(),
            identity_dir: "/var/lib/strand/identity".into(),
            trace_collector_addr: "10.42.0.1:4317".parse().expect("addr"),
            ..c
        };
        assert!(with.identity_enabled());
        assert!(with.tracing_enabled());
        let text = serde_json::to_string(&with).expect("json");
        assert!(
            text.contains(r#""identityAddr":"10.42.0.1:8080""#),
            "{text}"
        );
        assert!(
            text.contains(r#""traceCollectorAddr":"10.42.0.1:4317""#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<LocalCluster>(&text).expect("parses"),
            with
        );
    }

    #[test]
    fn pod_state_dirs_are_per_namespace_and_pod() {
        assert_eq!(
            LocalCluster::pod_state_dir(Path::new("/var/lib/strand"), "shop", "web-1"),
            Path::new("/var/lib/strand/pods/shop_web-1")
        );
    }
}
