//! Label sets, encoded by hand so that absent labels are omitted (as
//! Linkerd's proxy does) and values are shared `Arc<str>`s rather than
//! fresh strings on every request.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Peer {
    /// The connection the proxy accepted.
    Src,
    /// The connection the proxy opened.
    Dst,
}

/// Why a connection carries no mTLS identity (Linkerd's `no_tls_reason`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum NoTlsReason {
    /// Inbound: the client did not use mesh TLS.
    NoTlsFromRemote,
    /// Outbound: discovery named no identity for the target.
    NotProvidedByServiceDiscovery,
    /// Traffic to or from loopback.
    Loopback,
    /// Outbound to a meshed endpoint, but this proxy has no identity.
    Disabled,
}

/// The `tls` label and its companions.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Tls {
    NoIdentity(NoTlsReason),
    /// A TLS stream the proxy passed through without terminating it.
    Opaque,
    /// Mesh TLS: the peer's identity (`client_id` inbound, `server_id`
    /// outbound).
    Established(PeerId),
}

/// Who is at the other end of a mesh TLS connection.
#[derive(Clone, Debug, Hash, Eq)]
#[expect(
    clippy::derived_hash_with_manual_eq,
    reason = "the manual PartialEq is the derived one with a pointer shortcut: equal values hash alike"
)]
pub enum PeerId {
    /// Inbound: the client's identity, when it presented a certificate.
    Client(Option<Arc<str>>),
    /// Outbound: the identity the server proved.
    Server(Arc<str>),
}

/// Label sets are compared on every request (the per-connection handle
/// cache), and theirs name the one `Arc` of the connection's peer
/// identity: pointer equality answers without comparing the names (std
/// does not do that for `Arc<str>`).
impl PartialEq for PeerId {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
            Arc::ptr_eq(a, b) || a == b
        }
        match (self, other) {
            (PeerId::Client(Some(a)), PeerId::Client(Some(b))) => same(a, b),
            (PeerId::Client(None), PeerId::Client(None)) => true,
            (PeerId::Server(a), PeerId::Server(b)) => same(a, b),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Classification {
    Success,
    Failure,
}

/// Labels shared by the HTTP metrics of one target.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TargetLabels {
    pub direction: Direction,
    /// The request's authority (`:authority` or `Host`), when it had one.
    pub authority: Option<Arc<str>>,
    /// The original destination, `ip:port`.
    pub target_addr: Arc<str>,
    pub tls: Tls,
    /// Outbound: the labels discovery gave the chosen endpoint.
    pub dst: DstLabels,
}

/// The labels discovery gives an endpoint (`namespace`, `service`,
/// `deployment`, `pod`, `serviceaccount`, ...), reported with a `dst_`
/// prefix as Linkerd's proxy does. Built once per endpoint and shared.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct DstLabels(Option<Arc<[Label]>>);

/// One `dst_*` label: name and value.
type Label = (Arc<str>, Arc<str>);

/// What the metrics of a request say about where it went: the `tls`
/// labels and the endpoint's `dst_*` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct EndpointLabels {
    pub tls: Tls,
    pub dst: DstLabels,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ResponseLabels {
    pub target: TargetLabels,
    /// Absent when the proxy could not produce a response at all.
    pub status_code: Option<u16>,
    pub classification: Classification,
    /// From `grpc-status` in the trailers (or trailers-only headers).
    pub grpc_status: Option<u32>,
    /// The proxy's own error, when the response is one it made.
    pub error: Option<&'static str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TcpLabels {
    pub direction: Direction,
    pub peer: Peer,
    pub target_addr: Arc<str>,
    pub tls: Tls,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TcpCloseLabels {
    pub tcp: TcpLabels,
    pub classification: Classification,
}

fn label(enc: &mut LabelSetEncoder<'_>, key: &str, value: &str) -> fmt::Result {
    (key, value).encode(enc.encode_label())
}

// === impl Direction ===

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

// === impl DstLabels ===

impl DstLabels {
    /// `dst_<key>` for each of discovery's labels; keys that are not valid
    /// Prometheus label names are skipped.
    pub fn from_discovery<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let set: Vec<Label> = labels
            .into_iter()
            .filter(|(k, _)| valid_label_name(k))
            .map(|(k, v)| (Arc::from(format!("dst_{k}")), Arc::from(v.as_str())))
            .collect();
        if set.is_empty() {
            DstLabels(None)
        } else {
            DstLabels(Some(set.into()))
        }
    }

    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        for (k, v) in self.iter() {
            label(enc, k, v)?;
        }
        Ok(())
    }

    /// Each label as (`dst_<key>`, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|set| set.iter())
            .map(|(k, v)| (&**k, &**v))
    }
}

fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// === impl EndpointLabels ===

impl EndpointLabels {
    /// A connection's own `tls` label and no endpoint (inbound, or before
    /// an endpoint is chosen).
    pub fn tls(tls: Tls) -> Self {
        EndpointLabels {
            tls,
            dst: DstLabels::default(),
        }
    }
}

// === impl Tls ===

impl Tls {
    /// The identity an outbound connection must verify, if any.
    pub fn server_id(&self) -> Option<&Arc<str>> {
        match self {
            Tls::Established(PeerId::Server(id)) => Some(id),
            _ => None,
        }
    }

    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.visit_labels(|k, v| label(enc, k, v))
    }

    /// Calls `f` with each of the `tls` labels (`tls`, and `no_tls_reason`,
    /// `client_id` or `server_id`).
    pub fn visit_labels<E>(
        &self,
        mut f: impl FnMut(&'static str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Tls::NoIdentity(reason) => {
                f("tls", "no_identity")?;
                let r = match reason {
                    NoTlsReason::NoTlsFromRemote => "no_tls_from_remote",
                    NoTlsReason::NotProvidedByServiceDiscovery => {
                        "not_provided_by_service_discovery"
                    }
                    NoTlsReason::Loopback => "loopback",
                    NoTlsReason::Disabled => "disabled",
                };
                f("no_tls_reason", r)
            }
            Tls::Opaque => f("tls", "opaque"),
            Tls::Established(peer) => {
                f("tls", "true")?;
                match peer {
                    PeerId::Client(Some(id)) => f("client_id", id),
                    PeerId::Client(None) => Ok(()),
                    PeerId::Server(id) => f("server_id", id),
                }
            }
        }
    }
}

impl Classification {
    fn as_str(self) -> &'static str {
        match self {
            Classification::Success => "success",
            Classification::Failure => "failure",
        }
    }
}

// === impl EncodeLabelSet ===

impl EncodeLabelSet for TargetLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        label(enc, "direction", self.direction.as_str())?;
        if let Some(a) = &self.authority {
            label(enc, "authority", a)?;
        }
        label(enc, "target_addr", &self.target_addr)?;
        self.tls.encode(enc)?;
        self.dst.encode(enc)
    }
}

impl EncodeLabelSet for ResponseLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.target.encode(enc)?;
        if let Some(code) = self.status_code {
            label(enc, "status_code", &code.to_string())?;
        }
        label(enc, "classification", self.classification.as_str())?;
        if let Some(g) = self.grpc_status {
            label(enc, "grpc_status", &g.to_string())?;
        }
        if let Some(e) = self.error {
            label(enc, "error", e)?;
        }
        Ok(())
    }
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        label(enc, "direction", self.direction.as_str())?;
        label(
            enc,
            "peer",
            if self.peer == Peer::Src { "src" } else { "dst" },
        )?;
        label(enc, "target_addr", &self.target_addr)?;
        self.tls.encode(enc)
    }
}

impl EncodeLabelSet for TcpCloseLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> fmt::Result {
        self.tcp.encode(enc)?;
        label(enc, "classification", self.classification.as_str())
    }
}
