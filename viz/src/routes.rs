//! `strand viz routes`: golden metrics per ServiceProfile route, from the
//! proxies' `route_*` families, computed from [`Query`]s as stat's are so
//! that the embedded store and a Prometheus server answer alike.
//!
//! strand's proxy records route metrics on the client side only: each
//! outbound series names the service called (`dst`, its authority
//! `<svc>.<ns>.svc.<domain>:<port>`) and the profile's route (`rt_route`).
//! So, unlike Linkerd's `routes`, whose default is the server's inbound
//! side, a workload's routes are those of the calls its pods make:
//!
//! ```text
//!  deploy/web, po/web-1, ns/emojivoto   calls from its pods (namespace, deployment, pod labels)
//!    + to svc/emoji-svc                 only those to that service (dst=~"emoji-svc\.<ns>\.svc\..*")
//!  svc/emoji-svc                        every meshed client's calls to it
//! ```
//!
//! One row per (service, route); requests that match none of the profile's
//! routes are counted under [`DEFAULT_ROUTE`]. Effective numbers count
//! requests (`route_response_total`: one response per request, after
//! retries), actual ones attempts (`route_actual_response_total`, retries
//! included); latencies are the requests' (`route_response_latency_ms`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::query::{EvalError, Evaluate, Matcher, Query, Sample, Selector};
use crate::stat::{Inventory, ResourceKind, ResourceRef, secs};

/// The route of requests that match none of a profile's routes.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// The quantiles the table shows, as stat's.
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Responses per request, after retries.
const RESPONSE_TOTAL: &str = "route_response_total";
/// Responses per attempt, retries included.
const ACTUAL_RESPONSE_TOTAL: &str = "route_actual_response_total";
const LATENCY_BUCKET: &str = "route_response_latency_ms_bucket";

/// One `routes` question.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoutesRequest {
    /// Whose calls: `deploy/NAME`, `po/NAME` or `ns/NAME` (its pods'
    /// outbound calls), or `svc/NAME` (every meshed client's calls to it).
    pub resource: ResourceRef,
    /// The resource's namespace (`ns/NAME` names its own); `None`: every
    /// namespace.
    pub namespace: Option<String>,
    /// Only calls to this Service (`svc/NAME`).
    pub to: Option<ResourceRef>,
    /// The `to` Service's namespace; `None`: `namespace`.
    pub to_namespace: Option<String>,
    #[serde(with = "secs")]
    pub window: Duration,
}

/// A [`RoutesRequest`] that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum BadRoutesRequest {
    #[error(
        "name the resource whose routes to show: deploy/NAME, po/NAME, ns/NAME or svc/NAME (not {0})"
    )]
    Unnamed(ResourceRef),
    #[error("--to takes a Service, svc/NAME (route metrics name the service called), not {0}")]
    ToNotAService(ResourceRef),
    #[error(
        "--to narrows the calls of deploy/, po/ or ns/; the routes of {0} are already those of the calls to it"
    )]
    ToWithService(ResourceRef),
    #[error("--to-namespace needs --to")]
    ToNamespaceWithoutTo,
}

/// One row of `strand viz routes`: a route of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteRow {
    /// The ServiceProfile route's name, or [`DEFAULT_ROUTE`].
    pub route: String,
    /// The service called, as the proxy names it:
    /// `web-svc.emojivoto.svc.cluster.local:80`.
    pub dst: String,
    /// The service's short name (`web-svc`), or `dst`'s host when it does
    /// not name a cluster Service.
    pub service: String,
    /// The service's namespace, when `dst` names a cluster Service.
    pub service_namespace: Option<String>,
    /// Requests answered in the window (after retries).
    pub requests: f64,
    /// Successful fraction of the requests (0..=1), by the profile's
    /// response classes; `None` without requests.
    pub success: Option<f64>,
    /// Requests per second.
    pub rps: f64,
    /// Request latency percentiles, in milliseconds; `None` without
    /// requests.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Attempts answered in the window, retries included.
    pub actual_requests: f64,
    /// Successful fraction of the attempts (0..=1); `None` without any.
    pub actual_success: Option<f64>,
    /// Attempts per second.
    pub actual_rps: f64,
}

/// The answer to a [`RoutesRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoutesResponse {
    #[serde(with = "secs")]
    pub window: Duration,
    /// Sorted by service, then route, [`DEFAULT_ROUTE`] last.
    pub routes: Vec<RouteRow>,
    /// `(namespace/pod, reason)` for the proxies whose metrics are stale
    /// among the resource's pods (every one for `svc/NAME`).
    pub stale: BTreeMap<String, String>,
}

/// Responses of one route in the window.
#[derive(Default)]
struct Counts {
    requests: f64,
    success: f64,
    actual_requests: f64,
    actual_success: f64,
}

// === impl RoutesRequest ===

impl RoutesRequest {
    /// Whether the request is one `routes` answers.
    pub fn validate(&self) -> Result<(), BadRoutesRequest> {
        if self.resource.name.is_none() {
            return Err(BadRoutesRequest::Unnamed(self.resource.clone()));
        }
        match &self.to {
            Some(_) if self.resource.kind == ResourceKind::Service => {
                Err(BadRoutesRequest::ToWithService(self.resource.clone()))
            }
            Some(to) if to.kind != ResourceKind::Service || to.name.is_none() => {
                Err(BadRoutesRequest::ToNotAService(to.clone()))
            }
            None if self.to_namespace.is_some() => Err(BadRoutesRequest::ToNamespaceWithoutTo),
            _ => Ok(()),
        }
    }

    /// What to say when there are no route metrics at all.
    pub fn no_routes_message(&self) -> String {
        let mut what = self.resource.to_string();
        if let Some(ns) = &self.namespace
            && self.resource.kind != ResourceKind::Namespace
        {
            what.push_str(&format!(" in namespace {ns}"));
        }
        let window = crate::format_duration(self.window);
        let hint = match (&self.to, self.resource.kind) {
            (Some(to), _) => {
                what.push_str(&format!(" to {to}"));
                format!("is there a ServiceProfile for {to}?")
            }
            (None, ResourceKind::Service) => "is there a ServiceProfile for it?".to_string(),
            (None, _) => "is there a ServiceProfile for the services it calls?".to_string(),
        };
        format!(
            "no route metrics for {what} in the last {window}: {hint} see `strand profile --template`"
        )
    }

    /// The namespace of the resource's pods (of the service, for `svc`).
    fn source_namespace(&self) -> Option<&str> {
        match self.resource.kind {
            ResourceKind::Namespace => self.resource.name.as_deref(),
            _ => self.namespace.as_deref(),
        }
    }

    /// The matchers on the route series: the client's side, and the
    /// service called.
    fn matchers(&self) -> Vec<Matcher> {
        let eq = |k: &str, v: &str| Matcher::Eq(k.to_string(), v.to_string());
        let mut m = vec![eq("direction", "outbound")];
        let name = self.resource.name.as_deref();
        match self.resource.kind {
            ResourceKind::Service => {
                if let Some(name) = name {
                    m.push(dst_prefix(name, self.namespace.as_deref()));
                }
            }
            kind => {
                if let Some(ns) = self.source_namespace() {
                    m.push(eq("namespace", ns));
                }
                if let Some(name) = name
                    && kind != ResourceKind::Namespace
                {
                    m.push(eq(kind.src_label(), name));
                }
            }
        }
        if let Some(to) = &self.to
            && let Some(name) = &to.name
        {
            let ns = self.to_namespace.as_deref().or(self.namespace.as_deref());
            m.push(dst_prefix(name, ns));
        }
        m
    }

    /// The five queries `routes` asks, in order: effective responses,
    /// actual responses, then the latency quantiles.
    pub fn queries(&self) -> Vec<Query> {
        let matchers = self.matchers();
        let sel = |metric: &str| Selector {
            metric: metric.to_string(),
            matchers: matchers.clone(),
        };
        let by = |labels: &[&str]| labels.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let mut out = vec![
            Query::Increase {
                sel: sel(RESPONSE_TOTAL),
                window: self.window,
                by: by(&["dst", "rt_route", "classification"]),
            },
            Query::Increase {
                sel: sel(ACTUAL_RESPONSE_TOTAL),
                window: self.window,
                by: by(&["dst", "rt_route", "classification"]),
            },
        ];
        for q in QUANTILES {
            out.push(Query::Quantile {
                q,
                sel: sel(LATENCY_BUCKET),
                window: self.window,
                by: by(&["dst", "rt_route"]),
            });
        }
        out
    }
}

// === routes ===

/// Answers a [`RoutesRequest`]; the request should have passed
/// [`RoutesRequest::validate`] (an unnamed resource is not filtered by
/// name).
pub async fn routes(
    eval: &dyn Evaluate,
    inv: &Inventory,
    req: &RoutesRequest,
) -> Result<RoutesResponse, EvalError> {
    let mut answers = Vec::with_capacity(2 + QUANTILES.len());
    for q in req.queries() {
        answers.push(eval.eval(&q).await?);
    }
    let mut answers = answers.into_iter();
    let effective = answers.next().unwrap_or_default();
    let actual = answers.next().unwrap_or_default();
    let quantiles: Vec<Vec<Sample>> = answers.collect();

    let mut counts: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (samples, is_actual) in [(&effective, false), (&actual, true)] {
        for s in samples {
            let Some(key) = route_key(s) else { continue };
            let c = counts.entry(key).or_default();
            let ok = s.labels.get("classification").map(String::as_str) == Some("success");
            let ok = if ok { s.value } else { 0.0 };
            if is_actual {
                c.actual_requests += s.value;
                c.actual_success += ok;
            } else {
                c.requests += s.value;
                c.success += ok;
            }
        }
    }
    let window_s = req.window.as_secs_f64().max(1e-9);
    let ratio = |part: f64, total: f64| (total > 0.0).then(|| part / total);
    let mut rows: BTreeMap<(String, String), RouteRow> = counts
        .into_iter()
        .map(|((dst, route), c)| {
            let (service, service_namespace) = service_of(&dst);
            let row = RouteRow {
                route: route.clone(),
                dst: dst.clone(),
                service,
                service_namespace,
                requests: c.requests,
                success: ratio(c.success, c.requests),
                rps: c.requests / window_s,
                latency_p50_ms: None,
                latency_p95_ms: None,
                latency_p99_ms: None,
                actual_requests: c.actual_requests,
                actual_success: ratio(c.actual_success, c.actual_requests),
                actual_rps: c.actual_requests / window_s,
            };
            ((dst, route), row)
        })
        .collect();
    for (i, samples) in quantiles.iter().enumerate() {
        for s in samples {
            let Some(row) = route_key(s).and_then(|k| rows.get_mut(&k)) else {
                continue;
            };
            // Without requests in the window there is no latency either.
            if row.requests <= 0.0 {
                continue;
            }
            let v = Some(s.value);
            match i {
                0 => row.latency_p50_ms = v,
                1 => row.latency_p95_ms = v,
                _ => row.latency_p99_ms = v,
            }
        }
    }
    let mut routes: Vec<RouteRow> = rows.into_values().collect();
    routes.sort_by(|a, b| {
        let key = |r: &RouteRow| {
            (
                r.service.clone(),
                r.service_namespace.clone(),
                r.dst.clone(),
                r.route == DEFAULT_ROUTE,
                r.route.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(RoutesResponse {
        window: req.window,
        routes,
        stale: stale_of(inv, req),
    })
}

/// `(dst, rt_route)` of a sample that has both.
fn route_key(s: &Sample) -> Option<(String, String)> {
    Some((
        s.labels.get("dst")?.clone(),
        s.labels.get("rt_route")?.clone(),
    ))
}

/// The service an authority names: `web-svc.emojivoto.svc.cluster.local:80`
/// is `("web-svc", Some("emojivoto"))`; any other host is itself, without
/// a namespace.
pub fn service_of(dst: &str) -> (String, Option<String>) {
    let host = match dst.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => dst,
    };
    let mut labels = host.split('.');
    match (labels.next(), labels.next(), labels.next()) {
        (Some(svc), Some(ns), Some("svc")) if !svc.is_empty() && !ns.is_empty() => {
            (svc.to_string(), Some(ns.to_string()))
        }
        _ => (host.to_string(), None),
    }
}

/// The `dst` values of Service `name` in `ns` (any namespace when `None`),
/// whatever the cluster domain and port: `name.ns.svc.`.
fn dst_prefix(name: &str, ns: Option<&str>) -> Matcher {
    let prefix = match ns {
        Some(ns) => format!("{name}.{ns}.svc."),
        None => format!("{name}."),
    };
    Matcher::Prefix("dst".to_string(), prefix)
}

/// The stale proxies among the resource's pods; every one for a Service,
/// whose clients may be anywhere.
fn stale_of(inv: &Inventory, req: &RoutesRequest) -> BTreeMap<String, String> {
    let kind = req.resource.kind;
    if kind == ResourceKind::Service {
        return inv.stale.clone();
    }
    let ns = req.source_namespace();
    let name = req.resource.name.as_deref();
    inv.pods
        .iter()
        .filter(|p| ns.is_none_or(|ns| p.namespace == ns))
        .filter(|p| match kind {
            ResourceKind::Deployment => name.is_none_or(|n| p.workload == n),
            ResourceKind::Pod => name.is_none_or(|n| p.name == n),
            _ => true,
        })
        .filter_map(|p| {
            let key = format!("{}/{}", p.namespace, p.name);
            let why = inv.stale.get(&key)?;
            Some((key, why.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
