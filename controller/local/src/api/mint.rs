//! Identity tokens through the management API: the identity service owns
//! the key and the format; the API only finds the pod and hands it over, so
//! this crate needs no cryptography.

use serde::{Deserialize, Serialize};
use strand_controller_core::Pod;

/// A pod's identity token, as `POST /api/v1/pods/{ns}/{name}/token` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodToken {
    /// What the pod's proxy sends to the identity service.
    pub token: String,
    /// The identity the token entitles the pod to.
    pub identity: String,
}

/// Mints tokens for pods.
pub trait PodTokenMinter: Send + Sync + 'static {
    /// A token for `pod`, which exists and has an address.
    fn mint(&self, pod: &Pod) -> Result<PodToken, String>;
}
