//! A local-mode mesh for tests, driven through the `strand` CLI as a user
//! would: `strand up` runs inside a test namespace (so its bridge, DNS and
//! pods never touch the root namespace), and the cluster is named after
//! that namespace so pod namespaces of killed runs are swept like the
//! test bed's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strand_testkit::{Network, bin_path};

/// A running local control plane in its own namespace.
pub struct LocalMesh {
    // Field order is drop order.
    runs: Vec<Child>,
    state_dir: PathBuf,
    net: Network,
}

/// Output of a finished command, as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

// === impl LocalMesh ===

impl LocalMesh {
    /// `strand up --detach` in a fresh namespace.
    pub fn up(label: &str) -> anyhow::Result<LocalMesh> {
        Self::up_with(label, &[])
    }

    /// [`LocalMesh::up`] with more `strand up` flags.
    pub fn up_with(label: &str, flags: &[&str]) -> anyhow::Result<LocalMesh> {
        let mesh = Self::without_control_plane(label)?;
        let mut args = vec!["up", "--detach", "--cluster-name", mesh.net.ns_name()];
        args.extend_from_slice(flags);
        let up = mesh.strand(&args)?;
        if up.code != Some(0) {
            bail!("strand up failed: {}{}", up.stdout, up.stderr);
        }
        Ok(mesh)
    }

    /// A fresh namespace and state directory where no control plane runs
    /// yet (start one with `strand up --cluster-name <name>`).
    pub fn without_control_plane(label: &str) -> anyhow::Result<LocalMesh> {
        let net = Network::new(label)?;
        let state_dir = std::env::temp_dir().join(format!("strand-e2e-{}", net.ns_name()));
        let _ = std::fs::remove_dir_all(&state_dir);
        let mesh = LocalMesh {
            runs: Vec::new(),
            state_dir,
            net,
        };
        let ip = mesh.ns_cmd("ip");
        let out = Command::new(ip.get_program())
            .args(ip.get_args())
            .args(["link", "set", "lo", "up"])
            .output()?;
        if !out.status.success() {
            bail!(
                "cannot bring lo up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(mesh)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The cluster's name, which prefixes its pods' namespaces.
    pub fn name(&self) -> &str {
        self.net.ns_name()
    }

    /// The mesh's host network namespace (where the control plane's
    /// loopback addresses are).
    pub fn netns_path(&self) -> PathBuf {
        self.net.netns_path()
    }

    /// A command run inside the mesh's host network namespace. `nsenter`
    /// and not `ip netns exec`: the latter also gives the command a mount
    /// namespace of its own, which would hide the pod namespaces it
    /// creates from the control plane and from this test, unlike on a real
    /// host.
    pub fn ns_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.net.netns_path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `strand --state-dir <dir> ARGS`.
    pub fn strand_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.ns_cmd(bin_path("strand"));
        cmd.arg("--state-dir").arg(&self.state_dir).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `strand ARGS` to completion (bounded: a hung command is killed).
    pub fn strand(&self, args: &[&str]) -> anyhow::Result<Run> {
        run_bounded(self.strand_cmd(args), Duration::from_secs(120))
    }

    /// `strand apply -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<Run> {
        use std::io::Write as _;
        let mut cmd = self.strand_cmd(&["apply", "-f", "-"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok(Run::from(out))
    }

    /// Starts `strand run ARGS` in the background; its output goes to
    /// `<state-dir>/<label>.out`.
    pub fn spawn_run(&mut self, label: &str, args: &[&str]) -> anyhow::Result<usize> {
        let out = std::fs::File::create(self.state_dir.join(format!("{label}.out")))?;
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let mut cmd = self.strand_cmd(&all);
        cmd.stdout(out.try_clone()?).stderr(out);
        self.runs.push(cmd.spawn().context("spawning strand run")?);
        Ok(self.runs.len() - 1)
    }

    /// Runs `strand-testapp http` on :8080 as workload `name` (`flags` go
    /// to `strand run`, e.g. labels) and waits for its one pod to be ready;
    /// the pod's address.
    pub fn http_server(
        &mut self,
        name: &str,
        flags: &[&str],
    ) -> anyhow::Result<std::net::Ipv4Addr> {
        let app = bin_path("strand-testapp");
        let app = app.to_str().context("binary path")?;
        let mut args = vec!["--name", name, "--port", "8080"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", app, "http", "--listen", "0.0.0.0:8080"]);
        self.spawn_run(name, &args)?;
        self.wait_ready_pods(name, 1, Duration::from_secs(60))?;
        let ips = self.pod_ips(name)?;
        Ok(ips.first().context("a ready pod")?.1)
    }

    /// `strand run --name NAME [FLAGS] -- sh -c SCRIPT` to completion,
    /// which must succeed; its output.
    pub fn run_script(&self, name: &str, flags: &[&str], script: &str) -> anyhow::Result<Run> {
        let mut args = vec!["run", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let out = self.strand(&args)?;
        if out.code != Some(0) {
            bail!(
                "{name} failed ({:?}):\n{}\n{}",
                out.code,
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }

    /// `count` GETs of `url` from a new meshed pod `client`
    /// (`strand-testapp http-client`): its JSON summary (`ok`,
    /// `served_by`, ...).
    pub fn http_client(&self, url: &str, count: u32) -> anyhow::Result<serde_json::Value> {
        let app = bin_path("strand-testapp");
        let app = app.to_str().context("binary path")?;
        let count = count.to_string();
        let out = self.strand(&[
            "run",
            "--name",
            "client",
            "--",
            app,
            "http-client",
            "--url",
            url,
            "--count",
            &count,
        ])?;
        let line = out
            .stdout
            .lines()
            .rfind(|l| l.starts_with('{'))
            .with_context(|| format!("no summary:\n{}\n{}", out.stdout, out.stderr))?;
        Ok(serde_json::from_str(line)?)
    }

    /// What a background `strand run` printed so far.
    pub fn run_output(&self, label: &str) -> String {
        std::fs::read_to_string(self.state_dir.join(format!("{label}.out"))).unwrap_or_default()
    }

    /// Sends SIGTERM to a background `strand run` and waits for it.
    pub fn stop_run(&mut self, i: usize, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let child = &mut self.runs[i];
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        wait_timeout(child, timeout)
    }

    /// SIGKILLs a background `strand run` (it cannot clean up).
    pub fn kill_run(&mut self, i: usize) {
        let _ = self.runs[i].kill();
        let _ = self.runs[i].wait();
    }

    /// Waits for a background `strand run` to exit by itself.
    pub fn wait_run(&mut self, i: usize, timeout: Duration) -> anyhow::Result<Option<i32>> {
        wait_timeout(&mut self.runs[i], timeout)
    }

    /// Pods' network namespaces that still exist.
    pub fn pod_namespaces(&self) -> Vec<String> {
        strand_sys::net::list_netns(&format!("{}_", self.name()))
    }

    /// Waits until `strand get pods -o json` lists `n` ready pods of `workload`.
    pub fn wait_ready_pods(
        &self,
        workload: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.ready_pods(workload)?;
            if ready.len() == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{workload}: {} ready pods after {timeout:?}, want {n}",
                    ready.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The addresses of `workload`'s ready pods, by pod name.
    pub fn pod_ips(&self, workload: &str) -> anyhow::Result<Vec<(String, std::net::Ipv4Addr)>> {
        let out = self.strand(&["get", "pods", "-o", "json"])?;
        if out.code != Some(0) {
            bail!("strand get pods: {}", out.stderr);
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
        let mut ips = Vec::new();
        for p in v["items"].as_array().into_iter().flatten() {
            if p["spec"]["workload"] != workload || p["status"]["ready"] != true {
                continue;
            }
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let ip = p["status"]["podIP"].as_str().unwrap_or_default();
            ips.push((name.to_string(), ip.parse()?));
        }
        Ok(ips)
    }

    /// `cluster.json` as written by the control plane.
    pub fn cluster(&self) -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.state_dir.join("cluster.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// GETs `url` from the mesh's host namespace (not through any proxy).
    pub fn curl(&self, url: &str) -> anyhow::Result<String> {
        let mut cmd = self.ns_cmd("curl");
        cmd.args(["-sS", "--fail", "--max-time", "10", url]);
        let out = run_bounded(cmd, Duration::from_secs(20))?;
        if out.code != Some(0) {
            bail!("curl {url}: {}", out.stderr);
        }
        Ok(out.stdout)
    }

    /// The `/metrics` of the proxy of the pod at `ip`.
    pub fn proxy_metrics(&self, ip: std::net::Ipv4Addr) -> anyhow::Result<crate::Metrics> {
        Ok(crate::Metrics(
            self.curl(&format!("http://{ip}:4191/metrics"))?,
        ))
    }

    pub fn ready_pods(&self, workload: &str) -> anyhow::Result<Vec<String>> {
        let out = self.strand(&["get", "pods", "-o", "json"])?;
        if out.code != Some(0) {
            bail!("strand get pods: {}", out.stderr);
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
        Ok(v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|p| p["spec"]["workload"] == workload && p["status"]["ready"] == true)
                    .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        for child in &mut self.runs {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        }
        for child in &mut self.runs {
            if !matches!(wait_timeout(child, Duration::from_secs(20)), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = self.strand(&["down"]);
        // Whatever a killed `strand run` left behind.
        for ns in self.pod_namespaces() {
            strand_sys::net::kill_all_in(&ns);
            let _ = strand_sys::net::ip(&["netns", "del", &ns]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

// === impl Run ===

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            bail!("process {} still running after {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> anyhow::Result<Run> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let out_t = read_all(child.stdout.take());
    let err_t = read_all(child.stderr.take());
    let code = match wait_timeout(&mut child, timeout) {
        Ok(code) => code,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?}: {e}");
        }
    };
    Ok(Run {
        code,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never
/// blocks the child while we wait for it).
fn read_all(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = pipe {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}
