//! Idle upstream connections of the lean HTTP/2 path, per target, most
//! recently used first. A connection waits here unpolled between the
//! client connections that use it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Upstream;

/// Idle lean HTTP/2 upstream connections of one worker.
#[derive(Debug)]
pub struct Pool {
    max_idle: usize,
    idle_timeout: Duration,
    #[expect(
        clippy::vec_box,
        reason = "moved in and out per request; a box is one word"
    )]
    idle: Mutex<HashMap<SocketAddr, Vec<Box<Upstream>>>>,
}

// === impl Pool ===

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            max_idle,
            idle_timeout,
            idle: Mutex::default(),
        }
    }

    /// The most recently used idle connection to `addr` that is still
    /// open and fresh.
    pub fn take(&self, addr: SocketAddr) -> Option<Box<Upstream>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(mut up) = list.pop() {
            if up.usable(self.idle_timeout) {
                return Some(up);
            }
        }
        None
    }

    pub fn put(&self, mut up: Box<Upstream>) {
        if self.max_idle == 0 {
            return;
        }
        up.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(up.addr).or_default();
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push(up);
    }

    /// Drops connections idle too long or closed by their server.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(|up| up.usable(self.idle_timeout));
            !list.is_empty()
        });
    }
}

// === impl Upstream ===

impl Upstream {
    /// Fresh, and its server has not closed it: a read that would block
    /// (frames it sent meanwhile, such as a PING, stay buffered for the
    /// next user).
    fn usable(&mut self, idle_timeout: Duration) -> bool {
        if self.idle_since.elapsed() >= idle_timeout {
            return false;
        }
        if !self.peer.has_room() {
            // Enough is waiting for the next user to read first.
            return true;
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match self.peer.poll_read(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Ok(n)) => n > 0,
            Poll::Ready(Err(_)) => false,
        }
    }
}
