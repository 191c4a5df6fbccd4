//! Keeps an index equal to the store: the initial list and every resync are
//! loaded in one `reset`, live changes one by one.

use futures_util::{Stream, StreamExt};
use std::sync::Arc;
use strand_controller_index::Index;
use strand_controller_local::{Change, WatchEvent};

/// Applies watch events to `index` until the stream ends.
pub async fn feed(index: Arc<Index>, events: impl Stream<Item = WatchEvent>) {
    futures_util::pin_mut!(events);
    // Objects of a list (or resync) in progress: `Some` until `Synced`.
    let mut listing = Some(Vec::new());
    while let Some(ev) = events.next().await {
        match (ev.change, &mut listing) {
            (Change::Added(r), Some(batch)) => batch.push(r),
            (Change::Synced, listing @ Some(_)) => {
                let all = listing.take().unwrap_or_default();
                tracing::debug!(resources = all.len(), "index loaded");
                index.reset(all);
            }
            (Change::Resync, listing) => *listing = Some(Vec::new()),
            (Change::Added(r) | Change::Modified(r), None) => index.apply(r),
            (Change::Deleted(r), None) => index.delete(&r.key()),
            (Change::Modified(r), Some(batch)) => batch.push(r),
            (Change::Deleted(r), Some(batch)) => batch.retain(|b| b.key() != r.key()),
            (Change::Synced, None) => {}
        }
    }
}
