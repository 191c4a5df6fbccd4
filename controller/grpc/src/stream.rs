//! One way to turn a source of updates into a gRPC response stream: it ends
//! on shutdown, counts what it sends, and owns everything it needs, so that
//! dropping it (tonic does when the client resets the stream or the
//! connection closes) releases the watch and the stream's slot in [`Stats`].
//!
//! [`Stats`]: crate::Stats

use crate::stats::StreamGuard;
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::watch;

/// A boxed response stream, as the generated server traits want.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Produces the messages of one stream.
pub(crate) trait Updates: Send + 'static {
    type Item: Send + 'static;

    /// The next message, waiting as long as needed; `None` ends the stream.
    ///
    /// Dropped unfinished only when the whole stream ends, so it need not be
    /// cancel-safe.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;
}

/// Resolves once the server shuts down.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// Yields one message, then nothing until the stream ends.
pub(crate) struct Once<T>(Option<T>);

/// Wraps `updates` into a response stream that ends on `shutdown`.
pub(crate) fn serve<U: Updates>(
    updates: U,
    guard: StreamGuard,
    shutdown: Shutdown,
) -> ResponseStream<U::Item> {
    Box::pin(futures_util::stream::unfold(
        (updates, guard, shutdown),
        |(mut updates, guard, mut shutdown)| async move {
            let item = tokio::select! {
                biased;
                () = shutdown.signaled() => None,
                item = updates.next() => item,
            }?;
            guard.sent();
            Some((Ok(item), (updates, guard, shutdown)))
        },
    ))
}

// === impl Shutdown ===

impl Shutdown {
    pub(crate) fn new(rx: watch::Receiver<bool>) -> Self {
        Self(rx)
    }

    /// Resolves when shutdown is signalled, or when the signal's sender is
    /// gone (nothing could signal it any more, so streams must not outlive it).
    pub(crate) async fn signaled(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }
}

// === impl Once ===

impl<T> Once<T> {
    pub(crate) fn new(item: T) -> Self {
        Self(Some(item))
    }
}

impl<T: Send + 'static> Updates for Once<T> {
    type Item = T;

    async fn next(&mut self) -> Option<T> {
        match self.0.take() {
            Some(item) => Some(item),
            // The answer never changes; holding the stream open is what
            // tells the proxy that it is still current.
            None => std::future::pending().await,
        }
    }
}
