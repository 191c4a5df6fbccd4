//! The embedded store: the source of truth of a local-mode control plane.
//!
//! ```text
//!  apply / delete / status --> plan (pure, state.rs) --> wal.log: append + fdatasync
//!                                                             | then
//!  get / list <-- RwLock<State> <-- commit <------------------/
//!  watch      <-- broadcast <------ events
//!  compaction: snapshot.json (tmp, fsync, rename, fsync dir), then empty the log
//! ```
//!
//! Every change is one log record, durable before it is acknowledged or
//! published. Mutations run on tokio's blocking pool behind one writer
//! mutex, and do their whole job there (plan, write, commit, publish): a
//! caller that stops waiting cannot leave the log and memory apart.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::SystemTime;
use strand_controller_core::{
    FieldError, Kind, ManifestError, Pod, PodStatus, Resource, ResourceKey,
    parse_manifests_numbered,
};
use tokio::sync::broadcast;

use self::codec::{Op, decode_record, decode_resource, encode_record};
use self::lock::DirLock;
use self::state::State;
use self::wal::Wal;
use crate::config::StoreConfig;

mod codec;
mod ipam;
mod lock;
mod state;
mod wal;
mod watch;

pub use self::watch::{Change, Watch, WatchEvent};

pub(crate) use self::codec::sync_dir;

const SNAPSHOT_FILE: &str = "snapshot.json";
const LOG_FILE: &str = "wal.log";

/// A handle on the store; clones share it. The state directory stays locked
/// until the last handle (and any write in flight) is gone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What one apply did to one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub action: Action,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    /// Spec, labels and annotations were equal: nothing written.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} is held by process {pid}: is another control plane running on this state directory?",
        path.display()
    )]
    Locked { path: PathBuf, pid: u32 },
    #[error(
        "the snapshot {} cannot be read: {reason}; move it aside to start from the log alone (objects only it holds are lost)",
        path.display()
    )]
    Snapshot { path: PathBuf, reason: String },
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// A change could not be made durable; nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write the store's log {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the store's writer failed earlier; restart the control plane")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The input or one of its documents is invalid; nothing was stored.
    #[error("{0}")]
    Invalid(ManifestError),
    /// A document conflicts with what is stored (an address in use).
    #[error("{0}")]
    Conflict(ManifestError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{key}: {error}")]
    Invalid { key: ResourceKey, error: FieldError },
    #[error("{key}: {error}")]
    Conflict { key: ResourceKey, error: FieldError },
    #[error(transparent)]
    Write(#[from] WriteError),
}

struct Shared {
    config: StoreConfig,
    state: RwLock<State>,
    /// The one mutation path: held from planning until the change is published.
    writer: Mutex<Wal>,
    events: broadcast::Sender<WatchEvent>,
    _lock: DirLock,
}

// === impl Store ===

impl Store {
    /// Opens (creating if needed) the store in `config.state_dir`: locks the
    /// directory, loads the snapshot, replays the log.
    pub async fn open(config: StoreConfig) -> Result<Store, OpenError> {
        let dir = config.state_dir.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .unwrap_or_else(|e| {
                Err(OpenError::Io {
                    path: dir,
                    source: io::Error::other(e),
                })
            })
    }

    fn open_blocking(config: StoreConfig) -> Result<Store, OpenError> {
        if config.service_cidr.overlaps(&config.pod_cidr) {
            return Err(OpenError::Config(format!(
                "the service CIDR {} overlaps the pod CIDR {}",
                config.service_cidr, config.pod_cidr
            )));
        }
        let dir = &config.state_dir;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        // 0700: the directory holds the admin token.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir)?;

        let mut state = State::new(&config);
        let snap_path = dir.join(SNAPSHOT_FILE);
        let snap_err = |reason: String| OpenError::Snapshot {
            path: snap_path.clone(),
            reason,
        };
        if let Some(snap) = codec::read_snapshot(&snap_path).map_err(|e| snap_err(e.to_string()))? {
            let objects = snap
                .objects
                .into_iter()
                .map(decode_resource)
                .collect::<Result<Vec<_>, _>>()
                .map_err(snap_err)?;
            state.load(snap.seq, snap.cursors, objects);
        }

        let log_path = dir.join(LOG_FILE);
        let created = !log_path.exists();
        let wal = Wal::open(&log_path, |payload| {
            let (seq, ops) = decode_record(payload)?;
            // Left behind by a crash between a snapshot and emptying the log.
            if seq <= state.seq() {
                return Ok(());
            }
            if seq != state.seq() + 1 {
                return Err(format!("record {seq} follows record {}", state.seq()));
            }
            state.commit(seq, ops);
            Ok(())
        })
        .map_err(io_err(&log_path))?;
        if created {
            codec::sync_dir(dir).map_err(io_err(dir))?;
        }
        tracing::info!(
            dir = %dir.display(),
            resource_version = state.seq(),
            log_records = wal.records(),
            "store opened"
        );
        let (events, _) = broadcast::channel(config.watch_capacity.max(1));
        Ok(Store {
            shared: Arc::new(Shared {
                config,
                state: RwLock::new(state),
                writer: Mutex::new(wal),
                events,
                _lock: lock,
            }),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Applies every document of `text` (YAML or JSON, `---`-separated), or
    /// none of them.
    pub async fn apply(&self, text: impl Into<String>) -> Result<Vec<Applied>, ApplyError> {
        let text = text.into();
        self.blocking(move |s| s.apply(&text)).await
    }

    /// Removes a resource; `None` when there was none.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Resource>, WriteError> {
        let key = ResourceKey::new(kind, namespace, name);
        self.blocking(move |s| s.delete(key)).await
    }

    /// The pod status subresource: replaces `status` only, keeping the pod
    /// IP unless `status` names one.
    pub async fn update_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: PodStatus,
    ) -> Result<Pod, StatusError> {
        let key = ResourceKey::new(Kind::Pod, namespace, name);
        self.blocking(move |s| s.update_pod_status(key, status))
            .await
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Resource> {
        let key = ResourceKey::new(kind, namespace, name);
        self.shared.read_state().get(&key).cloned()
    }

    /// Resources of one kind in one namespace (or all), sorted by namespace
    /// then name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Resource> {
        self.shared.read_state().list(kind, namespace)
    }

    /// The sequence number of the last change.
    pub fn resource_version(&self) -> u64 {
        self.shared.read_state().seq()
    }

    /// Every resource (as `ADDED`), then `SYNCED`, then each change as it
    /// is committed.
    pub fn watch(&self) -> Watch {
        Watch::new(&self.shared)
    }

    async fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .unwrap_or_else(|_| Err(WriteError::Stopped.into()))
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("state_dir", &self.shared.config.state_dir)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl Shared {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, readers
        // still see the last committed state.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> Result<MutexGuard<'_, Wal>, WriteError> {
        self.writer.lock().map_err(|_| WriteError::Stopped)
    }

    fn apply(&self, text: &str) -> Result<Vec<Applied>, ApplyError> {
        let docs = parse_manifests_numbered(text).map_err(ApplyError::Invalid)?;
        let mut wal = self.writer()?;
        let now = state::rfc3339(SystemTime::now());
        let plan = self.read_state().plan_apply(docs, &now)?;
        if !plan.ops.is_empty() {
            self.commit(&mut wal, plan.ops)?;
        }
        Ok(plan.applied)
    }

    fn delete(&self, key: ResourceKey) -> Result<Option<Resource>, WriteError> {
        let mut wal = self.writer()?;
        let old = self.read_state().get(&key).cloned();
        if old.is_some() {
            self.commit(&mut wal, vec![Op::Delete(key)])?;
        }
        Ok(old)
    }

    fn update_pod_status(&self, key: ResourceKey, status: PodStatus) -> Result<Pod, StatusError> {
        let mut wal = self.writer()?;
        let (pod, op) = self.read_state().plan_status(&key, status)?;
        if let Some(op) = op {
            self.commit(&mut wal, vec![op])?;
        }
        Ok(pod)
    }

    /// Writes one record, then updates memory and publishes.
    fn commit(&self, wal: &mut Wal, ops: Vec<Op>) -> Result<u64, WriteError> {
        let seq = self.read_state().seq() + 1;
        let payload = encode_record(seq, &ops);
        wal.append(&payload).map_err(|source| WriteError::Io {
            path: wal.path().to_path_buf(),
            source,
        })?;
        {
            // Published under the write lock, so that a new watcher's
            // initial list and its subscription agree (see watch.rs).
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for event in state.commit(seq, ops) {
                // No receivers is fine.
                let _ = self.events.send(event);
            }
        }
        if wal.len() > self.config.compact_bytes || wal.records() >= self.config.compact_records {
            self.compact(wal);
        }
        Ok(seq)
    }

    /// Snapshot, then empty the log. A failure is logged and retried after
    /// the next change: the log still holds everything.
    fn compact(&self, wal: &mut Wal) {
        let (seq, cursors, objects) = {
            let state = self.read_state();
            let objects: Vec<_> = state.objects().map(Resource::to_json).collect();
            (state.seq(), state.cursors(), objects)
        };
        let count = objects.len();
        let path = self.config.state_dir.join(SNAPSHOT_FILE);
        match codec::write_snapshot(&path, seq, cursors, objects).and_then(|()| wal.reset()) {
            Ok(()) => tracing::debug!(seq, objects = count, "store compacted"),
            Err(e) => tracing::warn!(error = %e, "store compaction failed; the log keeps growing"),
        }
    }
}

#[cfg(test)]
mod tests;
