//! `strand-testapp grpc` and `grpc-client`: the Echo service over HTTP/2,
//! for testing gRPC routing, streaming in both directions and status
//! classification (a message `fail:<code>` produces that status).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

use super::echo::{
    Echo, EchoClient, EchoRequest, EchoResponse, EchoServer, EchoStream, TRAILERS_ONLY,
};
use super::{Deadline, bind_and_announce, millis_since};

/// `strand-testapp grpc` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct GrpcArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Sent back in the `x-served-by` response metadata (default: the
    /// pod's name from `POD_NAME`, as `strand run` sets it).
    #[arg(long, env = "POD_NAME", default_value = "testapp")]
    pub name: String,
    /// Delay every unary answer by this many milliseconds (a slow replica).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

/// `strand-testapp grpc-client` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct GrpcClientArgs {
    /// Server to call, `http://HOST:PORT`.
    #[arg(long)]
    pub target: String,
    /// Which method to call.
    #[arg(value_enum)]
    pub call: Call,
    /// unary: calls made; server-stream: replies asked for; client-stream and
    /// bidi: messages sent.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Message to send: `fail:<code>` makes the server answer that status
    /// in trailers, `trailers-only:<code>` in a trailers-only response.
    #[arg(long, default_value = "hello")]
    pub message: String,
    /// Succeed only if the call ends with this gRPC status code.
    #[arg(long, default_value_t = 0)]
    pub expect_code: i32,
    /// unary: pace calls at this many per second (0: back to back).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    #[command(flatten)]
    pub deadline: Deadline,
}

/// The Echo methods.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    /// `Unary`, `--count` times.
    Unary,
    /// `ServerStream`, asking for `--count` replies.
    ServerStream,
    /// `ClientStream`, sending `--count` messages.
    ClientStream,
    /// `Bidi`, sending `--count` messages one echo at a time.
    Bidi,
}

/// What `grpc-client` prints.
#[derive(Clone, Debug, Serialize)]
pub struct GrpcClientSummary {
    /// Calls that ended with the expected status.
    pub ok: u32,
    /// Calls made: `--count` for unary, otherwise 1.
    pub calls: u32,
    /// The method called.
    pub call: Call,
    /// Replies received.
    pub received: u32,
    /// The final gRPC status code (0 = OK).
    pub status: i32,
    /// The status message, empty on success.
    pub status_message: String,
    /// The server's `x-served-by` metadata, if any.
    pub served_by: Option<String>,
    /// Calls answered per `x-served-by` value.
    pub served_by_counts: BTreeMap<String, u32>,
    /// Wall time of the whole run, in milliseconds.
    pub elapsed_ms: u64,
}

/// The testapp's [`Echo`] behaviour.
#[derive(Clone, Debug)]
pub struct EchoService {
    served_by: MetadataValue<Ascii>,
    delay: Duration,
}

/// Binds, announces and serves until killed.
pub async fn main(args: GrpcArgs) -> anyhow::Result<()> {
    let listener = bind_and_announce(args.listen).await?;
    let svc = EchoService::new(&args.name)?.with_delay(Duration::from_millis(args.delay_ms));
    serve_service(listener, svc).await
}

/// Serves the Echo service on `listener`.
pub async fn serve(listener: TcpListener, name: &str) -> anyhow::Result<()> {
    serve_service(listener, EchoService::new(name)?).await
}

async fn serve_service(listener: TcpListener, svc: EchoService) -> anyhow::Result<()> {
    let svc = EchoServer::new(svc);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming(svc, incoming)
        .await?;
    Ok(())
}

/// Runs the call and returns the summary; an error if the status was not
/// the expected one.
pub async fn run(args: &GrpcClientArgs) -> anyhow::Result<GrpcClientSummary> {
    args.deadline.run("grpc-client", call(args)).await
}

async fn call(args: &GrpcClientArgs) -> anyhow::Result<GrpcClientSummary> {
    let start = Instant::now();
    let mut client = EchoClient::connect(args.target.clone())
        .await
        .with_context(|| format!("connecting to {}", args.target))?;
    let calls = if args.call == Call::Unary {
        args.count
    } else {
        1
    };
    let mut tally = Tally::default();
    let mut ok = 0;
    let mut status = Status::ok("");
    let pace = (args.rate > 0 && args.call == Call::Unary)
        .then(|| Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut next = tokio::time::Instant::now();
    for _ in 0..calls {
        if let Some(pace) = pace {
            tokio::time::sleep_until(next).await;
            next += pace;
        }
        let result = match args.call {
            Call::Unary => unary(&mut client, args, &mut tally).await,
            Call::ServerStream => server_stream(&mut client, args, &mut tally).await,
            Call::ClientStream => client_stream(&mut client, args, &mut tally).await,
            Call::Bidi => bidi(&mut client, args, &mut tally).await,
        };
        status = result.err().unwrap_or_else(|| Status::ok(""));
        if status.code() as i32 != args.expect_code {
            break;
        }
        ok += 1;
    }
    let summary = GrpcClientSummary {
        ok,
        calls,
        call: args.call,
        received: tally.received,
        status: status.code() as i32,
        status_message: status.message().to_string(),
        served_by: tally.served_by,
        served_by_counts: tally.counts,
        elapsed_ms: millis_since(start),
    };
    if summary.ok != calls {
        bail!(
            "expected gRPC status {}: {}",
            args.expect_code,
            serde_json::to_string(&summary)?
        );
    }
    Ok(summary)
}

/// What the client has seen so far, kept even when the call fails.
#[derive(Default)]
struct Tally {
    received: u32,
    served_by: Option<String>,
    counts: BTreeMap<String, u32>,
}

impl Tally {
    fn note<T>(&mut self, rsp: &Response<T>) {
        if let Some(by) = rsp
            .metadata()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
        {
            self.served_by = Some(by.to_string());
            *self.counts.entry(by.to_string()).or_default() += 1;
        }
    }
}

fn request(args: &GrpcClientArgs, count: u32) -> EchoRequest {
    EchoRequest {
        message: args.message.clone(),
        count,
    }
}

type Client = EchoClient<tonic::transport::Channel>;

async fn unary(
    client: &mut Client,
    args: &GrpcClientArgs,
    tally: &mut Tally,
) -> Result<(), Status> {
    let rsp = client.unary(request(args, 0)).await?;
    tally.note(&rsp);
    expect_echo(&args.message, &rsp.into_inner())?;
    tally.received += 1;
    Ok(())
}

async fn server_stream(
    client: &mut Client,
    args: &GrpcClientArgs,
    tally: &mut Tally,
) -> Result<(), Status> {
    let rsp = client.server_stream(request(args, args.count)).await?;
    tally.note(&rsp);
    let mut replies = rsp.into_inner();
    while let Some(reply) = replies.message().await? {
        expect_echo(&args.message, &reply)?;
        tally.received += 1;
    }
    if tally.received != args.count {
        return Err(Status::data_loss(format!(
            "{} of {} replies",
            tally.received, args.count
        )));
    }
    Ok(())
}

async fn client_stream(
    client: &mut Client,
    args: &GrpcClientArgs,
    tally: &mut Tally,
) -> Result<(), Status> {
    let messages: Vec<EchoRequest> = (0..args.count).map(|i| request(args, i)).collect();
    let rsp = client
        .client_stream(futures_util::stream::iter(messages))
        .await?;
    tally.note(&rsp);
    tally.received += 1;
    let reply = rsp.into_inner();
    if reply.count != args.count {
        return Err(Status::data_loss(format!(
            "server counted {} of {}",
            reply.count, args.count
        )));
    }
    Ok(())
}

/// Sends one message at a time and waits for its echo, so a proxy that
/// buffered the request stream would make this time out.
async fn bidi(client: &mut Client, args: &GrpcClientArgs, tally: &mut Tally) -> Result<(), Status> {
    let (tx, rx) = mpsc::channel(1);
    let rsp = client.bidi(ReceiverStream::new(rx)).await?;
    tally.note(&rsp);
    let mut replies = rsp.into_inner();
    for i in 0..args.count {
        if tx.send(request(args, i)).await.is_err() {
            break;
        }
        let reply = replies
            .message()
            .await?
            .ok_or_else(|| Status::data_loss(format!("stream ended after {i} replies")))?;
        expect_echo(&args.message, &reply)?;
        tally.received += 1;
    }
    drop(tx);
    while replies.message().await?.is_some() {
        tally.received += 1;
    }
    Ok(())
}

fn expect_echo(sent: &str, reply: &EchoResponse) -> Result<(), Status> {
    if reply.message == sent {
        Ok(())
    } else {
        Err(Status::data_loss(format!(
            "sent {sent:?}, got back {:?}",
            reply.message
        )))
    }
}

/// The status a `fail:<code>` or `trailers-only:<code>` message asks for;
/// the latter is marked for a trailers-only response.
fn requested_failure(message: &str) -> Option<Status> {
    let (trailers_only, code) = match message.strip_prefix("trailers-only:") {
        Some(code) => (true, code),
        None => (false, message.strip_prefix("fail:")?),
    };
    let code: i32 = code.trim().parse().ok()?;
    let mut status = Status::new(
        Code::from(code),
        format!("failure requested by {message:?}"),
    );
    if trailers_only {
        status
            .metadata_mut()
            .insert(TRAILERS_ONLY, MetadataValue::from_static("1"));
    }
    Some(status)
}

fn is_trailers_only(status: &Status) -> bool {
    status.metadata().contains_key(TRAILERS_ONLY)
}

// === impl EchoService ===

impl EchoService {
    /// An Echo service that tags responses with `x-served-by: name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let served_by = name
            .parse()
            .map_err(|_| anyhow::anyhow!("--name {name:?} is not valid gRPC metadata"))?;
        Ok(Self {
            served_by,
            delay: Duration::ZERO,
        })
    }

    /// Answers unary calls only after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn respond<T>(&self, msg: T) -> Response<T> {
        let mut rsp = Response::new(msg);
        rsp.metadata_mut()
            .insert("x-served-by", self.served_by.clone());
        rsp
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    /// Fails as `fail:<code>` or `trailers-only:<code>` asks.
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let msg = req.into_inner();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(status) = requested_failure(&msg.message) {
            return Err(status);
        }
        Ok(self.respond(EchoResponse {
            message: msg.message,
            count: 1,
        }))
    }

    /// Sends `count` replies; `fail:<code>` then ends with that status in
    /// the trailers, `trailers-only:<code>` answers with the status alone.
    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<EchoStream>, Status> {
        let msg = req.into_inner();
        let failure = requested_failure(&msg.message);
        if let Some(status) = failure.as_ref().filter(|s| is_trailers_only(s)) {
            return Err(status.clone());
        }
        let failure = failure.map(Err);
        let replies = (0..msg.count).map(move |i| {
            Ok(EchoResponse {
                message: msg.message.clone(),
                count: i,
            })
        });
        let stream = futures_util::stream::iter(replies.chain(failure));
        Ok(self.respond(stream.boxed()))
    }

    /// Replies with how many messages arrived, or the status of the first
    /// `fail:<code>` message.
    async fn client_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        let mut inbound = req.into_inner();
        let mut reply = EchoResponse::default();
        while let Some(msg) = inbound.message().await? {
            if let Some(status) = requested_failure(&msg.message) {
                return Err(status);
            }
            reply.count += 1;
            reply.message = msg.message;
        }
        Ok(self.respond(reply))
    }

    /// Echoes each message as it arrives; a `fail:<code>` (or, as the
    /// headers are already sent, `trailers-only:<code>`) message ends the
    /// stream with that status in the trailers.
    async fn bidi(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoStream>, Status> {
        let inbound = req.into_inner();
        let stream = futures_util::stream::unfold(Some((inbound, 0u32)), |state| async move {
            let (mut inbound, n) = state?;
            match inbound.message().await {
                Ok(Some(msg)) => match requested_failure(&msg.message) {
                    Some(status) => Some((Err(status), None)),
                    None => Some((
                        Ok(EchoResponse {
                            message: msg.message,
                            count: n,
                        }),
                        Some((inbound, n + 1)),
                    )),
                },
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(self.respond(stream.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_requests() {
        let status = requested_failure("fail:14").expect("a failure");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!is_trailers_only(&status));
        let status = requested_failure("trailers-only:13").expect("a failure");
        assert_eq!(status.code(), Code::Internal);
        assert!(is_trailers_only(&status));
        assert!(requested_failure("fail:x").is_none());
        assert!(requested_failure("hello").is_none());
    }
}
