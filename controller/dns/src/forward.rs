//! Relaying queries for names outside the zone to upstream resolvers.
//!
//! The client's message goes out unchanged except for a fresh random ID
//! (so that upstream answers cannot be matched to a guessable ID); the
//! answer comes back unchanged except for the client's ID restored. UDP
//! queries use a new socket each, for a random source port; TCP queries
//! open a connection each, since upstream TCP is rare (truncated answers).

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use crate::answer::{MAX_UDP_PAYLOAD, Transport};

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream configured")]
    NoUpstream,
    #[error("upstream {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The first upstream, then one retry on the next (wrapping around, so a
/// single upstream is asked twice): resolv.conf's order, where the first
/// server is the primary.
const ATTEMPTS: usize = 2;

/// One byte more than the largest answer we relay over UDP: anything that
/// fills the buffer is too big for the client and goes back truncated,
/// so the cut-off tail is never relayed.
const UDP_RECV_BUFFER: usize = MAX_UDP_PAYLOAD as usize + 1;

/// The size of a DNS header; `query` is known to hold at least one.
const HEADER_LEN: usize = 12;

/// Sends `query` (a whole message, header included) upstream over
/// `transport` and returns the upstream's answer with `query`'s ID.
pub(crate) async fn exchange(
    upstreams: &[SocketAddr],
    query: &[u8],
    transport: Transport,
    timeout: Duration,
) -> Result<Vec<u8>, ForwardError> {
    let mut last = ForwardError::NoUpstream;
    for &upstream in upstreams.iter().cycle().take(ATTEMPTS) {
        let id = fastrand::u16(..);
        let outgoing = with_id(query, id);
        let attempt = match transport {
            Transport::Udp => tokio::time::timeout(timeout, udp(upstream, &outgoing, id)).await,
            Transport::Tcp => tokio::time::timeout(timeout, tcp(upstream, &outgoing, id)).await,
        };
        match attempt {
            Ok(Ok(answer)) => return Ok(with_id(&answer, id_of(query))),
            Ok(Err(source)) => last = ForwardError::Io { upstream, source },
            Err(_elapsed) => last = ForwardError::Timeout(upstream),
        }
        tracing::debug!(error = %last, "upstream attempt failed");
    }
    Err(last)
}

async fn udp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected, so the kernel filters datagrams from anyone else and
    // reports ICMP unreachable as an error instead of a timeout.
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0; UDP_RECV_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
        tracing::debug!(%upstream, "ignoring a stray datagram");
    }
}

async fn tcp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&framed(query)?).await?;
    let len = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await?;
    if !is_answer_to(&answer, id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer does not match the query's ID",
        ));
    }
    Ok(answer)
}

/// `message` with its 2-byte length prefix, as DNS over TCP sends it.
pub(crate) fn framed(message: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 64 KiB"))?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// A response (QR set) with the ID we sent.
fn is_answer_to(message: &[u8], id: u16) -> bool {
    message.len() >= HEADER_LEN && id_of(message) == id && message[2] & 0x80 != 0
}

fn id_of(message: &[u8]) -> u16 {
    match message {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    }
}

fn with_id(message: &[u8], id: u16) -> Vec<u8> {
    let mut out = message.to_vec();
    if let Some(head) = out.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
    out
}
