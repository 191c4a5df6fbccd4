//! Handles returned by a pick. A handle holds its endpoint's state, so it
//! stays valid (and keeps recording) after discovery removes the endpoint.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::endpoint::{Admission, Endpoint};

/// How an endpoint was admitted by a pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickKind {
    /// The endpoint was in rotation.
    Ready,
    /// The endpoint is ejected and this is its single probe: its outcome
    /// restores the endpoint or ejects it for a longer backoff.
    Probe,
    /// Every endpoint was ejected, so one was picked anyway ("panic mode").
    /// A success restores the endpoint; a failure changes nothing.
    Panic,
}

/// One request in flight to an endpoint, counted as pending until dropped.
///
/// Call [`complete`](Self::complete) when the response head arrives or
/// [`connect_failed`](Self::connect_failed) when no connection could be made;
/// dropping it without either means the request was cancelled.
pub struct RequestHandle<K> {
    endpoint: Arc<Endpoint<K>>,
    admission: Admission,
    /// Clock nanoseconds at the pick.
    started: u64,
    resolved: bool,
}

/// One opaque TCP connection to an endpoint, counted as open until dropped.
///
/// Call [`connected`](Self::connected) once the connection is established
/// (this resets failure accrual) or [`connect_failed`](Self::connect_failed)
/// if it could not be; only the first of these counts.
pub struct ConnectionHandle<K> {
    endpoint: Arc<Endpoint<K>>,
    admission: Admission,
    resolved: AtomicBool,
}

// === impl PickKind ===

impl From<Admission> for PickKind {
    fn from(a: Admission) -> Self {
        match a {
            Admission::Ready => Self::Ready,
            Admission::Probe(_) => Self::Probe,
            Admission::Panic => Self::Panic,
        }
    }
}

// === impl RequestHandle ===

impl<K> RequestHandle<K> {
    pub(crate) fn new(endpoint: Arc<Endpoint<K>>, admission: Admission, now: u64) -> Self {
        endpoint.pending.fetch_add(1, Relaxed);
        Self {
            endpoint,
            admission,
            started: now,
            resolved: false,
        }
    }

    /// The endpoint this request should be sent to.
    pub fn key(&self) -> &K {
        &self.endpoint.key
    }

    pub fn kind(&self) -> PickKind {
        self.admission.into()
    }

    /// The request is being sent now: time its RTT from here, so that
    /// connecting (a new connection's handshake) is not counted as the
    /// endpoint's latency.
    pub fn sending(&mut self) {
        self.started = self.endpoint.shared.now();
    }
}

impl<K: fmt::Debug> RequestHandle<K> {
    /// The response head arrived: records the RTT since the pick and counts
    /// as a success for failure accrual.
    pub fn complete(mut self) {
        let now = self.endpoint.shared.now();
        let rtt_ns = now.saturating_sub(self.started) as f64;
        self.endpoint.observe(rtt_ns, now);
        self.endpoint.succeeded(self.admission);
        self.resolved = true;
    }

    /// Connecting to the endpoint failed (refused, unreachable, timed out).
    /// No RTT is recorded: a fast failure must not make the endpoint look
    /// fast and attract more traffic.
    pub fn connect_failed(mut self) {
        let now = self.endpoint.shared.now();
        self.endpoint.failed(self.admission, now);
        self.resolved = true;
    }
}

impl<K> Drop for RequestHandle<K> {
    fn drop(&mut self) {
        self.endpoint.pending.fetch_sub(1, Relaxed);
        if !self.resolved {
            self.endpoint.abandoned(self.admission);
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for RequestHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHandle")
            .field("key", &self.endpoint.key)
            .field("kind", &self.kind())
            .finish()
    }
}

// === impl ConnectionHandle ===

impl<K> ConnectionHandle<K> {
    pub(crate) fn new(endpoint: Arc<Endpoint<K>>, admission: Admission) -> Self {
        endpoint.connections.fetch_add(1, Relaxed);
        Self {
            endpoint,
            admission,
            resolved: AtomicBool::new(false),
        }
    }

    /// The endpoint this connection should be made to.
    pub fn key(&self) -> &K {
        &self.endpoint.key
    }

    pub fn kind(&self) -> PickKind {
        self.admission.into()
    }
}

impl<K: fmt::Debug> ConnectionHandle<K> {
    /// The connection is established: resets failure accrual (and restores
    /// the endpoint if this was its probe). The handle stays open.
    pub fn connected(&self) {
        if !self.resolved.swap(true, Relaxed) {
            self.endpoint.succeeded(self.admission);
        }
    }

    /// Connecting failed: feeds failure accrual and closes the handle.
    pub fn connect_failed(self) {
        if !self.resolved.swap(true, Relaxed) {
            let now = self.endpoint.shared.now();
            self.endpoint.failed(self.admission, now);
        }
    }
}

impl<K> Drop for ConnectionHandle<K> {
    fn drop(&mut self) {
        self.endpoint.connections.fetch_sub(1, Relaxed);
        if !self.resolved.load(Relaxed) {
            self.endpoint.abandoned(self.admission);
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for ConnectionHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("key", &self.endpoint.key)
            .field("kind", &self.kind())
            .finish()
    }
}
