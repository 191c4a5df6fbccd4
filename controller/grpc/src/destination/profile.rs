//! `Destination/GetProfile` answers. strand has no ServiceProfile routes
//! yet, so a profile carries the service's name, its opaque flag and its
//! parent reference; routes and the retry budget stay empty.

use crate::convert::{self, DEFAULT_OPAQUE_PORTS, Protocol};
use crate::destination::endpoints::ENDPOINT_WEIGHT;
use crate::stream::Updates;
use linkerd2_proxy_api::destination::{DestinationProfile, WeightedAddr};
use std::net::SocketAddr;
use strand_controller_core::{ServicePortView, ServiceWatch};

/// The profile of one service port, re-sent when it changes.
pub(crate) struct ProfileUpdates {
    rx: ServiceWatch,
    /// The inputs of the last profile sent: endpoint churn wakes this stream
    /// too, and must not cost a new message.
    last: Option<(String, bool)>,
}

/// A service port's profile.
pub(crate) fn service(view: &ServicePortView) -> DestinationProfile {
    DestinationProfile {
        fully_qualified_name: view.fqdn.clone(),
        opaque_protocol: is_opaque(view),
        parent_ref: Some(convert::service_metadata(&view.service, view.port)),
        ..Default::default()
    }
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

// === impl ProfileUpdates ===

impl ProfileUpdates {
    pub(crate) fn new(rx: ServiceWatch) -> Self {
        Self { rx, last: None }
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
                if let Some(view) = current.as_deref() {
                    let changed = match &self.last {
                        Some((fqdn, opaque)) => *fqdn != view.fqdn || *opaque != is_opaque(view),
                        None => true,
                    };
                    if changed {
                        self.last = Some((view.fqdn.clone(), is_opaque(view)));
                        return Some(service(view));
                    }
                }
            }
            self.rx.changed().await.ok()?;
        }
    }
}
