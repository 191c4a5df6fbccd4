//! One side of a lean HTTP/2 connection pair: the socket, its read and
//! write buffers, the peer's settings, connection-level flow control and
//! header block assembly.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use strand_proxy_h2::frame::{self, Frame, HEAD_LEN, Head, Reason};
use strand_proxy_h2::hpack;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Read buffer size: a few frames of the default maximum size (16 KiB),
/// which is all this proxy advertises.
const READ_BUF: usize = 64 * 1024;

/// The connection-level receive window this proxy grants each peer. Data
/// is held only until the other side's windows let it through, so this
/// bounds what one connection can make the proxy buffer per direction.
pub const CONN_WINDOW: u32 = 1 << 20;

/// A header block (HEADERS plus CONTINUATION) larger than this many times
/// the header-list limit is refused outright: HPACK can shrink a list, not
/// grow it that much.
const BLOCK_LIMIT_FACTOR: usize = 2;

/// One side's connection.
#[derive(Debug)]
pub struct Peer<T> {
    pub io: T,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    pub wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes were written since the last flush of the stream (a TLS
    /// stream may hold records until flushed).
    unflushed: bool,
    /// The peer closed its side (or the read failed).
    pub eof: bool,
    pub decoder: hpack::Decoder,
    pub encoder: hpack::Encoder,
    /// The peer's SETTINGS_MAX_FRAME_SIZE.
    pub max_frame: u32,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    pub initial_window: u32,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_streams: u32,
    /// What the peer lets us send on the connection.
    pub send_window: i64,
    /// What the peer may still send us on the connection.
    pub recv_window: i64,
    /// Received bytes handed on (or dropped) and not yet given back.
    pub recv_unacked: u32,
    /// A header block being assembled: its stream, END_STREAM, fragments.
    pub block: Option<(u32, bool, Vec<u8>)>,
}

/// A complete header block: its stream, END_STREAM, and the block itself
/// (borrowed from one HEADERS frame, or assembled with CONTINUATION).
pub type HeaderBlock<'a> = (u32, bool, Cow<'a, [u8]>);

/// A complete frame in the read buffer.
pub struct Incoming {
    pub head: Head,
    start: usize,
}

// === impl Incoming ===

impl Incoming {
    /// The frame, parsed from the buffer lent by [`Peer::take_rbuf`].
    pub fn parse<'a>(&self, rbuf: &'a [u8]) -> Result<Frame<'a>, frame::Error> {
        Frame::parse(
            &self.head,
            &rbuf[self.start..self.start + self.head.len as usize],
        )
    }
}

// === impl Peer ===

impl<T: AsyncRead + AsyncWrite + Unpin> Peer<T> {
    pub fn new(io: T) -> Self {
        Peer {
            io,
            rbuf: vec![0; READ_BUF],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(4096),
            wpos: 0,
            unflushed: false,
            eof: false,
            decoder: hpack::Decoder::new(4096),
            encoder: hpack::Encoder::new(),
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            initial_window: frame::DEFAULT_WINDOW,
            max_streams: u32::MAX,
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_window: i64::from(frame::DEFAULT_WINDOW),
            recv_unacked: 0,
            block: None,
        }
    }

    /// Whether a read would have space (a pooled connection reads what
    /// its server sent while it waited, up to the buffer).
    pub fn has_room(&self) -> bool {
        self.rend < self.rbuf.len() || self.rstart > 0
    }

    /// The last `n` bytes read.
    pub fn last_read(&self, n: usize) -> &[u8] {
        &self.rbuf[self.rend - n..self.rend]
    }

    /// Bytes already read and not yet taken as frames.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    /// Consumes `n` buffered bytes (the connection preface).
    pub fn consume(&mut self, n: usize) {
        self.rstart += n;
    }

    /// Reads what the socket has. `Ready(Ok(0))` at the end of the stream.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rend == self.rbuf.len() {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == self.rbuf.len() {
            // Full of one unfinished frame: cannot happen with frames of at
            // most 16 KiB, and a zero-length read would look like the end.
            return Poll::Ready(Err(io::Error::other("frame buffer full")));
        }
        let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.rend += n;
                if n == 0 {
                    self.eof = true;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                self.eof = true;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next complete frame, if the buffer holds one. A frame larger
    /// than this proxy's maximum (the default; it never advertises more) is
    /// a FRAME_SIZE_ERROR.
    pub fn next_frame(&mut self) -> Result<Option<Incoming>, frame::Error> {
        let Some(head) = self.buffered().first_chunk::<HEAD_LEN>() else {
            return Ok(None);
        };
        let head = Head::parse(head);
        if head.len > frame::DEFAULT_MAX_FRAME_SIZE {
            return Err(frame::Error::Connection {
                reason: Reason::FRAME_SIZE_ERROR,
                what: "frame larger than SETTINGS_MAX_FRAME_SIZE",
            });
        }
        let total = HEAD_LEN + head.len as usize;
        if self.rend - self.rstart < total {
            return Ok(None);
        }
        let start = self.rstart + HEAD_LEN;
        self.rstart += total;
        Ok(Some(Incoming { head, start }))
    }

    /// Lends out the read buffer, so that frames parsed from it can be
    /// handled while the connection is changed; [`Peer::put_rbuf`] returns
    /// it before the next read.
    pub fn take_rbuf(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rbuf)
    }

    pub fn put_rbuf(&mut self, rbuf: Vec<u8>) {
        self.rbuf = rbuf;
    }

    /// Writes what is buffered and flushes the stream. `Ready(Ok(()))`
    /// once all of it is out.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.wpos += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.unflushed {
            // Until this is ready, what was written may sit in the stream
            // (TLS records waiting for a full socket to drain).
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                other => return other,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes waiting to be written.
    pub fn unwritten(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Something is left to write or to flush.
    pub fn wants_flush(&self) -> bool {
        self.unwritten() > 0 || self.unflushed
    }

    /// Applies the peer's SETTINGS and acknowledges them. Returns the
    /// change of SETTINGS_INITIAL_WINDOW_SIZE, for the streams' windows.
    pub fn apply_settings(&mut self, s: &frame::Settings) -> i64 {
        let mut delta = 0;
        if let Some(size) = s.max_frame_size {
            self.max_frame = size;
        }
        if let Some(w) = s.initial_window_size {
            delta = i64::from(w) - i64::from(self.initial_window);
            self.initial_window = w;
        }
        if let Some(n) = s.max_concurrent_streams {
            self.max_streams = n;
        }
        if s.header_table_size.is_some() {
            self.encoder.table_size_changed();
        }
        frame::write_settings_ack(&mut self.wbuf);
        delta
    }

    /// A WINDOW_UPDATE for the connection.
    pub fn grow_send_window(&mut self, inc: u32) -> Result<(), frame::Error> {
        self.send_window += i64::from(inc);
        if self.send_window > i64::from(frame::MAX_WINDOW) {
            return Err(frame::Error::Connection {
                reason: Reason::FLOW_CONTROL_ERROR,
                what: "connection window above 2^31-1",
            });
        }
        Ok(())
    }

    /// Takes `len` bytes of DATA off the connection's receive window.
    pub fn take_recv(&mut self, len: u32) -> Result<(), frame::Error> {
        self.recv_window -= i64::from(len);
        if self.recv_window < 0 {
            return Err(frame::Error::Connection {
                reason: Reason::FLOW_CONTROL_ERROR,
                what: "DATA beyond the connection window",
            });
        }
        Ok(())
    }

    /// Gives `len` received bytes back to the peer, in batches of half the
    /// window so that a busy connection sends one update per 512 KiB.
    pub fn release_recv(&mut self, len: u32) {
        self.recv_unacked += len;
        if self.recv_unacked >= CONN_WINDOW / 2 {
            frame::write_window_update(&mut self.wbuf, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    /// Refuses any frame but CONTINUATION while a header block is open
    /// (RFC 9113 §6.10).
    pub fn check_block_open(&self, f: &Frame<'_>) -> Result<(), frame::Error> {
        if self.block.is_some() && !matches!(f, Frame::Continuation { .. }) {
            return Err(frame::Error::Connection {
                reason: Reason::PROTOCOL_ERROR,
                what: "header block interrupted",
            });
        }
        Ok(())
    }

    /// Takes a HEADERS or CONTINUATION frame: the complete header block
    /// (its stream and END_STREAM) once END_HEADERS arrives. A block is
    /// bounded by `limit` (the header-list limit) times two.
    pub fn header_frame<'a>(
        &mut self,
        f: Frame<'a>,
        limit: usize,
    ) -> Result<Option<HeaderBlock<'a>>, frame::Error> {
        let too_large = frame::Error::Connection {
            reason: Reason::ENHANCE_YOUR_CALM,
            what: "header block too large",
        };
        let limit = limit.saturating_mul(BLOCK_LIMIT_FACTOR);
        match f {
            Frame::Headers {
                stream,
                end_stream,
                end_headers: true,
                block,
            } => Ok(Some((stream, end_stream, Cow::Borrowed(block)))),
            Frame::Headers {
                stream,
                end_stream,
                block,
                ..
            } => {
                if block.len() > limit {
                    return Err(too_large);
                }
                self.block = Some((stream, end_stream, block.to_vec()));
                Ok(None)
            }
            Frame::Continuation {
                stream,
                end_headers,
                block: fragment,
            } => {
                let Some((_, _, block)) = self.block.as_mut().filter(|b| b.0 == stream) else {
                    return Err(frame::Error::Connection {
                        reason: Reason::PROTOCOL_ERROR,
                        what: "CONTINUATION without a header block on its stream",
                    });
                };
                if block.len() + fragment.len() > limit {
                    return Err(too_large);
                }
                block.extend_from_slice(fragment);
                if !end_headers {
                    return Ok(None);
                }
                Ok(self.block.take().map(|(s, end, b)| (s, end, Cow::Owned(b))))
            }
            _ => Ok(None),
        }
    }

    /// Ends the connection with GOAWAY.
    pub fn go_away(&mut self, last_stream: u32, reason: Reason, debug: &str) {
        frame::write_goaway(&mut self.wbuf, last_stream, reason, debug.as_bytes());
    }
}
