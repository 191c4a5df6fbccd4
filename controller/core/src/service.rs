use crate::{FieldError, ObjectMeta, validate_dns_label};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// A `v1` Service: a name, ports, and a selector choosing its pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "ServiceStatus::is_empty")]
    pub status: ServiceStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub ports: Vec<ServicePort>,
    /// Pods whose labels include all of these are the service's endpoints.
    /// Empty: endpoints are managed elsewhere (none in local mode).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// The virtual IP. Left empty, the store allocates one from the service
    /// CIDR; `None` (the string "None") makes a headless service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// Accepted for compatibility; every type behaves as ClusterIP here.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    /// Defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<TargetPort>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// A port number, or the name of a pod's container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {}

fn default_protocol() -> String {
    "TCP".to_string()
}

// === impl Service ===

impl Service {
    /// The virtual IP, if one is assigned and the service is not headless.
    pub fn cluster_ip(&self) -> Option<IpAddr> {
        self.spec.cluster_ip.as_deref().and_then(|s| s.parse().ok())
    }

    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip.as_deref() == Some("None")
    }

    /// `<name>.<namespace>.svc.<cluster-domain>`
    pub fn fqdn(&self, cluster_domain: &str) -> String {
        format!(
            "{}.{}.svc.{}",
            self.metadata.name, self.metadata.namespace, cluster_domain
        )
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.spec.ports.iter().find(|p| p.port == port)
    }

    /// Ports marked opaque with Linkerd's `config.linkerd.io/opaque-ports`
    /// annotation (comma-separated numbers and ranges).
    pub fn opaque_ports(&self) -> Vec<u16> {
        self.metadata
            .annotations
            .get("config.linkerd.io/opaque-ports")
            .map(|v| parse_port_list(v))
            .unwrap_or_default()
    }

    /// True when `selector` matches `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.spec.selector.is_empty()
            && self
                .spec
                .selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        let ports = &self.spec.ports;
        if ports.is_empty() {
            return Err(FieldError::new(
                "spec.ports",
                "at least one port is required",
            ));
        }
        let mut seen_ports: HashMap<(u16, &str), usize> = HashMap::new();
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        for (i, p) in ports.iter().enumerate() {
            let field = |f: &str| format!("spec.ports[{i}].{f}");
            if p.port == 0 {
                return Err(FieldError::new(
                    field("port"),
                    "must be between 1 and 65535",
                ));
            }
            if !matches!(p.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
                return Err(FieldError::new(
                    field("protocol"),
                    format!("{:?} is not one of TCP, UDP, SCTP", p.protocol),
                ));
            }
            if let Some(j) = seen_ports.insert((p.port, p.protocol.as_str()), i) {
                return Err(FieldError::new(
                    field("port"),
                    format!(
                        "duplicate port {}/{} (also spec.ports[{j}])",
                        p.port, p.protocol
                    ),
                ));
            }
            match &p.name {
                Some(name) => {
                    validate_dns_label(&field("name"), name)?;
                    if let Some(j) = seen_names.insert(name, i) {
                        return Err(FieldError::new(
                            field("name"),
                            format!("duplicate port name {name:?} (also spec.ports[{j}])"),
                        ));
                    }
                }
                None if ports.len() > 1 => {
                    return Err(FieldError::new(
                        field("name"),
                        "is required when a service has more than one port",
                    ));
                }
                None => {}
            }
            match &p.target_port {
                Some(TargetPort::Number(0)) => {
                    return Err(FieldError::new(
                        field("targetPort"),
                        "must be between 1 and 65535",
                    ));
                }
                Some(TargetPort::Name(n)) => validate_dns_label(&field("targetPort"), n)?,
                _ => {}
            }
        }
        if let Some(ip) = self.spec.cluster_ip.as_deref()
            && !ip.is_empty()
            && ip != "None"
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(FieldError::new(
                "spec.clusterIP",
                format!("{ip:?} is not an IP address, \"None\" or empty"),
            ));
        }
        if let Some(v) = self
            .metadata
            .annotations
            .get("config.linkerd.io/opaque-ports")
            && let Err(reason) = try_parse_port_list(v)
        {
            return Err(FieldError::new(
                "metadata.annotations[\"config.linkerd.io/opaque-ports\"]",
                reason,
            ));
        }
        for (k, v) in &self.spec.selector {
            if v.len() > 63 {
                return Err(FieldError::new(
                    format!("spec.selector[{k:?}]"),
                    "values are at most 63 characters",
                ));
            }
        }
        Ok(())
    }
}

// === impl ServicePort ===

impl ServicePort {
    pub fn target(&self) -> TargetPort {
        self.target_port
            .clone()
            .unwrap_or(TargetPort::Number(self.port))
    }
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

// === impl ServiceStatus ===

impl ServiceStatus {
    fn is_empty(&self) -> bool {
        true
    }
}

/// Parses `"25,587,4000-4010"`; invalid parts are skipped (validation rejects them first).
pub(crate) fn parse_port_list(v: &str) -> Vec<u16> {
    try_parse_port_list(v).unwrap_or_default()
}

fn try_parse_port_list(v: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?} is not a port or a range like 4000-4010");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u16 = a.trim().parse().map_err(|_| bad())?;
                let b: u16 = b.trim().parse().map_err(|_| bad())?;
                if a == 0 || a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => {
                let p: u16 = part.parse().map_err(|_| bad())?;
                if p == 0 {
                    return Err(bad());
                }
                out.push(p);
            }
        }
    }
    Ok(out)
}
