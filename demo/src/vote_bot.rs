//! `strand-demo vote-bot`: steady traffic against web, and an account of
//! what it saw that a test can hold the mesh's metrics against.
//!
//! ```text
//!  tick every 1/rps s ──▶ GET /api/list            (every 5th tick)
//!                    └──▶ GET /api/vote?choice=X  (the other ticks)
//!  GET /stats ◀── counters: requests = success (2xx) + failure (the rest)
//! ```
//!
//! Requests go over a pool of HTTP/1.1 keep-alive connections; a name that
//! does not resolve, a refused connection or a timeout is one failed
//! request, logged, and the bot carries on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::{Error, ServiceAddr, Shutdown, emoji, shutdown};

mod flags;

/// `strand-demo vote-bot` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct VoteBotArgs {
    /// The web service, HOST:PORT; the name is resolved on every new
    /// connection.
    #[arg(long, default_value = "web-svc.emojivoto:80", value_name = "HOST:PORT")]
    pub web: ServiceAddr,
    /// Requests per second, evenly spaced (one per tick, never in bursts).
    #[arg(long, default_value = "10", value_parser = flags::parse_rps)]
    pub rps: f64,
    /// Address to serve `GET /stats` (JSON counters) on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Stop after this long (such as 90s, 5m, 1h; a bare number is seconds);
    /// without it, run until SIGTERM or SIGINT.
    #[arg(long, value_parser = flags::parse_duration)]
    pub duration: Option<Duration>,
    /// Like emojivoto's vote-bot, vote for this emoji 15% of the time (the
    /// one voting fails on, so failures show); the other votes pick from
    /// the catalog at random. An empty value means always at random.
    #[arg(long, default_value = crate::voting::DEFAULT_FAIL_SHORTCODE, value_name = "SHORTCODE")]
    pub favorite: String,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where web is.
    pub web: ServiceAddr,
    /// Requests per second; finite and positive.
    pub rps: f64,
    /// How long to run; until shutdown if `None`.
    pub duration: Option<Duration>,
    /// The emoji voted for [`FAVORITE_SHARE`] of the time, if any.
    pub favorite: Option<String>,
}

/// Counters shared by the generator and `/stats`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Stats {
    inner: Arc<Mutex<Tally>>,
    started: Instant,
}

/// Request counts. A request is counted once its outcome is known, so
/// `requests == success + failure` always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests completed.
    pub requests: u64,
    /// Those answered 2xx.
    pub success: u64,
    /// The rest: any other status, a connection error, a timeout.
    pub failure: u64,
}

/// The body of `GET /stats`: cumulative since the bot started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// All paths together.
    #[serde(flatten)]
    pub total: Counts,
    /// By request path (`/api/list`, `/api/vote`).
    pub by_path: BTreeMap<String, Counts>,
    /// Ticks on which no request was sent because [`MAX_IN_FLIGHT`] were
    /// already outstanding; not part of `requests`.
    pub skipped: u64,
    /// Seconds since the bot started.
    pub uptime_s: f64,
}

/// The share of votes that go to the favorite: emojivoto's vote-bot votes
/// for `:doughnut:` 15% of the time.
pub const FAVORITE_SHARE: f64 = 0.15;

/// Every this many ticks, list instead of vote: the roughly one list per
/// vote-and-a-few of a person browsing the page.
const LIST_EVERY: u64 = 5;

/// A request's deadline, connecting and reading the body included: web's
/// own calls time out after 5 s each, so a slower answer is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Outstanding requests at most. At the default 10 rps and a 5 s timeout a
/// dead web holds 50; the cap only keeps a very high `--rps` against a hung
/// web from exhausting memory or file descriptors.
pub const MAX_IN_FLIGHT: usize = 1024;

/// How often the one-line summary is printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Tally {
    total: Counts,
    by_path: BTreeMap<&'static str, Counts>,
    skipped: u64,
}

/// One request to make.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    List,
    Vote(String),
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the bot: serves `/stats` on `listener` and generates traffic until
/// `config.duration` has passed or `shutdown` fires.
pub async fn run(listener: TcpListener, config: &Config, shutdown: Shutdown) -> Result<(), Error> {
    let stats = Stats::new();
    let (stop_stats, stats_shutdown) = shutdown::channel();
    tracing::info!(
        addr = %listener.local_addr()?,
        web = %config.web,
        rps = config.rps,
        "vote-bot serving /stats"
    );
    let server = tokio::spawn(serve_stats(listener, stats.clone(), stats_shutdown));
    generate(config, &stats, shutdown).await;
    stop_stats.fire();
    match server.await {
        Ok(result) => result,
        Err(e) => Err(Error::Io(std::io::Error::other(e))),
    }
}

/// Sends requests to web at `config.rps` until `config.duration` has passed
/// or `shutdown` fires, then waits for those in flight. Prints a summary
/// every 10 s and at the end.
pub async fn generate(config: &Config, stats: &Stats, shutdown: Shutdown) {
    let client = http_client();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rps));
    // After a stall (a suspended VM, say), carry on at the rate rather than
    // catching up in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report =
        tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
    let stop = async {
        match config.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut stop = std::pin::pin!(stop);
    let mut rng = fastrand::Rng::new();
    let mut in_flight = JoinSet::new();
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.signaled() => break,
            () = &mut stop => break,
            _ = report.tick() => println!("{}", summary_line(&stats.snapshot())),
            _ = ticks.tick() => {
                while in_flight.try_join_next().is_some() {}
                if in_flight.len() >= MAX_IN_FLIGHT {
                    stats.skip();
                    continue;
                }
                let target = Target::pick(tick, config.favorite.as_deref(), &mut rng);
                tick += 1;
                let uri = format!("http://{}{}", config.web, target.path_and_query());
                let trace = tick.is_multiple_of(TRACE_EVERY).then(|| new_traceparent(&mut rng));
                in_flight.spawn(request(client.clone(), uri, target.path(), stats.clone(), trace));
            }
        }
    }
    // Each request ends within REQUEST_TIMEOUT, so this does not hang.
    while in_flight.join_next().await.is_some() {}
    println!("{}", summary_line(&stats.snapshot()));
}

/// Serves `GET /stats` (and `GET /healthz`) on `listener` until `shutdown`.
pub async fn serve_stats(
    listener: TcpListener,
    stats: Stats,
    shutdown: Shutdown,
) -> Result<(), Error> {
    crate::serve::http1(listener, shutdown, move |req: Request<Incoming>| {
        let stats = stats.clone();
        async move {
            let (status, body) = match (req.method().as_str(), req.uri().path()) {
                ("GET", "/stats") => match serde_json::to_vec(&stats.snapshot()) {
                    Ok(body) => (StatusCode::OK, Bytes::from(body)),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string().into()),
                },
                ("GET", "/healthz") => (StatusCode::OK, Bytes::from_static(b"ok\n")),
                _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
            };
            let mut rsp = Response::new(Full::new(body));
            *rsp.status_mut() = status;
            let content_type = if status == StatusCode::OK && req.uri().path() == "/stats" {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            rsp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            rsp
        }
    })
    .await
}

/// A pooled keep-alive HTTP/1.1 client that resolves names with the
/// system resolver on every new connection.
fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// One request in this many starts a sampled trace (a W3C `traceparent`),
/// so that the mesh's proxies record spans of it along its way.
pub const TRACE_EVERY: u64 = 10;

/// A new sampled W3C trace context: random trace and span ids.
fn new_traceparent(rng: &mut fastrand::Rng) -> String {
    let nonzero = |rng: &mut fastrand::Rng| loop {
        let v = rng.u64(..);
        if v != 0 {
            return v;
        }
    };
    let (hi, lo, span) = (nonzero(rng), nonzero(rng), nonzero(rng));
    format!("00-{hi:016x}{lo:016x}-{span:016x}-01")
}

/// Makes one request (with `trace` as its `traceparent`) and counts its
/// outcome.
async fn request(
    client: HttpClient,
    uri: String,
    path: &'static str,
    stats: Stats,
    trace: Option<String>,
) {
    let exchange = async {
        let mut req = Request::get(uri.as_str());
        if let Some(trace) = &trace {
            req = req.header("traceparent", trace);
        }
        let req = req.body(Empty::new())?;
        let rsp = client.request(req).await?;
        let status = rsp.status();
        // Read to the end so the connection goes back to the pool.
        rsp.into_body().collect().await?;
        Ok::<_, BoxError>(status)
    };
    let ok = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(status)) if status.is_success() => true,
        Ok(Ok(status)) => {
            tracing::info!(%uri, %status, "request failed");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(%uri, "request failed: {}", error_chain(e.as_ref()));
            false
        }
        Err(_) => {
            tracing::warn!(%uri, "request timed out after {REQUEST_TIMEOUT:?}");
            false
        }
    };
    stats.record(path, ok);
}

/// An error and its sources, `outer: inner: ...`: hyper's client errors
/// say little at the top ("client error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `vote-bot: 120 requests, 100 ok, 20 failed (16.7%), 12.0 s; /api/list 24/24 ok, ...`
fn summary_line(s: &StatsSnapshot) -> String {
    let percent = if s.total.requests == 0 {
        0.0
    } else {
        100.0 * s.total.failure as f64 / s.total.requests as f64
    };
    let paths: Vec<String> = s
        .by_path
        .iter()
        .map(|(path, c)| format!("{path} {}/{} ok", c.success, c.requests))
        .collect();
    let mut line = format!(
        "vote-bot: {} requests, {} ok, {} failed ({percent:.1}%), {:.1} s",
        s.total.requests, s.total.success, s.total.failure, s.uptime_s
    );
    if !paths.is_empty() {
        line.push_str("; ");
        line.push_str(&paths.join(", "));
    }
    if s.skipped > 0 {
        line.push_str(&format!("; {} ticks skipped", s.skipped));
    }
    line
}

// === impl VoteBotArgs ===

impl VoteBotArgs {
    /// The generator's configuration.
    pub fn config(&self) -> Config {
        Config {
            web: self.web.clone(),
            rps: self.rps,
            duration: self.duration,
            favorite: Some(self.favorite.clone()).filter(|f| !f.is_empty()),
        }
    }
}

// === impl Stats ===

impl Stats {
    /// Zero counters; uptime starts now.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The counters so far.
    pub fn snapshot(&self) -> StatsSnapshot {
        let tally = self.lock();
        StatsSnapshot {
            total: tally.total,
            by_path: tally
                .by_path
                .iter()
                .map(|(path, counts)| (path.to_string(), *counts))
                .collect(),
            skipped: tally.skipped,
            // Milliseconds are plenty for comparing rates.
            uptime_s: (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }

    fn record(&self, path: &'static str, ok: bool) {
        let mut tally = self.lock();
        let by_path = tally.by_path.entry(path).or_default();
        by_path.add(ok);
        tally.total.add(ok);
    }

    fn skip(&self) {
        self.lock().skipped += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // The counters stay consistent even if a holder panicked: every
        // update is a few additions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Counts ===

impl Counts {
    fn add(&mut self, ok: bool) {
        self.requests += 1;
        if ok {
            self.success += 1;
        } else {
            self.failure += 1;
        }
    }
}

// === impl Target ===

impl Target {
    /// What tick number `tick` asks for: a list every [`LIST_EVERY`]
    /// ticks, otherwise a vote, for `favorite` [`FAVORITE_SHARE`] of the
    /// time and else for a random emoji from the catalog.
    fn pick(tick: u64, favorite: Option<&str>, rng: &mut fastrand::Rng) -> Self {
        if tick.is_multiple_of(LIST_EVERY) {
            return Self::List;
        }
        match favorite {
            Some(favorite) if rng.f64() < FAVORITE_SHARE => Self::Vote(favorite.to_string()),
            _ => {
                let (shortcode, _) = emoji::CATALOG[rng.usize(..emoji::CATALOG.len())];
                Self::Vote(shortcode.to_string())
            }
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Self::List => "/api/list",
            Self::Vote(_) => "/api/vote",
        }
    }

    fn path_and_query(&self) -> String {
        match self {
            Self::List => self.path().to_string(),
            Self::Vote(shortcode) => format!("{}?choice={}", self.path(), flags::encode(shortcode)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_list_then_vote() {
        let mut rng = fastrand::Rng::with_seed(7);
        let targets: Vec<Target> = (0..1000)
            .map(|t| Target::pick(t, Some(":doughnut:"), &mut rng))
            .collect();
        let lists = targets.iter().filter(|t| **t == Target::List).count();
        assert_eq!(lists, 200);
        assert_eq!(targets[0], Target::List);
        assert_eq!(targets[5], Target::List);
        let doughnuts = targets
            .iter()
            .filter(|t| **t == Target::Vote(":doughnut:".into()))
            .count();
        // 15% of 800 votes plus 1/24 of the rest: about 148.
        assert!((100..200).contains(&doughnuts), "{doughnuts}");
        for t in &targets {
            if let Target::Vote(s) = t {
                assert!(emoji::CATALOG.iter().any(|(c, _)| c == s), "{s}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        assert!((0..100).all(|t| Target::pick(t, None, &mut rng) != Target::Vote(String::new())));
    }

    #[test]
    fn traceparents_are_valid_sampled_w3c_contexts() {
        let mut rng = fastrand::Rng::with_seed(7);
        let a = new_traceparent(&mut rng);
        let b = new_traceparent(&mut rng);
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4, "{a}");
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(
            parts[1..3]
                .iter()
                .all(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn paths() {
        assert_eq!(Target::List.path_and_query(), "/api/list");
        assert_eq!(
            Target::Vote(":joy:".into()).path_and_query(),
            "/api/vote?choice=:joy:"
        );
        assert_eq!(
            Target::Vote(":a b&c:".into()).path_and_query(),
            "/api/vote?choice=:a%20b%26c:"
        );
    }

    #[test]
    fn stats_add_up() {
        let stats = Stats::new();
        stats.record("/api/list", true);
        stats.record("/api/vote", true);
        stats.record("/api/vote", false);
        stats.skip();
        let s = stats.snapshot();
        assert_eq!(
            s.total,
            Counts {
                requests: 3,
                success: 2,
                failure: 1
            }
        );
        assert_eq!(s.by_path["/api/vote"].failure, 1);
        assert_eq!(s.skipped, 1);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests"], 3);
        assert_eq!(json["by_path"]["/api/list"]["success"], 1);
        let line = summary_line(&s);
        assert!(
            line.starts_with("vote-bot: 3 requests, 2 ok, 1 failed (33.3%)"),
            "{line}"
        );
        assert!(line.contains("/api/vote 1/2 ok"), "{line}");
    }
}
