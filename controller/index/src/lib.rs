//! The control plane's in-memory index of services, pods, workloads,
//! HTTPRoutes, GRPCRoutes and ServiceProfiles.
//!
//! Both modes feed it: local mode from its embedded store, Kubernetes mode
//! from kube watches. It is synchronous and does no I/O. Every change goes
//! through one mutator path, which works out which services the change can
//! affect, recomputes only their watched ports, and publishes a new
//! [`ServicePortView`](strand_controller_core::ServicePortView) through a
//! `tokio::sync::watch` channel only when the view really changed. A view
//! carries its port's endpoints, the HTTPRoutes and GRPCRoutes attached to
//! the port (their backends resolved) and the service's ServiceProfile. The gRPC
//! discovery layer reads it through
//! [`DiscoverServices`](strand_controller_core::DiscoverServices), the DNS
//! server through [`Index::resolve_name`].
//!
//! ```text
//!   local store ──┐                             ┌──▶ lookup / resolve_name (gRPC, DNS)
//!                 ├── apply / delete / reset ──▶ Index
//!   kube watches ─┘      (one mutator)          └──▶ watch(svc, port) ──▶ Receiver<Option<Arc<ServicePortView>>>
//!                                                         shared by every receiver of (svc, port)
//! ```

#![forbid(unsafe_code)]

mod index;
mod routes;
mod state;
mod view;
mod watches;

pub use self::index::Index;

#[cfg(test)]
mod tests;
