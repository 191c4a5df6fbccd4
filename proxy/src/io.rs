//! I/O adapters: replaying bytes read during detection, and counting bytes
//! for the TCP metrics.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// A stream whose first reads return `prefix` (the bytes consumed by
    /// protocol detection), then read from the inner stream.
    #[derive(Debug)]
    pub struct PrefixedIo<I> {
        prefix: Bytes,
        #[pin]
        io: I,
    }
}

pin_project_lite::pin_project! {
    /// Counts bytes read from and written to the inner stream into a pair of
    /// Prometheus counters (shared, so updates are visible while the
    /// connection is open).
    #[derive(Debug)]
    pub struct CountingIo<I> {
        #[pin]
        io: I,
        read: Counter,
        written: Counter,
    }
}

/// Streams that sit on a TCP socket, so that a failed connection can be
/// reset rather than closed.
pub trait AsTcp {
    fn tcp(&self) -> &tokio::net::TcpStream;
}

/// Resets (RST instead of FIN) the underlying socket when dropped if its
/// flag was raised: an HTTP/1 response that broke mid-body is then reported
/// to the client at once, instead of after it drains everything the kernel
/// has buffered and then sees a clean-looking close.
#[derive(Debug)]
pub struct ResetOnDrop<I: AsTcp> {
    io: I,
    reset: Arc<AtomicBool>,
}

// === impl PrefixedIo ===

impl<I> PrefixedIo<I> {
    pub fn new(prefix: Bytes, io: I) -> Self {
        Self { prefix, io }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }

    /// Puts `bytes` in front of whatever is still to be replayed, so that
    /// they are read again first.
    pub fn unread(&mut self, bytes: Bytes) {
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else if !bytes.is_empty() {
            let mut joined = bytes::BytesMut::from(&bytes[..]);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.freeze();
        }
    }
}

impl<I: AsyncRead> AsyncRead for PrefixedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for PrefixedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

// === impl CountingIo ===

impl<I> CountingIo<I> {
    pub fn new(io: I, read: Counter, written: Counter) -> Self {
        Self { io, read, written }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead> AsyncRead for CountingIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read.inc_by(n as u64);
        }
        res
    }
}

impl<I: AsyncWrite> AsyncWrite for CountingIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.written.inc_by(n as u64);
        }
        res
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.written.inc_by(n as u64);
        }
        res
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// A connection that is either plain TCP or mesh TLS over TCP.
#[derive(Debug)]
pub enum MaybeTls<T> {
    Plain(tokio::net::TcpStream),
    Tls(Box<T>),
}

/// The proxy's TLS streams on the server and client side.
pub type ServerIo = MaybeTls<tokio_rustls::server::TlsStream<PrefixedIo<tokio::net::TcpStream>>>;
pub type ClientIo = MaybeTls<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($io) => {
                let $io = Pin::new($io);
                $e
            }
            MaybeTls::Tls($io) => {
                let $io = Pin::new($io.as_mut());
                $e
            }
        }
    };
}

/// What [`MaybeTls`] asks of its TLS stream so that a read that can only
/// wait skips the TLS layer.
pub trait TlsRead: AsTcp {
    /// Nothing is buffered above the socket (no decrypted bytes, no bytes
    /// to replay, no close_notify seen): a read needs new bytes from it.
    fn drained(&self) -> bool;
}

impl TlsRead for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    fn drained(&self) -> bool {
        self.get_ref().1.wants_read()
    }
}

impl TlsRead for tokio_rustls::server::TlsStream<PrefixedIo<tokio::net::TcpStream>> {
    fn drained(&self) -> bool {
        let (io, tls) = self.get_ref();
        io.prefix.is_empty() && tls.wants_read()
    }
}

impl<T: AsyncRead + TlsRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Most reads on a busy connection end waiting for the next record.
        // With nothing buffered and the socket not readable (tokio's
        // readiness, which registers the waker), that is known without
        // the TLS layer's trip down to the socket and back (three of the
        // five trips per gRPC request on each proxy of a mesh pair).
        if let MaybeTls::Tls(tls) = &*self
            && tls.drained()
            && tls.tcp().poll_read_ready(cx).is_pending()
        {
            return Poll::Pending;
        }
        delegate!(self, io => io.poll_read(cx, buf))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => io.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(io) => io.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => io.poll_shutdown(cx))
    }
}

// === impl AsTcp ===

impl<T: AsTcp> AsTcp for MaybeTls<T> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.tcp(),
        }
    }
}

impl<I: AsTcp> AsTcp for tokio_rustls::server::TlsStream<I> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0.tcp()
    }
}

impl<I: AsTcp> AsTcp for tokio_rustls::client::TlsStream<I> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0.tcp()
    }
}

impl AsTcp for tokio::net::TcpStream {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self
    }
}

impl<I: AsTcp> AsTcp for CountingIo<I> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.io.tcp()
    }
}

impl<I: AsTcp> AsTcp for PrefixedIo<I> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.io.tcp()
    }
}

// === impl ResetOnDrop ===

impl<I: AsTcp> ResetOnDrop<I> {
    pub fn new(io: I, reset: Arc<AtomicBool>) -> Self {
        Self { io, reset }
    }

    pub fn get_mut(&mut self) -> &mut I {
        &mut self.io
    }
}

impl<I: AsTcp> Drop for ResetOnDrop<I> {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Acquire) {
            let _ = self.io.tcp().set_zero_linger();
        }
    }
}

impl<I: AsTcp + AsyncRead + Unpin> AsyncRead for ResetOnDrop<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsTcp + AsyncWrite + Unpin> AsyncWrite for ResetOnDrop<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_then_inner_and_counts() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let (r, w) = (Counter::default(), Counter::default());
        let mut io = CountingIo::new(
            PrefixedIo::new(Bytes::from_static(b"hello"), b),
            r.clone(),
            w.clone(),
        );
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(r.get(), 11);
        assert_eq!(w.get(), 0);
    }
}
