//! Counters for the streaming APIs, kept as plain atomics so that the metrics
//! layer (prometheus-client, later) can read them without this crate
//! depending on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-API stream counters of one [`Discovery`](crate::Discovery).
#[derive(Debug, Default)]
pub struct Stats {
    get: ApiStats,
    get_profile: ApiStats,
    outbound_watch: ApiStats,
    inbound_watch: ApiStats,
}

/// The streaming calls that are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamApi {
    /// `io.linkerd.proxy.destination.Destination/Get`
    DestinationGet,
    /// `io.linkerd.proxy.destination.Destination/GetProfile`
    DestinationGetProfile,
    /// `io.linkerd.proxy.outbound.OutboundPolicies/Watch`
    OutboundWatch,
    /// `io.linkerd.proxy.inbound.InboundServerPolicies/WatchPort`
    InboundWatchPort,
}

/// Counters of one streaming API.
#[derive(Debug, Default)]
pub struct ApiStats {
    active: AtomicU64,
    opened: AtomicU64,
    updates: AtomicU64,
}

/// Held by one open stream: counts it as active until dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    stats: Arc<Stats>,
    api: StreamApi,
}

// === impl Stats ===

impl Stats {
    pub fn api(&self, api: StreamApi) -> &ApiStats {
        match api {
            StreamApi::DestinationGet => &self.get,
            StreamApi::DestinationGetProfile => &self.get_profile,
            StreamApi::OutboundWatch => &self.outbound_watch,
            StreamApi::InboundWatchPort => &self.inbound_watch,
        }
    }

    /// Open streams of all APIs.
    pub fn active_streams(&self) -> u64 {
        StreamApi::ALL
            .iter()
            .map(|api| self.api(*api).active_streams())
            .sum()
    }
}

// === impl StreamApi ===

impl StreamApi {
    pub const ALL: [StreamApi; 4] = [
        StreamApi::DestinationGet,
        StreamApi::DestinationGetProfile,
        StreamApi::OutboundWatch,
        StreamApi::InboundWatchPort,
    ];

    /// The gRPC path, usable as a metric label.
    pub fn path(self) -> &'static str {
        match self {
            Self::DestinationGet => "/io.linkerd.proxy.destination.Destination/Get",
            Self::DestinationGetProfile => "/io.linkerd.proxy.destination.Destination/GetProfile",
            Self::OutboundWatch => "/io.linkerd.proxy.outbound.OutboundPolicies/Watch",
            Self::InboundWatchPort => "/io.linkerd.proxy.inbound.InboundServerPolicies/WatchPort",
        }
    }
}

// === impl ApiStats ===

impl ApiStats {
    /// Streams open now.
    pub fn active_streams(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Streams opened since start.
    pub fn streams_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Messages handed to the transport since start (one `Update`, profile or
    /// policy each).
    pub fn updates_sent(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }
}

// === impl StreamGuard ===

impl StreamGuard {
    pub(crate) fn new(stats: Arc<Stats>, api: StreamApi) -> Self {
        let s = stats.api(api);
        s.opened.fetch_add(1, Ordering::Relaxed);
        s.active.fetch_add(1, Ordering::Relaxed);
        Self { stats, api }
    }

    pub(crate) fn sent(&self) {
        self.stats
            .api(self.api)
            .updates
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.stats
            .api(self.api)
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}
