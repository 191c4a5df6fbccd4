//! Distributed tracing in local mode, as a user meets it: a meshed client
//! sends a request with a sampled W3C trace context to a Service; its
//! proxy and the server's proxy each report a span to the control plane's
//! trace collector (OTLP/gRPC), each naming the one before as its parent;
//! `strand viz trace` lists the trace and shows its spans.
//!
//! ```text
//!  client (traceparent 00-T-P-01) ─▶ client proxy: span C (parent P)
//!      ─▶ mTLS ─▶ web proxy: span W (parent C) ─▶ web app sees 00-T-W-01
//!  both proxies ─OTLP─▶ control plane ─▶ strand viz trace T
//! ```

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use strand_e2e::local::LocalMesh;
use strand_testkit::require_root;

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 8080}]}
";

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// `strand viz trace ARGS -o json`, parsed.
fn viz_trace(mesh: &LocalMesh, args: &[&str]) -> Value {
    let mut all = vec!["viz", "trace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = mesh.strand(&all).unwrap();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn a_traced_request_leaves_a_span_in_every_proxy_it_passes() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("trace").unwrap();
    assert_eq!(mesh.apply(SERVICE).unwrap().code, Some(0));
    mesh.http_server("web", &[]).unwrap();

    // One traced request and one without a context, from a meshed client.
    let script = format!(
        "curl -sf --max-time 10 -H 'traceparent: 00-{TRACE}-{PARENT}-01' \
         http://web.default.svc.cluster.local:8080/headers && echo && \
         curl -sf --max-time 10 -o /dev/null http://web.default.svc.cluster.local:8080/"
    );
    let out = mesh.run_script("client", &[], &script).unwrap();
    let seen: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    let seen = seen["traceparent"].as_str().unwrap().to_string();

    // Both spans arrive (the proxies send within a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let list = viz_trace(&mesh, &[]);
        if list["traces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["trace_id"] == TRACE && t["spans"] == 2)
        {
            break viz_trace(&mesh, &[TRACE]);
        }
        assert!(Instant::now() < deadline, "two spans of {TRACE}: {list}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let spans = trace["spans"].as_array().unwrap();
    let by_kind = |kind: &str| {
        spans
            .iter()
            .find(|s| s["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind} span: {trace}"))
    };
    let client = by_kind("client");
    let server = by_kind("server");
    assert_eq!(client["service"], "client", "{trace}");
    assert_eq!(server["service"], "web", "{trace}");
    assert_eq!(client["parent_span_id"], PARENT, "{trace}");
    assert_eq!(
        server["parent_span_id"], client["span_id"],
        "the server proxy's span is the client proxy's child: {trace}"
    );
    let server_id = server["span_id"].as_str().unwrap();
    assert_eq!(
        seen,
        format!("00-{TRACE}-{server_id}-01"),
        "the app sees the server proxy's span as its parent"
    );
    for span in [client, server] {
        assert_eq!(span["name"], "GET /headers", "{trace}");
        assert_eq!(span["attributes"]["http.status_code"], "200", "{trace}");
    }
    assert_eq!(client["attributes"]["direction"], "outbound");
    assert_eq!(server["attributes"]["direction"], "inbound");

    // The request without a context left no trace.
    let list = viz_trace(&mesh, &[]);
    assert_eq!(list["traces"].as_array().unwrap().len(), 1, "{list}");

    // The table names the trace, its root and both services.
    let table = mesh.strand(&["viz", "trace"]).unwrap();
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with(TRACE))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(line.contains("GET /headers"), "{line}");
    let tree = mesh.strand(&["viz", "trace", TRACE]).unwrap();
    assert_eq!(tree.code, Some(0), "{}", tree.stderr);
    assert!(
        tree.stdout.contains("client") && tree.stdout.contains("web"),
        "{}",
        tree.stdout
    );

    // An unknown trace is a clear error.
    let unknown = mesh
        .strand(&["viz", "trace", "0123456789abcdef0123456789abcdef"])
        .unwrap();
    assert_ne!(unknown.code, Some(0));
    assert!(
        unknown.stderr.contains("strand viz trace"),
        "{}",
        unknown.stderr
    );
}
