//! Helpers shared by the in-process test binaries: the real proxy on
//! 127.0.0.1 with its original destination injected, hyper clients, and
//! reading its metrics.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use strand_proxy::orig_dst::FixedOrigDst;
use strand_proxy::{Config, Proxy};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct TestProxy {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start_proxy(target: SocketAddr, env: &[(&str, &str)]) -> TestProxy {
    start_proxy_on(target, env, Vec::new()).await
}

/// A proxy whose connections are spread over the current runtime and
/// `workers`.
pub async fn start_proxy_on(
    target: SocketAddr,
    env: &[(&str, &str)],
    workers: Vec<tokio::runtime::Handle>,
) -> TestProxy {
    let mut vars: std::collections::HashMap<&str, &str> = [
        ("STRAND_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0"),
        ("STRAND_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0"),
        ("STRAND_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
        ("STRAND_PROXY_SHUTDOWN_GRACE_PERIOD", "5s"),
    ]
    .into_iter()
    .collect();
    vars.extend(env.iter().copied());
    let config = Config::from_env(&vars).expect("valid test config");
    let bound = Proxy::new(config)
        .with_orig_dst(FixedOrigDst(target))
        .allow_loopback_targets(true)
        .bind()
        .await
        .expect("binds");
    TestProxy {
        outbound: bound.outbound_addr(),
        inbound: bound.inbound_addr(),
        admin: bound.admin_addr(),
        shutdown: bound.shutdown_token(),
        task: tokio::spawn(async move { bound.run_on(&workers).await }),
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

pub async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    tx
}

pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

pub fn get(uri: &str) -> Request<TestBody> {
    Request::get(uri)
        .header("host", "web.test:8080")
        .body(full(""))
        .unwrap()
}

pub async fn metrics(admin: SocketAddr) -> String {
    let mut tx = h1_client(admin).await;
    let rsp = tx.send_request(get("/metrics")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The value of the first sample line that starts with `prefix` and
/// contains every fragment in `with`.
pub fn sample(text: &str, prefix: &str, with: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && with.iter().all(|w| l.contains(w)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
