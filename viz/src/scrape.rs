//! The scraper: every interval, `GET /metrics` from every target's admin
//! address (bounded concurrency, each request bounded in time and size) and
//! commit what it says to the store.
//!
//! ```text
//!  watch<Vec<ScrapeTarget>> ─► run ─┬─ every interval ─► GET /metrics ×N ─► Store::commit
//!                                   │   (≤ concurrency,   (timeout, body   or record_failure
//!                                   │    once a target)    limit)
//!                                   └─ on change ─► Store::retain (targets that left, at once)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::fetch::{self, HttpError};
use crate::promtext::ParseError;
use crate::store::{HealthChange, Store, TargetKey};

/// One proxy to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Which pod's proxy this is; the store's key.
    pub key: TargetKey,
    /// Added to every series scraped: `namespace`, `pod`, `deployment`.
    pub labels: BTreeMap<String, String>,
    /// The proxy's admin address (`<pod-ip>:4191`).
    pub addr: SocketAddr,
}

/// How the scraper paces and bounds itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeConfig {
    /// Between the starts of two scrape rounds (10 s, Linkerd's
    /// Prometheus's `scrape_interval`).
    pub interval: Duration,
    /// For one scrape: connect, headers and body (3 s).
    pub timeout: Duration,
    /// The largest body accepted, in bytes (8 MiB; a busy proxy's is
    /// under 1 MiB).
    pub max_body: usize,
    /// Scrapes in flight at once (16).
    pub concurrency: usize,
}

/// Why one scrape failed; recorded as the target's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Connect, headers and body took longer than the timeout.
    #[error("{addr} did not answer within {}ms", timeout.as_millis())]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// Not `200 OK`.
    #[error("{addr} answered HTTP {status}")]
    Status { addr: SocketAddr, status: u16 },
    /// The body (declared or read so far) is over `max_body`.
    #[error("{addr}: the body is over the {limit}-byte limit")]
    TooLarge { addr: SocketAddr, limit: usize },
    /// The HTTP exchange failed (a reset, a malformed answer...).
    #[error("{addr}: {message}")]
    Http { addr: SocketAddr, message: String },
    /// Not the Prometheus text format; nothing of it is kept.
    #[error("{addr}: the metrics cannot be parsed: {source}")]
    Parse {
        addr: SocketAddr,
        source: ParseError,
    },
}

/// What a Prometheus server asks for.
const ACCEPT: &str = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1";

// === impl ScrapeConfig ===

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            max_body: 8 * 1024 * 1024,
            concurrency: 16,
        }
    }
}

/// Scrapes `targets` into `store` every `config.interval` until `shutdown`
/// completes. Targets that leave the list are removed from the store at
/// once. A round that takes longer than the interval delays the next, so a
/// target is scraped at most once per interval.
pub async fn run(
    config: ScrapeConfig,
    store: Arc<Store>,
    mut targets: watch::Receiver<Vec<ScrapeTarget>>,
    shutdown: impl Future,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Rounds read the latest list through their own receiver, so that this
    // one keeps watching for targets that leave while a round runs.
    let current = targets.clone();
    // False once the sender is gone: the last list is scraped on.
    let mut watching = true;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
            changed = targets.changed(), if watching => {
                watching = changed.is_ok();
                let list = targets.borrow_and_update().clone();
                prune(&store, &list);
                // New proxies are scraped at once, so their numbers start
                // an interval earlier than the next round.
                let known: HashSet<TargetKey> =
                    store.targets().into_iter().map(|t| t.key).collect();
                let fresh: Vec<ScrapeTarget> =
                    list.into_iter().filter(|t| !known.contains(&t.key)).collect();
                if !fresh.is_empty() {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = round(&config, &store, &current, fresh) => {}
                    }
                }
                continue;
            }
        }
        let list = targets.borrow_and_update().clone();
        prune(&store, &list);
        let mut scraping = std::pin::pin!(round(&config, &store, &current, list));
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = &mut scraping => break,
                changed = targets.changed(), if watching => {
                    watching = changed.is_ok();
                    prune(&store, &targets.borrow_and_update());
                }
            }
        }
        // A scrape that ended just as its target left may have added it
        // back.
        prune(&store, &targets.borrow());
    }
}

/// Scrapes every target once.
async fn round(
    config: &ScrapeConfig,
    store: &Store,
    current: &watch::Receiver<Vec<ScrapeTarget>>,
    list: Vec<ScrapeTarget>,
) {
    futures_util::stream::iter(list)
        .map(|target| async move {
            let at = SystemTime::now();
            let result = scrape(config, target.addr).await;
            // A target may have left while it was being scraped.
            if !current.borrow().iter().any(|t| t.key == target.key) {
                return;
            }
            let outcome = match result {
                Ok(body) => store
                    .ingest_scrape(&target.key, &target.labels, at, &body)
                    .map_err(|source| ScrapeError::Parse {
                        addr: target.addr,
                        source,
                    }),
                Err(e) => Err(e),
            };
            let change = match outcome {
                Ok(change) => change,
                Err(e) => {
                    let change = store.record_failure(&target.key, &target.labels, at, &e);
                    if change == HealthChange::TurnedStale {
                        tracing::warn!(
                            namespace = %target.key.namespace,
                            pod = %target.key.pod,
                            error = %e,
                            "cannot scrape a proxy's metrics; its instant values are stale",
                        );
                    }
                    change
                }
            };
            if change == HealthChange::Recovered {
                tracing::info!(
                    namespace = %target.key.namespace,
                    pod = %target.key.pod,
                    "scraping a proxy's metrics works again",
                );
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .for_each(|()| async {})
        .await;
}

/// One scrape's body.
async fn scrape(config: &ScrapeConfig, addr: SocketAddr) -> Result<bytes::Bytes, ScrapeError> {
    let authority = addr.to_string();
    let rsp = fetch::get(
        &authority,
        "/metrics",
        ACCEPT,
        config.timeout,
        config.max_body,
    )
    .await
    .map_err(|e| match e {
        HttpError::Connect(source) => ScrapeError::Connect { addr, source },
        HttpError::Timeout(timeout) => ScrapeError::Timeout { addr, timeout },
        HttpError::TooLarge(limit) => ScrapeError::TooLarge { addr, limit },
        e => ScrapeError::Http {
            addr,
            message: e.to_string(),
        },
    })?;
    if rsp.status != ::http::StatusCode::OK {
        return Err(ScrapeError::Status {
            addr,
            status: rsp.status.as_u16(),
        });
    }
    Ok(rsp.body)
}

/// Drops from the store the targets not in `list`.
fn prune(store: &Store, list: &[ScrapeTarget]) {
    let keep: HashSet<&TargetKey> = list.iter().map(|t| &t.key).collect();
    for key in store.retain(|k| keep.contains(k)) {
        tracing::debug!(namespace = %key.namespace, pod = %key.pod, "no longer scraped");
    }
}

#[cfg(test)]
mod tests;
