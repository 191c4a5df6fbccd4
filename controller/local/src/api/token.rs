//! The admin token guarding the management API.
//!
//! 32 bytes from `/dev/urandom` (fastrand is not a CSPRNG), hex-encoded into
//! `<state-dir>/admin-token` with mode 0600. The file is written to a
//! temporary name and hard-linked into place, so it appears whole or not at
//! all, and two processes starting at once agree on one token.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token's file name inside the state directory.
pub const TOKEN_FILE: &str = "admin-token";

/// 256 bits: far beyond guessing over a loopback socket.
const TOKEN_BYTES: usize = 32;

/// The shared secret of the API and its clients. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "{} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{} does not hold a token (64 hex digits); delete it to have a new one generated",
        path.display()
    )]
    Malformed { path: PathBuf },
}

// === impl AdminToken ===

impl AdminToken {
    /// The token in `state_dir`, generated on first use. Refuses a token
    /// file that group or others may read.
    pub fn load_or_create(state_dir: &Path) -> Result<AdminToken, TokenError> {
        let path = state_dir.join(TOKEN_FILE);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| TokenError::Create {
                path: path.clone(),
                source,
            })?;
        match Self::read(&path) {
            Err(TokenError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let create = |source| TokenError::Create {
            path: path.clone(),
            source,
        };
        let token = Self::generate().map_err(create)?;
        let tmp = state_dir.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(create)?;
        let written = file
            .write_all(token.0.as_bytes())
            .and_then(|()| file.sync_all());
        drop(file);
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                crate::store::sync_dir(state_dir).map_err(create)?;
                Ok(token)
            }
            // Another process won the race: use its token.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::read(&path),
            Err(e) => Err(create(e)),
        }
    }

    /// Reads a token file, checking its mode.
    pub fn read(path: &Path) -> Result<AdminToken, TokenError> {
        let read = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mode = file.metadata().map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(1024).read_to_string(&mut text).map_err(read)?;
        Self::parse(text.trim()).ok_or_else(|| TokenError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Accepts exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Option<AdminToken> {
        let ok = s.len() == TOKEN_BYTES * 2
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| AdminToken(s.to_string()))
    }

    fn generate() -> io::Result<AdminToken> {
        let mut bytes = [0u8; TOKEN_BYTES];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(AdminToken(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// The value for an `Authorization` header.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Checks an `Authorization` header value in time independent of where
    /// it differs from the token.
    pub fn verify_header(&self, header: Option<&[u8]>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let expected = self.0.as_bytes();
        // The length is not secret (always 64).
        if presented.len() != expected.len() {
            return false;
        }
        let diff = presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}
