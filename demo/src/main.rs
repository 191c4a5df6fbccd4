//! `strand-demo`: the emojivoto-shaped demo application, one subcommand per
//! role. Every role logs one line per event to stderr (`RUST_LOG` overrides
//! the `info` default) and exits 0 soon after SIGTERM or SIGINT, once
//! in-flight requests are done.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strand_demo::{Shutdown, emoji, shutdown, vote_bot, voting, web};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// An emojivoto-shaped demo application for the strand mesh.
///
/// Run `emoji` and `voting` (gRPC over h2c), `web` (HTTP/1.1, calls both)
/// and `vote-bot` (traffic against web) as meshed workloads; the mesh adds
/// mTLS.
#[derive(Parser, Debug)]
#[command(name = "strand-demo", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The emoji service: gRPC emojivoto.v1.EmojiService (ListAll,
    /// FindByShortcode) over a fixed list of 24 emoji.
    Emoji(emoji::EmojiArgs),
    /// The voting service: gRPC emojivoto.v1.VotingService (Vote, Results),
    /// votes counted in memory; votes for one emoji fail on purpose.
    Voting(voting::VotingArgs),
    /// The web front end: a page at /, and /api/list, /api/vote?choice=,
    /// /api/leaderboard and /healthz over HTTP/1.1.
    Web(web::WebArgs),
    /// Steady traffic against web, with counters served at GET /stats and a
    /// summary printed every 10 s.
    VoteBot(vote_bot::VoteBotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Pods' logs go to files: colour codes only for a person at a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
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
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let shutdown = on_signal()?;
    match command {
        Command::Emoji(args) => emoji::serve(bind(args.listen).await?, shutdown).await?,
        Command::Voting(args) => {
            let fail = args.fail_shortcode();
            voting::serve(bind(args.listen).await?, fail, shutdown).await?;
        }
        Command::Web(args) => {
            let listener = bind(args.listen).await?;
            web::serve(listener, &args.emoji_addr, &args.voting_addr, shutdown).await?;
        }
        Command::VoteBot(args) => {
            let listener = bind(args.listen).await?;
            vote_bot::run(listener, &args.config(), shutdown).await?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// A [`Shutdown`] that fires on the first SIGTERM or SIGINT.
fn on_signal() -> anyhow::Result<Shutdown> {
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name}: shutting down");
        trigger.fire();
        // Keep the trigger alive (a drop would fire it too) and swallow
        // further signals: the drain is bounded anyway.
        std::future::pending::<()>().await;
    });
    Ok(shutdown)
}
