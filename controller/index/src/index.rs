//! The index: public API, locking, and the one mutator path.

use crate::state::{Dirty, State};
use crate::watches::Watches;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use strand_controller_core::{
    DiscoverServices, Endpoint, Pod, Resource, ResourceKey, Service, ServiceKey, ServiceWatch,
    Target, TrustDomain, Workload,
};

/// Services, pods and workloads in memory, with a watch channel per watched
/// service port. Shared as `Arc<Index>`.
///
/// Locking: `state` is a read-write lock, so lookups, DNS answers and
/// snapshots run concurrently with each other and with view recomputation.
/// `watches` is a mutex that every update holds from start to finish: updates
/// are serialized (one mutator path), and `watch`, which computes a new
/// channel's first value under the same mutex, never misses an update. Lock
/// order is always `watches`, then `state`.
#[derive(Debug)]
pub struct Index {
    /// Lower case, without a trailing dot.
    cluster_domain: String,
    trust: TrustDomain,
    state: RwLock<State>,
    watches: Mutex<Watches>,
}

// === impl Index ===

impl Index {
    pub fn new(cluster_domain: &str, trust: TrustDomain) -> Arc<Index> {
        Arc::new(Index {
            cluster_domain: cluster_domain.trim_end_matches('.').to_ascii_lowercase(),
            trust,
            state: RwLock::default(),
            watches: Mutex::default(),
        })
    }

    /// Inserts or replaces a resource. Services and pods change endpoints,
    /// HTTPRoutes and GRPCRoutes the routes of the services they attach to, a
    /// ServiceProfile the profile of the service it is named after;
    /// workloads are kept for listing only.
    pub fn apply(&self, resource: Resource) {
        self.update(|state, trust, dirty| state.apply(resource, trust, dirty));
    }

    /// Removes a resource; a missing one is not an error.
    pub fn delete(&self, key: &ResourceKey) {
        self.update(|state, trust, dirty| state.delete(key, trust, dirty));
    }

    /// Replaces everything at once (store load, resync): resources absent
    /// from `all` are deleted, and watchers see only views that really changed.
    pub fn reset(&self, all: Vec<Resource>) {
        self.update(|state, trust, dirty| state.reset(all, trust, dirty));
    }

    /// For DNS: the addresses of `<svc>.<ns>.svc.<cluster-domain>` (any case,
    /// trailing dot allowed). `None`: no such service. Otherwise the virtual
    /// IP, or for a headless service (`clusterIP: None`) the ready pod IPs;
    /// empty while a service has neither.
    pub fn resolve_name(&self, fqdn: &str) -> Option<Vec<IpAddr>> {
        read(&self.state).resolve_name(fqdn, &self.cluster_domain)
    }

    /// A snapshot of every service, ordered by namespace and name.
    pub fn services(&self) -> Vec<Service> {
        read(&self.state).services()
    }

    /// A snapshot of every pod, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        read(&self.state).pods()
    }

    /// A snapshot of every workload, ordered by namespace and name.
    pub fn workloads(&self) -> Vec<Workload> {
        read(&self.state).workloads()
    }

    /// How many (service, port) channels have receivers. Entries whose
    /// receivers are all gone are dropped first (they are otherwise dropped
    /// lazily, on the next change to their service or a later `watch`).
    pub fn watch_count(&self) -> usize {
        lock(&self.watches).count()
    }

    /// Entries in the watch map, dead or alive, without dropping any.
    #[cfg(test)]
    pub(crate) fn watch_entries(&self) -> usize {
        lock(&self.watches).len()
    }

    /// The one mutator path: changes the state, then recomputes and publishes
    /// the watched views of the services the change marked dirty.
    fn update(&self, change: impl FnOnce(&mut State, &TrustDomain, &mut Dirty)) {
        let mut watches = lock(&self.watches);
        let mut dirty = Dirty::default();
        change(&mut write(&self.state), &self.trust, &mut dirty);
        let mut replaced = Vec::new();
        {
            // Recomputing a large view takes milliseconds: do it under the
            // read lock so lookups and DNS are not held up meanwhile.
            let state = read(&self.state);
            for key in &dirty {
                watches.publish(
                    key,
                    |port| state.view(key, port, &self.cluster_domain, &self.trust),
                    &mut replaced,
                );
            }
        }
        drop(watches);
        // Old views that no receiver holds any more are freed here, off the locks.
        drop(replaced);
    }
}

impl DiscoverServices for Index {
    fn lookup(&self, target: &Target) -> Option<(ServiceKey, u16)> {
        let state = read(&self.state);
        match target {
            Target::Name { host, port } => state.lookup_name(host, *port, &self.cluster_domain),
            Target::Addr(addr) => state.lookup_addr(*addr),
        }
    }

    fn watch(&self, service: &ServiceKey, port: u16) -> ServiceWatch {
        let mut watches = lock(&self.watches);
        if let Some(rx) = watches.subscribe(service, port) {
            return rx;
        }
        let view = read(&self.state).view(service, port, &self.cluster_domain, &self.trust);
        watches.insert(service, port, view)
    }

    fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    fn pod_endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        read(&self.state).pod_endpoint(addr, &self.trust)
    }
}

// A lock is poisoned only by a panic in this crate while it was held. The
// maps stay structurally sound (at worst the cluster IP map lags one change),
// and failing every later discovery request would be worse, so carry on.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
