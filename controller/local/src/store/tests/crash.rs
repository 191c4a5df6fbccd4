//! `kill -9` at a random moment loses nothing that was acknowledged.
//!
//! The test re-executes its own binary to run `crash_child`, which applies
//! services in a loop and prints each name once `apply` returned; the parent
//! SIGKILLs it, reopens the store and looks for every printed name.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set (to a state directory) only in the child process.
const CHILD_ENV: &str = "STRAND_STORE_CRASH_CHILD_DIR";
const ACK: &str = "ACK ";

#[tokio::test]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // Only does something when run by `kill_9_loses_nothing_acknowledged`.
    };
    let config = StoreConfig {
        // Compact often, so that some kills land inside a compaction.
        compact_records: 25,
        ..StoreConfig::new(dir)
    };
    let store = Store::open(config).await.expect("child opens the store");
    let mut out = std::io::stdout();
    // Names continue from earlier rounds.
    let base = store.list(Kind::Service, None).len();
    for i in base.. {
        let name = format!("s{i}");
        let mut text = service("default", &name, 80);
        // Some updates too, so records are not all creations.
        if i > base && i % 3 == 2 {
            text.push_str("---\n");
            text.push_str(&service("default", &format!("s{}", i - 1), 81));
        }
        store.apply(text).await.expect("child applies");
        writeln!(out, "{ACK}{name}").expect("print");
        out.flush().expect("flush");
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let exe = std::env::current_exe().expect("test binary");
    let dir = TempDir::new("crash");
    let state_dir = dir.config().state_dir;
    let mut total = 0;
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::tests::crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(name) = line.strip_prefix(ACK) {
                    let _ = tx.send(name.to_string());
                }
            }
        });
        // Wait for the first acknowledgement (the child has started), then
        // let it run for 300 ms plus a random extra, and kill it.
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child acknowledges a first apply");
        let deadline = Instant::now() + Duration::from_millis(300 + fastrand::u64(0..200));
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        let mut acked: Vec<String> = vec![first];
        acked.extend(rx.try_iter());

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let store = rt
            .block_on(Store::open(dir.config()))
            .expect("reopens after SIGKILL");
        for name in &acked {
            assert!(
                store.get(Kind::Service, "default", name).is_some(),
                "round {round}: acknowledged {name} is missing"
            );
        }
        total = store.list(Kind::Service, None).len();
        assert!(total >= acked.len());
        drop(store);
    }
    assert!(total > 0);
}
