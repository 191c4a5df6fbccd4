//! Opaque TCP: `tcp-echo` and `tcp-client` (echo with half-close, so a test
//! can check that a proxy forwards a FIN in one direction while data still
//! flows in the other), and `banner` and `banner-client` (a server that
//! speaks first, which protocol detection must not wait on forever).

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Deadline, accept, bind_and_announce, filler, millis_since};

/// `strand-testapp tcp-echo` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TcpEchoArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
}

/// `strand-testapp tcp-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TcpClientArgs {
    /// `HOST:PORT` to connect to.
    #[arg(long)]
    pub connect: String,
    /// Text to send first.
    #[arg(long, default_value = "")]
    pub send: String,
    /// Then this many filler bytes, streamed while the reply is read.
    #[arg(long, default_value_t = 0)]
    pub bytes: u64,
    /// Fail unless the whole reply equals this text.
    #[arg(long)]
    pub expect: Option<String>,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// What `tcp-client` prints.
#[derive(Clone, Debug, Serialize)]
pub struct TcpClientSummary {
    /// Always true: a failed exchange is an error instead.
    pub ok: bool,
    /// Bytes written before shutting down the write side.
    pub sent: u64,
    /// Bytes read until the server closed.
    pub received: u64,
    /// The first 4 KiB of the reply.
    pub reply: String,
    /// Wall time of the whole run, in milliseconds.
    pub elapsed_ms: u64,
}

/// `strand-testapp banner` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BannerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Line written to every client as soon as it connects.
    #[arg(long)]
    pub banner: String,
}

/// `strand-testapp banner-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BannerClientArgs {
    /// `HOST:PORT` to connect to.
    #[arg(long)]
    pub connect: String,
    /// Fail unless the banner equals this text.
    #[arg(long)]
    pub expect: Option<String>,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// What `banner-client` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BannerClientSummary {
    /// Always true: a failed read is an error instead.
    pub ok: bool,
    /// The banner line, without its newline.
    pub banner: String,
    /// Milliseconds from connected to banner read.
    pub ms: u64,
    /// Milliseconds the connect took.
    pub connect_ms: u64,
}

/// How much of a reply the summary keeps.
const KEEP_REPLY: usize = 4096;

/// `tcp-echo`: binds, announces and serves until killed.
pub async fn echo_main(args: TcpEchoArgs) -> anyhow::Result<()> {
    let listener = bind_and_announce(args.listen).await?;
    serve_echo(listener, None).await
}

/// `banner`: binds, announces and serves until killed.
pub async fn banner_main(args: BannerArgs) -> anyhow::Result<()> {
    let listener = bind_and_announce(args.listen).await?;
    serve_echo(listener, Some(args.banner)).await
}

/// Echoes every connection on `listener`, first writing `banner` and a
/// newline if given.
pub async fn serve_echo(listener: TcpListener, banner: Option<String>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = accept(&listener).await;
        let banner = banner.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(stream, banner).await {
                tracing::debug!(%peer, "echo ended: {e}");
            }
        });
    }
}

/// Copies input to output until the client shuts down its write side, then
/// shuts down ours: the reply completes and only then does the client see EOF.
async fn echo(mut stream: TcpStream, banner: Option<String>) -> std::io::Result<u64> {
    if let Some(banner) = banner {
        stream.write_all(format!("{banner}\n").as_bytes()).await?;
    }
    let (mut rx, mut tx) = stream.split();
    let n = tokio::io::copy(&mut rx, &mut tx).await?;
    tx.shutdown().await?;
    Ok(n)
}

/// Sends, half-closes, reads to EOF.
pub async fn client(args: &TcpClientArgs) -> anyhow::Result<TcpClientSummary> {
    args.deadline.run("tcp-client", exchange(args)).await
}

async fn exchange(args: &TcpClientArgs) -> anyhow::Result<TcpClientSummary> {
    let start = Instant::now();
    let stream = TcpStream::connect(&args.connect)
        .await
        .with_context(|| format!("connecting to {}", args.connect))?;
    let (mut rx, mut tx) = stream.into_split();
    // Write and read at once: an echo of more than the socket buffers
    // would otherwise deadlock.
    let write = async {
        tx.write_all(args.send.as_bytes()).await?;
        let mut chunks = std::pin::pin!(filler(args.bytes));
        while let Some(chunk) = chunks.next().await {
            tx.write_all(&chunk).await?;
        }
        tx.shutdown().await?;
        anyhow::Ok(args.send.len() as u64 + args.bytes)
    };
    let read = async {
        let mut kept = Vec::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rx.read(&mut buf).await.context("reading the reply")?;
            if n == 0 {
                break;
            }
            total += n as u64;
            let room = KEEP_REPLY.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        anyhow::Ok((total, kept))
    };
    let (sent, (received, kept)) = tokio::try_join!(write, read)?;
    let reply = String::from_utf8_lossy(&kept).into_owned();
    if let Some(expect) = args.expect.as_ref().filter(|e| **e != reply) {
        bail!("expected reply {expect:?}, got {reply:?} ({received} bytes)");
    }
    Ok(TcpClientSummary {
        ok: true,
        sent,
        received,
        reply,
        elapsed_ms: millis_since(start),
    })
}

/// Connects and reads the banner without sending anything.
pub async fn banner_client(args: &BannerClientArgs) -> anyhow::Result<BannerClientSummary> {
    args.deadline.run("banner-client", read_banner(args)).await
}

async fn read_banner(args: &BannerClientArgs) -> anyhow::Result<BannerClientSummary> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(&args.connect)
        .await
        .with_context(|| format!("connecting to {}", args.connect))?;
    let connect_ms = millis_since(start);
    let connected = Instant::now();
    let mut line = String::new();
    BufReader::new(&mut stream)
        .read_line(&mut line)
        .await
        .context("reading the banner")?;
    let ms = millis_since(connected);
    if !line.ends_with('\n') {
        bail!("connection closed before a full banner line (got {line:?})");
    }
    let banner = line.trim_end_matches(['\r', '\n']).to_string();
    if let Some(expect) = args.expect.as_ref().filter(|e| **e != banner) {
        bail!("expected banner {expect:?}, got {banner:?}");
    }
    let _ = stream.shutdown().await;
    Ok(BannerClientSummary {
        ok: true,
        banner,
        ms,
        connect_ms,
    })
}
