use super::*;
use clap::Parser;
use strand_controller_core::{Resource, ServiceKey, compile_path_regex};

/// The profile in `text`, parsed and validated as `strand apply` does.
pub(super) fn parse(text: &str) -> ServiceProfile {
    match parse_manifests(text).expect("valid").pop() {
        Some(Resource::ServiceProfile(p)) => p,
        other => panic!("not a profile: {other:?}"),
    }
}

#[test]
fn the_template_is_a_valid_profile_of_its_service() {
    for (svc, ns, domain) in [
        ("web-svc", "emojivoto", "cluster.local"),
        ("books", "default", "example.org"),
    ] {
        let p = parse(&template(svc, ns, domain));
        assert_eq!(p.metadata.name, format!("{svc}.{ns}.svc.{domain}"));
        assert_eq!(p.service(domain), Some(ServiceKey::new(ns, svc)));
        let [route] = &p.spec.routes[..] else {
            panic!("one example route");
        };
        assert_eq!(route.name, "GET /books/{id}");
        assert_eq!(route.condition.path_regex.as_deref(), Some(r"/books/\d+"));
        assert!(route.response_classes[0].is_failure());
        // The commented-out parts are valid too, once uncommented.
        let uncommented = template(svc, ns, domain)
            .replace("    # isRetryable", "    isRetryable")
            .replace("    # timeout", "    timeout")
            .replace("  # retryBudget:", "  retryBudget:")
            .replace("  #   retryRatio", "    retryRatio")
            .replace("  #   minRetriesPerSecond", "    minRetriesPerSecond")
            .replace("  #   ttl", "    ttl")
            .replace("  # dstOverrides:", "  dstOverrides:")
            .replace("  # - authority", "  - authority")
            .replace("  #   weight", "    weight");
        let p = parse(&uncommented);
        assert!(p.spec.routes[0].is_retryable());
        assert!(p.spec.retry_budget.is_some());
        let weights: Vec<_> = p
            .spec
            .dst_overrides
            .iter()
            .map(|d| d.weight.milli())
            .collect();
        assert_eq!(weights, [900, 100]);
    }
}

#[test]
fn columns_show_service_routes_budget_and_overrides() {
    let head = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.default.svc.cluster.local}\nspec:\n";
    let bare = parse(&format!(
        "{head}  routes: [{{name: a, condition: {{method: GET}}}}]\n"
    ));
    assert_eq!(
        columns(&bare, "cluster.local"),
        ["web", "1", "20% + 10/s", "<none>"]
    );
    assert_eq!(columns(&bare, "example.org")[0], "<none>");
    let full = parse(&format!(
        "{head}  retryBudget: {{retryRatio: 0.125, minRetriesPerSecond: 3, ttl: 5s}}\n  dstOverrides: [{{authority: 'v2:80', weight: 500m}}, {{authority: 'v1:80', weight: 1}}]\n"
    ));
    assert_eq!(
        columns(&full, "cluster.local"),
        ["web", "0", "12.5% + 3/s", "v2:80=500m,v1:80=1"]
    );
}

/// `strand profile ...` as clap reads it.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: ProfileArgs,
}

fn cli(args: &[&str]) -> Result<ProfileArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("profile").chain(args.iter().copied())).map(|c| c.args)
}

/// A file in the temp directory holding `text`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &[u8]) -> Self {
        let dir = std::env::temp_dir().join(format!("strand-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write temp file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn exactly_one_source_is_required() {
    let a = cli(&["--template", "web"]).expect("template");
    assert!(a.source.template);
    let a = cli(&["--open-api", "-", "books", "-n", "shop"]).expect("open-api");
    assert_eq!(a.source.open_api.as_deref(), Some(Path::new("-")));
    assert_eq!(
        (a.service.as_str(), a.namespace.as_str()),
        ("books", "shop")
    );
    let a = cli(&["--proto", "api.proto", "books"]).expect("proto");
    assert_eq!(a.source.proto.as_deref(), Some(Path::new("api.proto")));

    for bad in [
        &["web"][..],
        &["--template", "--proto", "api.proto", "web"],
        &["--open-api", "a.yaml", "--proto", "api.proto", "web"],
        &["--open-api", "web"],
    ] {
        let e = cli(bad).expect_err(&format!("{bad:?} must be refused"));
        assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
    }
}

#[test]
fn files_become_valid_profiles_named_after_their_service() {
    let spec = TempFile::new(
        "books.yaml",
        b"openapi: 3.0.0\npaths:\n  /books/{id}:\n    get:\n      x-linkerd-retryable: true\n",
    );
    let text = from_file(
        "--open-api",
        &spec.0,
        "books",
        "shop",
        "example.org",
        openapi::routes,
    )
    .expect("a profile");
    assert!(text.starts_with("# A ServiceProfile for Service books in namespace shop"));
    assert!(text.contains(&format!("--open-api {}`: 1 route.\n", spec.0.display())));
    let p = parse(&text);
    assert_eq!(
        p.service("example.org"),
        Some(ServiceKey::new("shop", "books"))
    );
    assert_eq!(p.spec.routes[0].name, "GET /books/{id}");
    assert!(p.spec.routes[0].is_retryable());

    let proto = TempFile::new("api.proto", b"service S { rpc A(B) returns (C); }");
    let text = from_file(
        "--proto",
        &proto.0,
        "api",
        "default",
        "cluster.local",
        proto::routes,
    )
    .expect("a profile");
    assert!(text.contains(": 1 route."));
    assert_eq!(parse(&text).spec.routes[0].name, "POST /S/A");
}

#[test]
fn file_errors_name_the_file_and_the_problem() {
    let err = |flag, file: &Path, routes| {
        let e =
            from_file(flag, file, "web", "default", "cluster.local", routes).expect_err("an error");
        format!("{e:#}")
    };
    let missing = Path::new("/nonexistent/strand/books.yaml");
    let e = err("--open-api", missing, openapi::routes);
    assert!(
        e.starts_with("cannot read /nonexistent/strand/books.yaml: "),
        "{e}"
    );

    let bad = TempFile::new("bad.yaml", b"openapi: 3.0.0\npaths: [unclosed\n");
    let e = err("--open-api", &bad.0, openapi::routes);
    assert!(
        e.starts_with(&format!("{}: not valid YAML: ", bad.0.display())),
        "{e}"
    );

    let binary = TempFile::new("binary.proto", b"service \xff\xfe");
    let e = err("--proto", &binary.0, proto::routes);
    assert!(e.contains("binary.proto: it is not UTF-8 text"), "{e}");

    let empty = TempFile::new("empty.proto", b"syntax = \"proto3\";\nmessage M {}\n");
    let e = err("--proto", &empty.0, proto::routes);
    assert!(
        e.starts_with(&format!("{}: no service is defined", empty.0.display())),
        "{e}"
    );

    assert_eq!(display_name(Path::new("-")), "<stdin>");
}

#[test]
fn routes_that_make_an_invalid_profile_are_refused_before_printing() {
    // Two spellings of one path: Linkerd's join makes them one route name.
    let spec = r#"{"swagger": "2.0", "paths": {"/a": {"get": {}}, "a": {"get": {}}}}"#;
    let routes = openapi::routes(spec).expect("routes");
    let e = generated("web", "default", "cluster.local", "--open-api x", routes)
        .expect_err("duplicate names");
    let e = format!("{e:#}");
    assert!(e.starts_with("the routes make an invalid profile: "), "{e}");
    assert!(e.contains("duplicate route name \"GET /a\""), "{e}");
}

#[test]
fn literal_regexes_escape_go_metacharacters_and_percent_encode() {
    assert_eq!(
        literal_regex("/a.b+c*d?(e)|[f]{g}^$\\"),
        r"/a\.b\+c\*d\?\(e\)\|\[f\]\{g\}\^\$\\"
    );
    assert_eq!(literal_regex("/-_~!&=:@,;'%"), "/-_~!&=:@,;'%");
    assert_eq!(literal_regex("/a b/é"), "/a%20b/%C3%A9");
    // Each matches the path as a client sends it, and nothing else.
    for (path, sent, other) in [
        (
            "/a.b+c*d?(e)|[f]{g}^$\\",
            "/a.b+c*d?(e)|[f]{g}^$\\",
            "/aXbbc*d?(e)|[f]{g}^$\\",
        ),
        ("/a b/é", "/a%20b/%C3%A9", "/a b/é"),
        ("/x#y&z~", "/x#y&z~", "/x#y&z~/"),
    ] {
        let re = compile_path_regex(&literal_regex(path)).expect("compiles");
        assert!(re.is_match(sent.as_bytes()), "{path}");
        assert!(!re.is_match(other.as_bytes()), "{path} matches {other}");
    }
}
