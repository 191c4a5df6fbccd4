use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn backoff_doubles_within_jittered_bounds_up_to_max() {
    let mut backoff = Backoff::new((100 * MS, 1_000 * MS));
    // (delay at fraction 0, delay at fraction ~1) for successive attempts.
    let expected = [
        (100, 100),
        (100, 200),
        (200, 400),
        (400, 800),
        (500, 1_000),
        (500, 1_000),
    ];
    for (attempt, (low, high)) in expected.into_iter().enumerate() {
        let mut probe = backoff.clone();
        assert_eq!(probe.next_with(0.0), low * MS, "attempt {attempt}, low");
        assert_eq!(backoff.next_with(1.0), high * MS, "attempt {attempt}, high");
    }
    backoff.reset();
    assert_eq!(backoff.next_with(1.0), 100 * MS, "reset starts over at min");
}

#[test]
fn backoff_with_max_below_min_uses_min() {
    let mut backoff = Backoff::new((200 * MS, 50 * MS));
    for _ in 0..4 {
        assert_eq!(backoff.next_with(0.5), 200 * MS);
    }
}

#[test]
fn random_delays_stay_in_bounds_and_vary() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let mut backoff = Backoff::new((100 * MS, 10_000 * MS));
        backoff.next_delay();
        let second = backoff.next_delay();
        assert!((100 * MS..=200 * MS).contains(&second), "{second:?}");
        seen.insert(second);
    }
    assert!(seen.len() > 1, "jitter never varied: {seen:?}");
}

#[test]
fn outage_counts_each_stream_once_and_forgets_dropped_streams() {
    let health = Health::new("destination", "127.0.0.1:8086".parse().expect("valid"));
    let mut a = Outage::new(health.clone());
    let mut b = Outage::new(health.clone());

    a.failed(&"web", &"connection refused");
    a.failed(&"web", &"connection refused");
    b.failed(&"api", &"connection refused");
    assert_eq!(health.failing(), 2, "retries do not count twice");

    a.recovered();
    a.recovered();
    assert_eq!(health.failing(), 1);

    drop(b);
    assert_eq!(health.failing(), 0, "a dropped stream stops counting");
    drop(a);
    assert_eq!(health.failing(), 0);
}

#[test]
fn delays_never_leave_min_max_whatever_the_draw() {
    for fraction in [0.0, 0.25, 0.5, 0.999, 1.0, -3.0, 7.0] {
        let mut backoff = Backoff::new((100 * MS, 10_000 * MS));
        for attempt in 0..40 {
            let delay = backoff.next_with(fraction);
            assert!(
                (100 * MS..=10_000 * MS).contains(&delay),
                "attempt {attempt}, fraction {fraction}: {delay:?}"
            );
        }
    }
}

#[test]
fn random_fractions_are_in_the_unit_interval() {
    for _ in 0..1_000 {
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f), "{f}");
    }
}
