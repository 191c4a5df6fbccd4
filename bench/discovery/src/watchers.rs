//! The watchers: `Destination/Get` streams spread over a few HTTP/2
//! connections, each a task that reports, with the instant it arrived,
//! when its initial set is complete and then every change it receives.
//!
//! ```text
//!   connection 1 ── stream 0, stream k, stream 2k ... ─┐
//!   connection 2 ── stream 1, ...                      ├─► events (watcher, instant, what)
//!   ...                                                ┘
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::uri::PathAndQuery;
use linkerd2_proxy_api::destination::GetDestination;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use crate::light;

const GET_PATH: &str = "/io.linkerd.proxy.destination.Destination/Get";

/// Well above the largest message the controller sends (1,000 addresses,
/// about 250 KB), so that a change there cannot fail the run here.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Open streams; dropping this ends them.
pub struct Watchers {
    events: mpsc::UnboundedReceiver<Event>,
    tasks: JoinSet<()>,
    count: usize,
}

/// Something one watcher saw.
#[derive(Debug)]
pub struct Event {
    pub watcher: usize,
    /// When the message was decoded.
    pub at: Instant,
    pub what: What,
}

#[derive(Debug)]
pub enum What {
    /// The watcher holds as many endpoints as expected.
    Synced,
    Added(Vec<SocketAddr>),
    Removed(Vec<SocketAddr>),
    NoEndpoints,
    /// The stream failed or ended; the watcher is gone.
    Failed(String),
}

// === impl Watchers ===

impl Watchers {
    /// Connects `connections` HTTP/2 connections to `addr`, then opens
    /// `count` streams for `authority` over them, round robin.
    pub async fn open(
        addr: SocketAddr,
        authority: &str,
        count: usize,
        connections: usize,
        expected: usize,
    ) -> anyhow::Result<(Watchers, Instant)> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to the Destination API at {addr}"))?;
            channels.push(channel);
        }
        let (tx, events) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let opened = Instant::now();
        for watcher in 0..count {
            let channel = channels[watcher % connections].clone();
            let request = GetDestination {
                path: authority.to_string(),
                ..GetDestination::default()
            };
            let tx = tx.clone();
            tasks.spawn(async move {
                if let Err(e) = watch(watcher, channel, request, expected, &tx).await {
                    let what = What::Failed(format!("{e:#}"));
                    let _ = tx.send(Event {
                        watcher,
                        at: Instant::now(),
                        what,
                    });
                }
            });
        }
        Ok((
            Watchers {
                events,
                tasks,
                count,
            },
            opened,
        ))
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The next event; fails after `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> anyhow::Result<Event> {
        let ev = tokio::time::timeout_at(deadline.into(), self.events.recv())
            .await
            .context("timed out waiting for the watchers")?;
        let ev = ev.context("every watcher is gone")?;
        if let What::Failed(e) = &ev.what {
            anyhow::bail!("watcher {} failed: {e}", ev.watcher);
        }
        Ok(ev)
    }

    /// Events already received and not yet read (there should be none
    /// between rounds).
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.events.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    /// Waits until every watcher holds its initial set; returns when each
    /// did, from `opened`.
    pub async fn synced(
        &mut self,
        opened: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let deadline = opened + timeout;
        let mut after = vec![None; self.count];
        let mut done = 0;
        while done < self.count {
            let ev = self.next(deadline).await.with_context(|| {
                format!(
                    "{done} of {} watchers got their initial set within {timeout:?}",
                    self.count
                )
            })?;
            if matches!(ev.what, What::Synced) && after[ev.watcher].is_none() {
                after[ev.watcher] = Some(ev.at.duration_since(opened));
                done += 1;
            }
        }
        Ok(after.into_iter().flatten().collect())
    }

    /// Ends every stream and waits for the tasks to go.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One stream: counts addresses until it holds `expected`, then reports
/// every update.
async fn watch(
    watcher: usize,
    channel: Channel,
    request: GetDestination,
    expected: usize,
    tx: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let mut grpc = Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready().await.context("the connection is not ready")?;
    let codec = ProstCodec::<GetDestination, light::Update>::default();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(request),
            PathAndQuery::from_static(GET_PATH),
            codec,
        )
        .await
        .context("Destination/Get")?
        .into_inner();
    let mut held: usize = 0;
    let mut synced = false;
    while let Some(update) = stream.message().await.context("Destination/Get stream")? {
        let at = Instant::now();
        let what = match update.kind {
            Some(light::Kind::Add(set)) => What::Added(set.socket_addrs()),
            Some(light::Kind::Remove(set)) => What::Removed(set.socket_addrs()),
            Some(light::Kind::NoEndpoints(_)) => What::NoEndpoints,
            None => continue,
        };
        if !synced {
            // The initial set comes as `Add`s of distinct addresses (split
            // into chunks); anything else means the set is still changing.
            match &what {
                What::Added(addrs) => held += addrs.len(),
                What::Removed(addrs) => held = held.saturating_sub(addrs.len()),
                _ => held = 0,
            }
            if held >= expected {
                synced = true;
                let _ = tx.send(Event {
                    watcher,
                    at,
                    what: What::Synced,
                });
            }
            continue;
        }
        if tx.send(Event { watcher, at, what }).is_err() {
            return Ok(());
        }
    }
    anyhow::bail!("the server ended the stream")
}
