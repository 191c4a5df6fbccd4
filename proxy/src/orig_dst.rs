//! The seam that tells where a redirected connection was going.
//!
//! In a pod, iptables `REDIRECT` sends the workload's connections to the
//! proxy's listeners; the kernel remembers the original destination, read
//! back with `SO_ORIGINAL_DST`. Tests replace this with a fixed address.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Finds the original destination of an accepted connection.
pub trait OrigDst: Send + Sync + 'static {
    fn orig_dst(&self, conn: &TcpStream) -> io::Result<SocketAddr>;
}

/// Reads `SO_ORIGINAL_DST` (or its IPv6 counterpart) from the socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoOriginalDst;

/// Every connection was headed to one fixed address (tests, and a proxy run
/// without iptables in front of a single server).
#[derive(Clone, Copy, Debug)]
pub struct FixedOrigDst(pub SocketAddr);

impl OrigDst for SoOriginalDst {
    fn orig_dst(&self, conn: &TcpStream) -> io::Result<SocketAddr> {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d;
        // its redirect was recorded by the IPv4 table.
        let v6 = match conn.local_addr()? {
            SocketAddr::V4(_) => false,
            SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_none(),
        };
        let addr = strand_sys::original_dst(conn, v6)?;
        Ok(unmap(addr))
    }
}

impl OrigDst for FixedOrigDst {
    fn orig_dst(&self, _conn: &TcpStream) -> io::Result<SocketAddr> {
        Ok(self.0)
    }
}

/// Turns `::ffff:a.b.c.d` into `a.b.c.d`.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(ip.into(), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}
