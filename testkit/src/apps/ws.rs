//! `strand-testapp ws` and `ws-client`: a WebSocket echo server and a client
//! that checks every echo, for testing HTTP/1.1 upgrades through a proxy.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::{Deadline, accept, bind_and_announce, millis_since};

/// `strand-testapp ws` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct WsArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
}

/// `strand-testapp ws-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct WsClientArgs {
    /// `ws://HOST:PORT/PATH` to connect to.
    #[arg(long)]
    pub url: String,
    /// Text messages to send, each checked against its echo.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// What `ws-client` prints.
#[derive(Clone, Debug, Serialize)]
pub struct WsClientSummary {
    /// Messages whose echo matched.
    pub ok: u32,
    /// Messages sent.
    pub sent: u32,
    /// Echoes received.
    pub received: u32,
    /// Wall time of the whole run, in milliseconds.
    pub elapsed_ms: u64,
}

/// Binds, announces and serves until killed.
pub async fn main(args: WsArgs) -> anyhow::Result<()> {
    let listener = bind_and_announce(args.listen).await?;
    serve(listener).await
}

/// Serves WebSocket echo on `listener`.
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = accept(&listener).await;
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                tracing::debug!(%peer, "websocket ended: {e:#}");
            }
        });
    }
}

async fn echo(stream: TcpStream) -> anyhow::Result<()> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
            // tungstenite answers pings and close frames itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => break,
        }
    }
    Ok(())
}

/// Sends the messages and checks the echoes.
pub async fn run(args: &WsClientArgs) -> anyhow::Result<WsClientSummary> {
    args.deadline.run("ws-client", exchange(args)).await
}

async fn exchange(args: &WsClientArgs) -> anyhow::Result<WsClientSummary> {
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(args.url.as_str())
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let mut received = 0;
    for i in 0..args.count {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await?;
        let reply = loop {
            match ws
                .next()
                .await
                .context("connection closed before the echo")??
            {
                Message::Text(reply) => break reply,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => bail!("expected the echo of {text:?}, got {other:?}"),
            }
        };
        if reply.as_str() != text {
            bail!("sent {text:?}, got back {:?}", reply.as_str());
        }
        received += 1;
    }
    ws.close(None).await?;
    // Drain until the server acknowledges the close.
    while let Some(Ok(_)) = ws.next().await {}
    Ok(WsClientSummary {
        ok: received,
        sent: args.count,
        received,
        elapsed_ms: millis_since(start),
    })
}
