//! The resources themselves and the maps that find them.
//!
//! Mutations report which services' views they may have changed into a
//! [`Dirty`] set; the index recomputes only those. An HTTPRoute or
//! GRPCRoute change dirties the services it attaches to; a service change
//! also dirties the services whose routes send to it; a ServiceProfile
//! change dirties the service its name points at.

use crate::{routes, view};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use strand_controller_core::{
    GrpcRoute, HttpRoute, Kind, Pod, Resource, ResourceKey, Service, ServiceKey, ServicePortView,
    ServiceProfile, ServiceRoute, TrustDomain, Workload,
};

/// Every resource, grouped by namespace, and the cluster IP map.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Namespace -> what it holds; dropped once empty. This is the reverse
    /// map a pod change uses: only the services of its namespace are checked.
    namespaces: BTreeMap<String, Namespace>,
    /// Virtual IP -> the services claiming it, oldest claim first. The last
    /// claim wins lookups; an older one takes over if the last goes away.
    cluster_ips: HashMap<IpAddr, Vec<ServiceKey>>,
}

/// Services whose watched views may have changed.
pub(crate) type Dirty = HashSet<ServiceKey>;

#[derive(Debug, Default)]
struct Namespace {
    services: BTreeMap<String, Service>,
    /// Ordered, so a view is deterministic when two pods share an address.
    pods: BTreeMap<String, Pod>,
    /// Kept for listing only; endpoints come from pods.
    workloads: BTreeMap<String, Workload>,
    /// Attached to services of this namespace, sending to services of it.
    http_routes: BTreeMap<String, HttpRoute>,
    /// As `http_routes`.
    grpc_routes: BTreeMap<String, GrpcRoute>,
    /// By name (`<svc>.<ns>.svc.<domain>` for those that describe a service
    /// of this namespace); shared with the views that carry them.
    service_profiles: BTreeMap<String, Arc<ServiceProfile>>,
}

// === impl State ===

impl State {
    /// Inserts or replaces one resource.
    pub(crate) fn apply(&mut self, resource: Resource, trust: &TrustDomain, dirty: &mut Dirty) {
        match resource {
            Resource::Service(svc) => self.apply_service(svc, dirty),
            Resource::Pod(pod) => self.apply_pod(pod, trust, dirty),
            Resource::Workload(w) => {
                let ns = self.namespace_mut(&w.metadata.namespace);
                ns.workloads.insert(w.metadata.name.clone(), w);
            }
            Resource::HttpRoute(r) => self.apply_route(r, dirty),
            Resource::GrpcRoute(r) => self.apply_route(r, dirty),
            Resource::ServiceProfile(p) => self.apply_profile(p, dirty),
        }
    }

    pub(crate) fn delete(&mut self, key: &ResourceKey, trust: &TrustDomain, dirty: &mut Dirty) {
        let Some(ns) = self.namespaces.get_mut(&key.namespace) else {
            return;
        };
        match key.kind {
            Kind::Service => {
                if let Some(old) = ns.services.remove(&key.name) {
                    let service = ServiceKey::new(&key.namespace, &key.name);
                    if let Some(ip) = old.cluster_ip() {
                        unclaim(&mut self.cluster_ips, ip, &service);
                    }
                    ns.backend_changed(&key.namespace, &key.name, dirty);
                    dirty.insert(service);
                }
            }
            Kind::Pod => {
                if let Some(old) = ns.pods.remove(&key.name) {
                    ns.pod_changed(&key.namespace, Some(&old), None, trust, dirty);
                }
            }
            Kind::Workload => {
                ns.workloads.remove(&key.name);
            }
            Kind::HttpRoute => remove_route::<HttpRoute>(ns, key, dirty),
            Kind::GrpcRoute => remove_route::<GrpcRoute>(ns, key, dirty),
            Kind::ServiceProfile => {
                if let Some(old) = ns.service_profiles.remove(&key.name) {
                    tracing::debug!(profile = %key, "ServiceProfile removed");
                    dirty.extend(old.named_service());
                }
            }
        }
        if ns.is_empty() {
            self.namespaces.remove(&key.namespace);
        }
    }

    /// Makes the state hold exactly `all`.
    pub(crate) fn reset(&mut self, all: Vec<Resource>, trust: &TrustDomain, dirty: &mut Dirty) {
        let keep: HashSet<ResourceKey> = all.iter().map(Resource::key).collect();
        // Deletions first, so that a cluster IP moving from a removed service
        // to a new one is not reported as claimed twice.
        let gone: Vec<ResourceKey> = self.keys().filter(|k| !keep.contains(k)).collect();
        for key in &gone {
            self.delete(key, trust, dirty);
        }
        for resource in all {
            self.apply(resource, trust, dirty);
        }
    }

    /// The view of one service port; `None` when either does not exist.
    pub(crate) fn view(
        &self,
        key: &ServiceKey,
        port: u16,
        cluster_domain: &str,
        trust: &TrustDomain,
    ) -> Option<Arc<ServicePortView>> {
        let ns = self.namespaces.get(&key.namespace)?;
        let service = ns.services.get(&key.name)?;
        let mut view =
            view::service_port_view(service, port, ns.pods.values(), cluster_domain, trust)?;
        let at = routes::Resolve {
            parent: service,
            port,
            services: &ns.services,
            cluster_domain,
        };
        view.http_routes = routes::attached_http(at, ns.http_routes.values());
        view.grpc_routes = routes::attached_grpc(at, ns.grpc_routes.values());
        view.profile = ns.service_profiles.get(&view.fqdn).cloned();
        Some(Arc::new(view))
    }

    /// `host` must be `<svc>.<ns>.svc.<cluster_domain>`, any case, with or
    /// without a trailing dot; `cluster_domain` is lower case.
    pub(crate) fn lookup_name(
        &self,
        host: &str,
        port: u16,
        cluster_domain: &str,
    ) -> Option<(ServiceKey, u16)> {
        let key = ServiceKey::from_fqdn(&host.to_ascii_lowercase(), cluster_domain)?;
        self.service(&key)?.port(port)?;
        Some((key, port))
    }

    pub(crate) fn lookup_addr(&self, addr: SocketAddr) -> Option<(ServiceKey, u16)> {
        let key = self.cluster_ips.get(&addr.ip().to_canonical())?.last()?;
        self.service(key)?.port(addr.port())?;
        Some((key.clone(), addr.port()))
    }

    /// The virtual IP of a service name, or a headless service's ready pod IPs.
    pub(crate) fn resolve_name(&self, fqdn: &str, cluster_domain: &str) -> Option<Vec<IpAddr>> {
        let key = ServiceKey::from_fqdn(&fqdn.to_ascii_lowercase(), cluster_domain)?;
        let ns = self.namespaces.get(&key.namespace)?;
        let service = ns.services.get(&key.name)?;
        if !service.is_headless() {
            return Some(service.cluster_ip().into_iter().collect());
        }
        let ips: BTreeSet<IpAddr> = ns
            .pods
            .values()
            .filter(|pod| view::is_ready(pod) && service.selects(&pod.metadata.labels))
            .filter_map(|pod| pod.status.pod_ip)
            .collect();
        Some(ips.into_iter().collect())
    }

    pub(crate) fn services(&self) -> Vec<Service> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.services.values().cloned())
            .collect()
    }

    /// The meshed, ready pod at `addr`'s IP. A scan: asked once per new
    /// target per proxy, which then caches the answer.
    pub(crate) fn pod_endpoint(
        &self,
        addr: std::net::SocketAddr,
        trust: &strand_controller_core::TrustDomain,
    ) -> Option<strand_controller_core::Endpoint> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.pods.values())
            .find_map(|pod| crate::view::pod_endpoint(pod, addr, trust))
    }

    pub(crate) fn pods(&self) -> Vec<Pod> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.pods.values().cloned())
            .collect()
    }

    pub(crate) fn workloads(&self) -> Vec<Workload> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.workloads.values().cloned())
            .collect()
    }

    fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.namespaces.get(&key.namespace)?.services.get(&key.name)
    }

    fn namespace_mut(&mut self, name: &str) -> &mut Namespace {
        self.namespaces.entry(name.to_string()).or_default()
    }

    fn keys(&self) -> impl Iterator<Item = ResourceKey> + '_ {
        self.namespaces.iter().flat_map(|(ns, n)| {
            let key = move |kind, name: &String| ResourceKey::new(kind, ns, name);
            (n.services.keys().map(move |name| key(Kind::Service, name)))
                .chain(n.pods.keys().map(move |name| key(Kind::Pod, name)))
                .chain(
                    n.workloads
                        .keys()
                        .map(move |name| key(Kind::Workload, name)),
                )
                .chain(
                    n.http_routes
                        .keys()
                        .map(move |name| key(Kind::HttpRoute, name)),
                )
                .chain(
                    n.grpc_routes
                        .keys()
                        .map(move |name| key(Kind::GrpcRoute, name)),
                )
                .chain(
                    n.service_profiles
                        .keys()
                        .map(move |name| key(Kind::ServiceProfile, name)),
                )
        })
    }

    fn apply_service(&mut self, service: Service, dirty: &mut Dirty) {
        let key = ServiceKey::new(&service.metadata.namespace, &service.metadata.name);
        let new_ip = service.cluster_ip();
        let ns = self.namespace_mut(&key.namespace);
        let old = ns.services.insert(key.name.clone(), service);
        if old.is_some() && old.as_ref() == ns.services.get(&key.name) {
            return;
        }
        // A service appearing, going or changing its ports changes the
        // backends of routes that send to it.
        let ports_changed = old.as_ref().is_none_or(|o| {
            Some(&o.spec.ports) != ns.services.get(&key.name).map(|s| &s.spec.ports)
        });
        if ports_changed {
            ns.backend_changed(&key.namespace, &key.name, dirty);
        }
        let old_ip = old.and_then(|old| old.cluster_ip());
        if old_ip != new_ip {
            if let Some(ip) = old_ip {
                unclaim(&mut self.cluster_ips, ip, &key);
            }
            if let Some(ip) = new_ip {
                claim(&mut self.cluster_ips, ip, &key);
            }
        }
        dirty.insert(key);
    }

    fn apply_route<R: StoredRoute>(&mut self, route: R, dirty: &mut Dirty) {
        let namespace = route.meta().namespace.clone();
        let name = route.meta().name.clone();
        let ns = self.namespace_mut(&namespace);
        let old = R::map_mut(ns).insert(name.clone(), route);
        let ns: &Namespace = ns;
        let Some(new) = R::map(ns).get(&name) else {
            return;
        };
        if old.as_ref() == Some(new) {
            return;
        }
        if let Some(old) = &old {
            mark_parents(&namespace, old, dirty);
        }
        mark_parents(&namespace, new, dirty);
        ns.report_backends(new);
        if let Err(e) = new.check_annotations() {
            // Only a route stored before its annotations were validated.
            tracing::warn!(
                route = %format_args!("{namespace}/{name}"),
                kind = %R::KIND,
                error = %e,
                "Route annotations ignored",
            );
        }
    }

    fn apply_profile(&mut self, profile: ServiceProfile, dirty: &mut Dirty) {
        let namespace = profile.metadata.namespace.clone();
        let name = profile.metadata.name.clone();
        let ns = self.namespace_mut(&namespace);
        if ns.service_profiles.get(&name).map(AsRef::as_ref) == Some(&profile) {
            return;
        }
        // The service is found by name under any cluster domain: a profile
        // for another domain dirties a service whose view then does not
        // change, which wakes nobody.
        let service = profile.named_service();
        if service.is_none() {
            tracing::info!(
                profile = %format_args!("{namespace}/{name}"),
                "ServiceProfile names no service of its namespace (<svc>.{namespace}.svc.<cluster-domain>); it applies to nothing",
            );
        }
        let old = ns.service_profiles.insert(name, Arc::new(profile));
        dirty.extend(old.and_then(|o| o.named_service()));
        dirty.extend(service);
    }

    fn apply_pod(&mut self, pod: Pod, trust: &TrustDomain, dirty: &mut Dirty) {
        let namespace = pod.metadata.namespace.clone();
        let name = pod.metadata.name.clone();
        let ns = self.namespace_mut(&namespace);
        let old = ns.pods.insert(name.clone(), pod);
        let new = ns.pods.get(&name);
        if old.as_ref() != new {
            ns.pod_changed(&namespace, old.as_ref(), new, trust, dirty);
        }
    }
}

/// The routes of a namespace of one kind.
trait StoredRoute: ServiceRoute + PartialEq + Sized {
    fn map(ns: &Namespace) -> &BTreeMap<String, Self>;
    fn map_mut(ns: &mut Namespace) -> &mut BTreeMap<String, Self>;
}

impl StoredRoute for HttpRoute {
    fn map(ns: &Namespace) -> &BTreeMap<String, Self> {
        &ns.http_routes
    }

    fn map_mut(ns: &mut Namespace) -> &mut BTreeMap<String, Self> {
        &mut ns.http_routes
    }
}

impl StoredRoute for GrpcRoute {
    fn map(ns: &Namespace) -> &BTreeMap<String, Self> {
        &ns.grpc_routes
    }

    fn map_mut(ns: &mut Namespace) -> &mut BTreeMap<String, Self> {
        &mut ns.grpc_routes
    }
}

fn remove_route<R: StoredRoute>(ns: &mut Namespace, key: &ResourceKey, dirty: &mut Dirty) {
    if let Some(old) = R::map_mut(ns).remove(&key.name) {
        tracing::debug!(route = %key, "Route removed");
        mark_parents(&key.namespace, &old, dirty);
    }
}

/// Marks the services `route` attaches to (existing or not: a service that
/// appears later computes its view with the route).
fn mark_parents(namespace: &str, route: &impl ServiceRoute, dirty: &mut Dirty) {
    for parent in route.parent_services() {
        dirty.insert(ServiceKey::new(namespace, parent));
    }
}

/// Records that `key` claims `ip`; a later claim wins lookups.
fn claim(ips: &mut HashMap<IpAddr, Vec<ServiceKey>>, ip: IpAddr, key: &ServiceKey) {
    let claims = ips.entry(ip.to_canonical()).or_default();
    claims.retain(|k| k != key);
    if let Some(previous) = claims.last() {
        tracing::warn!(
            %ip,
            service = %key,
            %previous,
            "Two services claim one cluster IP; lookups now find the later one",
        );
    }
    claims.push(key.clone());
}

fn unclaim(ips: &mut HashMap<IpAddr, Vec<ServiceKey>>, ip: IpAddr, key: &ServiceKey) {
    let ip = ip.to_canonical();
    if let Some(claims) = ips.get_mut(&ip) {
        claims.retain(|k| k != key);
        if claims.is_empty() {
            ips.remove(&ip);
        }
    }
}

// === impl Namespace ===

impl Namespace {
    fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.pods.is_empty()
            && self.workloads.is_empty()
            && self.http_routes.is_empty()
            && self.grpc_routes.is_empty()
            && self.service_profiles.is_empty()
    }

    /// Service `name` appeared, went or changed its ports: marks the parents
    /// of the routes that send to it, and says what those routes now lack.
    fn backend_changed(&self, namespace: &str, name: &str, dirty: &mut Dirty) {
        self.routes_sending_to::<HttpRoute>(namespace, name, dirty);
        self.routes_sending_to::<GrpcRoute>(namespace, name, dirty);
    }

    /// Marks the parents of the routes of kind `R` that send to service
    /// `name`, and says what those routes now lack.
    fn routes_sending_to<R: StoredRoute>(&self, namespace: &str, name: &str, dirty: &mut Dirty) {
        for route in R::map(self).values() {
            if route.backend_services().any(|b| b == name) {
                mark_parents(namespace, route, dirty);
                self.report_backends(route);
            }
        }
    }

    /// Logs the backends of `route` that get no traffic because their
    /// service or port does not exist (once per change, not per view).
    fn report_backends<R: ServiceRoute>(&self, route: &R) {
        let meta = route.meta();
        let mut missing = 0;
        for u in routes::unresolved(route, &self.services) {
            missing += 1;
            tracing::warn!(
                route = %format_args!("{}/{}", meta.namespace, meta.name),
                kind = %R::KIND,
                backend = %u.backend.name,
                port = u.backend.port.unwrap_or_default(),
                reason = u.reason,
                "Route backend left out until it exists",
            );
        }
        if missing == 0 {
            tracing::debug!(
                route = %format_args!("{}/{}", meta.namespace, meta.name),
                kind = %R::KIND,
                "Route backends all exist",
            );
        }
    }

    /// Marks the services of this namespace whose endpoints a pod change
    /// alters: those that selected the old or the new pod, and only when what
    /// the pod contributes to them differs (a new pid or generation does not
    /// wake anyone).
    fn pod_changed(
        &self,
        namespace: &str,
        old: Option<&Pod>,
        new: Option<&Pod>,
        trust: &TrustDomain,
        dirty: &mut Dirty,
    ) {
        // A pod that is no endpoint before nor after changes no view: this
        // skips the service scan for pods starting up or shutting down.
        if !old.is_some_and(view::is_ready) && !new.is_some_and(view::is_ready) {
            return;
        }
        for (name, service) in &self.services {
            if view::contribution(service, old, trust) != view::contribution(service, new, trust) {
                dirty.insert(ServiceKey::new(namespace, name));
            }
        }
    }
}
