//! The HTTP/2 wire format for the proxy's lean HTTP/2 path: frame parsing
//! and writing (RFC 9113 §4, §6) and header compression (RFC 7541). No I/O
//! and no connection state beyond HPACK's tables: the proxy's connection
//! driver owns streams, windows and sockets.
//!
//! ```text
//!  bytes ─► frame::Head::parse ─► frame::Frame::parse ─► HEADERS block ─► hpack::Decoder ─► HeaderList
//!  HeaderList ─► hpack::Encoder ─► frame::write_headers ─► bytes
//! ```
#![forbid(unsafe_code)]

pub mod frame;
pub mod hpack;
