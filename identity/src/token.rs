//! Workload tokens: what a proxy shows to prove which pod it runs in.
//!
//! `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`,
//! minted by the control plane for one pod and bound to its address and
//! identity. The key never leaves the control plane's host.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// Key length in bytes: HMAC-SHA256's block-sized keys gain nothing past
/// 32 bytes of entropy.
pub const TOKEN_KEY_LEN: usize = 32;

/// Tokens longer than this are refused before any decoding; real ones are
/// about 300 bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// The secret that signs tokens.
#[derive(Clone)]
pub struct TokenKey {
    secret: [u8; TOKEN_KEY_LEN],
    hmac: hmac::Key,
}

/// What a token says: the pod it was minted for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Claims {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    /// The identity the pod may be certified as.
    pub identity: String,
    /// The pod's address: the token is only good from there.
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the token's signature does not verify (it was not minted by this control plane, or was altered)"
    )]
    BadSignature,
    #[error("the token's claims are not valid: {0}")]
    Claims(String),
    #[error("the token key must be {TOKEN_KEY_LEN} bytes, not {0}")]
    KeyLength(usize),
    #[error("cannot read the token key {path}: {reason}")]
    Read { path: String, reason: String },
}

// === impl TokenKey ===

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> TokenKey {
        let mut secret = [0u8; TOKEN_KEY_LEN];
        fill_random(&mut secret);
        Self::from_secret(secret)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TokenKey, TokenError> {
        let secret: [u8; TOKEN_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| TokenError::KeyLength(bytes.len()))?;
        Ok(Self::from_secret(secret))
    }

    /// Reads a key file (`token.key`).
    pub fn load(path: &Path) -> Result<TokenKey, TokenError> {
        let bytes = std::fs::read(path).map_err(|e| TokenError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes)
    }

    fn from_secret(secret: [u8; TOKEN_KEY_LEN]) -> TokenKey {
        TokenKey {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            secret,
        }
    }

    pub(crate) fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }

    pub fn mint(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims always serialize"));
        let tag = hmac::sign(&self.hmac, body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// Checks the signature (in constant time) and returns the claims.
    /// Surrounding whitespace is ignored: token files often end in a newline.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let token = token.trim_ascii();
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("it is too long"));
        }
        let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed(
            "it has no '.' between claims and signature",
        ))?;
        let tag = B64
            .decode(tag)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        hmac::verify(&self.hmac, body.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        let json = B64
            .decode(body)
            .map_err(|_| TokenError::Malformed("the claims are not base64url"))?;
        serde_json::from_slice(&json).map_err(|e| TokenError::Claims(e.to_string()))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Fills `buf` from the system's secure random source.
pub(crate) fn fill_random(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("the system random source works");
}
