//! Evaluation with Prometheus's semantics: which samples a query sees
//! (left-open windows, staleness, the lookback) and how they are grouped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::{Family, Inner, Series, Store, Target, duration_ms, to_ms};
use crate::functions::{self, Bucket, Point};
use crate::query::{EvalError, Evaluate, Query, Sample, Selector};

/// Prometheus's default lookback delta: an instant query ignores a series
/// whose latest sample is older than this.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The labels a result is grouped by, in the query's `by` order.
type GroupKey = Vec<Option<Arc<str>>>;

// === impl Store ===

impl Store {
    /// Evaluates `q` as Prometheus would at `now`. Results are sorted by
    /// labels; NaN results are dropped.
    pub fn evaluate_at(&self, q: &Query, now: SystemTime) -> Vec<Sample> {
        let now = to_ms(now);
        let Some(family) = Family::from_name(&q.selector().metric) else {
            return Vec::new();
        };
        let inner = self.read();
        let mut points = Vec::new();
        let mut out = match q {
            Query::Increase { sel, window, by } => {
                let start = now.saturating_sub(duration_ms(*window));
                let mut groups: HashMap<GroupKey, f64> = HashMap::new();
                for (t, i, s) in inner.select(family, sel) {
                    t.points(i, start, now, &mut points);
                    if let Some(v) = functions::increase(&points, start, now) {
                        *groups.entry(t.group(s, by)).or_default() += v;
                    }
                }
                finish(groups, by)
            }
            Query::Sum { sel, by } => {
                let mut groups: HashMap<GroupKey, f64> = HashMap::new();
                for (t, i, s) in inner.select(family, sel) {
                    if let Some(v) = t.instant(i, now) {
                        *groups.entry(t.group(s, by)).or_default() += v;
                    }
                }
                finish(groups, by)
            }
            Query::Quantile { q, sel, window, by } => {
                let start = now.saturating_sub(duration_ms(*window));
                // sum by (le, by) (irate(...)), then per `by` group.
                let mut rates: HashMap<(GroupKey, Arc<str>), f64> = HashMap::new();
                for (t, i, s) in inner.select(family, sel) {
                    let Some(le) = t.label(s, "le") else {
                        continue;
                    };
                    t.points(i, start, now, &mut points);
                    if let Some(v) = functions::irate(&points) {
                        *rates.entry((t.group(s, by), le.clone())).or_default() += v;
                    }
                }
                let mut histograms: HashMap<GroupKey, Vec<Bucket>> = HashMap::new();
                for ((group, le), count) in rates {
                    // Prometheus ignores buckets whose `le` is not a number.
                    if let Ok(upper_bound) = le.parse::<f64>() {
                        histograms
                            .entry(group)
                            .or_default()
                            .push(Bucket { upper_bound, count });
                    }
                }
                let quantiles = histograms
                    .into_iter()
                    .map(|(group, mut buckets)| {
                        (group, functions::bucket_quantile(*q, &mut buckets))
                    })
                    .collect();
                finish(quantiles, by)
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

impl Evaluate for Store {
    fn eval<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Sample>, EvalError>> {
        Box::pin(async move { Ok(self.evaluate_at(q, SystemTime::now())) })
    }
}

// === impl Inner ===

impl Inner {
    /// Every series of `family` that `sel` matches, with its target and
    /// index.
    fn select<'a>(
        &'a self,
        family: Family,
        sel: &'a Selector,
    ) -> impl Iterator<Item = (&'a Target, usize, &'a Series)> + 'a {
        self.targets.values().flat_map(move |t| {
            t.series
                .iter()
                .enumerate()
                .filter(move |(_, s)| {
                    s.family == family && sel.matches(|name| t.label(s, name).map(|v| &**v))
                })
                .map(move |(i, s)| (t, i, s))
        })
    }
}

// === impl Target ===

impl Target {
    fn group(&self, s: &Series, by: &[String]) -> GroupKey {
        by.iter().map(|l| self.label(s, l).cloned()).collect()
    }

    /// The points of series `i` within `(start, end]`, into `out`.
    fn points(&self, i: usize, start: i64, end: i64, out: &mut Vec<Point>) {
        out.clear();
        let from = self.snapshots.partition_point(|s| s.at <= start);
        for snap in self.snapshots.range(from..) {
            if snap.at > end {
                break;
            }
            if let Some(v) = snap.values.get(i).filter(|v| !v.is_nan()) {
                out.push((snap.at, *v));
            }
        }
    }

    /// Series `i`'s value at `now` for an instant query: from the latest
    /// snapshot at or before `now` within the lookback, unless the target
    /// has been failing since (as Prometheus's staleness markers do).
    fn instant(&self, i: usize, now: i64) -> Option<f64> {
        if self.failing_since.is_some_and(|f| f <= now) {
            return None;
        }
        let n = self.snapshots.partition_point(|s| s.at <= now);
        let snap = self.snapshots.get(n.checked_sub(1)?)?;
        if snap.at <= now.saturating_sub(LOOKBACK_MS) {
            return None;
        }
        snap.values.get(i).copied().filter(|v| !v.is_nan())
    }
}

/// Results from groups; NaN dropped.
fn finish(groups: HashMap<GroupKey, f64>, by: &[String]) -> Vec<Sample> {
    groups
        .into_iter()
        .filter(|(_, v)| !v.is_nan())
        .map(|(key, value)| Sample {
            labels: by
                .iter()
                .zip(key)
                .filter_map(|(l, v)| Some((l.clone(), v?.to_string())))
                .collect(),
            value,
        })
        .collect()
}
