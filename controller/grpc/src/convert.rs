//! Small conversions shared by the APIs: how a service port's protocol is
//! chosen, how a service is named in `Metadata`, protobuf durations.

use linkerd2_proxy_api::meta::{Metadata, Resource, metadata};
use strand_controller_core::{ServiceKey, ServicePortView};

/// The protocol the outbound side should expect on a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Detect HTTP/1, HTTP/2 or opaque from the first bytes.
    Detect,
    /// No detection: proxy the bytes (server-speaks-first protocols, TLS, ...).
    Opaque,
    Http1,
    Http2,
    Grpc,
}

/// Linkerd's default opaque ports (SMTP, submission, MySQL, Galera SST,
/// PostgreSQL, Redis, Elasticsearch transport, memcached): protocols where
/// the server speaks first or detection would wait its full timeout. Used
/// for addresses that are no service, whose ports nothing else describes.
pub(crate) const DEFAULT_OPAQUE_PORTS: [u16; 8] = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// Chooses a port's protocol: the `config.linkerd.io/opaque-ports`
/// annotation first, then the port's `appProtocol` with the values Linkerd
/// understands (`linkerd.io/opaque`, `linkerd.io/tcp`, `http`,
/// `kubernetes.io/h2c`) plus `grpc` (a common convention, e.g. Istio's);
/// anything else is detected.
pub(crate) fn protocol(view: &ServicePortView) -> Protocol {
    if view.opaque {
        return Protocol::Opaque;
    }
    let Some(app) = view.app_protocol.as_deref() else {
        return Protocol::Detect;
    };
    let is = |v: &str| app.eq_ignore_ascii_case(v);
    if is("linkerd.io/opaque") || is("linkerd.io/tcp") {
        Protocol::Opaque
    } else if is("http") {
        Protocol::Http1
    } else if is("kubernetes.io/h2c") {
        Protocol::Http2
    } else if is("grpc") {
        Protocol::Grpc
    } else {
        Protocol::Detect
    }
}

/// A service port as Linkerd's policy controller names it.
pub(crate) fn service_metadata(service: &ServiceKey, port: u16) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Resource(Resource {
            group: "core".to_string(),
            kind: "Service".to_string(),
            name: service.name.clone(),
            namespace: service.namespace.clone(),
            section: String::new(),
            port: port.into(),
        })),
    }
}

/// A named default (an implicit policy that is no resource).
pub(crate) fn default_metadata(name: &str) -> Metadata {
    Metadata {
        kind: Some(metadata::Kind::Default(name.to_string())),
    }
}

/// A protobuf duration, inferred from where it goes, so that this crate
/// needs no direct `prost-types` dependency.
pub(crate) fn duration<T: TryFrom<std::time::Duration>>(d: std::time::Duration) -> Option<T> {
    T::try_from(d).ok()
}

#[cfg(test)]
mod tests;
