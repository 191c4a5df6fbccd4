//! Routes from an OpenAPI spec (`strand profile --open-api`): Swagger 2 or
//! OpenAPI 3, in JSON or YAML, one route per operation, named and matched
//! as `linkerd profile --open-api` makes them (`GET /books/{id}`, method
//! `GET` and path regex `/books/[^/]*`).
//!
//! The spec is read as a tree rather than into typed structs: only paths,
//! operations, a few extensions and the base path matter, and a tree keeps
//! the spec's order of paths (which becomes the routes' order) and lets
//! everything else be anything.

use super::literal_regex;
use anyhow::{Context as _, anyhow, bail};
use serde_yaml_ng::{Mapping, Value};
use strand_controller_core::{GoDuration, ProfileRoute, RequestMatch};

/// The operations of a path item, in the order their routes are listed
/// (reads, then writes, then the rest). OpenAPI spells them in lower case.
const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

/// Linkerd's vendor extensions on an operation (matched ignoring case, as
/// Linkerd's OpenAPI library lower-cases extension names).
const RETRYABLE: &str = "x-linkerd-retryable";
const TIMEOUT: &str = "x-linkerd-timeout";

/// How many `$ref`s may lead to one path item: real specs use one, and a
/// chain this long is a cycle.
const MAX_REF_HOPS: usize = 16;

/// Which OpenAPI: it decides where the base path comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Version {
    /// Swagger 2.0: `basePath`.
    Swagger2,
    /// OpenAPI 3.x: the path of the first `servers[].url` (of the
    /// operation, else its path item, else the spec).
    OpenApi3,
}

/// The routes of every operation of the spec in `text`, in the spec's
/// order of paths and [`METHODS`] order within a path.
pub(super) fn routes(text: &str) -> anyhow::Result<Vec<ProfileRoute>> {
    let doc = parse(text)?;
    let Some(root) = doc.as_mapping() else {
        bail!(
            "not an OpenAPI spec: the document is not a mapping (a spec starts with \
             `openapi: 3.x` or `swagger: \"2.0\"`)"
        );
    };
    let version = version(root)?;
    let spec_base = match version {
        Version::Swagger2 => match root.get("basePath") {
            None | Some(Value::Null) => String::new(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| anyhow!("basePath: {} is not a string", show(v)))?
                .to_string(),
        },
        Version::OpenApi3 => server_path(root.get("servers"), "servers")?.unwrap_or_default(),
    };
    let paths = match root.get("paths") {
        None | Some(Value::Null) => {
            bail!("the spec has no paths: there is nothing to make routes of")
        }
        Some(v) => v
            .as_mapping()
            .ok_or_else(|| anyhow!("paths: {} is not a mapping of paths", show(v)))?,
    };
    if paths.is_empty() {
        bail!("the spec has no paths (`paths` is empty): there is nothing to make routes of");
    }

    let mut routes = Vec::new();
    for (key, item) in paths {
        let Some(rel) = key.as_str() else {
            bail!("paths: the key {} is not a path", show(key));
        };
        if is_extension(rel) {
            continue;
        }
        let field = format!("paths.{rel}");
        let Some(item) = resolve(&doc, item, &field)? else {
            continue;
        };
        let item_base = match version {
            Version::Swagger2 => None,
            Version::OpenApi3 => server_path(item.get("servers"), &format!("{field}.servers"))?,
        };
        for method in METHODS {
            let lower = method.to_ascii_lowercase();
            let op = match item.get(lower.as_str()) {
                None | Some(Value::Null) => continue,
                Some(op) => op
                    .as_mapping()
                    .ok_or_else(|| anyhow!("{field}.{lower}: {} is not an operation", show(op)))?,
            };
            let field = format!("{field}.{lower}");
            let op_base = match version {
                Version::Swagger2 => None,
                Version::OpenApi3 => server_path(op.get("servers"), &format!("{field}.servers"))?,
            };
            let base = op_base
                .as_deref()
                .or(item_base.as_deref())
                .unwrap_or(&spec_base);
            routes.push(route(method, &join(base, rel), op, &field)?);
        }
    }
    if routes.is_empty() {
        bail!(
            "the spec's paths have no operations ({}): there is nothing to make routes of",
            METHODS.map(|m| m.to_ascii_lowercase()).join(", ")
        );
    }
    Ok(routes)
}

/// `/books/{id}.json` -> `/books/[^/]*\.json`: each `{param}` matches one
/// path segment or part of one (Linkerd's `[^/]*`), the rest literally.
pub(super) fn path_regex(path: &str) -> String {
    let mut re = String::with_capacity(path.len() + 8);
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        re.push_str(&literal_regex(&rest[..open]));
        re.push_str("[^/]*");
        rest = &rest[open + len + 1..];
    }
    re.push_str(&literal_regex(rest));
    re
}

/// JSON when it looks like JSON (its errors are clearer, and tabs are
/// fine), YAML otherwise; both keep the order of mappings.
fn parse(text: &str) -> anyhow::Result<Value> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut doc: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).context("not valid JSON")?
    } else {
        serde_yaml_ng::from_str(text).context("not valid YAML")?
    };
    if doc.is_null() {
        bail!("the file is empty: expected an OpenAPI spec");
    }
    doc.apply_merge().context("not valid YAML")?;
    Ok(doc)
}

fn version(root: &Mapping) -> anyhow::Result<Version> {
    // Unquoted in YAML, `2.0` and `3.1` are numbers.
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => show(other),
    };
    if let Some(v) = root.get("swagger") {
        let v = text(v);
        if v == "2" || v.starts_with("2.") {
            return Ok(Version::Swagger2);
        }
        bail!("swagger: version {v} is not supported: use Swagger 2.0 or OpenAPI 3");
    }
    if let Some(v) = root.get("openapi") {
        let v = text(v);
        if v == "3" || v.starts_with("3.") {
            return Ok(Version::OpenApi3);
        }
        bail!("openapi: version {v} is not supported: use Swagger 2.0 or OpenAPI 3");
    }
    bail!("not an OpenAPI spec: it has neither `swagger: \"2.0\"` nor `openapi: 3.x` at the top")
}

/// The path part of the first server's URL (`https://api.example.com/v1`
/// -> `/v1`), with its variables' defaults filled in; `None` when no
/// servers are given (the enclosing level's apply).
fn server_path(servers: Option<&Value>, field: &str) -> anyhow::Result<Option<String>> {
    let first = match servers {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => match v.as_sequence() {
            Some(list) => match list.first() {
                Some(first) => first,
                None => return Ok(None),
            },
            None => bail!("{field}: {} is not a list of servers", show(v)),
        },
    };
    let url = first
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{field}[0].url: a server needs a url (a string)"))?;
    let url = fill_variables(url, first.get("variables"));
    // An absolute URL's path follows its authority; a relative one
    // (`/v1`, `v1`) is all path.
    let after_scheme = match url.find("://") {
        Some(i) => Some(&url[i + 3..]),
        None => url.strip_prefix("//"),
    };
    let path = match after_scheme {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => &url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Ok(Some(String::new()));
    }
    Ok(Some(format!("/{}", path.trim_start_matches('/'))))
}

/// `{var}` in a server URL becomes the variable's default; one without a
/// default stays, to match any segment like a path parameter.
fn fill_variables(url: &str, variables: Option<&Value>) -> String {
    let default = |name: &str| {
        variables?.get(name)?.get("default").and_then(|d| match d {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let var = &rest[open..open + len + 1];
        match default(&var[1..var.len() - 1]) {
            Some(value) => out.push_str(&value),
            None => out.push_str(var),
        }
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

/// A path item, following `$ref`s within the spec; `None` for an empty one.
fn resolve<'a>(
    root: &'a Value,
    item: &'a Value,
    field: &str,
) -> anyhow::Result<Option<&'a Mapping>> {
    let mut item = item;
    for _ in 0..MAX_REF_HOPS {
        let map = match item {
            Value::Null => return Ok(None),
            v => v
                .as_mapping()
                .ok_or_else(|| anyhow!("{field}: {} is not a path item", show(v)))?,
        };
        let Some(reference) = map.get("$ref") else {
            return Ok(Some(map));
        };
        let reference = reference
            .as_str()
            .ok_or_else(|| anyhow!("{field}.$ref: {} is not a reference", show(reference)))?;
        let Some(pointer) = reference.strip_prefix('#') else {
            bail!(
                "{field}.$ref: {reference:?} points into another file: bundle the spec into one \
                 file first"
            );
        };
        item = pointee(root, pointer)
            .ok_or_else(|| anyhow!("{field}.$ref: {reference:?} points at nothing in the spec"))?;
    }
    bail!("{field}.$ref: more than {MAX_REF_HOPS} references in a row (a cycle?)")
}

/// What a JSON pointer (RFC 6901, as a URI fragment) points at.
fn pointee<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let pointer = percent_decode(pointer)?;
    if pointer.is_empty() {
        return Some(root);
    }
    let mut at = root;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Value::Sequence(list) => list.get(token.parse::<usize>().ok()?)?,
            v => v.as_mapping()?.get(token.as_str())?,
        };
    }
    Some(at)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Linkerd's join: the base without its trailing `/`, then the path with
/// exactly one `/` before it.
fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn route(method: &str, path: &str, op: &Mapping, field: &str) -> anyhow::Result<ProfileRoute> {
    let is_retryable = match extension(op, RETRYABLE) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(true)) => Some(true),
        Some(Value::Bool(false)) => None,
        Some(v) => bail!("{field}.{RETRYABLE}: {} is not true or false", show(v)),
    };
    let timeout = match extension(op, TIMEOUT) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            let t: GoDuration = text
                .parse()
                .map_err(|e: String| anyhow!("{field}.{TIMEOUT}: {e}"))?;
            if t.as_duration().is_zero() {
                bail!(
                    "{field}.{TIMEOUT}: {text:?} would fail every request: give a positive duration"
                );
            }
            Some(t)
        }
        Some(v) => bail!(
            "{field}.{TIMEOUT}: {} is not a duration: write one such as \"300ms\" or \"1.5s\"",
            show(v)
        ),
    };
    // Linkerd also lists a response class per documented status (a
    // failure from 500): that says what the default classification says
    // already, so the profile is shorter without it.
    Ok(ProfileRoute {
        name: format!("{method} {path}"),
        condition: RequestMatch {
            method: Some(method.to_string()),
            path_regex: Some(path_regex(path)),
            ..RequestMatch::default()
        },
        response_classes: Vec::new(),
        is_retryable,
        timeout,
    })
}

fn extension<'a>(op: &'a Mapping, name: &str) -> Option<&'a Value> {
    op.iter()
        .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v)
}

/// Specification extensions (`x-...`) may sit among paths.
fn is_extension(key: &str) -> bool {
    key.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
}

/// A value as a message shows it: short, on one line.
fn show(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests;
