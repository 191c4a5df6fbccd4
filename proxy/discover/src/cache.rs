//! The per-target cache: one discovery (one policy stream, at most one
//! destination stream) per target, shared by every resolution and every
//! [`crate::Service`] handle, and dropped once nobody has used it for the
//! idle timeout.
//!
//! Liveness is counted with `Arc` strong counts: the map holds one
//! reference, each in-flight resolution and each `Service` another. A sweeper
//! evicts an entry when the map's is the only reference and the last
//! resolution is older than the idle timeout. Dropping the last reference
//! aborts the entry's task, which drops its streams (the server sees them
//! cancelled).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use linkerd2_proxy_api::outbound::traffic_spec;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::policy::{self, State};
use crate::{Ctx, DiscoveryError};

/// What is discovered: an original destination or an authority.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Addr(SocketAddr),
    /// `host:port`, the host lowercased.
    Authority(Arc<str>),
}

/// Aborts its task when dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(AbortHandle);

/// One cached target.
#[derive(Debug)]
pub(crate) struct Target {
    key: Key,
    /// Kept here (the task has a clone) so the channel stays open for as
    /// long as anyone can wait on it.
    state: watch::Sender<State>,
    last_used: Mutex<Instant>,
    _task: TaskGuard,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct Targets {
    map: Mutex<HashMap<Key, Arc<Target>>>,
    ctx: Ctx,
    idle_timeout: Duration,
    /// Closed when the `Discovery` is dropped: every target task then ends,
    /// even for targets that live `Service` handles still reference.
    shutdown: watch::Receiver<()>,
}

/// How often, as a fraction of the idle timeout, the sweeper looks: an idle
/// entry then lives at most 1.25 idle timeouts, and a 60 s timeout costs one
/// scan of the map every 15 s.
const SWEEPS_PER_IDLE_TIMEOUT: u32 = 4;

// === impl Key ===

impl Key {
    /// Parses an HTTP authority, which must name a port.
    pub(crate) fn authority(authority: &str) -> Result<Self, DiscoveryError> {
        let invalid = |reason| DiscoveryError::InvalidAuthority {
            authority: authority.to_string(),
            reason,
        };
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|_| invalid("not a valid authority"))?;
        if parsed.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        let port = parsed
            .port_u16()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("no valid port"))?;
        if parsed.host().is_empty() {
            return Err(invalid("no host"));
        }
        let host = parsed.host().to_ascii_lowercase();
        Ok(Key::Authority(format!("{host}:{port}").into()))
    }

    pub(crate) fn to_target(&self) -> traffic_spec::Target {
        match self {
            Key::Addr(addr) => traffic_spec::Target::Addr((*addr).into()),
            Key::Authority(authority) => traffic_spec::Target::Authority(authority.to_string()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Addr(addr) => addr.fmt(f),
            Key::Authority(authority) => authority.fmt(f),
        }
    }
}

// === impl TaskGuard ===

impl TaskGuard {
    pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task).abort_handle())
    }

    /// Spawns `task`, which also ends when `shutdown`'s sender is dropped.
    fn spawn_until(
        mut shutdown: watch::Receiver<()>,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self::spawn(async move {
            tokio::select! {
                () = task => {}
                _ = shutdown.changed() => {}
            }
        })
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === impl Target ===

impl Target {
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// True when the sweeper may drop the map's reference at `now`.
    fn is_expired(self: &Arc<Self>, now: Instant, idle_timeout: Duration) -> bool {
        let refusal_expired = matches!(
            *self.state.borrow(),
            State::Forward {
                expires: Some(expires),
                ..
            } if now >= expires
        );
        if refusal_expired {
            return true;
        }
        let last_used = *lock(&self.last_used);
        Arc::strong_count(self) == 1 && now.saturating_duration_since(last_used) >= idle_timeout
    }
}

// === impl Targets ===

impl Targets {
    pub(crate) fn new(ctx: Ctx, idle_timeout: Duration, shutdown: watch::Receiver<()>) -> Self {
        Self {
            map: Mutex::default(),
            ctx,
            idle_timeout,
            shutdown,
        }
    }

    /// The cached target for `key`, starting its discovery if it has none,
    /// and marking it used now.
    pub(crate) fn get(&self, key: Key) -> Arc<Target> {
        let now = Instant::now();
        let mut map = lock(&self.map);
        if let Some(target) = map.get(&key) {
            *lock(&target.last_used) = now;
            return target.clone();
        }
        let (state, _) = watch::channel(State::Pending);
        let task = policy::watch(
            self.ctx.clone(),
            key.clone(),
            state.clone(),
            self.idle_timeout,
        );
        let target = Arc::new(Target {
            key: key.clone(),
            state,
            last_used: Mutex::new(now),
            _task: TaskGuard::spawn_until(self.shutdown.clone(), task),
        });
        map.insert(key, target.clone());
        target
    }

    /// The number of cached targets.
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    fn evict_expired(&self) {
        let now = Instant::now();
        let evicted: Vec<Arc<Target>> = {
            let mut map = lock(&self.map);
            let expired: Vec<Key> = map
                .iter()
                .filter(|(_, target)| target.is_expired(now, self.idle_timeout))
                .map(|(key, _)| key.clone())
                .collect();
            expired.iter().filter_map(|key| map.remove(key)).collect()
        };
        for target in &evicted {
            tracing::debug!(dst = %target.key, "dropping idle discovery");
        }
        // Dropped here, outside the lock: the last reference aborts the task.
        drop(evicted);
    }
}

/// Evicts expired entries until the cache is dropped.
pub(crate) async fn sweep(targets: Weak<Targets>, idle_timeout: Duration) {
    let period = (idle_timeout / SWEEPS_PER_IDLE_TIMEOUT).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(targets) = targets.upgrade() else {
            return;
        };
        targets.evict_expired();
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// data that stays consistent (a map insert, an `Instant`), so carry on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
