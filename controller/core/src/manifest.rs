use crate::{FieldError, Kind, Resource};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// Why a manifest was rejected: which document, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// 1-based position of the document in the input.
    pub document: usize,
    /// `Kind namespace/name` when the document got that far.
    pub resource: Option<String>,
    /// A dotted path such as `spec.ports[1].port`; empty for syntax errors.
    pub field: String,
    pub reason: String,
}

/// Parses one or more YAML (or JSON) documents separated by `---`.
///
/// All-or-nothing: the first invalid document fails the whole input.
/// Empty documents are skipped.
pub fn parse_manifests(text: &str) -> Result<Vec<Resource>, ManifestError> {
    Ok(parse_manifests_numbered(text)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Like [`parse_manifests`], with each resource's 1-based document number
/// (empty documents count), so that later checks can name the document.
pub fn parse_manifests_numbered(text: &str) -> Result<Vec<(usize, Resource)>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError {
            document,
            resource: None,
            field: String::new(),
            reason: format!("not valid YAML: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        out.push((document, parse_value(document, value)?));
    }
    Ok(out)
}

/// Parses one document already decoded as JSON.
pub fn parse_resource_json(value: Value) -> Result<Resource, ManifestError> {
    parse_value(1, value)
}

fn parse_value(document: usize, value: Value) -> Result<Resource, ManifestError> {
    let err = |resource: Option<String>, e: FieldError| ManifestError {
        document,
        resource,
        field: e.field,
        reason: e.reason,
    };
    let Value::Object(mut obj) = value else {
        return Err(err(
            None,
            FieldError::new(
                "",
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            ),
        ));
    };
    let api_version = take_string(&mut obj, "apiVersion").map_err(|e| err(None, e))?;
    let kind_name = take_string(&mut obj, "kind").map_err(|e| err(None, e))?;
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == kind_name)
        .ok_or_else(|| {
            let known: Vec<_> = Kind::ALL
                .iter()
                .map(|k| format!("{} ({})", k.name(), k.api_version()))
                .collect();
            err(
                None,
                FieldError::new(
                    "kind",
                    format!(
                        "unknown kind {kind_name:?}; known kinds: {}",
                        known.join(", ")
                    ),
                ),
            )
        })?;
    if !kind.api_versions().contains(&api_version.as_str()) {
        let served: Vec<_> = kind
            .api_versions()
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
        return Err(err(
            None,
            FieldError::new(
                "apiVersion",
                format!(
                    "{kind_name} is served as {}, not {api_version:?}",
                    served.join(" or ")
                ),
            ),
        ));
    }
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(|n| {
            let ns = obj
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            format!("{kind_name} {ns}/{n}")
        });
    let value = Value::Object(obj);
    let mut resource = match kind {
        Kind::Service => typed(value).map(Resource::Service),
        Kind::Workload => typed(value).map(Resource::Workload),
        Kind::Pod => typed(value).map(Resource::Pod),
        Kind::HttpRoute => typed(value).map(Resource::HttpRoute),
        Kind::GrpcRoute => typed(value).map(Resource::GrpcRoute),
        Kind::ServiceProfile => typed(value).map(Resource::ServiceProfile),
    }
    .map_err(|e| err(name.clone(), e))?;
    resource.set_api_version(&api_version);
    resource.validate().map_err(|e| err(name, e))?;
    Ok(resource)
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field against its parent; name the field itself.
        match inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) => {
                let full = if path == "." {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                FieldError::new(full, "is required")
            }
            None => {
                // A label or annotation value that YAML read as a number or
                // a boolean: name the key as validation does, and say why.
                for map in ["metadata.labels", "metadata.annotations"] {
                    if let Some(key) = path.strip_prefix(map).and_then(|k| k.strip_prefix('.')) {
                        return FieldError::new(
                            format!("{map}[{key:?}]"),
                            format!("{inner}: quote the value"),
                        );
                    }
                }
                FieldError::new(if path == "." { String::new() } else { path }, inner)
            }
        }
    })
}

fn take_string(
    obj: &mut serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, FieldError> {
    match obj.remove(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(FieldError::new(field, "is required")),
        Some(other) => Err(FieldError::new(
            field,
            format!("must be a string, not {other}"),
        )),
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(r) = &self.resource {
            write!(f, " ({r})")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.field, self.reason)
        }
    }
}

#[cfg(test)]
mod tests;
