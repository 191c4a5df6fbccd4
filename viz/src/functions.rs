//! PromQL's `increase`, `irate` and `histogram_quantile` over float
//! samples, ported from Prometheus (`promql/functions.go`,
//! `promql/quantile.go`) so that the embedded store and a real Prometheus
//! give the same numbers for the same samples.

/// One sample: milliseconds since the epoch and a value.
pub type Point = (i64, f64);

/// One classic histogram bucket: its upper bound (`le`) and cumulative
/// count (or rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The `le` label's value; `+Inf` for the last bucket.
    pub upper_bound: f64,
    /// Observations at or below `upper_bound` (or their rate).
    pub count: f64,
}

/// Prometheus's tolerance for bucket counts that differ only by floating
/// point error (`smallDeltaTolerance`).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// `increase(series[range])` evaluated at `range_end`, for the points of
/// one series within `(range_end - range, range_end]`, oldest first
/// (Prometheus's `extrapolatedRate` with `isCounter`, not `isRate`).
///
/// A drop means the counter restarted from 0. The result is extrapolated to
/// the range's edges when the first and last points are within 1.1 average
/// sample intervals of them, else by half an interval; and never back past
/// the point where the counter would have been 0. `None` with fewer than
/// two points.
pub fn increase(points: &[Point], range_start: i64, range_end: i64) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    if points.len() < 2 {
        return None;
    }
    let mut result = last_v - first_v;
    for w in points.windows(2) {
        if w[1].1 < w[0].1 {
            result += w[0].1;
        }
    }

    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    let threshold = average * 1.1;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    // Counters cannot be negative: with any slope at all, do not
    // extrapolate back past the counter's zero point.
    if result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    Some(result * (sampled + to_start + to_end) / sampled)
}

/// `irate(series[range])`: the per-second rate between the last two points
/// (Prometheus's `instantValue` with `isRate`). `None` with fewer than two
/// points or when they share a timestamp.
pub fn irate(points: &[Point]) -> Option<f64> {
    let [.., (prev_t, prev_v), (last_t, last_v)] = points else {
        return None;
    };
    let delta = if last_v < prev_v {
        // A counter reset: it counted `last_v` since restarting.
        *last_v
    } else {
        last_v - prev_v
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    Some(delta / (interval as f64 / 1000.0))
}

/// `histogram_quantile(q, buckets)` for classic buckets (Prometheus's
/// `BucketQuantile`): buckets sorted by upper bound, equal bounds merged,
/// counts forced monotonic, then linear interpolation inside the bucket the
/// rank falls in, with 0 as the lowest bucket's lower bound (unless its
/// upper bound is not positive). When the rank falls in the `+Inf` bucket,
/// the second-highest bound is the answer.
///
/// NaN when there is no `+Inf` bucket, fewer than two buckets, no
/// observations or `q` is NaN; -Inf/+Inf for `q` below 0/above 1.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (of all but the last) whose count reaches the rank,
    // as Go's `sort.Search`.
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    if b == n - 1 {
        return buckets[n - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with the same upper bound (sorted input).
fn coalesce(buckets: &mut Vec<Bucket>) {
    buckets.dedup_by(|later, kept| {
        if later.upper_bound == kept.upper_bound {
            kept.count += later.count;
            true
        } else {
            false
        }
    });
}

/// Prometheus's `ensureMonotonicAndIgnoreSmallDeltas`: a count lower than
/// the one before it (scrapes of buckets are not atomic) is raised to it,
/// and counts that differ only by rounding are made equal.
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) || curr < prev {
            b.count = prev;
            continue;
        }
        prev = curr;
    }
}

/// Prometheus's `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests;
