//! The write-ahead log: framed, checksummed records appended and synced
//! before a change is acknowledged.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload (len bytes)`.
//!
//! Replay rule: the log is valid up to the first record that is incomplete,
//! longer than [`MAX_RECORD`], fails its checksum, or is rejected by the
//! caller's decoder. That record and everything after it are cut off. A torn
//! tail is what a crash in the middle of an append leaves, and was never
//! acknowledged. A bad record followed by more data means the medium lost
//! acknowledged data; later records may depend on it (an update of an object
//! the bad record created), so they cannot be replayed either: the dropped
//! bytes are copied to `wal.log.dropped-<offset>` for inspection before the
//! log is truncated.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;

/// Larger than any record an API request can produce (bodies are capped at
/// 4 MiB, and a record's JSON is a small multiple of its YAML), small enough
/// that a corrupt length cannot make us allocate gigabytes.
pub(super) const MAX_RECORD: usize = 64 << 20;

/// The open log file, positioned at its end.
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    records: u64,
    /// A failed append could not be rolled back.
    broken: bool,
}

/// One framed record found by [`scan`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    pub offset: u64,
    pub payload: &'a [u8],
}

/// Why [`scan`] stopped before the end of the input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The last record is incomplete: a crash during an append.
    Torn,
    /// A length above [`MAX_RECORD`].
    TooLong(usize),
    BadChecksum,
    /// Framed and checksummed, but the store could not use it.
    Undecodable,
}

/// IEEE 802.3 CRC-32 (zlib's), table-driven.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Frames one payload.
pub(super) fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("records are capped far below 4 GiB");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a log into its valid records; `Stop` says why it ended early.
pub(super) fn scan(bytes: &[u8]) -> (Vec<Frame<'_>>, Option<(u64, Stop)>) {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let offset = pos as u64;
        let Some(header) = bytes.get(pos..pos + HEADER) else {
            return (frames, Some((offset, Stop::Torn)));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            return (frames, Some((offset, Stop::TooLong(len))));
        }
        let Some(payload) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            return (frames, Some((offset, Stop::Torn)));
        };
        if crc32(payload) != crc {
            return (frames, Some((offset, Stop::BadChecksum)));
        }
        frames.push(Frame { offset, payload });
        pos += HEADER + len;
    }
    (frames, None)
}

// === impl Wal ===

impl Wal {
    /// Opens (or creates) the log and hands every valid record to `decode`
    /// in order; truncates at the first invalid one (see the module docs).
    pub(super) fn open(
        path: &Path,
        mut decode: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> io::Result<Wal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (frames, mut stop) = scan(&bytes);
        let mut records = 0;
        for frame in frames {
            if let Err(reason) = decode(frame.payload) {
                tracing::warn!(offset = frame.offset, %reason, "undecodable log record");
                stop = Some((frame.offset, Stop::Undecodable));
                break;
            }
            records += 1;
        }
        let mut len = bytes.len() as u64;
        if let Some((offset, why)) = stop {
            let dropped = &bytes[offset as usize..];
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped = dropped.len(),
                reason = ?why,
                "truncating the store's log at its first invalid record",
            );
            if why != Stop::Torn {
                let keep = PathBuf::from(format!("{}.dropped-{offset}", path.display()));
                if let Err(e) = std::fs::write(&keep, dropped) {
                    tracing::warn!(path = %keep.display(), error = %e, "cannot keep the dropped log bytes");
                }
            }
            file.set_len(offset)?;
            file.sync_all()?;
            len = offset;
        }
        Ok(Wal {
            file,
            path: path.to_path_buf(),
            len,
            records,
            broken: false,
        })
    }

    /// Appends one record and waits until it is on disk.
    pub(super) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(format!(
                "an earlier write to {} failed and could not be undone; restart the control plane",
                self.path.display()
            )));
        }
        let buf = encode(payload);
        let res = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Cut off whatever part of the record made it, so that the next
            // append does not land behind garbage. If even that fails, no
            // later append can be trusted: refuse them all.
            let undo = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all());
            if let Err(undo) = undo {
                tracing::error!(path = %self.path.display(), error = %undo, "cannot undo a failed log write");
                self.broken = true;
            }
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Empties the log once a snapshot holds everything in it.
    pub(super) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.records = 0;
        Ok(())
    }

    /// Bytes in the log.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn records(&self) -> u64 {
        self.records
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}
