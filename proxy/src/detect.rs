//! Protocol detection: decides from a connection's first bytes whether it
//! carries HTTP/2 (prior knowledge), HTTP/1, TLS, or something else.
//!
//! ```text
//!   client bytes ──► [classify] ──► Http2 | Http1 | Tls{sni} | Opaque
//!                        │
//!                        └── NeedMore (a strict prefix of something we know)
//! ```
//!
//! The decision is made as early as the bytes allow. Unlike a detector that
//! waits for a full line, anything that cannot begin an HTTP/1 request with
//! a registered method (or a TLS record, or the HTTP/2 preface) is opaque at
//! once, so short plain-text payloads never wait for the timeout. A client
//! that sends nothing (a server-speaks-first protocol on a port not marked
//! opaque) is treated as opaque when the timeout expires; one that stalls
//! inside a method name or the HTTP/2 preface is closed.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

mod tls;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest peek buffer: a TLS record carrying a ClientHello may be up to
/// 16 KiB plus its 5-byte header; nothing else needs more than a request
/// line prefix.
pub const MAX_PEEK: usize = 16 * 1024 + 5;

/// HTTP methods from the IANA registry that a request line may start with
/// (RFC 9110 and the WebDAV family). `PRI` is left out: it only appears in
/// the HTTP/2 preface, which is matched on its own.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"ACL",
    b"BASELINE-CONTROL",
    b"BIND",
    b"CHECKIN",
    b"CHECKOUT",
    b"COPY",
    b"LABEL",
    b"LINK",
    b"LOCK",
    b"MERGE",
    b"MKACTIVITY",
    b"MKCALENDAR",
    b"MKCOL",
    b"MKREDIRECTREF",
    b"MKWORKSPACE",
    b"MOVE",
    b"ORDERPATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"QUERY",
    b"REBIND",
    b"REPORT",
    b"SEARCH",
    b"UNBIND",
    b"UNCHECKOUT",
    b"UNLINK",
    b"UNLOCK",
    b"UPDATE",
    b"UPDATEREDIRECTREF",
    b"VERSION-CONTROL",
];

/// What the first bytes of a connection say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The HTTP/2 prior-knowledge preface.
    Http2,
    /// A request line beginning with a registered method and a space.
    Http1,
    /// A TLS handshake record; `sni` is the ClientHello's server name when
    /// one was present and the hello fit in the peek buffer.
    Tls { sni: Option<String> },
    /// Anything else.
    Opaque,
}

/// The outcome of classifying a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    Done(Protocol),
    /// The bytes so far are a strict prefix of a known protocol.
    NeedMore,
}

/// Why detection gave up on a connection.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("reading the first bytes failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client sent a truncated HTTP/2 preface and nothing more within {0:?}")]
    TruncatedH2Preface(Duration),
    #[error(
        "the client sent {0} byte(s) that begin an HTTP request line and nothing more within {1:?}"
    )]
    Stalled(usize, Duration),
}

/// Classifies the bytes read so far.
pub fn classify(buf: &[u8]) -> Detection {
    if buf.is_empty() {
        return Detection::NeedMore;
    }
    if buf.len() >= H2_PREFACE.len() {
        if buf.starts_with(H2_PREFACE) {
            return Detection::Done(Protocol::Http2);
        }
    } else if H2_PREFACE.starts_with(buf) {
        return Detection::NeedMore;
    }
    if buf[0] == tls::CONTENT_TYPE_HANDSHAKE {
        return match tls::classify(buf) {
            tls::Hello::NeedMore => Detection::NeedMore,
            tls::Hello::NotTls => Detection::Done(Protocol::Opaque),
            tls::Hello::Tls(sni) => Detection::Done(Protocol::Tls { sni }),
        };
    }
    classify_http1(buf)
}

fn classify_http1(buf: &[u8]) -> Detection {
    let token_len = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    let (token, rest) = buf.split_at(token_len);
    if rest.is_empty() {
        // No space yet: still possible only while `token` is a prefix of a
        // method name.
        if METHODS.iter().any(|m| m.starts_with(token)) {
            return Detection::NeedMore;
        }
        return Detection::Done(Protocol::Opaque);
    }
    if METHODS.contains(&token) {
        Detection::Done(Protocol::Http1)
    } else {
        Detection::Done(Protocol::Opaque)
    }
}

/// Reads from `io` into `buf` until the protocol is known, the buffer is
/// full, or `timeout` expires.
///
/// Returns the protocol; `buf` holds every byte read, which the caller must
/// replay to whatever handles the connection next. A timeout with no bytes
/// (or an unfinished method name) means opaque; a truncated HTTP/2 preface
/// is an error, since no real client stops there.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Protocol, DetectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Detection::Done(p) = classify(buf) {
            return Ok(p);
        }
        if buf.len() >= MAX_PEEK {
            // Only a TLS hello can grow this far; give up on the SNI.
            return Ok(fallback(buf));
        }
        // Start small: most connections decide on their first read, and an
        // idle connection should not pin 16 KiB.
        let additional = if buf.is_empty() { 1024 } else { buf.len() };
        buf.reserve(additional.min(MAX_PEEK - buf.len()));
        let mut limited = (&mut *io).take((MAX_PEEK - buf.len()) as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(buf)).await {
            Ok(Ok(0)) => return Ok(fallback(buf)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_elapsed) => {
                if buf.is_empty() {
                    // Nothing at all: the server may be expected to speak
                    // first.
                    return Ok(Protocol::Opaque);
                }
                if H2_PREFACE.starts_with(buf) && buf.len() > 3 {
                    return Err(DetectError::TruncatedH2Preface(timeout));
                }
                if buf[0] == tls::CONTENT_TYPE_HANDSHAKE {
                    return Ok(fallback(buf));
                }
                // A few bytes of a method name and then silence: a stalled
                // or slowloris client, not a protocol worth forwarding.
                return Err(DetectError::Stalled(buf.len(), timeout));
            }
        }
    }
}

/// What an undecided buffer becomes when no more bytes will come.
fn fallback(buf: &[u8]) -> Protocol {
    if !buf.is_empty()
        && buf[0] == tls::CONTENT_TYPE_HANDSHAKE
        && tls::classify(buf) != tls::Hello::NotTls
    {
        Protocol::Tls { sni: None }
    } else {
        Protocol::Opaque
    }
}

#[cfg(test)]
mod tests;
