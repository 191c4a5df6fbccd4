//! Shares the work of `Destination/Get` between the streams that watch the
//! same service port.
//!
//! Each stream still owns its own watch receiver and remembers what it last
//! sent, so it is always correct on its own: when a change arrives it asks
//! its [`Topic`] for the updates from what it sent to what is current. The
//! topic memoizes the answer per pair of views (compared by pointer), so of
//! 1,000 streams that see the same change, the first computes the diff (a
//! linear merge) and encodes it, and the other 999 send the same bytes
//! (reference-counted, see `raw`). A stream that lagged and skipped a
//! version asks for a different pair and computes it itself.
//!
//! ```text
//!   watch(svc, port) ──► stream 1 ─┐                       ┌─ memo: (v7 -> v8) => [Add x]
//!                   ├──► stream 2 ─┼─ transition(sent, cur) ┤
//!                   └──► stream n ─┘                       └─ memo: full(v8)  => [Add ..1000, ..]
//! ```
//!
//! Topics live as long as a stream holds them; the registry only keeps weak
//! references and forgets a topic when its last stream ends.

use crate::destination::endpoints;
use crate::raw;
use bytes::Bytes;
use linkerd2_proxy_api::destination::Update;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use strand_controller_core::{ServiceKey, ServicePortView};
use tokio::sync::OnceCell;

/// A batch of updates, each framed for gRPC ([`raw::frame`]), shared
/// between the streams that send it.
pub(crate) type Batch = Arc<[Bytes]>;

/// Diffs remembered per topic. Streams normally all ask for the latest
/// change; a few more entries cover streams that are one change behind while
/// the next one is already being sent.
const MEMO_DIFFS: usize = 4;

type TopicKey = (ServiceKey, u16);
type Registry = Arc<Mutex<HashMap<TopicKey, Weak<Topic>>>>;

/// The topics of one server.
#[derive(Clone, Debug, Default)]
pub(crate) struct Topics {
    registry: Registry,
}

/// The shared state of the `Get` streams of one service port.
#[derive(Debug)]
pub(crate) struct Topic {
    key: TopicKey,
    registry: Registry,
    labels: HashMap<String, String>,
    memo: Mutex<Memo>,
}

/// What a stream last told its client.
#[derive(Clone, Debug)]
pub(crate) enum Sent {
    /// Nothing yet.
    Nothing,
    /// `NoEndpoints { exists: false }`.
    Gone,
    /// The endpoints of this view.
    View(Arc<ServicePortView>),
}

type Cell = Arc<OnceCell<Batch>>;

/// Views are keyed weakly: a memo must not keep a view (~5 MB at 10,000
/// endpoints) alive after every stream has moved on. A `Weak` keeps its
/// allocation, so no later view can reuse the address: pointer equality
/// with a live `Arc` still means the same view.
#[derive(Debug, Default)]
struct Memo {
    full: Option<(Weak<ServicePortView>, Cell)>,
    diffs: VecDeque<(Weak<ServicePortView>, Weak<ServicePortView>, Cell)>,
}

// === impl Topics ===

impl Topics {
    /// The topic of a service port, created on first use.
    pub(crate) fn get(&self, service: &ServiceKey, port: u16) -> Arc<Topic> {
        let mut registry = lock(&self.registry);
        let key = (service.clone(), port);
        match registry.entry(key.clone()) {
            Entry::Occupied(mut e) => {
                if let Some(topic) = e.get().upgrade() {
                    return topic;
                }
                let topic = Topic::new(key, self.registry.clone());
                e.insert(Arc::downgrade(&topic));
                topic
            }
            Entry::Vacant(e) => {
                let topic = Topic::new(key, self.registry.clone());
                e.insert(Arc::downgrade(&topic));
                topic
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.registry).len()
    }
}

// === impl Topic ===

impl Topic {
    fn new(key: TopicKey, registry: Registry) -> Arc<Self> {
        Arc::new(Self {
            labels: endpoints::set_labels(&key.0),
            key,
            registry,
            memo: Mutex::default(),
        })
    }

    /// The updates that take a client from `sent` to `current` (possibly none).
    pub(crate) async fn transition(
        &self,
        sent: &Sent,
        current: &Option<Arc<ServicePortView>>,
    ) -> Batch {
        match (sent, current) {
            (Sent::Gone, None) => Batch::from([]),
            (Sent::Nothing | Sent::View(_), None) => encode(vec![endpoints::no_endpoints(false)]),
            (Sent::Nothing | Sent::Gone, Some(new)) => self.full(new).await,
            (Sent::View(old), Some(new)) if Arc::ptr_eq(old, new) => Batch::from([]),
            // After `NoEndpoints` the client holds nothing: send everything,
            // which the other streams most likely need too.
            (Sent::View(old), Some(new))
                if old.endpoints.is_empty() && !new.endpoints.is_empty() =>
            {
                self.full(new).await
            }
            (Sent::View(old), Some(new)) => self.diff(old, new).await,
        }
    }

    async fn full(&self, view: &Arc<ServicePortView>) -> Batch {
        let cell = {
            let mut memo = lock(&self.memo);
            match &memo.full {
                Some((v, cell)) if same(v, view) => cell.clone(),
                _ => {
                    let cell = Cell::default();
                    memo.full = Some((Arc::downgrade(view), cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_init(|| async { encode(endpoints::full(&self.labels, &view.endpoints)) })
            .await
            .clone()
    }

    async fn diff(&self, old: &Arc<ServicePortView>, new: &Arc<ServicePortView>) -> Batch {
        let cell = {
            let mut memo = lock(&self.memo);
            let hit = memo
                .diffs
                .iter()
                .find(|(o, n, _)| same(o, old) && same(n, new))
                .map(|(_, _, cell)| cell.clone());
            match hit {
                Some(cell) => cell,
                None => {
                    let cell = Cell::default();
                    if memo.diffs.len() == MEMO_DIFFS {
                        memo.diffs.pop_front();
                    }
                    memo.diffs
                        .push_back((Arc::downgrade(old), Arc::downgrade(new), cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_init(|| async {
            encode(endpoints::diff(
                &self.labels,
                &old.endpoints,
                &new.endpoints,
            ))
        })
        .await
        .clone()
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let mut registry = lock(&self.registry);
        // A new topic may already have replaced this one under the same key.
        if let Some(weak) = registry.get(&self.key)
            && weak.strong_count() == 0
        {
            registry.remove(&self.key);
        }
    }
}

// === impl Sent ===

impl From<Option<Arc<ServicePortView>>> for Sent {
    fn from(view: Option<Arc<ServicePortView>>) -> Self {
        match view {
            Some(v) => Sent::View(v),
            None => Sent::Gone,
        }
    }
}

fn same(key: &Weak<ServicePortView>, view: &Arc<ServicePortView>) -> bool {
    std::ptr::eq(key.as_ptr(), Arc::as_ptr(view))
}

fn encode(updates: Vec<Update>) -> Batch {
    updates.iter().map(raw::frame).collect()
}

/// The maps hold no invariant a panicking holder could break halfway, so a
/// poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
