//! `strand run` and `strand scale`: a workload as meshed processes.
//!
//! `strand run` owns its workload for as long as it runs: it registers the
//! workload, starts its replicas, keeps their number equal to the workload's
//! `spec.replicas` (which `strand scale` changes through the API), and
//! deregisters everything when the replicas have exited.
//!
//! ```text
//!  strand run ──apply Workload──▶ API ◀──patch replicas── strand scale
//!      │ per replica: Pod (IP from the store) → identity token (file only uid 2102 reads)
//!      │   → netns + strand-init → strand-proxy (uid 2102) → ready → CMD (uid of the caller) → ready
//!      └ on exit / scale down: not ready → proxy drains → CMD stopped → pod deleted
//! ```

use crate::ctx::{Ctx, get_opt, require_root};
use anyhow::{Context as _, bail};
use clap::Args;
use nix::sys::signal::Signal;
use pod::{Pod, PodTemplate};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use strand_controller_core::{Kind, LocalCluster, Resource};
use strand_controller_local::{ApiClient, ClientError};
use tokio::signal::unix::{SignalKind, signal};

mod identity;
mod pod;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workload's name; replicas are named `<name>-<n>`.
    #[arg(long)]
    name: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// A port the command listens on (repeatable); the replica turns ready
    /// once it listens on all of them.
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// A label on the workload and its pods, `key=value` (repeatable). The
    /// label `app=<name>` is added unless an `app` label is given.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The service account, part of the workload's identity.
    #[arg(long, default_value = "default")]
    service_account: String,
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Run the command as this user id (default: the user who invoked sudo,
    /// else the current user). Never 2102, the proxy's user.
    #[arg(long)]
    uid: Option<u32>,
    /// Write each replica's output to `<dir>/<pod>.log` instead of the terminal.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// How long a stopping command gets between SIGTERM and SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace_period: Duration,
    /// The command is an ingress controller (Linkerd's
    /// `linkerd.io/inject: ingress`): its proxy routes each HTTP request by
    /// its `l5d-dst-override` header (or a `<svc>.<ns>.svc.<domain>`
    /// authority) even when the ingress connects to a pod's address, so
    /// requests are balanced and routed as requests to that Service.
    #[arg(long)]
    ingress: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// The workload to scale.
    name: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    #[arg(long)]
    replicas: u32,
}

/// How long a replica's command may take to listen on its ports before it
/// is registered anyway (with a warning).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between deregistering a replica and stopping it, so every proxy has
/// seen the endpoint go before its connections close. Endpoint updates reach
/// proxies in milliseconds; this leaves room for a loaded machine.
const DEREGISTER_DELAY: Duration = Duration::from_secs(1);
/// How often the workload's desired replicas are read back.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    require_root(
        "run",
        "creates a network namespace, veth and iptables rules per replica",
    )?;
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let cluster = ctx.cluster()?;
    let client = ctx.client()?;
    client
        .health()
        .await
        .context("the control plane is not answering (is `strand up` running?)")?;
    let (uid, gid) = run_as(args.uid)?;
    let bin_dir = bin_dir()?;
    let mut labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    labels
        .entry("app".into())
        .or_insert_with(|| args.name.clone());
    labels.insert(
        strand_controller_core::WORKLOAD_LABEL.into(),
        args.name.clone(),
    );

    claim_workload(&client, &args, &labels).await?;
    let logs = ctx.state_dir().join("logs").join(&args.namespace);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    if let Some(dir) = &args.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut proxy_env = identity::shared_env(&cluster)?;
    let identity = !proxy_env.is_empty();
    if args.ingress {
        proxy_env.push(("STRAND_PROXY_INGRESS_MODE".into(), "true".into()));
    }
    let tpl = PodTemplate {
        workload: args.name.clone(),
        namespace: args.namespace.clone(),
        command: args.command.clone(),
        uid,
        gid,
        ports: args.ports.clone(),
        log_dir: args.log_dir.clone(),
        prefix_output: args.replicas > 1,
        proxy_env,
        bin_dir,
    };
    let mut sup = Supervisor {
        client,
        cluster,
        tpl,
        labels,
        state_dir: ctx.state_dir().to_path_buf(),
        identity,
        service_account: args.service_account.clone(),
        name: args.name.clone(),
        grace: args.grace_period,
        logs,
        pods: Vec::new(),
        next_index: 1,
        first_failure: None,
        exited: 0,
        stopping: false,
    };
    let result = sup.supervise(args.replicas).await;
    sup.shutdown().await;
    result?;
    Ok(sup.exit_code())
}

pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    let Some(Resource::Workload(mut w)) =
        get_opt(&client, Kind::Workload, &args.namespace, &args.name).await?
    else {
        bail!(
            "workload {}/{} not found (list them with `strand get workloads`)",
            args.namespace,
            args.name
        );
    };
    let from = w.spec.replicas;
    w.spec.replicas = args.replicas;
    client
        .apply(&Resource::Workload(w).to_json().to_string())
        .await?;
    println!(
        "workload {}/{} scaled from {from} to {} replicas",
        args.namespace, args.name, args.replicas
    );
    Ok(0)
}

/// The runner's state: the replicas it started and how they ended.
struct Supervisor {
    client: ApiClient,
    cluster: LocalCluster,
    tpl: PodTemplate,
    labels: BTreeMap<String, String>,
    state_dir: PathBuf,
    /// The control plane serves identity: each pod gets a token.
    identity: bool,
    service_account: String,
    name: String,
    grace: Duration,
    logs: PathBuf,
    pods: Vec<Pod>,
    next_index: u32,
    first_failure: Option<ExitStatus>,
    /// Replicas whose command exited on its own.
    exited: u32,
    stopping: bool,
}

// === impl Supervisor ===

impl Supervisor {
    async fn supervise(&mut self, initial: u32) -> anyhow::Result<()> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut desired = initial;
        let mut started_any = false;
        loop {
            if !self.stopping {
                // Replicas whose command ended are done, not replaced.
                self.reconcile(desired.saturating_sub(self.exited)).await?;
                started_any |= !self.pods.is_empty();
            }
            if started_any && self.pods.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = sigint.recv() => self.forward(Signal::SIGINT).await,
                _ = sigterm.recv() => self.forward(Signal::SIGTERM).await,
                _ = sighup.recv() => self.forward(Signal::SIGHUP).await,
                i = wait_any_exit(&mut self.pods) => self.reap(i).await,
                _ = tokio::time::sleep(RECONCILE_INTERVAL) => {
                    if let Some(n) = self.desired_replicas().await {
                        desired = n;
                    }
                }
            }
        }
    }

    /// Deregisters every replica and passes the signal on to the commands;
    /// a second signal stops them hard.
    async fn forward(&mut self, sig: Signal) {
        if self.stopping {
            for p in &self.pods {
                p.signal_app(Signal::SIGKILL);
            }
            return;
        }
        self.stopping = true;
        for p in &self.pods {
            self.set_ready(p, false).await;
        }
        for p in &self.pods {
            p.signal_app(sig);
        }
    }

    async fn reap(&mut self, i: usize) {
        let pod = self.pods.remove(i);
        self.set_ready(&pod, false).await;
        let name = pod.name.clone();
        let status = pod.reap(self.grace).await;
        self.delete_pod(&name).await;
        self.exited += 1;
        if !status.success() && self.first_failure.is_none() {
            self.first_failure = Some(status);
        }
        // A command that ended by itself is not replaced: `strand run`
        // runs commands, it does not restart them.
        self.stopping |= self.pods.is_empty();
    }

    async fn reconcile(&mut self, desired: u32) -> anyhow::Result<()> {
        let desired = desired as usize;
        while self.pods.len() < desired {
            let name = format!("{}-{}", self.name, self.next_index);
            self.next_index += 1;
            match self.start_pod(&name).await {
                Ok(pod) => self.pods.push(pod),
                Err(e) => {
                    self.delete_pod(&name).await;
                    if self.pods.is_empty() {
                        return Err(e);
                    }
                    eprintln!("strand: cannot start replica {name}: {e:#}");
                    break;
                }
            }
        }
        while self.pods.len() > desired {
            let Some(pod) = self.pods.pop() else { break };
            self.remove_pod(pod).await;
        }
        Ok(())
    }

    async fn start_pod(&self, name: &str) -> anyhow::Result<Pod> {
        let ip = self.register_pod(name).await?;
        let env = if self.identity {
            self.pod_identity(name).await?
        } else {
            Vec::new()
        };
        let pod = Pod::start(&self.cluster, &self.tpl, name, ip, &self.logs, &env).await?;
        if !self.tpl.ports.is_empty() && !pod.wait_listening(&self.tpl.ports, LISTEN_TIMEOUT).await
        {
            eprintln!(
                "strand: {name} does not listen on {:?} after {LISTEN_TIMEOUT:?}; registering it anyway",
                self.tpl.ports
            );
        }
        self.set_ready(&pod, true).await;
        Ok(pod)
    }

    /// Creates the Pod resource; the store gives it an address.
    async fn register_pod(&self, name: &str) -> anyhow::Result<Ipv4Addr> {
        let ports: Vec<_> = self
            .tpl
            .ports
            .iter()
            .map(|p| serde_json::json!({ "containerPort": p }))
            .collect();
        let doc = serde_json::json!({
            "apiVersion": Kind::Pod.api_version(),
            "kind": "Pod",
            "metadata": { "name": name, "namespace": self.tpl.namespace, "labels": self.labels },
            "spec": {
                "workload": self.name,
                "serviceAccountName": self.service_account,
                "ports": ports,
            },
        });
        self.client.apply(&doc.to_string()).await?;
        let Some(Resource::Pod(pod)) =
            get_opt(&self.client, Kind::Pod, &self.tpl.namespace, name).await?
        else {
            bail!("pod {name} vanished right after it was created");
        };
        match pod.status.pod_ip {
            Some(IpAddr::V4(ip)) => Ok(ip),
            other => bail!("the control plane gave pod {name} no IPv4 address ({other:?})"),
        }
    }

    /// Gets the pod's identity token and writes it for the proxy; the
    /// proxy's per-pod identity variables.
    async fn pod_identity(&self, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        identity::pod_env(&self.client, &self.state_dir, &self.tpl.namespace, name).await
    }

    async fn set_ready(&self, pod: &Pod, ready: bool) {
        let status = pod.status(ready);
        match self
            .client
            .update_pod_status(&self.tpl.namespace, &pod.name, &status)
            .await
        {
            Ok(_) => {}
            // Already deregistered by the control plane (its process is gone).
            Err(ClientError::NotFound(_)) if !ready => {}
            Err(e) => eprintln!(
                "strand: cannot mark {} {}: {e}",
                pod.name,
                if ready { "ready" } else { "not ready" }
            ),
        }
    }

    async fn delete_pod(&self, name: &str) {
        let dir = LocalCluster::pod_state_dir(&self.state_dir, &self.tpl.namespace, name);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("strand: cannot remove {}: {e}", dir.display());
        }
        match self
            .client
            .delete(Kind::Pod, &self.tpl.namespace, name)
            .await
        {
            // The control plane deregisters pods whose process is gone.
            Ok(_) | Err(ClientError::NotFound(_)) => {}
            Err(e) => eprintln!("strand: cannot deregister {name}: {e}"),
        }
    }

    /// Scale-down: deregister, let proxies notice, drain, stop.
    async fn remove_pod(&mut self, pod: Pod) {
        self.set_ready(&pod, false).await;
        tokio::time::sleep(DEREGISTER_DELAY).await;
        let name = pod.name.clone();
        if let Err(e) = pod.stop(self.grace).await {
            eprintln!("strand: stopping {name}: {e:#}");
        }
        self.delete_pod(&name).await;
    }

    async fn desired_replicas(&self) -> Option<u32> {
        match self
            .client
            .get(Kind::Workload, &self.tpl.namespace, &self.name)
            .await
        {
            Ok(Resource::Workload(w)) => Some(w.spec.replicas),
            _ => None,
        }
    }

    async fn shutdown(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            self.remove_pod(pod).await;
        }
        match self
            .client
            .delete(Kind::Workload, &self.tpl.namespace, &self.name)
            .await
        {
            Ok(_) | Err(ClientError::NotFound(_)) => {}
            Err(e) => eprintln!("strand: cannot deregister workload {}: {e}", self.name),
        }
    }

    /// The first non-zero status, else 0. A command killed by a signal
    /// exits 128 + the signal number, as shells report it.
    fn exit_code(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt;
        match self.first_failure {
            None => 0,
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => u8::try_from(c).unwrap_or(1),
                (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
                _ => 1,
            },
        }
    }
}

/// Index of the first replica whose command exited.
async fn wait_any_exit(pods: &mut [Pod]) -> usize {
    if pods.is_empty() {
        return std::future::pending().await;
    }
    let waits = pods.iter_mut().enumerate().map(|(i, p)| {
        Box::pin(async move {
            let _ = p.app.wait().await;
            i
        })
    });
    futures_util::future::select_all(waits).await.0
}

/// Creates the Workload unless another `strand run` owns it.
async fn claim_workload(
    client: &ApiClient,
    args: &RunArgs,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if let Some(Resource::Workload(w)) =
        get_opt(client, Kind::Workload, &args.namespace, &args.name).await?
    {
        let owner = w
            .metadata
            .annotations
            .get(OWNER_ANNOTATION)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = owner.filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) {
            bail!(
                "workload {}/{} is already running (strand run pid {pid}); change its size with `strand scale {} --replicas N`",
                args.namespace,
                args.name,
                args.name
            );
        }
    }
    let ports: Vec<_> = args
        .ports
        .iter()
        .map(|p| serde_json::json!({ "containerPort": p }))
        .collect();
    let doc = serde_json::json!({
        "apiVersion": Kind::Workload.api_version(),
        "kind": "Workload",
        "metadata": {
            "name": args.name,
            "namespace": args.namespace,
            "labels": labels,
            "annotations": { OWNER_ANNOTATION: std::process::id().to_string() },
        },
        "spec": {
            "replicas": args.replicas,
            "serviceAccountName": args.service_account,
            "ports": ports,
            "command": args.command,
        },
    });
    client.apply(&doc.to_string()).await?;
    Ok(())
}

/// The pid of the `strand run` that owns a workload.
const OWNER_ANNOTATION: &str = "strand.io/owner-pid";

fn run_as(uid: Option<u32>) -> anyhow::Result<(u32, u32)> {
    let from_env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let (uid, gid) = match uid {
        Some(u) => (u, u),
        None => match (from_env("SUDO_UID"), from_env("SUDO_GID")) {
            (Some(u), Some(g)) => (u, g),
            _ => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
        },
    };
    if uid == pod::PROXY_UID {
        bail!("--uid {uid} is the proxy's user: its traffic would bypass the proxy; pick another");
    }
    Ok((uid, gid))
}

/// strand-proxy and strand-init are installed beside `strand`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the strand binary")?;
    let dir = exe
        .parent()
        .context("the strand binary has no directory")?
        .to_path_buf();
    for bin in ["strand-proxy", "strand-init"] {
        if !dir.join(bin).exists() {
            bail!(
                "{bin} not found beside {} (build the workspace: cargo build --release --bins)",
                exe.display()
            );
        }
    }
    Ok(dir)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `10s`, `500ms`, `2m`, `24h`, `365d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms, 10s, 2m, 24h or 365d");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs).ok_or_else(bad);
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(bad()),
    }
}
