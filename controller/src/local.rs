//! `strand-controller local`: the all-in-one local-mode control plane.
//!
//! ```text
//!  Store (state dir) ──watch──▶ Index ──▶ gRPC destination/policy  (gateway:8086, :8090)
//!     ▲   │                       └────▶ DNS  (gateway:53)
//!     │   └─ pods ──▶ identity, TLS (gateway:8080) ◀── <state-dir>/identity/ CA files
//!  management API (127.0.0.1:8089) ◀── strand apply / run / get; pod tokens
//!  admin (127.0.0.1:9990): /metrics /ready /live
//!  metrics API (127.0.0.1:8085) ◀── strand viz; scrapes <pod-ip>:4191/metrics
//!       └── traces ◀── trace collector, OTLP/gRPC (gateway:4317) ◀── proxies' spans
//! ```

use anyhow::{Context as _, bail};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::{DiscoverServices, Kind, LocalCluster, Resource, TrustDomain};
use strand_controller_dns as dns;
use strand_controller_index::Index;
use strand_controller_local::{Cidr, Store, StoreConfig};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Where the store, the admin token and cluster.json live.
    #[arg(long, env = "STRAND_STATE_DIR", default_value = "/var/lib/strand")]
    state_dir: PathBuf,
    /// Names the pods' network namespaces (`<name>_<namespace>_<pod>`).
    #[arg(long, default_value = "strand")]
    cluster_name: String,
    /// Pod addresses; the first host address goes to the bridge.
    #[arg(long, default_value = "10.42.0.0/16")]
    pod_cidr: String,
    /// Services' virtual IPs.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// The bridge pods plug into (created if missing, kept at exit so
    /// running pods keep talking to each other).
    #[arg(long, default_value = "strand0")]
    bridge: String,
    /// The management API; loopback only.
    #[arg(long, default_value = "127.0.0.1:8089")]
    api_addr: SocketAddr,
    /// The destination and outbound-policy gRPC port on the bridge address.
    #[arg(long, default_value_t = 8086)]
    destination_port: u16,
    /// The inbound-policy gRPC port on the bridge address.
    #[arg(long, default_value_t = 8090)]
    policy_port: u16,
    /// The identity service's port on the bridge address (TLS). Its CA files
    /// are in <state-dir>/identity, made at first start if missing.
    #[arg(long, default_value_t = 8080)]
    identity_port: u16,
    /// How long workload certificates are valid: `60s`, `90m`, `24h`, `7d`
    /// (never past the issuer's own expiry).
    #[arg(long, default_value = "24h", value_parser = crate::identity::parse_duration)]
    cert_lifetime: Duration,
    /// `/metrics` (the identity service's), `/ready` and `/live`.
    #[arg(long, default_value = "127.0.0.1:9990")]
    admin_addr: SocketAddr,
    /// The metrics API (`strand viz`); it scrapes every meshed proxy.
    #[arg(long, default_value = "127.0.0.1:8085")]
    metrics_api_addr: SocketAddr,
    /// The trace collector's port on the bridge address: OpenTelemetry's
    /// OTLP/gRPC `TraceService/Export` (4317 is OTLP/gRPC's own port).
    /// Proxies send their spans here; `strand viz trace` shows them.
    #[arg(long, default_value_t = 4317)]
    trace_collector_port: u16,
    /// How many spans the trace collector keeps in memory (at least 1);
    /// past it, the traces that received a span longest ago are dropped
    /// whole.
    #[arg(long, default_value_t = strand_viz::traces::DEFAULT_MAX_SPANS)]
    trace_max_spans: usize,
    #[command(flatten)]
    scrape: crate::metrics::ScrapeArgs,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Resolver configuration whose nameservers answer names outside the
    /// cluster domain.
    #[arg(long, default_value = "/etc/resolv.conf")]
    upstream_resolv_conf: PathBuf,
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if !strand_sys::is_root() {
        bail!(
            "`strand-controller local` needs root: it creates the bridge {} (CAP_NET_ADMIN) and serves DNS on port 53 (CAP_NET_BIND_SERVICE); run it with sudo",
            args.bridge
        );
    }
    let pod_cidr: Cidr = args.pod_cidr.parse().context("--pod-cidr")?;
    let service_cidr: Cidr = args.service_cidr.parse().context("--service-cidr")?;
    let IpAddr::V4(gateway) = pod_cidr.gateway() else {
        bail!("--pod-cidr must be IPv4 for now, not {}", args.pod_cidr);
    };
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;

    let mut config = StoreConfig::new(&args.state_dir);
    config.pod_cidr = pod_cidr;
    config.service_cidr = service_cidr;
    let store = Store::open(config)
        .await
        .with_context(|| format!("opening the store in {}", args.state_dir.display()))?;
    let index = Index::new(&args.cluster_domain, TrustDomain::default());
    let feeding = tokio::spawn(crate::feed::feed(
        Arc::clone(&index),
        store.watch().into_stream(),
    ));

    {
        let bridge = args.bridge.clone();
        let prefix = pod_cidr.prefix_len();
        tokio::task::spawn_blocking(move || {
            strand_sys::net::ensure_bridge(&bridge, gateway, prefix)
        })
        .await?
        .with_context(|| format!("setting up bridge {}", args.bridge))?;
    }

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // Discovery gRPC.
    let discovery = strand_controller_grpc::Discovery::new(Arc::clone(&index));
    let destination_addr = SocketAddr::new(IpAddr::V4(gateway), args.destination_port);
    let policy_addr = SocketAddr::new(IpAddr::V4(gateway), args.policy_port);
    for addr in dedup([destination_addr, policy_addr]) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the gRPC server to {addr}"))?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let routes = discovery.routes();
        let (d, stop) = (discovery.clone(), shutdown.clone());
        tasks.spawn(async move {
            let res = strand_controller_grpc::server()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    stop.cancelled().await;
                    d.shutdown();
                })
                .await;
            res.map_err(|e| anyhow::anyhow!("gRPC server {addr}: {e}"))
        });
    }

    // DNS.
    let upstreams = std::fs::read_to_string(&args.upstream_resolv_conf)
        .map(|t| dns::upstreams_from_resolv_conf(&t))
        .unwrap_or_default();
    let dns_addr = SocketAddr::new(IpAddr::V4(gateway), 53);
    let dns_config = dns::Config {
        zone: args
            .cluster_domain
            .parse()
            .context("--cluster-domain is not a valid DNS zone")?,
        upstreams,
        ..dns::Config::default()
    };
    let records = Arc::new(IndexRecords {
        index: Arc::clone(&index),
    });
    let dns_server = dns::Server::bind(dns_addr, dns_config, records)
        .await
        .with_context(|| format!("binding DNS to {dns_addr}"))?;
    {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            dns_server.run(stop.cancelled_owned()).await;
            Ok(())
        });
    }

    // Identity, and the admin endpoint with its metrics.
    let (identity, identity_addr, admin_addr) =
        start_identity(&args, store.clone(), gateway, &mut tasks, &shutdown).await?;

    // Pods whose process is gone (their `strand run` was killed).
    {
        let (store, stop) = (store.clone(), shutdown.clone());
        let state_dir = args.state_dir.clone();
        let (name, bridge, gateway, prefix) = (
            args.cluster_name.clone(),
            args.bridge.clone(),
            gateway,
            pod_cidr.prefix_len(),
        );
        tasks.spawn(async move {
            let network =
                move |ns: &str, pod: &str, ip: std::net::Ipv4Addr| strand_sys::net::PodNetwork {
                    netns: format!("{name}_{ns}_{pod}"),
                    host_veth: LocalCluster::host_veth(ip),
                    bridge: bridge.clone(),
                    addr: ip,
                    prefix_len: prefix,
                    gateway,
                };
            tokio::select! {
                _ = reap_orphans(store, &state_dir, network) => {}
                _ = stop.cancelled() => {}
            }
            Ok(())
        });
    }

    // Management API.
    let token = strand_controller_local::AdminToken::load_or_create(&args.state_dir)
        .context("preparing the admin token")?;
    let api = strand_controller_local::ApiServer::bind(args.api_addr, store.clone(), token)
        .await
        .with_context(|| format!("binding the management API to {}", args.api_addr))?
        .with_token_minter(identity.minter());
    let api_addr = api.local_addr();
    {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            api.run(stop).await;
            Ok(())
        });
    }

    // Trace collector: proxies export spans over OTLP/gRPC on the bridge
    // address, like their other control-plane calls.
    let traces = Arc::new(strand_viz::TraceStore::new(
        strand_viz::traces::TraceLimits {
            max_spans: args.trace_max_spans,
            ..Default::default()
        },
    ));
    let trace_collector_addr = crate::metrics::start_trace_collector(
        SocketAddr::new(IpAddr::V4(gateway), args.trace_collector_port),
        Arc::clone(&traces),
        &mut tasks,
        &shutdown,
    )
    .await?;

    // Metrics API.
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_api_addr)
        .await
        .with_context(|| format!("binding the metrics API to {}", args.metrics_api_addr))?;
    let metrics_api_addr = crate::metrics::start_local(
        store.clone(),
        metrics_listener,
        traces,
        &args.scrape,
        &mut tasks,
        &shutdown,
    )?;

    let cluster = LocalCluster {
        name: args.cluster_name.clone(),
        pid: std::process::id(),
        bridge: args.bridge.clone(),
        gateway,
        pod_cidr: args.pod_cidr.clone(),
        pod_prefix_len: pod_cidr.prefix_len(),
        service_cidr: args.service_cidr.clone(),
        cluster_domain: args.cluster_domain.clone(),
        api_addr,
        destination_addr,
        policy_addr,
        dns_addr,
        identity_addr,
        identity_server_name: identity.server_name(),
        identity_dir: identity.dir().to_path_buf(),
        metrics_api_addr,
        trace_collector_addr,
    };
    cluster
        .save(&args.state_dir)
        .with_context(|| format!("writing cluster.json in {}", args.state_dir.display()))?;
    tracing::info!(
        api = %api_addr,
        destination = %destination_addr,
        identity = %identity_addr,
        dns = %dns_addr,
        admin = %admin_addr,
        metrics_api = %metrics_api_addr,
        trace_collector = %trace_collector_addr,
        bridge = %args.bridge,
        "control plane up"
    );

    let failed = tokio::select! {
        _ = crate::shutdown_signal() => None,
        Some(res) = tasks.join_next() => Some(res),
    };
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = std::fs::remove_file(args.state_dir.join(strand_controller_core::CLUSTER_FILE));
    while let Some(res) = tasks.join_next().await {
        if let Ok(Err(e)) = res {
            tracing::warn!("{e:#}");
        }
    }
    feeding.abort();
    drop(store);
    match failed {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Loads (at first start, makes) the CA files, serves Identity/Certify on
/// the bridge address and the admin endpoint; returns the service and both
/// addresses.
async fn start_identity(
    args: &LocalArgs,
    store: Store,
    gateway: std::net::Ipv4Addr,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(crate::identity::Identity, SocketAddr, SocketAddr)> {
    let dir = args.state_dir.join(strand_controller_core::IDENTITY_DIR);
    ensure_ca(&dir)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let pods = Arc::new(StorePods {
        store,
        trust: TrustDomain::default(),
    });
    let identity =
        crate::identity::Identity::load(&dir, args.cert_lifetime, Some(pods), &mut registry)?;
    let addr = SocketAddr::new(IpAddr::V4(gateway), args.identity_port);
    let identity_addr = identity.spawn(addr, tasks, shutdown).await?;
    let admin = crate::admin::Admin::bind(args.admin_addr).await?;
    let admin_addr = admin.local_addr();
    let (ready, stop) = (identity.readiness(), shutdown.clone());
    tasks.spawn(async move {
        admin.run(registry, ready, stop).await;
        Ok(())
    });
    Ok((identity, identity_addr, admin_addr))
}

/// Makes the CA files on first start: a trust anchor and issuer, as
/// `strand identity init` would.
fn ensure_ca(dir: &Path) -> anyhow::Result<()> {
    if dir.join(strand_identity::TRUST_ANCHOR_FILE).exists() {
        return Ok(());
    }
    strand_identity::generate(dir, &strand_identity::GenerateOptions::default())
        .with_context(|| format!("generating the identity CA in {}", dir.display()))?;
    tracing::info!(
        dir = %dir.display(),
        "generated a trust anchor and an issuer (replace them with `strand identity init --force`)"
    );
    Ok(())
}

/// What the identity service knows of pods: the store, which is the truth
/// (the index may lag a pod created a moment ago).
struct StorePods {
    store: Store,
    trust: TrustDomain,
}

impl strand_identity::PodLookup for StorePods {
    fn pod(&self, namespace: &str, name: &str) -> Option<strand_identity::PodInfo> {
        match self.store.get(Kind::Pod, namespace, name)? {
            Resource::Pod(p) => Some(strand_identity::PodInfo {
                ip: p.status.pod_ip,
                identity: p.workload_identity(&self.trust),
            }),
            _ => None,
        }
    }
}

fn dedup(addrs: [SocketAddr; 2]) -> Vec<SocketAddr> {
    if addrs[0] == addrs[1] {
        vec![addrs[0]]
    } else {
        addrs.to_vec()
    }
}

/// Answers DNS from the index: a service's virtual IP (or, headless, its
/// ready pods); names that are a proper suffix of a service name exist
/// without addresses (RFC 8020), so resolvers keep searching.
struct IndexRecords {
    index: Arc<Index>,
}

impl dns::Records for IndexRecords {
    fn lookup(&self, name: &str) -> dns::Lookup {
        if let Some(ips) = self.index.resolve_name(name) {
            return dns::Lookup::Found(ips);
        }
        let is_svc_zone = name
            .strip_suffix(self.index.cluster_domain())
            .and_then(|rest| rest.strip_suffix("svc."))
            .is_some_and(|ns| {
                ns.is_empty() || (ns.ends_with('.') && !ns[..ns.len() - 1].contains('.'))
            });
        if is_svc_zone {
            dns::Lookup::Found(Vec::new())
        } else {
            dns::Lookup::NoSuchName
        }
    }
}

/// How often registrations are checked against running processes.
const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Deregisters pods whose process has exited and workloads whose `strand
/// run` has, so a runner killed with SIGKILL does not leave endpoints that
/// blackhole traffic. Pods live on this host, so `/proc` tells.
async fn reap_orphans(
    store: Store,
    state_dir: &Path,
    network: impl Fn(&str, &str, std::net::Ipv4Addr) -> strand_sys::net::PodNetwork,
) {
    // A zombie is gone too: a killed runner's children are reparented to
    // an init that may not reap them promptly.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    };
    let owner_alive = |r: &Resource| {
        r.meta()
            .annotations
            .get("strand.io/owner-pid")
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(alive)
    };
    loop {
        tokio::time::sleep(REAP_INTERVAL).await;
        // A live runner cleans up after its own pods.
        let supervised: std::collections::HashSet<(String, String)> = store
            .list(Kind::Workload, None)
            .iter()
            .filter(|w| owner_alive(w))
            .map(|w| (w.meta().namespace.clone(), w.meta().name.clone()))
            .collect();
        for r in store.list(Kind::Pod, None) {
            if let Resource::Pod(p) = &r
                && p.status.pid.is_some_and(|pid| !alive(pid))
                && !supervised.contains(&(p.metadata.namespace.clone(), p.spec.workload.clone()))
            {
                tracing::info!(pod = %r.key(), "process gone; deregistering the pod");
                let m = r.meta();
                if let Err(e) = store.delete(Kind::Pod, &m.namespace, &m.name).await {
                    tracing::warn!(pod = %r.key(), "cannot deregister: {e}");
                }
                // What the runner would have removed: the pod's files
                // (its identity token), the proxy and the pod's network.
                let _ = std::fs::remove_dir_all(LocalCluster::pod_state_dir(
                    state_dir,
                    &m.namespace,
                    &m.name,
                ));
                if let Some(std::net::IpAddr::V4(ip)) = p.status.pod_ip {
                    let net = network(&m.namespace, &m.name, ip);
                    let _ = tokio::task::spawn_blocking(move || {
                        strand_sys::net::kill_all_in(&net.netns);
                        strand_sys::net::delete_pod_network(&net)
                    })
                    .await;
                }
            }
        }
        for r in store.list(Kind::Workload, None) {
            let has_owner = r.meta().annotations.contains_key("strand.io/owner-pid");
            if has_owner && !owner_alive(&r) {
                tracing::info!(workload = %r.key(), "strand run gone; deregistering the workload");
                let m = r.meta();
                if let Err(e) = store.delete(Kind::Workload, &m.namespace, &m.name).await {
                    tracing::warn!(workload = %r.key(), "cannot deregister: {e}");
                }
            }
        }
    }
}
