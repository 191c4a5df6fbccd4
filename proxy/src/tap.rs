//! The tap API (`io.linkerd.proxy.tap.Tap/Observe`): live events for the
//! requests this proxy handles, for whoever holds the tap service's
//! identity.
//!
//! ```text
//!  tap client ══mTLS (identity = STRAND_PROXY_TAP_SVC_NAME)══► :4190 server.rs
//!     ObserveRequest{limit, match, extract} ──► Taps::register ─► Session
//!  Forward::call ── Taps::is_active? (one atomic load) ──► Taps::tap ─► Tapped
//!     RequestInit ─► ResponseInit ─► ResponseEnd (bytes, grpc-status, reset)
//! ```
//!
//! Events go into a bounded queue per tap; when a client reads too slowly
//! its events are dropped and counted, and requests never wait for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::HeaderMap;
use linkerd2_proxy_api::http_types;
use linkerd2_proxy_api::tap::{self as api, tap_event};
use tokio::sync::mpsc;

use crate::metrics::{Direction, TargetLabels, Tls};

mod matcher;
mod server;
#[cfg(test)]
mod tests;

pub use matcher::{Matcher, RequestView};
pub use server::serve;

/// Events a tap may have waiting to be sent before newer ones are dropped.
const EVENT_QUEUE: usize = 1024;

/// What a tap stream carries.
type Event = Result<api::TapEvent, tonic::Status>;

/// The open taps of a proxy.
#[derive(Debug)]
pub struct Taps {
    /// How many taps are open: requests skip everything else when zero.
    active: AtomicUsize,
    sessions: Mutex<Vec<Arc<Session>>>,
    /// The random base of stream ids, fixed for the process's life.
    base: u32,
    next_stream: AtomicU64,
    next_session: AtomicU64,
    /// Events dropped because a tap client read too slowly.
    dropped: AtomicU64,
}

/// One open tap.
#[derive(Debug)]
struct Session {
    id: u64,
    matcher: Matcher,
    /// `extract.http.headers`: events carry headers and trailers.
    headers: bool,
    /// Requests this tap may still take (its `limit`).
    remaining: AtomicU32,
    tx: mpsc::Sender<Event>,
}

/// Removes its tap when dropped (the client went away).
#[derive(Debug)]
pub struct Registration {
    taps: Weak<Taps>,
    id: u64,
}

/// The connection a request came on, as taps see it.
#[derive(Debug)]
pub struct ConnMeta<'a> {
    pub direction: Direction,
    /// The client.
    pub source: SocketAddr,
    /// The original destination.
    pub destination: SocketAddr,
    /// The connection's `tls` labels: the client's inbound, the server's
    /// outbound when known before an endpoint is picked.
    pub tls: Option<&'a Tls>,
    /// Discovery's labels for the destination, when known up front.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// A request some taps took: where its later events go.
#[derive(Debug)]
pub struct Tapped {
    /// Each tap's queue, and whether it wants headers.
    sinks: Vec<(mpsc::Sender<Event>, bool)>,
    taps: Arc<Taps>,
    id: tap_event::http::StreamId,
    envelope: api::TapEvent,
    start: Instant,
    response_start: Option<Instant>,
    response_bytes: u64,
    grpc_status: Option<u32>,
    trailers: Option<HeaderMap>,
}

// === impl Taps ===

impl Default for Taps {
    fn default() -> Self {
        Taps {
            active: AtomicUsize::new(0),
            sessions: Mutex::default(),
            base: fastrand::u32(..),
            next_stream: AtomicU64::new(0),
            next_session: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Taps {
    /// Whether any tap is open. The one check every request pays.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Events dropped so far because a tap client read too slowly.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Opens a tap taking up to `limit` requests that `matcher` matches. The
    /// stream of events ends once the limit is reached and the requests it
    /// took are done, or when the registration is dropped.
    pub fn register(
        self: &Arc<Self>,
        matcher: Matcher,
        headers: bool,
        limit: u32,
    ) -> (Registration, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id,
            matcher,
            headers,
            remaining: AtomicU32::new(limit),
            tx,
        });
        let mut sessions = self.lock();
        sessions.push(session);
        self.active.store(sessions.len(), Ordering::Relaxed);
        let reg = Registration {
            taps: Arc::downgrade(self),
            id,
        };
        (reg, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, id: u64) {
        let mut sessions = self.lock();
        sessions.retain(|s| s.id != id);
        self.active.store(sessions.len(), Ordering::Relaxed);
    }

    /// Offers a request to the open taps; those that match it (and have
    /// budget left) get its `RequestInit` now and its later events through
    /// the returned [`Tapped`].
    pub fn tap<B>(
        self: &Arc<Self>,
        req: &http::Request<B>,
        conn: &ConnMeta<'_>,
    ) -> Option<Box<Tapped>> {
        let uri = req.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let authority = crate::http::request_authority(req);
        let path = uri.path();
        let view = RequestView {
            source: conn.source,
            destination: conn.destination,
            scheme,
            method: req.method(),
            authority,
            path,
            labels: conn.labels,
        };
        let mut sinks = Vec::new();
        {
            let mut sessions = self.lock();
            sessions.retain(|s| {
                if s.tx.is_closed() {
                    return false;
                }
                if !s.matcher.matches(&view) {
                    return true;
                }
                let took = s
                    .remaining
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                match took {
                    Ok(left) => {
                        sinks.push((s.tx.clone(), s.headers));
                        // The last request it may take: the tap leaves the
                        // list, and its stream ends when its requests do.
                        left > 1
                    }
                    Err(_) => false,
                }
            });
            self.active.store(sessions.len(), Ordering::Relaxed);
        }
        if sinks.is_empty() {
            return None;
        }
        let id = tap_event::http::StreamId {
            base: self.base,
            stream: self.next_stream.fetch_add(1, Ordering::Relaxed),
        };
        let envelope = envelope(conn);
        let tapped = Tapped {
            sinks,
            taps: self.clone(),
            id,
            envelope,
            start: Instant::now(),
            response_start: None,
            response_bytes: 0,
            grpc_status: None,
            trailers: None,
        };
        tapped.emit(|headers| {
            tap_event::http::Event::RequestInit(tap_event::http::RequestInit {
                id: Some(tapped.id),
                method: Some(req.method().clone().into()),
                scheme: Some(scheme.into()),
                authority: authority.unwrap_or_default().to_string(),
                path: uri
                    .path_and_query()
                    .map_or(path, |p| p.as_str())
                    .to_string(),
                headers: headers.then(|| to_headers(req.headers())),
            })
        });
        Some(Box::new(tapped))
    }
}

/// The parts of every event of a request that do not change.
fn envelope(conn: &ConnMeta<'_>) -> api::TapEvent {
    let mut source_labels = std::collections::HashMap::new();
    let mut destination_labels = std::collections::HashMap::new();
    let side = match conn.direction {
        Direction::Inbound => &mut source_labels,
        Direction::Outbound => &mut destination_labels,
    };
    if let Some(tls) = conn.tls {
        tls_labels(tls, side);
    }
    if let Some(labels) = conn.labels {
        destination_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    api::TapEvent {
        source: Some(crate::orig_dst::unmap(conn.source).into()),
        source_meta: Some(tap_event::EndpointMeta {
            labels: source_labels,
        }),
        route_meta: None,
        destination: Some(conn.destination.into()),
        destination_meta: Some(tap_event::EndpointMeta {
            labels: destination_labels,
        }),
        proxy_direction: match conn.direction {
            Direction::Inbound => tap_event::ProxyDirection::Inbound,
            Direction::Outbound => tap_event::ProxyDirection::Outbound,
        }
        .into(),
        event: None,
    }
}

/// The `tls` labels of the metrics, as tap metadata (`tls`, and
/// `no_tls_reason`, `client_id` or `server_id`).
fn tls_labels(tls: &Tls, into: &mut std::collections::HashMap<String, String>) {
    let _ = tls.visit_labels(|k, v| {
        into.insert(k.to_string(), v.to_string());
        Ok::<(), ()>(())
    });
}

fn to_headers(h: &HeaderMap) -> http_types::Headers {
    http_types::Headers {
        headers: h
            .iter()
            .map(|(k, v)| http_types::headers::Header {
                name: k.as_str().to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

// === impl Registration ===

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(taps) = self.taps.upgrade() {
            taps.remove(self.id);
        }
    }
}

// === impl Tapped ===

impl Tapped {
    /// Sends an event to every tap of the request; `make(headers)` builds
    /// it with or without headers.
    fn emit(&self, make: impl Fn(bool) -> tap_event::http::Event) {
        let mut built: [Option<api::TapEvent>; 2] = [None, None];
        for (tx, headers) in &self.sinks {
            let ev = built[usize::from(*headers)]
                .get_or_insert_with(|| {
                    let mut ev = self.envelope.clone();
                    ev.event = Some(tap_event::Event::Http(tap_event::Http {
                        event: Some(make(*headers)),
                    }));
                    ev
                })
                .clone();
            if tx.try_send(Ok(ev)).is_err() {
                self.taps.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The response's head arrived (or the proxy made one); `ep` holds the
    /// labels of where the request went.
    pub fn response_init(
        &mut self,
        status: http::StatusCode,
        headers: &HeaderMap,
        ep: &TargetLabels,
    ) {
        if self.envelope.proxy_direction == i32::from(tap_event::ProxyDirection::Outbound) {
            let meta = self
                .envelope
                .destination_meta
                .get_or_insert_with(Default::default);
            // Where the request went replaces what was known before.
            for k in ["tls", "no_tls_reason", "server_id"] {
                meta.labels.remove(k);
            }
            tls_labels(&ep.tls, &mut meta.labels);
            meta.labels.extend(ep.dst.iter().map(|(k, v)| {
                (
                    k.strip_prefix("dst_").unwrap_or(k).to_string(),
                    v.to_string(),
                )
            }));
        }
        let now = Instant::now();
        self.response_start = Some(now);
        self.grpc_status = crate::http::grpc_status_of(headers);
        let since = duration(now - self.start);
        self.emit(|with| {
            tap_event::http::Event::ResponseInit(tap_event::http::ResponseInit {
                id: Some(self.id),
                since_request_init: Some(since),
                http_status: u32::from(status.as_u16()),
                headers: with.then(|| to_headers(headers)),
            })
        });
    }

    /// Response body bytes went to the client.
    pub fn data(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }

    /// The response's trailers (they carry gRPC's status).
    pub fn trailers(&mut self, trailers: &HeaderMap) {
        self.grpc_status = crate::http::grpc_status_of(trailers).or(self.grpc_status);
        if self.sinks.iter().any(|(_, h)| *h) {
            self.trailers = Some(trailers.clone());
        }
    }

    /// The response ended: cleanly, or reset with `reset` (an HTTP/2 reason
    /// code, `INTERNAL_ERROR` when there was none).
    pub fn response_end(self, reset: Option<h2::Reason>) {
        let now = Instant::now();
        let eos = match (reset, self.grpc_status) {
            (Some(reason), _) => Some(api::Eos::from(reason)),
            (None, Some(code)) => Some(api::Eos::from_grpc_status(code)),
            (None, None) => None,
        };
        let since_request = duration(now - self.start);
        let since_response = duration(now - self.response_start.unwrap_or(now));
        self.emit(|with| {
            tap_event::http::Event::ResponseEnd(tap_event::http::ResponseEnd {
                id: Some(self.id),
                since_request_init: Some(since_request),
                since_response_init: Some(since_response),
                response_bytes: self.response_bytes,
                eos,
                trailers: if with {
                    self.trailers.as_ref().map(to_headers)
                } else {
                    None
                },
            })
        });
    }
}
