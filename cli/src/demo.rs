//! `strand demo`: a meshed multi-service application and its live golden
//! metrics, on this host.
//!
//! ```text
//!  strand demo ── strand up --detach (when no control plane answers)
//!      │ apply Services emoji-svc, voting-svc, web-svc (namespace emojivoto)
//!      │ spawn `strand run` (background, own process group) per workload:
//!      │   emoji x2, voting, web, vote-bot ── each replica: netns + proxy + strand-demo
//!      │ wait until every pod is ready; print where to look
//!      └ refresh `strand viz stat deploy -n emojivoto` until Ctrl-C
//!  strand demo --down ── SIGTERM each `strand run` (they remove their pods),
//!      delete the Services, stop the control plane if the demo started it,
//!      remove the demo's files
//! ```
//!
//! What the demo started is recorded in `<state-dir>/demo/demo.json`.

use crate::ctx::{Ctx, alive, require_root};
use anyhow::{Context as _, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use strand_controller_core::{Kind, Resource};

/// The demo's namespace, as emojivoto's.
pub const NAMESPACE: &str = "emojivoto";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Remove everything the demo created: its workloads (pods, network
    /// namespaces, iptables rules, proxies), its Services, its files, and
    /// the control plane when the demo started it.
    #[arg(long)]
    down: bool,
    /// Start the demo and return instead of showing the live table.
    #[arg(long)]
    no_watch: bool,
    /// Requests per second vote-bot sends to web.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rps: u32,
    /// How often the live table refreshes.
    #[arg(long, default_value = "2s", value_parser = crate::run::parse_duration)]
    refresh: Duration,
    /// How long to wait for the demo's pods to turn ready.
    #[arg(long, default_value = "90s", value_parser = crate::run::parse_duration)]
    timeout: Duration,
    /// When the demo starts the control plane: its name, which prefixes the
    /// pods' network namespaces (as `strand up --cluster-name`).
    #[arg(long, default_value = "strand")]
    cluster_name: String,
}

/// What the demo started, so that `--down` removes exactly that.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DemoState {
    /// The demo ran `strand up`: `--down` stops the control plane.
    started_control_plane: bool,
    /// The `strand run` processes, one per workload.
    runners: Vec<Runner>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Runner {
    workload: String,
    pid: u32,
}

/// One workload of the demo.
struct App {
    name: &'static str,
    replicas: u32,
    service_account: &'static str,
    args: Vec<String>,
}

/// The Services, as emojivoto's manifests declare them.
const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata: {name: emoji-svc, namespace: emojivoto}
spec:
  selector: {app: emoji}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: voting-svc, namespace: emojivoto}
spec:
  selector: {app: voting}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-svc, namespace: emojivoto}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

const SERVICE_NAMES: [&str; 3] = ["emoji-svc", "voting-svc", "web-svc"];

pub async fn demo(ctx: &Ctx, args: DemoArgs) -> anyhow::Result<u8> {
    require_root(
        "demo",
        "runs each of the demo's pods in a network namespace of its own, with a veth and iptables rules",
    )?;
    if args.down {
        return down(ctx).await;
    }
    let bin_dir = crate::run::bin_dir()?;
    let demo_bin = bin_dir.join("strand-demo");
    if !demo_bin.exists() {
        bail!(
            "strand-demo not found in {} (build the workspace: cargo build --bins)",
            bin_dir.display()
        );
    }
    let started = Instant::now();
    let dir = demo_dir(ctx);
    let mut state = load_state(&dir).unwrap_or_default();
    if state.runners.iter().any(|r| alive(r.pid)) {
        println!("the demo is already running (`strand demo --down` removes it)");
    } else {
        state.runners.clear();
        if !control_plane_up(ctx).await {
            println!("==> starting the control plane");
            crate::up::start_detached(ctx, &["--cluster-name", &args.cluster_name]).await?;
            state.started_control_plane = true;
            save_state(&dir, &state)?;
        }
        let client = ctx.client()?;
        println!("==> applying the Services emoji-svc, voting-svc and web-svc");
        client
            .apply(SERVICES)
            .await
            .context("applying the demo's Services")?;
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        for app in apps(&demo_bin, args.rps) {
            println!(
                "==> strand run --name {} -n {NAMESPACE} --replicas {}",
                app.name, app.replicas
            );
            let pid = spawn_runner(ctx, &dir, &app)?;
            state.runners.push(Runner {
                workload: app.name.to_string(),
                pid,
            });
            save_state(&dir, &state)?;
        }
    }
    let pods = wait_ready(ctx, &state, args.timeout).await?;
    let web_ip = pods
        .iter()
        .find(|(name, _)| name.starts_with("web-"))
        .map(|(_, ip)| ip.clone())
        .unwrap_or_default();
    let strand = invocation(ctx);
    println!(
        "\nthe demo is up ({} pods ready in {:.1}s)\n\n  web page:   http://{web_ip}:8080/\n  try:        {strand} viz stat deploy -n {NAMESPACE}\n              {strand} viz stat deploy -n {NAMESPACE} --from deploy/web\n              {strand} viz edges deploy -n {NAMESPACE}\n              {strand} viz tap deploy/web -n {NAMESPACE}\n              {strand} viz dashboard    (then open http://127.0.0.1:50750/)\n              {strand} check\n              {strand} scale emoji -n {NAMESPACE} --replicas 3\n              {strand} get pods -n {NAMESPACE}\n  remove it:  {strand} demo --down\n",
        pods.len(),
        started.elapsed().as_secs_f64()
    );
    if args.no_watch {
        return Ok(0);
    }
    watch(ctx, args.refresh).await
}

/// How the user runs this `strand`: `strand` when that is on the PATH,
/// else its full path; with `--state-dir` when it is not the default.
fn invocation(ctx: &Ctx) -> String {
    let exe = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join("strand");
            candidate.exists()
                && candidate.canonicalize().ok() == exe.as_ref().and_then(|e| e.canonicalize().ok())
        })
    });
    let mut cmd = match (&exe, on_path) {
        (Some(exe), false) => exe.display().to_string(),
        _ => "strand".to_string(),
    };
    if ctx.state_dir() != Path::new("/var/lib/strand") {
        cmd.push_str(&format!(" --state-dir {}", ctx.state_dir().display()));
    }
    cmd
}

/// The control plane answers on its management API.
async fn control_plane_up(ctx: &Ctx) -> bool {
    match ctx.client() {
        Ok(c) => c.health().await.is_ok(),
        Err(_) => false,
    }
}

fn apps(demo_bin: &Path, rps: u32) -> Vec<App> {
    let bin = demo_bin.display().to_string();
    let args = |rest: &[&str]| {
        let mut v = vec![bin.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    vec![
        App {
            name: "emoji",
            replicas: 2,
            service_account: "emoji",
            args: args(&["emoji", "--listen", "0.0.0.0:8080"]),
        },
        App {
            name: "voting",
            replicas: 1,
            service_account: "voting",
            args: args(&["voting", "--listen", "0.0.0.0:8080"]),
        },
        App {
            name: "web",
            replicas: 1,
            service_account: "web",
            args: args(&[
                "web",
                "--listen",
                "0.0.0.0:8080",
                "--emoji-addr",
                "emoji-svc.emojivoto:8080",
                "--voting-addr",
                "voting-svc.emojivoto:8080",
            ]),
        },
        App {
            name: "vote-bot",
            replicas: 1,
            service_account: "default",
            args: args(&[
                "vote-bot",
                "--web",
                "web-svc.emojivoto:80",
                "--rps",
                &rps.to_string(),
                "--listen",
                "0.0.0.0:8080",
            ]),
        },
    ]
}

/// Starts `strand run` for one workload in the background, in a process
/// group of its own (Ctrl-C on the live table does not reach it), with its
/// output in `<demo-dir>/logs/<workload>.log`.
fn spawn_runner(ctx: &Ctx, dir: &Path, app: &App) -> anyhow::Result<u32> {
    let exe = std::env::current_exe().context("locating the strand binary")?;
    let log_path = dir.join("logs").join(format!("{}.log", app.name));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = std::process::Command::new(exe)
        .arg("--state-dir")
        .arg(ctx.state_dir())
        .args(["run", "--name", app.name, "-n", NAMESPACE])
        .args(["--replicas", &app.replicas.to_string()])
        .args(["--service-account", app.service_account])
        .args(["--port", "8080"])
        .arg("--")
        .args(&app.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting `strand run` for {}", app.name))?;
    Ok(child.id())
}

/// Waits until every replica of every workload is registered and ready;
/// returns `(pod, ip)` for each.
async fn wait_ready(
    ctx: &Ctx,
    state: &DemoState,
    timeout: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    let client = ctx.client()?;
    let want: u32 = apps(Path::new(""), 1).iter().map(|a| a.replicas).sum();
    let deadline = Instant::now() + timeout;
    let mut shown = 0;
    loop {
        let pods = client.list(Kind::Pod, Some(NAMESPACE)).await?;
        let ready: Vec<(String, String)> = pods
            .iter()
            .filter_map(|r| match r {
                Resource::Pod(p) if p.status.ready => Some((
                    p.metadata.name.clone(),
                    p.status.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect();
        if ready.len() != shown {
            shown = ready.len();
            println!("    {shown}/{want} pods ready");
        }
        if ready.len() as u32 >= want {
            return Ok(ready);
        }
        if let Some(dead) = state.runners.iter().find(|r| !alive(r.pid)) {
            bail!(
                "`strand run` for {} exited; its log ({}):\n{}",
                dead.workload,
                runner_log(ctx, &dead.workload).display(),
                crate::up::tail(&runner_log(ctx, &dead.workload), 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "only {}/{want} of the demo's pods were ready after {timeout:?}; see the logs in {}",
                ready.len(),
                demo_dir(ctx).join("logs").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Redraws the stat table until Ctrl-C.
async fn watch(ctx: &Ctx, refresh: Duration) -> anyhow::Result<u8> {
    let req = strand_viz::stat::StatRequest {
        resource: "deploy".parse().expect("a valid resource"),
        namespace: Some(NAMESPACE.to_string()),
        from: None,
        to: None,
        window: Duration::from_secs(60),
    };
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let table = match crate::viz::stat_embedded(ctx, &req).await {
            Ok(rsp) => crate::viz::render_stat(&rsp, false, false),
            Err(e) => format!("cannot read the metrics API: {e:#}\n"),
        };
        // Clear the screen, cursor home.
        print!(
            "\x1b[2J\x1b[H{}  (every {:?}; Ctrl-C to stop watching; the demo keeps running until `strand demo --down`)\n\n{table}",
            chrono_now(),
            refresh
        );
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
    println!("\nstopped watching; the demo keeps running (`strand demo --down` removes it)");
    Ok(0)
}

fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

/// `strand demo --down`.
async fn down(ctx: &Ctx) -> anyhow::Result<u8> {
    let dir = demo_dir(ctx);
    let state = load_state(&dir).unwrap_or_default();
    for r in &state.runners {
        if alive(r.pid) {
            println!("==> stopping {} (strand run, pid {})", r.workload, r.pid);
            let _ = kill(Pid::from_raw(r.pid as i32), Signal::SIGTERM);
        }
    }
    // Each runner deregisters its pods, drains the proxies and stops the
    // commands (10 s grace each at most), then removes the pods' networks.
    let deadline = Instant::now() + Duration::from_secs(40);
    while state.runners.iter().any(|r| alive(r.pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in state.runners.iter().filter(|r| alive(r.pid)) {
        eprintln!("{} did not stop within 40s; killing it", r.workload);
        let _ = kill(Pid::from_raw(-(r.pid as i32)), Signal::SIGKILL);
    }
    if let Ok(client) = ctx.client()
        && client.health().await.is_ok()
    {
        for svc in SERVICE_NAMES {
            match client.delete(Kind::Service, NAMESPACE, svc).await {
                Ok(_) => println!("==> deleted service {NAMESPACE}/{svc}"),
                Err(strand_controller_local::ClientError::NotFound(_)) => {}
                Err(e) => eprintln!("deleting service {NAMESPACE}/{svc}: {e}"),
            }
        }
        if state.started_control_plane {
            println!("==> stopping the control plane the demo started");
            crate::up::stop(ctx, Duration::from_secs(15)).await?;
        }
    }
    let logs = ctx.state_dir().join("logs").join(NAMESPACE);
    for path in [dir.as_path(), logs.as_path()] {
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("removing {}: {e}", path.display()),
        }
    }
    println!("the demo is removed");
    Ok(0)
}

fn demo_dir(ctx: &Ctx) -> PathBuf {
    ctx.state_dir().join("demo")
}

fn runner_log(ctx: &Ctx, workload: &str) -> PathBuf {
    demo_dir(ctx).join("logs").join(format!("{workload}.log"))
}

fn load_state(dir: &Path) -> Option<DemoState> {
    let text = std::fs::read_to_string(dir.join("demo.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn save_state(dir: &Path, state: &DemoState) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("demo.json");
    let tmp = dir.join("demo.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}
