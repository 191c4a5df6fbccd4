//! HPACK (RFC 7541): the decoder keeps the peer's dynamic table; the
//! encoder never indexes, so it keeps no table at all.
//!
//! A proxy decodes every header block it receives (the dynamic table must
//! follow the peer's) but forwards on another connection, whose table
//! state differs, so it must encode anew. Encoding without a dynamic table
//! costs a few bytes per block on the wire and saves hashing each field
//! into a table: static-table references where RFC 7541's table has the
//! field or its name, literals otherwise. The first block announces a
//! table size of 0, which every decoder accepts.

use thiserror::Error;

mod huffman;
mod table;

pub use table::ENTRY_OVERHEAD;

/// A header block could not be decoded: a connection error of type
/// `COMPRESSION_ERROR` (RFC 9113 §4.3), since the table may now differ
/// from the peer's.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HpackError {
    #[error("header block truncated")]
    Truncated,
    #[error("integer in header block too large")]
    Integer,
    #[error("invalid Huffman-coded string")]
    Huffman,
    #[error("header block refers to index {0}, not in the table")]
    Index(usize),
    #[error("dynamic table size update to {0} bytes, above the advertised limit")]
    SizeUpdate(usize),
    #[error("dynamic table size update after a field")]
    LateSizeUpdate,
}

/// The fields of one decoded header block, in order, in one buffer.
#[derive(Debug, Default)]
pub struct HeaderList {
    bytes: Vec<u8>,
    fields: Vec<FieldRef>,
    /// RFC 9113 §6.5.2's size: name and value lengths plus 32 per field.
    size: usize,
    /// Fields were left out because the list went over the limit.
    oversize: bool,
}

#[derive(Clone, Copy, Debug)]
struct FieldRef {
    start: u32,
    name_end: u32,
    end: u32,
    sensitive: bool,
}

/// One field of a [`HeaderList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Sent as never-indexed (RFC 7541 §7.1.3): forward it the same way.
    pub sensitive: bool,
}

/// Decodes the header blocks a peer sends on one connection.
#[derive(Debug)]
pub struct Decoder {
    table: table::Dynamic,
    /// SETTINGS_HEADER_TABLE_SIZE as advertised to the peer.
    limit: usize,
}

/// Encodes header blocks for one connection.
#[derive(Debug)]
pub struct Encoder {
    /// The next block starts with a table size update to 0.
    announce: bool,
}

// === impl HeaderList ===

impl HeaderList {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
        self.size = 0;
        self.oversize = false;
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The list's size as RFC 9113 §6.5.2 counts it, for
    /// SETTINGS_MAX_HEADER_LIST_SIZE, including fields left out.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Fields were left out because the list exceeded the decoder's limit.
    pub fn is_oversize(&self) -> bool {
        self.oversize
    }

    pub fn iter(&self) -> impl Iterator<Item = Field<'_>> {
        self.fields.iter().map(|f| self.field(f))
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|f| f.name == name).map(|f| f.value)
    }

    /// Appends a field.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.commit(start, start + name.len(), false);
    }

    fn field(&self, f: &FieldRef) -> Field<'_> {
        Field {
            name: &self.bytes[f.start as usize..f.name_end as usize],
            value: &self.bytes[f.name_end as usize..f.end as usize],
            sensitive: f.sensitive,
        }
    }

    /// Records the field whose bytes end the buffer, from `start`.
    fn commit(&mut self, start: usize, name_end: usize, sensitive: bool) {
        let end = self.bytes.len();
        self.size += end - start + ENTRY_OVERHEAD;
        // Offsets fit in u32: a block is bounded by the frame and list limits.
        self.fields.push(FieldRef {
            start: start as u32,
            name_end: name_end as u32,
            end: end as u32,
            sensitive,
        });
    }
}

// === impl Decoder ===

impl Decoder {
    /// A decoder for a peer told SETTINGS_HEADER_TABLE_SIZE = `limit`
    /// (4,096 unless advertised otherwise).
    pub fn new(limit: usize) -> Self {
        Self {
            table: table::Dynamic::new(limit),
            limit,
        }
    }

    /// Decodes one complete header block into `list` (cleared first).
    ///
    /// Fields past `max_list_size` are decoded, so that the table stays in
    /// step with the peer's, but not kept: see [`HeaderList::is_oversize`].
    pub fn decode(
        &mut self,
        block: &[u8],
        list: &mut HeaderList,
        max_list_size: usize,
    ) -> Result<(), HpackError> {
        list.clear();
        let mut at = 0;
        let mut first = true;
        while let Some(&b) = block.get(at) {
            if b & 0x80 != 0 {
                // Indexed field.
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.table.get(index).ok_or(HpackError::Index(index))?;
                let start = list.bytes.len();
                list.bytes.extend_from_slice(name);
                list.bytes.extend_from_slice(value);
                keep(list, start, start + name.len(), false, max_list_size);
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update.
                if !first {
                    return Err(HpackError::LateSizeUpdate);
                }
                let max = integer(block, &mut at, 5)?;
                if max > self.limit {
                    return Err(HpackError::SizeUpdate(max));
                }
                self.table.resize(max);
                continue;
            } else {
                // A literal: with incremental indexing (01), never indexed
                // (0001) or without indexing (0000).
                let (prefix, index, sensitive) = match b {
                    _ if b & 0xc0 == 0x40 => (6, true, false),
                    _ if b & 0xf0 == 0x10 => (4, false, true),
                    _ => (4, false, false),
                };
                let name_index = integer(block, &mut at, prefix)?;
                let start = list.bytes.len();
                if name_index == 0 {
                    string(block, &mut at, &mut list.bytes)?;
                } else {
                    let (name, _) = self
                        .table
                        .get(name_index)
                        .ok_or(HpackError::Index(name_index))?;
                    list.bytes.extend_from_slice(name);
                }
                let name_end = list.bytes.len();
                string(block, &mut at, &mut list.bytes)?;
                if index {
                    let (name, value) = list.bytes[start..].split_at(name_end - start);
                    self.table.insert(name, value);
                }
                keep(list, start, name_end, sensitive, max_list_size);
            }
            first = false;
        }
        Ok(())
    }

    /// The dynamic table's current size limit, from the last size update.
    pub fn table_max(&self) -> usize {
        self.table.max()
    }
}

/// Keeps the field just decoded at `start..` unless the list is over its
/// limit, in which case its bytes are dropped and the list marked.
fn keep(list: &mut HeaderList, start: usize, name_end: usize, sensitive: bool, max: usize) {
    let size = list.bytes.len() - start + ENTRY_OVERHEAD;
    if list.oversize || list.size + size > max {
        list.bytes.truncate(start);
        list.size += size;
        list.oversize = true;
        return;
    }
    list.commit(start, name_end, sensitive);
}

/// Reads an integer with an N-bit prefix (RFC 7541 §5.1). Values above
/// 2^28 are refused: no legitimate length or index comes near.
fn integer(block: &[u8], at: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1u8 << prefix) - 1;
    let first = block.get(*at).ok_or(HpackError::Truncated)? & mask;
    *at += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = usize::from(mask);
    let mut shift = 0;
    loop {
        let b = *block.get(*at).ok_or(HpackError::Truncated)?;
        *at += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(HpackError::Integer);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2), appending its bytes to `out`.
fn string(block: &[u8], at: &mut usize, out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huffman = block.get(*at).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let raw = block.get(*at..*at + len).ok_or(HpackError::Truncated)?;
    *at += len;
    if huffman {
        huffman::decode(raw, out)
    } else {
        out.extend_from_slice(raw);
        Ok(())
    }
}

// === impl Encoder ===

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self { announce: true }
    }

    /// The peer changed SETTINGS_HEADER_TABLE_SIZE: announce our size (0)
    /// again at the start of the next block, as RFC 7541 §4.2 asks.
    pub fn table_size_changed(&mut self) {
        self.announce = true;
    }

    /// Starts a header block in `out`.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if self.announce {
            out.push(0x20);
            self.announce = false;
        }
    }

    /// Appends one field to a block begun with [`Encoder::begin`]. Fields
    /// are encoded the same way on every connection (nothing is indexed).
    pub fn field(name: &[u8], value: &[u8], sensitive: bool, out: &mut Vec<u8>) {
        let found = table::static_index(name, value);
        if let Some((_, Some(exact))) = found
            && !sensitive
        {
            put_integer(out, exact, 7, 0x80);
            return;
        }
        let flags = if sensitive { 0x10 } else { 0x00 };
        match found {
            Some((index, _)) => put_integer(out, index, 4, flags),
            None => {
                out.push(flags);
                put_string(out, name);
            }
        }
        put_string(out, value);
    }
}

fn put_integer(out: &mut Vec<u8>, value: usize, prefix: u8, flags: u8) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests;
