//! The programs a run needs, found once up front so that a missing one is
//! reported before any namespace exists, and a scratch directory every user
//! can read: the backends, proxy and load generators run as unprivileged
//! users, who may not be able to reach binaries under a private home or
//! build directory, so those are copied there.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::callgrind::Callgrind;
use crate::cli::Plan;
use crate::load::{self, Protocol, SaturationTool};
use crate::scenario::Kind;

/// Paths of every program a run uses.
pub struct Tools {
    pub strand_proxy: PathBuf,
    pub strand_init: PathBuf,
    pub testapp: PathBuf,
    pub oha: PathBuf,
    pub wrk: Option<PathBuf>,
    pub h2load: Option<PathBuf>,
    nginx: Option<PathBuf>,
    /// The gRPC request body, for the load generators.
    pub grpc_body: PathBuf,
    /// `--version` of each external tool, for the JSON.
    pub versions: BTreeMap<String, String>,
    /// How proxies run under callgrind (`--callgrind`).
    pub callgrind: Option<Callgrind>,
    workdir: WorkDir,
}

/// A directory under the system temp dir, world-readable, removed on drop.
struct WorkDir(PathBuf);

// === impl Tools ===

impl Tools {
    /// Finds what `plan` needs, copies the programs that run as other users
    /// into a fresh scratch directory and writes the gRPC body there.
    pub fn find(plan: &Plan) -> anyhow::Result<Tools> {
        let workdir = WorkDir::create()?;
        let bin = workdir.0.join("bin");
        make_dir(&bin)?;
        let shared = |path: PathBuf| copy_executable(&path, &bin);
        let oha = match &plan.oha {
            Some(path) => path.clone(),
            None => find_oha()?,
        };
        let uses = |p: Protocol| plan.protocols.contains(&p);
        let wants_tool = |tool| {
            Protocol::ALL
                .into_iter()
                .any(|p| uses(p) && p.saturation_tool() == tool)
        };
        let wrk = wants_tool(SaturationTool::Wrk)
            .then(|| in_path("wrk", "apt-get install wrk"))
            .transpose()?;
        let h2load = wants_tool(SaturationTool::H2load)
            .then(|| in_path("h2load", "apt-get install nghttp2-client"))
            .transpose()?;
        let nginx = plan
            .scenarios
            .iter()
            .any(Kind::uses_nginx)
            .then(|| {
                in_path(
                    "nginx",
                    "apt-get install nginx-light, or leave nginx-1hop and nginx-redirect-1hop out with --scenarios",
                )
            })
            .transpose()?;
        let callgrind = if plan.callgrind {
            let out_dir = workdir.0.join("callgrind");
            make_dir(&out_dir)?;
            // The proxies write their dumps here as their own user.
            std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777))
                .with_context(|| format!("chmod 777 {}", out_dir.display()))?;
            Some(Callgrind {
                valgrind: in_path("valgrind", "apt-get install valgrind")?,
                vgdb: in_path("vgdb", "apt-get install valgrind")?,
                out_dir,
            })
        } else {
            None
        };
        let grpc_body = workdir.0.join("grpc-body.bin");
        std::fs::write(&grpc_body, load::grpc_body())
            .with_context(|| format!("writing {}", grpc_body.display()))?;
        let mut versions = BTreeMap::new();
        versions.insert("oha".to_string(), version(&oha, "--version"));
        if let Some(wrk) = &wrk {
            versions.insert("wrk".to_string(), version(wrk, "-v"));
        }
        if let Some(h2load) = &h2load {
            versions.insert("h2load".to_string(), version(h2load, "--version"));
        }
        if let Some(nginx) = &nginx {
            versions.insert("nginx".to_string(), version(nginx, "-v"));
        }
        if let Some(c) = &callgrind {
            versions.insert("valgrind".to_string(), version(&c.valgrind, "--version"));
        }
        Ok(Tools {
            strand_proxy: shared(workspace_bin("strand-proxy")?)?,
            strand_init: workspace_bin("strand-init")?,
            testapp: shared(workspace_bin("strand-testapp")?)?,
            oha: shared(oha)?,
            wrk,
            h2load,
            nginx,
            grpc_body,
            versions,
            callgrind,
            workdir,
        })
    }

    /// The scratch directory (removed when `self` is dropped).
    pub fn workdir(&self) -> &Path {
        &self.workdir.0
    }

    pub fn nginx(&self) -> anyhow::Result<&Path> {
        self.nginx.as_deref().context("nginx was not looked for")
    }

    /// The saturation tool's binary.
    pub fn saturation(&self, tool: SaturationTool) -> anyhow::Result<&Path> {
        match tool {
            SaturationTool::Wrk => self.wrk.as_deref().context("wrk was not looked for"),
            SaturationTool::H2load => self.h2load.as_deref().context("h2load was not looked for"),
        }
    }
}

/// A binary of this workspace, next to `strand-bench` itself.
fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating strand-bench")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found: build the workspace's binaries with `cargo build --release --workspace --bins` \
             and run target/release/strand-bench (or use bench/run.sh)",
            path.display()
        );
    }
    Ok(path)
}

/// oha in `PATH`, else where `cargo install` puts it (also under sudo,
/// where `PATH` and `HOME` are root's but the install may be the caller's).
fn find_oha() -> anyhow::Result<PathBuf> {
    if let Ok(path) = in_path("oha", "") {
        return Ok(path);
    }
    let mut homes: Vec<PathBuf> = Vec::new();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        homes.push(PathBuf::from(cargo_home));
    }
    if let Some(home) = std::env::var_os("HOME") {
        homes.push(Path::new(&home).join(".cargo"));
    }
    if let Ok(user) = std::env::var("SUDO_USER") {
        homes.push(Path::new("/home").join(user).join(".cargo"));
    }
    homes
        .into_iter()
        .map(|h| h.join("bin/oha"))
        .find(|p| p.is_file())
        .context("oha not found: install it with `cargo install oha --locked` (bench/run.sh does) or pass --oha PATH")
}

/// `name` in `PATH` or the sbin directories `sudo` may leave out.
fn in_path(name: &str, install_hint: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found in PATH; {install_hint}"))
}

/// Copies `path` into `dir` with mode 0755 and returns the copy's path.
fn copy_executable(path: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let name = path.file_name().context("a binary path has a file name")?;
    let to = dir.join(name);
    std::fs::copy(path, &to)
        .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    Ok(to)
}

/// The first line `program FLAG` prints on stdout or stderr (nginx and wrk
/// print their version to stderr, wrk with a failing exit status).
fn version(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|out| {
            let text = [out.stdout, out.stderr].concat();
            let text = String::from_utf8_lossy(&text).into_owned();
            text.lines().next().map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dir.display()))
}

// === impl WorkDir ===

impl WorkDir {
    fn create() -> anyhow::Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("strand-bench-{}", std::process::id()));
        // A directory left by an earlier process with the same pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        make_dir(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("strand-bench: cannot remove {}: {e}", self.0.display());
        }
    }
}
