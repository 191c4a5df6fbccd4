//! `io.linkerd.proxy.destination.Update`, decoded only as far as the
//! benchmark needs: the addresses of `Add`s and `Remove`s.
//!
//! The watchers share two cores with the controller, and the initial sets
//! alone are `watchers x endpoints` addresses (10 million, about 2.5 GB of
//! protobuf, in the default run). Decoding every endpoint's labels, identity
//! and hints into maps and strings would make the client, not the
//! controller, what the run measures. These types keep the field numbers of
//! `destination.proto` and leave the other fields out, which prost skips
//! without allocating; a test checks them against the real types.

use std::net::SocketAddr;

use linkerd2_proxy_api::net::TcpAddress;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Update {
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `WeightedAddrSet`.
    #[prost(message, tag = "1")]
    Add(AddSet),
    /// `AddrSet`.
    #[prost(message, tag = "2")]
    Remove(RemoveSet),
    /// `NoEndpoints`.
    #[prost(message, tag = "3")]
    NoEndpoints(NoEndpoints),
}

/// `WeightedAddrSet` without its metric labels.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddSet {
    #[prost(message, repeated, tag = "1")]
    pub addrs: Vec<AddrOnly>,
}

/// `WeightedAddr` without anything but its address.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddrOnly {
    #[prost(message, optional, tag = "1")]
    pub addr: Option<TcpAddress>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveSet {
    #[prost(message, repeated, tag = "1")]
    pub addrs: Vec<TcpAddress>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NoEndpoints {
    #[prost(bool, tag = "1")]
    pub exists: bool,
}

// === impl AddSet ===

impl AddSet {
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .filter_map(|a| a.addr)
            .filter_map(|a| SocketAddr::try_from(a).ok())
            .collect()
    }
}

// === impl RemoveSet ===

impl RemoveSet {
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .filter_map(|a| SocketAddr::try_from(*a).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd2_proxy_api::destination as api;
    use prost::Message;
    use std::collections::HashMap;

    fn full_addr(addr: SocketAddr) -> api::WeightedAddr {
        let name = api::tls_identity::DnsLikeIdentity {
            name: "default.default.serviceaccount.identity.linkerd.cluster.local".into(),
        };
        api::WeightedAddr {
            addr: Some(addr.into()),
            weight: 10_000,
            metric_labels: HashMap::from([("pod".into(), "big-00001".into())]),
            tls_identity: Some(api::TlsIdentity {
                strategy: Some(api::tls_identity::Strategy::DnsLikeIdentity(name.clone())),
                server_name: Some(name),
            }),
            protocol_hint: Some(api::ProtocolHint {
                protocol: Some(api::protocol_hint::Protocol::H2(api::protocol_hint::H2 {})),
                opaque_transport: None,
            }),
            ..Default::default()
        }
    }

    fn decode(update: api::update::Update) -> Option<Kind> {
        let bytes = api::Update {
            update: Some(update),
        }
        .encode_to_vec();
        Update::decode(bytes.as_slice()).expect("decodes").kind
    }

    #[test]
    fn adds_decode_to_their_addresses() {
        let a: SocketAddr = "10.42.0.2:8080".parse().expect("an address");
        let b: SocketAddr = "10.42.0.3:8080".parse().expect("an address");
        let set = api::WeightedAddrSet {
            addrs: vec![full_addr(a), full_addr(b)],
            metric_labels: HashMap::from([("service".into(), "big".into())]),
        };
        let Some(Kind::Add(add)) = decode(api::update::Update::Add(set)) else {
            panic!("not an Add");
        };
        assert_eq!(add.socket_addrs(), vec![a, b]);
    }

    #[test]
    fn removes_and_no_endpoints_decode() {
        let a: SocketAddr = "10.42.0.2:8080".parse().expect("an address");
        let set = api::AddrSet {
            addrs: vec![a.into()],
        };
        let Some(Kind::Remove(rm)) = decode(api::update::Update::Remove(set)) else {
            panic!("not a Remove");
        };
        assert_eq!(rm.socket_addrs(), vec![a]);
        let none = api::NoEndpoints { exists: true };
        assert_eq!(
            decode(api::update::Update::NoEndpoints(none)),
            Some(Kind::NoEndpoints(NoEndpoints { exists: true }))
        );
    }
}
