//! `strand apply`, `strand get`, `strand delete`.

use crate::ctx::Ctx;
use anyhow::{Context as _, bail};
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use strand_controller_core::{Kind, Resource, ServiceRoute};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A YAML file of one or more documents, or `-` for stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    filename: PathBuf,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// services (svc), workloads (deploy), pods (po), httproutes,
    /// grpcroutes, or serviceprofiles (sp).
    #[arg(value_parser = parse_kind)]
    kind: Kind,
    /// Show only this one.
    name: Option<String>,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// List across all namespaces.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// `table` or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The kind, as for `strand get` (e.g. grpcroute, serviceprofile, sp).
    #[arg(value_parser = parse_kind)]
    kind: Kind,
    name: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        format!(
            "unknown kind {s:?}: use services (svc), workloads (deploy), pods (po), httproutes, grpcroutes or serviceprofiles (sp)"
        )
    })
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<u8> {
    let text = if args.filename.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename.display()))?
    };
    let client = ctx.client()?;
    let applied = client.apply(&text).await?;
    if applied.is_empty() {
        println!("no resources found in {}", args.filename.display());
    }
    for a in applied {
        let action = serde_json::to_value(a.action)?;
        println!(
            "{}/{} {} ({})",
            a.kind.name().to_lowercase(),
            a.name,
            action.as_str().unwrap_or("applied"),
            a.namespace
        );
    }
    Ok(0)
}

pub async fn get(ctx: &Ctx, args: GetArgs) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    let items = match &args.name {
        Some(name) => match crate::ctx::get_opt(&client, args.kind, &args.namespace, name).await? {
            Some(r) => vec![r],
            None => bail!(
                "{} {}/{} not found",
                args.kind.name().to_lowercase(),
                args.namespace,
                name
            ),
        },
        None => {
            let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
            client.list(args.kind, ns).await?
        }
    };
    if args.output == "json" {
        let docs: Vec<_> = items.iter().map(Resource::to_json).collect();
        let out = match (&args.name, docs.as_slice()) {
            (Some(_), [one]) => one.clone(),
            _ => serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": docs }),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if items.is_empty() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", args.namespace);
        }
        return Ok(0);
    }
    // A profile describes a Service only under the cluster's domain.
    let domain = crate::profile::cluster_domain(ctx);
    print_table(&rows(args.kind, &items, args.all_namespaces, &domain));
    Ok(0)
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    client
        .delete(args.kind, &args.namespace, &args.name)
        .await?;
    println!(
        "{} \"{}\" deleted ({})",
        args.kind.name().to_lowercase(),
        args.name,
        args.namespace
    );
    Ok(0)
}

fn rows(kind: Kind, items: &[Resource], with_ns: bool, cluster_domain: &str) -> Vec<Vec<String>> {
    let mut header: Vec<&str> = match kind {
        Kind::Service => vec!["NAME", "CLUSTER-IP", "PORT(S)", "SELECTOR", "AGE"],
        Kind::Workload => vec!["NAME", "READY", "PORTS", "COMMAND", "AGE"],
        Kind::Pod => vec!["NAME", "READY", "IP", "WORKLOAD", "PID", "AGE"],
        Kind::HttpRoute | Kind::GrpcRoute => vec!["NAME", "PARENTS", "BACKENDS", "AGE"],
        Kind::ServiceProfile => vec![
            "NAME",
            "SERVICE",
            "ROUTES",
            "RETRY BUDGET",
            "DST OVERRIDES",
            "AGE",
        ],
    };
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let mut out = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in items {
        let meta = r.meta();
        let age = meta
            .creation_timestamp
            .as_deref()
            .and_then(age_of)
            .unwrap_or_else(|| "-".into());
        let mut row = match r {
            Resource::Service(s) => vec![
                meta.name.clone(),
                s.spec.cluster_ip.clone().unwrap_or_else(|| "<none>".into()),
                s.spec
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.port, p.protocol))
                    .collect::<Vec<_>>()
                    .join(","),
                join_map(&s.spec.selector),
                age,
            ],
            Resource::Workload(w) => vec![
                meta.name.clone(),
                format!("{}/{}", w.status.ready_replicas, w.spec.replicas),
                w.spec
                    .ports
                    .iter()
                    .map(|p| p.container_port.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                w.spec.command.join(" "),
                age,
            ],
            Resource::Pod(p) => vec![
                meta.name.clone(),
                if p.status.ready { "1/1" } else { "0/1" }.into(),
                p.status
                    .pod_ip
                    .map_or_else(|| "<none>".into(), |ip| ip.to_string()),
                p.spec.workload.clone(),
                p.status.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                age,
            ],
            Resource::HttpRoute(r) => {
                vec![meta.name.clone(), route_parents(r), route_backends(r), age]
            }
            Resource::GrpcRoute(r) => {
                vec![meta.name.clone(), route_parents(r), route_backends(r), age]
            }
            Resource::ServiceProfile(p) => {
                let mut row = vec![meta.name.clone()];
                row.extend(crate::profile::columns(p, cluster_domain));
                row.push(age);
                row
            }
        };
        if with_ns {
            row.insert(0, meta.namespace.clone());
        }
        out.push(row);
    }
    out
}

/// `web:8080`, or `web` for every port.
fn route_parents(r: &impl ServiceRoute) -> String {
    r.parent_refs()
        .iter()
        .map(|p| match p.port {
            Some(port) => format!("{}:{port}", p.name),
            None => p.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Every backend once, with its weight (as `name:port=weight`) when the
/// route has a single rule, where weights compare; `<parent>` when no rule
/// names a backend.
fn route_backends(r: &impl ServiceRoute) -> String {
    let one_rule = r.rule_backend_refs().count() == 1;
    let mut out: Vec<String> = Vec::new();
    for b in r.backend_refs() {
        let name = match b.port {
            Some(port) => format!("{}:{port}", b.name),
            None => b.name.clone(),
        };
        let cell = if one_rule {
            format!("{name}={}", b.weight())
        } else {
            name
        };
        if !out.contains(&cell) {
            out.push(cell);
        }
    }
    if out.is_empty() {
        return "<parent>".into();
    }
    out.join(",")
}

fn join_map(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// `2026-11-26T10:00:00Z` -> `5m` (kubectl's AGE column).
fn age_of(ts: &str) -> Option<String> {
    let b = ts.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let then = days * 86_400 + h * 3600 + mi * 60 + s;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs(),
    )
    .ok()?;
    let age = (now - then).max(0);
    Some(match age {
        a if a < 120 => format!("{a}s"),
        a if a < 7200 => format!("{}m", a / 60),
        a if a < 172_800 => format!("{}h", a / 3600),
        a => format!("{}d", a / 86_400),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_controller_core::HttpRoute;

    fn route(text: &str) -> HttpRoute {
        match strand_controller_core::parse_manifests(text)
            .expect("valid")
            .pop()
        {
            Some(Resource::HttpRoute(r)) => r,
            other => panic!("not a route: {other:?}"),
        }
    }

    #[test]
    fn route_rows_show_parents_and_weighted_backends() {
        let head = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: web, group: core, port: 8080}, {name: api, group: core}]\n";
        let split = route(&format!(
            "{head}  rules: [{{backendRefs: [{{name: v1, port: 8080, weight: 90}}, {{name: v2, port: 8080, weight: 10}}]}}]\n"
        ));
        assert_eq!(route_parents(&split), "web:8080,api");
        assert_eq!(route_backends(&split), "v1:8080=90,v2:8080=10");
        let two = route(&format!(
            "{head}  rules: [{{backendRefs: [{{name: v1, port: 80}}]}}, {{backendRefs: [{{name: v1, port: 80}}]}}]\n"
        ));
        assert_eq!(route_backends(&two), "v1:80");
        let none = route(&format!("{head}  rules: [{{}}]\n"));
        assert_eq!(route_backends(&none), "<parent>");
        let rows = rows(
            Kind::HttpRoute,
            &[Resource::HttpRoute(none)],
            true,
            "cluster.local",
        );
        assert_eq!(rows[0], ["NAMESPACE", "NAME", "PARENTS", "BACKENDS", "AGE"]);
        assert_eq!(rows[1], ["default", "r", "web:8080,api", "<parent>", "-"]);
    }

    #[test]
    fn grpc_route_rows_and_kind_names() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: emoji-split}\nspec:\n  parentRefs: [{name: emoji, group: core, kind: Service, port: 8080}]\n  rules:\n  - matches: [{method: {service: emojivoto.v1.EmojiService, method: ListAll}}]\n    backendRefs: [{name: emoji-v1, port: 8080, weight: 9}, {name: emoji-v2, port: 8080}]\n";
        let items = strand_controller_core::parse_manifests(text).expect("valid");
        let rows = rows(Kind::GrpcRoute, &items, false, "cluster.local");
        assert_eq!(rows[0], ["NAME", "PARENTS", "BACKENDS", "AGE"]);
        assert_eq!(
            rows[1],
            [
                "emoji-split",
                "emoji:8080",
                "emoji-v1:8080=9,emoji-v2:8080=1",
                "-"
            ]
        );
        for name in ["grpcroute", "grpcroutes", "GRPCRoute"] {
            assert_eq!(parse_kind(name), Ok(Kind::GrpcRoute), "{name}");
        }
        let unknown = parse_kind("grpc").expect_err("not a kind");
        assert!(unknown.contains("grpcroutes"), "{unknown}");
    }

    #[test]
    fn profile_rows() {
        let text = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.default.svc.cluster.local}\nspec:\n  routes: [{name: a, condition: {method: GET}}, {name: b, condition: {pathRegex: /b}}]\n  dstOverrides: [{authority: 'web-v2.default.svc.cluster.local:80', weight: 1}]\n";
        let items = strand_controller_core::parse_manifests(text).expect("valid");
        let rows = rows(Kind::ServiceProfile, &items, false, "cluster.local");
        assert_eq!(
            rows[0],
            [
                "NAME",
                "SERVICE",
                "ROUTES",
                "RETRY BUDGET",
                "DST OVERRIDES",
                "AGE"
            ]
        );
        assert_eq!(
            rows[1],
            [
                "web.default.svc.cluster.local",
                "web",
                "2",
                "20% + 10/s",
                "web-v2.default.svc.cluster.local:80=1",
                "-"
            ]
        );
    }
}
