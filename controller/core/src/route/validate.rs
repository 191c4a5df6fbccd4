//! What serde cannot check of an HTTPRoute: Gateway API's limits and
//! formats, and the parts strand refuses because it does not implement them.
//! A rule's filters have their own module, and so do GRPCRoutes, which
//! share the checks of parentRefs, backendRefs and header matches.

use super::{
    HttpBackendRef, HttpHeaderMatch, HttpRoute, HttpRouteMatch, HttpRouteRule, HttpRouteTimeouts,
    MAX_WEIGHT, ParentReference, PathMatchType, RETRY_HTTP, RETRY_LIMIT, RETRY_TIMEOUT,
    ValueMatchType,
};
use crate::{FieldError, validate_dns_label};
use std::collections::HashMap;

mod filters;
pub(super) mod grpc;

// Gateway API's limits (the CRD's maxItems and maxLength).
const MAX_PARENT_REFS: usize = 32;
const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 8;
const MAX_BACKEND_REFS: usize = 16;
const MAX_HEADER_MATCHES: usize = 16;
const MAX_QUERY_MATCHES: usize = 16;
const MAX_PATH_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 256;
const MAX_HEADER_VALUE_LEN: usize = 4096;
const MAX_QUERY_VALUE_LEN: usize = 1024;

pub(super) fn route(route: &HttpRoute) -> Result<(), FieldError> {
    route.annotations()?;
    let ns = &route.metadata.namespace;
    let spec = &route.spec;
    parent_refs(&spec.parent_refs, ns)?;
    if !spec.hostnames.is_empty() {
        return Err(FieldError::new(
            "spec.hostnames",
            "is not supported yet; leave it out (a route attached to a Service applies to every name of it)",
        ));
    }
    rules(
        &spec.rules,
        |r| r.name.as_deref(),
        |field, r| rule(field, r, ns),
    )
}

/// `spec.parentRefs`: one to 32 Services of namespace `ns`.
fn parent_refs(parents: &[ParentReference], ns: &str) -> Result<(), FieldError> {
    if parents.is_empty() {
        return Err(FieldError::new(
            "spec.parentRefs",
            "at least one parentRef (a Service) is required",
        ));
    }
    at_most("spec.parentRefs", parents.len(), MAX_PARENT_REFS)?;
    for (i, p) in parents.iter().enumerate() {
        parent_ref(&format!("spec.parentRefs[{i}]"), p, ns)?;
    }
    Ok(())
}

/// `spec.rules`: at most 16, their optional names unique, each checked by
/// `check` (given its field, `spec.rules[i]`).
fn rules<R>(
    rules: &[R],
    name: impl Fn(&R) -> Option<&str>,
    check: impl Fn(&str, &R) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    at_most("spec.rules", rules.len(), MAX_RULES)?;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        if let Some(name) = name(r) {
            validate_dns_label(&format!("{field}.name"), name)?;
            if let Some(j) = names.insert(name, i) {
                return Err(FieldError::new(
                    format!("{field}.name"),
                    format!("duplicate rule name {name:?} (also spec.rules[{j}])"),
                ));
            }
        }
        check(&field, r)?;
    }
    Ok(())
}

fn parent_ref(field: &str, p: &ParentReference, ns: &str) -> Result<(), FieldError> {
    let group = p.group.as_deref();
    let core = matches!(group, Some("" | "core"));
    match (core, p.kind.as_deref()) {
        (true, None | Some("Service")) => {}
        (false, Some("Service")) => {
            return Err(FieldError::new(
                format!("{field}.group"),
                format!(
                    "{:?} is not the group of Services: use \"core\" (or \"\")",
                    group.unwrap_or_default()
                ),
            ));
        }
        (_, kind) => {
            let kind = kind.unwrap_or("Gateway");
            return Err(FieldError::new(
                format!("{field}.kind"),
                format!(
                    "must be Service (with group \"core\"), not {kind}: routes attach to Services only (Gateway API's mesh mode); without group and kind a parentRef names a Gateway"
                ),
            ));
        }
    }
    validate_dns_label(&format!("{field}.name"), &p.name)?;
    same_namespace(&format!("{field}.namespace"), p.namespace.as_deref(), ns)?;
    if p.section_name.is_some() {
        return Err(FieldError::new(
            format!("{field}.sectionName"),
            "is not supported; name the Service's port with `port`",
        ));
    }
    port(&format!("{field}.port"), p.port)
}

fn rule(field: &str, r: &HttpRouteRule, ns: &str) -> Result<(), FieldError> {
    at_most(&format!("{field}.matches"), r.matches.len(), MAX_MATCHES)?;
    for (i, m) in r.matches.iter().enumerate() {
        route_match(&format!("{field}.matches[{i}]"), m)?;
    }
    backend_refs(field, &r.backend_refs, ns)?;
    if let Some(t) = &r.timeouts {
        timeouts(&format!("{field}.timeouts"), t)?;
    }
    filters::rule_filters(field, r)?;
    experimental(
        field,
        r.retry.as_ref(),
        r.session_persistence.as_ref(),
        RETRY_HTTP,
    )
}

/// A rule's `retry` and `sessionPersistence` (experimental in Gateway API),
/// which strand refuses; `conditions` is the annotation that names what
/// the route's retries retry.
fn experimental(
    field: &str,
    retry: Option<&serde_json::Value>,
    session_persistence: Option<&serde_json::Value>,
    conditions: &str,
) -> Result<(), FieldError> {
    if retry.is_some() {
        return Err(FieldError::new(
            format!("{field}.retry"),
            format!(
                "is not supported (it is experimental in Gateway API); leave it out and annotate the route with Linkerd's {conditions}, {RETRY_LIMIT} and {RETRY_TIMEOUT}"
            ),
        ));
    }
    if session_persistence.is_some() {
        return Err(not_supported(&format!("{field}.sessionPersistence")));
    }
    Ok(())
}

fn route_match(field: &str, m: &HttpRouteMatch) -> Result<(), FieldError> {
    if let Some(path) = &m.path {
        let field = format!("{field}.path");
        match path.kind {
            PathMatchType::Exact | PathMatchType::PathPrefix => {}
            PathMatchType::RegularExpression => {
                return Err(FieldError::new(
                    format!("{field}.type"),
                    "RegularExpression is not supported yet; use Exact or PathPrefix",
                ));
            }
        }
        path_value(&format!("{field}.value"), &path.value)?;
    }
    header_matches(&format!("{field}.headers"), &m.headers, Regex::Refused)?;
    let params = format!("{field}.queryParams");
    at_most(&params, m.query_params.len(), MAX_QUERY_MATCHES)?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, q) in m.query_params.iter().enumerate() {
        let field = format!("{params}[{i}]");
        exact_only(&format!("{field}.type"), q.kind)?;
        token(&format!("{field}.name"), &q.name, "a query parameter name")?;
        if let Some(j) = seen.insert(&q.name, i) {
            return Err(FieldError::new(
                format!("{field}.name"),
                format!(
                    "duplicate query parameter {:?} (also {params}[{j}])",
                    q.name
                ),
            ));
        }
        text_value(
            &format!("{field}.value"),
            &q.value,
            MAX_QUERY_VALUE_LEN,
            "query parameter",
        )?;
    }
    Ok(())
}

/// Whether a match takes `RegularExpression` values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Regex {
    Refused,
    /// Compiled as the proxies compile them, so that each one accepted
    /// works in every proxy.
    Compiled,
}

/// `{field}` (a match's `headers`): at most 16, names HTTP tokens without
/// duplicates (case-insensitive), values that a header can carry.
fn header_matches(
    field: &str,
    headers: &[HttpHeaderMatch],
    regex: Regex,
) -> Result<(), FieldError> {
    at_most(field, headers.len(), MAX_HEADER_MATCHES)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if regex == Regex::Refused {
            exact_only(&format!("{at}.type"), h.kind)?;
        }
        token(&format!("{at}.name"), &h.name, "an HTTP header name")?;
        // Header names are case-insensitive, so `X-A` and `x-a` are one.
        if let Some(j) = seen.insert(h.name.to_ascii_lowercase(), i) {
            return Err(FieldError::new(
                format!("{at}.name"),
                format!("duplicate header {:?} (also {field}[{j}])", h.name),
            ));
        }
        let value = format!("{at}.value");
        text_value(&value, &h.value, MAX_HEADER_VALUE_LEN, "header")?;
        if h.kind == ValueMatchType::RegularExpression {
            crate::profile::usable_regex(&value, &h.value, "header regex")?;
        }
    }
    Ok(())
}

/// `{field}.backendRefs`: at most 16 Service ports.
fn backend_refs(field: &str, backends: &[HttpBackendRef], ns: &str) -> Result<(), FieldError> {
    let field = format!("{field}.backendRefs");
    at_most(&field, backends.len(), MAX_BACKEND_REFS)?;
    for (i, b) in backends.iter().enumerate() {
        backend_ref(&format!("{field}[{i}]"), b, ns)?;
    }
    Ok(())
}

fn backend_ref(field: &str, b: &HttpBackendRef, ns: &str) -> Result<(), FieldError> {
    if let Some(group) = b.group.as_deref()
        && !matches!(group, "" | "core")
    {
        return Err(FieldError::new(
            format!("{field}.group"),
            format!("{group:?} is not supported: backends are Services (group \"core\" or \"\")"),
        ));
    }
    if let Some(kind) = b.kind.as_deref()
        && kind != "Service"
    {
        return Err(FieldError::new(
            format!("{field}.kind"),
            format!("must be Service, not {kind}"),
        ));
    }
    validate_dns_label(&format!("{field}.name"), &b.name)?;
    same_namespace(&format!("{field}.namespace"), b.namespace.as_deref(), ns)?;
    if b.port.is_none() {
        return Err(FieldError::new(
            format!("{field}.port"),
            "is required for a Service backend",
        ));
    }
    port(&format!("{field}.port"), b.port)?;
    if let Some(w) = b.weight
        && !(0..=MAX_WEIGHT).contains(&w)
    {
        return Err(FieldError::new(
            format!("{field}.weight"),
            format!("must be 0..={MAX_WEIGHT}"),
        ));
    }
    if !b.filters.is_empty() {
        return Err(FieldError::new(
            format!("{field}.filters"),
            "is not supported yet; leave it out (the rule's filters apply to every backend of it)",
        ));
    }
    Ok(())
}

fn timeouts(field: &str, t: &HttpRouteTimeouts) -> Result<(), FieldError> {
    // Gateway API: a backend request may not outlive the whole request
    // (unless the request timeout is disabled with 0s).
    if let (Some(request), Some(backend)) = (t.request(), &t.backend_request)
        && backend.as_duration() > request
    {
        return Err(FieldError::new(
            format!("{field}.backendRequest"),
            format!(
                "{backend} is longer than the request timeout {}",
                t.request.as_ref().map_or("", |r| r.as_str())
            ),
        ));
    }
    Ok(())
}

/// Gateway API's checks of an Exact or PathPrefix value.
fn path_value(field: &str, value: &str) -> Result<(), FieldError> {
    let bad = |reason: &str| Err(FieldError::new(field, format!("{value:?} {reason}")));
    if !value.starts_with('/') {
        return bad("must start with \"/\"");
    }
    if value.len() > MAX_PATH_LEN {
        return bad(&format!("is longer than {MAX_PATH_LEN} characters"));
    }
    for part in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if value.contains(part) {
            return bad(&format!("must not contain {part:?}"));
        }
    }
    if value.ends_with("/..") || value.ends_with("/.") {
        return bad("must not end with \"/.\" or \"/..\"");
    }
    // RFC 3986 path characters (pchar and "/"); "?" would start a query,
    // which a path never matches.
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b));
    if !ok {
        return bad(
            "may contain only letters, digits, \"/\" and -._~!$&'()*+,;=:@% (percent-encode the rest)",
        );
    }
    Ok(())
}

/// An HTTP token (RFC 9110 `tchar`s), as Gateway API requires of header and
/// query parameter names.
fn token(field: &str, name: &str, what: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("{name:?} is not {what}: 1 to {MAX_NAME_LEN} letters, digits or !#$%&'*+-.^_`|~"),
    ))
}

/// A value that can travel in a request: not empty, bounded, and without
/// control characters (a tab is allowed).
fn text_value(field: &str, value: &str, max: usize, what: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::new(
            field,
            format!("{value:?} has a control character, which no {what} value can carry"),
        ));
    }
    Ok(())
}

fn exact_only(field: &str, kind: ValueMatchType) -> Result<(), FieldError> {
    match kind {
        ValueMatchType::Exact => Ok(()),
        ValueMatchType::RegularExpression => Err(FieldError::new(
            field,
            "RegularExpression is not supported yet; use Exact",
        )),
    }
}

fn same_namespace(field: &str, given: Option<&str>, ns: &str) -> Result<(), FieldError> {
    match given {
        Some(other) if other != ns => Err(FieldError::new(
            field,
            format!(
                "{other:?} is not the route's namespace {ns:?}: a route and the Services it names must share a namespace"
            ),
        )),
        _ => Ok(()),
    }
}

fn port(field: &str, port: Option<u16>) -> Result<(), FieldError> {
    match port {
        Some(0) => Err(FieldError::new(field, "must be between 1 and 65535")),
        _ => Ok(()),
    }
}

fn at_most(field: &str, len: usize, max: usize) -> Result<(), FieldError> {
    if len > max {
        return Err(FieldError::new(
            field,
            format!("has {len} entries; Gateway API allows at most {max}"),
        ));
    }
    Ok(())
}

fn not_supported(field: &str) -> FieldError {
    FieldError::new(field, "is not supported yet; leave it out")
}
