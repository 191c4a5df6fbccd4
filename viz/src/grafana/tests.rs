use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::*;
use crate::query::{Matcher, Query, Selector};

mod exported;
mod promql;

use self::exported::{known_labels, known_metrics};
use self::promql::{check_promql, is_duration};

/// The functions the dashboards may call.
const FUNCTIONS: &[&str] = &[
    "sum",
    "count",
    "max",
    "min",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "vector",
    "time",
];

/// Grafana's built-in variables.
const BUILTINS: &[&str] = &[
    "__rate_interval",
    "__rate_interval_ms",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

fn all() -> Vec<(Dashboard, Value)> {
    dashboards()
        .into_iter()
        .map(|d| {
            let model: Value = serde_json::from_str(d.json)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", d.file_name));
            (d, model)
        })
        .collect()
}

fn panels(model: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    collect_panels(model["panels"].as_array().expect("a panels list"), &mut out);
    out
}

/// Values for every variable the dashboards define.
fn demo_vars() -> Vars {
    Vars::new()
        .set("namespace", "emojivoto")
        .set("deployment", "web")
        .set("pod", "web-1")
        .set("authority", "web-svc.emojivoto:80")
        // Multi-valued: Grafana escapes each value's regex metacharacters.
        .set("dst", r"web-svc\\.emojivoto\\.svc\\.cluster\\.local:80")
        .set("rt_route", r"(GET /api/list|GET /api/vote|\\[DEFAULT\\])")
}

#[test]
fn every_dashboard_parses_with_unique_names() {
    let all = all();
    assert!(all.len() >= 6);
    let mut uids = HashSet::new();
    let mut titles = HashSet::new();
    let mut files = HashSet::new();
    for (d, model) in &all {
        assert!(uids.insert(d.uid.clone()), "duplicate uid {}", d.uid);
        assert!(
            titles.insert(d.title.clone()),
            "duplicate title {}",
            d.title
        );
        assert!(files.insert(d.file_name), "duplicate file {}", d.file_name);
        assert!(
            d.uid.starts_with("strand-") && d.uid.len() <= 40,
            "{}: Grafana uids are at most 40 characters",
            d.uid
        );
        assert!(d.title.starts_with("strand / "), "{}", d.title);
        assert_eq!(model["schemaVersion"], 39, "{}", d.file_name);
        assert_eq!(
            model["tags"],
            serde_json::json!(["strand"]),
            "{}",
            d.file_name
        );
        assert!(
            model["id"].is_null(),
            "{}: an id would clash on import",
            d.file_name
        );
        assert!(model["templating"]["list"].is_array(), "{}", d.file_name);
    }
    for uid in [
        "strand-top-line",
        "strand-namespace",
        "strand-deployment",
        "strand-pod",
        "strand-authority",
        "strand-route",
        "strand-health",
    ] {
        assert!(uids.contains(uid), "no {uid}");
    }
}

#[test]
fn every_panel_has_a_prometheus_target_and_a_place() {
    let ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for (d, model) in all() {
        let vars = model["templating"]["list"].as_array().expect("a list");
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{}: no ${{datasource}} variable",
            d.file_name
        );
        let mut ids = HashSet::new();
        for p in panels(&model) {
            let title = p["title"].as_str().unwrap_or_default();
            let at = format!("{} panel {title:?}", d.file_name);
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{at}: no id"));
            assert!(ids.insert(id), "{at}: duplicate id {id}");
            let pos = &p["gridPos"];
            let (x, w, h) = (pos["x"].as_u64(), pos["w"].as_u64(), pos["h"].as_u64());
            match (x, w, h) {
                (Some(x), Some(w), Some(h)) => {
                    assert!(w > 0 && h > 0 && x + w <= 24, "{at}: {pos}")
                }
                _ => panic!("{at}: no gridPos"),
            }
            assert!(pos["y"].is_u64(), "{at}: {pos}");
            assert!(
                !title.is_empty(),
                "{}: a panel without a title",
                d.file_name
            );
            if p["type"] == "row" {
                if p["collapsed"] == false {
                    assert_eq!(p["panels"], serde_json::json!([]), "{at}");
                }
                continue;
            }
            assert!(
                ["timeseries", "stat"].contains(&p["type"].as_str().unwrap_or_default()),
                "{at}: type {}",
                p["type"]
            );
            assert_eq!(p["datasource"], ds, "{at}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{at}: no target");
            let mut refs = HashSet::new();
            for t in targets {
                assert_eq!(t["datasource"], ds, "{at}");
                assert!(refs.insert(t["refId"].as_str().expect("a refId")), "{at}");
                assert!(
                    !t["expr"].as_str().unwrap_or_default().trim().is_empty(),
                    "{at}: an empty expr"
                );
            }
        }
    }
}

#[test]
fn exprs_read_only_what_the_proxies_and_prometheus_export() {
    let metrics = known_metrics();
    let labels = known_labels();
    let queries = queries();
    assert!(queries.len() > 100, "{}", queries.len());
    let mut used = BTreeSet::new();
    for q in &queries {
        let expr = substitute(&q.expr, &demo_vars()).expect("substitutes");
        let reads =
            check_promql(&expr).unwrap_or_else(|e| panic!("{} / {}: {e}", q.dashboard, q.panel));
        for m in &reads.metrics {
            assert!(
                metrics.contains(m),
                "{} / {}: no proxy exports {m}",
                q.dashboard,
                q.panel
            );
            used.insert(m.clone());
        }
        for l in &reads.labels {
            assert!(
                labels.contains(l),
                "{} / {}: no series has the label {l}",
                q.dashboard,
                q.panel
            );
        }
        for f in &reads.functions {
            assert!(FUNCTIONS.contains(&f.as_str()), "{}: {f}", q.panel);
        }
        for r in &reads.ranges {
            assert!(is_duration(r), "{}: range {r:?}", q.panel);
        }
    }
    for m in [
        "response_total",
        "response_latency_ms_bucket",
        "tcp_open_connections",
        "tcp_read_bytes_total",
        "tcp_write_bytes_total",
        "tcp_open_total",
        "tcp_close_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "up",
        "route_request_total",
        "route_response_total",
        "route_response_latency_ms_bucket",
        "route_actual_request_total",
        "route_actual_response_total",
    ] {
        assert!(used.contains(m), "no panel reads {m}");
    }
}

#[test]
fn rates_use_the_rate_interval() {
    for q in queries() {
        let raw = check_promql(&q.expr.replace('$', "")).expect("parses");
        for r in raw.ranges {
            assert!(
                r == "__rate_interval" || r == "__range" && q.expr.contains("increase("),
                "{} / {}: range [{r}]",
                q.dashboard,
                q.panel
            );
        }
    }
}

#[test]
fn every_variable_used_is_defined() {
    for (d, model) in all() {
        let defined = d.variables();
        let list = model["templating"]["list"].as_array().expect("a list");
        for (i, v) in list.iter().enumerate() {
            if v["type"] != "query" {
                continue;
            }
            let name = v["name"].as_str().unwrap_or_default();
            let query = v["query"]["query"].as_str().expect("a query string");
            assert_eq!(v["definition"], query, "{}: ${name}", d.file_name);
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{}", d.file_name);
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(", "))
                .unwrap_or_else(|| panic!("{}: ${name}: {query}", d.file_name));
            let reads = check_promql(&inner.0.replace('$', "")).expect("a selector");
            assert!(
                reads.metrics.iter().all(|m| known_metrics().contains(m)),
                "{}: ${name}: {query}",
                d.file_name
            );
            assert!(known_labels().contains(inner.1), "{}: {query}", d.file_name);
            // Grafana resolves variables in order: a query may use only
            // the ones before it.
            for used in variables_in(query).expect("valid syntax") {
                let before: Vec<&Value> = list[..i].iter().collect();
                assert!(
                    before.iter().any(|b| b["name"] == used),
                    "{}: ${name} uses ${used} before it is defined",
                    d.file_name
                );
            }
        }
        for q in d.queries() {
            for used in variables_in(&q.expr).expect("valid syntax") {
                assert!(
                    defined.iter().any(|v| v == used) || BUILTINS.contains(&used),
                    "{} / {}: ${used} is not defined",
                    q.dashboard,
                    q.panel
                );
            }
            assert!(!q.expr.contains("[["), "{}: deprecated [[var]]", q.panel);
        }
    }
}

#[test]
fn substitution_leaves_no_variable_behind() {
    let queries = substituted_queries(&demo_vars()).expect("every variable has a value");
    for q in &queries {
        assert!(
            !q.expr.contains('$'),
            "{} / {}: {}",
            q.dashboard,
            q.panel,
            q.expr
        );
    }
    let web = queries
        .iter()
        .find(|q| q.dashboard_uid == "strand-deployment" && q.panel == "Request rate")
        .expect("the deployment's request rate");
    assert_eq!(
        web.expr,
        r#"sum(rate(response_total{direction="inbound", namespace="emojivoto", deployment="web"}[1m]))"#
    );
    let err =
        substituted_queries(&Vars::new().set("namespace", "emojivoto")).expect_err("no deployment");
    assert!(matches!(err, SubstituteError::Unknown { .. }), "{err}");
}

#[test]
fn substitute_follows_grafanas_syntax() {
    let vars = Vars::new().set("ns", "emojivoto").set("ns_2", "x");
    let s = |e: &str| substitute(e, &vars);
    assert_eq!(s("a{n=\"$ns\"}").as_deref(), Ok("a{n=\"emojivoto\"}"));
    assert_eq!(s("a{n=\"${ns}\"}").as_deref(), Ok("a{n=\"emojivoto\"}"));
    assert_eq!(s("$ns_2$ns").as_deref(), Ok("xemojivoto"));
    assert_eq!(s("rate(m[$__rate_interval])").as_deref(), Ok("rate(m[1m])"));
    assert_eq!(s("[$__range] $__range_s").as_deref(), Ok("[15m] 900"));
    assert_eq!(s("no variables").as_deref(), Ok("no variables"));
    assert!(matches!(s("$other"), Err(SubstituteError::Unknown { name, .. }) if name == "other"));
    for bad in ["$", "a $ b", "${ns", "${ns:regex}", "${}"] {
        assert!(
            matches!(s(bad), Err(SubstituteError::Syntax { .. })),
            "{bad}"
        );
    }
    let vars = Vars::new()
        .rate_interval(Duration::from_secs(30))
        .range(Duration::from_secs(3600));
    assert_eq!(
        substitute("$__rate_interval $__rate_interval_ms $__range", &vars).as_deref(),
        Ok("30s 30000 1h")
    );
    assert_eq!(
        variables_in("x{a=\"$a\", b=\"${b}\"}[$__range]"),
        Ok(vec!["a", "b", "__range"])
    );
}

/// The dashboards compute `strand viz stat`'s numbers with its queries:
/// the deployment dashboard's percentiles and connections are exactly
/// what the stat code renders for `deploy/web -n emojivoto`, and its
/// request rate is the rate of the same `response_total` series.
#[test]
fn the_deployment_dashboard_asks_what_stat_asks() {
    let vars = Vars::new()
        .set("namespace", "emojivoto")
        .set("deployment", "web")
        .rate_interval(Duration::from_secs(60));
    let deployment = dashboards()
        .into_iter()
        .find(|d| d.uid == "strand-deployment")
        .expect("the deployment dashboard");
    let queries: Vec<PanelQuery> = deployment
        .queries()
        .into_iter()
        .map(|mut q| {
            q.expr = substitute(&q.expr, &vars).expect("substitutes");
            q
        })
        .collect();
    let panel =
        |title: &str| -> Vec<&PanelQuery> { queries.iter().filter(|q| q.panel == title).collect() };
    let eq = |k: &str, v: &str| Matcher::Eq(k.to_string(), v.to_string());
    let inbound = Selector::new("response_latency_ms_bucket")
        .with(eq("direction", "inbound"))
        .with(eq("namespace", "emojivoto"))
        .with(eq("deployment", "web"));
    let latency = panel("Latency");
    assert_eq!(latency.len(), 3);
    for (q, got) in [0.5, 0.95, 0.99].into_iter().zip(latency) {
        let want = Query::Quantile {
            q,
            sel: inbound.clone(),
            window: Duration::from_secs(60),
            by: vec![],
        };
        assert_eq!(got.expr, want.to_promql());
    }
    let p95 = panel("P95 latency");
    assert_eq!(p95[0].expr, latency_p95(&inbound));

    let mut tcp = inbound.clone();
    tcp.metric = "tcp_open_connections".into();
    tcp.matchers.push(eq("peer", "src"));
    let want = Query::Sum {
        sel: tcp,
        by: vec![],
    }
    .to_promql();
    assert_eq!(panel("Open connections")[0].expr, want);

    let mut responses = inbound.clone();
    responses.metric = "response_total".into();
    let increase = Query::Increase {
        sel: responses,
        window: Duration::from_secs(60),
        by: vec![],
    }
    .to_promql();
    assert_eq!(
        panel("Request rate")[0].expr,
        increase.replace("increase(", "rate(")
    );
    let success = &panel("Success rate")[0].expr;
    let ok = increase
        .replace("increase(", "rate(")
        .replace("}[", ", classification=\"success\"}[");
    assert!(success.starts_with(&format!("({ok} or ")), "{success}");
}

/// The route dashboard computes `strand viz routes`' numbers with its
/// queries: for `deploy/vote-bot -n emojivoto` with one service and one
/// route selected, its percentiles are exactly the routes code's quantile
/// queries narrowed to them, and its request and success rates rate the
/// `route_response_total` and `route_actual_response_total` series the
/// routes code increases.
#[test]
fn the_route_dashboard_asks_what_routes_asks() {
    let dst = "web-svc.emojivoto.svc.cluster.local:80";
    let route = "GET /api/vote";
    // As Grafana substitutes a multi-valued variable with one value: its
    // regex metacharacters escaped, as `Matcher::Re` renders them.
    let vars = Vars::new()
        .set("namespace", "emojivoto")
        .set("deployment", "vote-bot")
        .set("dst", r"web-svc\\.emojivoto\\.svc\\.cluster\\.local:80")
        .set("rt_route", route)
        .rate_interval(Duration::from_secs(60));
    let dashboard = dashboards()
        .into_iter()
        .find(|d| d.uid == "strand-route")
        .expect("the route dashboard");
    assert_eq!(
        dashboard.variables(),
        ["datasource", "namespace", "deployment", "dst", "rt_route"]
    );
    let queries: Vec<PanelQuery> = dashboard
        .queries()
        .into_iter()
        .map(|mut q| {
            q.expr = substitute(&q.expr, &vars).expect("substitutes");
            q
        })
        .collect();
    let panel = |title: &str| -> Vec<&str> {
        queries
            .iter()
            .filter(|q| q.panel == title)
            .map(|q| q.expr.as_str())
            .collect()
    };
    let narrow = |sel: &Selector| {
        sel.clone()
            .with(Matcher::Re("dst".into(), dst.into()))
            .with(Matcher::Re("rt_route".into(), route.into()))
    };
    let req = crate::routes::RoutesRequest {
        resource: "deploy/vote-bot".parse().expect("a resource"),
        namespace: Some("emojivoto".into()),
        to: None,
        to_namespace: None,
        window: Duration::from_secs(60),
    };
    let asked = req.queries();
    assert_eq!(asked.len(), 5);
    let titles = [
        "P50 latency by route",
        "P95 latency by route",
        "P99 latency by route",
    ];
    for (q, title) in asked[2..].iter().zip(titles) {
        let Query::Quantile { q, sel, window, by } = q else {
            panic!("{q:?} is not a quantile");
        };
        let want = Query::Quantile {
            q: *q,
            sel: narrow(sel),
            window: *window,
            by: by.clone(),
        };
        assert_eq!(panel(title), [want.to_promql()]);
    }
    // Effective (`route_response_total`) and actual
    // (`route_actual_response_total`) responses: the routes code sums
    // their increase by classification, the panels their rate.
    let rate_of = |q: &Query| {
        let Query::Increase { sel, window, .. } = q else {
            panic!("{q:?} is not an increase");
        };
        Query::Increase {
            sel: narrow(sel),
            window: *window,
            by: vec!["dst".into(), "rt_route".into()],
        }
        .to_promql()
        .replace("increase(", "rate(")
    };
    let (effective, actual) = (rate_of(&asked[0]), rate_of(&asked[1]));
    assert_eq!(panel("Request rate by route"), [effective.as_str()]);
    let success = panel("Effective and actual success rate");
    assert_eq!(success.len(), 2);
    for (expr, all) in success.into_iter().zip([&effective, &actual]) {
        let ok = all.replace("}[", ", classification=\"success\"}[");
        assert_eq!(expr, format!("({ok} or 0 * {all}) / {all}"));
    }
}

fn latency_p95(sel: &Selector) -> String {
    Query::Quantile {
        q: 0.95,
        sel: sel.clone(),
        window: Duration::from_secs(60),
        by: vec![],
    }
    .to_promql()
}
