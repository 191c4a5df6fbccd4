//! Scenarios: one isolated network each, with a `load` pod and a `server`
//! pod running the backends, and whatever proxies the scenario puts on the
//! path. A [`Scenario`] owns every process and namespace it made; dropping it
//! stops them and deletes the namespaces.
//!
//! `strand-pair-disc` and `strand-pair-mtls` add a third pod, `control`,
//! where strand-bench hosts a control plane ([`control`]) and from where it
//! opens the handshake load's connections; their load generators target a
//! Service's virtual IP, which the load pod's proxy resolves through
//! discovery to the server pod.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde::Serialize;
use strand_testkit::{Child, Network, Pod};

use crate::handshake;
use crate::load::{Protocol, Target};
use crate::tools::Tools;

pub mod control;
mod nginx;
pub mod probe;
mod template;

pub use template::OtherProxy;

/// The proxy's user id: `strand-init`'s rules let its traffic through.
pub const PROXY_UID: u32 = 2102;
/// The user the backends and load generators run as.
pub const APP_UID: u32 = 2103;

/// Backend ports in the server pod, as in strand's end-to-end tests.
const HTTP_PORT: u16 = 8080;
const GRPC_PORT: u16 = 9090;
/// How long a proxy under callgrind may take to become ready.
const CALLGRIND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// strand-proxy's admin port (its default), where `/ready` is polled.
const ADMIN_PORT: u16 = 4191;
/// The port strand-init redirects a pod's inbound TCP to (its default),
/// where nginx listens in `nginx-redirect-1hop`.
const INBOUND_PROXY_PORT: u16 = 4143;
/// Ports of the other proxies' listeners; they forward to the backends on
/// loopback. nginx needs two ports because on one cleartext port it speaks
/// either HTTP/1.1 or HTTP/2, not both.
const NGINX_HTTP1_PORT: u16 = 8081;
const NGINX_HTTP2_PORT: u16 = 8082;
const OTHER_HTTP_PORT: u16 = 8083;
const OTHER_GRPC_PORT: u16 = 8084;

/// The Service of the discovery scenarios: its virtual IP (Kubernetes'
/// default service range; nothing routes it, the load pod's proxy captures
/// connections to it and discovery names the server pod behind it), its
/// name and the service accounts of the two meshed pods.
const SERVICE_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
const SERVICE_NAME: &str = "server";
const SERVER_SA: &str = "server";
const LOAD_SA: &str = "load";
/// The service account the handshake load's client certificate names.
const HANDSHAKE_SA: &str = "handshake";

/// Per-namespace sysctls of the discovery scenarios' pods. The handshake
/// load opens and closes tens of thousands of connections a second, from
/// the control pod to the server pod and from the server pod's proxy to
/// its app; the side that closes first keeps each in TIME_WAIT for 60 s,
/// which would exhaust the ~28k ephemeral ports within seconds. Reusing
/// TIME_WAIT ports for new outgoing connections (safe with TCP timestamps,
/// on by default) removes that limit. Set in both scenarios alike, so that
/// they still differ only in mTLS; kept-alive traffic never notices it.
const SYSCTLS: [&str; 1] = ["net.ipv4.tcp_tw_reuse=1"];

/// What sits between the load generator and the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No proxy: the baseline.
    Direct,
    /// The server pod is meshed; the load pod is not.
    Strand1Hop,
    /// Both pods are meshed: outbound proxy, then inbound proxy.
    StrandPair,
    /// As strand-pair, with discovery from an in-process control plane and
    /// the load sent to a Service's virtual IP; no identities, so the
    /// proxies speak plaintext to each other.
    StrandPairDisc,
    /// As strand-pair-disc with identities for both proxies: mTLS between
    /// them, HTTP/1 carried as HTTP/2 on one connection.
    StrandPairMtls,
    /// nginx as a reverse proxy in the server pod.
    Nginx,
    /// nginx in strand-proxy's place in the server pod: behind strand-init's
    /// REDIRECT on the proxy's inbound port, as the proxy's user, forwarding
    /// to the pod's own address. The kernel path is exactly strand-1hop's,
    /// so the two compare only the proxies. HTTP/1.1 only (nginx speaks
    /// either HTTP/1.1 or cleartext HTTP/2 on one port, and every port is
    /// redirected to the one).
    NginxRedirect,
    /// A proxy given on the command line, as a reverse proxy in the server pod.
    Other(OtherProxy),
}

/// Settings every scenario's setup needs.
pub struct Setup<'a> {
    pub tools: &'a Tools,
    /// Extra environment for strand-proxy.
    pub proxy_env: &'a [(String, String)],
}

/// A proxy process on a scenario's path, for the CPU and memory accounting
/// (its child processes, such as nginx workers, are counted with it).
#[derive(Clone, Debug, Serialize)]
pub struct ProxyProcess {
    pub label: String,
    pub pid: u32,
    /// The protocols whose traffic passes through it.
    pub protocols: Vec<Protocol>,
}

/// A running scenario.
pub struct Scenario {
    pub kind: Kind,
    /// The address the load generators send to: the server pod's, or the
    /// Service's virtual IP.
    target_ip: IpAddr,
    /// The server pod's proxy, for the handshake measurement.
    server_proxy: Option<ProxyProcess>,
    /// The handshake load (strand-pair-mtls only).
    handshake: Option<handshake::Client>,
    // Field order is drop order: processes, then the control plane, then
    // pods, then the network.
    children: Vec<Child>,
    proxies: Vec<ProxyProcess>,
    control: Option<control::ControlPlane>,
    load: Pod,
    server: Pod,
    control_pod: Option<Pod>,
    _net: Network,
}

// === impl Kind ===

impl Kind {
    /// The built-in scenarios followed by one per `--other-proxy`.
    pub fn all(others: &[OtherProxy]) -> anyhow::Result<Vec<Kind>> {
        let mut all = vec![
            Kind::Direct,
            Kind::Strand1Hop,
            Kind::StrandPair,
            Kind::StrandPairDisc,
            Kind::StrandPairMtls,
            Kind::Nginx,
            Kind::NginxRedirect,
        ];
        for other in others {
            if all.iter().any(|k| k.name() == other.name) {
                anyhow::bail!("--other-proxy: the name {:?} is already taken", other.name);
            }
            all.push(Kind::Other(other.clone()));
        }
        Ok(all)
    }

    pub fn name(&self) -> &str {
        match self {
            Kind::Direct => "direct",
            Kind::Strand1Hop => "strand-1hop",
            Kind::StrandPair => "strand-pair",
            Kind::StrandPairDisc => "strand-pair-disc",
            Kind::StrandPairMtls => "strand-pair-mtls",
            Kind::Nginx => "nginx-1hop",
            Kind::NginxRedirect => "nginx-redirect-1hop",
            Kind::Other(other) => &other.name,
        }
    }

    /// Whether the scenario's path can carry `protocol` at all.
    pub fn carries(&self, protocol: Protocol) -> bool {
        !matches!(self, Kind::NginxRedirect) || protocol == Protocol::Http1
    }

    /// Whether the scenario's proxies are strand's.
    pub fn runs_strand(&self) -> bool {
        matches!(
            self,
            Kind::Strand1Hop | Kind::StrandPair | Kind::StrandPairDisc | Kind::StrandPairMtls
        )
    }

    /// Whether the scenario runs nginx.
    pub fn uses_nginx(&self) -> bool {
        matches!(self, Kind::Nginx | Kind::NginxRedirect)
    }

    /// Whether the scenario has a control plane (discovery, and identity
    /// for strand-pair-mtls).
    pub fn has_control_plane(&self) -> bool {
        matches!(self, Kind::StrandPairDisc | Kind::StrandPairMtls)
    }

    /// Which port (of the server pod or the Service) the load generator targets.
    fn port(&self, protocol: Protocol) -> u16 {
        use Kind::*;
        match (self, protocol) {
            (
                Direct | Strand1Hop | StrandPair | StrandPairDisc | StrandPairMtls,
                Protocol::Grpc,
            ) => GRPC_PORT,
            (
                Direct | Strand1Hop | StrandPair | StrandPairDisc | StrandPairMtls | NginxRedirect,
                _,
            ) => HTTP_PORT,
            (Nginx, Protocol::Http1) => NGINX_HTTP1_PORT,
            (Nginx, _) => NGINX_HTTP2_PORT,
            (Other(_), Protocol::Grpc) => OTHER_GRPC_PORT,
            (Other(_), _) => OTHER_HTTP_PORT,
        }
    }
}

// === impl Scenario ===

impl Scenario {
    /// Creates the network and pods, starts the backends and the proxies,
    /// and waits until every one of them accepts connections.
    pub fn start(kind: Kind, setup: &Setup<'_>) -> anyhow::Result<Scenario> {
        let net = Network::new(&format!("bench-{}", kind.name()))?;
        let load = net.add_pod("load")?;
        let server = net.add_pod("server")?;
        let control_pod = if kind.has_control_plane() {
            Some(net.add_pod("control")?)
        } else {
            None
        };
        let target_ip = if kind.has_control_plane() {
            SERVICE_VIP
        } else {
            server.ip()
        };
        let mut scenario = Scenario {
            kind,
            target_ip,
            server_proxy: None,
            handshake: None,
            children: Vec::new(),
            proxies: Vec::new(),
            control: None,
            load,
            server,
            control_pod,
            _net: net,
        };
        scenario.start_backends(setup.tools)?;
        match scenario.kind.clone() {
            Kind::Direct => {}
            Kind::Strand1Hop => scenario.mesh(Side::Server, setup, &[])?,
            Kind::StrandPair => {
                scenario.mesh(Side::Server, setup, &[])?;
                scenario.mesh(Side::Load, setup, &[])?;
            }
            Kind::StrandPairDisc => scenario.start_with_control_plane(setup, false)?,
            Kind::StrandPairMtls => scenario.start_with_control_plane(setup, true)?,
            Kind::Nginx => scenario.start_nginx(setup.tools)?,
            Kind::NginxRedirect => scenario.start_nginx_redirect(setup.tools)?,
            Kind::Other(other) => scenario.start_other(&other)?,
        }
        Ok(scenario)
    }

    /// Where the load generator sends `protocol` requests.
    pub fn target(&self, protocol: Protocol) -> Target {
        Target {
            addr: SocketAddr::new(self.target_ip, self.kind.port(protocol)),
            protocol,
        }
    }

    /// The handshake load against the server pod's proxy, in scenarios
    /// that measure it, with that proxy.
    pub fn handshake(&self) -> Option<(&handshake::Client, &ProxyProcess)> {
        self.handshake.as_ref().zip(self.server_proxy.as_ref())
    }

    /// How many connections of `mode` from the handshake load the server
    /// pod's proxy has counted so far (its `tcp_open_total`).
    pub fn proxy_counted(&self, mode: handshake::Mode) -> anyhow::Result<u64> {
        let metrics = probe::http_get(&self.server, ADMIN_PORT, "/metrics")?;
        let labels = handshake::proxy_counter_labels(mode, &control::identity(HANDSHAKE_SA));
        Ok(handshake::sum_counter(&metrics, "tcp_open_total", &labels))
    }

    /// Every request the server pod's proxy has served so far (its inbound
    /// `request_total`).
    pub fn server_requests(&self) -> anyhow::Result<u64> {
        let metrics = probe::http_get(&self.server, ADMIN_PORT, "/metrics")?;
        Ok(crate::callgrind::inbound_requests(&metrics))
    }

    /// The proxies on the path of `protocol` requests.
    pub fn proxies(&self, protocol: Protocol) -> Vec<ProxyProcess> {
        self.proxies
            .iter()
            .filter(|p| p.protocols.contains(&protocol))
            .cloned()
            .collect()
    }

    /// A command running `program` in the load pod as [`APP_UID`]: never the
    /// proxy's user, so that a meshed load pod's proxy captures its traffic.
    pub fn load_command(&self, program: &Path) -> Command {
        self.load.command_as(APP_UID, APP_UID, program)
    }

    /// The load pod, where load generators run.
    pub fn load_pod(&self) -> &Pod {
        &self.load
    }

    /// The testapp HTTP (HTTP/1.1 and HTTP/2) and gRPC servers.
    fn start_backends(&mut self, tools: &Tools) -> anyhow::Result<()> {
        let backends = [
            ("http", HTTP_PORT, ["--name", "server"].as_slice()),
            ("grpc", GRPC_PORT, [].as_slice()),
        ];
        for (mode, port, extra) in backends {
            let mut cmd = self.server.command_as(APP_UID, APP_UID, &tools.testapp);
            cmd.arg(mode)
                .arg("--listen")
                .arg(format!("0.0.0.0:{port}"))
                .args(extra);
            let mut child = spawn(&self.server, cmd)?;
            child
                .wait_listening()
                .with_context(|| format!("starting strand-testapp {mode}"))?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Installs `strand-init`'s iptables rules in one pod and starts
    /// `strand-proxy` there as [`PROXY_UID`], with `env` and then
    /// `--proxy-env` (which wins) in its environment.
    fn mesh(
        &mut self,
        side: Side,
        setup: &Setup<'_>,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let pod = self.pod(side);
        pod.run(pod.command(&setup.tools.strand_init))
            .with_context(|| format!("strand-init in the {} pod", pod.name()))?;
        let mut cmd = match &setup.tools.callgrind {
            Some(callgrind) => {
                let (valgrind, args) = callgrind.wrap(&setup.tools.strand_proxy);
                let mut cmd = pod.command_as(PROXY_UID, PROXY_UID, &valgrind);
                cmd.args(args);
                cmd
            }
            None => pod.command_as(PROXY_UID, PROXY_UID, &setup.tools.strand_proxy),
        };
        cmd.envs(env.iter().chain(setup.proxy_env).map(|(k, v)| (k, v)));
        let mut child = spawn(pod, cmd)?;
        // With an identity, /ready also waits for the certificate.
        // valgrind takes seconds to load the binary and runs it far slower.
        let patience = if setup.tools.callgrind.is_some() {
            CALLGRIND_PATIENCE
        } else {
            strand_testkit::patience()
        };
        probe::wait_http_ok(pod, &mut child, ADMIN_PORT, "/ready", patience)
            .with_context(|| format!("strand-proxy in the {} pod", pod.name()))?;
        let proxy = ProxyProcess {
            label: format!("strand-proxy ({})", pod.name()),
            pid: child.pid(),
            protocols: Protocol::ALL.to_vec(),
        };
        if let Side::Server = side {
            self.server_proxy = Some(proxy.clone());
        }
        self.proxies.push(proxy);
        self.children.push(child);
        Ok(())
    }

    fn pod(&self, side: Side) -> &Pod {
        match side {
            Side::Load => &self.load,
            Side::Server => &self.server,
        }
    }

    /// strand-pair-disc and strand-pair-mtls: the control plane in the
    /// control pod, the Service pointing at the server pod, both pods
    /// meshed with discovery, and with `mtls` identities for both proxies
    /// and the handshake load's client.
    fn start_with_control_plane(&mut self, setup: &Setup<'_>, mtls: bool) -> anyhow::Result<()> {
        let control_pod = self
            .control_pod
            .as_ref()
            .context("a discovery scenario has a control pod")?;
        for pod in [&self.load, &self.server, control_pod] {
            let mut cmd = pod.command("sysctl");
            cmd.arg("-q").args(SYSCTLS);
            pod.run(cmd)
                .with_context(|| format!("sysctl in the {} pod", pod.name()))?;
        }
        let dir = setup.tools.workdir().join(self.kind.name());
        let cp = control::ControlPlane::start(control_pod, &dir)
            .context("starting the in-process control plane")?;
        cp.add_service(
            SERVICE_NAME,
            SERVICE_VIP,
            &[HTTP_PORT, GRPC_PORT],
            self.server.ip(),
            SERVER_SA,
        )?;
        let handshake = mtls
            .then(|| {
                handshake::Client::new(
                    control_pod.netns_path(),
                    SocketAddr::new(self.server.ip(), HTTP_PORT),
                    &control::identity(SERVER_SA),
                    cp.trust_anchors(),
                    cp.credentials(HANDSHAKE_SA)?,
                )
                .context("the handshake load's TLS client")
            })
            .transpose()?;
        let sides = [(Side::Server, SERVER_SA), (Side::Load, LOAD_SA)];
        let mut envs = Vec::new();
        for (side, sa) in sides {
            let pod = self.pod(side);
            let mut env = cp.discovery_env(pod.name());
            if mtls {
                env.extend(cp.identity_env(pod.name(), sa, pod.ip())?);
            }
            envs.push((side, env));
        }
        self.control = Some(cp);
        for (side, env) in envs {
            self.mesh(side, setup, &env)?;
        }
        self.handshake = handshake;
        Ok(())
    }

    fn start_nginx(&mut self, tools: &Tools) -> anyhow::Result<()> {
        let ports = nginx::Ports {
            http1: NGINX_HTTP1_PORT,
            http2: NGINX_HTTP2_PORT,
            http_upstream: HTTP_PORT,
            grpc_upstream: GRPC_PORT,
        };
        let dir = tools.workdir().join("nginx");
        let cmd = nginx::command(&self.server, tools.nginx()?, &dir, &ports)?;
        let mut child = spawn(&self.server, cmd)?;
        for port in [NGINX_HTTP1_PORT, NGINX_HTTP2_PORT] {
            probe::wait_tcp(&self.server, &mut child, port).context("starting nginx")?;
        }
        self.proxies.push(ProxyProcess {
            label: "nginx (master and workers)".to_string(),
            pid: child.pid(),
            protocols: Protocol::ALL.to_vec(),
        });
        self.children.push(child);
        Ok(())
    }

    /// nginx where strand-proxy would be: strand-init's rules in the server
    /// pod, nginx as the proxy's user (so that its own connections are not
    /// redirected) on the proxy's inbound port.
    fn start_nginx_redirect(&mut self, tools: &Tools) -> anyhow::Result<()> {
        let pod = &self.server;
        pod.run(pod.command(&tools.strand_init))
            .context("strand-init in the server pod")?;
        let dir = tools.workdir().join("nginx-redirect");
        let upstream = SocketAddr::new(pod.ip(), HTTP_PORT);
        let cmd = nginx::redirect_command(
            pod,
            tools.nginx()?,
            &dir,
            INBOUND_PROXY_PORT,
            upstream,
            PROXY_UID,
        )?;
        let mut child = spawn(pod, cmd)?;
        probe::wait_tcp(pod, &mut child, INBOUND_PROXY_PORT).context("starting nginx")?;
        self.proxies.push(ProxyProcess {
            label: "nginx as the proxy (master and workers)".to_string(),
            pid: child.pid(),
            protocols: vec![Protocol::Http1],
        });
        self.children.push(child);
        Ok(())
    }

    /// Two instances of the other proxy: one in front of the HTTP backend,
    /// one in front of the gRPC backend.
    fn start_other(&mut self, other: &OtherProxy) -> anyhow::Result<()> {
        let instances = [
            (
                OTHER_HTTP_PORT,
                HTTP_PORT,
                vec![Protocol::Http1, Protocol::Http2],
            ),
            (OTHER_GRPC_PORT, GRPC_PORT, vec![Protocol::Grpc]),
        ];
        for (listen, upstream, protocols) in instances {
            let argv = other.command_line(listen, upstream);
            let (program, args) = argv.split_first().context("empty --other-proxy command")?;
            let mut cmd = self.server.command(program);
            cmd.args(args);
            let mut child = spawn(&self.server, cmd)?;
            probe::wait_tcp(&self.server, &mut child, listen)
                .with_context(|| format!("starting {} ({})", other.name, argv.join(" ")))?;
            self.proxies.push(ProxyProcess {
                label: format!("{} :{listen}", other.name),
                pid: child.pid(),
                protocols,
            });
            self.children.push(child);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Side {
    Load,
    Server,
}

/// Starts `cmd` in `pod` in its own process group, so that a Ctrl-C at the
/// terminal reaches only strand-bench, which then stops everything in order.
pub fn spawn(pod: &Pod, mut cmd: Command) -> anyhow::Result<Child> {
    cmd.process_group(0);
    pod.spawn(cmd)
}
