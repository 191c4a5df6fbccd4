//! `Destination/GetProfile` answers: a service port's name, opaque flag and
//! parent reference, and the service's ServiceProfile as Linkerd's
//! destination service serves it (routes with their conditions, response
//! classes, retryability and timeout; the retry budget; destination
//! overrides; a reference to the profile). Without a profile, routes are
//! empty and the retry budget absent.

use crate::convert::{self, DEFAULT_OPAQUE_PORTS, Protocol};
use crate::destination::endpoints::ENDPOINT_WEIGHT;
use crate::stream::Updates;
use linkerd2_proxy_api::destination::{
    self as api, DestinationProfile, HttpStatusRange, PathMatch, WeightedAddr, WeightedDst,
    request_match, response_match,
};
use linkerd2_proxy_api::http_types::{HttpMethod, http_method};
use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use strand_controller_core::{
    ProfileRoute, RequestMatch, ResponseMatch, SERVICE_PROFILE_GROUP, ServiceKey, ServicePortView,
    ServiceProfile, ServiceWatch, Target,
};

/// The profile of one service port, re-sent when it changes.
pub(crate) struct ProfileUpdates {
    rx: ServiceWatch,
    /// Names dst override authorities that are services (`backend_ref`).
    cluster_domain: String,
    /// The inputs of the last profile sent: endpoint churn wakes this stream
    /// too, and must not cost a new message.
    last: Option<Sent>,
}

/// What a sent profile was made of.
struct Sent {
    fqdn: String,
    opaque: bool,
    profile: Option<Arc<ServiceProfile>>,
}

/// A service port's profile.
pub(crate) fn service(view: &ServicePortView, cluster_domain: &str) -> DestinationProfile {
    let mut out = DestinationProfile {
        fully_qualified_name: view.fqdn.clone(),
        opaque_protocol: is_opaque(view),
        parent_ref: Some(convert::service_metadata(&view.service, view.port)),
        ..Default::default()
    };
    if let Some(p) = &view.profile {
        out.routes = p.spec.routes.iter().map(route).collect();
        let budget = p.spec.retry_budget();
        out.retry_budget = Some(api::RetryBudget {
            // The API carries an f32; validation keeps the ratio within
            // 0..=1000, where it loses nothing that matters.
            retry_ratio: budget.retry_ratio as f32,
            min_retries_per_second: budget.min_retries_per_second,
            ttl: convert::duration(budget.ttl()),
        });
        out.dst_overrides = p
            .spec
            .dst_overrides
            .iter()
            .map(|d| WeightedDst {
                authority: d.authority.clone(),
                weight: d.weight.milli(),
                backend_ref: backend_ref(&d.authority, cluster_domain),
            })
            .collect();
        out.profile_ref = Some(profile_metadata(p));
    }
    out
}

/// The profile of an address that is no service, as Linkerd answers it: no
/// name, the address itself as the endpoint, opaque on Linkerd's default
/// opaque ports.
///
/// Linkerd also fills in a pod's identity and protocol hint here so that
/// meshed pods reached by IP get mTLS; that needs a pod-by-IP lookup that
/// `DiscoverServices` does not offer yet, so the endpoint is plain.
pub(crate) fn endpoint(addr: SocketAddr) -> DestinationProfile {
    DestinationProfile {
        opaque_protocol: DEFAULT_OPAQUE_PORTS.contains(&addr.port()),
        endpoint: Some(WeightedAddr {
            addr: Some(addr.into()),
            weight: ENDPOINT_WEIGHT,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn is_opaque(view: &ServicePortView) -> bool {
    convert::protocol(view) == Protocol::Opaque
}

/// The ServiceProfile resource, as Linkerd's destination service names it.
fn profile_metadata(p: &ServiceProfile) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Resource(Resource {
            group: SERVICE_PROFILE_GROUP.to_string(),
            kind: "ServiceProfile".to_string(),
            name: p.metadata.name.clone(),
            namespace: p.metadata.namespace.clone(),
            section: String::new(),
            port: 0,
        })),
    }
}

/// A dst override's Service port, when its authority names one.
fn backend_ref(authority: &str, cluster_domain: &str) -> Option<Metadata> {
    let Some(Target::Name { host, port }) = Target::parse(authority) else {
        return None;
    };
    let service = ServiceKey::from_fqdn(&host, cluster_domain)?;
    Some(convert::service_metadata(&service, port))
}

fn route(r: &ProfileRoute) -> api::Route {
    api::Route {
        condition: Some(request_match(&r.condition)),
        response_classes: r
            .response_classes
            .iter()
            .map(|c| api::ResponseClass {
                condition: Some(response_match(&c.condition)),
                is_failure: c.is_failure(),
            })
            .collect(),
        metrics_labels: HashMap::from([("route".to_string(), r.name.clone())]),
        is_retryable: r.is_retryable(),
        timeout: convert::duration(r.timeout()),
    }
}

/// A condition; an object with several fields is the `all` of them, as
/// Linkerd reads it.
fn request_match(m: &RequestMatch) -> api::RequestMatch {
    use request_match::{Match, Seq};
    let seq = |ms: &[RequestMatch]| Seq {
        matches: ms.iter().map(request_match).collect(),
    };
    let mut parts = Vec::with_capacity(m.len());
    if let Some(method) = &m.method {
        parts.push(Match::Method(http_method(method)));
    }
    if let Some(regex) = &m.path_regex {
        parts.push(Match::Path(PathMatch {
            regex: regex.clone(),
        }));
    }
    if let Some(all) = &m.all {
        parts.push(Match::All(seq(all)));
    }
    if let Some(any) = &m.any {
        parts.push(Match::Any(seq(any)));
    }
    if let Some(not) = &m.not {
        parts.push(Match::Not(Box::new(request_match(not))));
    }
    let r#match = conjunction(parts, |parts| {
        Match::All(Seq {
            matches: parts
                .into_iter()
                .map(|p| api::RequestMatch { r#match: Some(p) })
                .collect(),
        })
    });
    api::RequestMatch { r#match }
}

fn response_match(m: &ResponseMatch) -> api::ResponseMatch {
    use response_match::{Match, Seq};
    let seq = |ms: &[ResponseMatch]| Seq {
        matches: ms.iter().map(response_match).collect(),
    };
    let mut parts = Vec::with_capacity(m.len());
    if let Some(status) = &m.status {
        // Both bounds, always: the API reads a missing one as "just the
        // other", where the profile's defaults are 100 and 599.
        let (min, max) = status.bounds();
        parts.push(Match::Status(HttpStatusRange {
            min: min.into(),
            max: max.into(),
        }));
    }
    if let Some(all) = &m.all {
        parts.push(Match::All(seq(all)));
    }
    if let Some(any) = &m.any {
        parts.push(Match::Any(seq(any)));
    }
    if let Some(not) = &m.not {
        parts.push(Match::Not(Box::new(response_match(not))));
    }
    let r#match = conjunction(parts, |parts| {
        Match::All(Seq {
            matches: parts
                .into_iter()
                .map(|p| api::ResponseMatch { r#match: Some(p) })
                .collect(),
        })
    });
    api::ResponseMatch { r#match }
}

/// One part as itself, several as their `all`. None (a condition stored
/// before validation refused empty ones) stays empty, which proxies
/// refuse, rather than becoming an `all` of nothing, which matches
/// everything.
fn conjunction<M>(mut parts: Vec<M>, all: impl FnOnce(Vec<M>) -> M) -> Option<M> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(all(parts)),
    }
}

/// The registered methods as the enum, others by name.
fn http_method(method: &str) -> HttpMethod {
    match http::Method::from_bytes(method.as_bytes()) {
        Ok(m) => HttpMethod::from(m),
        // Validation refuses what is no method; pass it on for the proxy
        // to refuse should one have been stored before.
        Err(_) => HttpMethod {
            r#type: Some(http_method::Type::Unregistered(method.to_string())),
        },
    }
}

// === impl ProfileUpdates ===

impl ProfileUpdates {
    pub(crate) fn new(rx: ServiceWatch, cluster_domain: &str) -> Self {
        Self {
            rx,
            cluster_domain: cluster_domain.to_string(),
            last: None,
        }
    }
}

impl Updates for ProfileUpdates {
    type Item = DestinationProfile;

    async fn next(&mut self) -> Option<DestinationProfile> {
        loop {
            {
                let current = self.rx.borrow_and_update();
                // While the service is gone the last profile stays: the proxy
                // keeps it, and nothing better is known.
                if let Some(view) = current.as_deref()
                    && !self.last.as_ref().is_some_and(|last| last.is(view))
                {
                    self.last = Some(Sent {
                        fqdn: view.fqdn.clone(),
                        opaque: is_opaque(view),
                        profile: view.profile.clone(),
                    });
                    return Some(service(view, &self.cluster_domain));
                }
            }
            self.rx.changed().await.ok()?;
        }
    }
}

// === impl Sent ===

impl Sent {
    fn is(&self, view: &ServicePortView) -> bool {
        let same_profile = match (&self.profile, &view.profile) {
            // Views share the index's profile: usually the same pointer.
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        };
        self.fqdn == view.fqdn && self.opaque == is_opaque(view) && same_profile
    }
}

#[cfg(test)]
mod tests;
