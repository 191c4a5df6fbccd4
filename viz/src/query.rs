//! The queries the stat code asks, and their PromQL.
//!
//! Only three shapes are needed to compute Linkerd's golden metrics (success
//! rate, request rate, latency percentiles, open connections), so rather
//! than a PromQL engine the embedded store implements exactly these, and
//! [`Query::to_promql`] renders them for a real Prometheus. Both sides of
//! [`Evaluate`] must then agree on the numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// A label matcher. A label a series lacks has the value `""`, as in
/// Prometheus.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// `label="value"`
    Eq(String, String),
    /// `label!="value"`
    Ne(String, String),
    /// `label=~"a|b|c"`: the value is one of the `|`-separated literal names
    /// (not a regular expression: [`Query::to_promql`] escapes each name's
    /// regex metacharacters, so `web.default` matches only itself).
    Re(String, String),
    /// `label=~"prefix.*"`: the value starts with the literal prefix (the
    /// prefix's regex metacharacters escaped). Route metrics name the
    /// service called by its authority, `<svc>.<ns>.svc.<domain>:<port>`,
    /// whose domain and port a question about `svc/<svc>` does not know.
    Prefix(String, String),
}

/// A metric and the matchers its series must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The metric name, e.g. `response_total`.
    pub metric: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
}

/// The queries the metrics API evaluates.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// `sum by (by) (increase(sel[window]))`
    Increase {
        /// The counter's series.
        sel: Selector,
        /// The range, ending at the evaluation time.
        window: Duration,
        /// The labels to group by (none: one total).
        by: Vec<String>,
    },
    /// `histogram_quantile(q, sum by (le, by) (irate(sel[window])))`; `sel.metric`
    /// is the `*_bucket` series.
    Quantile {
        /// The quantile, from 0 to 1 (`0.95` for p95).
        q: f64,
        /// The `*_bucket` series.
        sel: Selector,
        /// The range the last two samples of each bucket are taken from.
        window: Duration,
        /// The labels to group by, besides `le`.
        by: Vec<String>,
    },
    /// `sum by (by) (sel)`: the latest value of a gauge.
    Sum {
        /// The gauge's series.
        sel: Selector,
        /// The labels to group by (none: one total).
        by: Vec<String>,
    },
}

/// One result: `labels` hold exactly those of the query's `by` labels the
/// group has (a missing label is an absent key, as Prometheus does).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The group's `by` labels that it has.
    pub labels: BTreeMap<String, String>,
    /// Never NaN.
    pub value: f64,
}

/// Something that answers [`Query`]s: the embedded store or a Prometheus
/// server. Results whose value is NaN are dropped.
pub trait Evaluate: Send + Sync {
    /// Evaluates `q` now; results sorted by labels.
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>>;
}

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// [`crate::PrometheusClient::new`] was given a URL it cannot use.
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No TCP connection (refused, unreachable, unresolvable).
    #[error("cannot connect to Prometheus at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// No full answer within the client's timeout.
    #[error("Prometheus at {url} did not answer within {}s", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    /// A non-2xx answer; `message` is the `error` of the body when it has
    /// one, else the body's text.
    #[error("Prometheus at {url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// An answer that is not what Prometheus's API returns, or a
    /// connection that broke mid-answer.
    #[error("Prometheus at {url}: {reason}")]
    Protocol { url: String, reason: String },
}

/// Go's `regexp.QuoteMeta` set: what must be escaped for a name to match
/// only itself in RE2.
const REGEX_META: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

// === impl Matcher ===

impl Matcher {
    /// `label=~"a|b|c"` for the given literal names. With no names it
    /// matches only series without the label, as `label=~""` does.
    pub fn one_of<I, S>(label: impl Into<String>, names: I) -> Matcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
        Matcher::Re(label.into(), names.join("|"))
    }

    /// The label this matcher tests.
    pub fn label(&self) -> &str {
        match self {
            Matcher::Eq(l, _) | Matcher::Ne(l, _) | Matcher::Re(l, _) | Matcher::Prefix(l, _) => l,
        }
    }

    /// Whether a series whose label has `value` (`""` when absent) passes.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Eq(_, v) => value == v,
            Matcher::Ne(_, v) => value != v,
            Matcher::Re(_, alts) => alts.split('|').any(|a| a == value),
            Matcher::Prefix(_, p) => value.starts_with(p.as_str()),
        }
    }

    fn write_promql(&self, out: &mut String) {
        let (label, op, value) = match self {
            Matcher::Eq(l, v) => (l, "=", v.clone()),
            Matcher::Ne(l, v) => (l, "!=", v.clone()),
            Matcher::Re(l, alts) => {
                let escaped: Vec<String> = alts.split('|').map(quote_meta).collect();
                (l, "=~", escaped.join("|"))
            }
            Matcher::Prefix(l, p) => (l, "=~", format!("{}.*", quote_meta(p))),
        };
        out.push_str(label);
        out.push_str(op);
        write_string(out, &value);
    }
}

// === impl Selector ===

impl Selector {
    /// A selector of every series of `metric`.
    pub fn new(metric: impl Into<String>) -> Selector {
        Selector {
            metric: metric.into(),
            matchers: Vec::new(),
        }
    }

    /// Adds a matcher.
    pub fn with(mut self, m: Matcher) -> Selector {
        self.matchers.push(m);
        self
    }

    /// Whether a series with these labels passes every matcher.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(label(m.label()).unwrap_or("")))
    }

    fn write_promql(&self, out: &mut String) {
        out.push_str(&self.metric);
        if self.matchers.is_empty() {
            return;
        }
        out.push('{');
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            m.write_promql(out);
        }
        out.push('}');
    }
}

// === impl Query ===

impl Query {
    /// The selector the query reads.
    pub fn selector(&self) -> &Selector {
        match self {
            Query::Increase { sel, .. } | Query::Quantile { sel, .. } | Query::Sum { sel, .. } => {
                sel
            }
        }
    }

    /// The labels results are grouped by.
    pub fn by(&self) -> &[String] {
        match self {
            Query::Increase { by, .. } | Query::Quantile { by, .. } | Query::Sum { by, .. } => by,
        }
    }

    /// The query in PromQL, with label values escaped and the window in
    /// its largest whole unit (`90s`, `1m`, `5m`, `1h`, `1500ms`).
    pub fn to_promql(&self) -> String {
        let mut out = String::with_capacity(128);
        match self {
            Query::Increase { sel, window, by } => {
                write_sum_by(&mut out, by);
                out.push_str("(increase(");
                sel.write_promql(&mut out);
                let _ = write!(out, "[{}]))", format_duration(*window));
            }
            Query::Quantile { q, sel, window, by } => {
                let _ = write!(out, "histogram_quantile({q}, ");
                let mut le_by = Vec::with_capacity(by.len() + 1);
                le_by.push("le".to_string());
                le_by.extend(by.iter().filter(|l| *l != "le").cloned());
                write_sum_by(&mut out, &le_by);
                out.push_str("(irate(");
                sel.write_promql(&mut out);
                let _ = write!(out, "[{}])))", format_duration(*window));
            }
            Query::Sum { sel, by } => {
                write_sum_by(&mut out, by);
                out.push('(');
                sel.write_promql(&mut out);
                out.push(')');
            }
        }
        out
    }
}

// === impl Evaluate ===

impl<T: Evaluate + ?Sized> Evaluate for Arc<T> {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        (**self).eval(q)
    }
}

/// `sum by (a, b) ` or, with no labels, `sum`.
fn write_sum_by(out: &mut String, by: &[String]) {
    if by.is_empty() {
        out.push_str("sum");
        return;
    }
    out.push_str("sum by (");
    out.push_str(&by.join(", "));
    out.push_str(") ");
}

/// A PromQL double-quoted string literal.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn quote_meta(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if REGEX_META.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A PromQL duration in its largest whole unit: `5m`, `90s`, `1500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel() -> Selector {
        Selector::new("response_total")
            .with(Matcher::Eq("direction".into(), "inbound".into()))
            .with(Matcher::one_of("namespace", ["emojivoto", "web.app"]))
            .with(Matcher::Ne("classification".into(), "fail\"ure\\".into()))
    }

    #[test]
    fn renders_increase() {
        let q = Query::Increase {
            sel: sel(),
            window: Duration::from_secs(60),
            by: vec!["deployment".into(), "classification".into()],
        };
        assert_eq!(
            q.to_promql(),
            r#"sum by (deployment, classification) (increase(response_total{direction="inbound", namespace=~"emojivoto|web\\.app", classification!="fail\"ure\\"}[1m]))"#
        );
    }

    #[test]
    fn renders_quantile() {
        let q = Query::Quantile {
            q: 0.95,
            sel: Selector::new("response_latency_ms_bucket"),
            window: Duration::from_secs(30),
            by: vec!["deployment".into()],
        };
        assert_eq!(
            q.to_promql(),
            "histogram_quantile(0.95, sum by (le, deployment) (irate(response_latency_ms_bucket[30s])))"
        );
        let q = Query::Quantile {
            q: 0.5,
            sel: Selector::new("response_latency_ms_bucket"),
            window: Duration::from_secs(300),
            by: vec![],
        };
        assert_eq!(
            q.to_promql(),
            "histogram_quantile(0.5, sum by (le) (irate(response_latency_ms_bucket[5m])))"
        );
    }

    #[test]
    fn renders_prefix() {
        let q = Query::Sum {
            sel: Selector::new("route_response_total").with(Matcher::Prefix(
                "dst".into(),
                "emoji-svc.emojivoto.svc.".into(),
            )),
            by: vec![],
        };
        assert_eq!(
            q.to_promql(),
            r#"sum(route_response_total{dst=~"emoji-svc\\.emojivoto\\.svc\\..*"})"#
        );
        let m = Matcher::Prefix("dst".into(), "emoji-svc.emojivoto.svc.".into());
        assert!(m.matches("emoji-svc.emojivoto.svc.cluster.local:8080"));
        assert!(!m.matches("emoji-svc.emojivoto2.svc.cluster.local:8080"));
        assert!(!m.matches("xemoji-svc.emojivoto.svc.cluster.local:8080"));
        assert!(!m.matches(""));
    }

    #[test]
    fn renders_sum() {
        let q = Query::Sum {
            sel: Selector::new("tcp_open_connections")
                .with(Matcher::Eq("authority".into(), "a\nb".into())),
            by: vec![],
        };
        assert_eq!(
            q.to_promql(),
            r#"sum(tcp_open_connections{authority="a\nb"})"#
        );
    }

    #[test]
    fn durations() {
        let f = |ms| format_duration(Duration::from_millis(ms));
        assert_eq!(f(60_000), "1m");
        assert_eq!(f(90_000), "90s");
        assert_eq!(f(300_000), "5m");
        assert_eq!(f(7_200_000), "2h");
        assert_eq!(f(1_500), "1500ms");
        assert_eq!(f(10_000), "10s");
        assert_eq!(f(0), "0ms");
    }

    #[test]
    fn matchers_treat_absent_as_empty() {
        let labels = [("direction", "inbound"), ("namespace", "web.app")];
        let get = |k: &str| labels.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert!(sel().matches(get));
        assert!(!Matcher::Eq("pod".into(), "x".into()).matches(""));
        assert!(Matcher::Eq("pod".into(), "".into()).matches(""));
        assert!(!Matcher::one_of("namespace", ["web"]).matches("web.app"));
        assert!(Matcher::one_of("namespace", ["a", "web.app"]).matches("web.app"));
    }
}
