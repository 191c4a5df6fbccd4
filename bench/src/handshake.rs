//! The handshake load: new connections as fast as a bounded number of
//! clients can open them, each to the server pod's inbound proxy and closed
//! straight away, either with a full mesh TLS handshake (TLS 1.3, a client
//! certificate from the in-process issuer, the server proxy's identity as
//! SNI, no resumption) or as plain TCP. It runs on threads of strand-bench
//! that enter a pod's network namespace, one tokio runtime per thread.
//!
//! ```text
//!  control pod                                 server pod
//!  N tasks: connect ─► [ClientHello ... Finished] ─► close_notify, FIN
//!           └── wait for the proxy's close (EOF) ◄── iptables ► inbound proxy
//! ```
//!
//! A connection counts once the proxy has closed its side: with TLS 1.3 the
//! client finishes its handshake before the server has checked the client's
//! certificate, so waiting for the proxy's close makes sure it did all of
//! its work (and an alert rejecting the certificate is an error). The proxy
//! then sees an empty stream (no bytes after the handshake) and passes it
//! to the app as opaque TCP, in both modes alike, so the difference between
//! the modes is the handshake. The proxy's own `tcp_open_total` is read
//! before and after, to check that it saw the connections as meant (mTLS
//! with the client's identity, or plaintext).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::scenario::control::Credentials;
use crate::stop::StopFlag;

/// What each connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A full TLS 1.3 handshake with a client certificate, then close.
    Mtls,
    /// Connect, then close.
    Tcp,
}

/// The outcome of one timed run.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// Connections completed (the proxy closed its side).
    pub connections: u64,
    /// Connections that failed or timed out.
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// From the first connect to the end of the last connection, in seconds.
    pub seconds: f64,
    /// Completed connections per second.
    pub per_second: f64,
    /// Time from connect to the proxy's close, in milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// How many connections of this kind the proxy's `tcp_open_total`
    /// counted meanwhile (`None` when its metrics could not be read); at
    /// least `connections` when the proxy saw them as meant.
    pub proxy_counted: Option<u64>,
}

/// Where and how to connect.
pub struct Client {
    /// The network namespace the connections are made from.
    netns: PathBuf,
    /// Where the connections go (redirected to the inbound proxy).
    target: SocketAddr,
    /// The SNI and the name the server's certificate must prove.
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

/// Per-thread counts, merged at the end.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

/// A connection that takes longer than this counts as an error: far above
/// a handshake's milliseconds even on a saturated machine, so only a lost
/// connection hits it.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

// === impl Mode ===

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Mtls, Mode::Tcp];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Mtls => "mtls",
            Mode::Tcp => "tcp",
        }
    }
}

// === impl Client ===

impl Client {
    /// A client in the namespace at `netns` that proves `credentials` and
    /// expects `server_identity`, verified against `trust_anchors` (PEM),
    /// with the mesh's TLS settings (the proxies' crypto provider, TLS 1.3).
    pub fn new(
        netns: PathBuf,
        target: SocketAddr,
        server_identity: &str,
        trust_anchors: &str,
        credentials: Credentials,
    ) -> anyhow::Result<Client> {
        let mut roots = RootCertStore::empty();
        let anchors = strand_identity::parse_pem_certs(trust_anchors.as_bytes())
            .map_err(|e| anyhow!("the trust anchors: {e}"))?;
        for anchor in anchors {
            roots.add(anchor).context("adding a trust anchor")?;
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the mesh's provider")?
            .with_root_certificates(roots)
            .with_client_auth_cert(credentials.chain, credentials.key)
            .context("the client certificate")?;
        // Every connection a full handshake (the proxies neither resume nor
        // send tickets, but do not rely on it).
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(server_identity.to_string())
            .with_context(|| format!("{server_identity:?} is not a DNS-like name"))?;
        Ok(Client {
            netns,
            target,
            server_name,
            config: Arc::new(config),
        })
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Opens connections with `concurrency` at a time for `duration` (no new
    /// ones after it; those under way finish), spread over one thread per
    /// core. Fails when no connection completed.
    pub fn run(
        &self,
        mode: Mode,
        concurrency: u32,
        duration: Duration,
        stop: &StopFlag,
    ) -> anyhow::Result<Rate> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = u32::try_from(cores)
            .unwrap_or(1)
            .clamp(1, concurrency.max(1));
        let start = Instant::now();
        let deadline = start + duration;
        let tallies: Vec<anyhow::Result<Tally>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    // Spread the tasks evenly: the first threads get one
                    // more when they do not divide.
                    let tasks = concurrency / threads + u32::from(i < concurrency % threads);
                    std::thread::Builder::new()
                        .name(format!("handshake-{i}"))
                        .spawn_scoped(scope, move || self.thread(mode, tasks, deadline, stop))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("a handshake thread panicked"))),
                    Err(e) => Err(anyhow!("starting a handshake thread: {e}")),
                })
                .collect()
        });
        let seconds = start.elapsed().as_secs_f64();
        let mut all = Tally::default();
        for tally in tallies {
            let tally = tally?;
            all.ok += tally.ok;
            all.latencies.extend(tally.latencies);
            for (kind, n) in tally.errors {
                *all.errors.entry(kind).or_default() += n;
            }
        }
        if all.ok == 0 {
            anyhow::bail!("no connection completed; errors: {:?}", all.errors);
        }
        all.latencies.sort_unstable();
        let percentile = |q: f64| {
            let n = all.latencies.len();
            // Nearest rank, as oha reports.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            all.latencies
                .get(rank - 1)
                .map(|d| d.as_secs_f64() * 1000.0)
        };
        Ok(Rate {
            connections: all.ok,
            errors: all.errors.values().sum(),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            error_kinds: all.errors,
            seconds,
            per_second: all.ok as f64 / seconds,
            proxy_counted: None,
        })
    }

    /// One thread: enters the namespace and runs `tasks` connection loops.
    fn thread(
        &self,
        mode: Mode,
        tasks: u32,
        deadline: Instant,
        stop: &StopFlag,
    ) -> anyhow::Result<Tally> {
        strand_sys::enter_netns(&self.netns)
            .with_context(|| format!("entering network namespace {}", self.netns.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a runtime for the handshake load")?;
        rt.block_on(async {
            let mut set = JoinSet::new();
            for _ in 0..tasks {
                let connector = tokio_rustls::TlsConnector::from(self.config.clone());
                let (target, name, stop) = (self.target, self.server_name.clone(), stop.clone());
                set.spawn(async move {
                    let mut tally = Tally::default();
                    while Instant::now() < deadline && !stop.is_set() {
                        let began = Instant::now();
                        let once = connect_once(mode, target, &connector, &name);
                        match tokio::time::timeout(CONNECTION_TIMEOUT, once).await {
                            Ok(Ok(())) => {
                                tally.ok += 1;
                                tally.latencies.push(began.elapsed());
                            }
                            Ok(Err(e)) => *tally.errors.entry(e.to_string()).or_default() += 1,
                            Err(_) => *tally.errors.entry("timed out".into()).or_default() += 1,
                        }
                    }
                    tally
                });
            }
            let mut all = Tally::default();
            while let Some(done) = set.join_next().await {
                let tally = done.map_err(|e| anyhow!("a handshake task failed: {e}"))?;
                all.ok += tally.ok;
                all.latencies.extend(tally.latencies);
                for (kind, n) in tally.errors {
                    *all.errors.entry(kind).or_default() += n;
                }
            }
            Ok(all)
        })
    }
}

/// One connection: connect, (handshake,) close our side, wait for the
/// proxy to close its side.
async fn connect_once(
    mode: Mode,
    target: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    name: &ServerName<'static>,
) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut buf = [0u8; 512];
    match mode {
        Mode::Tcp => {
            tcp.shutdown().await?;
            while tcp.read(&mut buf).await? > 0 {}
        }
        Mode::Mtls => {
            let mut tls = connector.connect(name.clone(), tcp).await?;
            // close_notify, then FIN.
            tls.shutdown().await?;
            // Read through TLS, so that an alert (a rejected certificate)
            // is an error. The proxy may close without a close_notify of
            // its own once the empty stream behind it ended.
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// The label fragments of the server proxy's `tcp_open_total` series that
/// count the connections of `mode` from a client proving `client_identity`.
pub fn proxy_counter_labels(mode: Mode, client_identity: &str) -> Vec<String> {
    let mut labels = vec![
        r#"direction="inbound""#.to_string(),
        r#"peer="src""#.to_string(),
    ];
    match mode {
        Mode::Mtls => {
            labels.push(r#"tls="true""#.to_string());
            labels.push(format!(r#"client_id="{client_identity}""#));
        }
        Mode::Tcp => labels.push(r#"tls="no_identity""#.to_string()),
    }
    labels
}

/// The sum of every sample of `name` whose line has all of `labels`, in
/// Prometheus' text format.
pub fn sum_counter(text: &str, name: &str, labels: &[String]) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The proxies' mesh TLS provider: aws-lc-rs with the hybrid post-quantum
/// key exchange first (see strand-proxy's `identity::tls::provider`), so the
/// handshake costs what one between two proxies does.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    let mut p = aws_lc_rs::default_provider();
    p.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
    ];
    Arc::new(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE tcp_open counter
tcp_open_total{direction="inbound",peer="src",target_addr="198.18.0.3:8080",tls="true",client_id="a.default"} 7
tcp_open_total{direction="inbound",peer="src",target_addr="198.18.0.3:9090",tls="true",client_id="a.default"} 3
tcp_open_total{direction="inbound",peer="src",target_addr="198.18.0.3:8080",tls="true",client_id="b.default"} 100
tcp_open_total{direction="inbound",peer="dst",target_addr="198.18.0.3:8080",tls="true",client_id="a.default"} 50
tcp_open_total{direction="inbound",peer="src",target_addr="198.18.0.3:8080",tls="no_identity",no_tls_reason="no_tls_from_remote"} 5
tcp_open_totalx{direction="inbound",peer="src",tls="no_identity"} 1000
"#;

    #[test]
    fn counts_the_proxys_connections_by_kind() {
        let mtls = proxy_counter_labels(Mode::Mtls, "a.default");
        assert_eq!(sum_counter(METRICS, "tcp_open_total", &mtls), 10);
        let tcp = proxy_counter_labels(Mode::Tcp, "a.default");
        assert_eq!(sum_counter(METRICS, "tcp_open_total", &tcp), 5);
        assert_eq!(sum_counter("", "tcp_open_total", &tcp), 0);
    }
}
