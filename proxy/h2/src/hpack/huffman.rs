//! HPACK's static Huffman code (RFC 7541 §5.2 and Appendix B).
//!
//! The code is canonical: codes of one length are consecutive in symbol
//! order and each length starts where the shorter ones left off, so the
//! table of lengths alone determines every code. The tables below are
//! computed from it at compile time. Decoding looks the next 8 bits up in
//! a 256-entry table (every byte of a header name or a typical value has a
//! code of 8 bits or less) and falls back to a walk by length for the rest.

use super::HpackError;

/// The code length in bits of each symbol, 0 to 255 and 256 (EOS), from
/// RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The end-of-string symbol: must never appear in a decoded string.
const EOS: u16 = 256;

/// Longest code, in bits.
const MAX_LEN: usize = 30;

/// The code of each symbol, right-aligned (for the tests' encoder).
#[cfg(test)]
const CODES: [u32; 257] = codes();

/// Symbols in code order (by length, then symbol).
const SORTED: [u16; 257] = sorted();

/// For each length: the first code of that length, and the position in
/// `SORTED` of its symbol.
const FIRST: [(u32, u16); MAX_LEN + 1] = firsts();

/// The number of symbols with each code length.
const COUNT: [u16; MAX_LEN + 1] = counts();

/// Indexed by the next 8 bits of input: the symbol whose code they start
/// with and its length, or a length of 0 when the code is longer than 8.
const FAST: [(u8, u8); 256] = fast();

const fn codes() -> [u32; 257] {
    let mut codes = [0u32; 257];
    let mut code = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                codes[sym] = code;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    codes
}

const fn sorted() -> [u16; 257] {
    let mut out = [0u16; 257];
    let mut at = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                out[at] = sym as u16;
                at += 1;
            }
            sym += 1;
        }
        len += 1;
    }
    out
}

const fn counts() -> [u16; MAX_LEN + 1] {
    let mut out = [0u16; MAX_LEN + 1];
    let mut sym = 0;
    while sym < 257 {
        out[LENGTHS[sym] as usize] += 1;
        sym += 1;
    }
    out
}

const fn firsts() -> [(u32, u16); MAX_LEN + 1] {
    let count = counts();
    let mut out = [(0u32, 0u16); MAX_LEN + 1];
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        out[len] = (code, at);
        code = (code + count[len] as u32) << 1;
        at += count[len];
        len += 1;
    }
    out
}

const fn fast() -> [(u8, u8); 256] {
    let codes = codes();
    let mut out = [(0u8, 0u8); 256];
    let mut sym = 0;
    while sym < 256 {
        let len = LENGTHS[sym] as usize;
        if len <= 8 {
            // Every byte that starts with this code maps to it.
            let first = (codes[sym] << (8 - len)) as usize;
            let mut b = 0;
            while b < (1 << (8 - len)) {
                out[first + b] = (sym as u8, len as u8);
                b += 1;
            }
        }
        sym += 1;
    }
    out
}

/// Appends the decoding of `src` to `out`.
///
/// Fails on the EOS symbol, on padding longer than 7 bits, and on padding
/// that is not the start of EOS (all ones), as RFC 7541 §5.2 requires.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    // The top `bits` bits of `acc` are the input not yet decoded.
    let mut acc: u64 = 0;
    let mut bits: usize = 0;
    let mut input = src.iter();
    loop {
        while bits <= 56 {
            match input.next() {
                Some(&b) => {
                    acc |= u64::from(b) << (56 - bits);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits == 0 {
            return Ok(());
        }
        // With fewer than 8 bits left the low bits of `top` are zeros, so
        // the symbol found must fit in what is left.
        let (sym, len) = FAST[(acc >> 56) as usize];
        if len != 0 && usize::from(len) <= bits {
            out.push(sym);
            acc <<= len;
            bits -= usize::from(len);
            continue;
        }
        // Longer than 8 bits, or the end of the input. The code is complete
        // (every 30 bits start with a code), so no code here means the end.
        match slow(acc, bits) {
            Some(EOS) => return Err(HpackError::Huffman),
            Some(sym) => {
                out.push(sym as u8);
                let len = usize::from(LENGTHS[usize::from(sym)]);
                acc <<= len;
                bits -= len;
            }
            None => return padding(acc, bits),
        }
    }
}

/// Decodes the symbol at the top of `acc` by walking the lengths, if a
/// whole code fits in `bits`.
fn slow(acc: u64, bits: usize) -> Option<u16> {
    for len in 5..=MAX_LEN.min(bits) {
        let code = (acc >> (64 - len)) as u32;
        let (first, at) = FIRST[len];
        let count = u32::from(COUNT[len]);
        if code >= first && code - first < count {
            return Some(SORTED[usize::from(at) + (code - first) as usize]);
        }
    }
    None
}

/// The bits left at the end of a string: at most 7, all ones.
fn padding(acc: u64, bits: usize) -> Result<(), HpackError> {
    let ones = !0u64 << (64 - bits);
    if bits <= 7 && acc & ones == ones {
        Ok(())
    } else {
        Err(HpackError::Huffman)
    }
}

/// Appends the Huffman encoding of `src` to `out`. The proxy never
/// Huffman-codes what it sends (it saves a few bytes for the cost of
/// coding every value); the tests check the decoder against it.
#[cfg(test)]
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: usize = 0;
    for &b in src {
        let len = usize::from(LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        // Pad with the most significant bits of EOS (all ones).
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
}

/// The length of the Huffman encoding of `src`, in bytes.
#[cfg(test)]
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&b| usize::from(LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}
