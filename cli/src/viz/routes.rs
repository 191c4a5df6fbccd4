//! `strand viz routes`: success rate, RPS and latency per ServiceProfile
//! route (`strand_viz::routes`), as `linkerd viz routes` tables them, from
//! the metrics API or (`--prometheus-url`) Prometheus.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use strand_viz::routes::{RoutesRequest, RoutesResponse};
use strand_viz::stat::ResourceRef;

use super::Scope;
use crate::ctx::Ctx;

#[derive(Args, Debug)]
pub struct RoutesArgs {
    /// Whose calls: `deploy/NAME`, `po/NAME` or `ns/NAME` (the outbound
    /// calls of its pods), or `svc/NAME` (every meshed client's calls to
    /// that Service).
    resource: ResourceRef,
    /// Only calls to this Service: `svc/emoji-svc`.
    #[arg(long, value_name = "SERVICE")]
    to: Option<ResourceRef>,
    /// The namespace of the --to Service (default: --namespace).
    #[arg(long, value_name = "NS", requires = "to")]
    to_namespace: Option<String>,
    /// `table`, `wide` (effective success and RPS, counting requests, beside
    /// actual ones, counting attempts with retries) or `json` (an array of
    /// rows).
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "wide", "json"])]
    output: String,
    #[command(flatten)]
    scope: Scope,
}

pub(super) async fn routes(ctx: &Ctx, args: RoutesArgs) -> anyhow::Result<u8> {
    if args.scope.window < Duration::from_secs(1) {
        bail!("--time-window must be at least 1s");
    }
    let req = RoutesRequest {
        resource: args.resource,
        namespace: args.scope.namespace(),
        to: args.to,
        to_namespace: args.to_namespace,
        window: args.scope.window,
    };
    req.validate()?;
    let rsp = super::fetch_routes(ctx, args.scope.prometheus_url.as_deref(), &req).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rsp.routes)?);
    } else {
        print!("{}", render_routes(&req, &rsp, args.output == "wide"));
    }
    Ok(0)
}

/// The routes table, as `linkerd viz routes` prints it; without any route
/// metrics, why there may be none.
pub fn render_routes(req: &RoutesRequest, rsp: &RoutesResponse, wide: bool) -> String {
    let mut out = String::new();
    if rsp.routes.is_empty() {
        let _ = writeln!(out, "{}", req.no_routes_message());
    } else {
        let mut header = vec!["ROUTE", "SERVICE"];
        if wide {
            header.extend([
                "EFFECTIVE_SUCCESS",
                "EFFECTIVE_RPS",
                "ACTUAL_SUCCESS",
                "ACTUAL_RPS",
            ]);
        } else {
            header.extend(["SUCCESS", "RPS"]);
        }
        header.extend(["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]);
        let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        let success = |s: Option<f64>| match s {
            Some(s) => format!("{:.2}%", s * 100.0),
            None => "-".into(),
        };
        let rps = |n: f64, rps: f64| {
            if n > 0.0 {
                format!("{rps:.1}rps")
            } else {
                "-".into()
            }
        };
        for r in &rsp.routes {
            let mut row = vec![r.route.clone(), r.service.clone()];
            row.push(success(r.success));
            row.push(rps(r.requests, r.rps));
            if wide {
                row.push(success(r.actual_success));
                row.push(rps(r.actual_requests, r.actual_rps));
            }
            for l in [r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms] {
                row.push(match l {
                    Some(ms) if r.requests > 0.0 => super::format_ms(ms),
                    _ => "-".into(),
                });
            }
            rows.push(row);
        }
        out.push_str(&super::table(&rows));
    }
    super::write_stale(&mut out, &rsp.stale);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_viz::routes::{DEFAULT_ROUTE, RouteRow};

    fn row(service: &str, route: &str, requests: f64, actual: f64) -> RouteRow {
        RouteRow {
            route: route.into(),
            dst: format!("{service}.emojivoto.svc.cluster.local:8080"),
            service: service.into(),
            service_namespace: Some("emojivoto".into()),
            requests,
            success: (requests > 0.0).then_some(0.9),
            rps: requests / 60.0,
            latency_p50_ms: Some(1.25),
            latency_p95_ms: Some(4.0),
            latency_p99_ms: Some(27.0),
            actual_requests: actual,
            actual_success: (actual > 0.0).then_some(0.75),
            actual_rps: actual / 60.0,
        }
    }

    fn request() -> RoutesRequest {
        RoutesRequest {
            resource: "deploy/web".parse().unwrap(),
            namespace: Some("emojivoto".into()),
            to: None,
            to_namespace: None,
            window: Duration::from_secs(60),
        }
    }

    fn response(routes: Vec<RouteRow>) -> RoutesResponse {
        RoutesResponse {
            window: Duration::from_secs(60),
            routes,
            stale: Default::default(),
        }
    }

    #[test]
    fn routes_table_reads_like_linkerds() {
        let rsp = response(vec![
            row("emoji-svc", "ListAll", 120.0, 120.0),
            row("emoji-svc", DEFAULT_ROUTE, 6.0, 6.0),
            row("voting-svc", "VoteBurrito", 0.0, 0.0),
        ]);
        let text = render_routes(&request(), &rsp, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ROUTE            SERVICE   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99",
                "ListAll        emoji-svc    90.00%   2.0rps         1.2ms         4.0ms          27ms",
                "[DEFAULT]      emoji-svc    90.00%   0.1rps         1.2ms         4.0ms          27ms",
                "VoteBurrito   voting-svc         -        -             -             -             -",
            ]
        );
    }

    #[test]
    fn wide_shows_attempts_beside_requests() {
        let rsp = response(vec![row("voting-svc", "VoteDoughnut", 180.0, 216.0)]);
        let text = render_routes(&request(), &rsp, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ROUTE             SERVICE   EFFECTIVE_SUCCESS   EFFECTIVE_RPS   ACTUAL_SUCCESS   ACTUAL_RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99",
                "VoteDoughnut   voting-svc              90.00%          3.0rps           75.00%       3.6rps         1.2ms         4.0ms          27ms",
            ]
        );
    }

    #[test]
    fn no_routes_say_why_and_json_is_an_array() {
        let mut rsp = response(Vec::new());
        rsp.stale = [("emojivoto/web-1".to_string(), "refused".to_string())]
            .into_iter()
            .collect();
        let text = render_routes(&request(), &rsp, false);
        assert!(
            text.starts_with("no route metrics for deploy/web in namespace emojivoto in the last 1m: is there a ServiceProfile for the services it calls? see `strand profile --template`\n"),
            "{text}"
        );
        assert!(
            text.contains("! metrics of emojivoto/web-1 are stale"),
            "{text}"
        );

        // The rows' fields, in a fixed order, are `-o json`'s array.
        let json = serde_json::to_string(&[row("emoji-svc", "ListAll", 6.0, 6.0)]).unwrap();
        assert_eq!(
            json,
            r#"[{"route":"ListAll","dst":"emoji-svc.emojivoto.svc.cluster.local:8080","service":"emoji-svc","service_namespace":"emojivoto","requests":6.0,"success":0.9,"rps":0.1,"latency_p50_ms":1.25,"latency_p95_ms":4.0,"latency_p99_ms":27.0,"actual_requests":6.0,"actual_success":0.75,"actual_rps":0.1}]"#
        );
    }
}
