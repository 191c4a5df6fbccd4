//! `strand up`, `strand down`, `strand check`: the local control plane's life.

use crate::ctx::{Ctx, require_root};
use anyhow::{Context as _, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use strand_controller_core::{Kind, Resource};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Run in the background; logs go to `<state-dir>/controller.log`.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Names this control plane's pods' network namespaces (`<name>_<ns>_<pod>`).
    #[arg(long, default_value = "strand")]
    cluster_name: String,
    /// Pods get addresses from here; the first address is the bridge's.
    #[arg(long, default_value = "10.42.0.0/16")]
    pod_cidr: String,
    /// Services get virtual IPs from here.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// The bridge pods plug into.
    #[arg(long, default_value = "strand0")]
    bridge: String,
    /// How long workload certificates are valid: `60s`, `90m`, `24h`, `7d`
    /// (proxies renew at 70% of it; never past the issuer's expiry).
    #[arg(long, default_value = "24h", value_parser = crate::run::parse_duration)]
    cert_lifetime: Duration,
    /// How often the metrics API reads every proxy's /metrics.
    #[arg(long, default_value = "10s", value_parser = crate::run::parse_duration)]
    scrape_interval: Duration,
    /// How long `--detach` waits for the control plane to be healthy.
    #[arg(long, default_value = "30s", value_parser = crate::run::parse_duration)]
    timeout: Duration,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// How long the control plane gets to stop before it is killed.
    #[arg(long, default_value = "15s", value_parser = crate::run::parse_duration)]
    timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// `table` (one line per check) or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

pub async fn up(ctx: &Ctx, args: UpArgs) -> anyhow::Result<u8> {
    require_root(
        "up",
        "creates the bridge pods plug into and serves DNS on it",
    )?;
    if let Ok(client) = ctx.client()
        && client.health().await.is_ok()
    {
        println!(
            "the control plane is already up (state in {}, API {})",
            ctx.state_dir().display(),
            ctx.api_addr()
        );
        return Ok(0);
    }
    let exe = std::env::current_exe().context("locating the strand binary")?;
    let controller = exe.with_file_name("strand-controller");
    if !controller.exists() {
        bail!(
            "strand-controller not found beside {} (build the workspace: cargo build --release --bins)",
            exe.display()
        );
    }
    std::fs::create_dir_all(ctx.state_dir())
        .with_context(|| format!("creating {}", ctx.state_dir().display()))?;
    let mut cmd = std::process::Command::new(&controller);
    cmd.arg("local")
        .arg("--state-dir")
        .arg(ctx.state_dir())
        .args(["--cluster-name", &args.cluster_name])
        .args(["--pod-cidr", &args.pod_cidr])
        .args(["--service-cidr", &args.service_cidr])
        .args(["--bridge", &args.bridge])
        .args(["--api-addr", &ctx.api_addr().to_string()])
        .arg("--cert-lifetime")
        .arg(format!("{}ms", args.cert_lifetime.as_millis()))
        .arg("--scrape-interval")
        .arg(format!("{}ms", args.scrape_interval.as_millis()));
    // glibc gives each thread an arena of its own and keeps freed memory in
    // them; two arenas cut the controller's RSS under 1,000 watchers of a
    // 10,000-endpoint service from ~100 to ~80 MiB (bench/discovery).
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        cmd.env("MALLOC_ARENA_MAX", "2");
    }
    if !args.detach {
        let err = cmd.exec();
        bail!("cannot run {}: {err}", controller.display());
    }
    let log_path = ctx.state_dir().join("controller.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", controller.display()))?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the control plane exited ({status}) while starting:\n{}",
                tail(&log_path, 20)
            );
        }
        if let Ok(client) = ctx.client()
            && client.health().await.is_ok()
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            bail!(
                "the control plane was not healthy after {:?}:\n{}",
                args.timeout,
                tail(&log_path, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cluster = ctx.cluster()?;
    println!(
        "control plane up (pid {}): API {}, destination {}, identity {}, DNS {}, metrics API {}, trace collector {}, pods on {} ({}); logs in {}",
        child.id(),
        cluster.api_addr,
        cluster.destination_addr,
        cluster.identity_addr,
        cluster.dns_addr,
        cluster.metrics_api_addr,
        cluster.trace_collector_addr,
        cluster.bridge,
        cluster.pod_cidr,
        log_path.display()
    );
    Ok(0)
}

/// `strand up --detach FLAGS` (for `strand demo`).
pub async fn start_detached(ctx: &Ctx, flags: &[&str]) -> anyhow::Result<()> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        up: UpArgs,
    }
    let mut argv = vec!["up", "--detach"];
    argv.extend_from_slice(flags);
    let args = <Defaults as clap::Parser>::try_parse_from(argv)?.up;
    up(ctx, args).await.map(|_| ())
}

pub async fn down(ctx: &Ctx, args: DownArgs) -> anyhow::Result<u8> {
    stop(ctx, args.timeout).await?;
    Ok(0)
}

/// Stops the control plane: SIGTERM, then SIGKILL after `timeout`.
pub async fn stop(ctx: &Ctx, timeout: Duration) -> anyhow::Result<()> {
    let Ok(cluster) = ctx.cluster() else {
        println!(
            "no control plane is running (state dir {})",
            ctx.state_dir().display()
        );
        return Ok(());
    };
    let pid = i32::try_from(cluster.pid).context("bad pid in cluster.json")?;
    let alive = || crate::ctx::alive(cluster.pid);
    if !alive() {
        println!("no control plane is running (pid {pid} has exited)");
        let _ = std::fs::remove_file(ctx.state_dir().join(strand_controller_core::CLUSTER_FILE));
        return Ok(());
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .with_context(|| format!("stopping the control plane (pid {pid})"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive() {
        eprintln!("the control plane did not stop within {timeout:?}; killing it");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    println!("control plane stopped");
    Ok(())
}

struct CheckResult {
    name: String,
    ok: bool,
    /// Passes, but needs attention soon (a certificate near its expiry).
    warning: bool,
    detail: String,
    hint: Option<String>,
}

pub async fn check(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<u8> {
    let mut results = Vec::new();
    let mut push = |name: &str, res: Result<String, (String, String)>| {
        results.push(match res {
            Ok(detail) => CheckResult {
                name: name.into(),
                ok: true,
                warning: false,
                detail,
                hint: None,
            },
            Err((detail, hint)) => CheckResult {
                name: name.into(),
                ok: false,
                warning: false,
                detail,
                hint: Some(hint),
            },
        });
    };
    let cluster = ctx.cluster();
    push(
        "control plane state",
        match &cluster {
            Ok(c) => Ok(format!("{} (pid {})", ctx.state_dir().display(), c.pid)),
            Err(e) => Err((
                format!("{e:#}"),
                "start it with `sudo strand up --detach`".into(),
            )),
        },
    );
    let client = ctx.client();
    let healthy = match &client {
        Ok(c) => c.health().await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    push(
        "management API",
        healthy
            .map(|_| format!("answering on {}", ctx.api_addr()))
            .map_err(|e| {
                (
                    e,
                    "is `strand up` running? see <state-dir>/controller.log".into(),
                )
            }),
    );
    if let Ok(c) = &cluster {
        push(
            "destination API",
            tcp_reachable(c.destination_addr)
                .await
                .map(|_| format!("listening on {}", c.destination_addr))
                .map_err(|e| {
                    (
                        e,
                        "the control plane's gRPC server is down; see its log".into(),
                    )
                }),
        );
        push(
            "DNS",
            dns_answers(c.dns_addr, &format!("strand-check.{}", c.cluster_domain))
                .await
                .map(|_| format!("answering on {}", c.dns_addr))
                .map_err(|e| {
                    (
                        e,
                        "pods cannot resolve service names; see the control plane's log".into(),
                    )
                }),
        );
    }
    if let Ok(c) = &cluster
        && c.identity_enabled()
    {
        push(
            "identity API",
            tcp_reachable(c.identity_addr)
                .await
                .map(|_| format!("listening on {}", c.identity_addr))
                .map_err(|e| {
                    (
                        e,
                        "proxies cannot get certificates; see the control plane's log".into(),
                    )
                }),
        );
    }
    if let Ok(c) = &cluster
        && c.metrics_api_addr.port() != 0
    {
        push(
            "metrics API",
            tcp_reachable(c.metrics_api_addr)
                .await
                .map(|_| format!("listening on {}", c.metrics_api_addr))
                .map_err(|e| {
                    (
                        e,
                        "`strand viz` cannot answer; see the control plane's log".into(),
                    )
                }),
        );
    }
    if let Ok(c) = &cluster
        && c.tracing_enabled()
    {
        push(
            "trace collector",
            tcp_reachable(c.trace_collector_addr)
                .await
                .map(|_| format!("listening on {}", c.trace_collector_addr))
                .map_err(|e| {
                    (
                        e,
                        "proxies cannot send spans (`strand viz trace` shows none); see the control plane's log".into(),
                    )
                }),
        );
    }
    if let Ok(c) = &client
        && let Ok(pods) = c.list(Kind::Pod, None).await
    {
        let pods: Vec<&strand_controller_core::Pod> = pods
            .iter()
            .filter_map(|r| match r {
                Resource::Pod(p) => Some(p),
                _ => None,
            })
            .collect();
        let name = |p: &strand_controller_core::Pod| {
            format!("{}/{}", p.metadata.namespace, p.metadata.name)
        };
        let not_ready: Vec<String> = pods
            .iter()
            .filter(|p| !p.status.ready)
            .map(|p| name(p))
            .collect();
        push(
            "pods ready",
            if not_ready.is_empty() {
                Ok(format!("{} pods", pods.len()))
            } else {
                Err((
                    format!("not ready: {}", not_ready.join(", ")),
                    "see the pod's proxy log in <state-dir>/logs/<namespace>/<pod>.proxy.log"
                        .into(),
                ))
            },
        );
        let meshed: Vec<_> = pods.iter().filter(|p| p.status.meshed).collect();
        let mut unready = Vec::new();
        for p in &meshed {
            let verdict = match p.status.proxy_admin_addr {
                Some(addr) => proxy_ready(addr).await,
                None => Err("no admin address registered".into()),
            };
            if let Err(e) = verdict {
                unready.push(format!("{} ({e})", name(p)));
            }
        }
        push(
            "proxies ready",
            if unready.is_empty() {
                Ok(format!("{} proxies answer /ready", meshed.len()))
            } else {
                Err((
                    unready.join(", "),
                    "see the proxy's log in <state-dir>/logs/<namespace>/<pod>.proxy.log".into(),
                ))
            },
        );
        if let Ok(cl) = &cluster {
            if strand_sys::is_root() {
                let mut missing = Vec::new();
                for p in &meshed {
                    let netns = cl.pod_netns(&p.metadata.namespace, &p.metadata.name);
                    if let Err(e) = capture_rules(&netns).await {
                        missing.push(format!("{} ({e})", name(p)));
                    }
                }
                push(
                    "iptables rules",
                    if missing.is_empty() {
                        Ok(format!("capture rules in place in {} pods", meshed.len()))
                    } else {
                        Err((
                            missing.join(", "),
                            "traffic of these pods bypasses the proxy; restart them (`strand scale`, or rerun `strand run`)".into(),
                        ))
                    },
                );
            } else {
                results.push(CheckResult {
                    name: "iptables rules".into(),
                    ok: true,
                    warning: true,
                    detail: "not checked: reading a pod's rules needs root".into(),
                    hint: Some("run `sudo strand check`".into()),
                });
            }
        }
    }
    let identity_dir = crate::identity::identity_dir(ctx);
    let now = std::time::SystemTime::now();
    for (name, file) in [
        ("trust anchor", strand_identity::TRUST_ANCHOR_FILE),
        ("issuer certificate", strand_identity::ISSUER_CERT_FILE),
    ] {
        use crate::identity::CertCheck;
        let rotate = "replace the CA with `sudo strand identity init --force` (or import one with --trust-anchor, --issuer and --issuer-key), then restart workloads";
        results.push(
            match crate::identity::check_cert(&identity_dir.join(file), now) {
                CertCheck::Valid(detail) => CheckResult {
                    name: name.into(),
                    ok: true,
                    warning: false,
                    detail,
                    hint: None,
                },
                CertCheck::ExpiresSoon(detail) => CheckResult {
                    name: name.into(),
                    ok: true,
                    warning: true,
                    detail,
                    hint: Some(format!("rotate it before then: {rotate}")),
                },
                CertCheck::Invalid(detail) => CheckResult {
                    name: name.into(),
                    ok: false,
                    warning: false,
                    detail,
                    hint: Some(rotate.into()),
                },
            },
        );
    }
    let all_ok = results.iter().all(|r| r.ok);
    if args.output == "json" {
        let checks: Vec<_> = results
            .iter()
            .map(|r| serde_json::json!({"check": r.name, "ok": r.ok, "warning": r.warning, "detail": r.detail, "hint": r.hint}))
            .collect();
        println!("{}", serde_json::json!({ "ok": all_ok, "checks": checks }));
    } else {
        for r in &results {
            let mark = match (r.ok, r.warning) {
                (true, false) => "\u{221a}",
                (true, true) => "\u{203c}",
                (false, _) => "\u{d7}",
            };
            println!("{mark} {}: {}", r.name, r.detail);
            if let Some(h) = &r.hint {
                println!("    hint: {h}");
            }
        }
        println!(
            "\nStatus check results are {}",
            if all_ok { "\u{221a}" } else { "\u{d7}" }
        );
    }
    Ok(if all_ok { 0 } else { 1 })
}

/// The proxy's admin endpoint answers `/ready` with 200.
async fn proxy_ready(addr: SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /ready HTTP/1.0\r\nHost: strand-check\r\n\r\n")
            .await?;
        let mut head = [0u8; 64];
        let n = tcp.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(head)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => {
            Ok(())
        }
        Ok(Ok(head)) => Err(format!(
            "{addr}/ready: {}",
            head.lines().next().unwrap_or("no answer")
        )),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: timed out")),
    }
}

/// The pod's nat table jumps to strand-init's chains for inbound and
/// outbound TCP.
async fn capture_rules(netns: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns, "iptables-save", "-t", "nat"])
        .output()
        .await
        .map_err(|e| format!("running iptables-save: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let rules = String::from_utf8_lossy(&out.stdout);
    let jumps = |chain: &str, target: &str| {
        rules
            .lines()
            .any(|l| l.starts_with(&format!("-A {chain} ")) && l.contains(&format!("-j {target}")))
    };
    let mut missing = Vec::new();
    if !jumps("PREROUTING", strand_init::rules::INBOUND_CHAIN) {
        missing.push("PREROUTING -> STRAND_INBOUND");
    }
    if !jumps("OUTPUT", strand_init::rules::OUTPUT_CHAIN) {
        missing.push("OUTPUT -> STRAND_OUTPUT");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

async fn tcp_reachable(addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: timed out")),
    }
}

/// Sends an A query and accepts any well-formed answer to it.
async fn dns_answers(server: SocketAddr, name: &str) -> Result<(), String> {
    let id: u16 = fastrand_id();
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).map_err(|_| "label too long".to_string())?);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("valid");
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.send_to(&q, server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) if n >= 12 && buf[..2] == id.to_be_bytes() => Ok(()),
        Ok(Ok(_)) => Err(format!("{server}: malformed answer")),
        Ok(Err(e)) => Err(format!("{server}: {e}")),
        Err(_) => Err(format!("{server}: no answer within 2s")),
    }
}

fn fastrand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
