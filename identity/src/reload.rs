//! An issuer that follows its files: rotate `issuer.crt`/`issuer.key` (and
//! `ca.crt`) on disk and new certificates come from the new issuer within
//! a poll interval, without a restart.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use crate::ca::{CaError, CaFiles, CaPart, CaPems};
use crate::issuer::Issuer;
use crate::metrics::Metrics;

/// How often the files are read. They are three small files, so reading
/// them outright costs little and, unlike comparing mtimes, never misses
/// two writes within the file system's timestamp granularity.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The issuer in use, replaced when its files change to something valid.
/// Cheap to clone.
#[derive(Clone)]
pub struct ReloadingIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    files: CaFiles,
    metrics: Metrics,
    current: watch::Sender<Arc<Issuer>>,
    seen: Mutex<Seen>,
}

/// File contents, `None` where a file cannot be read.
type Snapshot = [Option<Vec<u8>>; 3];

#[derive(Default)]
struct Seen {
    /// What the issuer in use was loaded from.
    loaded: Snapshot,
    /// Invalid contents seen on the last poll; a warning is logged when the
    /// same contents are still there on the next one, so that files caught
    /// half-way through a rotation (new key, old certificate) do not warn.
    invalid: Option<Snapshot>,
    warned: bool,
}

/// What a [`ReloadingIssuer::check`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Replaced,
    /// The files changed to something unusable; the old issuer stays.
    Rejected,
}

// === impl ReloadingIssuer ===

impl ReloadingIssuer {
    /// Loads the issuer from `dir`. Files that do not fit together are an
    /// error; an expired issuer loads (with a warning) so that requests are
    /// refused with a reason saying so.
    pub fn load(dir: &Path, metrics: Metrics) -> Result<ReloadingIssuer, CaError> {
        let files = CaFiles::new(dir);
        let snapshot = read_snapshot(&files);
        let issuer = load_snapshot(&files, &snapshot)?;
        if let Err(e) = issuer.usable_at(SystemTime::now()) {
            tracing::warn!(dir = %dir.display(), "{e}");
        }
        metrics.issuer_loaded(&issuer);
        let (current, _) = watch::channel(Arc::new(issuer));
        Ok(ReloadingIssuer {
            inner: Arc::new(Inner {
                files,
                metrics,
                current,
                seen: Mutex::new(Seen {
                    loaded: snapshot,
                    ..Seen::default()
                }),
            }),
        })
    }

    pub fn current(&self) -> Arc<Issuer> {
        self.inner.current.borrow().clone()
    }

    /// Sees every replacement.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Issuer>> {
        self.inner.current.subscribe()
    }

    pub fn dir(&self) -> &Path {
        self.inner.files.dir()
    }

    /// Reads the files once and replaces the issuer if they changed and are
    /// valid now (fit together and not expired).
    pub fn check(&self) -> Reload {
        let inner = &self.inner;
        let snapshot = read_snapshot(&inner.files);
        let mut seen = inner.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if snapshot == seen.loaded {
            seen.invalid = None;
            return Reload::Unchanged;
        }
        let loaded = load_snapshot(&inner.files, &snapshot).and_then(|issuer| {
            issuer
                .usable_at(SystemTime::now())
                .map(|()| issuer)
                .map_err(|e| CaError::Invalid {
                    part: CaPart::IssuerCert,
                    reason: e.message,
                })
        });
        match loaded {
            Ok(issuer) => {
                tracing::info!(
                    dir = %inner.files.dir().display(),
                    issuer = %issuer.info().subject,
                    expires = %crate::format_time(issuer.not_after()),
                    "identity issuer reloaded"
                );
                inner.metrics.issuer_loaded(&issuer);
                inner.current.send_replace(Arc::new(issuer));
                *seen = Seen {
                    loaded: snapshot,
                    ..Seen::default()
                };
                Reload::Replaced
            }
            Err(e) => {
                if seen.invalid.as_ref() != Some(&snapshot) {
                    seen.invalid = Some(snapshot);
                    seen.warned = false;
                } else if !seen.warned {
                    seen.warned = true;
                    tracing::warn!(
                        dir = %inner.files.dir().display(),
                        "the identity files changed but cannot be used; keeping the issuer in use: {e}"
                    );
                }
                Reload::Rejected
            }
        }
    }

    /// Checks the files every `interval`, forever.
    pub async fn run(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let this = self.clone();
            if tokio::task::spawn_blocking(move || this.check())
                .await
                .is_err()
            {
                tracing::warn!("the identity reload check panicked");
            }
        }
    }
}

impl std::fmt::Debug for ReloadingIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIssuer")
            .field("dir", &self.inner.files.dir())
            .field("current", &*self.inner.current.borrow())
            .finish()
    }
}

fn read_snapshot(files: &CaFiles) -> Snapshot {
    [
        files.trust_anchor(),
        files.issuer_cert(),
        files.issuer_key(),
    ]
    .map(|path| std::fs::read(path).ok())
}

fn load_snapshot(files: &CaFiles, snapshot: &Snapshot) -> Result<Issuer, CaError> {
    let parts = [CaPart::TrustAnchor, CaPart::IssuerCert, CaPart::IssuerKey];
    let mut texts = Vec::with_capacity(3);
    for (part, bytes) in parts.into_iter().zip(snapshot) {
        let path = files.path(part);
        let Some(bytes) = bytes else {
            // Read again for the error itself.
            let source = std::fs::read(&path)
                .err()
                .unwrap_or_else(|| std::io::ErrorKind::NotFound.into());
            return Err(CaError::Io { path, source });
        };
        let text = String::from_utf8(bytes.clone()).map_err(|_| CaError::Invalid {
            part,
            reason: "is not PEM text".into(),
        })?;
        texts.push(text);
    }
    let [trust_anchor, issuer_cert, issuer_key]: [String; 3] =
        texts.try_into().expect("three parts were read");
    Issuer::from_pems(&CaPems {
        trust_anchor,
        issuer_cert,
        issuer_key,
    })
}
