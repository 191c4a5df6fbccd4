//! `Destination/GetProfile`: over a fake index, and ServiceProfiles
//! through the real index.

use crate::next;
use crate::routes::{WEB, pb_duration};
use crate::support::{FQDN, FakeDiscover, TestServer, endpoint, view};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::{
    DestinationProfile, GetDestination, HttpStatusRange, PathMatch, request_match, response_match,
};
use linkerd2_proxy_api::http_types::{self, http_method};
use linkerd2_proxy_api::meta::metadata;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strand_controller_core::{Kind, ResourceKey, TrustDomain, parse_manifests};
use strand_controller_index::Index;
use tonic::Code;

fn get(path: &str) -> GetDestination {
    GetDestination {
        path: path.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn profile_of_a_service_follows_its_opaque_flag() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([endpoint(1, true)]));
    let server = TestServer::start(fake.clone()).await;
    let mut dst = DestinationClient::new(server.channel().await);
    let mut rsp = dst
        .get_profile(get(&format!("{FQDN}:80")))
        .await
        .expect("GetProfile")
        .into_inner();

    let p = next(&mut rsp).await;
    assert_eq!(p.fully_qualified_name, FQDN);
    assert!(!p.opaque_protocol);
    assert!(p.routes.is_empty());
    assert_eq!((p.retry_budget, p.endpoint), (None, None));
    let Some(metadata::Kind::Resource(parent)) = p.parent_ref.and_then(|m| m.kind) else {
        panic!("the parent is the service");
    };
    assert_eq!(
        (&*parent.kind, &*parent.name, parent.port),
        ("Service", "web", 80)
    );

    // Endpoint churn sends nothing: the next profile is the opaque change.
    fake.update(|v| {
        let e = endpoint(2, true);
        v.endpoints.insert(e.addr, e);
    });
    fake.update(|v| v.opaque = true);
    let p = next(&mut rsp).await;
    assert!(p.opaque_protocol, "opaque after the change: {p:?}");
    assert_eq!(p.fully_qualified_name, FQDN);

    fake.update(|v| {
        v.opaque = false;
        v.app_protocol = Some("linkerd.io/opaque".into());
    });
    fake.update(|v| v.app_protocol = None);
    assert!(!next(&mut rsp).await.opaque_protocol);
}

#[tokio::test]
async fn profile_by_cluster_ip_names_the_service() {
    let fake = Arc::new(FakeDiscover::default());
    fake.publish(view([]));
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    let mut rsp = dst
        .get_profile(get("10.96.0.10:80"))
        .await
        .expect("GetProfile")
        .into_inner();
    assert_eq!(next(&mut rsp).await.fully_qualified_name, FQDN);
}

#[tokio::test]
async fn profile_of_another_address_is_that_endpoint() {
    let fake = Arc::new(FakeDiscover::default());
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    for (path, opaque) in [("10.1.0.7:8080", false), ("10.1.0.7:5432", true)] {
        let mut rsp = dst
            .get_profile(get(path))
            .await
            .expect("GetProfile")
            .into_inner();
        let p = next(&mut rsp).await;
        assert_eq!(p.fully_qualified_name, "", "{path}");
        assert_eq!(p.opaque_protocol, opaque, "{path}: default opaque ports");
        let ep = p.endpoint.expect("the address itself");
        let addr = SocketAddr::try_from(ep.addr.expect("addr")).expect("valid");
        assert_eq!(addr.to_string(), path);
        assert_eq!((ep.tls_identity, ep.protocol_hint), (None, None));
    }
}

#[tokio::test]
async fn profile_rejects_names_without_a_service() {
    let fake = Arc::new(FakeDiscover::default());
    let server = TestServer::start(fake).await;
    let mut dst = DestinationClient::new(server.channel().await);
    for path in [
        "api.default.svc.cluster.local:80",
        "example.com:443",
        "nonsense",
    ] {
        let status = dst.get_profile(get(path)).await.expect_err(path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status}");
    }
}

/// `web`'s profile: `GET /api/list` (retryable, 300ms, 5xx failures) and,
/// when `vote`, a POST route; a 20% budget over `ttl`; and a split to
/// web-v2 when `split`.
fn web_profile(vote: bool, ttl: &str, split: bool) -> String {
    let mut text = String::from(
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.default.svc.cluster.local, namespace: default}\nspec:\n  routes:\n  - name: GET /api/list\n    condition: {method: GET, pathRegex: /api/list}\n    responseClasses: [{condition: {status: {min: 500, max: 599}}, isFailure: true}]\n    isRetryable: true\n    timeout: 300ms\n",
    );
    if vote {
        text.push_str("  - name: vote\n    condition: {all: [{method: POST}, {pathRegex: '/api/vote/\\d+'}]}\n");
    }
    text.push_str(&format!(
        "  retryBudget: {{retryRatio: 0.2, minRetriesPerSecond: 10, ttl: {ttl}}}\n"
    ));
    if split {
        text.push_str(
            "  dstOverrides: [{authority: 'web-v2.default.svc.cluster.local:8080', weight: 1}]\n",
        );
    }
    text
}

/// The route names of a profile.
fn route_names(p: &DestinationProfile) -> Vec<String> {
    p.routes
        .iter()
        .map(|r| r.metrics_labels.get("route").cloned().unwrap_or_default())
        .collect()
}

/// A real index behind a real server, and a `GetProfile` stream of `path`.
async fn profile_stream(
    path: &str,
) -> (
    Arc<Index>,
    TestServer<Index>,
    tonic::Streaming<DestinationProfile>,
) {
    let index = Index::new("cluster.local", TrustDomain::default());
    let server = TestServer::start(index.clone()).await;
    apply(&index, WEB);
    let mut dst = DestinationClient::new(server.channel().await);
    let rsp = dst
        .get_profile(get(path))
        .await
        .expect("GetProfile")
        .into_inner();
    (index, server, rsp)
}

fn apply(index: &Index, text: &str) {
    for r in parse_manifests(text).expect("valid manifests") {
        index.apply(r);
    }
}

#[tokio::test]
async fn a_profile_stream_follows_a_service_profile_from_apply_to_delete() {
    let (index, _server, mut rsp) = profile_stream(&format!("{FQDN}:8080")).await;
    let p = next(&mut rsp).await;
    assert!(p.routes.is_empty());
    assert_eq!((p.retry_budget, p.profile_ref), (None, None));

    // Applied: its routes, budget and reference.
    apply(&index, &web_profile(false, "10s", false));
    let p = next(&mut rsp).await;
    assert_eq!(p.fully_qualified_name, FQDN);
    assert_eq!(route_names(&p), ["GET /api/list"]);
    let route = &p.routes[0];
    let Some(request_match::Match::All(all)) = route.condition.clone().and_then(|c| c.r#match)
    else {
        panic!("method and path are their all: {route:?}");
    };
    assert_eq!(
        all.matches
            .iter()
            .map(|m| m.r#match.clone())
            .collect::<Vec<_>>(),
        [
            Some(request_match::Match::Method(http_types::HttpMethod {
                r#type: Some(http_method::Type::Registered(
                    http_method::Registered::Get.into()
                )),
            })),
            Some(request_match::Match::Path(PathMatch {
                regex: "/api/list".into()
            })),
        ]
    );
    assert!(route.is_retryable);
    assert_eq!(pb_duration(route.timeout), Some(Duration::from_millis(300)));
    let class = &route.response_classes[0];
    assert!(class.is_failure);
    assert_eq!(
        class.condition.clone().and_then(|c| c.r#match),
        Some(response_match::Match::Status(HttpStatusRange {
            min: 500,
            max: 599
        }))
    );
    let budget = p.retry_budget.expect("a budget");
    assert_eq!(
        (budget.retry_ratio, budget.min_retries_per_second),
        (0.2, 10)
    );
    assert_eq!(pb_duration(budget.ttl), Some(Duration::from_secs(10)));
    let Some(metadata::Kind::Resource(meta)) = p.profile_ref.and_then(|m| m.kind) else {
        panic!("the profile is a resource");
    };
    assert_eq!(
        (&*meta.group, &*meta.kind, &*meta.name, &*meta.namespace),
        ("linkerd.io", "ServiceProfile", FQDN, "default")
    );

    // Endpoint churn and HTTPRoutes send nothing: the next message is the
    // profile's change.
    apply(
        &index,
        "apiVersion: local.strand.io/v1alpha1\nkind: Pod\nmetadata: {name: web-1, namespace: default, labels: {app: web}}\nspec: {workload: web}\nstatus: {podIP: 10.1.0.1, ready: true}\n",
    );
    apply(&index, &crate::routes::canary(90, 10));
    apply(&index, &web_profile(true, "30s", true));
    let p = next(&mut rsp).await;
    assert_eq!(route_names(&p), ["GET /api/list", "vote"]);
    assert_eq!(
        pb_duration(p.retry_budget.expect("budget").ttl),
        Some(Duration::from_secs(30))
    );
    let overrides: Vec<_> = p
        .dst_overrides
        .iter()
        .map(|d| (d.authority.as_str(), d.weight))
        .collect();
    assert_eq!(overrides, [("web-v2.default.svc.cluster.local:8080", 1000)]);

    // Deleted: routes, budget and overrides gone.
    index.delete(&ResourceKey::new(Kind::ServiceProfile, "default", FQDN));
    let p = next(&mut rsp).await;
    assert!(p.routes.is_empty() && p.dst_overrides.is_empty());
    assert_eq!((p.retry_budget, p.profile_ref), (None, None));
    assert_eq!(p.fully_qualified_name, FQDN, "still the service's profile");
}

#[tokio::test]
async fn a_profile_by_cluster_ip_carries_the_service_profile() {
    let (index, _server, mut rsp) = profile_stream("10.96.0.10:8081").await;
    assert!(next(&mut rsp).await.routes.is_empty());
    apply(&index, &web_profile(true, "10s", false));
    assert_eq!(
        route_names(&next(&mut rsp).await),
        ["GET /api/list", "vote"]
    );
}
