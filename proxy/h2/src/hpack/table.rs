//! HPACK's static table (RFC 7541 Appendix A) and the dynamic table of a
//! decoder (RFC 7541 §2.3.2, §4).

use std::collections::VecDeque;

/// The static table: index 1 is the first entry.
pub const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead counted in a table's size (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// For the encoder: the static index of `name` (its first entry), and of
/// the entry that also matches `value`, if any.
pub fn static_index(name: &[u8], value: &[u8]) -> Option<(usize, Option<usize>)> {
    let exact = |first: usize, values: &[&[u8]]| {
        let at = values.iter().position(|v| *v == value).map(|i| first + i);
        Some((first, at))
    };
    match name {
        b":authority" => Some((1, None)),
        b":method" => exact(2, &[b"GET", b"POST"]),
        b":path" => exact(4, &[b"/", b"/index.html"]),
        b":scheme" => exact(6, &[b"http", b"https"]),
        b":status" => exact(8, &[b"200", b"204", b"206", b"304", b"400", b"404", b"500"]),
        b"accept-encoding" => exact(16, &[b"gzip, deflate"]),
        _ => STATIC[14..]
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| (i + 15, None)),
    }
}

/// A decoder's dynamic table: newest entry first.
#[derive(Debug)]
pub struct Dynamic {
    /// Each entry's name and value in one allocation, with the length of
    /// the name.
    entries: VecDeque<(Box<[u8]>, usize)>,
    /// Sum of the entries' sizes (length + 32 each).
    size: usize,
    /// Largest size allowed now (the last size update, at most what the
    /// decoder advertised).
    max: usize,
}

// === impl Dynamic ===

impl Dynamic {
    pub fn new(max: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The entry at `index` (1-based over static then dynamic entries).
    pub fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        if index == 0 {
            return None;
        }
        if let Some(&(n, v)) = STATIC.get(index - 1) {
            return Some((n, v));
        }
        let (bytes, name_len) = self.entries.get(index - 1 - STATIC.len())?;
        Some(bytes.split_at(*name_len))
    }

    /// Adds an entry, evicting the oldest ones to make room; an entry
    /// larger than the table leaves it empty (RFC 7541 §4.4).
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries
            .push_front((bytes.into_boxed_slice(), name.len()));
        self.size += size;
    }

    /// A dynamic table size update: `max` was checked against the limit.
    pub fn resize(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some((bytes, _)) = self.entries.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= bytes.len() + ENTRY_OVERHEAD;
        }
    }
}
