use super::*;
use crate::client::{ApiClient, ClientError};
use crate::store::{Action, Change};
use crate::test_support::{TempDir, service};
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use strand_controller_core::{Kind, PodStatus, Resource};

/// A store and an API server on 127.0.0.1:0, stopped on drop.
struct Harness {
    dir: TempDir,
    store: Store,
    addr: SocketAddr,
    token: AdminToken,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new("api");
        let config = dir.config();
        let store = Store::open(config.clone()).await.expect("open store");
        let token = AdminToken::load_or_create(&config.state_dir).expect("token");
        let localhost = "127.0.0.1:0".parse().expect("addr");
        let server = ApiServer::bind(localhost, store.clone(), token.clone())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(server.run(shutdown.clone()));
        Harness {
            dir,
            store,
            addr,
            token,
            shutdown,
            server: Some(server),
        }
    }

    fn client(&self) -> ApiClient {
        ApiClient::from_state_dir(&self.dir.config().state_dir, self.addr).expect("client")
    }

    /// One request with full control over the authorization header.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<String>,
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost");
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let rsp = tx.send_request(req).await.expect("response");
        let (parts, body) = rsp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server stops")
                .expect("server task");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

#[tokio::test]
async fn requests_need_the_admin_token() {
    let h = Harness::start().await;
    let (status, headers, body) = h.raw(Method::GET, "/api/v1/services", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .expect("message")
            .contains("admin token")
    );

    let wrong = format!("Bearer {}", "0".repeat(64));
    let (status, _, _) = h
        .raw(Method::GET, "/api/v1/services", Some(wrong), "")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = h
        .raw(
            Method::GET,
            "/api/v1/services",
            Some("Bearer short".into()),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = h
        .raw(
            Method::POST,
            "/api/v1/apply",
            None,
            service("default", "a", 1),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.store.list(Kind::Service, None).is_empty());

    let stranger = AdminToken::parse(&"ab".repeat(32)).expect("token");
    let err = ApiClient::connect(h.addr, stranger)
        .list(Kind::Service, None)
        .await;
    assert!(matches!(err, Err(ClientError::Unauthorized)), "{err:?}");

    // Health needs no token.
    let (status, _, body) = h.raw(Method::GET, "/healthz", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!({"status": "ok"}));
    let (status, _, _) = h
        .raw(Method::GET, "/api/v1/services", Some(h.token.bearer()), "")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn apply_list_get_delete_through_the_client() {
    let h = Harness::start().await;
    let client = h.client();
    client.health().await.expect("healthy");
    let pod = "apiVersion: local.strand.io/v1alpha1\nkind: Pod\nmetadata: {name: web-0, namespace: shop}\nspec: {workload: web}\n";
    let text = [
        service("shop", "web", 80),
        service("default", "db", 5432),
        pod.into(),
    ]
    .join("---\n");
    let applied = client.apply(&text).await.expect("apply");
    assert_eq!(applied.len(), 3);
    assert!(applied.iter().all(|a| a.action == Action::Created));
    assert_eq!(
        client.apply(&text).await.expect("again")[0].action,
        Action::Unchanged
    );

    let names = |rs: &[Resource]| -> Vec<String> {
        rs.iter()
            .map(|r| format!("{}/{}", r.meta().namespace, r.meta().name))
            .collect()
    };
    assert_eq!(
        names(&client.list(Kind::Service, None).await.expect("list")),
        ["default/db", "shop/web"]
    );
    assert_eq!(
        names(
            &client
                .list(Kind::Service, Some("shop"))
                .await
                .expect("list")
        ),
        ["shop/web"]
    );
    assert_eq!(
        names(&client.list(Kind::Pod, None).await.expect("list")),
        ["shop/web-0"]
    );

    let web = client.get(Kind::Service, "shop", "web").await.expect("get");
    assert_eq!(
        Some(&web),
        h.store.get(Kind::Service, "shop", "web").as_ref()
    );

    let status = PodStatus {
        ready: true,
        ..PodStatus::default()
    };
    let pod = client
        .update_pod_status("shop", "web-0", &status)
        .await
        .expect("status");
    assert!(pod.status.ready);
    assert_eq!(
        pod.status.pod_ip.map(|ip| ip.to_string()).as_deref(),
        Some("10.42.0.2")
    );

    let deleted = client
        .delete(Kind::Service, "shop", "web")
        .await
        .expect("delete");
    assert_eq!(deleted, web);
    let err = client
        .get(Kind::Service, "shop", "web")
        .await
        .expect_err("gone");
    assert_eq!(err.to_string(), "Service shop/web not found");
    let err = client
        .delete(Kind::Service, "shop", "web")
        .await
        .expect_err("gone");
    assert!(matches!(err, ClientError::NotFound(_)));
    let err = client
        .update_pod_status("shop", "nope", &status)
        .await
        .expect_err("absent");
    assert!(matches!(err, ClientError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn apply_errors_name_document_field_and_reason() {
    let h = Harness::start().await;
    let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80, name: a}, {port: 80, name: b}]\n";
    let text = format!("{}---\n{bad}", service("default", "ok", 1));
    let (status, headers, body) = h
        .raw(
            Method::POST,
            "/api/v1/apply",
            Some(h.token.bearer()),
            text.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let expected = "document 2 (Service default/web): spec.ports[1].port: duplicate port 80/TCP (also spec.ports[0])";
    assert_eq!(
        json(&body),
        serde_json::json!({"error": {
            "message": expected,
            "document": 2,
            "resource": "Service default/web",
            "field": "spec.ports[1].port",
            "reason": "duplicate port 80/TCP (also spec.ports[0])",
        }})
    );
    let err = h.client().apply(&text).await.expect_err("rejected");
    assert_eq!(err.to_string(), expected);
    assert!(h.store.list(Kind::Service, None).is_empty());

    // An address in use is a conflict.
    let ip = |name: &str| {
        service("default", name, 80).replace("spec:\n", "spec:\n  clusterIP: 10.96.1.1\n")
    };
    h.client().apply(&ip("a")).await.expect("apply");
    match h.client().apply(&ip("b")).await {
        Err(ClientError::Apply { status, error }) => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(error.field, "spec.clusterIP");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let h = Harness::start().await;
    let auth = || Some(h.token.bearer());
    let cases = [
        (
            Method::GET,
            "/api/v1/gadgets",
            "",
            StatusCode::NOT_FOUND,
            "unknown resource type",
        ),
        (
            Method::GET,
            "/api/v2/services",
            "",
            StatusCode::NOT_FOUND,
            "no route",
        ),
        (
            Method::DELETE,
            "/api/v1/apply",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "POST",
        ),
        (
            Method::POST,
            "/api/v1/services",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        ),
        (
            Method::GET,
            "/api/v1/services?ns=x",
            "",
            StatusCode::BAD_REQUEST,
            "namespace=<ns>",
        ),
        (
            Method::PUT,
            "/api/v1/pods/default/p/status",
            "{",
            StatusCode::BAD_REQUEST,
            "not a valid PodStatus",
        ),
        (
            Method::POST,
            "/api/v1/apply",
            "kind: [",
            StatusCode::BAD_REQUEST,
            "not valid YAML",
        ),
        (
            Method::GET,
            "/api/v1/services/default/nope",
            "",
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ];
    for (method, path, body, want, text) in cases {
        let (status, headers, body) = h.raw(method.clone(), path, auth(), body).await;
        assert_eq!(status, want, "{method} {path}");
        let message = json(&body)["error"]["message"]
            .as_str()
            .expect("message")
            .to_string();
        assert!(message.contains(text), "{method} {path}: {message}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key(header::ALLOW));
        }
    }
    let (status, _, _) = h.raw(Method::POST, "/healthz", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let h = Harness::start().await;
    let huge = format!("# {}\n", "x".repeat(MAX_BODY_BYTES));
    let err = h.client().apply(&huge).await.expect_err("too large");
    assert!(
        matches!(&err, ClientError::Api { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit"), "{err}");
    // Just under the limit is read (and then found empty of documents).
    let fits = format!("# {}\n", "x".repeat(MAX_BODY_BYTES - 10));
    assert!(h.client().apply(&fits).await.expect("fits").is_empty());
}

#[tokio::test]
async fn watch_lists_then_streams_and_ends_at_shutdown() {
    let mut h = Harness::start().await;
    let client = h.client();
    client
        .apply(&service("default", "a", 80))
        .await
        .expect("apply");
    let mut events = Box::pin(client.watch().await.expect("watch"));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
    };
    let ev = next().await.expect("event").expect("valid");
    assert!(
        matches!(&ev.change, Change::Added(r) if r.meta().name == "a"),
        "{ev:?}"
    );
    assert_eq!(
        next().await.expect("event").expect("valid").change,
        Change::Synced
    );

    client
        .apply(&service("default", "a", 81))
        .await
        .expect("modify");
    let ev = next().await.expect("event").expect("valid");
    assert!(
        matches!(&ev.change, Change::Modified(r) if r.meta().generation == 2),
        "{ev:?}"
    );

    h.stop().await;
    assert!(
        next().await.is_none(),
        "the stream ends cleanly at shutdown"
    );
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let dir = TempDir::new("bind");
    let store = Store::open(dir.config()).await.expect("store");
    let token = AdminToken::load_or_create(&dir.config().state_dir).expect("token");
    let err = ApiServer::bind("0.0.0.0:0".parse().expect("addr"), store, token)
        .await
        .expect_err("refused");
    assert!(matches!(err, BindError::NotLoopback(_)));
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[test]
fn the_token_file_is_private_and_stable() {
    let dir = TempDir::new("token");
    let state = dir.path().join("state");
    let token = AdminToken::load_or_create(&state).expect("create");
    let path = state.join(TOKEN_FILE);
    let meta = std::fs::metadata(&path).expect("token file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).expect("read").len(), 64);
    assert_eq!(AdminToken::load_or_create(&state).expect("again"), token);
    assert_eq!(format!("{token:?}"), "AdminToken(..)");

    assert!(token.verify_header(Some(token.bearer().as_bytes())));
    assert!(!token.verify_header(None));
    assert!(!token.verify_header(Some(
        token.bearer().trim_start_matches("Bearer ").as_bytes()
    )));
    let mut wrong = token.bearer().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    assert!(!token.verify_header(Some(&wrong)));
}

#[test]
fn a_group_readable_token_file_is_refused() {
    let dir = TempDir::new("token-mode");
    let state = dir.path().join("state");
    AdminToken::load_or_create(&state).expect("create");
    let path = state.join(TOKEN_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = AdminToken::load_or_create(&state).expect_err("refused");
    assert!(matches!(err, TokenError::Permissions { mode: 0o640, .. }));
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    let addr = "127.0.0.1:1".parse().expect("addr");
    let err = ApiClient::from_state_dir(&state, addr).expect_err("refused");
    assert!(err.to_string().contains("chmod 600"), "{err}");

    let err = ApiClient::from_state_dir(&dir.path().join("nowhere"), addr).expect_err("absent");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot read "), "{msg}");
    assert!(
        msg.ends_with("is the control plane up? run `strand up`"),
        "{msg}"
    );
}

/// Mints `token-for-<ns>/<name>@<ip>`.
struct FakeMinter;

impl PodTokenMinter for FakeMinter {
    fn mint(&self, pod: &strand_controller_core::Pod) -> Result<PodToken, String> {
        let ip = pod.status.pod_ip.ok_or("no ip")?;
        Ok(PodToken {
            token: format!(
                "token-for-{}/{}@{ip}",
                pod.metadata.namespace, pod.metadata.name
            ),
            identity: format!(
                "{}.{}",
                pod.spec.service_account_name, pod.metadata.namespace
            ),
        })
    }
}

#[tokio::test]
async fn pod_tokens_are_minted_for_existing_pods() {
    let dir = TempDir::new("api-token");
    let config = dir.config();
    let store = Store::open(config.clone()).await.expect("open store");
    let token = AdminToken::load_or_create(&config.state_dir).expect("token");
    let server = ApiServer::bind("127.0.0.1:0".parse().expect("addr"), store.clone(), token)
        .await
        .expect("bind")
        .with_token_minter(Arc::new(FakeMinter));
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));
    let client = ApiClient::from_state_dir(&config.state_dir, addr).expect("client");

    let pod = "apiVersion: local.strand.io/v1alpha1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {workload: web, serviceAccountName: web}\n";
    client.apply(pod).await.expect("apply");
    let Some(Resource::Pod(p)) = store.get(Kind::Pod, "shop", "web-1") else {
        panic!("pod stored");
    };
    let ip = p.status.pod_ip.expect("an address");
    let minted = client.pod_token("shop", "web-1").await.expect("token");
    assert_eq!(minted.token, format!("token-for-shop/web-1@{ip}"));
    assert_eq!(minted.identity, "web.shop");

    let err = client.pod_token("shop", "nope").await.expect_err("no pod");
    assert!(
        matches!(&err, ClientError::NotFound(m) if m.contains("shop/nope")),
        "{err:?}"
    );
    let err = ApiClient::connect(addr, AdminToken::parse(&"ab".repeat(32)).expect("token"))
        .pod_token("shop", "web-1")
        .await
        .expect_err("needs the admin token");
    assert!(matches!(err, ClientError::Unauthorized), "{err:?}");
    shutdown.cancel();
    running.await.expect("stopped");
}

#[tokio::test]
async fn pod_tokens_need_a_minter() {
    let h = Harness::start().await;
    let client = h.client();
    let pod = "apiVersion: local.strand.io/v1alpha1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {workload: web}\n";
    client.apply(pod).await.expect("apply");
    let err = client.pod_token("shop", "web-1").await.expect_err("off");
    assert!(
        matches!(&err, ClientError::Api { status, message } if *status == StatusCode::NOT_IMPLEMENTED && message.contains("identity")),
        "{err:?}"
    );
    let (status, headers, _) = h
        .raw(
            Method::GET,
            "/api/v1/pods/shop/web-1/token",
            Some(h.token.bearer()),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
}

#[tokio::test]
async fn http_routes_through_the_client() {
    let h = Harness::start().await;
    let client = h.client();
    let route = "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata: {name: canary, namespace: shop}\nspec:\n  parentRefs: [{name: web, group: core, kind: Service}]\n  rules: [{backendRefs: [{name: web-v2, port: 80, weight: 10}]}]\n";
    let applied = client.apply(route).await.expect("apply");
    assert_eq!(
        (applied[0].kind, applied[0].action),
        (Kind::HttpRoute, Action::Created)
    );

    // `httproutes` in paths; the document keeps its API version.
    let (status, _, body) = h
        .raw(
            Method::GET,
            "/api/v1/httproutes?namespace=shop",
            Some(h.token.bearer()),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = &json(&body)["items"];
    assert_eq!(items[0]["apiVersion"], "policy.linkerd.io/v1beta3");
    assert_eq!(items[0]["kind"], "HTTPRoute");
    let listed = client.list(Kind::HttpRoute, None).await.expect("list");
    let got = client
        .get(Kind::HttpRoute, "shop", "canary")
        .await
        .expect("get");
    assert_eq!(listed, std::slice::from_ref(&got));
    assert_eq!(
        Some(&got),
        h.store.get(Kind::HttpRoute, "shop", "canary").as_ref()
    );

    // Refusals name the field.
    let bad = route.replace("weight: 10", "weight: 1000001");
    let err = client.apply(&bad).await.expect_err("rejected");
    assert_eq!(
        err.to_string(),
        "document 1 (HTTPRoute shop/canary): spec.rules[0].backendRefs[0].weight: must be 0..=1000000"
    );

    let deleted = client
        .delete(Kind::HttpRoute, "shop", "canary")
        .await
        .expect("delete");
    assert_eq!(deleted, got);
    let err = client
        .get(Kind::HttpRoute, "shop", "canary")
        .await
        .expect_err("gone");
    assert_eq!(err.to_string(), "HTTPRoute shop/canary not found");
}

#[tokio::test]
async fn grpc_routes_through_the_client() {
    let h = Harness::start().await;
    let client = h.client();
    let route = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: GRPCRoute\nmetadata: {name: votes, namespace: shop}\nspec:\n  parentRefs: [{name: web, group: core, kind: Service}]\n  rules: [{matches: [{method: {method: Vote}}], backendRefs: [{name: voting-v2, port: 80}]}]\n";
    let applied = client.apply(route).await.expect("apply");
    assert_eq!(
        (applied[0].kind, applied[0].action),
        (Kind::GrpcRoute, Action::Created)
    );

    // `grpcroutes` in paths; the document keeps its API version.
    let (status, _, body) = h
        .raw(
            Method::GET,
            "/api/v1/grpcroutes?namespace=shop",
            Some(h.token.bearer()),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = &json(&body)["items"];
    assert_eq!(items[0]["apiVersion"], "gateway.networking.k8s.io/v1alpha2");
    assert_eq!(items[0]["kind"], "GRPCRoute");
    let got = client
        .get(Kind::GrpcRoute, "shop", "votes")
        .await
        .expect("get");
    assert_eq!(
        client.list(Kind::GrpcRoute, None).await.expect("list"),
        std::slice::from_ref(&got)
    );

    let bad = route.replace("{method: Vote}", "{type: RegularExpression, method: Vote}");
    let err = client.apply(&bad).await.expect_err("rejected");
    assert!(
        err.to_string().starts_with(
            "document 1 (GRPCRoute shop/votes): spec.rules[0].matches[0].method.type: RegularExpression is not supported"
        ),
        "{err}"
    );

    let deleted = client
        .delete(Kind::GrpcRoute, "shop", "votes")
        .await
        .expect("delete");
    assert_eq!(deleted, got);
    let err = client
        .get(Kind::GrpcRoute, "shop", "votes")
        .await
        .expect_err("gone");
    assert_eq!(err.to_string(), "GRPCRoute shop/votes not found");
}

#[tokio::test]
async fn service_profiles_through_the_client() {
    let h = Harness::start().await;
    let client = h.client();
    let name = "web.shop.svc.cluster.local";
    let profile = format!(
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  routes: [{{name: list, condition: {{method: GET, pathRegex: /api/list}}, timeout: 300ms}}]\n"
    );
    let applied = client.apply(&profile).await.expect("apply");
    assert_eq!(
        (applied[0].kind, applied[0].action),
        (Kind::ServiceProfile, Action::Created)
    );
    // `serviceprofiles` in paths (and `sp`, as `strand get sp` sends it).
    for plural in ["serviceprofiles", "sp"] {
        let (status, _, body) = h
            .raw(
                Method::GET,
                &format!("/api/v1/{plural}?namespace=shop"),
                Some(h.token.bearer()),
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{plural}");
        assert_eq!(json(&body)["items"][0]["kind"], "ServiceProfile");
    }
    let got = client
        .get(Kind::ServiceProfile, "shop", name)
        .await
        .expect("get");
    assert_eq!(
        Some(&got),
        h.store.get(Kind::ServiceProfile, "shop", name).as_ref()
    );

    let bad = profile.replace("method: GET", "method: get");
    let err = client.apply(&bad).await.expect_err("rejected");
    assert_eq!(
        err.to_string(),
        format!(
            "document 1 (ServiceProfile shop/{name}): spec.routes[0].condition.method: \"get\" would match no request (methods are case-sensitive): write \"GET\""
        )
    );

    let deleted = client
        .delete(Kind::ServiceProfile, "shop", name)
        .await
        .expect("delete");
    assert_eq!(deleted, got);
    let err = client
        .get(Kind::ServiceProfile, "shop", name)
        .await
        .expect_err("gone");
    assert_eq!(
        err.to_string(),
        format!("ServiceProfile shop/{name} not found")
    );
}
