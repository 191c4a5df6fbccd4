//! Local mode through the `strand` CLI: the control plane in a test
//! namespace, resources applied, workloads run as meshed processes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use strand_e2e::local::LocalMesh;
use strand_testkit::{bin_path, require_root};

const WEB_SVC: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080}]
";

#[test]
fn bad_manifests_are_rejected_whole_with_a_clear_error() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("badyaml").unwrap();
    let cases = [
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a\n",
            "document 1",
            "not valid YAML",
        ),
        (
            "apiVersion: v1\nkind: Gadget\nmetadata: {name: a}\n",
            "kind",
            "unknown kind \"Gadget\"",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: x}]}\n",
            "spec.ports[0].port",
            "is required",
        ),
        (
            // The first document is valid: nothing of it may be stored.
            "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {ports: [{port: 1}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{name: a, port: 80}, {name: b, port: 80}]}\n",
            "document 2 (Service default/b): spec.ports[1].port",
            "duplicate port 80/TCP",
        ),
    ];
    for (yaml, what, why) in cases {
        let out = mesh.apply(yaml).unwrap();
        assert_ne!(out.code, Some(0), "{yaml}");
        assert!(
            out.stderr.contains(what) && out.stderr.contains(why),
            "{yaml}: {}",
            out.stderr
        );
    }
    let list = mesh.strand(&["get", "svc", "-A", "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{}", list.stdout);
}

#[test]
fn dns_answers_short_and_full_names_and_nxdomain_fast() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("dns").unwrap();
    let out = mesh.apply(WEB_SVC).unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let svc = mesh.strand(&["get", "svc", "web", "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&svc.stdout).unwrap();
    let vip = v["spec"]["clusterIP"].as_str().unwrap().to_string();

    let names = [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
    ];
    let mut args = vec!["run", "--name", "probe", "--", "getent", "hosts"];
    args.extend(names);
    let out = mesh.strand(&args).unwrap();
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.lines().count(), names.len(), "{}", out.stdout);
    assert!(
        out.stdout.lines().all(|l| l.starts_with(&vip)),
        "{}",
        out.stdout
    );

    let started = Instant::now();
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "probe",
            "--",
            "getent",
            "hosts",
            "nope.default.svc.cluster.local",
        ])
        .unwrap();
    assert_eq!(
        out.code,
        Some(2),
        "getent exits 2 for an unknown name: {}",
        out.stderr
    );
    // Pod set-up and teardown dominate; a resolver waiting on a timeout would take 5 s or more.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn run_scale_and_stop_leave_nothing_behind() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("scale").unwrap();
    let app = bin_path("strand-testapp");
    let app = app.to_str().unwrap();
    let run = mesh
        .spawn_run(
            "web",
            &[
                "--name",
                "web",
                "--port",
                "8080",
                "--replicas",
                "2",
                "--",
                app,
                "http",
                "--listen",
                "0.0.0.0:8080",
            ],
        )
        .unwrap();
    mesh.wait_ready_pods("web", 2, Duration::from_secs(60))
        .unwrap();
    let out = mesh.strand(&["scale", "web", "--replicas", "3"]).unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    mesh.wait_ready_pods("web", 3, Duration::from_secs(60))
        .unwrap();
    assert_eq!(mesh.pod_namespaces().len(), 3);
    mesh.strand(&["scale", "web", "--replicas", "1"]).unwrap();
    mesh.wait_ready_pods("web", 1, Duration::from_secs(60))
        .unwrap();

    // A second runner for the same workload is refused.
    let out = mesh
        .strand(&["run", "--name", "web", "--", "true"])
        .unwrap();
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("already running"), "{}", out.stderr);

    mesh.stop_run(run, Duration::from_secs(30)).unwrap();
    assert!(mesh.ready_pods("web").unwrap().is_empty());
    let workloads = mesh.strand(&["get", "workloads", "-o", "json"]).unwrap();
    assert!(
        !workloads.stdout.contains("\"web\""),
        "{}",
        workloads.stdout
    );
    assert_eq!(mesh.pod_namespaces(), Vec::<String>::new());
    let out = mesh.run_output("web");
    assert!(out.contains("[web-1] listening"), "{out}");
}

#[test]
fn run_exits_with_the_commands_status() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("status").unwrap();
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "job",
            "--",
            "sh",
            "-c",
            "echo hello; exit 7",
        ])
        .unwrap();
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(out.stdout.contains("hello"), "{}", out.stdout);
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "job",
            "--replicas",
            "2",
            "--",
            "sh",
            "-c",
            "[ \"$POD_NAME\" = job-2 ] && exit 3; exit 0",
        ])
        .unwrap();
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_eq!(mesh.pod_namespaces(), Vec::<String>::new());
}

#[test]
fn the_store_survives_a_restart_of_the_control_plane() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("restart").unwrap();
    mesh.apply(WEB_SVC).unwrap();
    let before = mesh
        .strand(&["get", "svc", "web", "-o", "json"])
        .unwrap()
        .stdout;
    assert_eq!(mesh.strand(&["down"]).unwrap().code, Some(0));
    assert_ne!(mesh.strand(&["get", "svc"]).unwrap().code, Some(0));
    let up = mesh
        .strand(&["up", "--detach", "--cluster-name", mesh.name()])
        .unwrap();
    assert_eq!(up.code, Some(0), "{}", up.stderr);
    let after = mesh
        .strand(&["get", "svc", "web", "-o", "json"])
        .unwrap()
        .stdout;
    assert_eq!(before, after);
}

#[test]
fn without_root_up_and_run_say_what_is_missing() {
    if !require_root() {
        return;
    }
    for args in [&["up"][..], &["run", "--name", "x", "--", "true"]] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=2103", "--regid=2103", "--clear-groups"])
            .arg(bin_path("strand"))
            .args(["--state-dir", "/tmp/strand-e2e-nonroot"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("needs root") && stderr.contains("CAP_NET_ADMIN"),
            "{stderr}"
        );
    }
}

#[test]
fn kill_9_of_the_control_plane_loses_no_acknowledged_apply() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("kill9").unwrap();
    let pid = {
        let text = std::fs::read_to_string(mesh.state_dir().join("cluster.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["pid"].as_u64().unwrap() as i32
    };
    // Applies in a loop from a thread; the control plane is killed under it.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| {
        let (acked, stopped) = (acked.clone(), stop.clone());
        let mesh = &mesh;
        s.spawn(move || {
            for i in 0..2000 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let name = format!("svc-{i}");
                let yaml = format!(
                    "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]}}\n"
                );
                match mesh.apply(&yaml) {
                    Ok(out) if out.code == Some(0) => acked.lock().unwrap().push(name),
                    _ => break,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 5,
        "only {} applies before the kill",
        acked.len()
    );
    let up = mesh
        .strand(&["up", "--detach", "--cluster-name", mesh.name()])
        .unwrap();
    assert_eq!(up.code, Some(0), "{}{}", up.stdout, up.stderr);
    let list = mesh.strand(&["get", "svc", "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let stored: std::collections::BTreeSet<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    for name in &acked {
        assert!(
            stored.contains(name.as_str()),
            "{name} was acknowledged but is missing"
        );
    }
}

#[test]
fn pods_of_a_killed_runner_are_deregistered() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("orphans").unwrap();
    let run = mesh
        .spawn_run(
            "sleeper",
            &["--name", "sleeper", "--replicas", "2", "--", "sleep", "600"],
        )
        .unwrap();
    mesh.wait_ready_pods("sleeper", 2, Duration::from_secs(60))
        .unwrap();
    // SIGKILL the runner: it cannot clean up; then the commands die too
    // (as when a host loses a process tree).
    mesh.kill_run(run);
    for ns in mesh.pod_namespaces() {
        for pid in strand_sys::net::netns_pids(&ns) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pods = mesh.strand(&["get", "pods", "-o", "json"]).unwrap();
        let workloads = mesh.strand(&["get", "workloads", "-o", "json"]).unwrap();
        if !pods.stdout.contains("sleeper") && !workloads.stdout.contains("sleeper") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still registered:\n{}\n{}",
            pods.stdout,
            workloads.stdout
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
