use crate::{
    FieldError, IdentityName, ObjectMeta, TrustDomain, validate_dns_label, validate_dns_subdomain,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Label set on every pod naming the workload that owns it.
pub const WORKLOAD_LABEL: &str = "strand.io/workload";

/// Local mode's counterpart of a Deployment: a named set of replicas of one
/// command, created by `strand run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub metadata: ObjectMeta,
    pub spec: WorkloadSpec,
    #[serde(default)]
    pub status: WorkloadStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default = "default_sa")]
    pub service_account_name: String,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    /// The command line, for display.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub ready_replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
}

/// One running replica: a process in its own network namespace with a proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The owning workload's name (same namespace).
    pub workload: String,
    #[serde(default = "default_sa")]
    pub service_account_name: String,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<IpAddr>,
    /// Ready pods are endpoints; a pod being removed turns not-ready first.
    #[serde(default)]
    pub ready: bool,
    /// A proxy runs beside the process (so peers may speak HTTP/2 and mTLS to it).
    #[serde(default)]
    pub meshed: bool,
    /// Where the pod's proxy serves `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_admin_addr: Option<SocketAddr>,
    /// The host process id of the application, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

fn one() -> u32 {
    1
}

fn default_sa() -> String {
    "default".to_string()
}

fn validate_ports(ports: &[ContainerPort], field: &str) -> Result<(), FieldError> {
    let mut seen: HashMap<u16, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, p) in ports.iter().enumerate() {
        if p.container_port == 0 {
            return Err(FieldError::new(
                format!("{field}[{i}].containerPort"),
                "must be between 1 and 65535",
            ));
        }
        if let Some(j) = seen.insert(p.container_port, i) {
            return Err(FieldError::new(
                format!("{field}[{i}].containerPort"),
                format!("duplicate port {} (also {field}[{j}])", p.container_port),
            ));
        }
        if let Some(name) = &p.name {
            validate_dns_label(&format!("{field}[{i}].name"), name)?;
            if let Some(j) = names.insert(name, i) {
                return Err(FieldError::new(
                    format!("{field}[{i}].name"),
                    format!("duplicate port name {name:?} (also {field}[{j}])"),
                ));
            }
        }
    }
    Ok(())
}

// === impl Workload ===

impl Workload {
    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate_dns_subdomain("spec.serviceAccountName", &self.spec.service_account_name)?;
        validate_ports(&self.spec.ports, "spec.ports")
    }
}

// === impl Pod ===

impl Pod {
    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate_dns_subdomain("spec.workload", &self.spec.workload)?;
        validate_dns_subdomain("spec.serviceAccountName", &self.spec.service_account_name)?;
        validate_ports(&self.spec.ports, "spec.ports")
    }

    /// The port number a service's target port names on this pod.
    pub fn resolve_port(&self, target: &crate::TargetPort) -> Option<u16> {
        match target {
            crate::TargetPort::Number(n) => Some(*n),
            crate::TargetPort::Name(name) => self
                .spec
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port),
        }
    }

    /// The identity the pod's proxy proves, when it is meshed.
    pub fn identity(&self, trust: &TrustDomain) -> Option<IdentityName> {
        self.status.meshed.then(|| self.workload_identity(trust))
    }

    /// The identity the pod's proxy is certified as, from its service
    /// account, whether or not it is meshed yet (its proxy asks for a
    /// certificate before the pod turns meshed and ready).
    pub fn workload_identity(&self, trust: &TrustDomain) -> IdentityName {
        trust.service_account_identity(&self.spec.service_account_name, &self.metadata.namespace)
    }
}
