//! Keeps a second control plane off the same state directory.
//!
//! `flock(2)` would be the usual tool, but it is an OS call this crate does
//! not make (only `strand-sys` may). Instead the lock is a file, `<dir>/lock`,
//! holding the owner's pid and its start time (field 22 of
//! `/proc/<pid>/stat`). It is written to a temporary file and hard-linked into
//! place, so it is created atomically with its content, and never seen empty.
//!
//! A lock is stale when its owner is gone: `/proc/<pid>` is missing, the
//! process is a zombie, or the pid now belongs to a process that started at a
//! different time (pid reuse). A stale lock is removed with a warning and
//! taken. Two processes racing to take over the *same* stale lock within
//! microseconds could both succeed (one may remove the other's fresh lock);
//! `flock` would close that window. Without `/proc` an existing lock is
//! never considered stale.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::OpenError;

/// Held for the life of a `Store`; removes the lock file when dropped.
#[derive(Debug)]
pub(super) struct DirLock {
    path: PathBuf,
}

/// Who holds a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Owner {
    pub pid: u32,
    pub start_time: u64,
}

// === impl DirLock ===

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, OpenError> {
        let path = dir.join("lock");
        let io_err = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let me = Owner {
            pid: std::process::id(),
            start_time: start_time("self").unwrap_or(0),
        };
        let tmp = dir.join(format!(".lock.{}.tmp", me.pid));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?;
        file.write_all(format!("{} {}\n", me.pid, me.start_time).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err)?;
        drop(file);
        let res = Self::link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        res?;
        super::codec::sync_dir(dir).map_err(io_err)?;
        Ok(DirLock { path })
    }

    fn link(tmp: &Path, path: &Path) -> Result<(), OpenError> {
        // Bounded: each round either takes the lock, finds it held, or
        // removes a stale one; more rounds mean others are racing us.
        for _ in 0..5 {
            match std::fs::hard_link(tmp, path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(OpenError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                // Released between our link and read: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(OpenError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            };
            match Owner::parse(&text) {
                Some(owner) if owner.is_alive() => {
                    return Err(OpenError::Locked {
                        path: path.to_path_buf(),
                        pid: owner.pid,
                    });
                }
                _ => {
                    tracing::warn!(path = %path.display(), content = text.trim(), "removing a stale lock");
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(OpenError::Io {
                                path: path.to_path_buf(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        Err(OpenError::Locked {
            path: path.to_path_buf(),
            pid: 0,
        })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the lock");
        }
    }
}

// === impl Owner ===

impl Owner {
    fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        Some(Owner { pid, start_time })
    }

    pub(super) fn is_alive(&self) -> bool {
        if !Path::new("/proc/self").exists() {
            return true;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => false,
            Ok(stat) => match parse_stat(&stat) {
                Some((state, start)) => state != 'Z' && start == self.start_time,
                // Unreadable: do not take a lock that may well be held.
                None => true,
            },
        }
    }
}

/// A process's start time in clock ticks since boot.
pub(super) fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, t)| t)
}

/// `(state, starttime)` from `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
pub(super) fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}
