//! What every command needs: where the state is and how to reach the API.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use strand_controller_core::LocalCluster;
use strand_controller_local::ApiClient;

/// The management API's default address (loopback only).
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8089";

#[derive(Clone, Debug)]
pub struct Ctx {
    state_dir: PathBuf,
    api_addr: Option<SocketAddr>,
}

// === impl Ctx ===

impl Ctx {
    pub fn new(state_dir: Option<PathBuf>, api_addr: Option<SocketAddr>) -> Ctx {
        Ctx {
            state_dir: state_dir.unwrap_or_else(default_state_dir),
            api_addr,
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The running control plane's `cluster.json`.
    pub fn cluster(&self) -> anyhow::Result<LocalCluster> {
        LocalCluster::load(&self.state_dir).with_context(|| {
            format!(
                "no local control plane found in {} (start one with `sudo strand up`, or pass --state-dir)",
                self.state_dir.display()
            )
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
            .or_else(|| LocalCluster::load(&self.state_dir).ok().map(|c| c.api_addr))
            .unwrap_or_else(|| DEFAULT_API_ADDR.parse().expect("a valid default address"))
    }

    pub fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::from_state_dir(&self.state_dir, self.api_addr())?)
    }
}

/// `/var/lib/strand` for root; `$XDG_STATE_HOME/strand` (or
/// `~/.local/state/strand`) otherwise, so reading commands work unprivileged
/// when pointed at root's state dir with --state-dir.
fn default_state_dir() -> PathBuf {
    if strand_sys::is_root() {
        return PathBuf::from("/var/lib/strand");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("strand");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/strand"),
        None => PathBuf::from("/var/lib/strand"),
    }
}

/// Stops with a clear message when the caller is not root.
pub fn require_root(what: &str, why: &str) -> anyhow::Result<()> {
    if !strand_sys::is_root() {
        anyhow::bail!(
            "`strand {what}` needs root: it {why}, which takes CAP_NET_ADMIN and CAP_SYS_ADMIN; run it with sudo"
        );
    }
    Ok(())
}

/// `get` that answers `None` for a resource that does not exist.
pub async fn get_opt(
    client: &ApiClient,
    kind: strand_controller_core::Kind,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<strand_controller_core::Resource>> {
    match client.get(kind, namespace, name).await {
        Ok(r) => Ok(Some(r)),
        Err(strand_controller_local::ClientError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The process exists and has not exited (a zombie waiting for its parent
/// to reap it has).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
