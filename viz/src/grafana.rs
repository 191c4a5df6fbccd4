//! Grafana dashboards for the proxies' metrics, as Linkerd's viz extension
//! ships its own: top line, namespace, deployment, pod, authority,
//! ServiceProfile route and the proxies' health, each a Grafana dashboard
//! JSON model under `viz/grafana/`, embedded here.
//!
//! ```text
//!  proxies ◄─scrape── Prometheus ◄─PromQL── Grafana ◄── viz/grafana/*.json
//!  (`strand viz prometheus-config`)          (`strand viz grafana --out DIR`)
//! ```
//!
//! The panels read the series as Prometheus scrapes them with the
//! configuration `strand viz prometheus-config` prints (every series
//! carries `namespace`, `pod` and `deployment`), and compute what
//! `strand viz stat` computes in the same way: success is the share of
//! `response_total` classified `success`, the request rate is the rate of
//! `response_total`, and percentiles are `histogram_quantile` over `irate`
//! of `response_latency_ms_bucket`. The route dashboard computes what
//! `strand viz routes` does from the `route_*` families, which the proxies
//! record on the client's side (`direction="outbound"`, per `dst` and
//! `rt_route`).
//!
//! [`queries`] lists every panel's PromQL, and [`substitute`] fills in the
//! template variables so that a query can be sent to a real Prometheus.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::query::format_duration;

/// The dashboards, as files: name and Grafana's JSON model.
const FILES: [(&str, &str); 7] = [
    ("top-line.json", include_str!("../grafana/top-line.json")),
    ("namespace.json", include_str!("../grafana/namespace.json")),
    (
        "deployment.json",
        include_str!("../grafana/deployment.json"),
    ),
    ("pod.json", include_str!("../grafana/pod.json")),
    ("authority.json", include_str!("../grafana/authority.json")),
    ("route.json", include_str!("../grafana/route.json")),
    ("health.json", include_str!("../grafana/health.json")),
];

/// `$__rate_interval` unless told otherwise: the default window of
/// `strand viz stat` (`-t 1m`), so a panel and the table agree.
const DEFAULT_RATE_INTERVAL: Duration = Duration::from_secs(60);
/// `$__interval` unless told otherwise: one step of a 15-minute graph
/// about 60 points wide.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// `$__range` unless told otherwise: the dashboards' default time range
/// (`now-15m` to `now`).
const DEFAULT_RANGE: Duration = Duration::from_secs(15 * 60);

/// A dashboard strand ships.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// Its file name, under `viz/grafana/` and in what `strand viz grafana`
    /// writes.
    pub file_name: &'static str,
    /// Grafana's `uid`: `strand-top-line`, `strand-deployment`, ...
    pub uid: String,
    /// `strand / Top line`, ...
    pub title: String,
    /// The dashboard JSON model, as shipped.
    pub json: &'static str,
}

/// One query of one panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanelQuery {
    /// The dashboard's `uid`.
    pub dashboard_uid: String,
    /// The dashboard's title.
    pub dashboard: String,
    /// The panel's `id`, unique within its dashboard (titles need not be:
    /// a stat and a graph may both say "Success rate").
    pub panel_id: u64,
    /// The panel's title, as written (it may hold `$variables`).
    pub panel: String,
    /// The target's `refId` (`A`, `B`, ...).
    pub ref_id: String,
    /// The PromQL, with its template variables unless substituted.
    pub expr: String,
}

/// Values for the template variables of a query: the dashboards' own
/// (`namespace`, `deployment`, `pod`, `authority`, `dst`, `rt_route`) and
/// Grafana's built-in ones (`__rate_interval`, `__interval`, `__range` and
/// their `_ms`/`_s` forms), which have defaults.
#[derive(Clone, Debug)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

/// A query whose variables could not be filled in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubstituteError {
    /// A variable without a value.
    #[error("no value for ${name} in {expr:?}")]
    Unknown { name: String, expr: String },
    /// A `$` that starts no variable, or a `${...}` with a format or
    /// without its `}`: strand's dashboards use only `$name` and
    /// `${name}`.
    #[error("unsupported variable syntax at byte {at} of {expr:?}")]
    Syntax { at: usize, expr: String },
}

/// A piece of a query: text, or a variable's name.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

// === impl Dashboard ===

impl Dashboard {
    /// The JSON model, parsed.
    pub fn model(&self) -> Value {
        parse(self.json)
    }

    /// Every query of every panel, rows' nested panels included, in the
    /// order they appear, with their template variables.
    pub fn queries(&self) -> Vec<PanelQuery> {
        let model = self.model();
        let mut panels = Vec::new();
        if let Some(top) = model.get("panels").and_then(Value::as_array) {
            collect_panels(top, &mut panels);
        }
        let mut out = Vec::new();
        for p in panels {
            let Some(targets) = p.get("targets").and_then(Value::as_array) else {
                continue;
            };
            for t in targets {
                let Some(expr) = t.get("expr").and_then(Value::as_str) else {
                    continue;
                };
                out.push(PanelQuery {
                    dashboard_uid: self.uid.clone(),
                    dashboard: self.title.clone(),
                    panel_id: p.get("id").and_then(Value::as_u64).unwrap_or(0),
                    panel: str_field(p, "title"),
                    ref_id: str_field(t, "refId"),
                    expr: expr.to_string(),
                });
            }
        }
        out
    }

    /// The names of the dashboard's template variables (`templating.list`).
    pub fn variables(&self) -> Vec<String> {
        self.model()
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(|v| str_field(v, "name")).collect())
            .unwrap_or_default()
    }
}

// === impl Vars ===

impl Default for Vars {
    fn default() -> Self {
        Vars {
            values: BTreeMap::new(),
        }
        .rate_interval(DEFAULT_RATE_INTERVAL)
        .interval(DEFAULT_INTERVAL)
        .range(DEFAULT_RANGE)
    }
}

impl Vars {
    /// Grafana's built-in variables at their defaults and nothing else.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a variable: `set("namespace", "emojivoto")` fills in both
    /// `$namespace` and `${namespace}`.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// `$__rate_interval` (and `$__rate_interval_ms`); default 1m.
    pub fn rate_interval(self, d: Duration) -> Self {
        self.set("__rate_interval", format_duration(d))
            .set("__rate_interval_ms", d.as_millis().to_string())
    }

    /// `$__interval` (and `$__interval_ms`); default 15s.
    pub fn interval(self, d: Duration) -> Self {
        self.set("__interval", format_duration(d))
            .set("__interval_ms", d.as_millis().to_string())
    }

    /// `$__range` (and `$__range_s`, `$__range_ms`); default 15m.
    pub fn range(self, d: Duration) -> Self {
        self.set("__range", format_duration(d))
            .set("__range_s", d.as_secs().to_string())
            .set("__range_ms", d.as_millis().to_string())
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

// === functions ===

/// Every dashboard strand ships.
pub fn dashboards() -> Vec<Dashboard> {
    FILES
        .iter()
        .map(|(file_name, json)| {
            let model = parse(json);
            Dashboard {
                file_name,
                uid: str_field(&model, "uid"),
                title: str_field(&model, "title"),
                json,
            }
        })
        .collect()
}

/// Every query of every panel of every dashboard, with its template
/// variables.
pub fn queries() -> Vec<PanelQuery> {
    dashboards().iter().flat_map(Dashboard::queries).collect()
}

/// Every query of every panel of every dashboard, its variables filled in
/// from `vars`: PromQL to send to a Prometheus that scrapes the proxies.
/// Fails on the first query that uses a variable `vars` lacks.
pub fn substituted_queries(vars: &Vars) -> Result<Vec<PanelQuery>, SubstituteError> {
    queries()
        .into_iter()
        .map(|mut q| {
            q.expr = substitute(&q.expr, vars)?;
            Ok(q)
        })
        .collect()
}

/// Fills in `$name` and `${name}` from `vars`, as Grafana does for a
/// single-valued variable. Values are inserted as they are: a value
/// used in a regex matcher (`=~`) must already be a regex.
pub fn substitute(expr: &str, vars: &Vars) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(expr.len());
    for piece in pieces(expr)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(SubstituteError::Unknown {
                        name: name.to_string(),
                        expr: expr.to_string(),
                    });
                }
            },
        }
    }
    Ok(out)
}

/// The names of the variables `expr` uses, in order, repeats included.
pub fn variables_in(expr: &str) -> Result<Vec<&str>, SubstituteError> {
    Ok(pieces(expr)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Splits `expr` at its `$name` and `${name}` references.
fn pieces(expr: &str) -> Result<Vec<Piece<'_>>, SubstituteError> {
    let syntax = |at: usize| SubstituteError::Syntax {
        at,
        expr: expr.to_string(),
    };
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if start < i {
            out.push(Piece::Text(&expr[start..i]));
        }
        let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
            let close = expr[i + 2..]
                .find('}')
                .map(|n| i + 2 + n)
                .ok_or_else(|| syntax(i))?;
            (&expr[i + 2..close], close + 1)
        } else {
            let len = bytes[i + 1..].iter().take_while(|b| is_name(**b)).count();
            (&expr[i + 1..i + 1 + len], i + 1 + len)
        };
        if name.is_empty() || !name.bytes().all(is_name) {
            return Err(syntax(i));
        }
        out.push(Piece::Var(name));
        start = end;
        i = end;
    }
    if start < expr.len() {
        out.push(Piece::Text(&expr[start..]));
    }
    Ok(out)
}

/// Every panel, rows' nested ones after their row.
fn collect_panels<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
    for p in panels {
        out.push(p);
        if let Some(nested) = p.get("panels").and_then(Value::as_array) {
            collect_panels(nested, out);
        }
    }
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("the embedded dashboards are valid JSON (tests parse each)")
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests;
