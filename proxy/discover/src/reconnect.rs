//! How a failed stream comes back: jittered exponential backoff between
//! attempts, and outage logging that says "unreachable" once when the first
//! stream to a control-plane service fails and "reachable again" once when
//! the last failing stream recovers, however many targets are watching.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Delays between reconnection attempts: the first is `min`, each later one
/// is drawn uniformly from `[max(min, base / 2), base]` where `base` doubles
/// up to `max`. Drawing from the upper half keeps the growth exponential
/// while spreading proxies that lost the control plane together, so they do
/// not all come back in the same millisecond.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

/// One control-plane service (policy or destination) at one address, shared
/// by every stream to it.
#[derive(Debug)]
pub(crate) struct Health {
    service: &'static str,
    addr: SocketAddr,
    /// Streams currently failing; the transitions 0 -> 1 and 1 -> 0 are the
    /// outage's start and end.
    failing: AtomicUsize,
}

/// One stream's view of an outage: counts itself in [`Health::failing`]
/// while it is down, and stops counting when dropped.
#[derive(Debug)]
pub(crate) struct Outage {
    health: Arc<Health>,
    down_since: Option<Instant>,
}

// === impl Backoff ===

impl Backoff {
    pub(crate) fn new((min, max): (Duration, Duration)) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            base: min,
        }
    }

    /// The next delay, drawn with a fresh random fraction.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.next_with(random_fraction())
    }

    /// The next delay for a given fraction in `[0, 1)`: separated from the
    /// randomness so the bounds can be tested exactly.
    pub(crate) fn next_with(&mut self, fraction: f64) -> Duration {
        let base = self.base;
        let low = self.min.max(base / 2);
        let delay = low + (base - low).mul_f64(fraction.clamp(0.0, 1.0));
        self.base = base.saturating_mul(2).min(self.max);
        delay
    }

    /// Called after a success, so the next failure starts over at `min`.
    pub(crate) fn reset(&mut self) {
        self.base = self.min;
    }
}

/// A fraction in `[0, 1)` from the standard library's per-process random
/// hash keys: jitter needs spread, not statistical quality, and this avoids
/// a dependency.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now());
    // The top 53 bits fill an f64 mantissa exactly.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

// === impl Health ===

impl Health {
    pub(crate) fn new(service: &'static str, addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            service,
            addr,
            failing: AtomicUsize::new(0),
        })
    }

    /// Streams currently failing, for tests.
    #[cfg(test)]
    pub(crate) fn failing(&self) -> usize {
        self.failing.load(Ordering::SeqCst)
    }
}

// === impl Outage ===

impl Outage {
    pub(crate) fn new(health: Arc<Health>) -> Self {
        Self {
            health,
            down_since: None,
        }
    }

    /// Records a failed attempt or a broken stream. Each retry logs at debug;
    /// info only when this is the first stream of its service to fail.
    pub(crate) fn failed(&mut self, target: &dyn fmt::Display, error: &dyn fmt::Display) {
        let Health { service, addr, .. } = *self.health;
        tracing::debug!(dst = %target, %error, "{service} stream to {addr} failed; retrying");
        if self.down_since.is_some() {
            return;
        }
        self.down_since = Some(Instant::now());
        if self.health.failing.fetch_add(1, Ordering::SeqCst) == 0 {
            tracing::info!(dst = %target, %error, "control plane {service} service at {addr} is unreachable; keeping the last known state and retrying");
        }
    }

    /// Records an answer on a stream that had failed.
    pub(crate) fn recovered(&mut self) {
        let Some(since) = self.down_since.take() else {
            return;
        };
        if self.health.failing.fetch_sub(1, Ordering::SeqCst) == 1 {
            let Health { service, addr, .. } = *self.health;
            tracing::info!(
                "control plane {service} service at {addr} is reachable again after {:?}",
                since.elapsed()
            );
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        // A stream that ends while down (its target went idle) no longer
        // counts; it says nothing, since it did not see the outage end.
        if self.down_since.is_some() {
            self.health.failing.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests;
