//! `strand viz`: golden metrics per resource (`stat`) and per
//! ServiceProfile route (`routes`), who talks to whom and whether over
//! mTLS (`edges`), a Prometheus configuration for the proxies
//! (`prometheus-config`), live requests (`tap`, `top`), the web
//! dashboard (`dashboard`), and the traces the proxies reported (`trace`).
//!
//! The numbers come from the control plane's metrics API, which scrapes
//! every proxy itself; with `--prometheus-url` the same questions go to a
//! Prometheus server instead, in PromQL. Traces come from the metrics API
//! alone: it shares the spans the control plane's trace collector receives.

mod dashboard;
mod grafana;
mod routes;
mod tap;
mod top;
mod trace;

use crate::ctx::Ctx;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use strand_viz::routes::{RoutesRequest, RoutesResponse};
use strand_viz::stat::{
    EdgesRequest, EdgesResponse, ResourceKind, ResourceRef, StatRequest, StatResponse,
};

#[derive(Args, Debug)]
pub struct VizArgs {
    #[command(subcommand)]
    command: VizCommand,
}

#[derive(Subcommand, Debug)]
enum VizCommand {
    /// Success rate, requests per second, latency percentiles and open TCP
    /// connections of workloads (deploy), pods (po), services (svc) or
    /// namespaces (ns), as `linkerd viz stat` shows them.
    Stat(StatArgs),
    /// Success rate, requests per second and latency percentiles per
    /// ServiceProfile route, as `linkerd viz routes` shows them.
    ///
    /// strand's proxies record route metrics on the client side only, so
    /// unlike Linkerd's `routes`, whose default is the server's side,
    /// `routes deploy/web` (or po/NAME, ns/NAME) lists the routes of the
    /// calls web's pods make, one row per service called and route, and
    /// `--to svc/emoji-svc` keeps those to that Service (in --to-namespace,
    /// by default --namespace); `routes svc/emoji-svc` lists every meshed
    /// client's calls to emoji-svc. SERVICE is the service called;
    /// requests that match none of its profile's routes are under
    /// [DEFAULT], listed last. `-o wide` shows the effective numbers (one
    /// per request, after retries) beside the actual ones (one per attempt,
    /// retries included). A service has route metrics only when it has a
    /// ServiceProfile (`strand profile --template`).
    Routes(routes::RoutesArgs),
    /// Which workloads (or pods) talk to which, with the client's and the
    /// server's identities and whether the traffic is secured by mTLS.
    Edges(EdgesArgs),
    /// Print a Prometheus configuration that scrapes every proxy.
    PrometheusConfig(PromConfigArgs),
    /// Stream the live requests of a workload's, pod's or namespace's
    /// proxies (`req`, `rsp` and `end` events), as `linkerd viz tap` does.
    /// Needs the control plane's CA files (root).
    Tap(tap::TapArgs),
    /// A live table of the routes a workload's, pod's or namespace's
    /// proxies see most (count, best/worst/last latency, success rate),
    /// from their tap streams, as `linkerd viz top` shows it.
    Top(top::TopArgs),
    /// Serve the web dashboard on this host (namespaces, workloads, pods,
    /// who calls whom, routes, live requests) until Ctrl-C, as `linkerd viz
    /// dashboard` opens it. Live requests need the control plane's CA files
    /// (root).
    Dashboard(dashboard::DashboardArgs),
    /// The most recent traces, or one trace's spans as a tree: what the
    /// proxies reported to the control plane's trace collector.
    ///
    /// A proxy reports a span for each HTTP request that carries a sampled
    /// W3C `traceparent` (or B3 `x-b3-*`) header: a server span for a
    /// request its pod receives, a client span for each request its pod
    /// sends, and it passes the context on with its own span as the parent.
    /// An application joins its calls to the trace by copying the
    /// `traceparent` it received onto the requests it makes; otherwise each
    /// call starts a trace of its own. The control plane keeps the last
    /// 20,000 spans in memory (`strand-controller local --trace-max-spans`).
    ///
    /// Without TRACE_ID: one row per trace, newest first. ROOT is the
    /// earliest span whose parent was not reported (usually the first
    /// proxy's: the application that started the trace reports no spans),
    /// SERVICES the workloads whose proxies reported spans,
    /// DURATION from the first span's start to the last one's end, ERROR a
    /// trace with a failed span (a 5xx answer or a proxy error). With
    /// TRACE_ID: every span, indented under its parent, with its service,
    /// pod, kind, start after the trace's, duration, HTTP status and error.
    Trace(trace::TraceArgs),
    /// Write strand's Grafana dashboards and the provisioning files that
    /// load them, as Linkerd's viz extension ships its own.
    ///
    /// The dashboards: top line, namespace, deployment, pod, authority,
    /// route (a deployment's calls by ServiceProfile route) and the
    /// proxies' health. Writes DIR/dashboards/*.json, DIR/provisioning/dashboards/strand.yaml
    /// (a file provider for DIR/dashboards, folder "strand") and
    /// DIR/provisioning/datasources/strand.yaml (the default Prometheus
    /// datasource, named "prometheus", at --prometheus-url). Start Grafana
    /// with `GF_PATHS_PROVISIONING=DIR/provisioning grafana-server`, or copy
    /// the two YAML files into its provisioning directory. The dashboards
    /// read the proxies' metrics as a Prometheus scraping them with
    /// `strand viz prometheus-config` labels them (namespace, pod,
    /// deployment) and compute success rate, request rate and latency
    /// percentiles as `strand viz stat` does. Existing files are kept
    /// unless --force. Needs neither root nor a running control plane.
    Grafana(grafana::GrafanaArgs),
}

/// Which namespaces and window, and where the numbers come from.
#[derive(Args, Debug)]
struct Scope {
    /// The namespace of the resources.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// The window the rates and percentiles cover: `30s`, `1m`, `10m`.
    #[arg(long = "time-window", short = 't', default_value = "1m", value_parser = crate::run::parse_duration)]
    window: Duration,
    /// Ask this Prometheus server (which scrapes the proxies with the
    /// configuration `strand viz prometheus-config` prints) instead of the
    /// control plane's metrics API.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
}

impl Scope {
    /// `None`: every namespace.
    fn namespace(&self) -> Option<String> {
        (!self.all_namespaces).then(|| self.namespace.clone())
    }
}

#[derive(Args, Debug)]
struct StatArgs {
    /// `deploy`, `po`, `svc`, `ns` (or their long forms), optionally with
    /// `/NAME`: `deploy/web`.
    resource: ResourceRef,
    /// Only traffic from this resource (`deploy/vote-bot`).
    #[arg(long, value_name = "RESOURCE")]
    from: Option<ResourceRef>,
    /// Only traffic to this resource (`deploy/emoji`, `svc/emoji-svc`).
    #[arg(long, value_name = "RESOURCE")]
    to: Option<ResourceRef>,
    /// `table`, `wide` (adds the share of requests over mTLS) or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "wide", "json"])]
    output: String,
    #[command(flatten)]
    scope: Scope,
}

#[derive(Args, Debug)]
struct EdgesArgs {
    /// `deploy` or `po`.
    resource: ResourceRef,
    /// `table`, `wide` (full identities, request rates, why not secured) or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "wide", "json"])]
    output: String,
    #[command(flatten)]
    scope: Scope,
}

#[derive(Args, Debug)]
struct PromConfigArgs {
    /// How often Prometheus scrapes each proxy.
    #[arg(long, default_value = "10s", value_parser = crate::run::parse_duration)]
    scrape_interval: Duration,
    /// List today's proxies as static targets instead of discovering them
    /// from the metrics API (which follows pods as they come and go).
    #[arg(long = "static")]
    static_targets: bool,
}

pub async fn viz(ctx: &Ctx, args: VizArgs) -> anyhow::Result<u8> {
    match args.command {
        VizCommand::Stat(a) => stat(ctx, a).await,
        VizCommand::Routes(a) => routes::routes(ctx, a).await,
        VizCommand::Edges(a) => edges(ctx, a).await,
        VizCommand::PrometheusConfig(a) => prometheus_config(ctx, a).await,
        VizCommand::Tap(a) => tap::tap(ctx, a).await,
        VizCommand::Top(a) => top::top(ctx, a).await,
        VizCommand::Dashboard(a) => dashboard::dashboard(ctx, a).await,
        VizCommand::Grafana(a) => grafana::grafana(a),
        VizCommand::Trace(a) => trace::trace(ctx, a).await,
    }
}

async fn stat(ctx: &Ctx, args: StatArgs) -> anyhow::Result<u8> {
    if args.scope.window < Duration::from_secs(1) {
        bail!("--time-window must be at least 1s");
    }
    let req = StatRequest {
        resource: args.resource,
        namespace: args.scope.namespace(),
        from: args.from,
        to: args.to,
        window: args.scope.window,
    };
    let rsp = fetch_stat(ctx, args.scope.prometheus_url.as_deref(), &req).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rsp)?);
    } else {
        print!(
            "{}",
            render_stat(&rsp, req.namespace.is_none(), args.output == "wide")
        );
    }
    Ok(0)
}

/// Asks the control plane's metrics API.
pub async fn stat_embedded(ctx: &Ctx, req: &StatRequest) -> anyhow::Result<StatResponse> {
    Ok(metrics_api(ctx)?.stat(req).await?)
}

/// Asks the control plane's metrics API, or the Prometheus server at
/// `prometheus_url`.
async fn fetch_stat(
    ctx: &Ctx,
    prometheus_url: Option<&str>,
    req: &StatRequest,
) -> anyhow::Result<StatResponse> {
    match prometheus_url {
        Some(url) => {
            let (prom, inv) = prometheus(ctx, url).await?;
            Ok(strand_viz::stat::stat(&prom, &inv, req).await?)
        }
        None => stat_embedded(ctx, req).await,
    }
}

/// [`fetch_stat`] for `edges`.
async fn fetch_edges(
    ctx: &Ctx,
    prometheus_url: Option<&str>,
    req: &EdgesRequest,
) -> anyhow::Result<EdgesResponse> {
    match prometheus_url {
        Some(url) => {
            let (prom, inv) = prometheus(ctx, url).await?;
            Ok(strand_viz::stat::edges(&prom, &inv, req).await?)
        }
        None => Ok(metrics_api(ctx)?.edges(req).await?),
    }
}

/// [`fetch_stat`] for `routes`.
async fn fetch_routes(
    ctx: &Ctx,
    prometheus_url: Option<&str>,
    req: &RoutesRequest,
) -> anyhow::Result<RoutesResponse> {
    match prometheus_url {
        Some(url) => {
            let (prom, inv) = prometheus(ctx, url).await?;
            Ok(strand_viz::routes::routes(&prom, &inv, req).await?)
        }
        None => Ok(metrics_api(ctx)?.routes(req).await?),
    }
}

async fn edges(ctx: &Ctx, args: EdgesArgs) -> anyhow::Result<u8> {
    if !matches!(
        args.resource.kind,
        ResourceKind::Deployment | ResourceKind::Pod
    ) || args.resource.name.is_some()
    {
        bail!("`strand viz edges` takes `deploy` or `po` (without a name)");
    }
    let req = EdgesRequest {
        kind: args.resource.kind,
        namespace: args.scope.namespace(),
        window: args.scope.window,
    };
    let rsp = fetch_edges(ctx, args.scope.prometheus_url.as_deref(), &req).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rsp)?);
    } else {
        print!("{}", render_edges(&rsp, args.output == "wide"));
    }
    Ok(0)
}

async fn prometheus_config(ctx: &Ctx, args: PromConfigArgs) -> anyhow::Result<u8> {
    let interval = strand_viz::format_duration(args.scrape_interval);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Prometheus configuration that scrapes every strand proxy's /metrics\n\
         # (`strand viz prometheus-config`). Each target carries the labels\n\
         # namespace, pod and deployment, as Linkerd's scrape configuration adds,\n\
         # so `strand viz stat --prometheus-url` and Linkerd's dashboards work.\n\
         global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
         scrape_configs:\n  - job_name: strand-proxy\n    scrape_interval: {interval}\n    metrics_path: /metrics"
    );
    if args.static_targets {
        let client = ctx.client()?;
        let pods = client
            .list(strand_controller_core::Kind::Pod, None)
            .await
            .context("listing pods")?;
        let targets = strand_viz::inventory::scrape_targets(&pods);
        out.push_str("    static_configs:\n");
        if targets.is_empty() {
            out.push_str("      []\n");
        }
        for t in targets {
            let _ = writeln!(out, "      - targets: [\"{}\"]\n        labels:", t.addr);
            for (k, v) in &t.labels {
                let _ = writeln!(out, "          {k}: \"{}\"", v.replace('"', "\\\""));
            }
        }
    } else {
        let addr = metrics_api_addr(ctx)?;
        let _ = writeln!(
            out,
            "    http_sd_configs:\n      - url: http://{addr}/api/v1/prometheus-sd\n        refresh_interval: {interval}"
        );
    }
    print!("{out}");
    Ok(0)
}

fn metrics_api_addr(ctx: &Ctx) -> anyhow::Result<SocketAddr> {
    let cluster = ctx.cluster()?;
    if cluster.metrics_api_addr.port() == 0 {
        bail!(
            "the control plane has no metrics API (it predates it); restart it with `strand down && strand up --detach`"
        );
    }
    Ok(cluster.metrics_api_addr)
}

fn metrics_api(ctx: &Ctx) -> anyhow::Result<strand_viz::client::MetricsApiClient> {
    Ok(strand_viz::client::MetricsApiClient::new(metrics_api_addr(
        ctx,
    )?))
}

/// A client of the Prometheus at `url`, and the inventory to read it with.
async fn prometheus(
    ctx: &Ctx,
    url: &str,
) -> anyhow::Result<(
    strand_viz::prom::PrometheusClient,
    strand_viz::stat::Inventory,
)> {
    let prom = strand_viz::prom::PrometheusClient::new(url)?;
    let inv = inventory(ctx, &prom).await?;
    Ok((prom, inv))
}

/// The pods and services from the management API, and the proxies whose
/// last scrape by Prometheus failed.
async fn inventory(
    ctx: &Ctx,
    prom: &strand_viz::prom::PrometheusClient,
) -> anyhow::Result<strand_viz::stat::Inventory> {
    use strand_controller_core::Kind;
    let client = ctx.client()?;
    let mut resources = client.list(Kind::Pod, None).await?;
    resources.extend(client.list(Kind::Service, None).await?);
    let mut inv = strand_viz::inventory::from_resources(&resources);
    inv.stale = prom.down_targets().await?;
    Ok(inv)
}

// === rendering ===

/// The stat table, as `linkerd viz stat` prints it.
pub fn render_stat(rsp: &StatResponse, all_namespaces: bool, wide: bool) -> String {
    if rsp.rows.is_empty() {
        return "No traffic found.\n".to_string();
    }
    let mut header = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ]);
    if wide {
        header.push("MTLS");
    }
    let any_stale = rsp.rows.iter().any(|r| !r.stale.is_empty());
    if any_stale {
        header.push("STATUS");
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for r in &rsp.rows {
        let mut row = Vec::new();
        if all_namespaces {
            row.push(r.namespace.clone());
        }
        let traffic = r.requests > 0.0;
        row.push(r.name.clone());
        row.push(match r.meshed {
            Some((m, t)) => format!("{m}/{t}"),
            None => "-".into(),
        });
        row.push(match r.success {
            Some(s) => format!("{:.2}%", s * 100.0),
            None => "-".into(),
        });
        row.push(if traffic {
            format!("{:.1}rps", r.rps)
        } else {
            "-".into()
        });
        for l in [r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms] {
            row.push(match l {
                Some(ms) if traffic => format_ms(ms),
                _ => "-".into(),
            });
        }
        row.push(match r.tcp_conn {
            Some(c) => format!("{c:.0}"),
            None => "-".into(),
        });
        if wide {
            row.push(match r.mtls {
                Some(m) => format!("{:.0}%", m * 100.0),
                None => "-".into(),
            });
        }
        if any_stale {
            row.push(if r.stale.is_empty() {
                String::new()
            } else {
                format!("stale: {}", r.stale.join(","))
            });
        }
        rows.push(row);
    }
    let mut out = table(&rows);
    write_stale(&mut out, &rsp.stale);
    out
}

/// A line under the table for each proxy whose metrics are stale.
fn write_stale(out: &mut String, stale: &std::collections::BTreeMap<String, String>) {
    if stale.is_empty() {
        return;
    }
    out.push('\n');
    for (pod, why) in stale {
        let _ = writeln!(
            out,
            "! metrics of {pod} are stale (its proxy's last scrape failed: {why}); its rows leave out what it did since"
        );
    }
}

fn render_edges(rsp: &EdgesResponse, wide: bool) -> String {
    if rsp.edges.is_empty() {
        return "No edges found.\n".to_string();
    }
    let mut header = vec![
        "SRC",
        "DST",
        "SRC_NS",
        "DST_NS",
        "CLIENT_ID",
        "SERVER_ID",
        "SECURED",
    ];
    if wide {
        header.extend(["RPS", "MSG"]);
    }
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let id = |id: &Option<String>| match id {
        Some(id) if wide => id.clone(),
        // `<sa>.<ns>`, as Linkerd's table shortens identities.
        Some(id) => id.splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
        None => "-".into(),
    };
    for e in &rsp.edges {
        let mut row = vec![
            e.src.clone(),
            e.dst.clone(),
            e.src_namespace.clone(),
            e.dst_namespace.clone(),
            id(&e.client_id),
            id(&e.server_id),
            if e.secured { "\u{221a}" } else { "\u{d7}" }.to_string(),
        ];
        if wide {
            row.push(format!(
                "{:.1}rps",
                e.requests / rsp.window.as_secs_f64().max(1.0)
            ));
            row.push(e.no_tls_reason.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    table(&rows)
}

fn format_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// Left-aligned first column, the others right-aligned, three spaces
/// apart, as Linkerd's tables.
fn table(rows: &[Vec<String>]) -> String {
    aligned_table(rows, |c, cell, len| {
        !(c == 0 || c + 1 == len && cell.starts_with("stale"))
    })
}

/// Columns three spaces apart, each as wide as its widest cell;
/// `right(column, cell, cells in the row)` says which cells are
/// right-aligned. Trailing spaces are trimmed.
pub(super) fn aligned_table(
    rows: &[Vec<String>],
    right: impl Fn(usize, &str, usize) -> bool,
) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("   ");
            }
            if right(c, cell, r.len()) {
                let _ = write!(line, "{cell:>w$}", w = width[c]);
            } else {
                let _ = write!(line, "{cell:<w$}", w = width[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_viz::stat::StatRow;

    fn row(name: &str, requests: f64) -> StatRow {
        StatRow {
            namespace: "emojivoto".into(),
            kind: ResourceKind::Deployment,
            name: name.into(),
            meshed: Some((2, 2)),
            requests,
            success: (requests > 0.0).then_some(0.955),
            rps: requests / 60.0,
            latency_p50_ms: Some(1.25),
            latency_p95_ms: Some(4.0),
            latency_p99_ms: Some(27.0),
            tcp_conn: Some(3.0),
            mtls: Some(1.0),
            stale: Vec::new(),
        }
    }

    #[test]
    fn stat_table_reads_like_linkerds() {
        let rsp = StatResponse {
            window: Duration::from_secs(60),
            rows: vec![row("emoji", 120.0), row("idle", 0.0)],
            stale: Default::default(),
        };
        let text = render_stat(&rsp, false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN"
        );
        assert_eq!(
            lines[1],
            "emoji      2/2    95.50%   2.0rps         1.2ms         4.0ms          27ms          3"
        );
        assert_eq!(
            lines[2],
            "idle       2/2         -        -             -             -             -          3"
        );
    }

    #[test]
    fn stale_rows_say_so() {
        let mut r = row("web", 60.0);
        r.stale = vec!["web-1".into()];
        let rsp = StatResponse {
            window: Duration::from_secs(60),
            rows: vec![r],
            stale: [(
                "emojivoto/web-1".to_string(),
                "connection refused".to_string(),
            )]
            .into_iter()
            .collect(),
        };
        let text = render_stat(&rsp, true, true);
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.starts_with("NAMESPACE")),
            "{text}"
        );
        assert!(text.contains("stale: web-1"), "{text}");
        assert!(
            text.contains("! metrics of emojivoto/web-1 are stale"),
            "{text}"
        );
        assert!(text.contains("100%"), "{text}");
    }
}
