//! The executor: running `iptables-save` and `iptables-restore` (or their
//! IPv6, legacy and nft variants), behind a trait that tests replace.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::Family;

/// `EX_UNAVAILABLE` from sysexits.h: a needed program is not installed.
pub const EX_UNAVAILABLE: u8 = 69;
/// `EX_NOPERM` from sysexits.h: not privileged enough.
pub const EX_NOPERM: u8 = 77;

/// Runs the iptables tools for one network namespace (the current one).
pub trait Iptables {
    /// Checks, before anything is read or changed, that the tools for
    /// `families` can run. The default checks nothing.
    fn preflight(&self, _families: &[Family]) -> Result<(), Error> {
        Ok(())
    }

    /// The `nat` table as `iptables-save -t nat` prints it.
    fn save(&self, family: Family) -> Result<String, Error>;

    /// Applies `input` with `iptables-restore --noflush`: one transaction
    /// that leaves everything it does not mention alone.
    fn restore(&self, family: Family, input: &str) -> Result<(), Error>;
}

/// Which iptables backend to drive, as Debian names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `iptables-legacy-save`/`-restore`: the x_tables kernel interface.
    Legacy,
    /// `iptables-nft-save`/`-restore`: x_tables rules stored in nf_tables.
    Nft,
}

/// The real tools, found in `PATH`.
#[derive(Clone, Debug, Default)]
pub struct SystemIptables {
    /// `None` runs `iptables-save`/`iptables-restore`, whichever backend
    /// the system's alternatives point at.
    mode: Option<Mode>,
}

/// Why the iptables tools could not do their job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is not installed.
    #[error(
        "{binary} was not found in PATH; install it with `apt-get install iptables` \
         (or your distribution's iptables package)"
    )]
    MissingBinary {
        /// The binary's name.
        binary: String,
    },
    /// This process may not change the network namespace's firewall.
    #[error(
        "permission denied: strand-init must run as root or with CAP_NET_ADMIN and CAP_NET_RAW \
         in the pod's network namespace; {detail}"
    )]
    NoPrivilege {
        /// What showed it (our own check, or the tool's complaint).
        detail: String,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// A tool could not be started or talked to.
    #[error("cannot run `{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

// === impl Error ===

impl Error {
    /// The process exit code that reports this error: 69 when iptables is
    /// missing, 77 when privileges are, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::MissingBinary { .. } => EX_UNAVAILABLE,
            Error::NoPrivilege { .. } => EX_NOPERM,
            Error::Failed { .. } | Error::Io { .. } => 1,
        }
    }
}

// === impl SystemIptables ===

impl SystemIptables {
    /// The tools of `mode`, or the system default when `None`.
    pub fn new(mode: Option<Mode>) -> Self {
        SystemIptables { mode }
    }

    /// `iptables-save`, `ip6tables-legacy-save`, ...
    pub fn save_binary(&self, family: Family) -> String {
        self.binary(family, "save")
    }

    /// `iptables-restore`, `ip6tables-nft-restore`, ...
    pub fn restore_binary(&self, family: Family) -> String {
        self.binary(family, "restore")
    }

    /// The restore command line, for messages and dry runs. `-w` waits for
    /// the xtables lock instead of failing when another pod's init (same
    /// host, same lock file) is busy with it.
    pub fn restore_command(&self, family: Family) -> String {
        format!("{} {}", self.restore_binary(family), RESTORE_ARGS.join(" "))
    }

    fn binary(&self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let backend = match self.mode {
            None => "",
            Some(Mode::Legacy) => "-legacy",
            Some(Mode::Nft) => "-nft",
        };
        format!("{base}{backend}-{tool}")
    }
}

const RESTORE_ARGS: [&str; 2] = ["-w", "--noflush"];
const SAVE_ARGS: [&str; 2] = ["-t", "nat"];

impl Iptables for SystemIptables {
    /// Every binary must be in `PATH` (exit 69 otherwise), then this process
    /// must hold CAP_NET_ADMIN (exit 77 otherwise).
    fn preflight(&self, families: &[Family]) -> Result<(), Error> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        for &family in families {
            for binary in [self.save_binary(family), self.restore_binary(family)] {
                if !in_path(&path, &binary) {
                    return Err(Error::MissingBinary { binary });
                }
            }
        }
        // Where /proc is not mounted we cannot tell; the tools will say.
        let status = std::fs::read_to_string("/proc/self/status").ok();
        match status.as_deref().and_then(lacks_net_admin) {
            Some(detail) => Err(Error::NoPrivilege { detail }),
            None => Ok(()),
        }
    }

    fn save(&self, family: Family) -> Result<String, Error> {
        run(&self.save_binary(family), &SAVE_ARGS, None)
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), Error> {
        run(&self.restore_binary(family), &RESTORE_ARGS, Some(input)).map(|_| ())
    }
}

/// Whether `binary` is an executable file in one of `path`'s directories.
fn in_path(path: &OsStr, binary: &str) -> bool {
    std::env::split_paths(path).any(|dir| is_executable(&dir.join(binary)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads `/proc/self/status`: `Some(reason)` when the effective capability
/// set lacks CAP_NET_ADMIN, `None` when it has it or the text is not
/// understood.
pub fn lacks_net_admin(status: &str) -> Option<String> {
    /// `CAP_NET_ADMIN` in linux/capability.h.
    const CAP_NET_ADMIN: u32 = 12;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let effective = u64::from_str_radix(field("CapEff:")?, 16).ok()?;
    if effective & (1 << CAP_NET_ADMIN) != 0 {
        return None;
    }
    // "Uid:\treal\teffective\tsaved\tfs"
    let uid = field("Uid:")
        .and_then(|u| u.split_whitespace().nth(1))
        .unwrap_or("?");
    Some(format!(
        "this process (effective uid {uid}) lacks CAP_NET_ADMIN"
    ))
}

/// Runs `binary args`, feeding it `stdin`, and returns its stdout.
fn run(binary: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let command = std::iter::once(binary)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let io = |source| Error::Io {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingBinary {
                binary: binary.to_owned(),
            },
            _ => io(e),
        })?;
    // Write from another thread so that a tool that answers before reading
    // all of its input cannot deadlock us on a full pipe.
    let (output, written) = std::thread::scope(|s| {
        let writer = match (child.stdin.take(), stdin) {
            (Some(mut pipe), Some(input)) => {
                Some(s.spawn(move || pipe.write_all(input.as_bytes())))
            }
            _ => None,
        };
        let output = child.wait_with_output();
        let written = writer.map_or(Ok(()), |w| w.join().unwrap_or(Ok(())));
        (output, written)
    });
    let output = output.map_err(io)?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        // The tool's complaint explains a broken pipe on its stdin too.
        return Err(failure(command, output.status, stderr));
    }
    written.map_err(io)?;
    String::from_utf8(output.stdout)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Classifies a tool's failure: the kernel's refusals (EPERM, EACCES on
/// the netlink socket or the xtables lock) are privilege problems.
fn failure(command: String, status: ExitStatus, stderr: String) -> Error {
    const DENIED: [&str; 3] = [
        "Permission denied",
        "Operation not permitted",
        "you must be root",
    ];
    if DENIED.iter().any(|d| stderr.contains(d)) {
        return Error::NoPrivilege {
            detail: format!("`{command}` said: {stderr}"),
        };
    }
    Error::Failed {
        command,
        status,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn binaries_follow_mode_and_family() {
        let plain = SystemIptables::new(None);
        assert_eq!(plain.save_binary(Family::V4), "iptables-save");
        assert_eq!(plain.restore_binary(Family::V6), "ip6tables-restore");
        let legacy = SystemIptables::new(Some(Mode::Legacy));
        assert_eq!(legacy.save_binary(Family::V6), "ip6tables-legacy-save");
        assert_eq!(
            legacy.restore_command(Family::V4),
            "iptables-legacy-restore -w --noflush"
        );
        let nft = SystemIptables::new(Some(Mode::Nft));
        assert_eq!(nft.restore_binary(Family::V4), "iptables-nft-restore");
    }

    #[test]
    fn reads_capabilities() {
        let root = "Name:\tx\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        assert_eq!(lacks_net_admin(root), None);
        let net_admin_only = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000001000\n";
        assert_eq!(lacks_net_admin(net_admin_only), None);
        let user = "Uid:\t1000\t1001\t1000\t1000\nCapEff:\t0000000000000000\n";
        assert_eq!(
            lacks_net_admin(user).as_deref(),
            Some("this process (effective uid 1001) lacks CAP_NET_ADMIN")
        );
        assert_eq!(lacks_net_admin("nothing useful"), None);
    }

    #[test]
    fn classifies_failures() {
        let status = ExitStatus::from_raw(1 << 8);
        let e = failure(
            "iptables-save -t nat".into(),
            status,
            "iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)".into(),
        );
        assert_eq!(e.exit_code(), EX_NOPERM);
        assert!(
            e.to_string()
                .contains("Could not fetch rule set generation id"),
            "{e}"
        );

        let e = failure(
            "iptables-restore -w --noflush".into(),
            status,
            "iptables-restore: line 3 failed".into(),
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "`iptables-restore -w --noflush` failed (exit status: 1): iptables-restore: line 3 failed"
        );
    }

    #[test]
    fn missing_binaries_are_unavailable() {
        let e = run("strand-init-no-such-binary", &[], None).expect_err("not installed");
        assert_eq!(e.exit_code(), EX_UNAVAILABLE);
        assert!(e.to_string().contains("apt-get install iptables"), "{e}");
        assert!(!in_path(OsStr::new("/nonexistent"), "iptables-save"));
        assert!(in_path(OsStr::new("/nonexistent:/bin:/usr/bin"), "sh"));
    }

    #[test]
    fn runs_tools_with_stdin() {
        let out = run("cat", &[], Some("*nat\nCOMMIT\n")).expect("cat runs");
        assert_eq!(out, "*nat\nCOMMIT\n");
        let e = run("sh", &["-c", "echo oops >&2; exit 3"], None).expect_err("fails");
        assert_eq!(
            e.to_string(),
            "`sh -c echo oops >&2; exit 3` failed (exit status: 3): oops"
        );
    }
}
