//! `strand-cni`: a chained CNI plugin that installs the same iptables rules
//! as `strand-init` in a container's network namespace, so that the
//! container itself needs no `NET_ADMIN` (Linkerd's `linkerd-cni`).
//!
//! ```text
//!  runtime ──ADD──► bridge (or any interface plugin) ──prevResult──► strand-cni
//!                                                                   │ enter CNI_NETNS
//!                                                                   └ iptables-restore (STRAND_INBOUND/OUTPUT)
//!  runtime ◄──────────────────────────── prevResult, unchanged ─────┘
//! ```
//!
//! The plugin follows the CNI specification (versions 0.3.0 to 1.1.0): the
//! command and the container in `CNI_*` environment variables, the network
//! configuration on stdin, a result or an error object on stdout. It reads
//! Linkerd's configuration (`"linkerd": {"incoming-proxy-port": ...}`), so a
//! `linkerd-cni` network configuration works with `"type": "strand-cni"`.
//!
//! Everything here is pure except [`Capture`], which the binary implements
//! with the real namespace and iptables and tests replace.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::Family;

mod conf;

pub use conf::NetConf;

/// The specification versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The version of error objects written before the configuration's own
/// version is known.
const FALLBACK_VERSION: &str = "1.0.0";

/// What `strand-cni --help` prints.
pub const HELP: &str = r#"strand-cni: a chained CNI plugin that sends a container's TCP traffic through its strand proxy

A container runtime runs it after the plugin that sets up the interface, with
CNI_COMMAND (ADD, DEL, CHECK, VERSION, STATUS, GC), CNI_CONTAINERID, CNI_NETNS
and CNI_IFNAME set and the network configuration on stdin. ADD installs
strand-init's iptables rules in CNI_NETNS and returns the previous plugin's
result unchanged; DEL removes them (and succeeds when the namespace is gone);
CHECK fails when they are missing or changed. Errors are CNI error objects on
stdout (exit 1): 1 version, 2 unsupported field, 3 namespace unknown, 4 bad
environment, 5 I/O, 6 undecodable configuration, 7 invalid configuration,
100 iptables failed, 101 rules missing (CHECK).

Configuration: Linkerd's "linkerd" section, every field optional (strand-init's
defaults shown):

  {
    "cniVersion": "1.0.0",
    "name": "pods",
    "plugins": [
      {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}},
      {"type": "strand-cni",
       "linkerd": {
         "incoming-proxy-port": 4143,
         "outgoing-proxy-port": 4140,
         "proxy-uid": 2102,
         "inbound-ports-to-ignore": ["4190", "4191"],
         "outbound-ports-to-ignore": [],
         "subnets-to-ignore": [],
         "outbound-subnets-to-ignore": [],
         "iptables-mode": "legacy",
         "ipv6": true,
         "simulate": false}}
    ]
  }

The proxy's admin (4191) and control (4190) ports are always left out of
capture. "simulate": true logs the rules to stderr and changes nothing.
Install the binary in the runtime's CNI_PATH (e.g. /opt/cni/bin) and the
list in its configuration directory (e.g. /etc/cni/net.d).
"#;

/// Error codes of the specification (section "Error").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// First plugin-specific code: the iptables tools failed or are missing.
    pub const IPTABLES_FAILED: u32 = 100;
    /// CHECK found the rules missing or different.
    pub const RULES_MISSING: u32 = 101;
}

/// The operation the runtime asks for (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Capture the container's traffic.
    Add,
    /// Remove the capture (the namespace may already be gone).
    Del,
    /// Verify that the capture is still in place.
    Check,
    /// Report the supported versions.
    Version,
    /// Report whether the plugin is ready (1.1.0).
    Status,
    /// Collect garbage (1.1.0): the rules live and die with each namespace.
    Gc,
}

/// The `CNI_*` environment of one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: the path of the container's network namespace.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
}

/// An error, as the specification's error object: written to stdout by the
/// binary, which then exits non-zero.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// One of [`code`].
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// What exactly went wrong.
    pub details: String,
}

/// The side effects: entering the container's namespace and driving its
/// iptables. [`run`] calls them; the binary implements them for real.
pub trait Capture {
    /// Installs (`install`) or removes the rules of `conf` in the network
    /// namespace at `netns`; returns what was applied, per family.
    fn apply(&self, netns: &Path, conf: &NetConf, install: bool) -> Result<Vec<Family>, CniError>;

    /// The `iptables-save -t nat` output of each of `conf`'s families in
    /// the namespace at `netns`.
    fn saved(&self, netns: &Path, conf: &NetConf) -> Result<Vec<(Family, String)>, CniError>;

    /// Whether a network namespace exists at `netns`.
    fn netns_exists(&self, netns: &Path) -> bool;
}

/// The real [`Capture`]: this process enters the namespace (`setns`), then
/// runs the iptables tools there as `strand-init` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemCapture;

// === impl Env ===

impl Env {
    /// Reads the environment through `var`, as the runtime set it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        let command = match non_empty("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "unknown CNI_COMMAND",
                    format!("{other:?}; expected ADD, DEL, CHECK, VERSION, STATUS or GC"),
                ));
            }
            None => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "CNI_COMMAND is not set",
                    "strand-cni is a CNI plugin: a container runtime runs it with CNI_COMMAND, \
                     CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME set and the network \
                     configuration on stdin",
                ));
            }
        };
        Ok(Env {
            command,
            container_id: non_empty("CNI_CONTAINERID"),
            netns: non_empty("CNI_NETNS").map(PathBuf::from),
            ifname: non_empty("CNI_IFNAME"),
        })
    }

    /// `CNI_NETNS`, which ADD and CHECK need, when the namespace exists.
    fn existing_netns(&self, capture: &dyn Capture) -> Result<&Path, CniError> {
        let netns = self.require_netns()?;
        if capture.netns_exists(netns) {
            Ok(netns)
        } else {
            Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "the container's network namespace does not exist",
                netns.display().to_string(),
            ))
        }
    }

    /// `CNI_NETNS`, which ADD and CHECK need.
    fn require_netns(&self) -> Result<&Path, CniError> {
        for (name, value) in [
            ("CNI_CONTAINERID", self.container_id.is_some()),
            ("CNI_IFNAME", self.ifname.is_some()),
            ("CNI_NETNS", self.netns.is_some()),
        ] {
            if !value {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("{name} is not set"),
                    "",
                ));
            }
        }
        Ok(self.netns.as_deref().unwrap_or(Path::new("")))
    }
}

// === impl CniError ===

impl CniError {
    /// An error with `code`, `msg` and `details`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error object for `version` (the configuration's, when known).
    pub fn to_json(&self, version: Option<&str>) -> String {
        let mut obj = Map::new();
        obj.insert(
            "cniVersion".into(),
            version.unwrap_or(FALLBACK_VERSION).into(),
        );
        obj.insert("code".into(), self.code.into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            obj.insert("details".into(), self.details.clone().into());
        }
        Value::Object(obj).to_string()
    }

    fn iptables(e: &crate::Error) -> CniError {
        CniError::new(code::IPTABLES_FAILED, "iptables failed", e.to_string())
    }
}

impl From<&crate::Error> for CniError {
    fn from(e: &crate::Error) -> Self {
        CniError::iptables(e)
    }
}

// === impl SystemCapture ===

impl SystemCapture {
    fn enter(netns: &Path) -> Result<(), CniError> {
        strand_sys::enter_netns(netns).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                "cannot enter the container's network namespace",
                format!("{}: {e}", netns.display()),
            )
        })
    }
}

impl Capture for SystemCapture {
    fn apply(&self, netns: &Path, conf: &NetConf, install: bool) -> Result<Vec<Family>, CniError> {
        Self::enter(netns)?;
        let action = if install {
            crate::Action::Install
        } else {
            crate::Action::Clear
        };
        let iptables = crate::SystemIptables::new(conf.mode);
        crate::apply(&conf.config, action, &iptables)
            .map(|applied| applied.iter().map(|a| a.family).collect())
            .map_err(|e| CniError::from(&e))
    }

    fn saved(&self, netns: &Path, conf: &NetConf) -> Result<Vec<(Family, String)>, CniError> {
        use crate::Iptables;
        Self::enter(netns)?;
        let iptables = crate::SystemIptables::new(conf.mode);
        let families = conf.config.families();
        iptables
            .preflight(&families)
            .map_err(|e| CniError::from(&e))?;
        families
            .into_iter()
            .map(|f| Ok((f, iptables.save(f).map_err(|e| CniError::from(&e))?)))
            .collect()
    }

    fn netns_exists(&self, netns: &Path) -> bool {
        netns.exists()
    }
}

/// What one invocation printed: stdout on success (may be empty), plus a
/// line for the runtime's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What goes to stdout.
    pub stdout: String,
    /// What goes to stderr (the runtime keeps it in its log).
    pub log: String,
}

/// The version object VERSION prints.
pub fn version_json() -> String {
    serde_json::json!({
        "cniVersion": SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1],
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

/// Runs one invocation. On error, the caller prints
/// [`CniError::to_json`] with the configuration's version (the second
/// value, when it was read) and exits 1.
pub fn run(
    env: &Env,
    stdin: &[u8],
    capture: &dyn Capture,
) -> Result<Outcome, (CniError, Option<String>)> {
    // VERSION needs no configuration (the runtime may send none).
    if env.command == Command::Version {
        return Ok(Outcome {
            stdout: version_json(),
            log: String::new(),
        });
    }
    let conf = NetConf::parse(stdin).map_err(|e| (e, None))?;
    let version = Some(conf.version.clone());
    let fail = |e: CniError| (e, version.clone());
    let container = env.container_id.as_deref().unwrap_or("-");
    match env.command {
        // VERSION was answered above; STATUS: ready whenever it can run;
        // GC: the rules live and die with each namespace.
        Command::Version | Command::Status | Command::Gc => Ok(Outcome::default()),
        Command::Add => {
            let netns = env.existing_netns(capture).map_err(fail)?;
            if conf.simulate {
                let rules = crate::cli::dry_run(
                    &conf.config,
                    crate::Action::Install,
                    &crate::SystemIptables::new(conf.mode),
                );
                return Ok(Outcome {
                    stdout: conf.result(),
                    log: format!(
                        "strand-cni: simulate: container {container}: nothing changed; the rules:\n{rules}"
                    ),
                });
            }
            let families = capture.apply(netns, &conf, true).map_err(fail)?;
            Ok(Outcome {
                stdout: conf.result(),
                log: format!(
                    "strand-cni: container {container} ({}): {} rules installed; inbound TCP -> :{}, \
                     outbound TCP -> :{} (uid {} exempt)",
                    netns.display(),
                    family_names(&families),
                    conf.config.inbound_proxy_port,
                    conf.config.outbound_proxy_port,
                    conf.config.proxy_uid,
                ),
            })
        }
        Command::Del => {
            // DEL must succeed when there is nothing left to remove.
            let Some(netns) = env.netns.as_deref().filter(|p| capture.netns_exists(p)) else {
                return Ok(Outcome {
                    stdout: String::new(),
                    log: format!(
                        "strand-cni: container {container}: network namespace gone, nothing to remove"
                    ),
                });
            };
            if conf.simulate {
                return Ok(Outcome::default());
            }
            let families = capture.apply(netns, &conf, false).map_err(fail)?;
            Ok(Outcome {
                stdout: String::new(),
                log: format!(
                    "strand-cni: container {container}: {} rules removed",
                    family_names(&families)
                ),
            })
        }
        Command::Check => {
            let netns = env.existing_netns(capture).map_err(fail)?;
            if conf.simulate {
                return Ok(Outcome::default());
            }
            let mut missing = Vec::new();
            for (family, saved) in capture.saved(netns, &conf).map_err(fail)? {
                for rule in conf.config.missing_rules(family, &saved) {
                    missing.push(format!("{family}: {rule}"));
                }
            }
            if missing.is_empty() {
                Ok(Outcome::default())
            } else {
                Err(fail(CniError::new(
                    code::RULES_MISSING,
                    "the capture rules are missing or changed",
                    missing.join("; "),
                )))
            }
        }
    }
}

fn family_names(families: &[Family]) -> String {
    families
        .iter()
        .map(Family::name)
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests;
