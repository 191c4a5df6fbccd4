//! HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte head, each frame type's
//! payload checked as the RFC requires, and writers for the frames a
//! proxy sends.

use std::fmt;

use thiserror::Error;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame head.
pub const HEAD_LEN: usize = 9;

/// SETTINGS_MAX_FRAME_SIZE's initial value and lower bound.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// Upper bound of SETTINGS_MAX_FRAME_SIZE.
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// A flow-control window's initial size.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// An error code (RFC 9113 §7).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

/// A frame or a header block broke the protocol.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// The connection must end with GOAWAY carrying `reason`.
    #[error("{what} ({reason})")]
    Connection { reason: Reason, what: &'static str },
    /// Only the stream is reset with `reason`.
    #[error("stream {stream}: {what} ({reason})")]
    Stream {
        stream: u32,
        reason: Reason,
        what: &'static str,
    },
}

/// A frame head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// A parsed frame; payload slices borrow the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        /// The data without padding.
        data: &'a [u8],
        /// The whole payload length, padding included: what flow control
        /// counts (RFC 9113 §6.1).
        flow_len: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        /// The header block fragment, without padding or priority.
        block: &'a [u8],
    },
    Priority,
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings(Settings),
    SettingsAck,
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        reason: Reason,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// An unknown type, to be ignored (RFC 9113 §4.1).
    Unknown,
}

/// The parameters of a SETTINGS frame; `None` for those it leaves alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: Option<u32>,
    pub enable_push: Option<bool>,
    pub max_concurrent_streams: Option<u32>,
    pub initial_window_size: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441).
    pub enable_connect_protocol: Option<bool>,
}

// === impl Reason ===

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    /// The code's name in RFC 9113, if it has one.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "error code {:#x}", self.0),
        }
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// === impl Error ===

impl Error {
    fn conn(reason: Reason, what: &'static str) -> Self {
        Error::Connection { reason, what }
    }
}

// === impl Head ===

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let len = self.len.to_be_bytes();
        out.extend_from_slice(&[len[1], len[2], len[3], self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

// === impl Frame ===

impl<'a> Frame<'a> {
    /// Parses a frame's payload. The caller has already refused a payload
    /// longer than its SETTINGS_MAX_FRAME_SIZE (a FRAME_SIZE_ERROR).
    pub fn parse(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, Error> {
        let stream = head.stream;
        let on_stream = |what| {
            if stream == 0 {
                Err(Error::conn(Reason::PROTOCOL_ERROR, what))
            } else {
                Ok(())
            }
        };
        let on_connection = |what| {
            if stream != 0 {
                Err(Error::conn(Reason::PROTOCOL_ERROR, what))
            } else {
                Ok(())
            }
        };
        let size = |ok: bool, what| {
            if ok {
                Ok(())
            } else {
                Err(Error::conn(Reason::FRAME_SIZE_ERROR, what))
            }
        };
        Ok(match head.kind {
            kind::DATA => {
                on_stream("DATA on stream 0")?;
                Frame::Data {
                    stream,
                    end_stream: head.has(flag::END_STREAM),
                    data: unpad(head, payload)?,
                    flow_len: head.len,
                }
            }
            kind::HEADERS => {
                on_stream("HEADERS on stream 0")?;
                let mut block = unpad(head, payload)?;
                if head.has(flag::PRIORITY) {
                    let Some((dep, rest)) = block.split_first_chunk::<5>() else {
                        return Err(Error::conn(
                            Reason::FRAME_SIZE_ERROR,
                            "HEADERS too short for its priority",
                        ));
                    };
                    if u32::from_be_bytes([dep[0], dep[1], dep[2], dep[3]]) & MAX_WINDOW == stream {
                        return Err(Error::Stream {
                            stream,
                            reason: Reason::PROTOCOL_ERROR,
                            what: "stream depends on itself",
                        });
                    }
                    block = rest;
                }
                Frame::Headers {
                    stream,
                    end_stream: head.has(flag::END_STREAM),
                    end_headers: head.has(flag::END_HEADERS),
                    block,
                }
            }
            kind::PRIORITY => {
                on_stream("PRIORITY on stream 0")?;
                if payload.len() != 5 {
                    return Err(Error::Stream {
                        stream,
                        reason: Reason::FRAME_SIZE_ERROR,
                        what: "PRIORITY not 5 bytes",
                    });
                }
                if u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW
                    == stream
                {
                    return Err(Error::Stream {
                        stream,
                        reason: Reason::PROTOCOL_ERROR,
                        what: "stream depends on itself",
                    });
                }
                Frame::Priority
            }
            kind::RST_STREAM => {
                on_stream("RST_STREAM on stream 0")?;
                let code: [u8; 4] = payload
                    .try_into()
                    .map_err(|_| Error::conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes"))?;
                Frame::RstStream {
                    stream,
                    reason: Reason(u32::from_be_bytes(code)),
                }
            }
            kind::SETTINGS => {
                on_connection("SETTINGS on a stream")?;
                if head.has(flag::ACK) {
                    size(payload.is_empty(), "SETTINGS ack with a payload")?;
                    Frame::SettingsAck
                } else {
                    Frame::Settings(Settings::parse(payload)?)
                }
            }
            kind::PUSH_PROMISE => {
                on_stream("PUSH_PROMISE on stream 0")?;
                Frame::PushPromise { stream }
            }
            kind::PING => {
                on_connection("PING on a stream")?;
                let data: [u8; 8] = payload
                    .try_into()
                    .map_err(|_| Error::conn(Reason::FRAME_SIZE_ERROR, "PING not 8 bytes"))?;
                Frame::Ping {
                    ack: head.has(flag::ACK),
                    data,
                }
            }
            kind::GOAWAY => {
                on_connection("GOAWAY on a stream")?;
                let Some((fixed, debug)) = payload.split_first_chunk::<8>() else {
                    return Err(Error::conn(Reason::FRAME_SIZE_ERROR, "GOAWAY too short"));
                };
                Frame::GoAway {
                    last_stream: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]])
                        & MAX_WINDOW,
                    reason: Reason(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]])),
                    debug,
                }
            }
            kind::WINDOW_UPDATE => {
                let inc: [u8; 4] = payload.try_into().map_err(|_| {
                    Error::conn(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
                })?;
                let increment = u32::from_be_bytes(inc) & MAX_WINDOW;
                if increment == 0 {
                    let what = "WINDOW_UPDATE of 0";
                    return Err(if stream == 0 {
                        Error::conn(Reason::PROTOCOL_ERROR, what)
                    } else {
                        Error::Stream {
                            stream,
                            reason: Reason::PROTOCOL_ERROR,
                            what,
                        }
                    });
                }
                Frame::WindowUpdate { stream, increment }
            }
            kind::CONTINUATION => {
                on_stream("CONTINUATION on stream 0")?;
                Frame::Continuation {
                    stream,
                    end_headers: head.has(flag::END_HEADERS),
                    block: payload,
                }
            }
            _ => Frame::Unknown,
        })
    }
}

/// The payload of a DATA or HEADERS frame without its padding.
fn unpad<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], Error> {
    if !head.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(Error::conn(
            Reason::FRAME_SIZE_ERROR,
            "padded frame without a pad length",
        ));
    };
    let pad = usize::from(pad);
    if pad > rest.len() {
        return Err(Error::conn(
            Reason::PROTOCOL_ERROR,
            "padding longer than the payload",
        ));
    }
    Ok(&rest[..rest.len() - pad])
}

// === impl Settings ===

impl Settings {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

    /// Parses a SETTINGS payload, checking each value's range (RFC 9113
    /// §6.5.2); unknown parameters are ignored, a repeated one counts last.
    pub fn parse(payload: &[u8]) -> Result<Settings, Error> {
        if !payload.len().is_multiple_of(6) {
            return Err(Error::conn(
                Reason::FRAME_SIZE_ERROR,
                "SETTINGS not a multiple of 6 bytes",
            ));
        }
        let mut s = Settings::default();
        for p in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            let flag = |what| match value {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                _ => Err(Error::conn(Reason::PROTOCOL_ERROR, what)),
            };
            match id {
                Self::HEADER_TABLE_SIZE => s.header_table_size = Some(value),
                Self::ENABLE_PUSH => s.enable_push = flag("SETTINGS_ENABLE_PUSH not 0 or 1")?,
                Self::MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(value),
                Self::INITIAL_WINDOW_SIZE => {
                    if value > MAX_WINDOW {
                        return Err(Error::conn(
                            Reason::FLOW_CONTROL_ERROR,
                            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    s.initial_window_size = Some(value);
                }
                Self::MAX_FRAME_SIZE => {
                    if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) {
                        return Err(Error::conn(
                            Reason::PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                        ));
                    }
                    s.max_frame_size = Some(value);
                }
                Self::MAX_HEADER_LIST_SIZE => s.max_header_list_size = Some(value),
                Self::ENABLE_CONNECT_PROTOCOL => {
                    s.enable_connect_protocol = flag("SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1")?
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// Appends a SETTINGS frame with the parameters that are set.
    pub fn write(&self, out: &mut Vec<u8>) {
        let params = [
            (Self::HEADER_TABLE_SIZE, self.header_table_size),
            (Self::ENABLE_PUSH, self.enable_push.map(u32::from)),
            (Self::MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
            (Self::INITIAL_WINDOW_SIZE, self.initial_window_size),
            (Self::MAX_FRAME_SIZE, self.max_frame_size),
            (Self::MAX_HEADER_LIST_SIZE, self.max_header_list_size),
            (
                Self::ENABLE_CONNECT_PROTOCOL,
                self.enable_connect_protocol.map(u32::from),
            ),
        ];
        let n = params.iter().filter(|(_, v)| v.is_some()).count();
        Head {
            len: 6 * n as u32,
            kind: kind::SETTINGS,
            flags: 0,
            stream: 0,
        }
        .write(out);
        for (id, v) in params {
            if let Some(v) = v {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
}

// === writers ===

pub fn write_settings_ack(out: &mut Vec<u8>) {
    head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    head(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    head(out, 8 + debug.len() as u32, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

/// A DATA frame: the caller keeps `data` within the peer's frame size and
/// flow-control windows.
pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    head(out, data.len() as u32, kind::DATA, flags, stream);
    out.extend_from_slice(data);
}

/// A header block as HEADERS and as many CONTINUATION frames as the
/// peer's `max_frame_size` requires.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = max_frame_size as usize;
    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if first.len() == block.len() {
        flags |= flag::END_HEADERS;
    }
    head(out, first.len() as u32, kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut sent = first.len();
    for chunk in chunks {
        sent += chunk.len();
        let flags = if sent == block.len() {
            flag::END_HEADERS
        } else {
            0
        };
        head(out, chunk.len() as u32, kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

fn head(out: &mut Vec<u8>, len: u32, kind: u8, flags: u8, stream: u32) {
    Head {
        len,
        kind,
        flags,
        stream,
    }
    .write(out);
}

#[cfg(test)]
mod tests;
