//! Discovery and load balancing in local mode, driven through the CLI: a
//! Service's virtual IP resolves through the control plane, and requests
//! are balanced per request across its replicas.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use strand_e2e::local::LocalMesh;
use strand_testkit::{bin_path, require_root};

const ECHO_SVC: &str = "apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 9090}]
";

/// These tests measure how requests spread by latency, so they run one at a
/// time: several meshes sharing two cores would make replicas' latencies
/// differ for reasons that have nothing to do with the replicas.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn testapp() -> String {
    bin_path("strand-testapp").to_str().unwrap().to_string()
}

/// Starts `replicas` gRPC echo servers as workload `name` with label app=echo.
fn echo_servers(mesh: &mut LocalMesh, name: &str, replicas: u32, extra: &[&str]) -> usize {
    let app = testapp();
    let replicas = replicas.to_string();
    let mut args = vec![
        "--name",
        name,
        "--label",
        "app=echo",
        "--port",
        "9090",
        "--replicas",
        &replicas,
        "--",
        &app,
        "grpc",
        "--listen",
        "0.0.0.0:9090",
    ];
    args.extend_from_slice(extra);
    mesh.spawn_run(name, &args).unwrap()
}

/// Runs the gRPC client in a pod of its own and returns its JSON summary.
fn grpc_client(mesh: &LocalMesh, args: &[&str]) -> serde_json::Value {
    let app = testapp();
    let mut all = vec![
        "run",
        "--name",
        "client",
        "--",
        &app,
        "grpc-client",
        "--target",
        "http://echo:9090",
        "--timeout-ms",
        "120000",
        "unary",
    ];
    all.extend_from_slice(args);
    let out = mesh.strand(&all).unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "client failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Starts a client pod sending `count` unary calls at `rate` per second
/// over one connection; its summary is in `run_output("client")`.
fn paced_client(mesh: &mut LocalMesh, count: u32, rate: u32) -> usize {
    let app = testapp();
    // The client's deadline for the whole run: its paced length plus a minute.
    let timeout = (u64::from(count) * 1000 / u64::from(rate.max(1)) + 60_000).to_string();
    let (count, rate) = (count.to_string(), rate.to_string());
    mesh.spawn_run(
        "client",
        &[
            "--name",
            "client",
            "--",
            &app,
            "grpc-client",
            "--target",
            "http://echo:9090",
            "--timeout-ms",
            &timeout,
            "unary",
            "--count",
            &count,
            "--rate",
            &rate,
        ],
    )
    .unwrap()
}

/// Waits for a [`paced_client`] to finish successfully; its summary.
fn finished_client(mesh: &mut LocalMesh, client: usize, within: Duration) -> serde_json::Value {
    let code = mesh.wait_run(client, within).unwrap();
    let out = mesh.run_output("client");
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().rfind(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

/// A mesh with Service `echo` and `replicas` ready echo servers behind it.
fn echo_mesh(label: &str, replicas: u32) -> LocalMesh {
    echo_mesh_with(label, replicas, &[])
}

/// [`echo_mesh`] with more `strand up` flags.
fn echo_mesh_with(label: &str, replicas: u32, up_flags: &[&str]) -> LocalMesh {
    let mut mesh = LocalMesh::up_with(label, up_flags).unwrap();
    assert_eq!(mesh.apply(ECHO_SVC).unwrap().code, Some(0));
    echo_servers(&mut mesh, "echo", replicas, &[]);
    mesh.wait_ready_pods("echo", replicas as usize, Duration::from_secs(60))
        .unwrap();
    mesh
}

fn counts(summary: &serde_json::Value) -> BTreeMap<String, u64> {
    summary["served_by_counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn requests_on_one_connection_are_balanced_across_replicas() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mesh = echo_mesh("balance", 3);
    let summary = grpc_client(&mesh, &["--count", "3000"]);
    let counts = counts(&summary);
    eprintln!("3,000 requests over one connection: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (pod, n) in &counts {
        // Within 20% of an equal share of 3,000.
        assert!((800..=1200).contains(n), "{pod} got {n}: {counts:?}");
    }
}

#[test]
fn a_slow_replica_gets_few_requests() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut mesh = echo_mesh("slow", 2);
    echo_servers(&mut mesh, "echo-slow", 1, &["--delay-ms", "50"]);
    mesh.wait_ready_pods("echo-slow", 1, Duration::from_secs(60))
        .unwrap();
    let summary = grpc_client(&mesh, &["--count", "1000"]);
    let counts = counts(&summary);
    let slow = counts.get("echo-slow-1").copied().unwrap_or(0);
    eprintln!("1,000 requests, one replica 50 ms slower: {counts:?}");
    assert!(
        slow < 100,
        "the slow replica got {slow} of 1000: {counts:?}"
    );
}

#[test]
fn scaling_under_traffic_fails_no_request() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut mesh = echo_mesh("scaletraffic", 3);
    // 200 rps for 12 s while the workload goes 3 -> 1 -> 3.
    let client = paced_client(&mut mesh, 2400, 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        mesh.strand(&["scale", "echo", "--replicas", "1"])
            .unwrap()
            .code,
        Some(0)
    );
    mesh.wait_ready_pods("echo", 1, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        mesh.strand(&["scale", "echo", "--replicas", "3"])
            .unwrap()
            .code,
        Some(0)
    );
    mesh.wait_ready_pods("echo", 3, Duration::from_secs(30))
        .unwrap();
    let summary = finished_client(&mut mesh, client, Duration::from_secs(60));
    assert_eq!(summary["ok"], 2400, "{summary}");
    assert!(counts(&summary).len() >= 3, "{summary}");
}

#[test]
fn traffic_survives_a_control_plane_outage() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut mesh = echo_mesh("outage", 2);
    let client = paced_client(&mut mesh, 1000, 100);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mesh.strand(&["down"]).unwrap().code, Some(0));
    std::thread::sleep(Duration::from_secs(3));
    let up = mesh
        .strand(&["up", "--detach", "--cluster-name", mesh.name()])
        .unwrap();
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    let summary = finished_client(&mut mesh, client, Duration::from_secs(60));
    assert_eq!(summary["ok"], 1000, "{summary}");
    // The services and workloads are still there after the restart.
    let svc = mesh.strand(&["get", "svc", "echo"]).unwrap();
    assert_eq!(svc.code, Some(0), "{}", svc.stderr);
    assert_eq!(mesh.ready_pods("echo").unwrap().len(), 2);
}

#[test]
fn a_destination_that_is_not_a_service_is_forwarded() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut mesh = LocalMesh::up("forward").unwrap();
    let ip = mesh.http_server("plain", &[]).unwrap();
    let app = testapp();
    let url = format!("http://{ip}:8080/");
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "client",
            "--",
            &app,
            "http-client",
            "--url",
            &url,
            "--count",
            "3",
        ])
        .unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"ok\":3"), "{}", out.stdout);
}

#[test]
fn requests_naming_a_service_are_routed_by_name() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut mesh = LocalMesh::up("byname").unwrap();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 8080}]}\n";
    assert_eq!(mesh.apply(svc).unwrap().code, Some(0));
    let app = testapp();
    mesh.spawn_run(
        "web",
        &[
            "--name",
            "web",
            "--port",
            "8080",
            "--replicas",
            "2",
            "--",
            &app,
            "http",
            "--listen",
            "0.0.0.0:8080",
        ],
    )
    .unwrap();
    mesh.wait_ready_pods("web", 2, Duration::from_secs(60))
        .unwrap();
    // The connection goes to an address where nothing listens (the bridge,
    // port 9); the header names the service, so the proxy routes by name.
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "client",
            "--",
            &app,
            "http-client",
            "--url",
            "http://10.42.0.1:9/",
            "-H",
            "l5d-dst-override: web.default.svc.cluster.local:8080",
            "--count",
            "20",
        ])
        .unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let line = out.stdout.lines().rfind(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["ok"], 20, "{line}");
    // Balanced per request across both replicas.
    let served = v["served_by"].as_object().unwrap();
    assert_eq!(served.len(), 2, "{line}");
}

#[test]
fn certificates_rotate_under_traffic_without_a_failed_request() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    // 60 s certificates, renewed at 70% of their life: every proxy renews
    // at least three times during 3 minutes at 200 rps.
    let mut mesh = echo_mesh_with("rotate", 2, &["--cert-lifetime", "60s"]);
    let ips: Vec<_> = mesh.pod_ips("echo").unwrap();
    let client = paced_client(&mut mesh, 36_000, 200);
    let summary = finished_client(&mut mesh, client, Duration::from_secs(240));
    assert_eq!(summary["calls"], 36_000, "{summary}");
    assert_eq!(summary["ok"], 36_000, "{summary}");
    for (pod, ip) in ips {
        let m = mesh.proxy_metrics(ip).unwrap();
        let refreshes = m.sum("identity_cert_refresh_total", &[]);
        eprintln!("{pod}: {refreshes} certificates in 3 minutes");
        assert!(refreshes >= 4.0, "{pod}: {m}");
        assert_eq!(
            m.sum("identity_cert_refresh_failure_total", &[]),
            0.0,
            "{pod}"
        );
    }
}
