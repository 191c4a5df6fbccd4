//! Parsers for what the load generators print: `oha`'s JSON report and the
//! text summaries of `wrk` and `h2load`. Each keeps the error and non-2xx
//! counts so that a run with failures shows in the table.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A fixed-rate measurement, from `oha`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FixedRate {
    /// Requests that got a response or failed.
    pub requests: u64,
    /// Responses whose status was not 2xx.
    pub non_2xx: u64,
    /// Requests that got no response (connection errors, timeouts).
    pub errors: u64,
    /// Error messages and how often each occurred.
    pub error_kinds: BTreeMap<String, u64>,
    /// Requests oha gave up on because the measurement ended: not errors
    /// (oha leaves them out of its success rate too), and not counted in
    /// `requests`.
    pub aborted_at_deadline: u64,
    /// Latency percentiles and maximum, in milliseconds; `None` when no
    /// request completed.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Requests per second over the measurement.
    pub achieved_rps: f64,
}

/// A saturation measurement, from `wrk` or `h2load`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Saturation {
    /// Requests completed.
    pub requests: u64,
    /// Requests completed per second.
    pub rps: f64,
    /// Responses with a status other than 2xx (for `wrk`, other than 2xx
    /// and 3xx, which is what it counts).
    pub non_2xx: u64,
    /// Requests that failed without a response (socket errors, timeouts).
    pub errors: u64,
}

/// The parts of `oha --output-format json` used here. Times are seconds;
/// statistics of an empty run are NaN, which JSON carries as `null`.
#[derive(Deserialize)]
struct OhaReport {
    summary: OhaSummary,
    #[serde(rename = "latencyPercentiles")]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(rename = "statusCodeDistribution", default)]
    status_codes: BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution", default)]
    errors: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct OhaSummary {
    /// Length of the run, in seconds.
    total: f64,
    /// The slowest request, in seconds.
    slowest: Option<f64>,
}

/// How oha reports requests cut off by the end of `-z DURATION`.
const OHA_DEADLINE: &str = "aborted due to deadline";

/// Parses `oha --output-format json`.
pub fn oha_json(text: &str) -> anyhow::Result<FixedRate> {
    // Anything oha prints before the report (it prints nothing today) is skipped.
    let start = text.find('{').context("no JSON object in oha's output")?;
    let report: OhaReport =
        serde_json::from_str(&text[start..]).context("oha's JSON report is not as expected")?;
    let responses: u64 = report.status_codes.values().sum();
    let non_2xx = report
        .status_codes
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let mut error_kinds = report.errors;
    let aborted_at_deadline = error_kinds.remove(OHA_DEADLINE).unwrap_or(0);
    let errors: u64 = error_kinds.values().sum();
    let requests = responses + errors;
    let ms = |secs: Option<f64>| secs.filter(|s| s.is_finite()).map(|s| s * 1000.0);
    let percentile = |key: &str| ms(report.latency_percentiles.get(key).copied().flatten());
    let achieved_rps = if report.summary.total > 0.0 {
        requests as f64 / report.summary.total
    } else {
        0.0
    };
    Ok(FixedRate {
        requests,
        non_2xx,
        errors,
        error_kinds,
        aborted_at_deadline,
        p50_ms: percentile("p50"),
        p99_ms: percentile("p99"),
        max_ms: ms(report.summary.slowest),
        achieved_rps,
    })
}

/// Parses `wrk`'s summary:
///
/// ```text
///   104612 requests in 3.00s, 11.37MB read
///   Socket errors: connect 0, read 12, write 0, timeout 3
///   Non-2xx or 3xx responses: 45
/// Requests/sec:  34841.70
/// ```
///
/// The two middle lines appear only when their counts are not zero.
pub fn wrk(text: &str) -> anyhow::Result<Saturation> {
    let mut requests = None;
    let mut rps = None;
    let mut non_2xx = 0;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            requests = Some(number(n, line)?);
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(
                v.trim()
                    .parse::<f64>()
                    .with_context(|| format!("in {line:?}"))?,
            );
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = number(v, line)?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 12, write 0, timeout 3"
            for part in v.split(',') {
                let count = part.split_whitespace().nth(1).unwrap_or("");
                errors += number(count, line)?;
            }
        }
    }
    let (Some(requests), Some(rps)) = (requests, rps) else {
        bail!("no \"requests in\" and \"Requests/sec:\" lines in wrk's output");
    };
    if requests == 0 {
        bail!("wrk completed no request");
    }
    Ok(Saturation {
        requests,
        rps,
        non_2xx,
        errors,
    })
}

/// Parses `h2load`'s summary:
///
/// ```text
/// finished in 3.00s, 34460.33 req/s, 1.38MB/s
/// requests: 103381 total, 104381 started, 103381 done, 103381 succeeded, 0 failed, 0 errored, 0 timeout
/// status codes: 103381 2xx, 0 3xx, 0 4xx, 0 5xx
/// ```
///
/// "errored" counts requests that failed without an HTTP status, including
/// timeouts; "failed" also counts 4xx and 5xx responses.
pub fn h2load(text: &str) -> anyhow::Result<Saturation> {
    let mut rps = None;
    let mut done = None;
    let mut errors = None;
    let mut non_2xx = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let v = rest
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" req/s"));
            rps = Some(v.map_or(Ok(0.0), |v| {
                v.parse::<f64>().with_context(|| format!("in {line:?}"))
            })?);
        } else if let Some(rest) = line.strip_prefix("requests:") {
            let counts = labelled_counts(rest, line)?;
            done = counts.get("done").copied();
            errors = counts.get("errored").copied();
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            let counts = labelled_counts(rest, line)?;
            non_2xx = Some(
                ["3xx", "4xx", "5xx"]
                    .iter()
                    .filter_map(|k| counts.get(k))
                    .sum(),
            );
        }
    }
    let (Some(rps), Some(requests), Some(errors), Some(non_2xx)) = (rps, done, errors, non_2xx)
    else {
        bail!("no \"finished in\", \"requests:\" and \"status codes:\" lines in h2load's output");
    };
    // h2load reports a server it cannot connect to as zero requests and
    // zero errors (the reason goes to stderr).
    if requests == 0 {
        bail!("h2load completed no request");
    }
    Ok(Saturation {
        requests,
        rps,
        non_2xx,
        errors,
    })
}

/// `"103381 total, 0 failed"` -> `{"total": 103381, "failed": 0}`.
fn labelled_counts<'a>(text: &'a str, line: &str) -> anyhow::Result<BTreeMap<&'a str, u64>> {
    text.split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let n = number(words.next().unwrap_or(""), line)?;
            Ok((words.next().unwrap_or(""), n))
        })
        .collect()
}

fn number(text: &str, line: &str) -> anyhow::Result<u64> {
    text.trim()
        .parse()
        .with_context(|| format!("{:?} is not a count, in {line:?}", text.trim()))
}
