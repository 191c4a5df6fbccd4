//! Reading what crossed a pod's veth: TCP payloads from a classic pcap file
//! written by `tcpdump -w` (Ethernet or Linux cooked capture), and the TLS
//! facts tests assert on (application-data records, the key exchange group
//! a ServerHello chose).

use anyhow::{Context, bail};

/// One TCP segment's payload.
#[derive(Debug)]
pub struct Segment {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// The TLS 1.3 named group X25519MLKEM768 (hybrid post-quantum).
pub const X25519_MLKEM768: u16 = 0x11ec;

/// Parses a pcap file into its IPv4 TCP segments with payload.
pub fn tcp_segments(bytes: &[u8]) -> anyhow::Result<Vec<Segment>> {
    if bytes.len() < 24 {
        bail!("not a pcap file: {} bytes", bytes.len());
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into()?);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => bail!("not a classic pcap file (magic {magic:#x})"),
    };
    let u32_at = |b: &[u8], i: usize| -> u32 {
        let a: [u8; 4] = b[i..i + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32_at(bytes, 20);
    let link_header = match link {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked v1
        276 => 20, // Linux cooked v2
        _ => bail!("unsupported link type {link}"),
    };
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= bytes.len() {
        let caplen = u32_at(bytes, i + 8) as usize;
        let start = i + 16;
        let end = start + caplen;
        let frame = bytes.get(start..end).context("truncated pcap record")?;
        i = end;
        // The EtherType (or protocol) sits just before the IP header.
        if frame.len() < link_header + 20 || frame[link_header - 2..link_header] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[link_header..];
        if ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let Some(tcp) = ip.get(ihl..total) else {
            continue;
        };
        if tcp.len() < 20 {
            continue;
        }
        let off = usize::from(tcp[12] >> 4) * 4;
        let Some(payload) = tcp.get(off..) else {
            continue;
        };
        if payload.is_empty() {
            continue;
        }
        out.push(Segment {
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            payload: payload.to_vec(),
        });
    }
    Ok(out)
}

/// The key exchange groups chosen by the TLS 1.3 ServerHellos that begin a
/// segment.
pub fn server_hello_groups(segments: &[Segment]) -> Vec<u16> {
    segments
        .iter()
        .filter_map(|s| server_hello_group(&s.payload))
        .collect()
}

fn server_hello_group(p: &[u8]) -> Option<u16> {
    // Record: type 22 (handshake); handshake type 2 (ServerHello).
    if p.len() < 5 + 4 + 2 + 32 + 1 || p[0] != 22 || p[5] != 2 {
        return None;
    }
    let mut i = 5 + 4 + 2 + 32;
    let sid = usize::from(*p.get(i)?);
    i += 1 + sid + 2 + 1;
    let ext_len = usize::from(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]));
    i += 2;
    let end = (i + ext_len).min(p.len());
    while i + 4 <= end {
        let ty = u16::from_be_bytes([p[i], p[i + 1]]);
        let len = usize::from(u16::from_be_bytes([p[i + 2], p[i + 3]]));
        if ty == 0x0033 && len >= 2 {
            return Some(u16::from_be_bytes([*p.get(i + 4)?, *p.get(i + 5)?]));
        }
        i += 4 + len;
    }
    None
}

/// How many segments begin with a TLS application-data record.
pub fn application_data_records(segments: &[Segment]) -> usize {
    segments
        .iter()
        .filter(|s| s.payload.starts_with(&[23, 3, 3]))
        .count()
}

/// Whether `needle` appears in any segment (or across two consecutive
/// segments of the same direction).
pub fn contains(segments: &[Segment], needle: &[u8]) -> bool {
    segments.windows(2).any(|w| {
        let mut joined = w[0].payload.clone();
        if w[0].src_port == w[1].src_port {
            joined.extend_from_slice(&w[1].payload);
        }
        joined.windows(needle.len()).any(|x| x == needle)
    }) || segments
        .iter()
        .any(|s| s.payload.windows(needle.len()).any(|x| x == needle))
}
