//! The one place where errors become HTTP responses:
//! `{"error": {"message", "document", "resource", "field", "reason"}}`.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use strand_controller_core::ManifestError;

use super::{Body, json_response};
use crate::store::{ApplyError, StatusError, WriteError};

/// An error response of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Where in the input, for errors about a resource.
    pub detail: Option<Box<Detail>>,
    /// For 405: the methods the path accepts.
    pub allow: Option<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Detail {
    pub document: Option<usize>,
    pub resource: Option<String>,
    pub field: Option<String>,
    pub reason: Option<String>,
}

// === impl ApiError ===

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
            allow: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send `Authorization: Bearer <token>` with the token from <state-dir>/admin-token",
        )
    }

    pub(super) fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed; this path accepts {allow}"),
            )
        }
    }

    fn manifest(status: StatusCode, e: ManifestError) -> Self {
        Self {
            detail: Some(Box::new(Detail {
                document: Some(e.document),
                resource: e.resource.clone(),
                field: (!e.field.is_empty()).then(|| e.field.clone()),
                reason: Some(e.reason.clone()),
            })),
            ..Self::new(status, e.to_string())
        }
    }

    pub(super) fn into_response(self) -> Response<Body> {
        let mut err = Map::new();
        err.insert("message".into(), self.message.into());
        let detail = self.detail.map(|d| *d).unwrap_or_default();
        if let Some(d) = detail.document {
            err.insert("document".into(), d.into());
        }
        for (k, v) in [
            ("resource", detail.resource),
            ("field", detail.field),
            ("reason", detail.reason),
        ] {
            if let Some(v) = v {
                err.insert(k.into(), v.into());
            }
        }
        let mut rsp = json_response(self.status, &json!({ "error": Value::Object(err) }));
        if let Some(allow) = self.allow {
            rsp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            rsp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        rsp
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        tracing::error!(error = %e, "store write failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(e) => Self::manifest(StatusCode::BAD_REQUEST, e),
            ApplyError::Conflict(e) => Self::manifest(StatusCode::CONFLICT, e),
            ApplyError::Write(e) => e.into(),
        }
    }
}

impl From<StatusError> for ApiError {
    fn from(e: StatusError) -> Self {
        let message = e.to_string();
        let (status, key, error) = match e {
            StatusError::NotFound(_) => return Self::not_found(message),
            StatusError::Write(e) => return e.into(),
            StatusError::Invalid { key, error } => (StatusCode::BAD_REQUEST, key, error),
            StatusError::Conflict { key, error } => (StatusCode::CONFLICT, key, error),
        };
        Self {
            detail: Some(Box::new(Detail {
                document: None,
                resource: Some(key.to_string()),
                field: Some(error.field),
                reason: Some(error.reason),
            })),
            ..Self::new(status, message)
        }
    }
}
