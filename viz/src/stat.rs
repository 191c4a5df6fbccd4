//! `strand viz stat` and `strand viz edges`: golden metrics per resource and
//! per edge, computed from [`Query`]s so that the embedded store and a
//! Prometheus server answer them alike.
//!
//! As in Linkerd, a resource's own numbers come from the inbound side of its
//! pods' proxies; `--to` and `--from` read the outbound side of the client's
//! proxies, whose series carry the server's `dst_*` labels; a Service's
//! numbers are what every meshed client sent to it (`dst_service`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::query::{EvalError, Evaluate, Matcher, Query, Sample, Selector};

/// The quantiles the table shows.
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// What a row of the table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A workload (`strand run --name`), Linkerd's Deployment.
    Deployment,
    Pod,
    /// A Service, seen from its clients (Linkerd's authority).
    Service,
    Namespace,
}

/// `deploy/web`, `po/web-1`, `svc/web-svc`, `ns/emojivoto`, or a kind alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    pub name: Option<String>,
}

/// A bad resource argument.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown resource type {0:?}: use deploy (or workload), pod, svc (or authority) or ns, optionally with /NAME"
)]
pub struct BadResource(String);

/// One `stat` question.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatRequest {
    pub resource: ResourceRef,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// Only traffic from this resource (in `namespace`).
    pub from: Option<ResourceRef>,
    /// Only traffic to this resource (in `namespace`).
    pub to: Option<ResourceRef>,
    #[serde(with = "secs")]
    pub window: Duration,
}

/// What the stat code needs to know about a pod besides its metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub workload: String,
    /// A proxy runs beside it.
    pub meshed: bool,
    pub ready: bool,
    /// Its proxy's TLS identity, when it has one.
    pub identity: Option<String>,
}

/// The pods and services the rows are about, and which proxies could not
/// be scraped lately.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub pods: Vec<PodInfo>,
    /// `(namespace, name)` of every Service.
    pub services: Vec<(String, String)>,
    /// `(namespace, pod)` -> why its proxy's metrics are stale.
    pub stale: BTreeMap<String, String>,
}

/// One row of `strand viz stat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatRow {
    pub namespace: String,
    pub kind: ResourceKind,
    pub name: String,
    /// Meshed pods and all pods; `None` for a Service.
    pub meshed: Option<(u32, u32)>,
    /// Requests in the window.
    pub requests: f64,
    /// Successful fraction of the requests (0..=1); `None` without traffic.
    pub success: Option<f64>,
    pub rps: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Open TCP connections now; `None` when the proxies do not say.
    pub tcp_conn: Option<f64>,
    /// Requests in the window that were mutually authenticated (0..=1).
    pub mtls: Option<f64>,
    /// Pods of this resource whose metrics could not be read lately.
    pub stale: Vec<String>,
}

/// The answer to a [`StatRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatResponse {
    #[serde(with = "secs")]
    pub window: Duration,
    pub rows: Vec<StatRow>,
    /// `(namespace/pod, reason)` for every proxy whose metrics are stale.
    pub stale: BTreeMap<String, String>,
}

/// One `edges` question.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EdgesRequest {
    /// `Deployment` or `Pod`.
    pub kind: ResourceKind,
    pub namespace: Option<String>,
    #[serde(with = "secs")]
    pub window: Duration,
}

/// A source talking to a destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    pub src_namespace: String,
    pub src: String,
    pub dst_namespace: String,
    pub dst: String,
    /// The source's proxy identity.
    pub client_id: Option<String>,
    /// The identity the destination's proxy proved.
    pub server_id: Option<String>,
    /// Every request in the window went over mTLS.
    pub secured: bool,
    /// Why not, when it did not (`no_tls_reason`).
    pub no_tls_reason: Option<String>,
    pub requests: f64,
}

/// The answer to an [`EdgesRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EdgesResponse {
    #[serde(with = "secs")]
    pub window: Duration,
    pub edges: Vec<EdgeRow>,
    pub stale: BTreeMap<String, String>,
}

// === impl ResourceKind ===

impl ResourceKind {
    /// Linkerd's spellings, singular, plural and short.
    pub fn parse(s: &str) -> Option<ResourceKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "deploy" | "deployment" | "deployments" | "workload" | "workloads" | "wl" => {
                ResourceKind::Deployment
            }
            "po" | "pod" | "pods" => ResourceKind::Pod,
            "svc" | "service" | "services" | "au" | "authority" | "authorities" => {
                ResourceKind::Service
            }
            "ns" | "namespace" | "namespaces" => ResourceKind::Namespace,
            _ => return None,
        })
    }

    /// The label naming this kind on a proxy's own series (Prometheus adds
    /// it to every series it scrapes).
    pub(crate) fn src_label(self) -> &'static str {
        match self {
            ResourceKind::Deployment => "deployment",
            ResourceKind::Pod => "pod",
            ResourceKind::Namespace => "namespace",
            ResourceKind::Service => "service",
        }
    }

    /// The label naming this kind on the outbound series that go to it.
    fn dst_label(self) -> &'static str {
        match self {
            ResourceKind::Deployment => "dst_deployment",
            ResourceKind::Pod => "dst_pod",
            ResourceKind::Namespace => "dst_namespace",
            ResourceKind::Service => "dst_service",
        }
    }

    /// As the table's first column shows it.
    pub fn short(self) -> &'static str {
        match self {
            ResourceKind::Deployment => "deploy",
            ResourceKind::Pod => "po",
            ResourceKind::Service => "svc",
            ResourceKind::Namespace => "ns",
        }
    }
}

// === impl ResourceRef ===

impl std::str::FromStr for ResourceRef {
    type Err = BadResource;

    fn from_str(s: &str) -> Result<Self, BadResource> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) if !n.is_empty() && !n.contains('/') => (k, Some(n.to_string())),
            Some(_) => return Err(BadResource(s.to_string())),
            None => (s, None),
        };
        let kind = ResourceKind::parse(kind).ok_or_else(|| BadResource(s.to_string()))?;
        Ok(ResourceRef { kind, name })
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.kind.short()),
            None => f.write_str(self.kind.short()),
        }
    }
}

// === stat ===

/// Where a row's numbers come from.
struct Plan {
    /// Matchers on the series.
    matchers: Vec<Matcher>,
    /// The labels that name a row: `[namespace label, name label]` (the
    /// namespace kind has only the first).
    key: Vec<&'static str>,
    /// The TCP connections gauge's matchers, when it applies.
    tcp: Option<Vec<Matcher>>,
}

/// Answers a [`StatRequest`].
pub async fn stat(
    eval: &dyn Evaluate,
    inv: &Inventory,
    req: &StatRequest,
) -> Result<StatResponse, EvalError> {
    let plan = plan(req);
    let mut by: Vec<String> = plan.key.iter().map(|s| s.to_string()).collect();
    let requests = {
        let mut by = by.clone();
        by.extend(["classification".to_string(), "tls".to_string()]);
        eval.eval(&Query::Increase {
            sel: selector("response_total", &plan.matchers),
            window: req.window,
            by,
        })
        .await?
    };
    let mut quantiles = Vec::with_capacity(QUANTILES.len());
    for q in QUANTILES {
        quantiles.push(
            eval.eval(&Query::Quantile {
                q,
                sel: selector("response_latency_ms_bucket", &plan.matchers),
                window: req.window,
                by: by.clone(),
            })
            .await?,
        );
    }
    let tcp = match &plan.tcp {
        Some(m) => Some(
            eval.eval(&Query::Sum {
                sel: selector("tcp_open_connections", m),
                by: std::mem::take(&mut by),
            })
            .await?,
        ),
        None => None,
    };

    let ns_key = plan.key[0];
    let name_key = plan.key.get(1).copied();
    let row_key = |s: &Sample| -> Option<(String, String)> {
        let ns = s.labels.get(ns_key)?.clone();
        let name = match name_key {
            Some(k) => s.labels.get(k)?.clone(),
            None => ns.clone(),
        };
        Some((ns, name))
    };
    let mut rows: BTreeMap<(String, String), StatRow> = BTreeMap::new();
    let kind = req.resource.kind;
    let blank = |ns: &str, name: &str| StatRow {
        namespace: ns.to_string(),
        kind,
        name: name.to_string(),
        meshed: None,
        requests: 0.0,
        success: None,
        rps: 0.0,
        latency_p50_ms: None,
        latency_p95_ms: None,
        latency_p99_ms: None,
        tcp_conn: None,
        mtls: None,
        stale: Vec::new(),
    };
    // Without --from/--to every resource gets a row, with or without
    // traffic, as Linkerd lists them.
    if req.from.is_none() && req.to.is_none() {
        for (ns, name) in inventory_rows(inv, req) {
            rows.insert((ns.clone(), name.clone()), blank(&ns, &name));
        }
    }
    let mut success: HashMap<(String, String), f64> = HashMap::new();
    let mut secured: HashMap<(String, String), f64> = HashMap::new();
    for s in &requests {
        let Some(k) = row_key(s) else { continue };
        let row = rows.entry(k.clone()).or_insert_with(|| blank(&k.0, &k.1));
        row.requests += s.value;
        if s.labels.get("classification").map(String::as_str) == Some("success") {
            *success.entry(k.clone()).or_default() += s.value;
        }
        if s.labels.get("tls").map(String::as_str) == Some("true") {
            *secured.entry(k).or_default() += s.value;
        }
    }
    let window_s = req.window.as_secs_f64().max(1e-9);
    for (k, row) in rows.iter_mut() {
        row.rps = row.requests / window_s;
        if row.requests > 0.0 {
            row.success = Some(success.get(k).copied().unwrap_or(0.0) / row.requests);
            row.mtls = Some(secured.get(k).copied().unwrap_or(0.0) / row.requests);
        }
    }
    for (i, samples) in quantiles.iter().enumerate() {
        for s in samples {
            let Some(k) = row_key(s) else { continue };
            if let Some(row) = rows.get_mut(&k) {
                let v = Some(s.value);
                match i {
                    0 => row.latency_p50_ms = v,
                    1 => row.latency_p95_ms = v,
                    _ => row.latency_p99_ms = v,
                }
            }
        }
    }
    if let Some(tcp) = &tcp {
        for row in rows.values_mut() {
            row.tcp_conn = Some(0.0);
        }
        for s in tcp {
            let Some(k) = row_key(s) else { continue };
            if let Some(row) = rows.get_mut(&k) {
                row.tcp_conn = Some(row.tcp_conn.unwrap_or(0.0) + s.value);
            }
        }
    }
    for row in rows.values_mut() {
        fill_pods(row, inv);
    }
    let rows: Vec<StatRow> = rows
        .into_values()
        .filter(|r| r.requests > 0.0 || (req.from.is_none() && req.to.is_none()))
        .collect();
    Ok(StatResponse {
        window: req.window,
        rows,
        stale: inv.stale.clone(),
    })
}

fn plan(req: &StatRequest) -> Plan {
    let kind = req.resource.kind;
    let mut m = Vec::new();
    let eq = |k: &str, v: &str| Matcher::Eq(k.to_string(), v.to_string());
    match (&req.from, &req.to) {
        // Rows are destinations; series are the source's outbound ones.
        (Some(from), _) => {
            m.push(eq("direction", "outbound"));
            if let Some(ns) = &req.namespace {
                m.push(eq("namespace", ns));
                if kind != ResourceKind::Namespace {
                    m.push(eq("dst_namespace", ns));
                }
            }
            if let Some(name) = &from.name {
                m.push(eq(from.kind.src_label(), name));
            }
            if let Some(name) = &req.resource.name {
                m.push(eq(kind.dst_label(), name));
            }
            if let Some(to) = &req.to
                && let Some(name) = &to.name
            {
                m.push(eq(to.kind.dst_label(), name));
            }
            let key = match kind {
                ResourceKind::Namespace => vec!["dst_namespace"],
                k => vec!["dst_namespace", k.dst_label()],
            };
            Plan {
                matchers: m,
                key,
                tcp: None,
            }
        }
        // Rows are sources; series are their outbound ones.
        (None, Some(to)) => {
            m.push(eq("direction", "outbound"));
            if let Some(ns) = &req.namespace {
                m.push(eq("namespace", ns));
                if to.kind != ResourceKind::Namespace {
                    m.push(eq("dst_namespace", ns));
                }
            }
            if let Some(name) = &to.name {
                m.push(eq(to.kind.dst_label(), name));
            }
            if let Some(name) = &req.resource.name {
                m.push(eq(kind.src_label(), name));
            }
            Plan {
                matchers: m,
                key: src_key(kind),
                tcp: None,
            }
        }
        (None, None) if kind == ResourceKind::Service => {
            m.push(eq("direction", "outbound"));
            if let Some(ns) = &req.namespace {
                m.push(eq("dst_namespace", ns));
            }
            if let Some(name) = &req.resource.name {
                m.push(eq("dst_service", name));
            }
            Plan {
                matchers: m,
                key: vec!["dst_namespace", "dst_service"],
                tcp: None,
            }
        }
        (None, None) => {
            m.push(eq("direction", "inbound"));
            if let Some(ns) = &req.namespace {
                m.push(eq("namespace", ns));
            }
            if let Some(name) = &req.resource.name {
                m.push(eq(kind.src_label(), name));
            }
            let mut tcp = m.clone();
            tcp.push(eq("peer", "src"));
            Plan {
                matchers: m,
                key: src_key(kind),
                tcp: Some(tcp),
            }
        }
    }
}

fn src_key(kind: ResourceKind) -> Vec<&'static str> {
    match kind {
        ResourceKind::Namespace => vec!["namespace"],
        k => vec!["namespace", k.src_label()],
    }
}

fn selector(metric: &str, matchers: &[Matcher]) -> Selector {
    Selector {
        metric: metric.to_string(),
        matchers: matchers.to_vec(),
    }
}

/// Every resource of the requested kind (and name) in scope.
fn inventory_rows(inv: &Inventory, req: &StatRequest) -> BTreeSet<(String, String)> {
    let in_ns = |ns: &str| req.namespace.as_deref().is_none_or(|n| n == ns);
    let named = |name: &str| req.resource.name.as_deref().is_none_or(|n| n == name);
    let mut out = BTreeSet::new();
    match req.resource.kind {
        ResourceKind::Service => {
            for (ns, name) in &inv.services {
                if in_ns(ns) && named(name) {
                    out.insert((ns.clone(), name.clone()));
                }
            }
        }
        kind => {
            for p in &inv.pods {
                let name = match kind {
                    ResourceKind::Deployment => &p.workload,
                    ResourceKind::Pod => &p.name,
                    _ => &p.namespace,
                };
                if in_ns(&p.namespace) && named(name) && !name.is_empty() {
                    out.insert((p.namespace.clone(), name.clone()));
                }
            }
        }
    }
    out
}

/// MESHED and the stale pods of a row.
fn fill_pods(row: &mut StatRow, inv: &Inventory) {
    if row.kind == ResourceKind::Service {
        return;
    }
    let mut meshed = 0;
    let mut total = 0;
    for p in &inv.pods {
        let member = p.namespace == row.namespace
            && match row.kind {
                ResourceKind::Deployment => p.workload == row.name,
                ResourceKind::Pod => p.name == row.name,
                _ => true,
            };
        if !member {
            continue;
        }
        total += 1;
        if p.meshed {
            meshed += 1;
        }
        if inv
            .stale
            .contains_key(&format!("{}/{}", p.namespace, p.name))
        {
            row.stale.push(p.name.clone());
        }
    }
    row.meshed = Some((meshed, total));
}

// === edges ===

/// Answers an [`EdgesRequest`] from the clients' outbound series.
pub async fn edges(
    eval: &dyn Evaluate,
    inv: &Inventory,
    req: &EdgesRequest,
) -> Result<EdgesResponse, EvalError> {
    let kind = match req.kind {
        ResourceKind::Pod => ResourceKind::Pod,
        _ => ResourceKind::Deployment,
    };
    let (src, dst) = (kind.src_label(), kind.dst_label());
    let mut matchers = vec![Matcher::Eq("direction".into(), "outbound".into())];
    if let Some(ns) = &req.namespace {
        matchers.push(Matcher::Eq("namespace".into(), ns.clone()));
    }
    let by = [
        "namespace",
        src,
        "dst_namespace",
        dst,
        "tls",
        "server_id",
        "no_tls_reason",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let samples = eval
        .eval(&Query::Increase {
            sel: selector("response_total", &matchers),
            window: req.window,
            by,
        })
        .await?;
    type Key = (String, String, String, String);
    struct Acc {
        requests: f64,
        secured: f64,
        server_id: Option<String>,
        no_tls_reason: Option<String>,
    }
    let mut acc: BTreeMap<Key, Acc> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.value > 0.0) {
        let get = |k: &str| s.labels.get(k).cloned();
        let (Some(sns), Some(sname), Some(dns), Some(dname)) =
            (get("namespace"), get(src), get("dst_namespace"), get(dst))
        else {
            continue;
        };
        let a = acc.entry((sns, sname, dns, dname)).or_insert(Acc {
            requests: 0.0,
            secured: 0.0,
            server_id: None,
            no_tls_reason: None,
        });
        a.requests += s.value;
        if get("tls").as_deref() == Some("true") {
            a.secured += s.value;
            if a.server_id.is_none() {
                a.server_id = get("server_id");
            }
        } else if a.no_tls_reason.is_none() {
            a.no_tls_reason = get("no_tls_reason").or_else(|| get("tls"));
        }
    }
    let client_id = |ns: &str, name: &str| {
        inv.pods
            .iter()
            .find(|p| {
                p.namespace == ns
                    && match kind {
                        ResourceKind::Pod => p.name == name,
                        _ => p.workload == name,
                    }
            })
            .and_then(|p| p.identity.clone())
    };
    let edges = acc
        .into_iter()
        .map(|((sns, sname, dns, dname), a)| EdgeRow {
            client_id: client_id(&sns, &sname),
            src_namespace: sns,
            src: sname,
            dst_namespace: dns,
            dst: dname,
            server_id: a.server_id,
            secured: a.secured >= a.requests,
            no_tls_reason: if a.secured >= a.requests {
                None
            } else {
                a.no_tls_reason
            },
            requests: a.requests,
        })
        .collect();
    Ok(EdgesResponse {
        window: req.window,
        edges,
        stale: inv.stale.clone(),
    })
}

/// Durations as seconds in JSON.
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
