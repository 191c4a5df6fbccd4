//! HTTPRoutes in local mode, as a user runs a canary and a blue/green
//! switch: `strand apply` a route attached to a Service, and the clients'
//! proxies split its requests by weight, match paths, time requests out,
//! and follow every change to the route live. And ServiceProfiles, which
//! win over HTTPRoutes: named routes in metrics, retries within the
//! budget, timeouts, `dstOverrides`. And HTTPRoute filters: header
//! changes and redirects. And GRPCRoutes: gRPC calls routed by service and
//! method, retried by gRPC status.
//!
//! ```text
//!  client ─▶ proxy ─▶ web (Service: app=web)
//!                       └─ HTTPRoute web-split: /delay → web-v2 (300 ms timeout); / → web-v1 80, web-v2 20
//! ```

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strand_e2e::local::LocalMesh;
use strand_testkit::{bin_path, require_root};

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1}
spec: {selector: {version: v1}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2}
spec: {selector: {version: v2}, ports: [{port: 8080}]}
";

const WEB: &str = "http://web.default.svc.cluster.local:8080";

fn route(rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-split}}
spec:
  parentRefs: [{{name: web, kind: Service, group: core, port: 8080}}]
  rules:
{rules}"
    )
}

fn testapp() -> String {
    bin_path("strand-testapp").to_str().unwrap().to_string()
}

/// Runs `web-<version>`: one test HTTP server labelled `app=web` and
/// `version=<version>`, and waits until it is ready.
fn web_version(mesh: &mut LocalMesh, version: &str) {
    let app = testapp();
    let name = format!("web-{version}");
    let label = format!("version={version}");
    mesh.spawn_run(
        &name,
        &[
            "--name",
            &name,
            "--label",
            "app=web",
            "--label",
            &label,
            "--port",
            "8080",
            "--",
            &app,
            "http",
            "--listen",
            "0.0.0.0:8080",
        ],
    )
    .unwrap();
    mesh.wait_ready_pods(&name, 1, Duration::from_secs(60))
        .unwrap();
}

/// `count` GETs of `path` from a meshed client: how many each version's
/// pods served, and the statuses.
fn spread(mesh: &LocalMesh, path: &str, count: u32) -> (BTreeMap<String, u32>, serde_json::Value) {
    let v = mesh.http_client(&format!("{WEB}{path}"), count).unwrap();
    let mut by_version = BTreeMap::new();
    for (pod, n) in v["served_by"].as_object().unwrap() {
        let version = pod.rsplit_once('-').map_or(pod.as_str(), |(w, _)| w);
        *by_version.entry(version.to_string()).or_default() += n.as_u64().unwrap() as u32;
    }
    (by_version, v)
}

/// Status and `l5d-proxy-error` of one GET from a meshed client.
fn get(mesh: &LocalMesh, path: &str) -> (u16, String) {
    let script = format!("curl -s -o /dev/null -D - --max-time 10 '{WEB}{path}' | tr -d '\\r'");
    let out = mesh.run_script("curl", &[], &script).unwrap();
    let status = out
        .stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}\n{}", out.stdout, out.stderr));
    let error = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("l5d-proxy-error: "))
        .unwrap_or_default()
        .to_string();
    (status, error)
}

/// Retries `check` for up to 30 s: a route change reaches the proxies
/// through their policy streams, within moments.
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn an_httproute_splits_matches_times_out_and_follows_changes() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("routes").unwrap();
    assert_eq!(mesh.apply(SERVICES).unwrap().code, Some(0));
    for version in ["v1", "v2"] {
        web_version(&mut mesh, version);
    }

    // No route: the Service's own endpoints, both versions.
    let (by, summary) = spread(&mesh, "/", 40);
    assert_eq!(summary["ok"], 40, "{summary}");
    assert_eq!(by.len(), 2, "{summary}");

    // A canary: 80/20 for `/`, and `/delay` to v2 only, within 300 ms.
    let canary = route(
        "    - matches: [{path: {type: PathPrefix, value: /delay}}]
      backendRefs: [{name: web-v2, port: 8080}]
      timeouts: {request: 300ms}
    - backendRefs:
        - {name: web-v1, port: 8080, weight: 80}
        - {name: web-v2, port: 8080, weight: 20}
",
    );
    let applied = mesh.apply(&canary).unwrap();
    assert_eq!(applied.code, Some(0), "{applied:?}");
    let listed = mesh.strand(&["get", "httproutes"]).unwrap();
    assert!(listed.stdout.contains("web-split"), "{listed:?}");
    eventually("the canary split", || {
        let (by, summary) = spread(&mesh, "/", 200);
        let (v1, v2) = (
            by.get("web-v1").copied().unwrap_or(0),
            by.get("web-v2").copied().unwrap_or(0),
        );
        // 160 and 40 expected; these bounds are over 5 standard deviations.
        eprintln!("canary: {by:?}");
        if summary["ok"] == 200 && (120..=190).contains(&v1) && (10..=80).contains(&v2) {
            Ok(())
        } else {
            Err(format!("{summary}"))
        }
    });
    let (by, summary) = spread(&mesh, "/delay?ms=10", 20);
    assert_eq!(summary["ok"], 20, "{summary}");
    assert_eq!(by.keys().collect::<Vec<_>>(), ["web-v2"], "{summary}");
    let (status, error) = get(&mesh, "/delay?ms=3000");
    assert_eq!(status, 504, "{error}");
    assert!(error.contains("timed out after 300ms"), "{error}");

    // Blue/green: everything to v2, at once.
    let green = route(
        "    - backendRefs:
        - {name: web-v1, port: 8080, weight: 0}
        - {name: web-v2, port: 8080, weight: 1}
",
    );
    assert_eq!(mesh.apply(&green).unwrap().code, Some(0));
    eventually("the switch to v2", || {
        let (by, summary) = spread(&mesh, "/", 50);
        if summary["ok"] == 50 && by.keys().collect::<Vec<_>>() == ["web-v2"] {
            Ok(())
        } else {
            Err(format!("{summary}"))
        }
    });

    // Only `/api` is routed: anything else has no route.
    let api_only = route(
        "    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: web-v1, port: 8080}]
",
    );
    assert_eq!(mesh.apply(&api_only).unwrap().code, Some(0));
    eventually("no route for /", || match get(&mesh, "/") {
        (404, e) if e.contains("no route") => Ok(()),
        other => Err(format!("{other:?}")),
    });

    // The route deleted: the Service's own endpoints again.
    let deleted = mesh.strand(&["delete", "httproute", "web-split"]).unwrap();
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    eventually("both versions again", || {
        let (by, summary) = spread(&mesh, "/", 40);
        if summary["ok"] == 40 && by.len() == 2 {
            Ok(())
        } else {
            Err(format!("{summary}"))
        }
    });
}

/// `count` POSTs of a 1,000-byte body to `/flaky` (whose server fails
/// every other request) from a meshed client, and the client proxy's
/// retry and route counters after them.
fn flaky_posts(mesh: &LocalMesh, count: u32, bytes: u32, chunked: bool) -> (u64, String) {
    let app = testapp();
    let chunked = if chunked { "--chunked" } else { "" };
    let script = format!(
        "{app} http-client --url {WEB}/flaky --method POST --body-bytes {bytes} {chunked} --count {count} --expect-status 200 || true; \
         curl -s http://127.0.0.1:4191/metrics | grep -E '^(outbound_http_route_|route_)' || true"
    );
    let out = mesh.run_script("client", &[], &script).unwrap();
    // The summary is the client's last line on stdout, or the end of its
    // error line when a status was not the expected one.
    let all = format!("{}\n{}", out.stdout, out.stderr);
    let v: serde_json::Value = all
        .lines()
        .filter_map(|l| serde_json::from_str(&l[l.find("{\"ok\"")?..]).ok())
        .next_back()
        .unwrap_or_else(|| panic!("no summary: {all}"));
    (v["ok"].as_u64().unwrap(), all)
}

#[test]
fn a_route_with_retries_resends_failed_requests_with_their_bodies() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("retries").unwrap();
    assert_eq!(mesh.apply(SERVICES).unwrap().code, Some(0));
    // One replica: its every-other-request failures are deterministic.
    web_version(&mut mesh, "v1");
    let to_v1 = |annotations: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-retry
  annotations: {{{annotations}}}
spec:
  parentRefs: [{{name: web, kind: Service, group: core, port: 8080}}]
  rules:
    - backendRefs: [{{name: web-v1, port: 8080}}]
"
        )
    };

    // No retries: half of the requests fail.
    assert_eq!(mesh.apply(&to_v1("")).unwrap().code, Some(0));
    let (ok, out) = flaky_posts(&mesh, 20, 1000, false);
    assert_eq!(ok, 10, "{out}");

    // One retry on 5xx: every request succeeds on its second attempt, with
    // its whole body (the server answers with the bytes it read).
    let retry = to_v1(r#""retry.linkerd.io/http": 5xx, "retry.linkerd.io/limit": "1""#);
    let applied = mesh.apply(&retry).unwrap();
    assert_eq!(applied.code, Some(0), "{applied:?}");
    // Each client is a new pod whose proxy asks for the policy afresh, so
    // the route applied above is the one it follows.
    let (ok, out) = flaky_posts(&mesh, 20, 1000, false);
    eprintln!("with retries: {out}");
    assert_eq!(ok, 20, "{out}");
    // The server read the whole body on the attempt that succeeded.
    assert!(out.contains(r#"last_body":"{\"bytes\":1000}"#), "{out}");
    let counter = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name) && l.contains(r#"route_name="web-retry""#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name}: {out}"))
    };
    assert_eq!(counter("outbound_http_route_retry_requests_total{"), 20.0);
    assert_eq!(counter("outbound_http_route_retry_successes_total{"), 20.0);
    // Each request once in the route's statuses and durations, by the
    // status the client got.
    let ok = out
        .lines()
        .find(|l| {
            l.starts_with("outbound_http_route_request_statuses_total{")
                && l.contains(r#"route_name="web-retry""#)
                && l.contains(r#"http_status="200""#)
                && l.contains(r#"error="""#)
        })
        .unwrap_or_else(|| panic!("route statuses: {out}"));
    assert!(ok.ends_with(" 20"), "{ok}");
    assert_eq!(
        counter("outbound_http_route_request_duration_seconds_count{"),
        20.0
    );
    // A body of unknown length (chunked) that ends quickly within 64 KiB is
    // kept and retried too; a longer one is sent once, so not retried.
    let (ok, out) = flaky_posts(&mesh, 20, 1000, true);
    assert_eq!(ok, 20, "{out}");
    let (ok, out) = flaky_posts(&mesh, 20, 100_000, true);
    assert_eq!(ok, 10, "{out}");
}

/// The value of the first line of `out` that starts with `prefix` and
/// contains every fragment of `with`.
fn counter(out: &str, prefix: &str, with: &[&str]) -> f64 {
    out.lines()
        .find(|l| l.starts_with(prefix) && with.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} {with:?}: {out}"))
}

fn profile(spec: &str) -> String {
    format!(
        "apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {{name: web.default.svc.cluster.local}}
spec:
{spec}"
    )
}

#[test]
fn a_service_profile_names_routes_retries_times_out_and_overrides() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("profiles").unwrap();
    assert_eq!(mesh.apply(SERVICES).unwrap().code, Some(0));
    web_version(&mut mesh, "v1");
    // An HTTPRoute that routes only `/api`: the profile below wins over it.
    let api_only = route(
        "    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: web-v1, port: 8080}]
",
    );
    assert_eq!(mesh.apply(&api_only).unwrap().code, Some(0));
    let routes = profile(
        "  routes:
    - name: POST /flaky
      condition: {method: POST, pathRegex: /flaky}
      isRetryable: true
    - name: GET /delay
      condition: {method: GET, pathRegex: '/delay.*'}
      timeout: 300ms
",
    );
    let applied = mesh.apply(&routes).unwrap();
    assert_eq!(applied.code, Some(0), "{applied:?}");
    let listed = mesh.strand(&["get", "serviceprofiles"]).unwrap();
    assert!(
        listed.stdout.contains("web.default.svc.cluster.local"),
        "{listed:?}"
    );

    // Every failure of the retryable route is sent again (the budget's
    // reserve covers them), with its body; the route is named in metrics.
    let (ok, out) = flaky_posts(&mesh, 20, 1000, false);
    assert_eq!(ok, 20, "{out}");
    assert!(out.contains(r#"last_body":"{\"bytes\":1000}"#), "{out}");
    let flaky = r#"rt_route="POST /flaky""#;
    let dst = r#"dst="web.default.svc.cluster.local:8080""#;
    assert_eq!(counter(&out, "route_request_total{", &[flaky, dst]), 20.0);
    // The server's every other answer fails: each request's first attempt.
    assert_eq!(counter(&out, "route_actual_request_total{", &[flaky]), 40.0);
    let ok200 = [flaky, r#"status_code="200""#, r#"classification="success""#];
    assert_eq!(counter(&out, "route_response_total{", &ok200), 20.0);
    let failed = [flaky, r#"status_code="503""#, r#"classification="failure""#];
    assert_eq!(counter(&out, "route_actual_response_total{", &failed), 20.0);
    // The timeout of the `GET /delay` route; `/` is `[DEFAULT]`, not 404.
    let (status, error) = get(&mesh, "/delay?ms=3000");
    assert_eq!(status, 504, "{error}");
    assert!(error.contains("timed out after 300ms"), "{error}");
    assert_eq!(get(&mesh, "/").0, 200);

    // dstOverrides: everything to web-v2, live.
    web_version(&mut mesh, "v2");
    let overrides = profile(
        "  dstOverrides:
    - {authority: web-v2.default.svc.cluster.local:8080, weight: 1}
",
    );
    assert_eq!(mesh.apply(&overrides).unwrap().code, Some(0));
    eventually("the override to web-v2", || {
        let (by, summary) = spread(&mesh, "/", 30);
        if summary["ok"] == 30 && by.keys().collect::<Vec<_>>() == ["web-v2"] {
            Ok(())
        } else {
            Err(format!("{summary}"))
        }
    });

    // The profile deleted: the HTTPRoute applies again.
    let deleted = mesh
        .strand(&["delete", "serviceprofile", "web.default.svc.cluster.local"])
        .unwrap();
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    eventually("the HTTPRoute again", || match get(&mesh, "/") {
        (404, e) if e.contains("no route") => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// Headers and body of one GET of `path` from a meshed client, with
/// `curl_args` (e.g. extra request headers).
fn get_all(mesh: &LocalMesh, path: &str, curl_args: &str) -> String {
    let script = format!("curl -s -D - --max-time 10 {curl_args} '{WEB}{path}' | tr -d '\\r'");
    mesh.run_script("curl", &[], &script).unwrap().stdout
}

#[test]
fn an_httproute_changes_headers_and_redirects() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("filters").unwrap();
    assert_eq!(mesh.apply(SERVICES).unwrap().code, Some(0));
    web_version(&mut mesh, "v1");
    let filters = route(
        "    - matches: [{path: {type: PathPrefix, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
            statusCode: 301
    - matches: [{path: {type: Exact, value: /headers}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-route, value: web-split}]
            add: [{name: x-added, value: two}]
            remove: [x-remove-me]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: x-through, value: strand}]
      backendRefs: [{name: web-v1, port: 8080}]
",
    );
    let applied = mesh.apply(&filters).unwrap();
    assert_eq!(applied.code, Some(0), "{applied:?}");

    // The request's headers as the server saw them, and the response's.
    let out = get_all(
        &mesh,
        "/headers",
        "-H 'x-remove-me: 1' -H 'x-route: client' -H 'x-added: one'",
    );
    let body = out.lines().last().unwrap_or_default();
    let seen: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(seen["x-route"], "web-split", "{out}");
    assert_eq!(seen["x-added"], "one, two", "{out}");
    assert!(seen.get("x-remove-me").is_none(), "{out}");
    assert!(out.contains("\nx-through: strand\n"), "{out}");

    // A redirect, answered by the client's proxy with the path rewritten.
    let out = get_all(&mesh, "/old/page?x=1", "");
    assert!(out.starts_with("HTTP/1.1 301"), "{out}");
    assert!(
        out.contains("\nlocation: http://web.default.svc.cluster.local:8080/new/page?x=1\n"),
        "{out}"
    );
}

const ECHO_SERVICES: &str = "apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2}
spec: {selector: {version: v2}, ports: [{port: 9090}]}
";

/// A GRPCRoute on `echo`: `Unary` calls go to echo-v2 and are retried
/// twice on UNAVAILABLE; other methods stay on echo.
const GRPC_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: echo-unary
  annotations:
    retry.linkerd.io/grpc: unavailable
    retry.linkerd.io/limit: \"2\"
spec:
  parentRefs: [{name: echo, kind: Service, group: core, port: 9090}]
  rules:
    - matches: [{method: {service: strand.test.Echo, method: Unary}}]
      backendRefs: [{name: echo-v2, port: 9090}]
";

/// `strand-testapp grpc` as workload `name` with `labels`.
fn echo_server(mesh: &mut LocalMesh, name: &str, labels: &[&str]) {
    let app = testapp();
    let mut args = vec!["--name", name];
    for l in labels {
        args.extend_from_slice(&["--label", l]);
    }
    args.extend_from_slice(&[
        "--port",
        "9090",
        "--",
        &app,
        "grpc",
        "--listen",
        "0.0.0.0:9090",
    ]);
    mesh.spawn_run(name, &args).unwrap();
    mesh.wait_ready_pods(name, 1, Duration::from_secs(60))
        .unwrap();
}

/// `count` calls of `call` (`unary`, `server-stream`) with `message` from a
/// meshed client: its JSON summary.
fn grpc_calls(mesh: &LocalMesh, call: &str, message: &str, count: u32) -> serde_json::Value {
    let app = testapp();
    let count = count.to_string();
    // `trailers-only:<code>` asks the server for that status.
    let expect = message.strip_prefix("trailers-only:").unwrap_or("0");
    let out = mesh
        .strand(&[
            "run",
            "--name",
            "grpc-client",
            "--",
            &app,
            "grpc-client",
            "--target",
            "http://echo.default.svc.cluster.local:9090",
            "--count",
            &count,
            "--message",
            message,
            "--expect-code",
            expect,
            call,
        ])
        .unwrap();
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{}\n{}", out.stdout, out.stderr));
    serde_json::from_str(line).unwrap()
}

fn served_by_workloads(summary: &serde_json::Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (pod, n) in summary["served_by_counts"].as_object().unwrap() {
        let workload = pod.rsplit_once('-').map_or(pod.as_str(), |(w, _)| w);
        *out.entry(workload.to_string()).or_default() += n.as_u64().unwrap();
    }
    out
}

#[test]
fn a_grpcroute_routes_by_method_and_retries_by_grpc_status() {
    if !require_root() {
        return;
    }
    let mut mesh = LocalMesh::up("grpcroute").unwrap();
    assert_eq!(mesh.apply(ECHO_SERVICES).unwrap().code, Some(0));
    echo_server(&mut mesh, "echo-v1", &["app=echo", "version=v1"]);
    echo_server(&mut mesh, "echo-v2", &["version=v2"]);
    let before = served_by_workloads(&grpc_calls(&mesh, "unary", "hello", 10));
    assert_eq!(
        before,
        BTreeMap::from([("echo-v1".into(), 10)]),
        "no route yet"
    );

    let applied = mesh.apply(GRPC_ROUTE).unwrap();
    assert_eq!(applied.code, Some(0), "{}", applied.stderr);
    let got = mesh.strand(&["get", "grpcroutes", "-o", "json"]).unwrap();
    assert!(got.stdout.contains("echo-unary"), "{}", got.stdout);
    eventually("Unary calls move to echo-v2", || {
        let by = served_by_workloads(&grpc_calls(&mesh, "unary", "hello", 10));
        (by == BTreeMap::from([("echo-v2".into(), 10)]))
            .then_some(())
            .ok_or(format!("{by:?}"))
    });
    // Another method of the same service matches no rule: with a
    // GRPCRoute, it goes to the Service itself.
    let stream = served_by_workloads(&grpc_calls(&mesh, "server-stream", "hello", 3));
    assert_eq!(stream.keys().collect::<Vec<_>>(), ["echo-v1"], "{stream:?}");

    // UNAVAILABLE (a trailers-only answer) is retried twice; INTERNAL is not.
    let failing = grpc_calls(&mesh, "unary", "trailers-only:14", 4);
    assert_eq!(failing["status"], 14, "{failing}");
    let internal = grpc_calls(&mesh, "unary", "trailers-only:13", 4);
    assert_eq!(internal["status"], 13, "{internal}");
    let client_metrics = || {
        let ip = mesh.pod_ips("echo-v2").unwrap()[0].1;
        mesh.proxy_metrics(ip).unwrap()
    };
    eventually("echo-v2 saw every attempt", || {
        let m = client_metrics();
        let unavailable = m.sum(
            "response_total",
            &["direction=\"inbound\"", "grpc_status=\"14\""],
        );
        let internal = m.sum(
            "response_total",
            &["direction=\"inbound\"", "grpc_status=\"13\""],
        );
        (unavailable == 12.0 && internal == 4.0)
            .then_some(())
            .ok_or(format!(
                "UNAVAILABLE {unavailable} (want 4 x 3), INTERNAL {internal} (want 4)"
            ))
    });

    // Deleting the route sends Unary back to echo.
    let deleted = mesh.strand(&["delete", "grpcroute", "echo-unary"]).unwrap();
    assert_eq!(deleted.code, Some(0), "{}", deleted.stderr);
    eventually("Unary calls return to echo-v1", || {
        let by = served_by_workloads(&grpc_calls(&mesh, "unary", "hello", 5));
        (by == BTreeMap::from([("echo-v1".into(), 5)]))
            .then_some(())
            .ok_or(format!("{by:?}"))
    });
}
