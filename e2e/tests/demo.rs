//! The main job, as a newcomer runs it: `strand demo` brings up the demo
//! application meshed, `strand viz stat` and `strand viz edges` show its
//! golden metrics (from the control plane's own scraping and from a real
//! Prometheus), `strand check` passes, and `strand demo --down` leaves
//! nothing behind.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strand_e2e::local::LocalMesh;
use strand_testkit::require_root;

/// Runs `strand demo --down` when the test ends, even by panic, so the
/// demo's background `strand run`s never outlive it.
struct DemoGuard<'a>(&'a LocalMesh);

impl Drop for DemoGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.strand(&["demo", "--down"]);
    }
}

/// A Prometheus server in the mesh's namespace; killed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(mesh: &LocalMesh, args: &[&str]) -> Value {
    let out = mesh.strand(args).unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "strand {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("strand {args:?}: {e}: {}", out.stdout))
}

fn row<'a>(stat: &'a Value, name: &str) -> Option<&'a Value> {
    stat["rows"].as_array()?.iter().find(|r| r["name"] == name)
}

fn rps(stat: &Value, name: &str) -> f64 {
    row(stat, name)
        .and_then(|r| r["rps"].as_f64())
        .unwrap_or(0.0)
}

fn success(stat: &Value, name: &str) -> Option<f64> {
    row(stat, name)?["success"].as_f64()
}

/// `(pod, ip)` of the ready pods of a demo workload.
fn pod_ips(mesh: &LocalMesh, workload: &str) -> Vec<(String, String)> {
    let pods = json(mesh, &["get", "pods", "-n", "emojivoto", "-o", "json"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["workload"] == workload && p["status"]["ready"] == true)
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["status"]["podIP"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// vote-bot's own count: (requests, successes), cumulative.
fn vote_bot(mesh: &LocalMesh) -> (f64, f64) {
    let ip = &pod_ips(mesh, "vote-bot")[0].1;
    let v: Value =
        serde_json::from_str(&mesh.curl(&format!("http://{ip}:8080/stats")).unwrap()).unwrap();
    (
        v["requests"].as_f64().unwrap(),
        v["success"].as_f64().unwrap(),
    )
}

fn start_prometheus(mesh: &LocalMesh) -> Prometheus {
    let out = mesh
        .strand(&["viz", "prometheus-config", "--scrape-interval", "5s"])
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("http_sd_configs"), "{}", out.stdout);
    let dir = mesh.state_dir().join("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, &out.stdout).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut cmd = mesh.ns_cmd("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9099")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Prometheus {
        child: cmd
            .spawn()
            .expect("prometheus (Debian package `prometheus`) is installed"),
        dir,
    }
}

/// Every process whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[test]
fn demo_shows_golden_metrics_and_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::up("demo").unwrap();
    let guard = DemoGuard(&mesh);
    let started = Instant::now();
    let out = mesh.strand(&["demo", "--no-watch"]).unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "strand demo: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("web page:   http://"), "{}", out.stdout);
    assert!(
        out.stdout.contains(" viz stat deploy -n emojivoto"),
        "{}",
        out.stdout
    );
    eprintln!("demo up in {:?}", started.elapsed());
    let prometheus = start_prometheus(&mesh);
    // vote-bot's calls to web get named routes, live (its proxy resolved
    // web-svc before this profile existed).
    let applied = mesh.apply(WEB_PROFILE).unwrap();
    assert_eq!(applied.code, Some(0), "{applied:?}");

    // Within 60 s, every workload has traffic.
    let deadline = started + Duration::from_secs(60);
    let stat_args = ["viz", "stat", "deploy", "-n", "emojivoto", "-o", "json"];
    loop {
        let stat = json(&mesh, &stat_args);
        if ["web", "emoji", "voting"]
            .iter()
            .all(|d| rps(&stat, d) > 0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no traffic after 60s: {stat}");
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("traffic seen after {:?}", started.elapsed());
    let table = mesh
        .strand(&["viz", "stat", "deploy", "-n", "emojivoto"])
        .unwrap();
    assert!(
        table.stdout.starts_with("NAME ") && table.stdout.contains("LATENCY_P99"),
        "{}",
        table.stdout
    );
    let emoji = table
        .stdout
        .lines()
        .find(|l| l.starts_with("emoji "))
        .unwrap();
    assert!(emoji.contains(" 2/2 "), "{}", table.stdout);

    // A full window of traffic: web's success rate as its proxy saw it
    // against what vote-bot observed over the same minute.
    let (req0, ok0) = vote_bot(&mesh);
    std::thread::sleep(Duration::from_secs(60));
    let (req1, ok1) = vote_bot(&mesh);
    let stat = json(&mesh, &stat_args);
    let observed = (ok1 - ok0) / (req1 - req0);
    let web = success(&stat, "web").unwrap();
    let voting = success(&stat, "voting").unwrap();
    eprintln!("web {web:.4} vote-bot {observed:.4} voting {voting:.4}: {stat}");
    assert!(voting < 1.0, "voting fails on purpose: {stat}");
    assert!(
        (web - observed).abs() <= 0.02,
        "web's success rate {web} vs vote-bot's {observed}"
    );
    for d in ["web", "emoji", "voting"] {
        let r = row(&stat, d).unwrap();
        assert!(r["latency_p99_ms"].as_f64().is_some(), "{d}: {r}");
        assert!(r["tcp_conn"].as_f64().unwrap() >= 1.0, "{d}: {r}");
    }

    // --from and --to read the clients' side.
    let to = json(
        &mesh,
        &[
            "viz",
            "stat",
            "deploy",
            "-n",
            "emojivoto",
            "--from",
            "deploy/web",
            "-o",
            "json",
        ],
    );
    assert!(rps(&to, "emoji") > 0.0 && rps(&to, "voting") > 0.0, "{to}");
    assert!(row(&to, "vote-bot").is_none(), "{to}");
    let svc = json(
        &mesh,
        &["viz", "stat", "svc", "-n", "emojivoto", "-o", "json"],
    );
    assert!(rps(&svc, "web-svc") > 0.0, "{svc}");

    // Edges: web -> emoji over mTLS, with both identities.
    let edges = json(
        &mesh,
        &["viz", "edges", "deploy", "-n", "emojivoto", "-o", "json"],
    );
    let web_emoji = edges["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["src"] == "web" && e["dst"] == "emoji")
        .unwrap_or_else(|| panic!("no web -> emoji edge: {edges}"));
    assert_eq!(web_emoji["secured"], true, "{edges}");
    assert_eq!(
        web_emoji["client_id"],
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    assert_eq!(
        web_emoji["server_id"],
        "emoji.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    let table = mesh
        .strand(&["viz", "edges", "deploy", "-n", "emojivoto"])
        .unwrap();
    assert!(table.stdout.contains("web.emojivoto"), "{}", table.stdout);

    // Traces: vote-bot starts one every tenth request, and web passes the
    // context on to its gRPC calls, so a trace crosses vote-bot's, web's
    // and emoji's proxies, each span the child of the one before. A span
    // ends with its response, so a trace's outer spans arrive last: wait
    // for one that is whole (a single root).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = json(&mesh, &["viz", "trace", "-o", "json"]);
        let through_all = list["traces"].as_array().unwrap().iter().filter(|t| {
            t["spans"].as_u64().unwrap_or(0) >= 4
                && ["vote-bot", "web", "emoji"]
                    .iter()
                    .all(|s| t["services"].as_array().unwrap().iter().any(|x| x == s))
        });
        let whole = through_all.into_iter().find_map(|t| {
            let id = t["trace_id"].as_str().unwrap();
            let detail = json(&mesh, &["viz", "trace", id, "-o", "json"]);
            let spans = detail["spans"].as_array().unwrap();
            let ids: std::collections::HashSet<&str> =
                spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
            let roots = spans
                .iter()
                .filter(|s| !ids.contains(s["parent_span_id"].as_str().unwrap_or("")))
                .count();
            (roots == 1).then_some(())
        });
        if whole.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a whole trace through vote-bot, web and emoji: {list}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Tap: web's live requests in both directions, over mTLS, with the
    // gRPC status of its calls to emoji and voting.
    let tap_web = |flags: &[&str]| {
        let mut args = vec!["viz", "tap", "deploy/web", "-n", "emojivoto"];
        args.extend_from_slice(flags);
        mesh.strand(&args).unwrap()
    };
    let tapped = tap_web(&["--max-requests", "30", "-o", "json"]);
    assert_eq!(tapped.code, Some(0), "{}{}", tapped.stdout, tapped.stderr);
    let events: Vec<Value> = tapped
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |kind: &str, dir: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["type"] == kind && e["proxyDirection"] == dir)
            .collect()
    };
    let ends = events.iter().filter(|e| e["type"] == "responseEnd").count();
    assert_eq!(ends, 30, "{}", tapped.stdout);
    let inbound = of("requestInit", "inbound");
    assert!(
        inbound.iter().any(
            |e| e["path"].as_str().is_some_and(|p| p.starts_with("/api/"))
                && e["sourceMeta"]["tls"] == "true"
                // vote-bot runs as the namespace's default service account.
                && e["sourceMeta"]["client_id"]
                    == "default.emojivoto.serviceaccount.identity.linkerd.cluster.local"
        ),
        "{}",
        tapped.stdout
    );
    let grpc_ok = of("responseEnd", "outbound")
        .into_iter()
        .filter(|e| {
            e["grpcStatus"] == 0
                && e["destinationMeta"]["tls"] == "true"
                && e["destinationMeta"]["no_tls_reason"].is_null()
        })
        .count();
    assert!(grpc_ok > 0, "{}", tapped.stdout);
    assert!(
        of("responseEnd", "outbound")
            .iter()
            .any(|e| e["destinationMeta"]["server_id"]
                == "emoji.emojivoto.serviceaccount.identity.linkerd.cluster.local"),
        "{}",
        tapped.stdout
    );
    let lines = tap_web(&["--path", "/api/", "--max-requests", "2"]);
    assert_eq!(lines.code, Some(0), "{}{}", lines.stdout, lines.stderr);
    let first = lines.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("req id=")
            && first.contains(" proxy=in ")
            && first.contains(":path=/api/"),
        "{}",
        lines.stdout
    );
    assert!(
        lines.stdout.lines().all(|l| !l.contains("proxy=out")),
        "--path /api/ matches web's inbound requests only: {}",
        lines.stdout
    );
    // top: the same streams as a table of routes (printed once: no terminal).
    let top = mesh
        .strand(&[
            "viz",
            "top",
            "deploy/web",
            "-n",
            "emojivoto",
            "--max-requests",
            "40",
        ])
        .unwrap();
    assert_eq!(top.code, Some(0), "{}{}", top.stdout, top.stderr);
    let mut rows = top.stdout.lines();
    assert!(
        rows.next()
            .is_some_and(|h| h.starts_with("Source") && h.ends_with("Success Rate")),
        "{}",
        top.stdout
    );
    let rows: Vec<&str> = rows.collect();
    assert!(
        rows.iter()
            .any(|r| r.contains(" GET ") && r.contains(" /api/")),
        "{}",
        top.stdout
    );
    assert!(
        rows.iter().any(|r| r.contains(" POST ")
            && r.contains(" /emojivoto.v1.")
            && r.ends_with("100.00%")),
        "{}",
        top.stdout
    );

    dashboard_shows_the_demo(&mesh);

    // The same answers from a real Prometheus scraping with the generated
    // configuration.
    let url = "http://127.0.0.1:9099";
    let prom = json(
        &mesh,
        &[
            "viz",
            "stat",
            "deploy",
            "-n",
            "emojivoto",
            "-o",
            "json",
            "--prometheus-url",
            url,
        ],
    );
    let embedded = json(&mesh, &stat_args);
    for d in ["web", "emoji", "voting", "vote-bot"] {
        let (p, e) = (rps(&prom, d), rps(&embedded, d));
        if d == "vote-bot" {
            // Only this test calls vote-bot (its /stats, twice a minute
            // apart), so at most about one request a minute.
            assert!(p < 0.05, "{prom}");
            continue;
        }
        assert!(
            p > 0.0 && (p - e).abs() / e <= 0.15,
            "{d}: Prometheus {p} rps, embedded {e} rps\n{prom}\n{embedded}"
        );
        let (ps, es) = (success(&prom, d).unwrap(), success(&embedded, d).unwrap());
        assert!((ps - es).abs() <= 0.03, "{d}: success {ps} vs {es}");
    }
    grafana_queries_answer(&mesh, url);
    routes_show_the_profile(&mesh, url);
    drop(prometheus);

    // strand check: everything passes.
    let check = mesh.strand(&["check"]).unwrap();
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
    for line in ["proxies ready", "iptables rules", "metrics API", "DNS"] {
        assert!(check.stdout.contains(line), "{line}: {}", check.stdout);
    }

    // A proxy that stops answering: the table says its numbers are stale.
    let (pod, ip) = pod_ips(&mesh, "emoji")[0].clone();
    let proxy_pid = proxy_pid(&mesh, &pod);
    signal(proxy_pid, nix::sys::signal::Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = mesh
            .strand(&["viz", "stat", "deploy", "-n", "emojivoto"])
            .unwrap();
        if out.stdout.contains(&format!("stale: {pod}")) {
            assert!(
                out.stdout
                    .contains(&format!("! metrics of emojivoto/{pod} are stale"))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ip} never stale: {}",
            out.stdout
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    signal(proxy_pid, nix::sys::signal::Signal::SIGCONT);

    // --down leaves no pod namespace, process, rule or file behind.
    drop(guard);
    let netns = mesh.pod_namespaces();
    assert!(netns.is_empty(), "{netns:?}");
    let demo_procs = processes_with(&format!("{} run --name", mesh.state_dir().display()));
    assert!(demo_procs.is_empty(), "{demo_procs:?}");
    let apps = processes_with("strand-demo ");
    assert!(apps.is_empty(), "{apps:?}");
    for leftover in [
        mesh.state_dir().join("demo"),
        mesh.state_dir().join("logs/emojivoto"),
    ] {
        assert!(!exists(&leftover), "{} is left", leftover.display());
    }
    let pods_dir = mesh.state_dir().join("pods");
    let left: Vec<_> = std::fs::read_dir(&pods_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} left in {}", pods_dir.display());
    let svcs = json(&mesh, &["get", "svc", "-n", "emojivoto", "-o", "json"]);
    assert_eq!(svcs["items"].as_array().unwrap().len(), 0, "{svcs}");
}

/// The pid of the proxy of `pod` (the `strand-proxy` in its namespace).
/// Every query of every Grafana dashboard strand ships, for web and its
/// pod, against the real Prometheus: each is valid PromQL, and each has
/// data unless it counts what a healthy all-mTLS demo may never do
/// (plaintext requests, failed connections, errors the proxy answered,
/// protocol errors).
/// Routes of web-svc, as `strand profile --template` suggests writing them,
/// and of voting-svc's gRPC method.
const WEB_PROFILE: &str = "apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
    - name: GET /api/list
      condition: {method: GET, pathRegex: /api/list}
    - name: GET /api/vote
      condition: {method: GET, pathRegex: /api/vote}
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: voting-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
    - name: Vote
      condition: {method: POST, pathRegex: '/emojivoto\\.v1\\.VotingService/Vote'}
";

/// `strand viz routes` shows vote-bot's calls by web-svc's routes, from
/// the metrics API and from Prometheus.
fn routes_show_the_profile(mesh: &LocalMesh, prometheus: &str) {
    let args = [
        "viz",
        "routes",
        "deploy/vote-bot",
        "-n",
        "emojivoto",
        "-o",
        "json",
    ];
    let mut with_prom = args.to_vec();
    with_prom.extend(["--prometheus-url", prometheus]);
    for args in [&args[..], &with_prom[..]] {
        let routes = json(mesh, args);
        let rows = routes.as_array().unwrap_or_else(|| panic!("{routes}"));
        for name in ["GET /api/list", "GET /api/vote"] {
            let r = rows
                .iter()
                .find(|r| r["route"] == name)
                .unwrap_or_else(|| panic!("{name}: {routes}"));
            assert_eq!(r["service"], "web-svc", "{routes}");
            assert!(r["rps"].as_f64().unwrap_or(0.0) > 0.0, "{routes}");
        }
        // Some votes fail on purpose; every listing succeeds.
        let list = rows.iter().find(|r| r["route"] == "GET /api/list").unwrap();
        assert_eq!(list["success"].as_f64(), Some(1.0), "{routes}");
    }
    // gRPC: web's votes fail for one emoji with a grpc-status, in an HTTP
    // 200 response; the route counts them as failures.
    let voting = json(
        mesh,
        &[
            "viz",
            "routes",
            "deploy/web",
            "-n",
            "emojivoto",
            "--to",
            "svc/voting-svc",
            "-o",
            "json",
        ],
    );
    let vote = voting
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["route"] == "Vote"))
        .unwrap_or_else(|| panic!("no Vote route: {voting}"));
    let success = vote["success"].as_f64().unwrap_or(1.0);
    assert!(success > 0.0 && success < 1.0, "{voting}");
    let table = mesh
        .strand(&["viz", "routes", "deploy/vote-bot", "-n", "emojivoto"])
        .unwrap();
    assert!(
        table.stdout.starts_with("ROUTE ") && table.stdout.contains("GET /api/vote"),
        "{}{}",
        table.stdout,
        table.stderr
    );
}

fn grafana_queries_answer(mesh: &LocalMesh, prometheus: &str) {
    use strand_viz::grafana::{PanelQuery, Vars, queries, substitute};
    let pod = pod_ips(mesh, "web")[0].0.clone();
    let vars = Vars::new()
        .set("namespace", "emojivoto")
        .set("deployment", "web")
        .set("pod", &pod)
        .set("authority", "web-svc.emojivoto");
    // Route metrics are the client's: the route dashboard shows vote-bot's
    // calls to web-svc, both of its profile's routes selected as Grafana
    // writes a multi-valued selection (regex metacharacters escaped,
    // alternatives in parentheses).
    let route_vars = vars
        .clone()
        .set("deployment", "vote-bot")
        .set("dst", r"web-svc\\.emojivoto\\.svc\\.cluster\\.local:80")
        .set("rt_route", "(GET /api/list|GET /api/vote)");
    let queries: Vec<PanelQuery> = queries()
        .into_iter()
        .map(|mut q| {
            let vars = if q.dashboard_uid == "strand-route" {
                &route_vars
            } else {
                &vars
            };
            q.expr = substitute(&q.expr, vars)
                .unwrap_or_else(|e| panic!("{} / {}: {e}", q.dashboard, q.panel));
            q
        })
        .collect();
    assert!(
        queries.iter().any(|q| q.dashboard_uid == "strand-route"),
        "no route dashboard"
    );
    assert!(queries.len() > 50, "{}", queries.len());
    let mut empty = Vec::new();
    for q in &queries {
        let mut curl = mesh.ns_cmd("curl");
        curl.args(["-sS", "--fail-with-body", "--max-time", "10", "-G"])
            .arg("--data-urlencode")
            .arg(format!("query={}", q.expr))
            .arg(format!("{prometheus}/api/v1/query"));
        let out = strand_e2e::local::run_bounded(curl, Duration::from_secs(20)).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{} / {}: {e}: {}{}",
                q.dashboard, q.panel, out.stdout, out.stderr
            )
        });
        assert_eq!(
            v["status"], "success",
            "{} / {}: {}\n{v}",
            q.dashboard, q.panel, q.expr
        );
        if v["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            empty.push(q);
        }
    }
    // Series that count failures exist once one happened.
    let may_be_empty = |e: &str| {
        e.contains(r#"tls!="true""#)
            || e.contains(r#"classification="failure""#)
            || e.contains(r#"error!="""#)
            || e.contains("inbound_protocol_errors_total")
    };
    let missing: Vec<String> = empty
        .iter()
        .filter(|q| !may_be_empty(&q.expr))
        .map(|q| format!("{} / {}: {}", q.dashboard, q.panel, q.expr))
        .collect();
    assert!(
        missing.is_empty(),
        "panels without data:\n{}",
        missing.join("\n")
    );
    eprintln!(
        "grafana: {} queries, {} empty (failures or plaintext only)",
        queries.len(),
        empty.len()
    );
}

/// `strand viz dashboard` in the mesh's namespace; killed on drop.
struct Dashboard {
    child: Child,
    url: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dashboard(mesh: &LocalMesh) -> Dashboard {
    use std::io::BufRead as _;
    let mut child = mesh
        .strand_cmd(&["viz", "dashboard", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut dashboard = Dashboard {
        child,
        url: String::new(),
    };
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    dashboard.url = first
        .strip_prefix("strand dashboard available at ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    dashboard
}

/// The web dashboard, as a user meets it in a browser: the namespace's
/// workloads with their numbers, the edges over mTLS, a click through to
/// web's page, and its live requests started and stopped with a button.
fn dashboard_shows_the_demo(mesh: &LocalMesh) {
    let dashboard = start_dashboard(mesh);
    let url = &dashboard.url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // A request for another name (a page elsewhere rebinding its DNS name
    // to this address) is refused.
    let mut curl = mesh.ns_cmd("curl");
    curl.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: evil.example",
    ])
    .arg(format!("{url}api/config"));
    let refused = strand_e2e::local::run_bounded(curl, Duration::from_secs(20)).unwrap();
    assert_eq!(refused.stdout, "403", "{refused:?}");

    let browser = strand_e2e::browser::Browser::open(
        Some(&mesh.netns_path()),
        &format!("{url}#/namespaces/emojivoto"),
    )
    .unwrap();
    let wait = Duration::from_secs(30);
    // Workloads: every row of the metrics API's table, with traffic.
    let rows = browser
        .wait_for(
            "(() => { const rows = [...document.querySelectorAll('#workloads tr[data-name]')];
                 return rows.length >= 4 && rows.every(r => r.dataset.name === 'vote-bot' || r.cells[3].textContent.endsWith(' rps'))
                   && Object.fromEntries(rows.map(r => [r.dataset.name, [...r.cells].map(c => c.textContent)])); })()",
            wait,
        )
        .unwrap();
    eprintln!("dashboard workloads: {rows}");
    assert_eq!(rows["emoji"][1], "2/2", "{rows}");
    let success = |name: &str| -> f64 {
        rows[name][2]
            .as_str()
            .and_then(|s| s.strip_suffix('%'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {rows}"))
    };
    assert_eq!(success("emoji"), 100.0, "{rows}");
    assert!(success("voting") < 100.0, "voting fails on purpose: {rows}");
    assert_eq!(rows["vote-bot"][3], "-", "nothing calls vote-bot: {rows}");
    // Edges: web -> emoji over mTLS.
    let secured = browser
        .wait_for(
            "document.querySelector('#edges tr[data-src=\"web\"][data-dst=\"emoji\"]')?.cells[4].textContent",
            wait,
        )
        .unwrap();
    assert_eq!(secured, "\u{2713} mTLS");

    // A click through to web's page: what it calls, then its live requests.
    browser
        .eval("document.querySelector('#workloads tr[data-name=\"web\"] a').click()")
        .unwrap();
    let callees = browser
        .wait_for(
            "location.hash === '#/namespaces/emojivoto/deployments/web'
               && [...document.querySelectorAll('#outbound tr[data-name]')].map(r => r.dataset.name).sort().join(',')",
            wait,
        )
        .unwrap();
    assert_eq!(callees, "emoji,voting");
    browser
        .eval("document.getElementById('tap-toggle').click()")
        .unwrap();
    let tapped = browser
        .wait_for(
            "(() => { const rows = [...document.querySelectorAll('#tap tr.tap-row.ended')];
                 return rows.length >= 10 && rows.map(r => [...r.cells].map(c => c.textContent)); })()",
            wait,
        )
        .unwrap();
    let tapped = tapped.as_array().unwrap();
    let has = |dir: &str, peer: &str, path: &str, grpc: &str| {
        tapped.iter().any(|r| {
            r[0] == dir
                && r[1].as_str().unwrap().contains(peer)
                && r[2] == "\u{2713}"
                && r[4].as_str().unwrap().contains(path)
                && r[5] == "200"
                && r[6] == grpc
        })
    };
    assert!(
        has("inbound", "(default.emojivoto)", "/api/", ""),
        "{tapped:#?}"
    );
    assert!(
        has(
            "outbound",
            "(emoji.emojivoto)",
            "/emojivoto.v1.EmojiService/",
            "0"
        ),
        "{tapped:#?}"
    );
    browser
        .eval("document.getElementById('tap-toggle').click()")
        .unwrap();
    browser
        .wait_for(
            "document.getElementById('tap-status').textContent.startsWith('stopped')",
            wait,
        )
        .unwrap();
    // Stopping ends the dashboard's tap streams to web's proxy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ss = mesh.ns_cmd("ss");
        ss.args(["-Htn", "state", "established", "dport", "= :4190"]);
        let open = strand_e2e::local::run_bounded(ss, Duration::from_secs(10)).unwrap();
        if open.stdout.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tap streams still open after Stop: {}",
            open.stdout
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // vote-bot calls web-svc, whose ServiceProfile names two routes: its
    // workload's page and its pod's show both, with their numbers.
    let vote_bot_pod = pod_ips(mesh, "vote-bot")[0].0.clone();
    for page in [
        "deployments/vote-bot".to_string(),
        format!("pods/{vote_bot_pod}"),
    ] {
        let hash = format!("#/namespaces/emojivoto/{page}");
        browser
            .eval(&format!("location.hash = {}", Value::from(hash.as_str())))
            .unwrap();
        let routes = browser
            .wait_for(
                &format!(
                    "location.hash === {} && (() => {{
                       const rows = [...document.querySelectorAll('#routes tr[data-route]')];
                       return ['GET /api/list', 'GET /api/vote'].every(n => rows.some(r =>
                           r.dataset.route === n && r.cells[3].textContent.endsWith(' rps')))
                         && Object.fromEntries(rows.map(r => [r.dataset.route, [...r.cells].map(c => c.textContent)]));
                     }})()",
                    Value::from(hash.as_str())
                ),
                wait,
            )
            .unwrap();
        eprintln!("dashboard routes of {page}: {routes}");
        for name in ["GET /api/list", "GET /api/vote"] {
            let r = &routes[name];
            assert_eq!(r[0], name, "{page}: {routes}");
            assert_eq!(r[1], "web-svc", "{page}: {routes}");
            assert!(
                r[2].as_str().is_some_and(|s| s.ends_with('%')),
                "{page}: {routes}"
            );
            assert!(
                r[4].as_str().is_some_and(|s| s.ends_with(" ms")),
                "{page}: {routes}"
            );
        }
        // Some votes fail on purpose; every listing succeeds.
        assert_eq!(routes["GET /api/list"][2], "100.00%", "{page}: {routes}");
    }
    // emoji calls nothing: no routes, and the table says where profiles
    // come from.
    let hash = Value::from("#/namespaces/emojivoto/deployments/emoji");
    browser.eval(&format!("location.hash = {hash}")).unwrap();
    let no_routes = browser
        .wait_for(
            &format!(
                "location.hash === {hash} && document.querySelector('#routes .empty')?.textContent"
            ),
            wait,
        )
        .unwrap();
    assert_eq!(
        no_routes,
        "No ServiceProfile routes: see `strand profile --template`."
    );
    drop(browser);
    drop(dashboard);
}

fn proxy_pid(mesh: &LocalMesh, pod: &str) -> u32 {
    let netns = format!("{}_emojivoto_{pod}", mesh.name());
    let out = Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "strand-proxy")
        })
        .unwrap_or_else(|| panic!("no strand-proxy in {netns}"))
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

#[test]
fn demo_starts_and_stops_its_own_control_plane() {
    if !require_root() {
        return;
    }
    let mesh = LocalMesh::without_control_plane("demo-cp").unwrap();
    let guard = DemoGuard(&mesh);
    let out = mesh
        .strand(&["demo", "--no-watch", "--cluster-name", mesh.name()])
        .unwrap();
    assert_eq!(
        out.code,
        Some(0),
        "strand demo: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("starting the control plane"),
        "{}",
        out.stdout
    );
    let pid = mesh.cluster().unwrap()["pid"].as_u64().unwrap();
    assert_eq!(pod_ips(&mesh, "emoji").len(), 2);
    assert_eq!(
        mesh.pod_namespaces().len(),
        5,
        "{:?}",
        mesh.pod_namespaces()
    );

    // A second `strand demo` finds it running and starts nothing more.
    let again = mesh.strand(&["demo", "--no-watch"]).unwrap();
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("already running"), "{}", again.stdout);
    assert_eq!(mesh.pod_namespaces().len(), 5);

    drop(guard);
    assert!(
        mesh.pod_namespaces().is_empty(),
        "{:?}",
        mesh.pod_namespaces()
    );
    // Gone, or a zombie its new parent has not reaped yet.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty()
            || state
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z')),
        "the control plane the demo started is still running: {state}"
    );
    assert!(!exists(&mesh.state_dir().join("cluster.json")));
}

#[test]
fn demo_without_root_explains_why_it_needs_it() {
    if !require_root() {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(strand_testkit::bin_path("strand"))
        .args(["--state-dir", "/nonexistent", "demo"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`strand demo` needs root") && stderr.contains("network namespace"),
        "{stderr}"
    );
}
