//! A background process in a pod that cannot outlive the test: its guard
//! stops it on drop, and its output goes to files a failing test can print.

use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::sanitize;

/// A process started by [`Pod::spawn`](crate::Pod::spawn). Dropping it sends
/// SIGTERM, then SIGKILL after two seconds, and reaps the process.
#[derive(Debug)]
pub struct Child {
    process: std::process::Child,
    label: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

/// How long a process gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How much of a child's output to print when a test panics: enough to see
/// the error that ended it without burying the assertion message.
const TAIL_LINES: usize = 20;

// === impl Child ===

impl Child {
    pub(crate) fn spawn(mut cmd: Command, log_dir: &Path, seq: u32) -> anyhow::Result<Child> {
        let label = program_label(&cmd);
        let stdout_path = log_dir.join(format!("{seq:02}-{label}.stdout"));
        let stderr_path = log_dir.join(format!("{seq:02}-{label}.stderr"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let process = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Child {
            process,
            label,
            stdout_path,
            stderr_path,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// A short name for the program, used in log file names and messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.process.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }

    /// Sends `signal` to the process; an error if it has already exited.
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if let Some(status) = self.try_wait() {
            bail!(
                "{} (pid {}) already exited: {status}",
                self.label,
                self.pid()
            );
        }
        // Not reaped yet (checked above), so the pid still names our child.
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {} (pid {pid})", self.label))
    }

    /// Stops the process as dropping the guard would, returning its status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = self.signal(Signal::SIGTERM);
            if self.wait_timeout(STOP_GRACE).is_none() {
                let _ = self.process.kill();
                self.status = self.process.wait().ok();
            }
        }
        self.status
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The file stdout goes to.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// The file stderr goes to.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Waits (with the test [`patience`](crate::patience)) for a complete
    /// stdout line containing `needle` and returns it. Fails early, with
    /// stderr, if the process exits first.
    pub fn wait_for_stdout(&mut self, needle: &str) -> anyhow::Result<String> {
        let patience = crate::patience();
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            // Only lines that end in a newline are complete.
            let text = self.stdout_text();
            let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
            if let Some(line) = complete.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.try_wait() {
                bail!(
                    "{} exited ({status}) before printing {needle:?}\nstderr: {}\nstdout: {}",
                    self.label,
                    self.stderr_text().trim(),
                    text.trim()
                );
            }
            if start.elapsed() >= patience {
                bail!(
                    "{} did not print {needle:?} within {patience:?}\nstderr: {}\nstdout: {}",
                    self.label,
                    self.stderr_text().trim(),
                    text.trim()
                );
            }
            std::thread::sleep(crate::poll_interval(attempt));
            attempt += 1;
        }
    }

    /// Waits for a `strand-testapp` server's `listening <addr>` line and
    /// returns the address it bound.
    pub fn wait_listening(&mut self) -> anyhow::Result<SocketAddr> {
        let line = self.wait_for_stdout("listening ")?;
        let addr = line
            .split_once("listening ")
            .map_or("", |(_, addr)| addr)
            .trim();
        addr.parse()
            .with_context(|| format!("{}: cannot parse address in {line:?}", self.label))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "strand-testkit: {} (pid {}) ended with {status:?}; last stderr lines ({}):\n{}",
                self.label,
                self.pid(),
                self.stderr_path.display(),
                tail(&self.stderr_text(), TAIL_LINES)
            );
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The program a command really runs, seeing through the `ip netns exec NS`
/// and `setpriv ... --` wrappers that [`Pod::command`](crate::Pod::command)
/// and [`Pod::command_as`](crate::Pod::command_as) add.
fn program_label(cmd: &Command) -> String {
    let args: Vec<&OsStr> = cmd.get_args().collect();
    let mut program = cmd.get_program();
    let mut rest: &[&OsStr] = &args;
    if program == "ip" && rest.len() > 3 && rest[0] == "netns" && rest[1] == "exec" {
        program = rest[3];
        rest = &rest[4..];
    }
    let after_dashes = rest
        .iter()
        .position(|a| *a == "--")
        .and_then(|i| rest.get(i + 1));
    if let Some(p) = after_dashes.filter(|_| program == "setpriv") {
        program = p;
    }
    let base = Path::new(program).file_name().unwrap_or(program);
    sanitize(&base.to_string_lossy(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sees_through_wrappers() {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            "st-1-2-a",
            "/w/target/debug/strand-testapp",
            "http",
        ]);
        assert_eq!(program_label(&cmd), "strand-testapp");

        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            "st-1-2-a",
            "setpriv",
            "--reuid=2103",
            "--",
            "id",
        ]);
        assert_eq!(program_label(&cmd), "id");

        assert_eq!(program_label(&Command::new("/usr/bin/curl")), "curl");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
