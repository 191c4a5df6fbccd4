//! The load generators and their command lines: `oha` at a fixed rate for
//! latency, `wrk` (HTTP/1.1) and `h2load` (HTTP/2, gRPC) at saturation for
//! throughput. Building argument lists is pure so it can be tested; running
//! them is [`measure`](crate::measure)'s job, reading their output is
//! [`parse`]'s.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub mod parse;

#[cfg(test)]
mod tests;

pub use parse::{FixedRate, Saturation};

/// A protocol the load generators speak to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 `GET /`.
    Http1,
    /// HTTP/2 with prior knowledge, `GET /`.
    Http2,
    /// gRPC unary `strand.test.Echo/Unary`.
    Grpc,
}

/// A saturation load generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SaturationTool {
    Wrk,
    H2load,
}

/// What the generators send to, in the server pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

/// The message in every gRPC request: short, as in a typical unary call.
pub const GRPC_MESSAGE: &str = "strand-bench";

/// The gRPC method the generators call.
const GRPC_PATH: &str = "/strand.test.Echo/Unary";

/// Streams per HTTP/2 connection at saturation: with 100 connections that is
/// 1,000 requests in flight, enough to keep a 2-core proxy busy without the
/// queueing of far larger values dominating the latency of every request.
const H2LOAD_STREAMS: u32 = 10;

/// A request that takes longer than this counts as an error rather than
/// stretching a measurement past its duration.
const REQUEST_TIMEOUT: &str = "5s";

// === impl Protocol ===

impl Protocol {
    /// Every protocol, in the order of the table.
    pub const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Grpc];

    /// The name used on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::Http1 | Protocol::Http2 => "/",
            Protocol::Grpc => GRPC_PATH,
        }
    }

    /// Which tool measures this protocol at saturation.
    pub fn saturation_tool(self) -> SaturationTool {
        match self {
            Protocol::Http1 => SaturationTool::Wrk,
            Protocol::Http2 | Protocol::Grpc => SaturationTool::H2load,
        }
    }
}

// === impl Target ===

impl Target {
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.protocol.path())
    }
}

/// The body of every gRPC request: the 5-byte gRPC frame header (not
/// compressed, big-endian length) and an `EchoRequest` whose field 1
/// (`message`, a string) is [`GRPC_MESSAGE`].
pub fn grpc_body() -> Vec<u8> {
    let message = GRPC_MESSAGE.as_bytes();
    // Field 1, wire type 2 (length-delimited); the message is far below 128
    // bytes, so its length is a single varint byte.
    let len = u8::try_from(message.len()).expect("the gRPC message is under 128 bytes");
    let mut proto = vec![0x0a, len];
    proto.extend_from_slice(message);
    let frame_len = u32::try_from(proto.len()).expect("a few bytes fit in u32");
    let mut body = vec![0];
    body.extend_from_slice(&frame_len.to_be_bytes());
    body.extend_from_slice(&proto);
    body
}

/// `oha` arguments for `rate` requests per second over `connections`
/// connections for `duration`, with JSON output on stdout.
///
/// `--latency-correction` measures each latency from the moment the request
/// was due rather than sent, so a stall is not hidden by the requests it
/// delayed (coordinated omission).
pub fn oha_args(
    target: &Target,
    rate: u32,
    connections: u32,
    duration: Duration,
    grpc_body: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-tui",
        "--output-format",
        "json",
        "--latency-correction",
        "-t",
        REQUEST_TIMEOUT,
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "-q".to_string(),
        rate.to_string(),
        "-c".to_string(),
        connections.to_string(),
        "-z".to_string(),
        format!("{}ms", duration.as_millis()),
    ]);
    match target.protocol {
        // Without -w, HTTP/1 requests in flight at the deadline are counted as
        // errors ("aborted due to deadline"); HTTP/2 always waits for them.
        Protocol::Http1 => args.push("-w".to_string()),
        Protocol::Http2 => args.push("--http2".to_string()),
        Protocol::Grpc => {
            args.push("--http2".to_string());
            args.extend(["-m", "POST", "-D"].map(String::from));
            args.push(grpc_body.display().to_string());
            args.extend(grpc_headers());
        }
    }
    args.push(target.url());
    args
}

/// Saturation arguments: `wrk` for HTTP/1.1, `h2load` for HTTP/2 and gRPC,
/// with `threads` client threads.
pub fn saturation_args(
    target: &Target,
    connections: u32,
    duration: Duration,
    threads: u32,
    grpc_body: &Path,
) -> Vec<String> {
    // Both tools take whole seconds.
    let secs = duration.as_secs().max(1).to_string();
    let threads = threads.clamp(1, connections).to_string();
    let connections = connections.to_string();
    let mut args: Vec<String> = match target.protocol.saturation_tool() {
        SaturationTool::Wrk => vec![
            "-t".into(),
            threads,
            "-c".into(),
            connections,
            "-d".into(),
            format!("{secs}s"),
            "--timeout".into(),
            REQUEST_TIMEOUT.into(),
        ],
        SaturationTool::H2load => vec![
            "-t".into(),
            threads,
            "-c".into(),
            connections,
            "-m".into(),
            H2LOAD_STREAMS.to_string(),
            "-D".into(),
            secs,
        ],
    };
    if target.protocol == Protocol::Grpc {
        args.push("-d".into());
        args.push(grpc_body.display().to_string());
        args.extend(grpc_headers());
    }
    args.push(target.url());
    args
}

fn grpc_headers() -> [String; 4] {
    ["-H", "content-type: application/grpc", "-H", "te: trailers"].map(String::from)
}
