//! Proxy configuration, parsed in one place from `STRAND_PROXY_*` variables.
//!
//! The variable source is injectable ([`EnvSource`]) so tests pass a map and
//! never touch the process environment. Every invalid variable is collected
//! and reported together ([`ConfigErrors`]); the binary then exits with
//! `EX_USAGE` (64).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where configuration values come from.
pub trait EnvSource {
    /// The value of variable `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

/// Linkerd's default opaque ports: server-speaks-first protocols (SMTP,
/// MySQL, Galera, PostgreSQL, Redis, Elasticsearch, memcached) that must not
/// wait for protocol detection.
pub const DEFAULT_OPAQUE_PORTS: &[u16] = &[25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// The proxy's complete configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub outbound: SideConfig,
    pub inbound: SideConfig,
    /// Admin server (metrics, readiness, liveness, shutdown).
    pub admin_addr: SocketAddr,
    /// How long in-flight work may take to finish after a shutdown request.
    pub shutdown_grace_period: Duration,
    /// Threads serving connections, each with its own single-threaded
    /// runtime (`crate::workers`).
    pub cores: usize,
    /// `tracing` filter directives.
    pub log_level: String,
    /// `plain` or `json`.
    pub log_format: LogFormat,
    pub http: HttpConfig,
    /// Where to discover services; `None` forwards every connection to its
    /// original destination.
    pub discovery: Option<DiscoveryConfig>,
    /// The proxy's mTLS identity; `None` leaves every connection plaintext.
    pub identity: Option<IdentityConfig>,
    /// The tap API; `None` when no tap service identity is configured.
    pub tap: Option<TapConfig>,
    /// Where spans of traced requests go; `None`: no tracing.
    pub trace: Option<TraceConfig>,
}

/// Distributed tracing: spans exported over OTLP/gRPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// The collector, `host:port` (OTLP/gRPC, plaintext HTTP/2).
    pub collector_addr: String,
    /// The `service.name` resource attribute of this proxy's spans.
    pub service_name: String,
    /// More resource attributes (`k8s.pod.name`, ...).
    pub attributes: Vec<(String, String)>,
}

/// Where the tap API is served and who may use it.
#[derive(Clone, Debug, PartialEq)]
pub struct TapConfig {
    /// The control port (Linkerd's 4190).
    pub listen_addr: SocketAddr,
    /// The only client identity allowed to open taps.
    pub svc_name: String,
}

/// Where the proxy gets its certificate and what it trusts.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityConfig {
    /// The identity service (`Identity/Certify`, over TLS).
    pub svc_addr: SocketAddr,
    /// The identity service's own TLS identity.
    pub svc_name: String,
    /// This proxy's identity, e.g.
    /// `web.default.serviceaccount.identity.linkerd.cluster.local`.
    pub local_name: String,
    /// PEM certificates every mesh certificate must chain to.
    pub trust_anchors_pem: String,
    /// The token proving the workload's identity, re-read at each renewal.
    pub token_file: PathBuf,
    /// Inbound, on opaque ports: how long to wait for a mesh ClientHello
    /// before passing the connection through as plaintext.
    pub opaque_tls_wait: Duration,
}

/// The identity service's name in Linkerd's default installation.
pub const DEFAULT_IDENTITY_SVC_NAME: &str =
    "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local";

/// The control plane's discovery APIs.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryConfig {
    /// Destination and outbound-policy gRPC.
    pub destination_addr: SocketAddr,
    /// Inbound-policy gRPC (defaults to the destination address).
    pub policy_addr: SocketAddr,
    /// This pod's name and namespace, sent to the control plane as
    /// Linkerd's context token `{"ns":..,"nodeName":..,"pod":..}`.
    pub pod_name: String,
    pub pod_namespace: String,
    /// How long a new target may wait for discovery before failing with 503.
    pub fail_fast: Duration,
    /// HTTP requests whose authority is `<svc>.<ns>.svc.<cluster domain>`
    /// (or that carry `l5d-dst-override`) are routed by that name.
    pub cluster_domain: String,
    /// Beside an ingress (Linkerd's `linkerd.io/inject: ingress`): such
    /// names route requests on every connection, not only on connections
    /// to addresses that are no mesh service or workload.
    pub ingress_mode: bool,
}

/// Settings for one direction (inbound or outbound).
#[derive(Clone, Debug, PartialEq)]
pub struct SideConfig {
    /// Addresses to listen on. The proxy serves as long as at least one
    /// binds; an address of a disabled family (IPv6 off) is skipped.
    pub listen_addrs: Vec<SocketAddr>,
    /// How long protocol detection may wait for the client's first bytes.
    pub detect_timeout: Duration,
    /// How long connecting to the target may take.
    pub connect_timeout: Duration,
    /// Destination ports whose traffic skips protocol detection.
    pub opaque_ports: BTreeSet<u16>,
}

/// HTTP limits shared by both directions.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Largest HTTP/1 request head (request line plus headers), in bytes;
    /// also the HTTP/2 header-list limit.
    pub max_header_bytes: usize,
    /// How long a client may take to send a complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// Idle upstream HTTP/1 connections kept per target.
    pub max_idle_per_target: usize,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// One invalid variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// All invalid variables found in one parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Documentation of one variable, rendered into `--help` and the README.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every variable the proxy reads. The README's table is generated from
/// this list (`strand-proxy --help`).
pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "STRAND_PROXY_OUTBOUND_LISTEN_ADDR",
        default: "127.0.0.1:4140,[::1]:4140",
        help: "Outbound listeners (comma-separated): traffic from the workload, redirected by strand-init. An IPv6 address is skipped where IPv6 is off.",
    },
    VarDoc {
        name: "STRAND_PROXY_INBOUND_LISTEN_ADDR",
        default: "0.0.0.0:4143,[::]:4143",
        help: "Inbound listeners (comma-separated): traffic to the workload, redirected by strand-init. An IPv6 address is skipped where IPv6 is off.",
    },
    VarDoc {
        name: "STRAND_PROXY_ADMIN_LISTEN_ADDR",
        default: "0.0.0.0:4191",
        help: "Admin server: /metrics, /ready, /live, POST /shutdown (loopback only).",
    },
    VarDoc {
        name: "STRAND_PROXY_OUTBOUND_DETECT_TIMEOUT",
        default: "10s",
        help: "How long outbound protocol detection waits for the client's first bytes before treating the connection as opaque TCP.",
    },
    VarDoc {
        name: "STRAND_PROXY_INBOUND_DETECT_TIMEOUT",
        default: "10s",
        help: "The same for inbound connections.",
    },
    VarDoc {
        name: "STRAND_PROXY_OUTBOUND_CONNECT_TIMEOUT",
        default: "1s",
        help: "Timeout for connecting to an outbound target.",
    },
    VarDoc {
        name: "STRAND_PROXY_INBOUND_CONNECT_TIMEOUT",
        default: "300ms",
        help: "Timeout for connecting to the local workload.",
    },
    VarDoc {
        name: "STRAND_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
        default: "25,587,3306,4444,5432,6379,9300,11211",
        help: "Outbound destination ports proxied as opaque TCP without detection (comma-separated ports or ranges like 8000-8010).",
    },
    VarDoc {
        name: "STRAND_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
        default: "25,587,3306,4444,5432,6379,9300,11211",
        help: "Inbound ports proxied as opaque TCP without detection.",
    },
    VarDoc {
        name: "STRAND_PROXY_SHUTDOWN_GRACE_PERIOD",
        default: "2m",
        help: "After SIGTERM or POST /shutdown: how long in-flight requests and connections may take to finish.",
    },
    VarDoc {
        name: "STRAND_PROXY_CORES",
        default: "min(2, CPUs)",
        help: "Number of threads serving connections, each with its own event loop; every connection stays on the thread with the fewest open connections when it arrived.",
    },
    VarDoc {
        name: "STRAND_PROXY_LOG",
        default: "warn,strand=info",
        help: "Log filter (tracing directives, e.g. `debug` or `warn,strand_proxy=debug`).",
    },
    VarDoc {
        name: "STRAND_PROXY_LOG_FORMAT",
        default: "plain",
        help: "Log format: plain or json.",
    },
    VarDoc {
        name: "STRAND_PROXY_HTTP_MAX_HEADER_BYTES",
        default: "65536",
        help: "Largest HTTP request head accepted (bytes); larger requests get 431.",
    },
    VarDoc {
        name: "STRAND_PROXY_HTTP_HEADER_READ_TIMEOUT",
        default: "10s",
        help: "How long a client may take to send a full HTTP/1 request head. An idle keep-alive connection counts from the end of its last response, so this is also how long idle client connections are kept.",
    },
    VarDoc {
        name: "STRAND_PROXY_MAX_IDLE_CONNS_PER_ENDPOINT",
        default: "10000",
        help: "Idle HTTP/1 connections kept open per upstream target (each is closed after the idle timeout). Set it at least to the number of concurrent requests to a target, or connections churn.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDLE_TIMEOUT",
        default: "5s",
        help: "How long an idle upstream connection is kept. Keep it below the idle timeout of the server (or proxy) on the other side, so a connection is never reused just as that side closes it.",
    },
    VarDoc {
        name: "STRAND_PROXY_DESTINATION_SVC_ADDR",
        default: "(none)",
        help: "The control plane's destination and outbound-policy gRPC address (plaintext HTTP/2). Unset: no discovery, every connection goes to its original destination.",
    },
    VarDoc {
        name: "STRAND_PROXY_POLICY_SVC_ADDR",
        default: "(the destination address)",
        help: "The control plane's inbound-policy gRPC address.",
    },
    VarDoc {
        name: "STRAND_PROXY_POD_NAME",
        default: "(empty)",
        help: "This pod's name, sent to the control plane with discovery requests.",
    },
    VarDoc {
        name: "STRAND_PROXY_POD_NAMESPACE",
        default: "default",
        help: "This pod's namespace, sent to the control plane with discovery requests.",
    },
    VarDoc {
        name: "STRAND_PROXY_CLUSTER_DOMAIN",
        default: "cluster.local",
        help: "HTTP requests whose authority ends in `.svc.<this domain>` (or that carry an `l5d-dst-override` header) are routed by that name when the client connected to an address that is no mesh Service or workload (with STRAND_PROXY_INGRESS_MODE, whatever address it connected to).",
    },
    VarDoc {
        name: "STRAND_PROXY_INGRESS_MODE",
        default: "false",
        help: "`true` beside an ingress controller (Linkerd's `linkerd.io/inject: ingress`): the `l5d-dst-override` header (or a `.svc.<cluster domain>` authority) routes each HTTP request even when the ingress connected to a pod's or a Service's address, so it is balanced and routed as a request to that Service.",
    },
    VarDoc {
        name: "STRAND_PROXY_DISCOVERY_FAIL_FAST",
        default: "3s",
        help: "How long a connection or request to a new target waits for discovery before it fails (HTTP 503 with l5d-proxy-error, or a reset for TCP). Known targets keep their last endpoints while the control plane is away.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDENTITY_SVC_ADDR",
        default: "(none)",
        help: "The identity service (Identity/Certify over TLS). Set: the proxy gets a certificate at start (/ready is 503 until then), renews it at 70% of its lifetime, and uses mTLS to every endpoint discovery names an identity for. Unset: no identity, plaintext.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDENTITY_SVC_NAME",
        default: DEFAULT_IDENTITY_SVC_NAME,
        help: "The TLS identity the identity service must present.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDENTITY_LOCAL_NAME",
        default: "(required with the identity service)",
        help: "This proxy's identity: `<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-namespace>.<trust-domain>`.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDENTITY_TRUST_ANCHORS",
        default: "(required with the identity service)",
        help: "The trust anchors, PEM: every mesh certificate must chain to one of them.",
    },
    VarDoc {
        name: "STRAND_PROXY_IDENTITY_TOKEN_FILE",
        default: "(required with the identity service)",
        help: "The file holding the token that proves this workload's identity to the identity service; re-read at every renewal.",
    },
    VarDoc {
        name: "STRAND_PROXY_CONTROL_LISTEN_ADDR",
        default: "0.0.0.0:4190",
        help: "The control port, where the tap API (io.linkerd.proxy.tap.Tap/Observe) is served over mTLS when STRAND_PROXY_TAP_SVC_NAME is set.",
    },
    VarDoc {
        name: "STRAND_PROXY_TAP_SVC_NAME",
        default: "(none: no tap API)",
        help: "The identity a tap client must present (its certificate, from the same trust anchors) to open taps: live events of the requests this proxy handles. Needs the identity variables.",
    },
    VarDoc {
        name: "STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR",
        default: "(none: no tracing)",
        help: "An OpenTelemetry collector (OTLP/gRPC, `host:port`). Set: every HTTP request that carries a sampled W3C `traceparent` or B3 (`x-b3-*`) context gets a span from this proxy (a server span inbound, a client span outbound), the context passed on names the proxy's span as the parent, and spans are sent in batches (dropped, and counted, when the collector cannot keep up).",
    },
    VarDoc {
        name: "STRAND_PROXY_TRACE_PROTOCOL",
        default: "opentelemetry",
        help: "The export protocol: only `opentelemetry` (OTLP/gRPC).",
    },
    VarDoc {
        name: "STRAND_PROXY_TRACE_SERVICE_NAME",
        default: "strand-proxy",
        help: "The `service.name` of this proxy's spans.",
    },
    VarDoc {
        name: "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES",
        default: "(none)",
        help: "More attributes of this proxy's spans, comma-separated `key=value` (e.g. `k8s.pod.name=web-1,k8s.namespace.name=default`).",
    },
    VarDoc {
        name: "STRAND_PROXY_INBOUND_OPAQUE_TLS_WAIT",
        default: "500ms",
        help: "Inbound, on ports that skip protocol detection: how long to wait for a meshed client's TLS ClientHello before passing the connection through as plaintext (a server-speaks-first protocol with an unmeshed client waits this long).",
    },
];

// === impl EnvSource ===

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Config::from_env(&HashMap::<&str, &str>::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Parses the whole configuration, collecting every invalid variable.
    pub fn from_env(env: &dyn EnvSource) -> Result<Config, ConfigErrors> {
        let mut p = Parser {
            env,
            errors: Vec::new(),
        };
        let default_cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let config = Config {
            outbound: p.side(
                &OUTBOUND_VARS,
                "127.0.0.1:4140,[::1]:4140",
                Duration::from_secs(1),
            ),
            inbound: p.side(
                &INBOUND_VARS,
                "0.0.0.0:4143,[::]:4143",
                Duration::from_millis(300),
            ),
            admin_addr: p.parse(
                "STRAND_PROXY_ADMIN_LISTEN_ADDR",
                "0.0.0.0:4191".parse().expect("valid"),
                parse_addr,
            ),
            shutdown_grace_period: p.parse(
                "STRAND_PROXY_SHUTDOWN_GRACE_PERIOD",
                Duration::from_secs(120),
                parse_duration,
            ),
            cores: p.parse("STRAND_PROXY_CORES", default_cores, |v| {
                parse_bounded(v, 1, 64)
            }),
            log_level: p.parse("STRAND_PROXY_LOG", "warn,strand=info".to_string(), |v| {
                if v.trim().is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(v.to_string())
                }
            }),
            log_format: p.parse("STRAND_PROXY_LOG_FORMAT", LogFormat::Plain, |v| match v {
                "plain" => Ok(LogFormat::Plain),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected `plain` or `json`".into()),
            }),
            http: HttpConfig {
                // Large enough for real-world cookies and JWTs, small enough
                // that 1,000 clients sending maximal heads cost ~64 MiB.
                max_header_bytes: p.parse("STRAND_PROXY_HTTP_MAX_HEADER_BYTES", 64 * 1024, |v| {
                    parse_bounded(v, 8192, 16 * 1024 * 1024)
                }),
                header_read_timeout: p.parse(
                    "STRAND_PROXY_HTTP_HEADER_READ_TIMEOUT",
                    Duration::from_secs(10),
                    parse_duration,
                ),
                max_idle_per_target: p.parse(
                    "STRAND_PROXY_MAX_IDLE_CONNS_PER_ENDPOINT",
                    10_000,
                    |v| parse_bounded(v, 0, 100_000),
                ),
                idle_timeout: p.parse(
                    "STRAND_PROXY_IDLE_TIMEOUT",
                    // Half the peer proxy's header read timeout (its idle
                    // timeout), and as short as common app servers' (Node's
                    // keep-alive timeout is 5 s).
                    Duration::from_secs(5),
                    parse_duration,
                ),
            },
            discovery: None,
            identity: None,
            tap: None,
            trace: None,
        };
        let mut config = config;
        config.discovery = p.discovery();
        config.identity = p.identity();
        config.tap = p.tap(config.identity.is_some());
        config.trace = p.trace();
        if p.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(p.errors))
        }
    }
}

/// The variable names of one side.
struct SideVars {
    listen: &'static str,
    detect_timeout: &'static str,
    connect_timeout: &'static str,
    opaque_ports: &'static str,
}

const OUTBOUND_VARS: SideVars = SideVars {
    listen: "STRAND_PROXY_OUTBOUND_LISTEN_ADDR",
    detect_timeout: "STRAND_PROXY_OUTBOUND_DETECT_TIMEOUT",
    connect_timeout: "STRAND_PROXY_OUTBOUND_CONNECT_TIMEOUT",
    opaque_ports: "STRAND_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
};

const INBOUND_VARS: SideVars = SideVars {
    listen: "STRAND_PROXY_INBOUND_LISTEN_ADDR",
    detect_timeout: "STRAND_PROXY_INBOUND_DETECT_TIMEOUT",
    connect_timeout: "STRAND_PROXY_INBOUND_CONNECT_TIMEOUT",
    opaque_ports: "STRAND_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
};

struct Parser<'a> {
    env: &'a dyn EnvSource,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    fn side(&mut self, vars: &SideVars, listen: &str, connect_timeout: Duration) -> SideConfig {
        SideConfig {
            listen_addrs: self.parse(
                vars.listen,
                parse_addrs(listen).expect("valid default"),
                parse_addrs,
            ),
            // Linkerd's default: long enough for slow clients, short enough
            // that a server-speaks-first protocol on an unlisted port is not
            // stuck for long.
            detect_timeout: self.parse(
                vars.detect_timeout,
                Duration::from_secs(10),
                parse_duration,
            ),
            connect_timeout: self.parse(vars.connect_timeout, connect_timeout, parse_duration),
            opaque_ports: self.parse(
                vars.opaque_ports,
                DEFAULT_OPAQUE_PORTS.iter().copied().collect(),
                parse_ports,
            ),
        }
    }

    fn discovery(&mut self) -> Option<DiscoveryConfig> {
        let destination_addr = self.parse("STRAND_PROXY_DESTINATION_SVC_ADDR", None, |v| {
            parse_addr(v).map(Some)
        });
        let policy_addr = self.parse("STRAND_PROXY_POLICY_SVC_ADDR", None, |v| {
            parse_addr(v).map(Some)
        });
        let pod_name = self.parse(
            "STRAND_PROXY_POD_NAME",
            String::new(),
            |v| Ok(v.to_string()),
        );
        let pod_namespace = self.parse("STRAND_PROXY_POD_NAMESPACE", "default".to_string(), |v| {
            if v.is_empty() {
                Err("must not be empty".into())
            } else {
                Ok(v.to_string())
            }
        });
        // Linkerd's default: long enough for a control plane under load,
        // short enough that a client sees an error rather than a hang.
        let fail_fast = self.parse(
            "STRAND_PROXY_DISCOVERY_FAIL_FAST",
            Duration::from_secs(3),
            parse_duration,
        );
        let cluster_domain = self.parse(
            "STRAND_PROXY_CLUSTER_DOMAIN",
            "cluster.local".to_string(),
            |v| {
                let v = v.trim_matches('.');
                if v.is_empty() || v.contains(char::is_whitespace) {
                    Err("expected a DNS domain such as cluster.local".into())
                } else {
                    Ok(v.to_ascii_lowercase())
                }
            },
        );
        let ingress_mode = self.parse("STRAND_PROXY_INGRESS_MODE", false, |v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".into()),
        });
        let destination_addr = destination_addr?;
        Some(DiscoveryConfig {
            cluster_domain,
            ingress_mode,
            destination_addr,
            policy_addr: policy_addr.unwrap_or(destination_addr),
            pod_name,
            pod_namespace,
            fail_fast,
        })
    }

    fn identity(&mut self) -> Option<IdentityConfig> {
        let svc_addr = self.parse("STRAND_PROXY_IDENTITY_SVC_ADDR", None, |v| {
            parse_addr(v).map(Some)
        });
        let svc_name = self.parse(
            "STRAND_PROXY_IDENTITY_SVC_NAME",
            DEFAULT_IDENTITY_SVC_NAME.to_string(),
            parse_dns_like,
        );
        let local_name = self.parse("STRAND_PROXY_IDENTITY_LOCAL_NAME", None, |v| {
            parse_dns_like(v).map(Some)
        });
        let trust_anchors_pem = self.parse("STRAND_PROXY_IDENTITY_TRUST_ANCHORS", None, |v| {
            if v.contains("-----BEGIN CERTIFICATE-----") {
                Ok(Some(v.to_string()))
            } else {
                Err("expected PEM certificates (-----BEGIN CERTIFICATE-----)".into())
            }
        });
        let token_file = self.parse("STRAND_PROXY_IDENTITY_TOKEN_FILE", None, |v| {
            if v.is_empty() {
                Err("must not be empty".into())
            } else {
                Ok(Some(v.to_string()))
            }
        });
        let opaque_tls_wait = self.parse(
            "STRAND_PROXY_INBOUND_OPAQUE_TLS_WAIT",
            Duration::from_millis(500),
            parse_duration,
        );
        let svc_addr = svc_addr?;
        let mut require = |name: &'static str, v: Option<_>| {
            if v.is_none() && !self.errors.iter().any(|e| e.name == name) {
                self.errors.push(ConfigError {
                    name,
                    value: String::new(),
                    reason: "required when STRAND_PROXY_IDENTITY_SVC_ADDR is set".into(),
                });
            }
            v
        };
        let local_name = require("STRAND_PROXY_IDENTITY_LOCAL_NAME", local_name);
        let trust_anchors_pem = require("STRAND_PROXY_IDENTITY_TRUST_ANCHORS", trust_anchors_pem);
        let token_file = require("STRAND_PROXY_IDENTITY_TOKEN_FILE", token_file);
        Some(IdentityConfig {
            svc_addr,
            svc_name,
            local_name: local_name?,
            trust_anchors_pem: trust_anchors_pem?,
            token_file: PathBuf::from(token_file?),
            opaque_tls_wait,
        })
    }

    fn tap(&mut self, identity: bool) -> Option<TapConfig> {
        let listen_addr = self.parse(
            "STRAND_PROXY_CONTROL_LISTEN_ADDR",
            "0.0.0.0:4190".parse().expect("valid"),
            parse_addr,
        );
        let svc_name = self.parse("STRAND_PROXY_TAP_SVC_NAME", None, |v| {
            parse_dns_like(v).map(Some)
        })?;
        if !identity {
            // Taps show request metadata: only ever over mTLS. (An identity
            // that is set but invalid has its own error already.)
            if self.env.get("STRAND_PROXY_IDENTITY_SVC_ADDR").is_some() {
                return None;
            }
            self.errors.push(ConfigError {
                name: "STRAND_PROXY_TAP_SVC_NAME",
                value: svc_name,
                reason: "the tap API is served over mTLS only: set the identity variables (STRAND_PROXY_IDENTITY_SVC_ADDR, ...) too".into(),
            });
            return None;
        }
        Some(TapConfig {
            listen_addr,
            svc_name,
        })
    }

    fn trace(&mut self) -> Option<TraceConfig> {
        let collector_addr = self.parse("STRAND_PROXY_TRACE_COLLECTOR_SVC_ADDR", None, |v| {
            parse_host_port(v).map(Some)
        });
        self.parse("STRAND_PROXY_TRACE_PROTOCOL", (), |v| match v {
            "opentelemetry" => Ok(()),
            "opencensus" => Err(
                "OpenCensus is not supported; spans are exported as OpenTelemetry (OTLP/gRPC): \
                 use `opentelemetry` or leave it unset"
                    .into(),
            ),
            _ => Err("expected `opentelemetry`".into()),
        });
        let service_name = self.parse(
            "STRAND_PROXY_TRACE_SERVICE_NAME",
            "strand-proxy".to_string(),
            |v| {
                if v.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(v.to_string())
                }
            },
        );
        let attributes = self.parse(
            "STRAND_PROXY_TRACE_EXTRA_ATTRIBUTES",
            Vec::new(),
            parse_attributes,
        );
        Some(TraceConfig {
            collector_addr: collector_addr?,
            service_name,
            attributes,
        })
    }

    fn parse<T>(
        &mut self,
        name: &'static str,
        default: T,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        debug_assert!(VARS.iter().any(|v| v.name == name), "{name} is documented");
        match self.env.get(name) {
            None => default,
            Some(value) => match f(value.trim()) {
                Ok(v) => v,
                Err(reason) => {
                    self.errors.push(ConfigError {
                        name,
                        value,
                        reason,
                    });
                    default
                }
            },
        }
    }
}

/// A DNS-like identity name: dot-separated labels of letters, digits and
/// hyphens.
fn parse_dns_like(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(v.to_ascii_lowercase())
    } else {
        Err("expected a DNS-like name such as web.default.serviceaccount.identity.linkerd.cluster.local".into())
    }
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "expected an IP address and port such as 0.0.0.0:4143 or [::]:4143".into())
}

/// `host:port`, where the host is an IP address (IPv6 in brackets) or a
/// DNS name.
fn parse_host_port(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected host:port such as 10.42.0.1:4317 or collector.linkerd-jaeger.svc.cluster.local:4317";
    let (host, port) = v.rsplit_once(':').ok_or(EXPECTED)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        ip.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok() || parse_dns_like(host).is_ok()
    };
    if port_ok && host_ok {
        Ok(v.to_string())
    } else {
        Err(EXPECTED.into())
    }
}

/// Comma-separated `key=value` pairs.
fn parse_attributes(v: &str) -> Result<Vec<(String, String)>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), val.trim().to_string()))
            }
            _ => Err(format!(
                "`{kv}` is not key=value (expected e.g. k8s.pod.name=web-1,k8s.namespace.name=default)"
            )),
        })
        .collect()
}

/// A comma-separated list of addresses (IPv4 and IPv6 listeners).
fn parse_addrs(v: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs = v
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse().map_err(|_| {
                format!("`{a}` is not an IP address and port such as 0.0.0.0:4143 or [::]:4143")
            })
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    if addrs.is_empty() {
        return Err("expected at least one address".into());
    }
    Ok(addrs)
}

fn parse_bounded(v: &str, min: usize, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer from {min} to {max}")),
    }
}

/// Parses durations such as `10s`, `300ms`, `2m`, `1h` (a bare number means
/// seconds, as in Linkerd's configuration).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let err = || "expected a duration such as 500ms, 10s, 2m or 1h".to_string();
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err()),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a comma-separated list of ports and inclusive ranges.
pub fn parse_ports(v: &str) -> Result<BTreeSet<u16>, String> {
    let mut ports = BTreeSet::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(format!("`{s}` is not a port from 1 to 65535")),
            }
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                if lo > hi {
                    return Err(format!("range `{part}` is empty"));
                }
                ports.extend(lo..=hi);
            }
            None => {
                ports.insert(port(part)?);
            }
        }
    }
    Ok(ports)
}

// === impl ConfigErrors ===

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: {}",
            self.name, self.value, self.reason
        )
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests;
