//! A fake index whose watches the test drives, and a real server on
//! 127.0.0.1:0 in front of it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use strand_controller_core::{
    DiscoverServices, Endpoint, IdentityName, ServiceKey, ServicePortView, ServiceWatch, Target,
};
use strand_controller_grpc::Discovery;
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;

type Slot = watch::Sender<Option<Arc<ServicePortView>>>;

/// Service ports by key, each with the watch the server subscribes to.
/// `lookup` knows a port only while it exists, like a real index.
#[derive(Default)]
pub struct FakeDiscover {
    ports: Mutex<HashMap<(ServiceKey, u16), Slot>>,
}

/// A running server over `D` (the fake index unless told); dropping it
/// stops the server.
pub struct TestServer<D: ?Sized = FakeDiscover> {
    pub addr: SocketAddr,
    pub discovery: Discovery<D>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

pub const FQDN: &str = "web.default.svc.cluster.local";
pub const CLUSTER_IP: [u8; 4] = [10, 96, 0, 10];

pub fn web() -> ServiceKey {
    ServiceKey::new("default", "web")
}

pub fn identity() -> IdentityName {
    IdentityName::new("web.default.serviceaccount.identity.linkerd.cluster.local")
}

/// Endpoint `i` of `web`: 10.1.x.y:8080, meshed or not.
pub fn endpoint(i: u32, meshed: bool) -> Endpoint {
    let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080));
    Endpoint {
        addr,
        pod: format!("web-7c9f8d6b5-{i:05}"),
        namespace: "default".into(),
        workload: "web".into(),
        service_account: "web".into(),
        identity: meshed.then(identity),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
    }
}

/// `web` port 80 with these endpoints.
pub fn view(eps: impl IntoIterator<Item = Endpoint>) -> ServicePortView {
    ServicePortView {
        service: web(),
        fqdn: FQDN.into(),
        cluster_ip: Some(IpAddr::from(CLUSTER_IP)),
        port: 80,
        opaque: false,
        app_protocol: None,
        endpoints: eps.into_iter().map(|e| (e.addr, e)).collect(),
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        profile: None,
    }
}

// === impl FakeDiscover ===

impl FakeDiscover {
    /// Creates or replaces a service port.
    pub fn publish(&self, view: ServicePortView) {
        let key = (view.service.clone(), view.port);
        self.with_slot(key, |s| s.send_replace(Some(Arc::new(view))));
    }

    /// Changes the current view of `web` port 80.
    pub fn update(&self, f: impl FnOnce(&mut ServicePortView)) {
        let mut v = self
            .current(&web(), 80)
            .map(|v| (*v).clone())
            .unwrap_or_else(|| view([]));
        f(&mut v);
        self.publish(v);
    }

    /// Deletes a service port.
    pub fn delete(&self, service: &ServiceKey, port: u16) {
        self.with_slot((service.clone(), port), |s| s.send_replace(None));
    }

    pub fn current(&self, service: &ServiceKey, port: u16) -> Option<Arc<ServicePortView>> {
        self.with_slot((service.clone(), port), |s| s.borrow().clone())
    }

    fn with_slot<R>(&self, key: (ServiceKey, u16), f: impl FnOnce(&Slot) -> R) -> R {
        let mut ports = self.ports.lock().expect("not poisoned");
        f(ports.entry(key).or_insert_with(|| watch::channel(None).0))
    }
}

impl DiscoverServices for FakeDiscover {
    fn lookup(&self, target: &Target) -> Option<(ServiceKey, u16)> {
        let ports = self.ports.lock().expect("not poisoned");
        ports.iter().find_map(|(key, slot)| {
            let view = slot.borrow();
            let view = view.as_ref()?;
            let hit = match target {
                Target::Name { host, port } => *host == view.fqdn && *port == view.port,
                Target::Addr(a) => Some(a.ip()) == view.cluster_ip && a.port() == view.port,
            };
            hit.then(|| key.clone())
        })
    }

    fn watch(&self, service: &ServiceKey, port: u16) -> ServiceWatch {
        self.with_slot((service.clone(), port), |s| s.subscribe())
    }

    fn cluster_domain(&self) -> &str {
        "cluster.local"
    }

    /// A meshed endpoint of any published view at `addr`'s IP.
    fn pod_endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        let ports = self.ports.lock().expect("not poisoned");
        ports.values().find_map(|slot| {
            let view = slot.borrow();
            let ep = view
                .as_ref()?
                .endpoints
                .values()
                .find(|e| e.addr.ip() == addr.ip() && e.identity.is_some())?;
            Some(Endpoint { addr, ..ep.clone() })
        })
    }
}

// === impl TestServer ===

impl<D: DiscoverServices> TestServer<D> {
    /// Serves `fake` on an ephemeral loopback port.
    pub async fn start(fake: Arc<D>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let discovery = Discovery::new(fake.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let d = discovery.clone();
        let serve = strand_controller_grpc::server()
            .add_routes(discovery.routes())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                    d.shutdown();
                },
            );
        Self {
            addr,
            discovery,
            stop: Some(stop),
            task: Some(tokio::spawn(serve)),
        }
    }

    /// A plaintext HTTP/2 channel to the server.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server");
        }
    }
}

impl<D: ?Sized> Drop for TestServer<D> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A proxy's `OutboundPolicies` question about an original destination.
pub fn by_addr(addr: &str) -> linkerd2_proxy_api::outbound::TrafficSpec {
    use linkerd2_proxy_api::outbound::{TrafficSpec, traffic_spec};
    let addr: SocketAddr = addr.parse().expect("addr");
    TrafficSpec {
        source_workload: r#"{"ns":"default","pod":"client-0"}"#.into(),
        target: Some(traffic_spec::Target::Addr(
            linkerd2_proxy_api::net::TcpAddress::from(addr),
        )),
    }
}

/// The same question about an authority (`l5d-dst-override`, a name).
pub fn by_authority(authority: &str) -> linkerd2_proxy_api::outbound::TrafficSpec {
    use linkerd2_proxy_api::outbound::{TrafficSpec, traffic_spec};
    TrafficSpec {
        source_workload: "client".into(),
        target: Some(traffic_spec::Target::Authority(authority.into())),
    }
}
