//! Thread per core: connections are served on single-threaded runtimes, one
//! per core, and stay on the thread that took them.
//!
//! Everything one connection needs (its requests, the HTTP/2 stream tasks,
//! its upstream connections and their pools) lives on one thread, so a
//! request never wakes another thread: at a moderate request rate, waking a
//! parked thread costs more than proxying the request. State the threads
//! share (metrics, discovery, identity) is behind `Arc`s and locks.
//!
//! ```text
//!  main thread: runtime 0 ── accept loops, admin, control plane, conns ─┐
//!  strand-proxy-1: runtime 1 ── conns                                   ├─ least open
//!  strand-proxy-N: runtime N ── conns                                   ┘  connections
//! ```
//!
//! The main thread runs the proxy itself ([`crate::Bound::run_on`]) and is
//! the first worker; [`Workers`] starts the other `cores - 1`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The extra worker threads, each running a single-threaded runtime until
/// the `Workers` is dropped.
pub struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` worker threads (`strand-proxy-1`, ...).
    pub fn start(count: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Workers {
            handles: Vec::with_capacity(count),
            stop: stop.clone(),
            threads: Vec::with_capacity(count),
        };
        for i in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("strand-proxy-{i}"))
                .spawn(move || runtime.block_on(stop.cancelled()))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Handles to spawn on the worker threads' runtimes.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// Stops the threads: tasks still on their runtimes are dropped.
impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Where a side's accepted connections go: the runtime running the accept
/// loop (`None`) or another worker's, each with what that worker serves
/// with (its own connection pools) and how many connections it has open.
pub(crate) struct Spread<S> {
    slots: Vec<Slot<S>>,
    next: AtomicUsize,
}

pub(crate) struct Slot<S> {
    pub runtime: Option<Handle>,
    pub serve: S,
    open: Arc<AtomicUsize>,
}

/// Counts one open connection of a worker until dropped.
pub(crate) struct OpenConn(Arc<AtomicUsize>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S> Spread<S> {
    /// `local` serves on the current runtime; `others` on theirs.
    pub fn new(local: S, others: impl IntoIterator<Item = (Handle, S)>) -> Self {
        let slot = |runtime, serve| Slot {
            runtime,
            serve,
            open: Arc::default(),
        };
        let mut slots = vec![slot(None, local)];
        slots.extend(others.into_iter().map(|(h, s)| slot(Some(h), s)));
        Spread {
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// What the accept loop's own runtime serves with.
    pub fn local(&self) -> &S {
        &self.slots[0].serve
    }

    /// The worker with the fewest open connections (ties go round), and a
    /// count of the new connection on it.
    pub fn pick(&self) -> (&Slot<S>, OpenConn) {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let slot = (0..n)
            .map(|i| &self.slots[(start + i) % n])
            .min_by_key(|s| s.open.load(Ordering::Relaxed))
            .expect("at least the local worker");
        slot.open.fetch_add(1, Ordering::Relaxed);
        (slot, OpenConn(slot.open.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_busy_worker_and_rotates_ties() {
        let workers = Workers::start(2).unwrap();
        let spread = Spread::new(
            0,
            workers
                .handles()
                .iter()
                .cloned()
                .zip([1, 2])
                .collect::<Vec<_>>(),
        );
        let mut open: Vec<_> = (0..3).map(|_| spread.pick()).collect();
        let mut served: Vec<i32> = open.iter().map(|(s, _)| s.serve).collect();
        served.sort();
        assert_eq!(served, [0, 1, 2], "one connection per worker");
        // Worker 1's connection ends: it is the least busy one.
        let ended = open.iter().position(|(s, _)| s.serve == 1).unwrap();
        open.swap_remove(ended);
        let (worker, _open) = spread.pick();
        assert_eq!(worker.serve, 1);
    }

    #[test]
    fn worker_threads_run_tasks_and_stop_when_dropped() {
        let workers = Workers::start(2).unwrap();
        let names: Vec<String> = workers
            .handles()
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
                });
                rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap()
            })
            .collect();
        assert_eq!(names, ["strand-proxy-1", "strand-proxy-2"]);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        workers.handles()[0].spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The pending task was dropped with its runtime.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
