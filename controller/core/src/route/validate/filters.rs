//! A rule's filters: Gateway API's rules for them (the CRD's limits and
//! CEL rules, and its webhook's one action per header), and the types
//! strand does not implement (for a GRPCRoute, all but
//! `RequestHeaderModifier`).

use super::{MAX_HEADER_VALUE_LEN, at_most, path_value, port, text_value, token};
use crate::route::{
    HttpHeader, HttpHeaderFilter, HttpPathModifier, HttpRequestRedirectFilter, HttpRouteFilter,
    HttpRouteFilterType, HttpRouteMatch, HttpRouteRule, PathMatchType, PathModifierType,
};
use crate::{FieldError, validate_dns_subdomain};
use std::collections::HashMap;

// Gateway API's limits (the CRD's maxItems).
const MAX_FILTERS: usize = 16;
const MAX_HEADER_ACTIONS: usize = 16;

/// Gateway API's redirect statuses (301 and 302 in its standard channel,
/// the others in its experimental one).
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// The filter types a kind of route takes, and the refusal of the others.
struct Supported {
    types: &'static [HttpRouteFilterType],
    refusal: &'static str,
}

const HTTP_ROUTE: Supported = Supported {
    types: &[
        HttpRouteFilterType::RequestHeaderModifier,
        HttpRouteFilterType::ResponseHeaderModifier,
        HttpRouteFilterType::RequestRedirect,
    ],
    refusal: "is not supported yet; strand implements RequestHeaderModifier, ResponseHeaderModifier and RequestRedirect",
};

/// Linkerd's outbound policy carries no other filter on a gRPC route.
const GRPC_ROUTE: Supported = Supported {
    types: &[HttpRouteFilterType::RequestHeaderModifier],
    refusal: "is not supported in a GRPCRoute; strand implements RequestHeaderModifier there, as Linkerd does",
};

/// `{field}.filters` of HTTPRoute rule `r`.
pub(super) fn rule_filters(field: &str, r: &HttpRouteRule) -> Result<(), FieldError> {
    let filters = format!("{field}.filters");
    let seen = filter_list(&filters, &r.filters, &HTTP_ROUTE, &r.matches)?;
    if let Some(i) = seen.get(&HttpRouteFilterType::RequestRedirect)
        && !r.backend_refs.is_empty()
    {
        return Err(FieldError::new(
            format!("{field}.backendRefs"),
            format!(
                "must be left out of a rule with a RequestRedirect filter ({filters}[{i}]): the client's proxy answers the redirect itself and sends nothing to a backend (Gateway API)"
            ),
        ));
    }
    Ok(())
}

/// `{field}.filters` of a GRPCRoute rule.
pub(super) fn grpc_rule_filters(
    field: &str,
    filters: &[HttpRouteFilter],
) -> Result<(), FieldError> {
    filter_list(&format!("{field}.filters"), filters, &GRPC_ROUTE, &[]).map(drop)
}

/// The filters of a rule with matches `matches`: at most 16, one of each
/// type; where each type is.
fn filter_list(
    filters: &str,
    list: &[HttpRouteFilter],
    supported: &Supported,
    matches: &[HttpRouteMatch],
) -> Result<HashMap<HttpRouteFilterType, usize>, FieldError> {
    at_most(filters, list.len(), MAX_FILTERS)?;
    let mut seen: HashMap<HttpRouteFilterType, usize> = HashMap::new();
    for (i, f) in list.iter().enumerate() {
        let field = format!("{filters}[{i}]");
        filter(&field, f, supported, matches)?;
        if let Some(j) = seen.insert(f.kind, i) {
            return Err(FieldError::new(
                format!("{field}.type"),
                format!(
                    "a second {} filter (also {filters}[{j}]): Gateway API allows one of each type per rule",
                    f.kind.as_str()
                ),
            ));
        }
    }
    Ok(seen)
}

fn filter(
    field: &str,
    f: &HttpRouteFilter,
    supported: &Supported,
    matches: &[HttpRouteMatch],
) -> Result<(), FieldError> {
    use HttpRouteFilterType as T;
    let kind = f.kind.as_str();
    if !supported.types.contains(&f.kind) {
        return Err(FieldError::new(
            format!("{field}.type"),
            format!("{kind} {}", supported.refusal),
        ));
    }
    // Gateway API: a filter has the key its type names, and no other.
    if let Some(other) = T::ALL.into_iter().find(|t| *t != f.kind && f.has_key(*t)) {
        return Err(FieldError::new(
            format!("{field}.{}", other.key()),
            format!(
                "must be left out: type is {kind}, whose settings go in {}",
                f.kind.key()
            ),
        ));
    }
    let at = format!("{field}.{}", f.kind.key());
    match (
        f.kind,
        &f.request_header_modifier,
        &f.response_header_modifier,
        &f.request_redirect,
    ) {
        (T::RequestHeaderModifier, Some(h), _, _) | (T::ResponseHeaderModifier, _, Some(h), _) => {
            header_filter(&at, h)
        }
        (T::RequestRedirect, _, _, Some(redirect_filter)) => {
            redirect(&at, redirect_filter, matches)
        }
        _ => Err(FieldError::new(
            at,
            format!("is required when type is {kind}"),
        )),
    }
}

/// Gateway API's `HTTPHeaderFilter`: valid names and values, at most 16 of
/// each action, and one action per header (names are case-insensitive).
fn header_filter(field: &str, h: &HttpHeaderFilter) -> Result<(), FieldError> {
    let mut actions: HashMap<String, String> = HashMap::new();
    let mut one_action = |field: String, name: &str| match actions
        .insert(name.to_ascii_lowercase(), field.clone())
    {
        None => Ok(()),
        Some(other) => Err(FieldError::new(
            field,
            format!(
                "{name:?} has an action already ({other}): Gateway API allows one action per header (names are case-insensitive)"
            ),
        )),
    };
    for (action, headers) in [("set", &h.set), ("add", &h.add)] {
        let list = format!("{field}.{action}");
        at_most(&list, headers.len(), MAX_HEADER_ACTIONS)?;
        for (i, HttpHeader { name, value }) in headers.iter().enumerate() {
            let field = format!("{list}[{i}]");
            token(&format!("{field}.name"), name, "an HTTP header name")?;
            one_action(format!("{field}.name"), name)?;
            text_value(
                &format!("{field}.value"),
                value,
                MAX_HEADER_VALUE_LEN,
                "header",
            )?;
        }
    }
    let list = format!("{field}.remove");
    at_most(&list, h.remove.len(), MAX_HEADER_ACTIONS)?;
    for (i, name) in h.remove.iter().enumerate() {
        let field = format!("{list}[{i}]");
        token(&field, name, "an HTTP header name")?;
        one_action(field, name)?;
    }
    Ok(())
}

fn redirect(
    field: &str,
    r: &HttpRequestRedirectFilter,
    matches: &[HttpRouteMatch],
) -> Result<(), FieldError> {
    if let Some(host) = &r.hostname {
        validate_dns_subdomain(&format!("{field}.hostname"), host)?;
    }
    if let Some(p) = &r.path {
        path_modifier(&format!("{field}.path"), p, matches)?;
    }
    port(&format!("{field}.port"), r.port)?;
    if let Some(status) = r.status_code
        && !REDIRECT_STATUSES.contains(&status)
    {
        return Err(FieldError::new(
            format!("{field}.statusCode"),
            format!(
                "{status} is not a redirect status Gateway API allows: use 301, 302 (the default), 303, 307 or 308"
            ),
        ));
    }
    Ok(())
}

/// Gateway API's `HTTPPathModifier`: the key its type names, and no other;
/// `ReplacePrefixMatch` only for a rule with exactly one match, a
/// `PathPrefix` one (the prefix it replaces is that match's).
fn path_modifier(
    field: &str,
    p: &HttpPathModifier,
    matches: &[HttpRouteMatch],
) -> Result<(), FieldError> {
    let (kind, value, key, other, other_key) = match p.kind {
        PathModifierType::ReplaceFullPath => (
            "ReplaceFullPath",
            &p.replace_full_path,
            "replaceFullPath",
            &p.replace_prefix_match,
            "replacePrefixMatch",
        ),
        PathModifierType::ReplacePrefixMatch => (
            "ReplacePrefixMatch",
            &p.replace_prefix_match,
            "replacePrefixMatch",
            &p.replace_full_path,
            "replaceFullPath",
        ),
    };
    if other.is_some() {
        return Err(FieldError::new(
            format!("{field}.{other_key}"),
            format!("must be left out: type is {kind}, whose value goes in {key}"),
        ));
    }
    let Some(value) = value else {
        return Err(FieldError::new(
            format!("{field}.{key}"),
            format!("is required when type is {kind}"),
        ));
    };
    path_value(&format!("{field}.{key}"), value)?;
    if p.kind == PathModifierType::ReplacePrefixMatch {
        // A rule without matches, or a match without a path, matches
        // prefix `/` (Gateway API's defaults).
        let prefix = |m: &HttpRouteMatch| {
            m.path
                .as_ref()
                .is_none_or(|p| p.kind == PathMatchType::PathPrefix)
        };
        let ok = match matches {
            [] => true,
            [m] => prefix(m),
            _ => false,
        };
        if !ok {
            return Err(FieldError::new(
                format!("{field}.type"),
                format!(
                    "ReplacePrefixMatch needs the rule to have exactly one match, a PathPrefix one (Gateway API): it replaces the prefix that match matched; this rule has {}",
                    describe(matches)
                ),
            ));
        }
    }
    Ok(())
}

/// The rule's matches, for the refusal of a prefix replacement.
fn describe(matches: &[HttpRouteMatch]) -> String {
    match matches {
        [m] => match m.path.as_ref().map(|p| p.kind) {
            Some(PathMatchType::Exact) => "an Exact match".to_string(),
            Some(PathMatchType::RegularExpression) => "a RegularExpression match".to_string(),
            _ => "a PathPrefix match".to_string(),
        },
        ms => format!("{} matches", ms.len()),
    }
}
