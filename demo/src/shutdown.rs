//! A shutdown signal shared by every server and task of one process: the
//! binary fires it on SIGTERM or SIGINT, a test by dropping its [`Trigger`].

use std::time::Duration;

use tokio::sync::watch;

/// How long servers wait for in-flight requests once shutdown begins. A web
/// request makes at most two 5 s gRPC calls, but a pod being stopped should
/// not hang on a dead dependency: 5 s covers every healthy request and stays
/// well inside Kubernetes' 30 s grace period.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Fires the [`Shutdown`] signal, explicitly or when dropped.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Completes once shutdown has begun. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new signal and the trigger that fires it.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

// === impl Trigger ===

impl Trigger {
    /// Begins shutdown.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

// === impl Shutdown ===

impl Shutdown {
    /// Waits until shutdown begins: the trigger fired or was dropped.
    pub async fn signaled(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone, which also means shutdown.
        let _ = rx.wait_for(|fired| *fired).await;
    }

    /// Whether shutdown has begun.
    pub fn is_signaled(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_on_trigger_or_drop() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_signaled());
        trigger.fire();
        shutdown.signaled().await;
        assert!(shutdown.is_signaled());

        let (trigger, shutdown) = channel();
        drop(trigger);
        shutdown.signaled().await;
        assert!(shutdown.is_signaled());
    }
}
