//! One replica: its network namespace, its proxy, its process, and its
//! registration with the control plane.

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use strand_controller_core::{LocalCluster, PodStatus};
use strand_sys::net::PodNetwork;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The proxy's user; `strand-init` exempts its traffic from capture.
pub const PROXY_UID: u32 = 2102;
/// The proxy's admin port (metrics, readiness).
pub const PROXY_ADMIN_PORT: u16 = 4191;

/// How long a proxy may take to report ready (with identity, that includes
/// getting its first certificate).
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a replica runs and how.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// The workload's name: the `service.name` of its proxies' spans.
    pub workload: String,
    pub namespace: String,
    pub command: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub ports: Vec<u16>,
    /// Write output to `<dir>/<pod>.log` instead of the terminal.
    pub log_dir: Option<PathBuf>,
    /// Prefix each output line with `[pod]` (several replicas on one terminal).
    pub prefix_output: bool,
    pub proxy_env: Vec<(String, String)>,
    pub bin_dir: PathBuf,
}

/// A started replica.
pub struct Pod {
    pub name: String,
    pub net: PodNetwork,
    pub proxy: Child,
    pub app: Child,
    pub ip: Ipv4Addr,
    output_tasks: Vec<tokio::task::JoinHandle<()>>,
}

// === impl Pod ===

impl Pod {
    /// Creates the pod's network, installs the capture rules, and starts the
    /// proxy and then the application. The caller registers it.
    pub async fn start(
        cluster: &LocalCluster,
        tpl: &PodTemplate,
        name: &str,
        ip: Ipv4Addr,
        logs: &Path,
        proxy_env: &[(String, String)],
    ) -> anyhow::Result<Pod> {
        let net = PodNetwork {
            netns: cluster.pod_netns(&tpl.namespace, name),
            host_veth: LocalCluster::host_veth(ip),
            bridge: cluster.bridge.clone(),
            addr: ip,
            prefix_len: cluster.pod_prefix_len,
            gateway: cluster.gateway,
        };
        let resolv = cluster.resolv_conf(&tpl.namespace);
        {
            let net = net.clone();
            tokio::task::spawn_blocking(move || strand_sys::net::create_pod_network(&net, &resolv))
                .await
                .context("pod network task")?
                .with_context(|| format!("creating the network of pod {name}"))?;
        }
        match Self::start_processes(cluster, tpl, name, ip, logs, &net, proxy_env).await {
            Ok((proxy, app, output_tasks)) => Ok(Pod {
                name: name.to_string(),
                net,
                proxy,
                app,
                ip,
                output_tasks,
            }),
            Err(e) => {
                kill_netns_processes(&net.netns).await;
                let _ = strand_sys::net::delete_pod_network(&net);
                Err(e)
            }
        }
    }

    async fn start_processes(
        cluster: &LocalCluster,
        tpl: &PodTemplate,
        name: &str,
        ip: Ipv4Addr,
        logs: &Path,
        net: &PodNetwork,
        proxy_env: &[(String, String)],
    ) -> anyhow::Result<(Child, Child, Vec<tokio::task::JoinHandle<()>>)> {
        let init = Command::new("ip")
            .args(["netns", "exec", &net.netns])
            .arg(tpl.bin_dir.join("strand-init"))
            .stdin(Stdio::null())
            .output()
            .await
            .context("running strand-init")?;
        if !init.status.success() {
            bail!(
                "strand-init failed in pod {name} ({}): {}",
                init.status,
                String::from_utf8_lossy(&init.stderr).trim()
            );
        }

        let proxy_log = std::fs::File::create(logs.join(format!("{name}.proxy.log")))
            .with_context(|| format!("creating the proxy log in {}", logs.display()))?;
        let mut proxy = in_pod(&net.netns, PROXY_UID, PROXY_UID);
        proxy
            .arg(tpl.bin_dir.join("strand-proxy"))
            .env(
                "STRAND_PROXY_DESTINATION_SVC_ADDR",
                cluster.destination_addr.to_string(),
            )
            .env(
                "STRAND_PROXY_POLICY_SVC_ADDR",
                cluster.policy_addr.to_string(),
            )
            .env("STRAND_PROXY_POD_NAME", name)
            .env("STRAND_PROXY_POD_NAMESPACE", &tpl.namespace)
            .env("STRAND_PROXY_CLUSTER_DOMAIN", &cluster.cluster_domain)
            .envs(trace_env(cluster, &tpl.workload, &tpl.namespace, name))
            .envs(tpl.proxy_env.iter().map(|(k, v)| (k, v)))
            .envs(proxy_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(proxy_log.try_clone()?)
            .stderr(proxy_log)
            .kill_on_drop(true);
        let proxy = proxy.spawn().context("starting strand-proxy")?;
        let admin = SocketAddr::new(IpAddr::V4(ip), PROXY_ADMIN_PORT);
        wait_proxy_ready(admin, PROXY_READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "the proxy of pod {name} did not become ready; see {}",
                    logs.join(format!("{name}.proxy.log")).display()
                )
            })?;

        let Some((program, args)) = tpl.command.split_first() else {
            bail!("no command to run");
        };
        let mut app = in_pod(&net.netns, tpl.uid, tpl.gid);
        app.arg("--").arg(program).args(args).stdin(Stdio::null());
        app.env("POD_NAME", name)
            .env("POD_NAMESPACE", &tpl.namespace)
            .env("POD_IP", ip.to_string());
        let mut tasks = Vec::new();
        match (&tpl.log_dir, tpl.prefix_output) {
            (Some(dir), _) => {
                let f = std::fs::File::create(dir.join(format!("{name}.log")))
                    .with_context(|| format!("creating {}/{name}.log", dir.display()))?;
                app.stdout(f.try_clone()?).stderr(f);
            }
            (None, true) => {
                app.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            (None, false) => {
                app.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
        }
        let mut app = app
            .spawn()
            .with_context(|| format!("starting {program:?} in pod {name}"))?;
        if let Some(out) = app.stdout.take() {
            tasks.push(tokio::spawn(prefix_lines(out, name.to_string(), false)));
        }
        if let Some(err) = app.stderr.take() {
            tasks.push(tokio::spawn(prefix_lines(err, name.to_string(), true)));
        }
        Ok((proxy, app, tasks))
    }

    pub fn status(&self, ready: bool) -> PodStatus {
        PodStatus {
            pod_ip: Some(IpAddr::V4(self.ip)),
            ready,
            meshed: true,
            proxy_admin_addr: Some(SocketAddr::new(IpAddr::V4(self.ip), PROXY_ADMIN_PORT)),
            pid: self.app.id(),
        }
    }

    /// Waits until the application listens on its ports (checked from
    /// inside the pod on loopback, which capture leaves alone).
    pub async fn wait_listening(&self, ports: &[u16], timeout: Duration) -> bool {
        let path = strand_sys::net::netns_path(&self.net.netns);
        let ports = ports.to_vec();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (path, ports) = (path.clone(), ports.clone());
            // A thread of its own: entering a namespace is for good.
            let all = tokio::task::spawn_blocking(move || {
                std::thread::spawn(move || {
                    strand_sys::enter_netns(&path).is_ok()
                        && ports.iter().all(|&p| {
                            std::net::TcpStream::connect_timeout(
                                &SocketAddr::from(([127, 0, 0, 1], p)),
                                Duration::from_millis(200),
                            )
                            .is_ok()
                        })
                })
                .join()
                .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if all {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal_app(&self, signal: Signal) {
        signal_child(&self.app, signal);
    }

    /// Stops the proxy (it drains in-flight requests first), then the
    /// application (SIGTERM, SIGKILL after `grace`), then removes the network.
    /// Returns the application's exit status.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        signal_child(&self.proxy, Signal::SIGTERM);
        let _ = tokio::time::timeout(grace, self.proxy.wait()).await;
        let status = stop_child(&mut self.app, grace).await?;
        let _ = self.proxy.kill().await;
        self.finish().await;
        Ok(status)
    }

    /// Cleans up after the application exited on its own.
    pub async fn reap(mut self, grace: Duration) -> ExitStatus {
        let status = self.app.wait().await;
        signal_child(&self.proxy, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.proxy.wait())
            .await
            .is_err()
        {
            let _ = self.proxy.kill().await;
        }
        self.finish().await;
        status.unwrap_or_else(|_| ExitStatus::default())
    }

    async fn finish(&mut self) {
        for t in self.output_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        kill_netns_processes(&self.net.netns).await;
        let net = self.net.clone();
        let res =
            tokio::task::spawn_blocking(move || strand_sys::net::delete_pod_network(&net)).await;
        if let Ok(Err(e)) = res {
            eprintln!(
                "strand: cannot remove the network of pod {}: {e}",
                self.name
            );
        }
    }
}

/// The proxy's tracing variables: spans go to the control plane's
/// collector, named after the workload, with the pod and its namespace as
/// resource attributes (`strand viz trace` shows them). None when the
/// control plane collects no traces (it predates the collector).
fn trace_env(
    cluster: &LocalCluster,
    workload: &str,
    namespace: &str,
    pod: &str,
) -> Vec<(&'static str, String)> {
    if !cluster.tracing_enabled() {
        return Vec::new();
    }
    vec![
        (
            "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
            cluster.trace_collector_addr.to_string(),
        ),
        ("STRAND_PROXY_TRACE_SERVICE_NAME", workload.to_string()),
        // Names are DNS labels: no `,` or `=` to escape.
        (
            "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES",
            format!("k8s.pod.name={pod},k8s.namespace.name={namespace}"),
        ),
    ]
}

/// `ip netns exec NS setpriv --reuid U --regid G --clear-groups`: `ip netns
/// exec` also mounts the pod's resolv.conf over /etc/resolv.conf.
fn in_pod(netns: &str, uid: u32, gid: u32) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "setpriv"])
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups");
    cmd
}

fn signal_child(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // It may have exited meanwhile, which is what we want anyway.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

async fn stop_child(child: &mut Child, grace: Duration) -> anyhow::Result<ExitStatus> {
    signal_child(child, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            child.kill().await?;
            Ok(child.wait().await?)
        }
    }
}

/// SIGKILLs whatever the application left running in the namespace.
async fn kill_netns_processes(netns: &str) {
    let netns = netns.to_string();
    let _ = tokio::task::spawn_blocking(move || strand_sys::net::kill_all_in(&netns)).await;
}

async fn wait_proxy_ready(admin: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("not reachable");
    while tokio::time::Instant::now() < deadline {
        match http_get_status(admin, "/ready").await {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("/ready answered {code}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{admin}: {last} after {timeout:?}")
}

/// A minimal `GET` returning the status code.
pub async fn http_get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await?;
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

async fn prefix_lines(out: impl AsyncRead + Unpin, pod: String, stderr: bool) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            eprintln!("[{pod}] {line}");
        } else {
            println!("[{pod}] {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(trace_collector_addr: &str) -> LocalCluster {
        LocalCluster {
            name: "strand".into(),
            pid: 1,
            bridge: "strand0".into(),
            gateway: Ipv4Addr::new(10, 42, 0, 1),
            pod_cidr: "10.42.0.0/16".into(),
            pod_prefix_len: 16,
            service_cidr: "10.96.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            api_addr: "127.0.0.1:8089".parse().unwrap(),
            destination_addr: "10.42.0.1:8086".parse().unwrap(),
            policy_addr: "10.42.0.1:8090".parse().unwrap(),
            dns_addr: "10.42.0.1:53".parse().unwrap(),
            identity_addr: "10.42.0.1:8080".parse().unwrap(),
            identity_server_name: String::new(),
            identity_dir: PathBuf::new(),
            metrics_api_addr: "127.0.0.1:8085".parse().unwrap(),
            trace_collector_addr: trace_collector_addr.parse().unwrap(),
        }
    }

    #[test]
    fn proxies_send_spans_to_the_control_planes_collector() {
        let env = trace_env(&cluster("10.42.0.1:4317"), "web", "emojivoto", "web-2");
        assert_eq!(
            env,
            [
                (
                    "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
                    "10.42.0.1:4317".to_string()
                ),
                ("STRAND_PROXY_TRACE_SERVICE_NAME", "web".to_string()),
                (
                    "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES",
                    "k8s.pod.name=web-2,k8s.namespace.name=emojivoto".to_string()
                ),
            ]
        );
        // A control plane from before the collector: no tracing.
        assert!(trace_env(&cluster("0.0.0.0:0"), "web", "emojivoto", "web-2").is_empty());
    }
}
