//! Per-request load balancing for the proxy: power of two choices over
//! peak-EWMA latency, with failure accrual.
//!
//! The proxy's HTTP client connects and pools by endpoint address, so the
//! balancer is a pure picker rather than a tower stack: it chooses an endpoint
//! key and the returned handle records the outcome. One `Balancer` per
//! service is shared behind an `Arc` by every task that sends to it.
//!
//! ```text
//!  discovery ──update(snapshot)──▶ Balancer ──pick()──▶ RequestHandle { key }
//!                                     ▲                      │ client sends to key
//!                                     └── RTT, failures ◀────┘ complete() / connect_failed() / drop
//! ```
//!
//! A pick samples two endpoints at random and takes the cheaper, where cost
//! is the peak-EWMA RTT estimate times (pending requests + 1), as in Finagle
//! and Linkerd. Opaque TCP uses [`Balancer::pick_connection`], which compares
//! open connections instead. Connect failures eject an endpoint for a
//! jittered exponential backoff; afterwards it takes one probe at a time until
//! a success restores it. When every endpoint is ejected the balancer picks
//! among them anyway ("panic mode", as Finagle does): a mesh that has lost
//! sight of all endpoints is more likely looking at its own network fault than
//! at every backend failing, and refusing to send would turn a blip into an
//! outage that lasts until the backoffs expire.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::endpoint::{Admission, Endpoint, Shared, Status, lock};

mod endpoint;
mod handle;

pub use crate::handle::{ConnectionHandle, PickKind, RequestHandle};

/// Balancer settings. [`Config::default`] explains each default.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// RTT assumed for an endpoint with no observation yet.
    pub default_rtt: Duration,
    /// Time constant of the peak-EWMA decay: an observation's weight falls
    /// to 1/e after this long.
    pub decay: Duration,
    /// Request costs within this fraction of each other are a tie, broken
    /// at random. Latency differences of a few percent between equal
    /// replicas are systematic (a shorter path, a warmer cache) and would
    /// otherwise send most requests to one of them; load (pending requests
    /// double the cost) and real slowness still decide.
    pub tolerance: f64,
    pub failure_accrual: FailureAccrual,
}

/// Ejection of endpoints that refuse or drop connection attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureAccrual {
    /// Consecutive connect failures that eject an endpoint; 0 disables
    /// failure accrual.
    pub consecutive_failures: u32,
    /// Backoff of the first ejection; it doubles on each failed probe.
    pub min_backoff: Duration,
    /// Cap on the backoff (raised to `min_backoff` if smaller).
    pub max_backoff: Duration,
    /// Fraction in `[0, 1]` by which a backoff is randomly shortened, so
    /// proxies that ejected an endpoint together do not probe it together.
    pub jitter: f64,
}

/// Source of time, so tests can drive the balancer without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// A snapshot of one endpoint, for metrics and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStats<K> {
    pub key: K,
    /// Current peak-EWMA RTT estimate.
    pub rtt: Duration,
    /// Requests picked and not yet completed, failed or dropped.
    pub pending: usize,
    /// Open connection handles.
    pub connections: usize,
    /// Consecutive connect failures since the last success, while in rotation.
    pub consecutive_failures: u32,
    /// Set while ejected: the backoff ends then, after which the endpoint
    /// takes one probe; it stays set until a probe succeeds.
    pub ejected_until: Option<Instant>,
    /// Whether the endpoint's probe is in flight.
    pub probing: bool,
}

/// Picks endpoints for requests and connections. See the crate docs.
pub struct Balancer<K> {
    shared: Arc<Shared>,
    endpoints: RwLock<Vec<Arc<Endpoint<K>>>>,
    /// Serialises `update`, which builds the next list off the read lock.
    updating: Mutex<()>,
}

/// Random pairs tried before scanning for eligible endpoints. With a fraction
/// `f` of endpoints ejected all three pairs miss with probability about
/// `f^6` (1.6% at half ejected), so the O(n) scan stays rare.
const PAIR_ATTEMPTS: usize = 3;

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Self {
            // Linkerd's default: a fresh endpoint looks like an ordinary
            // in-cluster hop until it has been measured.
            default_rtt: Duration::from_millis(30),
            // Linkerd's default: reacts within seconds, forgets a spike
            // within a minute.
            decay: Duration::from_secs(10),
            // Wider than the run-to-run noise of equal replicas' latency,
            // narrower than one extra request in flight (2x).
            tolerance: 0.25,
            failure_accrual: FailureAccrual::default(),
        }
    }
}

impl Default for FailureAccrual {
    fn default() -> Self {
        Self {
            // Only connect failures are counted, and nothing was sent when
            // one happens: a refused or timed-out connect is strong evidence
            // and retrying it elsewhere is always safe. Linkerd likewise takes
            // an endpoint out of the balancer on its first connect failure.
            consecutive_failures: 1,
            // Linkerd's failure-accrual penalty defaults (1 s, 1 min, 0.5).
            // Discovery removes endpoints that are gone for good, so this
            // mostly covers blips: the first probe comes soon, and the cap
            // bounds the cost of probing a black hole (a probe that waits
            // out a connect timeout) to one request a minute.
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

// === impl SystemClock ===

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

// === impl Balancer ===

impl<K: Clone + Ord + fmt::Debug> Balancer<K> {
    /// A balancer with no endpoints, on the system clock.
    pub fn new(config: Config) -> Self {
        Self::build(Shared::new(config, Arc::new(SystemClock), None))
    }

    /// A balancer on `clock` whose random choices follow `seed`, for
    /// deterministic tests. Picks then share one generator behind a mutex,
    /// so production code should use [`Balancer::new`].
    pub fn with_clock_and_seed(config: Config, clock: Arc<dyn Clock>, seed: u64) -> Self {
        Self::build(Shared::new(config, clock, Some(seed)))
    }

    fn build(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            endpoints: RwLock::new(Vec::new()),
            updating: Mutex::new(()),
        }
    }

    /// Replaces the endpoint set with a full discovery snapshot (duplicates
    /// are ignored). Kept endpoints keep their state; removed ones are no
    /// longer picked, while handles already handed out stay valid and record
    /// into their detached state.
    pub fn update(&self, endpoints: impl IntoIterator<Item = K>) {
        let _serial = lock(&self.updating);
        let keys: BTreeSet<K> = endpoints.into_iter().collect();
        let mut current: BTreeMap<K, Arc<Endpoint<K>>> = self
            .read()
            .iter()
            .map(|e| (e.key.clone(), e.clone()))
            .collect();
        let now = self.shared.now();
        let next: Vec<_> = keys
            .into_iter()
            .map(|key| match current.remove(&key) {
                Some(kept) => kept,
                None => Arc::new(Endpoint::new(key, self.shared.clone(), now)),
            })
            .collect();
        tracing::debug!(
            endpoints = next.len(),
            removed = current.len(),
            "endpoints updated"
        );
        let previous = std::mem::replace(
            &mut *self.endpoints.write().unwrap_or_else(|e| e.into_inner()),
            next,
        );
        // Dropped here, after the write lock is released.
        drop(previous);
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Picks an endpoint for one request: the cheaper of two random eligible
    /// endpoints by RTT estimate × (pending + 1). Ejected endpoints are skipped
    /// unless all are ejected (then [`PickKind::Panic`]); an ejected endpoint
    /// whose backoff has elapsed takes one probe at a time. `None` only when
    /// there are no endpoints.
    pub fn pick(&self) -> Option<RequestHandle<K>> {
        let now = self.shared.now();
        let list = self.read();
        let tolerance = self.shared.tolerance;
        let (endpoint, admission) = self.select(&list, now, tolerance, |e| e.request_cost(now))?;
        Some(RequestHandle::new(endpoint, admission, now))
    }

    /// Picks an endpoint for one opaque TCP connection: as [`pick`](Self::pick)
    /// but the cost is the number of open connection handles.
    pub fn pick_connection(&self) -> Option<ConnectionHandle<K>> {
        let now = self.shared.now();
        let list = self.read();
        let (endpoint, admission) = self.select(&list, now, 0.0, Endpoint::connection_cost)?;
        Some(ConnectionHandle::new(endpoint, admission))
    }

    /// A snapshot of every endpoint, in key order.
    pub fn endpoints(&self) -> Vec<EndpointStats<K>> {
        let now = self.shared.now();
        self.read().iter().map(|e| e.stats(now)).collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<Arc<Endpoint<K>>>> {
        self.endpoints.read().unwrap_or_else(|e| e.into_inner())
    }

    fn select(
        &self,
        list: &[Arc<Endpoint<K>>],
        now: u64,
        tolerance: f64,
        cost: impl Fn(&Endpoint<K>) -> f64,
    ) -> Option<(Arc<Endpoint<K>>, Admission)> {
        // `b` wins only when clearly cheaper; within the tolerance the pair's
        // random order decides.
        let cheaper = |cb: f64, ca: f64| cb * (1.0 + tolerance) < ca;
        if list.is_empty() {
            return None;
        }
        // Fast path: random pairs from the whole list, cheaper one first.
        if list.len() >= 2 {
            for _ in 0..PAIR_ATTEMPTS {
                let (a, b) = self.shared.pair(list.len());
                let (a, b) = (&list[a], &list[b]);
                let (first, second) = if cheaper(cost(b), cost(a)) {
                    (b, a)
                } else {
                    (a, b)
                };
                for e in [first, second] {
                    if let Some(admission) = e.admit(now) {
                        return Some((e.clone(), admission));
                    }
                }
            }
        }

        // Most endpoints are ejected (or there is only one): choose among
        // the eligible ones, dropping any whose probe slot was taken meanwhile.
        let mut eligible: Vec<&Arc<Endpoint<K>>> = list
            .iter()
            .filter(|e| e.status(now) != Status::Ejected)
            .collect();
        while !eligible.is_empty() {
            let i = self.cheaper(eligible.len(), tolerance, |i| cost(eligible[i]));
            if let Some(admission) = eligible[i].admit(now) {
                return Some((eligible[i].clone(), admission));
            }
            eligible.swap_remove(i);
        }

        // Panic mode: everything is ejected; balance over all of them.
        let e = &list[self.cheaper(list.len(), tolerance, |i| cost(&list[i]))];
        let admission = match e.status(now) {
            Status::Ready => Admission::Ready,
            Status::Ejected | Status::Probeable => Admission::Panic,
        };
        Some((e.clone(), admission))
    }

    /// Power of two choices over indices `0..n` (`n >= 1`).
    fn cheaper(&self, n: usize, tolerance: f64, cost: impl Fn(usize) -> f64) -> usize {
        if n == 1 {
            return 0;
        }
        let (a, b) = self.shared.pair(n);
        if cost(b) * (1.0 + tolerance) < cost(a) {
            b
        } else {
            a
        }
    }
}

impl<K> fmt::Debug for Balancer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.endpoints.read().map(|l| l.len()).unwrap_or_default();
        f.debug_struct("Balancer").field("endpoints", &len).finish()
    }
}

#[cfg(test)]
mod tests;
