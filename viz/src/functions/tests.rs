//! Expected values are worked out by hand from Prometheus's algorithm.

use super::*;

fn assert_close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

/// Samples every 10 s at t = 5 s, 15 s, ... 55 s with the given values.
fn every_10s(values: &[f64]) -> Vec<Point> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (5_000 + 10_000 * i as i64, *v))
        .collect()
}

#[test]
fn increase_extrapolates_to_the_window_edges() {
    // Window (0 s, 60 s]: 50 over 50 s sampled, 5 s to each edge (under
    // 1.1 x the 10 s average interval), so x (50 + 5 + 5) / 50.
    let pts = every_10s(&[100.0, 110.0, 120.0, 130.0, 140.0, 150.0]);
    assert_close(increase(&pts, 0, 60_000).unwrap(), 60.0);
}

#[test]
fn increase_does_not_extrapolate_below_zero() {
    // Starting at 0, the zero point is the first sample itself: only the
    // end is extrapolated, x (50 + 0 + 5) / 50.
    let pts = every_10s(&[0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
    assert_close(increase(&pts, 0, 60_000).unwrap(), 55.0);
    // From 2 with slope 10 per 10 s, zero is 2 s before the first sample.
    let pts = every_10s(&[2.0, 12.0, 22.0]);
    // 20 over 20 s; to_start min(5, 2) = 2; to_end = 60 - 25 = 35 >= 11 -> 5.
    assert_close(increase(&pts, 0, 60_000).unwrap(), 20.0 * 27.0 / 20.0);
}

#[test]
fn increase_handles_a_counter_reset() {
    // 100 -> 110 (+10), restart -> 5 (+5), then +10 three times: 45.
    let pts = every_10s(&[100.0, 110.0, 5.0, 15.0, 25.0, 35.0]);
    assert_close(increase(&pts, 0, 60_000).unwrap(), 45.0 * 1.2);
}

#[test]
fn increase_extrapolates_half_an_interval_across_a_gap() {
    // A series that starts at 35 s: 35 s to the start is over 1.1 x 10 s,
    // so only 5 s (half an interval) is assumed: x (20 + 5 + 5) / 20.
    let pts = vec![(35_000, 10.0), (45_000, 20.0), (55_000, 30.0)];
    assert_close(increase(&pts, 0, 60_000).unwrap(), 30.0);
}

#[test]
fn increase_needs_two_points() {
    assert_eq!(increase(&[], 0, 60_000), None);
    assert_eq!(increase(&[(5_000, 3.0)], 0, 60_000), None);
}

#[test]
fn increase_of_a_flat_counter_is_zero() {
    let pts = every_10s(&[7.0, 7.0, 7.0]);
    assert_close(increase(&pts, 0, 60_000).unwrap(), 0.0);
}

#[test]
fn irate_uses_the_last_two_points() {
    let pts = vec![(0, 0.0), (10_000, 10.0), (20_000, 30.0)];
    assert_close(irate(&pts).unwrap(), 2.0);
    // After a reset the new value is the increase.
    let pts = vec![(0, 50.0), (10_000, 20.0)];
    assert_close(irate(&pts).unwrap(), 2.0);
    assert_eq!(irate(&[(0, 1.0)]), None);
    assert_eq!(irate(&[(0, 1.0), (0, 2.0)]), None);
}

fn buckets(b: &[(f64, f64)]) -> Vec<Bucket> {
    b.iter()
        .map(|&(upper_bound, count)| Bucket { upper_bound, count })
        .collect()
}

#[test]
fn quantile_interpolates_inside_the_bucket() {
    let b = [(4.0, 9.0), (1.0, 3.0), (f64::INFINITY, 10.0), (2.0, 6.0)];
    // Rank 5 falls in (1, 2] which holds 3: 1 + 1 x (5 - 3) / 3.
    assert_close(bucket_quantile(0.5, &mut buckets(&b)), 1.0 + 2.0 / 3.0);
    // Rank 1 falls in the lowest bucket, interpolated from 0.
    assert_close(bucket_quantile(0.1, &mut buckets(&b)), 1.0 / 3.0);
    // Rank 9.5 falls in +Inf: the second-highest bound.
    assert_close(bucket_quantile(0.95, &mut buckets(&b)), 4.0);
    assert_close(bucket_quantile(1.0, &mut buckets(&b)), 4.0);
    assert_close(bucket_quantile(0.0, &mut buckets(&b)), 0.0);
}

#[test]
fn quantile_forces_monotonic_counts() {
    // le=2 lags le=1: raised to 3, so rank 5 falls in (2, 4] holding 6.
    let b = [(1.0, 3.0), (2.0, 2.0), (4.0, 9.0), (f64::INFINITY, 10.0)];
    assert_close(
        bucket_quantile(0.5, &mut buckets(&b)),
        2.0 + 2.0 * 2.0 / 6.0,
    );
}

#[test]
fn quantile_merges_equal_bounds() {
    let b = [
        (1.0, 1.0),
        (1.0, 2.0),
        (2.0, 6.0),
        (f64::INFINITY, 6.0),
        (f64::INFINITY, 4.0),
    ];
    // Buckets become 1:3, 2:6, +Inf:10.
    assert_close(bucket_quantile(0.5, &mut buckets(&b)), 1.0 + 2.0 / 3.0);
}

#[test]
fn quantile_special_cases() {
    let no_inf = [(1.0, 1.0), (2.0, 2.0)];
    assert!(bucket_quantile(0.5, &mut buckets(&no_inf)).is_nan());
    let empty = [(1.0, 0.0), (f64::INFINITY, 0.0)];
    assert!(bucket_quantile(0.5, &mut buckets(&empty)).is_nan());
    let only_inf = [(f64::INFINITY, 5.0)];
    assert!(bucket_quantile(0.5, &mut buckets(&only_inf)).is_nan());
    let ok = [(1.0, 1.0), (f64::INFINITY, 2.0)];
    assert!(bucket_quantile(f64::NAN, &mut buckets(&ok)).is_nan());
    assert_eq!(bucket_quantile(-0.1, &mut buckets(&ok)), f64::NEG_INFINITY);
    assert_eq!(bucket_quantile(1.1, &mut buckets(&ok)), f64::INFINITY);
    // A lowest bucket at or below 0 is returned as is.
    let neg = [(-1.0, 5.0), (f64::INFINITY, 10.0)];
    assert_eq!(bucket_quantile(0.2, &mut buckets(&neg)), -1.0);
    assert!(bucket_quantile(0.5, &mut Vec::new()).is_nan());
}

#[test]
fn almost_equal_counts_are_equalised() {
    // 3 and 3 + 1e-15 differ only by rounding; the larger one is lowered,
    // so rank 3 falls in the first bucket.
    let b = [(1.0, 3.0), (2.0, 3.0 + 1e-15), (f64::INFINITY, 6.0)];
    assert_close(bucket_quantile(0.5, &mut buckets(&b)), 1.0);
}
