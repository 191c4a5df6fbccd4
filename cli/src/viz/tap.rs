//! `strand viz tap`: the live requests of a workload's, pod's or
//! namespace's proxies, from each proxy's tap API, as `linkerd viz tap`
//! shows them.
//!
//! ```text
//!  strand ── a certificate for tap.linkerd-viz.serviceaccount... (1 h, signed with the local issuer)
//!     ├──mTLS (SNI = the pod's identity)──▶ <pod-ip>:4190 Tap/Observe{limit, match, extract}
//!     └── one stream per pod ──▶ `req` / `rsp` / `end` lines, or one JSON object per event
//! ```

use crate::ctx::Ctx;
use anyhow::{Context as _, bail};
use clap::Args;
use linkerd2_proxy_api::http_types;
use linkerd2_proxy_api::tap::observe_request::{self, r#match as m};
use linkerd2_proxy_api::tap::{TapEvent, eos, tap_client::TapClient, tap_event};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use strand_controller_core::{Kind, Pod, Resource, TrustDomain};
use strand_viz::stat::{ResourceKind, ResourceRef};
use tokio::sync::mpsc;

/// The proxy's control port, where it serves the tap API.
pub const PROXY_CONTROL_PORT: u16 = 4190;

/// How long the tap certificate lasts: longer than any tap session needs.
const CERT_LIFETIME: Duration = Duration::from_secs(3600);

/// A pod's proxy on this host answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct TapArgs {
    #[command(flatten)]
    filter: TapFilter,
    /// Lines as `linkerd viz tap` prints them, or `json`: one object per
    /// event, with request and response headers.
    #[arg(long, short = 'o', default_value = "line", value_parser = ["line", "json"])]
    output: String,
}

/// Whose requests, and which: shared by `tap` and `top`.
#[derive(Args, Debug)]
pub struct TapFilter {
    /// `deploy/NAME`, `po/NAME` or `ns/NAME`: whose proxies to tap (both
    /// directions: requests the pods receive and send).
    pub(super) resource: ResourceRef,
    /// The namespace of the resource.
    #[arg(long, short = 'n', default_value = "default")]
    pub(super) namespace: String,
    /// Only requests whose path starts with this (`/api`).
    #[arg(long, value_name = "PREFIX")]
    pub(super) path: Option<String>,
    /// Only requests with this method (`GET`, `POST`).
    #[arg(long)]
    pub(super) method: Option<String>,
    /// Only requests with this authority (`web-svc.emojivoto.svc.cluster.local:80`).
    #[arg(long)]
    pub(super) authority: Option<String>,
    /// Only requests with this scheme (`http` or `https`).
    #[arg(long)]
    pub(super) scheme: Option<String>,
    /// Stop after this many requests have ended (default: until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests: Option<u32>,
}

/// One pod to tap.
struct Target {
    name: String,
    addr: SocketAddr,
    identity: String,
}

pub async fn tap(ctx: &Ctx, args: TapArgs) -> anyhow::Result<u8> {
    let json = args.output == "json";
    let rx = open(ctx, &args.filter, json).await?;
    each_event(rx, args.filter.max_requests, |ev| {
        if json {
            println!("{}", render_json(ev));
        } else if let Some(line) = render_line(ev) {
            println!("{line}");
        }
    })
    .await
}

/// What a tap stream carries: events, or why a pod could not be tapped.
pub type Events = mpsc::Receiver<Result<TapEvent, String>>;

/// Opens a tap on every pod `filter` names (with headers when `headers`),
/// all their events merged into one queue.
pub async fn open(ctx: &Ctx, filter: &TapFilter, headers: bool) -> anyhow::Result<Events> {
    let observe = observe_request(filter, headers)?;
    let targets = targets(ctx, filter).await?;
    let trust = TrustDomain::default();
    let dir = crate::identity::identity_dir(ctx);
    let issuer = strand_identity::Issuer::load(&dir).with_context(|| {
        format!(
            "tapping needs the control plane's CA files in {} (run as root)",
            dir.display()
        )
    })?;
    let cert = issuer
        .issue_keyed(&strand_identity::tap_identity(&trust), CERT_LIFETIME)
        .map_err(|e| anyhow::anyhow!("cannot issue the tap certificate: {e}"))?;
    let anchors = issuer.trust_anchors_pem().as_bytes().to_vec();

    let (tx, rx) = mpsc::channel(1024);
    for t in targets {
        let (tx, anchors, observe) = (tx.clone(), anchors.clone(), observe.clone());
        let (chain, key) = (cert.chain.clone(), cert.key.clone_key());
        tokio::spawn(async move {
            let res = observe_pod(&t, &anchors, chain, key, observe, &tx).await;
            if let Err(e) = res {
                let _ = tx
                    .send(Err(format!(
                        "cannot tap pod {} at {}: {e:#}",
                        t.name, t.addr
                    )))
                    .await;
            }
        });
    }
    Ok(rx)
}

/// Calls `f` with each event until every stream ended, `max_requests`
/// requests ended, or Ctrl-C. Exit code 1 when no pod could be tapped.
pub async fn each_event(
    mut rx: Events,
    max_requests: Option<u32>,
    mut f: impl FnMut(&TapEvent),
) -> anyhow::Result<u8> {
    let mut ended = 0u32;
    let mut failures = 0usize;
    let mut events = 0usize;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(ev) = ev else { break };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("strand: {e}");
                failures += 1;
                continue;
            }
        };
        events += 1;
        f(&ev);
        if is_end(&ev) {
            ended += 1;
            if max_requests.is_some_and(|max| ended >= max) {
                break;
            }
        }
    }
    Ok(if events == 0 && failures > 0 { 1 } else { 0 })
}

/// The pods the resource names, meshed and with an address.
async fn targets(ctx: &Ctx, args: &TapFilter) -> anyhow::Result<Vec<Target>> {
    let Some(name) = args.resource.name.as_deref() else {
        bail!("name what to tap: deploy/NAME, po/NAME or ns/NAME");
    };
    if args.resource.kind == ResourceKind::Service {
        bail!(
            "tap a workload (deploy/NAME), a pod (po/NAME) or a namespace (ns/NAME); a Service's traffic is seen from its clients' proxies"
        );
    }
    let namespace = match args.resource.kind {
        ResourceKind::Namespace => name,
        _ => args.namespace.as_str(),
    };
    let pods: Vec<Pod> = ctx
        .client()?
        .list(Kind::Pod, Some(namespace))
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Resource::Pod(p) => Some(p),
            _ => None,
        })
        .filter(|p| match args.resource.kind {
            ResourceKind::Deployment => p.spec.workload == name,
            ResourceKind::Pod => p.metadata.name == name,
            ResourceKind::Namespace => true,
            ResourceKind::Service => false,
        })
        .collect();
    let trust = TrustDomain::default();
    let targets: Vec<Target> = pods
        .iter()
        .filter_map(|p| {
            let identity = p.identity(&trust)?;
            Some(Target {
                name: p.metadata.name.clone(),
                addr: SocketAddr::new(p.status.pod_ip?, PROXY_CONTROL_PORT),
                identity: identity.to_string(),
            })
        })
        .collect();
    if targets.is_empty() {
        let what = match args.resource.kind {
            ResourceKind::Namespace => format!("namespace {name}"),
            _ => format!("{name} in namespace {namespace}"),
        };
        bail!(
            "no meshed pod with an address for {what} (list them with `strand get pods -n {namespace}`)"
        );
    }
    Ok(targets)
}

/// The tap request the flags describe: every flag given must match.
fn observe_request(
    args: &TapFilter,
    with_headers: bool,
) -> anyhow::Result<linkerd2_proxy_api::tap::ObserveRequest> {
    use m::http::string_match::Match as S;
    let http = |h: m::http::Match| observe_request::Match {
        r#match: Some(m::Match::Http(m::Http { r#match: Some(h) })),
    };
    let mut all = Vec::new();
    if let Some(p) = &args.path {
        if !p.starts_with('/') {
            bail!("--path {p:?} must start with /");
        }
        all.push(http(m::http::Match::Path(m::http::StringMatch {
            r#match: Some(S::Prefix(p.clone())),
        })));
    }
    if let Some(a) = &args.authority {
        all.push(http(m::http::Match::Authority(m::http::StringMatch {
            r#match: Some(S::Exact(a.clone())),
        })));
    }
    if let Some(method) = &args.method {
        let method = method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            bail!("--method {method:?} is not an HTTP method");
        }
        all.push(http(m::http::Match::Method(http_types::HttpMethod {
            r#type: Some(http_types::http_method::Type::Unregistered(method)),
        })));
    }
    if let Some(s) = &args.scheme {
        let s = s.to_ascii_lowercase();
        if s != "http" && s != "https" {
            bail!("--scheme {s:?}: expected http or https");
        }
        all.push(http(m::http::Match::Scheme(s.as_str().into())));
    }
    let headers = observe_request::Extract {
        extract: Some(observe_request::extract::Extract::Http(
            observe_request::extract::Http {
                extract: Some(observe_request::extract::http::Extract::Headers(
                    observe_request::extract::http::Headers {},
                )),
            },
        )),
    };
    Ok(linkerd2_proxy_api::tap::ObserveRequest {
        limit: args.max_requests.unwrap_or(u32::MAX),
        r#match: (!all.is_empty()).then_some(observe_request::Match {
            r#match: Some(m::Match::All(m::Seq { matches: all })),
        }),
        extract: with_headers.then_some(headers),
    })
}

/// Streams one pod's events into `tx` until its proxy ends the tap.
async fn observe_pod(
    t: &Target,
    anchors: &[u8],
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    req: linkerd2_proxy_api::tap::ObserveRequest,
    tx: &mpsc::Sender<Result<TapEvent, String>>,
) -> anyhow::Result<()> {
    let channel = tokio::time::timeout(
        CONNECT_TIMEOUT,
        strand_identity::client::mesh_channel(t.addr, anchors, &t.identity, chain, key),
    )
    .await
    .context("connection not made in time")??;
    let mut client = TapClient::new(channel);
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, client.observe(req))
        .await
        .context("the proxy did not answer in time")?
        .map_err(|s| {
            anyhow::anyhow!(
                "{}: {} (is this a strand proxy with the tap API on?)",
                s.code(),
                s.message()
            )
        })?
        .into_inner();
    while let Some(ev) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("the stream failed: {}", s.message()))?
    {
        if tx.send(Ok(ev)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn http_event(ev: &TapEvent) -> Option<&tap_event::http::Event> {
    match ev.event.as_ref()? {
        tap_event::Event::Http(h) => h.event.as_ref(),
    }
}

pub(super) fn is_end(ev: &TapEvent) -> bool {
    matches!(http_event(ev), Some(tap_event::http::Event::ResponseEnd(_)))
}

pub(super) fn addr(a: Option<&linkerd2_proxy_api::net::TcpAddress>) -> String {
    a.and_then(|a| SocketAddr::try_from(*a).ok())
        .map_or_else(|| "?".to_string(), |a| a.to_string())
}

pub(super) fn micros(d: Option<&prost_types::Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.seconds).unwrap_or(0) * 1_000_000
            + u64::try_from(d.nanos).unwrap_or(0) / 1_000
    })
}

/// The parts every line shares: id, direction, addresses, tls.
fn prefix(ev: &TapEvent, id: Option<&tap_event::http::StreamId>) -> String {
    let outbound = ev.proxy_direction == i32::from(tap_event::ProxyDirection::Outbound);
    let meta = if outbound {
        ev.destination_meta.as_ref()
    } else {
        ev.source_meta.as_ref()
    };
    let tls = meta
        .and_then(|m| m.labels.get("tls"))
        .map_or("", String::as_str);
    format!(
        "id={} proxy={} src={} dst={} tls={tls}",
        id.map_or_else(|| "?".to_string(), |i| format!("{}:{}", i.base, i.stream)),
        if outbound { "out" } else { "in " },
        addr(ev.source.as_ref()),
        addr(ev.destination.as_ref()),
    )
}

/// One event as `linkerd viz tap` prints it.
fn render_line(ev: &TapEvent) -> Option<String> {
    use tap_event::http::Event;
    Some(match http_event(ev)? {
        Event::RequestInit(r) => format!(
            "req {} :method={} :authority={} :path={}",
            prefix(ev, r.id.as_ref()),
            method_name(r.method.as_ref()),
            r.authority,
            r.path
        ),
        Event::ResponseInit(r) => format!(
            "rsp {} :status={} latency={}µs",
            prefix(ev, r.id.as_ref()),
            r.http_status,
            micros(r.since_request_init.as_ref())
        ),
        Event::ResponseEnd(r) => {
            let end = match r.eos.as_ref().and_then(|e| e.end.as_ref()) {
                Some(eos::End::GrpcStatusCode(c)) => format!(" grpc-status={}", grpc_name(*c)),
                Some(eos::End::ResetErrorCode(c)) => format!(" reset-error={c}"),
                None => String::new(),
            };
            format!(
                "end {}{end} duration={}µs response-length={}B",
                prefix(ev, r.id.as_ref()),
                micros(r.since_response_init.as_ref()),
                r.response_bytes
            )
        }
    })
}

/// One event as a JSON object.
pub(super) fn render_json(ev: &TapEvent) -> serde_json::Value {
    use tap_event::http::Event;
    let outbound = ev.proxy_direction == i32::from(tap_event::ProxyDirection::Outbound);
    let labels =
        |m: Option<&tap_event::EndpointMeta>| m.map(|m| m.labels.clone()).unwrap_or_default();
    let headers = |h: Option<&http_types::Headers>| -> serde_json::Value {
        h.map_or(serde_json::Value::Null, |h| {
            h.headers
                .iter()
                .map(|h| json!([h.name, String::from_utf8_lossy(&h.value)]))
                .collect()
        })
    };
    let id = |i: Option<&tap_event::http::StreamId>| i.map(|i| format!("{}:{}", i.base, i.stream));
    let mut doc = json!({
        "proxyDirection": if outbound { "outbound" } else { "inbound" },
        "source": addr(ev.source.as_ref()),
        "sourceMeta": labels(ev.source_meta.as_ref()),
        "destination": addr(ev.destination.as_ref()),
        "destinationMeta": labels(ev.destination_meta.as_ref()),
    });
    let event = match http_event(ev) {
        Some(Event::RequestInit(r)) => json!({
            "type": "requestInit",
            "id": id(r.id.as_ref()),
            "method": method_name(r.method.as_ref()),
            "scheme": scheme_name(r.scheme.as_ref()),
            "authority": r.authority,
            "path": r.path,
            "headers": headers(r.headers.as_ref()),
        }),
        Some(Event::ResponseInit(r)) => json!({
            "type": "responseInit",
            "id": id(r.id.as_ref()),
            "status": r.http_status,
            "sinceRequestInitMicros": micros(r.since_request_init.as_ref()),
            "headers": headers(r.headers.as_ref()),
        }),
        Some(Event::ResponseEnd(r)) => json!({
            "type": "responseEnd",
            "id": id(r.id.as_ref()),
            "sinceRequestInitMicros": micros(r.since_request_init.as_ref()),
            "sinceResponseInitMicros": micros(r.since_response_init.as_ref()),
            "responseBytes": r.response_bytes,
            "grpcStatus": match r.eos.as_ref().and_then(|e| e.end.as_ref()) {
                Some(eos::End::GrpcStatusCode(c)) => Some(*c),
                _ => None,
            },
            "resetErrorCode": match r.eos.as_ref().and_then(|e| e.end.as_ref()) {
                Some(eos::End::ResetErrorCode(c)) => Some(*c),
                _ => None,
            },
            "trailers": headers(r.trailers.as_ref()),
        }),
        None => json!({"type": "unknown"}),
    };
    if let (Some(d), serde_json::Value::Object(e)) = (doc.as_object_mut(), event) {
        d.extend(e);
    }
    doc
}

pub(super) fn method_name(m: Option<&http_types::HttpMethod>) -> String {
    use http_types::http_method::{Registered, Type};
    match m.and_then(|m| m.r#type.as_ref()) {
        Some(Type::Registered(r)) => Registered::try_from(*r)
            .map_or_else(|_| "?".to_string(), |r| r.as_str_name().to_string()),
        Some(Type::Unregistered(s)) => s.clone(),
        None => "?".to_string(),
    }
}

fn scheme_name(s: Option<&http_types::Scheme>) -> String {
    use http_types::scheme::{Registered, Type};
    match s.and_then(|s| s.r#type.as_ref()) {
        Some(Type::Registered(r)) => match Registered::try_from(*r) {
            Ok(Registered::Http) => "http".to_string(),
            Ok(Registered::Https) => "https".to_string(),
            Err(_) => "?".to_string(),
        },
        Some(Type::Unregistered(s)) => s.clone(),
        None => "?".to_string(),
    }
}

/// gRPC's status names, as Linkerd prints them.
fn grpc_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .map_or_else(|| code.to_string(), |n| (*n).to_string())
}

#[cfg(test)]
mod tests;
