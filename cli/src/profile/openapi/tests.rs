use super::*;
use crate::profile::{generated, tests::parse};
use strand_controller_core::{ServiceProfile, compile_path_regex};

/// The spec's profile, printed and parsed back as `strand apply` would.
fn profile(spec: &str) -> ServiceProfile {
    let routes = routes(spec).expect("routes");
    let text = generated("books", "default", "cluster.local", "--open-api t", routes)
        .expect("a valid profile");
    parse(&text)
}

/// `(name, method, pathRegex)` of each route, in order.
fn summary(p: &ServiceProfile) -> Vec<(String, String, String)> {
    p.spec
        .routes
        .iter()
        .map(|r| {
            let c = &r.condition;
            (
                r.name.clone(),
                c.method.clone().expect("a method"),
                c.path_regex.clone().expect("a path regex"),
            )
        })
        .collect()
}

fn triples(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

fn error(spec: &str) -> String {
    format!("{:#}", routes(spec).expect_err("an error"))
}

#[test]
fn swagger_2_json_with_a_base_path() {
    // Paths in the spec's order (not sorted), methods in the fixed order.
    let p = profile(
        r#"{
  "swagger": "2.0",
  "info": {"title": "books", "version": "1"},
  "basePath": "/v1/",
  "paths": {
    "/books": {"post": {"responses": {}}, "get": {"responses": {}}},
    "/books/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "type": "string"}],
      "delete": {}, "head": {}, "get": {}, "put": {}, "patch": {}, "options": {}
    },
    "/authors": {"get": {}},
    "x-internal": {"get": {}}
  }
}"#,
    );
    assert_eq!(
        summary(&p),
        triples(&[
            ("GET /v1/books", "GET", "/v1/books"),
            ("POST /v1/books", "POST", "/v1/books"),
            ("GET /v1/books/{id}", "GET", "/v1/books/[^/]*"),
            ("PUT /v1/books/{id}", "PUT", "/v1/books/[^/]*"),
            ("DELETE /v1/books/{id}", "DELETE", "/v1/books/[^/]*"),
            ("OPTIONS /v1/books/{id}", "OPTIONS", "/v1/books/[^/]*"),
            ("HEAD /v1/books/{id}", "HEAD", "/v1/books/[^/]*"),
            ("PATCH /v1/books/{id}", "PATCH", "/v1/books/[^/]*"),
            ("GET /v1/authors", "GET", "/v1/authors"),
        ])
    );
    let r = &p.spec.routes[2];
    assert!(!r.is_retryable() && r.timeout.is_none() && r.response_classes.is_empty());

    // servers are OpenAPI 3's: Swagger 2 ignores them, as it ignores a
    // basePath that is not there.
    let p =
        profile(r#"{"swagger": "2.0", "servers": [{"url": "/x"}], "paths": {"/a": {"get": {}}}}"#);
    assert_eq!(p.spec.routes[0].name, "GET /a");
}

#[test]
fn openapi_3_yaml_with_servers_and_path_parameters() {
    let p = profile(
        r#"
openapi: 3.0.3
info: {title: books, version: "1"}
servers:
- url: https://{host}/api/{version}/
  variables:
    host: {default: books.example.com}
    version: {default: v2, enum: [v1, v2]}
- url: http://localhost:8080/other
paths:
  /shelves/{shelf}/books/{book}:
    parameters:
    - {name: shelf, in: path, required: true, schema: {type: string}}
    trace: {}
    patch:
      requestBody: {content: {application/json: {schema: {type: object}}}}
    get:
      operationId: getBook
      responses: {'200': {description: ok}, '404': {description: missing}}
  /health:
    servers: [{url: /}]
    head: {}
  /stats:
    get:
      servers: [{url: 'http://internal:9000/metrics/?debug=1'}]
    post: {}
  /tenants/{tenant}:
    servers:
    - url: '{scheme}://example.com/{region}'
      variables: {scheme: {default: https}, region: {enum: [eu, us]}}
    get: {}
"#,
    );
    assert_eq!(
        summary(&p),
        triples(&[
            (
                "GET /api/v2/shelves/{shelf}/books/{book}",
                "GET",
                "/api/v2/shelves/[^/]*/books/[^/]*"
            ),
            (
                "PATCH /api/v2/shelves/{shelf}/books/{book}",
                "PATCH",
                "/api/v2/shelves/[^/]*/books/[^/]*"
            ),
            (
                "TRACE /api/v2/shelves/{shelf}/books/{book}",
                "TRACE",
                "/api/v2/shelves/[^/]*/books/[^/]*"
            ),
            ("HEAD /health", "HEAD", "/health"),
            ("GET /metrics/stats", "GET", "/metrics/stats"),
            ("POST /api/v2/stats", "POST", "/api/v2/stats"),
            // A variable without a default matches a segment, like a parameter.
            (
                "GET /{region}/tenants/{tenant}",
                "GET",
                "/[^/]*/tenants/[^/]*"
            ),
        ])
    );
    let re = compile_path_regex(&summary(&p)[0].2).expect("compiles");
    assert!(re.is_match(b"/api/v2/shelves/fiction/books/42"));
    assert!(re.is_match(b"/api/v2/shelves//books/"));
    assert!(!re.is_match(b"/api/v2/shelves/a/b/books/42"));
    assert!(!re.is_match(b"/api/v2/shelves/a/books/42/x"));

    // A relative server URL, and none at all.
    let p = profile("openapi: '3.1.0'\nservers: [{url: v1}]\npaths: {/a: {get: {}}}\n");
    assert_eq!(p.spec.routes[0].name, "GET /v1/a");
    let p = profile("openapi: 3.1\nservers: []\npaths: {/a: {get: {}}}\n");
    assert_eq!(p.spec.routes[0].name, "GET /a");
}

#[test]
fn linkerd_vendor_extensions_set_retries_and_timeouts() {
    let p = profile(
        r#"
openapi: 3.0.0
paths:
  /books:
    get:
      x-linkerd-retryable: true
      x-linkerd-timeout: 300ms
    post:
      x-linkerd-retryable: false
      x-linkerd-timeout: 1m30s
    put:
      X-Linkerd-Retryable: true
"#,
    );
    let rs = &p.spec.routes;
    assert_eq!(rs[0].name, "GET /books");
    assert!(rs[0].is_retryable());
    assert_eq!(rs[0].timeout.as_ref().map(|t| t.as_str()), Some("300ms"));
    assert_eq!(rs[0].timeout(), std::time::Duration::from_millis(300));
    assert_eq!(rs[1].name, "PUT /books");
    assert!(rs[1].is_retryable() && rs[1].timeout.is_none());
    assert_eq!(rs[2].name, "POST /books");
    assert_eq!(rs[2].is_retryable, None);
    assert_eq!(rs[2].timeout(), std::time::Duration::from_secs(90));

    let base = "openapi: 3.0.0\npaths:\n  /a:\n    get:\n      ";
    for (ext, want) in [
        (
            "x-linkerd-timeout: soon",
            "paths./a.get.x-linkerd-timeout: \"soon\" is not a duration",
        ),
        (
            "x-linkerd-timeout: 5",
            "paths./a.get.x-linkerd-timeout: 5 is not a duration",
        ),
        (
            "x-linkerd-timeout: 0s",
            "paths./a.get.x-linkerd-timeout: \"0s\" would fail every request",
        ),
        (
            "x-linkerd-retryable: 'yes'",
            "paths./a.get.x-linkerd-retryable: \"yes\" is not true or false",
        ),
    ] {
        let e = error(&format!("{base}{ext}\n"));
        assert!(e.starts_with(want), "{ext}: {e}");
    }
}

#[test]
fn regex_metacharacters_in_paths_are_escaped() {
    let p = profile(
        r#"{"swagger": "2.0", "basePath": "/api.v1", "paths": {
  "/files/{name}.json": {"get": {}},
  "/c++/v1.0/(draft)": {"get": {}},
  "/search*": {"get": {}},
  "/a{b": {"get": {}},
  "/café/{id}": {"get": {}}
}}"#,
    );
    let regexes: Vec<_> = summary(&p).into_iter().map(|(_, _, re)| re).collect();
    assert_eq!(
        regexes,
        [
            r"/api\.v1/files/[^/]*\.json",
            r"/api\.v1/c\+\+/v1\.0/\(draft\)",
            r"/api\.v1/search\*",
            r"/api\.v1/a\{b",
            r"/api\.v1/caf%C3%A9/[^/]*",
        ]
    );
    assert_eq!(p.spec.routes[4].name, "GET /api.v1/café/{id}");
    for (re, yes, no) in [
        (0, "/api.v1/files/report.json", "/api.v1/files/reportXjson"),
        (1, "/api.v1/c++/v1.0/(draft)", "/api.v1/cc/v1.0/draft"),
        (2, "/api.v1/search*", "/api.v1/searchhh"),
    ] {
        let compiled = compile_path_regex(&regexes[re]).expect("compiles");
        assert!(compiled.is_match(yes.as_bytes()), "{yes}");
        assert!(!compiled.is_match(no.as_bytes()), "{no}");
    }
}

#[test]
fn path_items_may_be_references_within_the_spec() {
    let p = profile(
        r##"
openapi: 3.1.0
paths:
  /books/{id}: {$ref: '#/components/pathItems/book'}
  /copy: {$ref: '#/paths/~1books~1%7Bid%7D'}
components:
  pathItems:
    book: {get: {}, delete: {x-linkerd-timeout: 2s}}
"##,
    );
    let names: Vec<_> = p.spec.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /books/{id}",
            "DELETE /books/{id}",
            "GET /copy",
            "DELETE /copy"
        ]
    );

    let e = error("openapi: 3.0.0\npaths: {/a: {$ref: 'other.yaml#/a'}}\n");
    assert!(e.contains("points into another file"), "{e}");
    let e = error("openapi: 3.0.0\npaths: {/a: {$ref: '#/nowhere'}}\n");
    assert!(e.contains("points at nothing"), "{e}");
    let e = error("openapi: 3.0.0\npaths: {/a: {$ref: '#/paths/~1a'}}\n");
    assert!(e.contains("a cycle?"), "{e}");
}

#[test]
fn specs_without_routes_or_that_are_not_specs_are_refused() {
    for (spec, want) in [
        (
            "openapi: 3.0.0\ninfo: {title: t}\n",
            "the spec has no paths",
        ),
        (
            "openapi: 3.0.0\npaths: {}\n",
            "the spec has no paths (`paths` is empty)",
        ),
        (
            r#"{"swagger": "2.0", "paths": null}"#,
            "the spec has no paths",
        ),
        (
            "openapi: 3.0.0\npaths:\n  /a: {parameters: []}\n  /b:\n",
            "the spec's paths have no operations (get, put, post",
        ),
        (
            "openapi: 3.0.0\npaths: [/a]\n",
            "paths: [\"/a\"] is not a mapping",
        ),
        (
            "openapi: 3.0.0\npaths: {/a: {get: yes}}\n",
            "paths./a.get: \"yes\" is not an operation",
        ),
        ("", "the file is empty"),
        ("# nothing\n", "the file is empty"),
        (
            "- a\n- b\n",
            "not an OpenAPI spec: the document is not a mapping",
        ),
        (
            "apiVersion: v1\nkind: Service\n",
            "not an OpenAPI spec: it has neither",
        ),
        (
            "swagger: '1.2'\npaths: {}\n",
            "swagger: version 1.2 is not supported",
        ),
        (
            "openapi: 4.0.0\npaths: {}\n",
            "openapi: version 4.0.0 is not supported",
        ),
        (
            "openapi: 3.0.0\npaths: {/a: [unclosed\n",
            "not valid YAML: ",
        ),
        ("{\"swagger\": \"2.0\",\n\"paths\": ", "not valid JSON: "),
        (
            "openapi: 3.0.0\nservers: /v1\npaths: {/a: {get: {}}}\n",
            "servers: \"/v1\" is not a list",
        ),
    ] {
        let e = error(spec);
        assert!(e.starts_with(want), "{spec:?}: {e}");
    }
}

#[test]
fn json_may_be_indented_with_tabs_and_swagger_2_may_be_a_number() {
    let p = profile("{\n\t\"swagger\": \"2.0\",\n\t\"paths\": {\"/a\": {\"get\": {}}}\n}");
    assert_eq!(p.spec.routes[0].name, "GET /a");
    let p = profile("swagger: 2.0\nbasePath: /\npaths: {/a: {get: {}}}\n");
    assert_eq!(p.spec.routes[0].name, "GET /a");
    assert_eq!(path_regex("/{a}{b}/c"), "/[^/]*[^/]*/c");
}
