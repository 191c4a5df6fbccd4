//! A service's ServiceProfile as requests use it: the profile, a balancer
//! for every `dstOverrides` authority, and the retry budget its routes
//! share.
//!
//! ```text
//!  Balanced(web) ──profile watch──▶ ProfileTable { profile, overrides: authority ─▶ Balanced, budget }
//!  request ──route_for()──▶ route (timeout, retryable, classes) ──backend()──▶ override by weight, or web
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use strand_proxy_discover as discover;
use tokio::time::Instant;

use super::Balanced;
use crate::errors::ProxyError;

/// A `dstOverrides` entry: its weight, its authority, and its balancer (or
/// why there is none).
pub(super) type Override = (u32, Arc<str>, Result<Arc<Balanced>, Arc<str>>);

/// A profile that changes where or how requests go, ready for requests.
pub struct ProfileTable {
    pub profile: Arc<discover::Profile>,
    overrides: Vec<Override>,
    pub budget: Budget,
}

impl ProfileTable {
    pub(super) fn new(profile: Arc<discover::Profile>, overrides: Vec<Override>) -> Self {
        let budget = Budget::new(profile.retry_budget);
        ProfileTable {
            profile,
            overrides,
            budget,
        }
    }

    /// Where one attempt goes: an override drawn by weight, or `None` for
    /// the service itself (no overrides).
    pub fn backend(&self) -> Result<Option<Arc<Balanced>>, ProxyError> {
        let total: u64 = self.overrides.iter().map(|(w, ..)| u64::from(*w)).sum();
        if total == 0 {
            return Ok(None);
        }
        let mut n = fastrand::u64(0..total);
        let (_, authority, backend) = self
            .overrides
            .iter()
            .find(|(w, ..)| {
                let w = u64::from(*w);
                if n < w {
                    return true;
                }
                n -= w;
                false
            })
            .unwrap_or(&self.overrides[0]);
        match backend {
            Ok(b) => Ok(Some(Arc::clone(b))),
            Err(why) => Err(ProxyError::Backend {
                path: authority.clone(),
                reason: why.clone(),
            }),
        }
    }
}

/// Linkerd's retry budget: over the last `ttl`, retries may add `ratio` of
/// the requests sent, plus `min_per_second` a second whatever the traffic.
/// Kept in ten slots of `ttl / 10`, so old traffic ages out in steps.
pub struct Budget {
    ratio: f64,
    reserve: f64,
    slot: Duration,
    window: Mutex<Window>,
}

const SLOTS: usize = 10;

struct Window {
    /// When the current slot began.
    start: Instant,
    current: usize,
    requests: [u64; SLOTS],
    retries: [u64; SLOTS],
}

impl Budget {
    pub fn new(spec: discover::RetryBudget) -> Self {
        Budget {
            // As written (0.2, not 0.2000000029802322).
            ratio: (f64::from(spec.ratio) * 1e6).round() / 1e6,
            reserve: f64::from(spec.min_per_second) * spec.ttl.as_secs_f64(),
            slot: spec.ttl / SLOTS as u32,
            window: Mutex::new(Window {
                start: Instant::now(),
                current: 0,
                requests: [0; SLOTS],
                retries: [0; SLOTS],
            }),
        }
    }

    /// Counts a request as the client sent it.
    pub fn deposit(&self) {
        let mut w = self.window();
        let i = w.current;
        w.requests[i] += 1;
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let mut w = self.window();
        let requests: u64 = w.requests.iter().sum();
        let retries: u64 = w.retries.iter().sum();
        if (retries as f64) < self.reserve + self.ratio * requests as f64 {
            let i = w.current;
            w.retries[i] += 1;
            true
        } else {
            false
        }
    }

    /// The window, moved on to now.
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = w.start.elapsed();
        if elapsed >= self.slot && !self.slot.is_zero() {
            let steps = (elapsed.as_nanos() / self.slot.as_nanos()).min(SLOTS as u128) as usize;
            for _ in 0..steps {
                w.current = (w.current + 1) % SLOTS;
                let i = w.current;
                w.requests[i] = 0;
                w.retries[i] = 0;
            }
            let advanced = self.slot.as_nanos() * (elapsed.as_nanos() / self.slot.as_nanos());
            w.start += Duration::from_nanos(u64::try_from(advanced).unwrap_or(u64::MAX));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f32, min_per_second: u32) -> Budget {
        Budget::new(discover::RetryBudget {
            ratio,
            min_per_second,
            ttl: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests_plus_a_reserve_and_age_out() {
        let b = budget(0.2, 0);
        assert!(!b.withdraw(), "no requests, no reserve: no retry");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "20% of 10 requests");
        // Ten seconds on, those requests and retries have aged out.
        tokio::time::advance(Duration::from_secs(11)).await;
        b.deposit();
        b.deposit();
        b.deposit();
        b.deposit();
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw(), "20% of the 5 recent requests");

        let reserve = budget(0.0, 1);
        let granted = (0..20).filter(|_| reserve.withdraw()).count();
        assert_eq!(granted, 10, "1 a second over 10 s");
    }
}
