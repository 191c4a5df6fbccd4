//! The strand test bed: "pods" as Linux network namespaces joined by a
//! bridge, guards that clean them up, polling assertions, and the test
//! applications (`strand-testapp`) that end-to-end tests run inside pods.
//!
//! ```text
//!   bridge namespace  st-<pid>-<n>-<hint>         (one per Network)
//!   ┌──────────────────── br0 ────────────────────┐
//!   │        v2-a                 v3-b            │
//!   └─────────┼───────────────────┼───────────────┘
//!      veth   │                   │   veth
//!   ┌─────────┴───────┐   ┌───────┴─────────┐
//!   │ eth0 198.18.0.2 │   │ eth0 198.18.0.3 │   pod namespaces
//!   │ pod "a"         │   │ pod "b"         │   st-<pid>-<n>-a, ...
//!   └─────────────────┘   └─────────────────┘
//! ```
//!
//! Nothing is created in the root namespace: every `ip` command that adds an
//! interface runs inside a namespace this crate created, and addresses come
//! from the benchmarking range 198.18.0.0/15 (and `fd00:5a::/64`). Dropping a
//! [`Network`] or [`Pod`] (also while unwinding from a panic) kills the
//! processes inside and deletes the namespaces; namespaces left behind by a
//! killed test run are swept by the next [`Network::new`].
//!
//! Namespace tests need root; they start with
//! `if !strand_testkit::require_root() { return; }`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod apps;
mod child;
mod eventually;
mod netns;
mod pod;

pub use child::Child;
pub use eventually::{PATIENCE_ENV, eventually, eventually_ok, patience, poll_interval};
pub use netns::Network;
pub use nix::sys::signal::Signal;
pub use pod::Pod;

/// Set to `1` (as CI does) to make [`require_root`] fail instead of skip.
pub const REQUIRE_ROOT_ENV: &str = "STRAND_REQUIRE_ROOT_TESTS";

/// The message every root-only entry point fails with.
pub const NEED_ROOT: &str =
    "network-namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run as root or with sudo";

/// Whether a network-namespace test can run here.
///
/// Returns `true` as root. Otherwise prints a skip line and returns `false`,
/// unless `STRAND_REQUIRE_ROOT_TESTS=1`, in which case it panics so that a CI
/// run without privileges cannot pass by skipping everything.
pub fn require_root() -> bool {
    if strand_sys::is_root() {
        return true;
    }
    let required = std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1");
    assert!(!required, "{NEED_ROOT} ({REQUIRE_ROOT_ENV}=1 is set)");
    eprintln!("skipping: {NEED_ROOT}");
    false
}

/// Locates a workspace binary (`strand-proxy`, `strand-init`,
/// `strand-testapp`, ...) in the cargo target directory of the running test.
///
/// A test executable lives in `target/<profile>/deps/`, binaries in
/// `target/<profile>/`; an executable that is itself in `target/<profile>/`
/// (the benchmark) finds its siblings.
///
/// # Panics
///
/// When the binary has not been built, with a message saying how to build it.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let candidates = bin_candidates(&exe, name);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let expected = candidates
        .first()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(name));
    panic!(
        "binary {name} not found at {}; run `cargo build --workspace --bins` first",
        expected.display()
    );
}

/// Where [`bin_path`] looks, best guess first.
fn bin_candidates(exe: &std::path::Path, name: &str) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let in_deps = dir.file_name().is_some_and(|n| n == "deps");
    if let Some(profile_dir) = dir.parent().filter(|_| in_deps) {
        out.push(profile_dir.join(name));
    }
    out.push(dir.join(name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn bin_candidates_from_test_executable() {
        let exe = Path::new("/w/target/debug/deps/netns-0123abcd");
        assert_eq!(
            bin_candidates(exe, "strand-proxy"),
            vec![
                PathBuf::from("/w/target/debug/strand-proxy"),
                PathBuf::from("/w/target/debug/deps/strand-proxy"),
            ]
        );
    }

    #[test]
    fn bin_candidates_from_binary() {
        let exe = Path::new("/w/target/release/strand-bench");
        assert_eq!(
            bin_candidates(exe, "strand-proxy"),
            vec![PathBuf::from("/w/target/release/strand-proxy")]
        );
    }
}
