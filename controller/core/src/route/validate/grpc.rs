//! What serde cannot check of a GRPCRoute: Gateway API's limits and
//! formats (those it shares with HTTPRoute checked as for HTTPRoute), and
//! what strand refuses as Linkerd does: method regular expressions and
//! filters other than `RequestHeaderModifier`.

use super::{
    MAX_MATCHES, Regex, at_most, backend_refs, experimental, filters, header_matches, parent_refs,
    rules,
};
use crate::route::{
    GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, GrpcRouteRule, RETRY_GRPC, TIMEOUT_REQUEST,
    TIMEOUT_RESPONSE, ValueMatchType,
};
use crate::{FieldError, validate_dns_subdomain};

// Gateway API's limits (the CRD's maxItems and maxLength).
const MAX_HOSTNAMES: usize = 16;
const MAX_GRPC_NAME_LEN: usize = 1024;

pub(in crate::route) fn route(route: &GrpcRoute) -> Result<(), FieldError> {
    route.annotations()?;
    let ns = &route.metadata.namespace;
    let spec = &route.spec;
    parent_refs(&spec.parent_refs, ns)?;
    at_most("spec.hostnames", spec.hostnames.len(), MAX_HOSTNAMES)?;
    for (i, h) in spec.hostnames.iter().enumerate() {
        hostname(&format!("spec.hostnames[{i}]"), h)?;
    }
    rules(
        &spec.rules,
        |r| r.name.as_deref(),
        |field, r| rule(field, r, ns),
    )
}

/// Gateway API's `Hostname`: a DNS name, its first label `*` at most.
fn hostname(field: &str, host: &str) -> Result<(), FieldError> {
    validate_dns_subdomain(field, host.strip_prefix("*.").unwrap_or(host))
}

fn rule(field: &str, r: &GrpcRouteRule, ns: &str) -> Result<(), FieldError> {
    at_most(&format!("{field}.matches"), r.matches.len(), MAX_MATCHES)?;
    for (i, m) in r.matches.iter().enumerate() {
        route_match(&format!("{field}.matches[{i}]"), m)?;
    }
    backend_refs(field, &r.backend_refs, ns)?;
    filters::grpc_rule_filters(field, &r.filters)?;
    if r.timeouts.is_some() {
        return Err(FieldError::new(
            format!("{field}.timeouts"),
            format!(
                "is not part of a GRPCRoute rule (Gateway API); leave it out and annotate the route with Linkerd's {TIMEOUT_REQUEST} and {TIMEOUT_RESPONSE}"
            ),
        ));
    }
    experimental(
        field,
        r.retry.as_ref(),
        r.session_persistence.as_ref(),
        RETRY_GRPC,
    )
}

fn route_match(field: &str, m: &GrpcRouteMatch) -> Result<(), FieldError> {
    if let Some(method) = &m.method {
        method_match(&format!("{field}.method"), method)?;
    }
    header_matches(&format!("{field}.headers"), &m.headers, Regex::Compiled)
}

/// Gateway API's `GRPCMethodMatch`: a service, a method or both, each a
/// name that can stand in the call's path `/<service>/<method>`.
fn method_match(field: &str, m: &GrpcMethodMatch) -> Result<(), FieldError> {
    if m.kind == ValueMatchType::RegularExpression {
        return Err(FieldError::new(
            format!("{field}.type"),
            "RegularExpression is not supported (nor is it by Linkerd); use Exact and name the service, the method or both",
        ));
    }
    if m.service.is_none() && m.method.is_none() {
        return Err(FieldError::new(
            field,
            "needs a service, a method or both (Gateway API); to match every call, leave out method",
        ));
    }
    if let Some(service) = &m.service {
        grpc_name(&format!("{field}.service"), service, GrpcName::Service)?;
    }
    if let Some(method) = &m.method {
        grpc_name(&format!("{field}.method"), method, GrpcName::Method)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GrpcName {
    /// A protobuf package and service: dot-separated identifiers.
    Service,
    /// One identifier.
    Method,
}

/// Gateway API's patterns: a method is an identifier (`[A-Za-z_][A-Za-z_0-9]*`),
/// a service dot-separated identifiers, with a leading dot allowed.
fn grpc_name(field: &str, name: &str, kind: GrpcName) -> Result<(), FieldError> {
    let bad = |reason: String| Err(FieldError::new(field, reason));
    if name.is_empty() {
        return bad("must not be empty (leave it out to match any)".into());
    }
    if name.contains('/') {
        return bad(format!(
            "{name:?} must not contain \"/\": a call's path is /<service>/<method>, and this names one part"
        ));
    }
    if name.len() > MAX_GRPC_NAME_LEN {
        return bad(format!("is longer than {MAX_GRPC_NAME_LEN} characters"));
    }
    let identifier = |s: &str| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let ok = match kind {
        GrpcName::Method => identifier(name),
        GrpcName::Service => name
            .strip_prefix('.')
            .unwrap_or(name)
            .split('.')
            .all(identifier),
    };
    if ok {
        return Ok(());
    }
    bad(match kind {
        GrpcName::Method => format!(
            "{name:?} is not a gRPC method name: letters, digits and _, not starting with a digit (e.g. ListAll)"
        ),
        GrpcName::Service => format!(
            "{name:?} is not a gRPC service name: dot-separated names of letters, digits and _, none starting with a digit (e.g. emojivoto.v1.EmojiService)"
        ),
    })
}
