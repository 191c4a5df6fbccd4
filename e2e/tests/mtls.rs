//! Automatic mTLS in local mode, checked from outside the proxies: what
//! crosses a pod's veth (captured with tcpdump), the proxies' metrics, and
//! the identity service's answers to requests made wrong on purpose.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use strand_controller_core::LocalCluster;
use strand_e2e::local::LocalMesh;
use strand_e2e::{Metrics, pcap};
use strand_testkit::{bin_path, require_root};

const WEB_SVC: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080}]
";

const MARKER: &str = "strand-plaintext-marker-7f3a9c";

fn testapp() -> String {
    bin_path("strand-testapp").to_str().unwrap().to_string()
}

fn identity(sa: &str) -> String {
    format!("{sa}.default.serviceaccount.identity.linkerd.cluster.local")
}

/// A mesh with Service `web` and one ready HTTP server pod behind it.
fn web_mesh(label: &str) -> (LocalMesh, std::net::Ipv4Addr) {
    let mut mesh = LocalMesh::up(label).unwrap();
    assert_eq!(mesh.apply(WEB_SVC).unwrap().code, Some(0));
    let ip = mesh
        .http_server("web", &["--label", "app=web", "--service-account", "web"])
        .unwrap();
    (mesh, ip)
}

#[test]
fn meshed_traffic_is_encrypted_with_the_hybrid_post_quantum_group() {
    if !require_root() {
        return;
    }
    let (mesh, web_ip) = web_mesh("mtls-wire");
    let pcap_path = mesh.state_dir().join("web.pcap");
    let veth = LocalCluster::host_veth(web_ip);
    let mut dump = mesh
        .ns_cmd("tcpdump")
        // -Z root: Debian's tcpdump otherwise drops to its own user before
        // opening the file, which it may not write.
        // --immediate-mode: hand packets over as they come, not when a
        // kernel buffer fills (they would be lost at SIGINT).
        .args([
            "-i",
            &veth,
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            "-n",
            "-Z",
            "root",
            "-w",
        ])
        .arg(&pcap_path)
        .arg("tcp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on ..." once capturing.
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");

    // A meshed client posts the marker, then reads its own proxy's metrics.
    let script = format!(
        "curl -sS --fail --max-time 10 --data-binary {MARKER} http://web:8080/echo && echo && curl -sS http://127.0.0.1:4191/metrics"
    );
    let out = mesh
        .run_script("client", &["--service-account", "client"], &script)
        .unwrap();
    assert!(out.stdout.starts_with(MARKER), "{}", out.stdout);
    let client = Metrics(out.stdout.clone());
    let server_id = format!("server_id=\"{}\"", identity("web"));
    assert_eq!(
        client.sum(
            "response_total",
            &["direction=\"outbound\"", "tls=\"true\"", &server_id]
        ),
        1.0,
        "{client}"
    );

    // Stop the capture (once it has written what it saw) and read it.
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(dump.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    dump.wait().unwrap();
    let bytes = std::fs::read(&pcap_path).unwrap();
    let segments = pcap::tcp_segments(&bytes).unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(
        !segments.is_empty(),
        "no TCP payload captured on {veth} ({} bytes of pcap): {line}{rest}",
        bytes.len()
    );
    assert!(
        !pcap::contains(&segments, MARKER.as_bytes()),
        "the request body crossed the wire in plaintext"
    );
    assert!(pcap::application_data_records(&segments) >= 2);
    let groups = pcap::server_hello_groups(&segments);
    assert!(!groups.is_empty(), "no ServerHello captured");
    assert!(
        groups.iter().all(|&g| g == pcap::X25519_MLKEM768),
        "key exchange groups {groups:x?}"
    );

    let server = mesh.proxy_metrics(web_ip).unwrap();
    let client_id = format!("client_id=\"{}\"", identity("client"));
    assert_eq!(
        server.sum(
            "response_total",
            &["direction=\"inbound\"", "tls=\"true\"", &client_id]
        ),
        1.0,
        "{server}"
    );
    assert!(server.sum("identity_cert_expiration_timestamp_seconds", &[]) > 0.0);

    // `strand identity` reads the certificate the pod's proxy presents.
    let pod = mesh.pod_ips("web").unwrap()[0].0.clone();
    let out = mesh.strand(&["identity", &pod]).unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&identity("web")), "{}", out.stdout);
    let out = mesh.strand(&["identity", &pod, "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["identity"], identity("web"), "{v}");
}

#[test]
fn an_unmeshed_client_reaches_a_meshed_server_in_plaintext() {
    if !require_root() {
        return;
    }
    let (mesh, web_ip) = web_mesh("mtls-plain");
    // From the host: no proxy on the client side.
    let mut cmd = mesh.ns_cmd("curl");
    cmd.args([
        "-sS",
        "--fail",
        "--max-time",
        "10",
        "--data-binary",
        "plain-hello",
        &format!("http://{web_ip}:8080/echo"),
    ]);
    let out = strand_e2e::local::run_bounded(cmd, Duration::from_secs(20)).unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "plain-hello");
    let server = mesh.proxy_metrics(web_ip).unwrap();
    assert_eq!(
        server.sum(
            "response_total",
            &[
                "direction=\"inbound\"",
                "tls=\"no_identity\"",
                "no_tls_reason=\"no_tls_from_remote\""
            ]
        ),
        1.0,
        "{server}"
    );
}

#[test]
fn the_identity_service_refuses_stolen_tokens_and_bad_csrs() {
    if !require_root() {
        return;
    }
    let (mesh, _) = web_mesh("mtls-refuse");
    let cluster = mesh.cluster().unwrap();
    let addr = cluster["identityAddr"].as_str().unwrap().to_string();
    let state = mesh.state_dir().display().to_string();
    let web_pod = mesh.pod_ips("web").unwrap()[0].0.clone();
    let app = testapp();
    let certify = format!("{app} certify --addr {addr} --ca {state}/identity/ca.crt");
    // From pod `thief`: web's token; its own token with a CSR for web; its
    // own token with a malformed CSR; and its own token, properly.
    let own_token = format!("{state}/pods/default_$POD_NAME/identity-token");
    let web = identity("web");
    let thief = identity("thief");
    let script = format!(
        "{certify} --identity {web} --token-file {state}/pods/default_{web_pod}/identity-token; \
         {certify} --identity {thief} --token-file {own_token} --csr-name {web}; \
         {certify} --identity {thief} --token-file {own_token} --garbage-csr; \
         {certify} --identity {thief} --token-file {own_token}"
    );
    let out = mesh
        .run_script(
            "thief",
            &["--service-account", "thief", "--uid", "0"],
            &script,
        )
        .unwrap();
    let results: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4, "{}", out.stdout);
    for r in &results[..3] {
        assert_eq!(r["ok"], false, "{r}");
    }
    assert_eq!(results[3]["ok"], true, "{}", results[3]);

    let metrics = Metrics(mesh.curl("http://127.0.0.1:9990/metrics").unwrap());
    for reason in ["token_peer_mismatch", "identity_mismatch", "malformed_csr"] {
        assert!(
            metrics.sum(
                "identity_cert_rejected_total",
                &[&format!("reason=\"{reason}\"")]
            ) >= 1.0,
            "{reason}: {metrics}"
        );
    }
}
