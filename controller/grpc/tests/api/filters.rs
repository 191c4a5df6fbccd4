//! HTTPRoute rule filters in `OutboundPolicies`: header modifiers and
//! redirects, parsed and applied to the real index, read through a real
//! server as a proxy reads them.

use crate::next;
use crate::routes::{Cluster, WEB, detect_routes, names, service, weights};
use crate::support::by_addr;
use linkerd2_proxy_api::http_route::{
    PathModifier, RequestHeaderModifier, RequestRedirect, ResponseHeaderModifier, path_modifier,
};
use linkerd2_proxy_api::http_types::{Headers, Scheme, headers::Header, scheme};
use linkerd2_proxy_api::outbound::http_route::filter::Kind;
use linkerd2_proxy_api::outbound::http_route::{Filter, Rule};

/// `/api` gets its request and response headers changed on the way to
/// web-v1; `/old` is redirected to `https://new.example.com:8443/new...`
/// (301); `/moved` to `/here` on the same host (302, the default). With
/// `response_headers` false, the `/api` rule keeps only its request headers filter.
fn filtered(response_headers: bool) -> String {
    let response = if response_headers {
        "\n        - type: ResponseHeaderModifier\n          responseHeaderModifier:\n            add: [{name: x-served-by, value: web-v1}]\n            remove: [server]"
    } else {
        ""
    };
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web-filters, namespace: default}}
spec:
  parentRefs:
    - {{name: web, kind: Service, group: core, port: 8080}}
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{{name: X-Env, value: canary}}]
            add: [{{name: x-trace, value: "1"}}]
            remove: [x-debug]{response}
      backendRefs: [{{name: web-v1, port: 8080}}]
    - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            scheme: https
            hostname: new.example.com
            path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}
            port: 8443
            statusCode: 301
    - matches: [{{path: {{type: Exact, value: /moved}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            path: {{type: ReplaceFullPath, replaceFullPath: /here}}
"#
    )
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn kinds(rule: &Rule) -> Vec<Kind> {
    rule.filters
        .iter()
        .map(|Filter { kind }| kind.clone().expect("a filter kind"))
        .collect()
}

fn request_headers() -> Kind {
    Kind::RequestHeaderModifier(RequestHeaderModifier {
        add: Some(Headers {
            headers: vec![header("x-trace", "1")],
        }),
        set: Some(Headers {
            headers: vec![header("x-env", "canary")],
        }),
        remove: vec!["x-debug".into()],
    })
}

#[tokio::test]
async fn each_filter_arrives_in_the_policy() {
    let mut cluster = Cluster::start(&[WEB, &service("web-v1", 11), &filtered(true)]).await;
    let mut rsp = cluster.watch(by_addr("10.96.0.10:8080")).await;
    let routes = detect_routes(&next(&mut rsp).await);
    assert_eq!(
        names(&routes),
        ["HTTPRoute.gateway.networking.k8s.io/web-filters"]
    );
    let [api, old, moved] = &routes[0].rules[..] else {
        panic!("three rules: {routes:?}");
    };

    // Header modifiers, in the rule's order, names lower-cased.
    assert_eq!(
        kinds(api),
        [
            request_headers(),
            Kind::ResponseHeaderModifier(ResponseHeaderModifier {
                add: Some(Headers {
                    headers: vec![header("x-served-by", "web-v1")],
                }),
                set: Some(Headers::default()),
                remove: vec!["server".into()],
            }),
        ]
    );
    assert_eq!(weights(api), ["web-v1.default.svc.cluster.local:8080=1"]);

    // A redirect with every part given.
    assert_eq!(
        kinds(old),
        [Kind::Redirect(RequestRedirect {
            scheme: Some(Scheme {
                r#type: Some(scheme::Type::Registered(scheme::Registered::Https.into())),
            }),
            host: "new.example.com".into(),
            path: Some(PathModifier {
                replace: Some(path_modifier::Replace::Prefix("/new".into())),
            }),
            port: 8443,
            status: 301,
        })]
    );
    // A redirect rule has no backendRefs; the proxy answers it before the
    // parent, which its backend stays, sees the request.
    assert_eq!(weights(old), ["web.default.svc.cluster.local:8080=1"]);

    // Only the path given: the rest is the request's; Gateway API's
    // default status is sent, as the API reads 0 as 301.
    assert_eq!(
        kinds(moved),
        [Kind::Redirect(RequestRedirect {
            scheme: None,
            host: String::new(),
            path: Some(PathModifier {
                replace: Some(path_modifier::Replace::Full("/here".into())),
            }),
            port: 0,
            status: 302,
        })]
    );

    // A changed filter is a new policy.
    cluster.apply(&filtered(false));
    let routes = detect_routes(&next(&mut rsp).await);
    assert_eq!(kinds(&routes[0].rules[0]), [request_headers()]);
    assert_eq!(kinds(&routes[0].rules[2]), kinds(moved));
}
