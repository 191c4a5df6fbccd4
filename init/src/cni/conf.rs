//! The network configuration on stdin: the specification's fields and
//! Linkerd's `"linkerd"` section, turned into strand-init's [`Config`].

use serde_json::{Map, Value};

use super::{CniError, SUPPORTED_VERSIONS, code};
use crate::ports::{PortList, PortRange};
use crate::rules::{DEFAULT_ADMIN_PORT, DEFAULT_CONTROL_PORT};
use crate::subnets::SubnetList;
use crate::{Config, Mode};

/// A parsed network configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConf {
    /// `cniVersion`.
    pub version: String,
    /// `name`: the network's name.
    pub name: String,
    /// The rules to install.
    pub config: Config,
    /// The iptables backend (`"iptables-mode"`), or the system's default.
    pub mode: Option<Mode>,
    /// `"simulate": true`: log the rules, change nothing.
    pub simulate: bool,
    /// `prevResult`, passed on unchanged (chained plugins must return it).
    pub prev_result: Option<Value>,
}

// === impl NetConf ===

impl NetConf {
    /// Parses the network configuration from stdin's bytes.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "the network configuration on stdin is not JSON",
                e.to_string(),
            )
        })?;
        let Value::Object(mut obj) = value else {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "the network configuration must be a JSON object",
                "",
            ));
        };
        let version = match obj.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            Some(other) => {
                return Err(invalid("cniVersion must be a string", other.to_string()));
            }
            None => "0.1.0".to_string(),
        };
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {version} is not supported"),
                format!("strand-cni supports {}", SUPPORTED_VERSIONS.join(", ")),
            ));
        }
        let name = match obj.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(invalid("the network configuration has no name", "")),
        };
        let prev_result = obj.remove("prevResult").filter(|v| !v.is_null());
        let linkerd = match obj.remove("linkerd") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(invalid("\"linkerd\" must be an object", other.to_string())),
        };
        let section = Section::parse(linkerd)?;
        Ok(NetConf {
            version,
            name,
            config: section.config,
            mode: section.mode,
            simulate: section.simulate,
            prev_result,
        })
    }

    /// What ADD prints: the previous plugin's result in this version, or an
    /// empty result when the plugin is not chained.
    pub fn result(&self) -> String {
        let mut result = match &self.prev_result {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        result.insert("cniVersion".into(), self.version.clone().into());
        Value::Object(result).to_string()
    }
}

fn invalid(msg: &str, details: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg, details)
}

/// The `"linkerd"` section: Linkerd's field names, strand-init's defaults.
struct Section {
    config: Config,
    mode: Option<Mode>,
    simulate: bool,
}

impl Section {
    fn parse(mut m: Map<String, Value>) -> Result<Section, CniError> {
        let mut config = Config::default();
        if let Some(v) = m.remove("incoming-proxy-port") {
            config.inbound_proxy_port = port("incoming-proxy-port", &v)?;
        }
        if let Some(v) = m.remove("outgoing-proxy-port") {
            config.outbound_proxy_port = port("outgoing-proxy-port", &v)?;
        }
        if let Some(v) = m.remove("proxy-uid") {
            config.proxy_uid = v
                .as_u64()
                .and_then(|u| u32::try_from(u).ok())
                .ok_or_else(|| invalid("proxy-uid must be a user id", v.to_string()))?;
        }
        let always = PortList::new([
            PortRange::single(DEFAULT_CONTROL_PORT),
            PortRange::single(DEFAULT_ADMIN_PORT),
        ]);
        if let Some(v) = m.remove("inbound-ports-to-ignore") {
            config.inbound_ports_to_ignore = always.union(&ports("inbound-ports-to-ignore", &v)?);
        }
        if let Some(v) = m.remove("outbound-ports-to-ignore") {
            config.outbound_ports_to_ignore = ports("outbound-ports-to-ignore", &v)?;
        }
        if let Some(v) = m.remove("subnets-to-ignore") {
            config.inbound_subnets_to_ignore = subnets("subnets-to-ignore", &v)?;
        }
        if let Some(v) = m.remove("outbound-subnets-to-ignore") {
            config.outbound_subnets_to_ignore = subnets("outbound-subnets-to-ignore", &v)?;
        }
        if let Some(v) = m.remove("ports-to-redirect")
            && !ports("ports-to-redirect", &v)?.is_empty()
        {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "ports-to-redirect is not supported",
                "strand captures every inbound port except the ignored ones; list the others \
                 in inbound-ports-to-ignore",
            ));
        }
        if let Some(v) = m.remove("proxy-gid")
            && !v.is_null()
        {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "proxy-gid is not supported",
                "the proxy is exempt from capture by its user id (proxy-uid)",
            ));
        }
        let ipv6 = flag(&mut m, "ipv6")?;
        if let Some(ipv6) = ipv6 {
            config.ipv6 = ipv6;
        }
        let simulate = flag(&mut m, "simulate")?.unwrap_or(false);
        // iptables-restore always waits for the xtables lock (`-w`).
        flag(&mut m, "use-wait-flag")?;
        let mode = match m.remove("iptables-mode") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "legacy" => Some(Mode::Legacy),
            Some(Value::String(s)) if s == "nft" => Some(Mode::Nft),
            Some(other) => {
                return Err(invalid(
                    "iptables-mode must be \"legacy\" or \"nft\"",
                    other.to_string(),
                ));
            }
        };
        if let Some(unknown) = m.keys().next() {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!("unknown field \"linkerd\".\"{unknown}\""),
                "known: incoming-proxy-port, outgoing-proxy-port, proxy-uid, \
                 inbound-ports-to-ignore, outbound-ports-to-ignore, subnets-to-ignore, \
                 outbound-subnets-to-ignore, ports-to-redirect, simulate, use-wait-flag, \
                 iptables-mode, ipv6",
            ));
        }
        Ok(Section {
            config,
            mode,
            simulate,
        })
    }
}

fn port(field: &str, v: &Value) -> Result<u16, CniError> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(&format!("{field} must be a port (1-65535)"), v.to_string()))
}

/// A list of ports as Linkerd writes it: an array of numbers or strings
/// (`["4191", "4190"]`, ranges `"8000-8010"`), or one comma-separated string.
fn ports(field: &str, v: &Value) -> Result<PortList, CniError> {
    list_items(field, v)?
        .iter()
        .map(|item| {
            item.parse::<PortList>().map_err(|e| {
                invalid(
                    &format!("{field}: {item:?} is not a port list"),
                    e.to_string(),
                )
            })
        })
        .collect()
}

fn subnets(field: &str, v: &Value) -> Result<Vec<crate::subnets::Cidr>, CniError> {
    let mut out = Vec::new();
    for item in list_items(field, v)? {
        let list = item.parse::<SubnetList>().map_err(|e| {
            invalid(
                &format!("{field}: {item:?} is not a list of subnets"),
                e.to_string(),
            )
        })?;
        out.extend(list.0);
    }
    Ok(out)
}

fn list_items(field: &str, v: &Value) -> Result<Vec<String>, CniError> {
    let item = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(invalid(
            &format!("{field} must list numbers or strings"),
            other.to_string(),
        )),
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(item).collect(),
        other => Ok(vec![item(other)?]),
    }
}

fn flag(m: &mut Map<String, Value>, field: &str) -> Result<Option<bool>, CniError> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        // Linkerd's templates sometimes render booleans as strings.
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(invalid(
            &format!("{field} must be true or false"),
            other.to_string(),
        )),
    }
}
