//! Watching the store: list and watch in one, and resync instead of
//! blocking the writer when a watcher falls behind.

use futures_util::Stream;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use strand_controller_core::{Resource, parse_resource_json};
use tokio::sync::broadcast;

use super::Shared;

/// One event of a watch.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// The log sequence number of the change (for `ADDED` from a list, and
    /// for `RESYNC`/`SYNCED`, the store's version when the list was taken).
    pub resource_version: u64,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Added(Resource),
    Modified(Resource),
    /// The object as it was last stored.
    Deleted(Resource),
    /// The watcher fell behind and missed events: forget everything; every
    /// resource follows as `ADDED`, then `SYNCED`.
    Resync,
    /// Every resource present when the watch (or resync) began has been sent.
    Synced,
}

/// A subscription to the store's changes. It does not keep the store open:
/// once the store is dropped, `next` returns `None`.
pub struct Watch {
    shared: Weak<Shared>,
    rx: broadcast::Receiver<WatchEvent>,
    pending: VecDeque<WatchEvent>,
}

// === impl Watch ===

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(super) fn new(shared: &Arc<Shared>) -> Watch {
        let (rx, pending) = list(shared, false);
        Watch {
            shared: Arc::downgrade(shared),
            rx,
            pending,
        }
    }

    /// The next event; `None` once the store is gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            match self.rx.recv().await {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "a store watcher fell behind; resyncing it");
                    let shared = self.shared.upgrade()?;
                    (self.rx, self.pending) = list(&shared, true);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = WatchEvent> + Send + 'static {
        futures_util::stream::unfold(self, |mut w| async move {
            let ev = w.next().await?;
            Some((ev, w))
        })
    }
}

/// Subscribes and lists under the state's read lock: commits publish under
/// the write lock, so each change is either in the list or received, never
/// both or neither.
fn list(shared: &Shared, resync: bool) -> (broadcast::Receiver<WatchEvent>, VecDeque<WatchEvent>) {
    let state = shared.read_state();
    let rx = shared.events.subscribe();
    let rv = state.seq();
    let event = |change| WatchEvent {
        resource_version: rv,
        change,
    };
    let mut pending = VecDeque::new();
    if resync {
        pending.push_back(event(Change::Resync));
    }
    pending.extend(state.objects().map(|r| event(Change::Added(r.clone()))));
    pending.push_back(event(Change::Synced));
    (rx, pending)
}

// === impl WatchEvent ===

impl WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `RESYNC` or `SYNCED`.
    pub fn type_name(&self) -> &'static str {
        match self.change {
            Change::Added(_) => "ADDED",
            Change::Modified(_) => "MODIFIED",
            Change::Deleted(_) => "DELETED",
            Change::Resync => "RESYNC",
            Change::Synced => "SYNCED",
        }
    }

    pub fn object(&self) -> Option<&Resource> {
        match &self.change {
            Change::Added(r) | Change::Modified(r) | Change::Deleted(r) => Some(r),
            Change::Resync | Change::Synced => None,
        }
    }

    /// `{"type": "ADDED", "resourceVersion": 7, "object": {...}}`; `RESYNC`
    /// and `SYNCED` have no object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": self.type_name(),
            "resourceVersion": self.resource_version,
        });
        if let (Some(obj), Some(r)) = (v.as_object_mut(), self.object()) {
            obj.insert("object".into(), r.to_json());
        }
        v
    }

    pub fn from_json(v: Value) -> Result<WatchEvent, String> {
        let Value::Object(mut obj) = v else {
            return Err("a watch event must be a JSON object".into());
        };
        let resource_version = obj
            .get("resourceVersion")
            .and_then(Value::as_u64)
            .ok_or("a watch event has no resourceVersion")?;
        let ty = match obj.remove("type") {
            Some(Value::String(t)) => t,
            _ => return Err("a watch event has no type".into()),
        };
        let object = |obj: &mut Map<String, Value>| {
            let v = obj.remove("object").ok_or("a watch event has no object")?;
            parse_resource_json(v).map_err(|e| format!("a watch event's object: {e}"))
        };
        let change = match ty.as_str() {
            "ADDED" => Change::Added(object(&mut obj)?),
            "MODIFIED" => Change::Modified(object(&mut obj)?),
            "DELETED" => Change::Deleted(object(&mut obj)?),
            "RESYNC" => Change::Resync,
            "SYNCED" => Change::Synced,
            other => return Err(format!("unknown watch event type {other:?}")),
        };
        Ok(WatchEvent {
            resource_version,
            change,
        })
    }
}
