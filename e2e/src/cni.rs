//! A small CNI runtime for the tests, doing what a container runtime's
//! libcni does with a network configuration list: run each plugin with the
//! `CNI_*` environment and its configuration on stdin, ADD in order with the
//! previous plugin's result, DEL in reverse order.
//!
//! Interface plugins (Debian's `containernetworking-plugins`) run inside the
//! test network's bridge namespace, so the "host" side of the pod's veth and
//! the IPAM state stay inside the test's own namespaces and directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// Where Debian installs the reference plugins.
pub const DEBIAN_PLUGIN_DIR: &str = "/usr/lib/cni";

/// One plugin of a list: its binary, its configuration (without `name` and
/// `cniVersion`, which come from the list), and the namespace it runs in
/// (`None`: the test's own).
pub struct Plugin {
    pub binary: PathBuf,
    pub config: Value,
    pub host_netns: Option<String>,
}

/// A network configuration list for one container.
pub struct Chain {
    pub name: String,
    pub version: String,
    pub plugins: Vec<Plugin>,
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
}

/// What one plugin invocation returned.
#[derive(Debug)]
pub struct Invocation {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

// === impl Invocation ===

impl Invocation {
    /// stdout as JSON (the result, or the error object on failure).
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("plugin stdout is not JSON: {:?}", self.stdout))
    }
}

// === impl Chain ===

impl Chain {
    /// ADD through every plugin in order; the last plugin's result.
    pub fn add(&self) -> anyhow::Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let out = self.invoke(plugin, "ADD", prev.as_ref())?;
            if !out.success {
                bail!(
                    "ADD {} failed: {}\n{}",
                    plugin.binary.display(),
                    out.stdout,
                    out.stderr
                );
            }
            prev = Some(out.json()?);
        }
        prev.context("an empty chain")
    }

    /// DEL through every plugin in reverse order; every failure reported.
    pub fn del(&self) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for plugin in self.plugins.iter().rev() {
            let out = self.invoke(plugin, "DEL", None)?;
            if !out.success {
                failed.push(format!("{}: {}", plugin.binary.display(), out.stdout));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("DEL failed: {}", failed.join("; "))
        }
    }

    /// Runs one plugin of the chain with `command`, giving it `prev` as
    /// `prevResult`.
    pub fn invoke(
        &self,
        plugin: &Plugin,
        command: &str,
        prev: Option<&Value>,
    ) -> anyhow::Result<Invocation> {
        let mut config = match &plugin.config {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        config.insert("name".into(), self.name.clone().into());
        config.insert("cniVersion".into(), self.version.clone().into());
        if let Some(prev) = prev {
            config.insert("prevResult".into(), prev.clone());
        }
        let stdin = Value::Object(config).to_string();
        invoke_raw(
            &plugin.binary,
            plugin.host_netns.as_deref(),
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &self.container_id),
                ("CNI_NETNS", &self.netns.display().to_string()),
                ("CNI_IFNAME", &self.ifname),
                ("CNI_PATH", DEBIAN_PLUGIN_DIR),
            ],
            stdin.as_bytes(),
        )
    }
}

/// Runs `binary` (inside `netns` when given) with exactly `env` (plus
/// `PATH`) and `stdin`, and collects its output.
pub fn invoke_raw(
    binary: &Path,
    netns: Option<&str>,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> anyhow::Result<Invocation> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin may stop reading (and exit) before the end of its input.
        match input.write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("writing the plugin's stdin");
            }
            _ => {}
        }
    }
    let out = child.wait_with_output().context("waiting for the plugin")?;
    Ok(Invocation {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
