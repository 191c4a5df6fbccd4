//! An ingress in the mesh, as a user runs one: a real nginx meshed with
//! `strand run --ingress`, proxying to a Service's pod address (as ingress
//! controllers do, from the Service's endpoints) with the
//! `l5d-dst-override` header naming the Service. The ingress's proxy then
//! routes each request by that name: balanced over every replica, over
//! mTLS, with the Service's profile routes, whatever pod nginx picked.
//!
//! ```text
//!  client ─▶ ingress pod: nginx ─▶ proxy ─┬─ l5d-dst-override: web… ─▶ web-1, web-2 (per request, mTLS)
//!                                          └─ no header (/direct) ───▶ the pod nginx named (mTLS)
//! ```

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use strand_e2e::local::LocalMesh;
use strand_testkit::require_root;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 8080}]}
";

const PROFILE: &str = "apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web.default.svc.cluster.local}
spec:
  routes:
    - name: GET /
      condition: {method: GET, pathRegex: /}
";

/// nginx as an ingress, listening on :8081, sending everything to one pod
/// of web (`pod`): with the override header on `/`, without on `/direct`.
fn nginx_conf(dir: &str, pod: &str) -> String {
    format!(
        "worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/cb;
    proxy_temp_path {dir}/p;
    fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u;
    scgi_temp_path {dir}/s;
    upstream web {{ server {pod}:8080; keepalive 16; }}
    server {{
        listen 8081;
        location / {{
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header l5d-dst-override web.default.svc.cluster.local:8080;
        }}
        location /direct {{
            proxy_pass http://web/;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

#[test]
fn an_ingress_routes_by_l5d_dst_override_across_replicas_over_mtls() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("ingress").unwrap();
    assert_eq!(mesh.apply(SERVICE).unwrap().code, Some(0));
    assert_eq!(mesh.apply(PROFILE).unwrap().code, Some(0));
    // Two replicas of web (labelled app=web).
    mesh.http_server("web", &["--replicas", "2"]).unwrap();
    mesh.wait_ready_pods("web", 2, Duration::from_secs(60))
        .unwrap();
    let pods = mesh.pod_ips("web").unwrap();
    let (first_pod, first_ip) = pods[0].clone();

    // nginx runs as an unprivileged user, from files in the mesh's state
    // directory.
    let dir = mesh.state_dir().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.to_str().unwrap().to_string();
    std::fs::write(
        dir.join("nginx.conf"),
        nginx_conf(&dir_s, &first_ip.to_string()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["-R", "a+rwX", &dir_s])
        .status()
        .unwrap();
    let conf = format!("{dir_s}/nginx.conf");
    let ingress = [
        "--name",
        "ingress",
        "--port",
        "8081",
        "--uid",
        "2103",
        "--ingress",
        "--",
        "nginx",
        "-p",
        &dir_s,
        "-e",
        &format!("{dir_s}/error.log"),
        "-c",
        &conf,
        "-g",
        "daemon off;",
    ];
    mesh.spawn_run("ingress", &ingress).unwrap();
    mesh.wait_ready_pods("ingress", 1, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}: {}", mesh.run_output("ingress")));
    let ingress_ip = mesh.pod_ips("ingress").unwrap()[0].1;

    // With the header: every request is balanced by the ingress's proxy
    // over both replicas, although nginx sends them all to one pod.
    let summary = mesh
        .http_client(&format!("http://{ingress_ip}:8081/"), 40)
        .unwrap();
    assert_eq!(summary["ok"], 40, "{summary}");
    let served = summary["served_by"].as_object().unwrap();
    assert_eq!(served.len(), 2, "both replicas: {summary}");

    // Without it: the pod nginx named, and only that one.
    let summary = mesh
        .http_client(&format!("http://{ingress_ip}:8081/direct"), 10)
        .unwrap();
    assert_eq!(summary["ok"], 10, "{summary}");
    let served: Vec<_> = summary["served_by"].as_object().unwrap().keys().collect();
    assert_eq!(served, [&first_pod], "{summary}");

    // The ingress's proxy: every response over mTLS from web's identity;
    // the 40 requests by name took the Service's profile route (requests
    // to the pod's address alone have no profile).
    let text = mesh.proxy_metrics(ingress_ip).unwrap().0;
    let outbound = text
        .lines()
        .filter(|l| l.starts_with("response_total{") && l.contains(r#"direction="outbound""#))
        .collect::<Vec<_>>();
    assert!(!outbound.is_empty(), "{text}");
    assert!(
        outbound.iter().all(|l| l.contains(r#"tls="true""#)
            && l.contains(r#"server_id="default.default.serviceaccount.identity"#)),
        "{outbound:#?}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("route_request_total{")
            && l.contains(r#"rt_route="GET /""#)
            && l.ends_with(" 40")),
        "{text}"
    );
}
