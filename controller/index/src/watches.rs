//! One watch channel per watched (service, port), shared by all its receivers.

use std::collections::HashMap;
use std::sync::Arc;
use strand_controller_core::{ServiceKey, ServicePortView, ServiceWatch};
use tokio::sync::watch;

pub(crate) type View = Option<Arc<ServicePortView>>;

/// Dead entries (no receivers) of services that never change again are only
/// found by a full sweep. One runs when `watch` adds an entry and the map has
/// doubled since the last sweep, so sweeping is amortized O(1) per new entry
/// and dead entries stay about as many as live ones at most. 64 keeps small
/// indexes from sweeping on every other call.
const MIN_SWEEP: usize = 64;

#[derive(Debug)]
pub(crate) struct Watches {
    by_service: HashMap<ServiceKey, HashMap<u16, watch::Sender<View>>>,
    /// Entries in `by_service`, summed over services.
    len: usize,
    /// `len` at which the next sweep runs.
    sweep_at: usize,
}

// === impl Watches ===

impl Default for Watches {
    fn default() -> Self {
        Self {
            by_service: HashMap::new(),
            len: 0,
            sweep_at: MIN_SWEEP,
        }
    }
}

impl Watches {
    /// A new receiver of an existing channel. It may have had no receivers
    /// for a while: its value is current all the same, since updates keep
    /// every entry they do not drop up to date.
    pub(crate) fn subscribe(&self, key: &ServiceKey, port: u16) -> Option<ServiceWatch> {
        let tx = self.by_service.get(key)?.get(&port)?;
        Some(tx.subscribe())
    }

    /// Adds a channel starting at `view`, sweeping first when one is due.
    pub(crate) fn insert(&mut self, key: &ServiceKey, port: u16, view: View) -> ServiceWatch {
        if self.len >= self.sweep_at {
            self.sweep();
            self.sweep_at = (self.len * 2).max(MIN_SWEEP);
        }
        let (tx, rx) = watch::channel(view);
        let ports = self.by_service.entry(key.clone()).or_default();
        // Callers subscribe to an existing entry rather than replace it; the
        // check only keeps `len` right should that ever change.
        if ports.insert(port, tx).is_none() {
            self.len += 1;
        }
        rx
    }

    /// Recomputes the views of `key`'s watched ports with `compute` and
    /// publishes those that differ from what receivers hold, so nobody is
    /// woken for nothing. Entries without receivers are dropped instead of
    /// recomputed. Replaced values go to `replaced`, for the caller to free
    /// after it releases its locks.
    pub(crate) fn publish(
        &mut self,
        key: &ServiceKey,
        mut compute: impl FnMut(u16) -> View,
        replaced: &mut Vec<View>,
    ) {
        let Some(ports) = self.by_service.get_mut(key) else {
            return;
        };
        let before = ports.len();
        ports.retain(|&port, tx| {
            if tx.receiver_count() == 0 {
                return false;
            }
            let view = compute(port);
            // Arc's equality checks the pointer first, then the contents.
            if *tx.borrow() != view {
                replaced.push(tx.send_replace(view));
            }
            true
        });
        self.len -= before - ports.len();
        if ports.is_empty() {
            self.by_service.remove(key);
        }
    }

    /// The number of entries that still have receivers (drops the others).
    pub(crate) fn count(&mut self) -> usize {
        self.sweep();
        self.len
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drops every entry without receivers.
    fn sweep(&mut self) {
        self.by_service.retain(|_, ports| {
            ports.retain(|_, tx| tx.receiver_count() > 0);
            !ports.is_empty()
        });
        self.len = self.by_service.values().map(HashMap::len).sum();
    }
}
