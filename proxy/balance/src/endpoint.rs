//! Per-endpoint state: load counters, the peak-EWMA RTT estimate and the
//! failure-accrual state machine.
//!
//! Everything a pick reads is an atomic so concurrent picks never wait on
//! each other; the rarer writes (an RTT observation, an accrual transition)
//! take a small per-endpoint mutex and publish their result to the atomics.
//! Loads and stores are `Relaxed`: the values feed a heuristic, and a pick
//! that sees a value a few nanoseconds stale makes an equally good choice.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{Clock, Config, EndpointStats, FailureAccrual};

/// Configuration, clock and randomness shared by a balancer and its endpoints.
pub(crate) struct Shared {
    accrual: FailureAccrual,
    default_rtt_ns: f64,
    decay_ns: f64,
    pub(crate) tolerance: f64,
    clock: Arc<dyn Clock>,
    /// Times are kept as nanoseconds since this instant so they fit atomics.
    epoch: Instant,
    rng: Rng,
}

enum Rng {
    /// fastrand's thread-local generator: no contention between threads.
    ThreadLocal,
    /// A seeded generator for deterministic tests. The mutex is fine there
    /// and would be a contention point in production, hence the split.
    Seeded(Mutex<fastrand::Rng>),
}

pub(crate) struct Endpoint<K> {
    pub(crate) key: K,
    pub(crate) shared: Arc<Shared>,
    pub(crate) pending: AtomicUsize,
    pub(crate) connections: AtomicUsize,
    /// Peak-EWMA estimate in nanoseconds (`f64` bits), as of `rtt_at`.
    rtt_ns: AtomicU64,
    rtt_at: AtomicU64,
    /// Serialises observations so a peak is never lost to a racing update.
    observe: Mutex<()>,
    accrual: Mutex<Accrual>,
    /// Mirror of `Accrual::until` (0 while in rotation; `u64::MAX` while a
    /// probe is in flight) for lock-free picks.
    ejected_until: AtomicU64,
    /// Mirror of "no failures and not ejected": lets a success skip the lock.
    clean: AtomicBool,
}

/// Why a handle was handed out; decides what its outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Ready,
    /// The single in-flight probe of an ejected endpoint, with its ticket.
    Probe(u64),
    /// Every endpoint was ejected and this one was picked anyway.
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ready,
    /// Ejected and waiting for its backoff to elapse (or its probe to end).
    Ejected,
    /// Ejected, backoff elapsed: may take one probe.
    Probeable,
}

#[derive(Default)]
struct Accrual {
    /// Consecutive connect failures while in rotation.
    failures: u32,
    /// Consecutive ejections; the exponent of the next backoff.
    ejections: u32,
    /// End of the current ejection in clock nanoseconds; 0 while in rotation.
    until: u64,
    /// Ticket of the in-flight probe, if any.
    probe: Option<u64>,
    next_ticket: u64,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(config: Config, clock: Arc<dyn Clock>, seed: Option<u64>) -> Self {
        let Config {
            default_rtt,
            decay,
            tolerance,
            mut failure_accrual,
        } = config;
        failure_accrual.max_backoff = failure_accrual.max_backoff.max(failure_accrual.min_backoff);
        failure_accrual.jitter = if failure_accrual.jitter.is_nan() {
            0.0
        } else {
            failure_accrual.jitter.clamp(0.0, 1.0)
        };
        Self {
            accrual: failure_accrual,
            default_rtt_ns: nanos(default_rtt),
            // A zero decay would divide by zero; one nanosecond means "no memory".
            decay_ns: nanos(decay).max(1.0),
            tolerance: if tolerance.is_nan() {
                0.0
            } else {
                tolerance.clamp(0.0, 10.0)
            },
            epoch: clock.now(),
            clock,
            rng: match seed {
                None => Rng::ThreadLocal,
                Some(seed) => Rng::Seeded(Mutex::new(fastrand::Rng::with_seed(seed))),
            },
        }
    }

    pub(crate) fn now(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Two distinct indices in `0..n`; `n` must be at least 2.
    pub(crate) fn pair(&self, n: usize) -> (usize, usize) {
        let (a, b) = match &self.rng {
            Rng::ThreadLocal => (fastrand::usize(..n), fastrand::usize(..n - 1)),
            Rng::Seeded(rng) => {
                let mut rng = lock(rng);
                (rng.usize(..n), rng.usize(..n - 1))
            }
        };
        (a, if b >= a { b + 1 } else { b })
    }

    fn unit(&self) -> f64 {
        match &self.rng {
            Rng::ThreadLocal => fastrand::f64(),
            Rng::Seeded(rng) => lock(rng).f64(),
        }
    }

    /// Weight of an estimate that is `elapsed_ns` old.
    fn weight(&self, elapsed_ns: u64) -> f64 {
        (-(elapsed_ns as f64) / self.decay_ns).exp()
    }
}

// === impl Endpoint ===

impl<K> Endpoint<K> {
    pub(crate) fn new(key: K, shared: Arc<Shared>, now: u64) -> Self {
        Self {
            key,
            pending: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            rtt_ns: AtomicU64::new(shared.default_rtt_ns.to_bits()),
            rtt_at: AtomicU64::new(now),
            observe: Mutex::new(()),
            accrual: Mutex::new(Accrual::default()),
            ejected_until: AtomicU64::new(0),
            clean: AtomicBool::new(true),
            shared,
        }
    }

    /// The RTT estimate at `now`. Between observations it decays toward zero
    /// (Finagle reads it as an observation of 0), so an endpoint that was
    /// avoided for being slow is eventually tried again. Decay toward zero
    /// composes, so computing it on read without storing it gives the same
    /// value as Finagle's mutating read without a write per pick.
    pub(crate) fn rtt_ns(&self, now: u64) -> f64 {
        let estimate = f64::from_bits(self.rtt_ns.load(Relaxed));
        let at = self.rtt_at.load(Relaxed);
        estimate * self.shared.weight(now.saturating_sub(at))
    }

    pub(crate) fn request_cost(&self, now: u64) -> f64 {
        self.rtt_ns(now) * (self.pending.load(Relaxed) as f64 + 1.0)
    }

    pub(crate) fn connection_cost(&self) -> f64 {
        self.connections.load(Relaxed) as f64
    }

    /// Peak-EWMA update: a larger RTT replaces the estimate outright, a
    /// smaller one pulls it down with weight `1 - exp(-elapsed/decay)`.
    pub(crate) fn observe(&self, rtt_ns: f64, now: u64) {
        let _serial = lock(&self.observe);
        let estimate = f64::from_bits(self.rtt_ns.load(Relaxed));
        let at = self.rtt_at.load(Relaxed);
        let next = if rtt_ns > estimate {
            rtt_ns
        } else {
            let w = self.shared.weight(now.saturating_sub(at));
            estimate * w + rtt_ns * (1.0 - w)
        };
        self.rtt_ns.store(next.to_bits(), Relaxed);
        self.rtt_at.store(now.max(at), Relaxed);
    }

    pub(crate) fn status(&self, now: u64) -> Status {
        match self.ejected_until.load(Relaxed) {
            0 => Status::Ready,
            until if now < until => Status::Ejected,
            _ => Status::Probeable,
        }
    }

    /// Admits a pick, claiming the probe slot of an ejected endpoint whose
    /// backoff has elapsed; `None` if the endpoint cannot take the request.
    pub(crate) fn admit(&self, now: u64) -> Option<Admission> {
        match self.status(now) {
            Status::Ready => Some(Admission::Ready),
            Status::Ejected => None,
            Status::Probeable => {
                let mut a = lock(&self.accrual);
                if a.until == 0 {
                    return Some(Admission::Ready);
                }
                if now < a.until || a.probe.is_some() {
                    return None;
                }
                let ticket = a.next_ticket;
                a.next_ticket += 1;
                a.probe = Some(ticket);
                self.publish(&a);
                Some(Admission::Probe(ticket))
            }
        }
    }

    /// A handle ended without an outcome: free the probe slot it held.
    pub(crate) fn abandoned(&self, admission: Admission) {
        if let Admission::Probe(ticket) = admission {
            let mut a = lock(&self.accrual);
            if a.probe == Some(ticket) {
                a.probe = None;
                self.publish(&a);
            }
        }
    }

    pub(crate) fn stats(&self, now: u64) -> EndpointStats<K>
    where
        K: Clone,
    {
        let a = lock(&self.accrual);
        EndpointStats {
            key: self.key.clone(),
            rtt: Duration::try_from_secs_f64(self.rtt_ns(now) / 1e9).unwrap_or(Duration::MAX),
            pending: self.pending.load(Relaxed),
            connections: self.connections.load(Relaxed),
            consecutive_failures: a.failures,
            ejected_until: (a.until != 0).then(|| self.shared.instant(a.until)),
            probing: a.probe.is_some(),
        }
    }

    fn publish(&self, a: &Accrual) {
        // While a probe is in flight the endpoint reads as ejected forever,
        // so picks that sample it skip it without taking the lock.
        let until = if a.probe.is_some() { u64::MAX } else { a.until };
        self.ejected_until.store(until, Relaxed);
        self.clean.store(a.until == 0 && a.failures == 0, Relaxed);
    }
}

impl<K: Debug> Endpoint<K> {
    /// The request or connection succeeded. A probe's (or panic pick's)
    /// success restores an ejected endpoint; a success from a handle picked
    /// before the ejection is stale and ignored.
    pub(crate) fn succeeded(&self, admission: Admission) {
        if admission == Admission::Ready && self.clean.load(Relaxed) {
            return;
        }
        let mut a = lock(&self.accrual);
        let restore = match admission {
            Admission::Probe(ticket) => a.probe == Some(ticket),
            Admission::Panic => a.until != 0,
            Admission::Ready => false,
        };
        if restore {
            tracing::debug!(endpoint = ?self.key, "endpoint restored to rotation");
            a.until = 0;
            a.ejections = 0;
            a.probe = None;
        }
        if a.until == 0 {
            a.failures = 0;
        }
        self.publish(&a);
    }

    /// Connecting failed. In rotation this counts toward ejection; a failed
    /// probe ejects again with the next backoff. Outcomes of panic picks and
    /// stale handles of an already-ejected endpoint are ignored, so a burst
    /// of failures does not run the backoff up to its cap at once.
    pub(crate) fn failed(&self, admission: Admission, now: u64) {
        let threshold = self.shared.accrual.consecutive_failures;
        let mut a = lock(&self.accrual);
        let owns_probe = matches!(admission, Admission::Probe(t) if a.probe == Some(t));
        if owns_probe {
            self.eject(&mut a, now);
        } else if a.until == 0 {
            a.failures = a.failures.saturating_add(1);
            if threshold != 0 && a.failures >= threshold {
                self.eject(&mut a, now);
            }
        }
        self.publish(&a);
    }

    fn eject(&self, a: &mut Accrual, now: u64) {
        a.ejections = a.ejections.saturating_add(1);
        let backoff = self.shared.accrual.backoff(a.ejections, self.shared.unit());
        tracing::debug!(endpoint = ?self.key, ?backoff, failures = a.failures, "endpoint ejected");
        let backoff_ns = u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
        a.until = now.saturating_add(backoff_ns).max(1);
        a.failures = 0;
        a.probe = None;
    }
}

// === impl FailureAccrual ===

impl FailureAccrual {
    /// Backoff for the `ejections`-th consecutive ejection (from 1):
    /// `min * 2^(ejections-1)` capped at `max`, then shortened by up to
    /// `jitter` of itself (`unit` in `[0, 1)`) so it never exceeds `max`.
    pub(crate) fn backoff(&self, ejections: u32, unit: f64) -> Duration {
        let exponent = ejections.saturating_sub(1).min(31);
        let base = self
            .min_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        base.mul_f64(1.0 - self.jitter * unit)
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// No critical section here can panic, so a poisoned lock holds valid state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
