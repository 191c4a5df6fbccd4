//! `strand-testapp`: the servers and clients end-to-end tests run inside
//! pods. Servers print `listening <addr>` once bound and run until killed;
//! clients print a one-line JSON summary and exit 0, or print the error to
//! stderr and exit 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strand_testkit::apps::{certify, grpc, http, http_client, print_summary, tcp, tls, ws};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "strand-testapp",
    version,
    about = "Test servers and clients for strand's end-to-end tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// HTTP/1.1 + HTTP/2 server: /, /echo, /sink, /bytes?n=, /status/CODE, /delay?ms=, /headers, /info.
    Http(http::HttpArgs),
    /// Sends requests over one kept-alive connection.
    HttpClient(http_client::HttpClientArgs),
    /// gRPC strand.test.Echo server.
    Grpc(grpc::GrpcArgs),
    /// Calls strand.test.Echo.
    GrpcClient(grpc::GrpcClientArgs),
    /// WebSocket echo server.
    Ws(ws::WsArgs),
    /// Sends WebSocket messages and checks the echoes.
    WsClient(ws::WsClientArgs),
    /// TCP echo server; closes its side after the client closes its own.
    TcpEcho(tcp::TcpEchoArgs),
    /// Sends, shuts down its write side, reads to EOF.
    TcpClient(tcp::TcpClientArgs),
    /// Server-speaks-first: writes a banner line on accept, then echoes.
    Banner(tcp::BannerArgs),
    /// Reads a server's banner without sending anything.
    BannerClient(tcp::BannerClientArgs),
    /// TLS line-echo server with a freshly made CA.
    Tls(tls::TlsArgs),
    /// TLS client that verifies the server against a CA file.
    TlsClient(tls::TlsClientArgs),
    /// One Identity/Certify call over TLS (optionally malformed); prints the outcome.
    Certify(certify::CertifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand-testapp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Http(args) => http::main(args).await,
        Command::HttpClient(args) => print_summary(&http_client::run(&args).await?),
        Command::Grpc(args) => grpc::main(args).await,
        Command::GrpcClient(args) => print_summary(&grpc::run(&args).await?),
        Command::Ws(args) => ws::main(args).await,
        Command::WsClient(args) => print_summary(&ws::run(&args).await?),
        Command::TcpEcho(args) => tcp::echo_main(args).await,
        Command::TcpClient(args) => print_summary(&tcp::client(&args).await?),
        Command::Banner(args) => tcp::banner_main(args).await,
        Command::BannerClient(args) => print_summary(&tcp::banner_client(&args).await?),
        Command::Tls(args) => tls::main(args).await,
        Command::TlsClient(args) => print_summary(&tls::client(&args).await?),
        Command::Certify(args) => print_summary(&certify::run(&args).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommand_names() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "http",
                "http-client",
                "grpc",
                "grpc-client",
                "ws",
                "ws-client",
                "tcp-echo",
                "tcp-client",
                "banner",
                "banner-client",
                "tls",
                "tls-client",
                "certify"
            ]
        );
    }
}
