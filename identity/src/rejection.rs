//! Why a certificate was refused: the one mapping from refusal to metric
//! label and gRPC status.

use std::fmt;

/// The kind of refusal; its [`label`](Reason::label) is the `reason` label
/// of `identity_cert_rejected_total` and never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The token is malformed, its signature does not verify, or it is missing.
    InvalidToken,
    /// The token was issued to a pod at another address than the caller's.
    TokenPeerMismatch,
    /// The pod the token names no longer exists (or now has another address).
    UnknownPod,
    /// The request's identity, the token's and the CSR's name disagree.
    IdentityMismatch,
    /// The CSR cannot be parsed, its signature is wrong, or it asks for
    /// something that is never issued (another key type, other names).
    MalformedCsr,
    /// There is no usable issuer (missing, invalid or expired).
    IssuerUnavailable,
}

/// A refused request: the reason and a message for the caller naming what
/// was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

// === impl Reason ===

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::InvalidToken,
        Reason::TokenPeerMismatch,
        Reason::UnknownPod,
        Reason::IdentityMismatch,
        Reason::MalformedCsr,
        Reason::IssuerUnavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::InvalidToken => "invalid_token",
            Reason::TokenPeerMismatch => "token_peer_mismatch",
            Reason::UnknownPod => "unknown_pod",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::MalformedCsr => "malformed_csr",
            Reason::IssuerUnavailable => "issuer_unavailable",
        }
    }

    /// Token problems are the caller's credentials (`Unauthenticated` when
    /// they prove nothing, `PermissionDenied` when they prove something that
    /// does not entitle this caller); a bad CSR is a bad argument; names that
    /// disagree fail a precondition; a missing issuer is the server's problem
    /// and may pass, so the proxy retries.
    pub fn code(self) -> tonic::Code {
        match self {
            Reason::InvalidToken => tonic::Code::Unauthenticated,
            Reason::TokenPeerMismatch | Reason::UnknownPod => tonic::Code::PermissionDenied,
            Reason::IdentityMismatch => tonic::Code::FailedPrecondition,
            Reason::MalformedCsr => tonic::Code::InvalidArgument,
            Reason::IssuerUnavailable => tonic::Code::Unavailable,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

// === impl Rejection ===

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    pub fn invalid_token(message: impl Into<String>) -> Rejection {
        Self::new(Reason::InvalidToken, message)
    }

    pub fn malformed_csr(message: impl fmt::Display) -> Rejection {
        Self::new(
            Reason::MalformedCsr,
            format!("the certificate signing request is not acceptable: {message}"),
        )
    }

    pub fn issuer_unavailable(message: impl Into<String>) -> Rejection {
        Self::new(Reason::IssuerUnavailable, message)
    }
}

impl From<Rejection> for tonic::Status {
    fn from(r: Rejection) -> tonic::Status {
        tonic::Status::new(r.reason.code(), r.message)
    }
}
