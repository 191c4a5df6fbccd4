//! `Destination/GetProfile`: a service's ServiceProfile as the proxy uses
//! it: named routes (request conditions on method and path), how each
//! route's responses are classified, whether failures may be retried and
//! within what timeout, the retry budget, and weighted `dstOverrides`.
//!
//! [`Profile::from_proto`] converts one answer without I/O (table-tested);
//! [`watch`] keeps the stream running for a balanced service and publishes
//! each profile. A control plane without profiles (or that refuses the
//! name) leaves the empty profile published, which changes nothing.

use std::sync::Arc;
use std::time::Duration;

use linkerd2_proxy_api::destination::{
    self as api, DestinationProfile, GetDestination, destination_client::DestinationClient,
    request_match, response_match,
};
use regex_automata::dfa::{dense, regex::Regex};
use regex_automata::util::syntax;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::Ctx;
use crate::reconnect::{Backoff, Outage};

/// A service's profile. The default (no routes, no overrides) changes
/// nothing about how requests are sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// In the order the control plane sent them: the first match wins.
    pub routes: Vec<Arc<ProfileRoute>>,
    /// How many retries the routes may add (Linkerd's default when the
    /// profile names none).
    pub retry_budget: RetryBudget,
    /// Other services to send the requests to instead, by weight.
    pub dst_overrides: Vec<DstOverride>,
}

/// One named route of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRoute {
    /// Its `route` metrics label (the ServiceProfile's route name).
    pub name: Arc<str>,
    pub condition: RequestMatch,
    /// In order: the first class that matches a response decides.
    pub response_classes: Vec<ResponseClass>,
    /// Failed requests may be retried (within the budget).
    pub retryable: bool,
    /// From the request's arrival to its response head, retries included.
    pub timeout: Option<Duration>,
}

/// Which requests a route takes.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestMatch {
    All(Vec<RequestMatch>),
    Any(Vec<RequestMatch>),
    Not(Box<RequestMatch>),
    Path(PathRegex),
    Method(http::Method),
}

/// A path regular expression, matched against the whole path.
#[derive(Clone, Debug)]
pub struct PathRegex {
    source: Arc<str>,
    regex: Arc<Regex>,
}

/// How responses are counted.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseClass {
    pub condition: ResponseMatch,
    pub is_failure: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ResponseMatch {
    All(Vec<ResponseMatch>),
    Any(Vec<ResponseMatch>),
    Not(Box<ResponseMatch>),
    /// Inclusive.
    Status {
        min: u16,
        max: u16,
    },
}

/// Retries may add `ratio` of the requests of the last `ttl`, and at least
/// `min_per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    pub ratio: f32,
    pub min_per_second: u32,
    pub ttl: Duration,
}

/// Linkerd's: 20% of requests, at least 10 retries a second, over 10 s.
impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstOverride {
    /// `host:port`, resolved like any authority.
    pub authority: Arc<str>,
    pub weight: u32,
}

/// Compiles a profile's path regex as Linkerd does: RE2 syntax, anchored
/// at both ends, ASCII classes (Go's `\d` is `[0-9]`). Size-limited, so a
/// hostile pattern is an error rather than a memory bomb.
pub fn compile_path_regex(re: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .dense(
            dense::Config::new()
                .dfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .determinize_size_limit(Some(REGEX_SIZE_LIMIT)),
        )
        .build(&format!("^(?:{re})$"))
        .map_err(|e| e.to_string())
}

const REGEX_SIZE_LIMIT: usize = 1 << 20;

// === impl Profile ===

impl Profile {
    /// True when the profile changes where or how requests go (routes or
    /// overrides), so that it takes precedence over the outbound policy's
    /// routes, as in Linkerd.
    pub fn is_active(&self) -> bool {
        !self.routes.is_empty() || !self.dst_overrides.is_empty()
    }

    /// The first route whose condition the request meets.
    pub fn route_for(&self, method: &http::Method, path: &str) -> Option<&Arc<ProfileRoute>> {
        self.routes
            .iter()
            .find(|r| r.condition.matches(method, path))
    }

    /// Converts an answer. Routes whose conditions this proxy cannot read
    /// (a bad regex, a method that is no HTTP token) are left out with a
    /// warning: they would match nothing.
    pub fn from_proto(p: &DestinationProfile) -> Profile {
        let routes = p
            .routes
            .iter()
            .filter_map(|r| match route(r) {
                Ok(route) => Some(Arc::new(route)),
                Err(why) => {
                    let name = r.metrics_labels.get("route").map_or("", String::as_str);
                    tracing::warn!(route = name, %why, "ignoring a profile route");
                    None
                }
            })
            .collect();
        let retry_budget =
            p.retry_budget
                .as_ref()
                .map_or(RetryBudget::default(), |b| RetryBudget {
                    ratio: if b.retry_ratio.is_finite() {
                        b.retry_ratio.max(0.0)
                    } else {
                        0.0
                    },
                    min_per_second: b.min_retries_per_second,
                    ttl: duration(b.ttl)
                        .unwrap_or(Duration::from_secs(10))
                        .clamp(Duration::from_secs(1), Duration::from_secs(60)),
                });
        let dst_overrides = p
            .dst_overrides
            .iter()
            .filter(|d| d.weight > 0 && !d.authority.is_empty())
            .map(|d| DstOverride {
                authority: d.authority.as_str().into(),
                weight: d.weight,
            })
            .collect();
        Profile {
            routes,
            retry_budget,
            dst_overrides,
        }
    }
}

fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
}

fn route(r: &api::Route) -> Result<ProfileRoute, String> {
    let name = r.metrics_labels.get("route").cloned().unwrap_or_default();
    let condition = request_match(r.condition.as_ref().ok_or("no condition")?)?;
    let response_classes = r
        .response_classes
        .iter()
        .map(|c| {
            Ok(ResponseClass {
                condition: response_match(c.condition.as_ref().ok_or("a class has no condition")?)?,
                is_failure: c.is_failure,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ProfileRoute {
        name: name.into(),
        condition,
        response_classes,
        retryable: r.is_retryable,
        timeout: duration(r.timeout),
    })
}

/// Nesting deeper than this is refused (a stack guard against a hostile
/// or broken control plane).
const MAX_DEPTH: usize = 16;

fn request_match(m: &api::RequestMatch) -> Result<RequestMatch, String> {
    request_match_at(m, 0)
}

fn request_match_at(m: &api::RequestMatch, depth: usize) -> Result<RequestMatch, String> {
    if depth > MAX_DEPTH {
        return Err("conditions nested too deeply".into());
    }
    let seq = |s: &api::request_match::Seq| {
        s.matches
            .iter()
            .map(|m| request_match_at(m, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match m.r#match.as_ref().ok_or("an empty condition")? {
        request_match::Match::All(s) => RequestMatch::All(seq(s)?),
        request_match::Match::Any(s) => RequestMatch::Any(seq(s)?),
        request_match::Match::Not(m) => {
            RequestMatch::Not(Box::new(request_match_at(m, depth + 1)?))
        }
        request_match::Match::Path(p) => RequestMatch::Path(PathRegex::new(&p.regex)?),
        request_match::Match::Method(m) => RequestMatch::Method(
            http::Method::try_from(m.clone()).map_err(|e| format!("bad method: {e}"))?,
        ),
    })
}

fn response_match(m: &api::ResponseMatch) -> Result<ResponseMatch, String> {
    response_match_at(m, 0)
}

fn response_match_at(m: &api::ResponseMatch, depth: usize) -> Result<ResponseMatch, String> {
    if depth > MAX_DEPTH {
        return Err("conditions nested too deeply".into());
    }
    let seq = |s: &api::response_match::Seq| {
        s.matches
            .iter()
            .map(|m| response_match_at(m, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match m.r#match.as_ref().ok_or("an empty condition")? {
        response_match::Match::All(s) => ResponseMatch::All(seq(s)?),
        response_match::Match::Any(s) => ResponseMatch::Any(seq(s)?),
        response_match::Match::Not(m) => {
            ResponseMatch::Not(Box::new(response_match_at(m, depth + 1)?))
        }
        response_match::Match::Status(r) => {
            // One bound alone names a single status.
            let (min, max) = match (r.min, r.max) {
                (0, 0) => return Err("a status range without bounds".into()),
                (0, max) => (max, max),
                (min, 0) => (min, min),
                (min, max) => (min, max),
            };
            let status = |v: u32| u16::try_from(v).map_err(|_| format!("status {v} out of range"));
            ResponseMatch::Status {
                min: status(min)?,
                max: status(max)?,
            }
        }
    })
}

// === impl ProfileRoute ===

impl ProfileRoute {
    /// Whether a response with `status` is a failure by the route's
    /// response classes: the first class that matches decides; `None` when
    /// none does.
    pub fn class_of(&self, status: u16) -> Option<bool> {
        self.response_classes
            .iter()
            .find(|c| c.condition.matches(status))
            .map(|c| c.is_failure)
    }

    /// [`ProfileRoute::class_of`], and with no class that matches, 5xx is
    /// a failure.
    pub fn is_failure(&self, status: u16) -> bool {
        self.class_of(status).unwrap_or(status >= 500)
    }
}

// === impl RequestMatch ===

impl RequestMatch {
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        match self {
            RequestMatch::All(ms) => ms.iter().all(|m| m.matches(method, path)),
            RequestMatch::Any(ms) => ms.iter().any(|m| m.matches(method, path)),
            RequestMatch::Not(m) => !m.matches(method, path),
            RequestMatch::Path(re) => re.regex.is_match(path),
            RequestMatch::Method(m) => m == method,
        }
    }
}

// === impl ResponseMatch ===

impl ResponseMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            ResponseMatch::All(ms) => ms.iter().all(|m| m.matches(status)),
            ResponseMatch::Any(ms) => ms.iter().any(|m| m.matches(status)),
            ResponseMatch::Not(m) => !m.matches(status),
            ResponseMatch::Status { min, max } => (*min..=*max).contains(&status),
        }
    }
}

// === impl PathRegex ===

impl PathRegex {
    pub fn new(source: &str) -> Result<Self, String> {
        let regex =
            compile_path_regex(source).map_err(|e| format!("path regex {source:?}: {e}"))?;
        Ok(PathRegex {
            source: source.into(),
            regex: Arc::new(regex),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `bytes` matches.
    pub fn is_match(&self, bytes: &[u8]) -> bool {
        self.regex.is_match(bytes)
    }
}

/// Same source, same matches.
impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PathRegex {}

// === watch ===

/// One `GetProfile` stream and its reconnections.
struct ProfileWatch {
    client: DestinationClient<Channel>,
    request: GetDestination,
    tx: watch::Sender<Option<Arc<Profile>>>,
    backoff: Backoff,
    outage: Outage,
}

/// Watches the profile of `path` (a service's `fqdn:port`) forever,
/// publishing each change on `tx`. Cancelled by dropping the future.
/// The channel holds `None` until the first answer; a refusal or a failed
/// first call publishes the empty profile, so that nobody waits for one.
pub(crate) async fn watch(ctx: Ctx, path: String, tx: watch::Sender<Option<Arc<Profile>>>) {
    let mut watch = ProfileWatch {
        client: ctx.destination.clone(),
        request: GetDestination {
            scheme: "k8s".to_string(),
            path,
            context_token: ctx.context_token.to_string(),
        },
        tx,
        backoff: Backoff::new(ctx.backoff),
        outage: Outage::new(ctx.destination_health.clone()),
    };
    loop {
        match watch.stream_once().await {
            Ok(()) => tracing::debug!(path = %watch.request.path, "profile stream ended"),
            // No profile for the name, and none coming: nothing to retry.
            Err(status) if is_no_profile(&status) => {
                watch.outage.recovered();
                tracing::debug!(path = %watch.request.path, %status, "no profile");
                watch.publish(Profile::default());
                return;
            }
            Err(status) => {
                watch.outage.failed(&watch.request.path, &status);
                // Requests go on without a profile until the stream is back.
                watch.tx.send_if_modified(|p| {
                    let first = p.is_none();
                    if first {
                        *p = Some(Arc::default());
                    }
                    first
                });
            }
        }
        tokio::time::sleep(watch.backoff.next_delay()).await;
    }
}

fn is_no_profile(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::NotFound | Code::InvalidArgument | Code::Unimplemented | Code::FailedPrecondition
    )
}

impl ProfileWatch {
    async fn stream_once(&mut self) -> Result<(), Status> {
        let mut stream = self
            .client
            .get_profile(self.request.clone())
            .await?
            .into_inner();
        while let Some(profile) = stream.message().await? {
            self.outage.recovered();
            self.backoff.reset();
            self.publish(Profile::from_proto(&profile));
        }
        Ok(())
    }

    fn publish(&self, profile: Profile) {
        self.tx.send_if_modified(|current| {
            let changed = current.as_deref() != Some(&profile);
            if changed {
                tracing::debug!(
                    path = %self.request.path,
                    routes = profile.routes.len(),
                    overrides = profile.dst_overrides.len(),
                    "profile"
                );
                *current = Some(Arc::new(profile));
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests;
