//! The `strand-init` binary: parses flags and runs [`strand_init::cli::run`]
//! against the system's iptables, mapping errors to exit codes (69: iptables
//! missing, 77: not privileged, 1: iptables failed; clap exits 2 on bad
//! flags).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use strand_init::SystemIptables;
use strand_init::cli::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let iptables = SystemIptables::new(args.iptables_mode);
    match cli::run(
        &args,
        &iptables,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-init: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
