//! What serde cannot check of a ServiceProfile: conditions that match
//! something, regexes the proxy can compile, ranges, names.

use super::{
    MAX_CONDITION_DEPTH, ProfileRoute, RequestMatch, ResponseMatch, RetryBudget, ServiceProfile,
    StatusRange, WeightedDst, compile_path_regex,
};
use crate::{FieldError, validate_dns_subdomain};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A route name is a metrics label value: bounded, and printable.
const MAX_ROUTE_NAME_LEN: usize = 256;
/// Linkerd's bounds on the retry budget (its CRD's and validator's).
const MAX_RETRY_RATIO: f64 = 1000.0;
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(60);
/// RFC 9110 leaves methods unbounded; anything past this is no method.
const MAX_METHOD_LEN: usize = 64;
/// The methods the `Destination` API names (they are case-sensitive).
const REGISTERED_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "HEAD", "TRACE",
];

pub(super) fn profile(p: &ServiceProfile) -> Result<(), FieldError> {
    let spec = &p.spec;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        if let Some(j) = names.insert(&r.name, i) {
            return Err(FieldError::new(
                format!("{field}.name"),
                format!("duplicate route name {:?} (also spec.routes[{j}])", r.name),
            ));
        }
        route(&field, r)?;
    }
    if let Some(b) = &spec.retry_budget {
        retry_budget("spec.retryBudget", b)?;
    }
    for (i, d) in spec.dst_overrides.iter().enumerate() {
        dst_override(&format!("spec.dstOverrides[{i}]"), d)?;
    }
    Ok(())
}

fn route(field: &str, r: &ProfileRoute) -> Result<(), FieldError> {
    let name = &r.name;
    if name.trim().is_empty() {
        return Err(FieldError::new(
            format!("{field}.name"),
            "must not be empty",
        ));
    }
    if name.len() > MAX_ROUTE_NAME_LEN {
        return Err(FieldError::new(
            format!("{field}.name"),
            format!("is longer than {MAX_ROUTE_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            format!("{field}.name"),
            format!("{name:?} has a control character; it becomes a metrics label"),
        ));
    }
    request_match(&format!("{field}.condition"), &r.condition, 0)?;
    for (i, c) in r.response_classes.iter().enumerate() {
        response_match(
            &format!("{field}.responseClasses[{i}].condition"),
            &c.condition,
            0,
        )?;
    }
    if let Some(t) = &r.timeout
        && t.as_duration().is_zero()
    {
        return Err(FieldError::new(
            format!("{field}.timeout"),
            format!(
                "{t} would fail every request: give a positive duration, or leave it out for the default 10s"
            ),
        ));
    }
    Ok(())
}

fn request_match(field: &str, m: &RequestMatch, depth: usize) -> Result<(), FieldError> {
    if m.is_empty() {
        return Err(FieldError::new(
            field,
            "is empty: set at least one of method, pathRegex, all, any or not",
        ));
    }
    nesting(field, depth)?;
    if let Some(method) = &m.method {
        http_method(&format!("{field}.method"), method)?;
    }
    if let Some(re) = &m.path_regex {
        path_regex(&format!("{field}.pathRegex"), re)?;
    }
    for (key, list) in [("all", &m.all), ("any", &m.any)] {
        if let Some(list) = list {
            non_empty(&format!("{field}.{key}"), list.len())?;
            for (i, m) in list.iter().enumerate() {
                request_match(&format!("{field}.{key}[{i}]"), m, depth + 1)?;
            }
        }
    }
    if let Some(not) = &m.not {
        request_match(&format!("{field}.not"), not, depth + 1)?;
    }
    Ok(())
}

fn response_match(field: &str, m: &ResponseMatch, depth: usize) -> Result<(), FieldError> {
    if m.is_empty() {
        return Err(FieldError::new(
            field,
            "is empty: set at least one of status, all, any or not",
        ));
    }
    nesting(field, depth)?;
    if let Some(range) = &m.status {
        status_range(&format!("{field}.status"), range)?;
    }
    for (key, list) in [("all", &m.all), ("any", &m.any)] {
        if let Some(list) = list {
            non_empty(&format!("{field}.{key}"), list.len())?;
            for (i, m) in list.iter().enumerate() {
                response_match(&format!("{field}.{key}[{i}]"), m, depth + 1)?;
            }
        }
    }
    if let Some(not) = &m.not {
        response_match(&format!("{field}.not"), not, depth + 1)?;
    }
    Ok(())
}

fn nesting(field: &str, depth: usize) -> Result<(), FieldError> {
    if depth > MAX_CONDITION_DEPTH {
        return Err(FieldError::new(
            field,
            format!("conditions nest more than {MAX_CONDITION_DEPTH} levels deep"),
        ));
    }
    Ok(())
}

fn non_empty(field: &str, len: usize) -> Result<(), FieldError> {
    if len == 0 {
        return Err(FieldError::new(
            field,
            "must not be empty: give at least one condition, or leave it out",
        ));
    }
    Ok(())
}

/// An HTTP token (RFC 9110 `tchar`s). A registered method in the wrong case
/// is refused: methods are case-sensitive, so `get` would never match.
fn http_method(field: &str, method: &str) -> Result<(), FieldError> {
    let token = !method.is_empty()
        && method.len() <= MAX_METHOD_LEN
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(FieldError::new(
            field,
            format!(
                "{method:?} is not an HTTP method: 1 to {MAX_METHOD_LEN} letters, digits or !#$%&'*+-.^_`|~"
            ),
        ));
    }
    let upper = method.to_ascii_uppercase();
    if upper != method && REGISTERED_METHODS.contains(&upper.as_str()) {
        return Err(FieldError::new(
            field,
            format!(
                "{method:?} would match no request (methods are case-sensitive): write {upper:?}"
            ),
        ));
    }
    Ok(())
}

fn path_regex(field: &str, re: &str) -> Result<(), FieldError> {
    if re.is_empty() {
        return Err(FieldError::new(
            field,
            "must not be empty (it must match the whole path, e.g. \"/api/.*\")",
        ));
    }
    usable_regex(field, re, "path regex")
}

/// Refuses a regex (a `what`) that [`compile_path_regex`], the proxies' own
/// compilation, cannot build.
pub(crate) fn usable_regex(field: &str, re: &str, what: &str) -> Result<(), FieldError> {
    compile_path_regex(re).map_err(|e| {
        FieldError::new(
            field,
            format!("{re:?} is not a usable {what}: {}", regex_error(&*e)),
        )
    })?;
    Ok(())
}

/// What is wrong with a regex, in one line. The builder's own messages are
/// generic ("error building NFA"): the innermost cause says what is wrong,
/// and a parse error's multi-line picture of the (wrapped) pattern is left
/// out for its `error: ...` line.
fn regex_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let text = inner.to_string();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(&text);
    if line.contains("size limit") {
        return format!("{line} (too complex to match within a proxy's memory bound)");
    }
    line.to_string()
}

fn status_range(field: &str, r: &StatusRange) -> Result<(), FieldError> {
    let (lo, hi) = (StatusRange::LOWEST, StatusRange::HIGHEST);
    for (key, v) in [("min", r.min), ("max", r.max)] {
        if let Some(v) = v
            && !(i64::from(lo)..=i64::from(hi)).contains(&v)
        {
            return Err(FieldError::new(
                format!("{field}.{key}"),
                format!("{v} is not an HTTP status: use {lo} to {hi}"),
            ));
        }
    }
    let (min, max) = r.bounds();
    if min > max {
        return Err(FieldError::new(
            field,
            format!("min {min} is above max {max}"),
        ));
    }
    Ok(())
}

fn retry_budget(field: &str, b: &RetryBudget) -> Result<(), FieldError> {
    if !(b.retry_ratio.is_finite() && (0.0..=MAX_RETRY_RATIO).contains(&b.retry_ratio)) {
        return Err(FieldError::new(
            format!("{field}.retryRatio"),
            format!(
                "{} is out of range: use 0 to {MAX_RETRY_RATIO} (0.2 lets retries add 20% to the load)",
                b.retry_ratio
            ),
        ));
    }
    let ttl = b.ttl();
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(FieldError::new(
            format!("{field}.ttl"),
            format!("{} is out of range: use 1s to 60s", b.ttl),
        ));
    }
    Ok(())
}

fn dst_override(field: &str, d: &WeightedDst) -> Result<(), FieldError> {
    let field = format!("{field}.authority");
    let bad = |reason: String| Err(FieldError::new(&field, reason));
    let a = &d.authority;
    let Some((host, port)) = a.rsplit_once(':') else {
        return bad(format!(
            "{a:?} has no port: write host:port, e.g. web-v2.emojivoto.svc.cluster.local:80"
        ));
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return bad(format!("{port:?} is not a port: use 1 to 65535")),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if v6.parse::<Ipv6Addr>().is_err() {
            return bad(format!("{host:?} is not an IPv6 address"));
        }
        return Ok(());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() {
        return bad(format!("{a:?} has no host: write host:port"));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    validate_dns_subdomain(&field, name).map_err(|_| {
        FieldError::new(
            &field,
            format!(
                "{host:?} is not a host name: lower case letters, digits, '-' and '.' (or an IP address)"
            ),
        )
    })
}
