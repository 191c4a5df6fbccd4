use super::*;
use strand_controller_core::ServiceWatch;

/// Knows `web.default` port 80, by name and as 10.96.0.10.
struct OneService;

impl DiscoverServices for OneService {
    fn lookup(&self, target: &Target) -> Option<(ServiceKey, u16)> {
        let web = (ServiceKey::new("default", "web"), 80);
        match target {
            Target::Name { host, port: 80 } if host == "web.default.svc.cluster.local" => Some(web),
            Target::Addr(a) if a.to_string() == "10.96.0.10:80" => Some(web),
            _ => None,
        }
    }

    fn watch(&self, _: &ServiceKey, _: u16) -> ServiceWatch {
        tokio::sync::watch::channel(None).1
    }

    fn cluster_domain(&self) -> &str {
        "cluster.local"
    }
}

#[test]
fn resolves_each_kind_of_target() {
    let web = ServiceKey::new("default", "web");
    let cases = [
        (
            "web.default.svc.cluster.local:80",
            Resolved::Service(web.clone(), 80),
        ),
        (
            "WEB.default.svc.cluster.local.:80",
            Resolved::Service(web.clone(), 80),
        ),
        ("10.96.0.10:80", Resolved::Service(web.clone(), 80)),
        (
            "web.default.svc.cluster.local:81",
            Resolved::UnknownService(web, 81),
        ),
        (
            "api.prod.svc.cluster.local:8080",
            Resolved::UnknownService(ServiceKey::new("prod", "api"), 8080),
        ),
        (
            "10.0.0.7:8080",
            Resolved::Addr("10.0.0.7:8080".parse().expect("addr")),
        ),
        (
            "[fd00::7]:443",
            Resolved::Addr("[fd00::7]:443".parse().expect("addr")),
        ),
        (
            "example.com:443",
            Resolved::External("example.com:443".into()),
        ),
        (
            "web.default:80",
            Resolved::External("web.default:80".into()),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(resolve_path(&OneService, path), Ok(want), "{path}");
    }
}

#[test]
fn rejects_paths_without_a_port() {
    for path in [
        "",
        "web.default.svc.cluster.local",
        ":80",
        "fd00::1:80x",
        "web:port",
    ] {
        let err = resolve_path(&OneService, path).expect_err(path);
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
    }
}
