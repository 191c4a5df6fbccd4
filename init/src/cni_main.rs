//! The `strand-cni` binary: a CNI plugin run by a container runtime (see
//! [`strand_init::cni`]). The result or the error object goes to stdout,
//! log lines to stderr; exit 0 on success, 1 on error.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use strand_init::cni::{self, CniError, Env, SystemCapture};

/// The most a network configuration may weigh: runtimes send a few KiB.
const MAX_STDIN: u64 = 1 << 20;

fn main() -> ExitCode {
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h")
    {
        print!("{}", cni::HELP);
        return ExitCode::SUCCESS;
    }
    let result = Env::from_vars(|k| std::env::var(k).ok())
        .map_err(|e| (e, None))
        .and_then(|env| {
            let stdin = if env.command == cni::Command::Version {
                Vec::new()
            } else {
                read_stdin().map_err(|e| (e, None))?
            };
            cni::run(&env, &stdin, &SystemCapture)
        });
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(outcome) => {
            if !outcome.log.is_empty() {
                eprintln!("{}", outcome.log.trim_end());
            }
            if !outcome.stdout.is_empty() {
                let _ = writeln!(stdout, "{}", outcome.stdout);
            }
            ExitCode::SUCCESS
        }
        Err((e, version)) => {
            eprintln!("strand-cni: {e}");
            let _ = writeln!(stdout, "{}", e.to_json(version.as_deref()));
            ExitCode::FAILURE
        }
    }
}

fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(cni::code::IO_FAILURE, "cannot read stdin", e.to_string()))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            cni::code::DECODE_FAILURE,
            "the network configuration on stdin is larger than 1 MiB",
            "",
        ));
    }
    Ok(buf)
}
