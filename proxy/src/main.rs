//! The `strand-proxy` binary: configuration from the environment, logging,
//! the runtime, and signal handling around [`strand_proxy::Proxy`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use strand_proxy::config::{self, Config, LogFormat, ProcessEnv};
use strand_proxy::workers::Workers;
use tracing_subscriber::EnvFilter;

/// `EX_USAGE` from sysexits.h: invalid configuration.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "-h" | "--help" => {
                print!("{}", help());
                ExitCode::SUCCESS
            }
            "-V" | "--version" => {
                println!("strand-proxy {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            other => {
                eprintln!(
                    "strand-proxy takes no arguments (got `{other}`); it is configured by STRAND_PROXY_* variables, see --help"
                );
                ExitCode::from(EX_USAGE)
            }
        };
    }
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("strand-proxy: {e}");
            }
            eprintln!("strand-proxy: see `strand-proxy --help` for every variable and its default");
            return ExitCode::from(EX_USAGE);
        }
    };
    let filter = match EnvFilter::try_new(&config.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "strand-proxy: STRAND_PROXY_LOG={:?} is not valid: {e}",
                config.log_level
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Plain => fmt.init(),
        LogFormat::Json => fmt.json().init(),
    }

    match strand_sys::raise_nofile_limit() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }

    // Thread per core: this thread and `cores - 1` others, each with its own
    // event loop (see strand_proxy::workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (runtime, workers) = match (runtime, Workers::start(config.cores - 1)) {
        (Ok(rt), Ok(workers)) => (rt, workers),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("strand-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let bound = match strand_proxy::Proxy::new(config).bind().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = bound.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            shutdown.cancel();
        });
        bound.run_on(workers.handles()).await;
        ExitCode::SUCCESS
    });
    drop(workers);
    code
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the proxy with POST /shutdown");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}

fn help() -> String {
    let mut out = String::from(
        "strand-proxy: the strand data-plane proxy.\n\n\
         Runs beside a workload and proxies its TCP traffic, which strand-init\n\
         redirects with iptables: outbound connections to the outbound listener,\n\
         inbound connections to the inbound listener. HTTP/1, HTTP/2 and gRPC are\n\
         proxied per request with metrics; other TCP (including TLS) byte for byte.\n\n\
         USAGE: strand-proxy            (configured only by environment variables)\n\n\
         ENVIRONMENT:\n",
    );
    for v in config::VARS {
        out.push_str(&format!(
            "  {}\n      {} [default: {}]\n",
            v.name, v.help, v.default
        ));
    }
    out.push_str(
        "\nExit status: 0 after a clean shutdown (SIGTERM, SIGINT or POST /shutdown),\n\
         64 for invalid configuration, 1 when a listener cannot be bound.\n",
    );
    out
}
