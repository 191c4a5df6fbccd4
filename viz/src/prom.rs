//! A client of a real Prometheus server's query API, for clusters that
//! already run one: the same queries, rendered as PromQL.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::fetch::{self, HttpError};
use crate::query::{EvalError, Evaluate, Query, Sample};

/// Prometheus answers an instant query in milliseconds; ten seconds means
/// it is overloaded or gone, and the stat call should say so.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An instant vector of the golden metrics is a few KiB per workload; 64
/// MiB only stops a runaway answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// How much of a non-JSON error body an error message quotes.
const MAX_QUOTED_BYTES: usize = 512;

/// A Prometheus server at an `http://host:port[/prefix]` URL.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    /// As given, without a trailing `/`: what errors name.
    url: String,
    /// `host:port` to connect to and send as `Host`.
    authority: String,
    /// The path prefix (`""` or `/prometheus`), without a trailing `/`.
    prefix: String,
    timeout: Duration,
}

/// The envelope of every API answer.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[<seconds>, "<value>"]`
    value: (f64, String),
}

#[derive(Debug, Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets", default)]
    active_targets: Vec<ActiveTarget>,
}

#[derive(Debug, Deserialize)]
struct ActiveTarget {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    health: String,
    #[serde(rename = "lastError", default)]
    last_error: String,
}

// === impl PrometheusClient ===

impl PrometheusClient {
    /// A client for `url` (`http://host:port` with an optional path
    /// prefix; HTTPS is not supported). Does not connect.
    pub fn new(url: &str) -> Result<PrometheusClient, EvalError> {
        let invalid = |reason: &str| EvalError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        let scheme_len = "http://".len();
        let rest = match trimmed.get(..scheme_len) {
            Some(s) if s.eq_ignore_ascii_case("http://") => &trimmed[scheme_len..],
            _ if trimmed.to_ascii_lowercase().starts_with("https://") => {
                return Err(invalid("only http:// is supported"));
            }
            _ => return Err(invalid("it must start with http://")),
        };
        if rest.contains(['?', '#']) {
            return Err(invalid("a query or fragment cannot be part of it"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid("credentials are not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(|r| invalid(&r))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let prefix = path.trim_end_matches('/').to_string();
        Ok(PrometheusClient {
            url: format!("http://{authority}{prefix}"),
            authority,
            prefix,
            timeout: TIMEOUT,
        })
    }

    /// Overrides the 10 s per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> PrometheusClient {
        self.timeout = timeout;
        self
    }

    /// The server's URL, normalized (`http://host:port[/prefix]`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// That the server answers, and its version (from
    /// `/api/v1/status/buildinfo`).
    pub async fn check(&self) -> Result<String, EvalError> {
        let data = self.get("/api/v1/status/buildinfo").await?;
        data.get("version")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.protocol("the build info has no version".into()))
    }

    /// The targets Prometheus failed to scrape last time: `namespace/pod`
    /// (or the `instance` label when a target lacks those) -> its error,
    /// from `/api/v1/targets`.
    pub async fn down_targets(&self) -> Result<BTreeMap<String, String>, EvalError> {
        let data = self.get("/api/v1/targets?state=active").await?;
        let data: TargetsData = serde_json::from_value(data)
            .map_err(|e| self.protocol(format!("unexpected targets answer: {e}")))?;
        Ok(data
            .active_targets
            .into_iter()
            .filter(|t| t.health == "down")
            .filter_map(|t| {
                let l = &t.labels;
                let name = match (l.get("namespace"), l.get("pod")) {
                    (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
                    _ => l.get("instance")?.clone(),
                };
                Some((name, t.last_error))
            })
            .collect())
    }

    /// An instant query; every label of every result, NaN values included.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, EvalError> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let data = self.get(&path).await?;
        let data: QueryData = serde_json::from_value(data)
            .map_err(|e| self.protocol(format!("unexpected query answer: {e}")))?;
        if data.result_type != "vector" {
            return Err(self.protocol(format!(
                "the query answered a {}, not a vector",
                data.result_type
            )));
        }
        let result: Vec<VectorSample> = serde_json::from_value(data.result)
            .map_err(|e| self.protocol(format!("unexpected vector: {e}")))?;
        result
            .into_iter()
            .map(|s| {
                let value = parse_value(&s.value.1).ok_or_else(|| {
                    self.protocol(format!("invalid sample value {:?}", s.value.1))
                })?;
                Ok(Sample {
                    labels: s.metric,
                    value,
                })
            })
            .collect()
    }

    /// `GET <prefix><path>`: the `data` of a successful answer.
    async fn get(&self, path: &str) -> Result<Value, EvalError> {
        let target = format!("{}{path}", self.prefix);
        let rsp = fetch::get(
            &self.authority,
            &target,
            "application/json",
            self.timeout,
            MAX_ANSWER_BYTES,
        )
        .await
        .map_err(|e| match e {
            HttpError::Connect(e) => EvalError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            },
            HttpError::Timeout(timeout) => EvalError::Timeout {
                url: self.url.clone(),
                timeout,
            },
            e => self.protocol(e.to_string()),
        })?;
        let answer = serde_json::from_slice::<ApiAnswer>(&rsp.body);
        if !rsp.status.is_success() {
            let message = match answer {
                Ok(ApiAnswer { error: Some(e), .. }) => e,
                _ => quote(&rsp.body),
            };
            return Err(EvalError::Status {
                url: self.url.clone(),
                status: rsp.status.as_u16(),
                message,
            });
        }
        let answer = answer.map_err(|e| {
            self.protocol(format!(
                "the answer is not Prometheus JSON ({e}): {}",
                quote(&rsp.body)
            ))
        })?;
        if answer.status != "success" {
            return Err(self.protocol(
                answer
                    .error
                    .unwrap_or_else(|| format!("status {:?}", answer.status)),
            ));
        }
        Ok(answer.data)
    }

    fn protocol(&self, reason: String) -> EvalError {
        EvalError::Protocol {
            url: self.url.clone(),
            reason,
        }
    }
}

impl Evaluate for PrometheusClient {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        Box::pin(async move {
            let by = q.by();
            let mut out: Vec<Sample> = self
                .query(&q.to_promql())
                .await?
                .into_iter()
                .filter(|s| !s.value.is_nan())
                .map(|mut s| {
                    s.labels.retain(|k, _| by.contains(k));
                    s
                })
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(out)
        })
    }
}

/// [`PrometheusClient::down_targets`], for callers holding a client.
pub async fn down_targets(prom: &PrometheusClient) -> Result<BTreeMap<String, String>, EvalError> {
    prom.down_targets().await
}

/// `host[:port]` or `[v6][:port]`; the port defaults to 80.
fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let bracketed = authority.starts_with('[');
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address without its closing ']'")?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let valid = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') || (bracketed && c == ':')
    };
    if !host.chars().all(valid) {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
    };
    Ok((host, port))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Prometheus's value spellings: Go floats, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// The start of a body, for an error message.
fn quote(body: &[u8]) -> String {
    let end = body.len().min(MAX_QUOTED_BYTES);
    let mut s = String::from_utf8_lossy(&body[..end]).trim().to_string();
    if body.len() > end {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests;
