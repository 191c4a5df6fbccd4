//! Linkerd's retry and timeout annotations on an HTTPRoute or a GRPCRoute
//! (Linkerd 2.16+), which apply to every rule of the route:
//!
//! - `retry.linkerd.io/http` (HTTPRoutes): the response statuses that are
//!   retried, comma-separated: `5xx` (500-599), `gateway-error` (502-504),
//!   a status (`503`) or a range (`500-504`).
//! - `retry.linkerd.io/grpc` (GRPCRoutes): the gRPC statuses that are
//!   retried, comma-separated: `cancelled`, `deadline-exceeded`,
//!   `internal`, `resource-exhausted`, `unavailable`.
//! - `retry.linkerd.io/limit`: retries per request (default 1).
//! - `retry.linkerd.io/timeout`: how long one attempt may take before it is
//!   cancelled and retried.
//! - `timeout.linkerd.io/request`, `/response`: the route's timeouts. Each
//!   one given wins over the rule's Gateway API field of the same meaning
//!   (`request`; `backendRequest` for `response`), as Linkerd documents for
//!   `request`. `timeout.linkerd.io/idle` is refused: the proxies do not
//!   end idle streams yet.
//!
//! On an HTTPRoute, any `retry.linkerd.io/*` annotation turns retries on
//! (statuses `5xx` unless `retry.linkerd.io/http` says otherwise). A
//! GRPCRoute retries only with `retry.linkerd.io/grpc`, which has no default
//! (as in Linkerd), so its `limit` or `timeout` alone is refused rather than
//! ignored. Durations are Gateway API
//! durations (GEP-2257), as Linkerd documents them. Any other key under
//! these two prefixes is refused, so that a misspelt annotation never
//! silently does nothing.

use super::{GatewayDuration, HttpRouteTimeouts, nonzero};
use crate::FieldError;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

pub const RETRY_HTTP: &str = "retry.linkerd.io/http";
pub const RETRY_LIMIT: &str = "retry.linkerd.io/limit";
pub const RETRY_TIMEOUT: &str = "retry.linkerd.io/timeout";
pub const TIMEOUT_REQUEST: &str = "timeout.linkerd.io/request";
pub const TIMEOUT_RESPONSE: &str = "timeout.linkerd.io/response";
pub const TIMEOUT_IDLE: &str = "timeout.linkerd.io/idle";

/// Linkerd's gRPC retry annotation: valid on Services and GRPCRoutes only.
pub const RETRY_GRPC: &str = "retry.linkerd.io/grpc";

/// Every annotation of the two prefixes that an HTTPRoute takes.
pub const ROUTE_ANNOTATIONS: [&str; 6] = [
    RETRY_HTTP,
    RETRY_LIMIT,
    RETRY_TIMEOUT,
    TIMEOUT_REQUEST,
    TIMEOUT_RESPONSE,
    TIMEOUT_IDLE,
];

/// Every annotation of the two prefixes that a GRPCRoute takes.
pub const GRPC_ROUTE_ANNOTATIONS: [&str; 6] = [
    RETRY_GRPC,
    RETRY_LIMIT,
    RETRY_TIMEOUT,
    TIMEOUT_REQUEST,
    TIMEOUT_RESPONSE,
    TIMEOUT_IDLE,
];

const RETRY_PREFIX: &str = "retry.linkerd.io/";
const TIMEOUT_PREFIX: &str = "timeout.linkerd.io/";

/// The gRPC statuses `retry.linkerd.io/grpc` may name (Linkerd's).
const GRPC_CONDITIONS: &str =
    "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable";

/// The most retries a route may ask for. Linkerd takes any 16-bit number,
/// but every retry adds up to one more request to a backend that is
/// already failing: 10 bounds that at 11 attempts per request, well past
/// the one to three retries that hide a transient failure.
pub const MAX_RETRY_LIMIT: u32 = 10;

/// Linkerd's default `retry.linkerd.io/limit`.
const DEFAULT_RETRY_LIMIT: u32 = 1;

/// The statuses retried when `retry.linkerd.io/http` is absent (Linkerd's
/// `5xx`).
const SERVER_ERRORS: RangeInclusive<u16> = 500..=599;

/// Linkerd's `gateway-error`: 502, 503 and 504.
const GATEWAY_ERRORS: RangeInclusive<u16> = 502..=504;

/// The statuses a condition may name (Linkerd's bounds).
const STATUSES: RangeInclusive<u16> = 100..=599;

/// What Linkerd's annotations ask of every rule of a route: an HTTPRoute's
/// by default, a GRPCRoute's as [`GrpcRouteAnnotations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAnnotations<R = RouteRetry> {
    /// HTTPRoutes: set when any `retry.linkerd.io/*` annotation is;
    /// GRPCRoutes: set when `retry.linkerd.io/grpc` is.
    pub retry: Option<R>,
    /// `timeout.linkerd.io/request`, as written (`0s`: none).
    pub request_timeout: Option<GatewayDuration>,
    /// `timeout.linkerd.io/response`, as written (`0s`: none).
    pub response_timeout: Option<GatewayDuration>,
    /// `timeout.linkerd.io/idle`, as written (`0s`: none).
    pub idle_timeout: Option<GatewayDuration>,
}

/// A GRPCRoute's annotations.
pub type GrpcRouteAnnotations = RouteAnnotations<GrpcRouteRetry>;

/// When and how often a rule's failed requests are sent again: by HTTP
/// status by default, by gRPC status as [`GrpcRouteRetry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRetry<S = Vec<RangeInclusive<u16>>> {
    /// Retries after the first attempt: 1 to [`MAX_RETRY_LIMIT`].
    pub limit: u32,
    /// The statuses retried. HTTP: inclusive ranges in the order written;
    /// never empty. gRPC: the codes `retry.linkerd.io/grpc` names.
    pub statuses: S,
    /// How long one attempt may take before it is cancelled and retried;
    /// `None` when absent or `0s`.
    pub timeout: Option<Duration>,
}

/// A GRPCRoute rule's retry.
pub type GrpcRouteRetry = RouteRetry<GrpcRetryConditions>;

/// The gRPC statuses a GRPCRoute retries (the codes Linkerd can retry);
/// at least one is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcRetryConditions {
    pub cancelled: bool,
    pub deadline_exceeded: bool,
    pub internal: bool,
    pub resource_exhausted: bool,
    pub unavailable: bool,
}

/// A rule's timeouts, its own fields and the route's annotations combined;
/// `None` when absent or `0s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// The whole request, retries included, until its response ends:
    /// `timeout.linkerd.io/request`, else Gateway API's `timeouts.request`.
    pub request: Option<Duration>,
    /// One request to a backend, until its response ends:
    /// `timeout.linkerd.io/response`, else `timeouts.backendRequest`.
    pub response: Option<Duration>,
    /// How long the request's stream may carry nothing:
    /// `timeout.linkerd.io/idle`.
    pub idle: Option<Duration>,
}

// === impl RouteAnnotations ===

impl RouteAnnotations {
    /// Reads an HTTPRoute's annotations; annotations of other prefixes are
    /// left alone.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        parse(
            annotations,
            RouteKind::Http,
            conditions,
            Some(vec![SERVER_ERRORS]),
        )
    }
}

impl GrpcRouteAnnotations {
    /// Reads a GRPCRoute's annotations; annotations of other prefixes are
    /// left alone.
    pub fn parse_grpc(annotations: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        parse(annotations, RouteKind::Grpc, grpc_conditions, None)
    }
}

impl<R> Default for RouteAnnotations<R> {
    fn default() -> Self {
        Self {
            retry: None,
            request_timeout: None,
            response_timeout: None,
            idle_timeout: None,
        }
    }
}

impl<R> RouteAnnotations<R> {
    /// The timeouts of a rule with Gateway API timeouts `rule`: each
    /// annotation given wins over the rule's field (Linkerd's precedence,
    /// documented for `request`), even with `0s`, which turns the timeout
    /// off.
    pub fn timeouts(&self, rule: Option<&HttpRouteTimeouts>) -> RouteTimeouts {
        let pick = |annotation: &Option<GatewayDuration>, field: Option<&GatewayDuration>| {
            nonzero(annotation.as_ref().or(field))
        };
        RouteTimeouts {
            request: pick(&self.request_timeout, rule.and_then(|t| t.request.as_ref())),
            response: pick(
                &self.response_timeout,
                rule.and_then(|t| t.backend_request.as_ref()),
            ),
            idle: nonzero(self.idle_timeout.as_ref()),
        }
    }
}

/// The two kinds of route, which differ in the retry conditions they take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    /// With its article, for messages.
    fn a_route(self) -> &'static str {
        match self {
            Self::Http => "an HTTPRoute",
            Self::Grpc => "a GRPCRoute",
        }
    }

    fn annotations(self) -> &'static [&'static str] {
        match self {
            Self::Http => &ROUTE_ANNOTATIONS,
            Self::Grpc => &GRPC_ROUTE_ANNOTATIONS,
        }
    }

    /// The annotation naming the statuses retried.
    fn conditions(self) -> &'static str {
        match self {
            Self::Http => RETRY_HTTP,
            Self::Grpc => RETRY_GRPC,
        }
    }
}

/// A route's annotations, its retry conditions read by `conditions`; with
/// a limit or a per-try timeout but no conditions, `default` (`None`:
/// refused, as that would retry nothing).
fn parse<S>(
    annotations: &BTreeMap<String, String>,
    kind: RouteKind,
    conditions: fn(&str, &str) -> Result<S, FieldError>,
    default: Option<S>,
) -> Result<RouteAnnotations<RouteRetry<S>>, FieldError> {
    for key in annotations.keys() {
        known(key, kind)?;
    }
    let get = |key: &str| annotations.get(key).map(|v| (field(key), v.as_str()));
    let timeout = |key: &str| get(key).map(|(f, v)| duration(&f, v)).transpose();
    let limit = get(RETRY_LIMIT).map(|(f, v)| limit(&f, v)).transpose()?;
    let statuses = get(kind.conditions())
        .map(|(f, v)| conditions(&f, v))
        .transpose()?;
    let try_timeout = timeout(RETRY_TIMEOUT)?;
    let statuses = match (statuses, default) {
        (Some(s), _) => Some(s),
        (None, _) if limit.is_none() && try_timeout.is_none() => None,
        (None, Some(default)) => Some(default),
        (None, None) => {
            let key = if limit.is_some() {
                RETRY_LIMIT
            } else {
                RETRY_TIMEOUT
            };
            return Err(FieldError::new(
                field(key),
                format!(
                    "retries nothing without {}, which names the statuses {} retries ({GRPC_CONDITIONS}): add it, or leave out the {RETRY_PREFIX}* annotations",
                    kind.conditions(),
                    kind.a_route()
                ),
            ));
        }
    };
    Ok(RouteAnnotations {
        retry: statuses.map(|statuses| RouteRetry {
            limit: limit.unwrap_or(DEFAULT_RETRY_LIMIT),
            statuses,
            timeout: nonzero(try_timeout.as_ref()),
        }),
        request_timeout: timeout(TIMEOUT_REQUEST)?,
        response_timeout: timeout(TIMEOUT_RESPONSE)?,
        idle_timeout: timeout(TIMEOUT_IDLE)?,
    })
}

/// `metadata.annotations["<key>"]`
fn field(key: &str) -> String {
    format!("metadata.annotations[{key:?}]")
}

/// Refuses keys of Linkerd's retry and timeout prefixes that a route of
/// `kind` does not take.
fn known(key: &str, kind: RouteKind) -> Result<(), FieldError> {
    let ours = key.starts_with(RETRY_PREFIX) || key.starts_with(TIMEOUT_PREFIX);
    if key == TIMEOUT_IDLE {
        return Err(FieldError::new(
            field(key),
            format!(
                "is not supported yet: strand's proxies do not end idle streams; bound requests with {TIMEOUT_REQUEST} or {TIMEOUT_RESPONSE}"
            ),
        ));
    }
    if !ours || kind.annotations().contains(&key) {
        return Ok(());
    }
    match (kind, key) {
        (RouteKind::Http, RETRY_GRPC) => Err(FieldError::new(
            field(key),
            format!(
                "is for GRPCRoutes and Services, not HTTPRoutes: an HTTPRoute retries on HTTP statuses with {RETRY_HTTP}"
            ),
        )),
        (RouteKind::Grpc, RETRY_HTTP) => Err(FieldError::new(
            field(key),
            format!(
                "is for HTTPRoutes and Services, not GRPCRoutes: a GRPCRoute retries on gRPC statuses with {RETRY_GRPC}"
            ),
        )),
        _ => Err(FieldError::new(
            field(key),
            format!(
                "is not an annotation {} takes; those of {RETRY_PREFIX} and {TIMEOUT_PREFIX} are {}",
                kind.a_route(),
                kind.annotations().join(", ")
            ),
        )),
    }
}

fn duration(field: &str, value: &str) -> Result<GatewayDuration, FieldError> {
    value.parse().map_err(|e| FieldError::new(field, e))
}

fn limit(field: &str, value: &str) -> Result<u32, FieldError> {
    let bad = |why: &str| {
        Err(FieldError::new(
            field,
            format!("{value:?} {why}: use 1 to {MAX_RETRY_LIMIT}"),
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return bad("is not a number of retries");
    }
    match value.parse::<u32>() {
        Ok(0) => bad(&format!(
            "would retry nothing (for no retries, leave out the {RETRY_PREFIX}* annotations)"
        )),
        Ok(n) if n <= MAX_RETRY_LIMIT => Ok(n),
        _ => bad("is too many retries"),
    }
}

/// `retry.linkerd.io/http`: comma-separated conditions, each one range of
/// statuses.
fn conditions(field: &str, value: &str) -> Result<Vec<RangeInclusive<u16>>, FieldError> {
    value
        .split(',')
        .map(|c| {
            let c = c.trim();
            condition(c).ok_or_else(|| {
                let within = within(c, value);
                FieldError::new(
                    field,
                    format!(
                        "{c:?}{within} is not a retry condition: use 5xx (500-599), gateway-error (502-504), a status code (503) or a range (500-504) of codes 100 to 599, separated by commas"
                    ),
                )
            })
        })
        .collect()
}

/// `retry.linkerd.io/grpc`: comma-separated gRPC status names.
fn grpc_conditions(field: &str, value: &str) -> Result<GrpcRetryConditions, FieldError> {
    let mut out = GrpcRetryConditions::default();
    for c in value.split(',') {
        let c = c.trim();
        let flag = match c.to_ascii_lowercase().as_str() {
            "cancelled" => &mut out.cancelled,
            "deadline-exceeded" => &mut out.deadline_exceeded,
            "internal" => &mut out.internal,
            "resource-exhausted" => &mut out.resource_exhausted,
            "unavailable" => &mut out.unavailable,
            _ => {
                let within = within(c, value);
                return Err(FieldError::new(
                    field,
                    format!(
                        "{c:?}{within} is not a gRPC retry condition: use {GRPC_CONDITIONS}, separated by commas"
                    ),
                ));
            }
        };
        *flag = true;
    }
    Ok(out)
}

/// ` (in "<value>")` when condition `c` is one of several in `value`.
fn within(c: &str, value: &str) -> String {
    if c == value {
        String::new()
    } else {
        format!(" (in {value:?})")
    }
}

fn condition(c: &str) -> Option<RangeInclusive<u16>> {
    if c.eq_ignore_ascii_case("5xx") {
        return Some(SERVER_ERRORS);
    }
    if c.eq_ignore_ascii_case("gateway-error") {
        return Some(GATEWAY_ERRORS);
    }
    let (start, end) = c.split_once('-').unwrap_or((c, c));
    let (start, end) = (status(start)?, status(end)?);
    (start <= end).then_some(start..=end)
}

fn status(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|s| STATUSES.contains(s))
}

#[cfg(test)]
mod tests;
