//! The task of an HTTP/1 client connection, which also drives the
//! connection's upstream connection ([`StickyH1`]).
//!
//! Each part (the hyper server connection with its in-flight request, the
//! upstream connection, the shutdown signal) gets its own waker, so a
//! wakeup polls only the part that was woken, and a wakeup raised while
//! the task is being polled (the server handing a request to the upstream
//! connection, which hands back the response) is handled in the same poll
//! instead of going back through the scheduler (which, for a task that
//! wakes itself, also wakes an idle worker thread to steal it).
//!
//! ```text
//!  wake(SERVER) ──┐                 ┌─► server conn + Forward::call
//!  wake(UPSTREAM) ┼─► bits ─► poll ─┼─► upstream conn (StickyH1)
//!  wake(DRAIN) ───┘   (task waker   └─► drain signal ─► graceful shutdown
//!                      only when not
//!                      being polled)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use crate::client::StickyH1;

const SERVER: u8 = 1;
const UPSTREAM: u8 = 2;
const DRAIN: u8 = 4;

/// Rounds of polling within one poll of the task before it yields to the
/// scheduler. A round normally follows a request or response one step (two
/// or three rounds per wakeup); the cap matters when tokio's cooperative
/// budget runs out, because a resource that refuses to proceed wakes its
/// caller at once and would otherwise keep this loop spinning.
const MAX_ROUNDS: u32 = 8;

/// What the parts' wakers share with the task.
#[derive(Debug, Default)]
struct Shared {
    /// Parts woken since they were last polled.
    woken: AtomicU8,
    /// Set while the task is being polled: wakers then only set their bit.
    polling: AtomicBool,
    task: AtomicWaker,
}

#[derive(Debug)]
struct PartWaker {
    shared: Arc<Shared>,
    bit: u8,
}

/// Runs the HTTP/1 server connection `conn` and the upstream connection in
/// `h1` to completion; when `drain` fires, asks `conn` to finish its
/// in-flight request and close (`graceful`).
pub async fn drive_h1<C>(
    conn: C,
    drain: CancellationToken,
    graceful: impl FnOnce(Pin<&mut C>),
    h1: &StickyH1,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let shared = Arc::new(Shared {
        woken: AtomicU8::new(SERVER | UPSTREAM | DRAIN),
        ..Shared::default()
    });
    let waker = |bit| {
        Waker::from(Arc::new(PartWaker {
            shared: shared.clone(),
            bit,
        }))
    };
    let (server_waker, upstream_waker, drain_waker) =
        (waker(SERVER), waker(UPSTREAM), waker(DRAIN));
    tokio::pin!(conn);
    let drained = drain.cancelled();
    tokio::pin!(drained);
    let mut graceful = Some(graceful);

    std::future::poll_fn(|cx| {
        shared.task.register(cx.waker());
        let mut rounds = 0;
        loop {
            shared.polling.store(true, SeqCst);
            loop {
                let woken = shared.woken.swap(0, SeqCst);
                if woken == 0 {
                    break;
                }
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    shared.woken.fetch_or(woken, SeqCst);
                    shared.polling.store(false, SeqCst);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if woken & DRAIN != 0
                    && graceful.is_some()
                    && drained
                        .as_mut()
                        .poll(&mut Context::from_waker(&drain_waker))
                        .is_ready()
                    && let Some(graceful) = graceful.take()
                {
                    graceful(conn.as_mut());
                    shared.woken.fetch_or(SERVER, SeqCst);
                }
                if woken & UPSTREAM != 0 {
                    h1.poll_driver(&mut Context::from_waker(&upstream_waker));
                }
                if woken & SERVER != 0 {
                    let res = conn.as_mut().poll(&mut Context::from_waker(&server_waker));
                    // A connection the request just put in place has not
                    // been polled yet, so nothing would wake it.
                    if h1.take_replaced() {
                        shared.woken.fetch_or(UPSTREAM, SeqCst);
                    }
                    if let Poll::Ready(res) = res {
                        shared.polling.store(false, SeqCst);
                        // Let the upstream connection see the end of the
                        // last response, so that it can go back to the pool.
                        h1.poll_driver(&mut Context::from_waker(&upstream_waker));
                        return Poll::Ready(res);
                    }
                }
            }
            shared.polling.store(false, SeqCst);
            // A part woken between the last swap and clearing `polling`
            // did not wake the task: poll it now.
            if shared.woken.load(SeqCst) == 0 {
                return Poll::Pending;
            }
        }
    })
    .await
}

// === impl PartWaker ===

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.woken.fetch_or(self.bit, SeqCst);
        if !self.shared.polling.load(SeqCst) {
            self.shared.task.wake();
        }
    }
}
