//! `strand-netns-demo`: two meshed pods in network namespaces on this host,
//! one exchange of every protocol the proxy handles, then the proxies'
//! metrics. Everything it creates is removed when it exits.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use strand_e2e::{MeshedPod, SharedDir};
use strand_testkit::{Child, Network};

fn main() -> ExitCode {
    if !strand_sys::is_root() {
        eprintln!(
            "strand-netns-demo needs root: it creates network namespaces, a bridge and iptables rules \
             (CAP_NET_ADMIN and CAP_SYS_ADMIN). Run it with sudo."
        );
        return ExitCode::from(77);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    println!("==> creating pods `client` and `server` (network namespaces on a private bridge)");
    let net = Network::new("demo")?;
    let server = MeshedPod::start(&net, "server", &[]).context("starting the server pod")?;
    let client = MeshedPod::start(&net, "client", &[]).context("starting the client pod")?;
    println!(
        "    server {}  client {}  (strand-init installed iptables rules; strand-proxy runs as uid 2102 in each)",
        server.pod.ip(),
        client.pod.ip()
    );

    let shared = SharedDir::new("demo")?;
    let ca = shared.path().join("ca.pem");
    let ca = ca.to_str().context("temp path is UTF-8")?;
    println!("==> starting servers in the server pod");
    let _servers: Vec<Child> = [
        vec!["http", "--listen", "0.0.0.0:8080", "--name", "server"],
        vec!["grpc", "--listen", "0.0.0.0:9090"],
        vec!["ws", "--listen", "0.0.0.0:8090"],
        vec!["tcp-echo", "--listen", "0.0.0.0:7000"],
        vec![
            "banner",
            "--listen",
            "0.0.0.0:5432",
            "--banner",
            "220 demo banner",
        ],
        vec![
            "tls",
            "--listen",
            "0.0.0.0:8443",
            "--name",
            "secure.demo",
            "--ca-out",
            ca,
        ],
    ]
    .into_iter()
    .map(|args| -> anyhow::Result<Child> {
        let mut cmd = server.app();
        cmd.args(&args);
        let mut child = server.pod.spawn(cmd)?;
        child.wait_listening()?;
        Ok(child)
    })
    .collect::<anyhow::Result<_>>()?;

    let ip = server.pod.ip();
    println!("==> the client pod talks to the server pod; both proxies are in the path");
    let exchanges: Vec<(&str, Vec<String>)> = vec![
        (
            "HTTP/1.1 (3 requests, one connection)",
            args(&[
                "http-client",
                "--url",
                &format!("http://{ip}:8080/"),
                "--count",
                "3",
            ]),
        ),
        (
            "HTTP/1.1 1 MiB chunked POST",
            args(&[
                "http-client",
                "--url",
                &format!("http://{ip}:8080/sink"),
                "--method",
                "POST",
                "--body-bytes",
                "1048576",
                "--chunked",
            ]),
        ),
        (
            "HTTP/2 prior knowledge",
            args(&[
                "http-client",
                "--url",
                &format!("http://{ip}:8080/"),
                "--http2-prior-knowledge",
            ]),
        ),
        (
            "gRPC unary",
            args(&[
                "grpc-client",
                "--target",
                &format!("http://{ip}:9090"),
                "unary",
                "--count",
                "3",
            ]),
        ),
        (
            "gRPC bidi streaming",
            args(&[
                "grpc-client",
                "--target",
                &format!("http://{ip}:9090"),
                "bidi",
                "--count",
                "10",
            ]),
        ),
        (
            "WebSocket echo",
            args(&[
                "ws-client",
                "--url",
                &format!("ws://{ip}:8090/"),
                "--count",
                "5",
            ]),
        ),
        (
            "raw TCP echo",
            args(&[
                "tcp-client",
                "--connect",
                &format!("{ip}:7000"),
                "--send",
                "hello",
            ]),
        ),
        (
            "server-speaks-first (opaque port 5432)",
            args(&["banner-client", "--connect", &format!("{ip}:5432")]),
        ),
        (
            "TLS passthrough",
            args(&[
                "tls-client",
                "--connect",
                &format!("{ip}:8443"),
                "--sni",
                "secure.demo",
                "--ca",
                ca,
                "--send",
                "hi",
            ]),
        ),
    ];
    let mut failures = 0;
    for (name, argv) in &exchanges {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        match client.run_app(&argv) {
            Ok(out) => println!("  ok   {name:<40} {out}"),
            Err(e) => {
                failures += 1;
                println!("  FAIL {name:<40} {e:#}");
            }
        }
    }

    for (label, pod, direction) in [
        ("client", &client, "outbound"),
        ("server", &server, "inbound"),
    ] {
        println!(
            "\n==> {label} pod's proxy, {direction} traffic by target (from GET :4191/metrics)"
        );
        let metrics = pod.metrics()?;
        println!(
            "  {:<20} {:>8} {:>8} {:>8} {:>6} {:>12} {:>12}",
            "TARGET", "REQUESTS", "SUCCESS", "FAILURE", "CONNS", "BYTES_IN", "BYTES_OUT"
        );
        for target in targets(&metrics) {
            let t = format!("target_addr=\"{target}\"");
            let d = format!("direction=\"{direction}\"");
            let sum = |name: &str, extra: &[&str]| {
                metrics.sum(name, &[&[d.as_str(), t.as_str()], extra].concat())
            };
            println!(
                "  {:<20} {:>8} {:>8} {:>8} {:>6} {:>12} {:>12}",
                target,
                sum("request_total", &[]),
                sum("response_total", &["classification=\"success\""]),
                sum("response_total", &["classification=\"failure\""]),
                sum("tcp_open_total", &["peer=\"src\""]),
                sum("tcp_read_bytes_total", &["peer=\"src\""]),
                sum("tcp_write_bytes_total", &["peer=\"src\""]),
            );
        }
        println!(
            "  process: rss {:.1} MiB, cpu {:.2} s",
            metrics.sum("process_resident_memory_bytes", &[]) / 1048576.0,
            metrics.sum("process_cpu_seconds_total", &[])
        );
    }
    println!(
        "\n(each proxy serves every series, with Linkerd's names and labels, at :4191/metrics)"
    );
    println!("\n==> removing the pods (namespaces, veths, iptables rules go with them)");
    anyhow::ensure!(failures == 0, "{failures} exchange(s) failed");
    Ok(())
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Every `target_addr` label value in a scrape, sorted.
fn targets(metrics: &strand_e2e::Metrics) -> Vec<String> {
    let mut out: Vec<String> = metrics
        .0
        .lines()
        .filter(|l| l.starts_with("tcp_open_total{"))
        .filter_map(|l| {
            Some(
                l.split("target_addr=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
