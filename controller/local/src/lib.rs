//! Local mode's control plane state: an embedded, persistent store of
//! resources (the source of truth when there is no Kubernetes), the
//! management API that `strand apply`/`get`/`delete` and `strand run` talk
//! to, and the client they use.
//!
//! ```text
//!  strand apply / get / delete / run
//!        |  ApiClient: HTTP/1 + JSON, Bearer admin token
//!        v
//!  ApiServer (127.0.0.1:8089) --> Store --> <state-dir>/wal.log       append + fdatasync
//!                                   |   \-> <state-dir>/snapshot.json on compaction
//!                                   \-- watch --> index, DNS, GET /api/v1/watch
//! ```

#![forbid(unsafe_code)]

mod api;
mod client;
mod config;
mod store;

#[cfg(test)]
mod test_support;

pub use self::api::{
    AdminToken, ApiServer, BindError, MAX_BODY_BYTES, PodToken, PodTokenMinter, TOKEN_FILE,
    TokenError,
};
pub use self::client::{ApiClient, ClientError};
pub use self::config::{
    Cidr, CidrError, DEFAULT_API_ADDR, DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR, StoreConfig,
};
pub use self::store::{
    Action, Applied, ApplyError, Change, OpenError, StatusError, Store, Watch, WatchEvent,
    WriteError,
};
