//! Ctrl-C and SIGTERM: instead of dying with namespaces and processes left
//! behind, strand-bench sets a flag that the measurement loop checks between
//! samples; it then stops the running load generator, prints what it has
//! and drops every scenario, which cleans up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Set once a stop was requested.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

// === impl StopFlag ===

impl StopFlag {
    /// Installs handlers for SIGINT and SIGTERM on a background thread.
    pub fn install() -> anyhow::Result<StopFlag> {
        let flag = StopFlag(Arc::new(AtomicBool::new(false)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("building the signal-handling runtime")?;
        // Registering here, before the thread starts, means no signal can
        // arrive between returning and the handlers being in place.
        let (mut int, mut term) = rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        let set = flag.clone();
        std::thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || {
                rt.block_on(async {
                    loop {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                        if set.0.swap(true, Ordering::SeqCst) {
                            eprintln!("strand-bench: still cleaning up; please wait");
                        } else {
                            eprintln!("strand-bench: stopping after cleanup (interrupted)");
                        }
                    }
                });
            })
            .context("starting the signal thread")?;
        Ok(flag)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
