//! `strand profile`: a ServiceProfile from a commented template, an OpenAPI
//! spec or a protobuf file (Linkerd's three offline sources), and how
//! `strand get serviceprofiles` shows a profile.
//!
//! ```text
//!   --template ─────────────────────────────────────────────▶ commented YAML
//!   --open-api FILE ─▶ openapi::routes ─┐
//!   --proto FILE ────▶ proto::routes ───┴▶ generated ─▶ parse_manifests ─▶ YAML
//! ```
//!
//! Generated profiles go through the same parser and validation as `strand
//! apply` before they are printed, so what is printed can be applied.

use crate::ctx::Ctx;
use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use strand_controller_core::{
    ObjectMeta, ProfileRoute, ServiceProfile, ServiceProfileApi, ServiceProfileSpec,
    parse_manifests, validate_dns_label,
};

mod openapi;
mod proto;

/// The cluster domain when no control plane says otherwise (Kubernetes'
/// default, and `strand up`'s).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The file name that means standard input.
const STDIN: &str = "-";

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// The Service the profile describes; the profile is named
    /// `<SERVICE>.<NAMESPACE>.svc.<CLUSTER-DOMAIN>`, which is how a
    /// profile finds its Service.
    #[arg(value_name = "SERVICE")]
    service: String,
    /// The Service's namespace (the profile lives there too).
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// The cluster domain of the profile's name (default: the running
    /// control plane's, from cluster.json, else cluster.local).
    #[arg(long, value_name = "DOMAIN")]
    cluster_domain: Option<String>,
    // Last: its help heading applies to the arguments after it.
    #[command(flatten)]
    source: Source,
}

/// Where the profile comes from: exactly one of these.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
#[command(next_help_heading = "Source (exactly one)")]
struct Source {
    /// Print a commented template to edit: one example route with a
    /// condition, response classes, retryability and a timeout, and the
    /// retry budget and dstOverrides commented out. It is a valid profile
    /// as it is (`strand profile --template web | strand apply -f -`).
    #[arg(long)]
    template: bool,
    /// Make a route of every operation of an OpenAPI spec: Swagger 2 or
    /// OpenAPI 3, JSON or YAML (`-` reads standard input). A route is
    /// named `METHOD /path` as the spec writes the path (`GET
    /// /books/{id}`); its condition is the method and a regex of the path
    /// in which each `{param}` matches one segment (`/books/[^/]*`),
    /// prefixed with the spec's `basePath` (Swagger 2) or the path of its
    /// first `servers[].url` (OpenAPI 3). Routes follow the spec's paths
    /// in order, methods in the order GET, PUT, POST, DELETE, OPTIONS,
    /// HEAD, PATCH, TRACE. An operation's `x-linkerd-retryable: true` makes
    /// its route retryable and `x-linkerd-timeout: 300ms` sets its timeout.
    #[arg(long, value_name = "FILE")]
    open_api: Option<PathBuf>,
    /// Make a route of every rpc of every service in a protobuf file
    /// (`-` reads standard input): gRPC's `POST /<package>.<Service>/<Method>`,
    /// matched by method and exact path.
    #[arg(long, value_name = "FILE")]
    proto: Option<PathBuf>,
}

/// Lets `serde_yaml_ng` print a profile in the order people write it
/// (`ServiceProfile` itself has no `apiVersion` or `kind` fields).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a ServiceProfileSpec,
}

pub fn profile(ctx: &Ctx, args: ProfileArgs) -> anyhow::Result<u8> {
    validate_dns_label("SERVICE", &args.service).context("not a Service name")?;
    validate_dns_label("--namespace", &args.namespace).context("not a namespace")?;
    let domain = match args.cluster_domain {
        Some(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        None => cluster_domain(ctx),
    };
    let (svc, ns) = (args.service.as_str(), args.namespace.as_str());
    let source = args.source;
    let text = if let Some(file) = &source.open_api {
        from_file("--open-api", file, svc, ns, &domain, openapi::routes)?
    } else if let Some(file) = &source.proto {
        from_file("--proto", file, svc, ns, &domain, proto::routes)?
    } else {
        // Clap lets exactly one source through: this is --template.
        template(svc, ns, &domain)
    };
    print!("{text}");
    Ok(0)
}

/// Reads `file` and makes routes of it with `routes`: the profile's text,
/// or an error that names the file.
fn from_file(
    flag: &str,
    file: &Path,
    svc: &str,
    ns: &str,
    domain: &str,
    routes: fn(&str) -> anyhow::Result<Vec<ProfileRoute>>,
) -> anyhow::Result<String> {
    let name = display_name(file);
    let text = read_source(file).with_context(|| format!("cannot read {name}"))?;
    let routes = routes(&text).with_context(|| name.clone())?;
    generated(svc, ns, domain, &format!("{flag} {name}"), routes).with_context(|| name.clone())
}

/// The file's name as messages and comments show it (one line).
fn display_name(file: &Path) -> String {
    if file == Path::new(STDIN) {
        return "<stdin>".to_string();
    }
    file.display().to_string().replace(char::is_control, "?")
}

fn read_source(file: &Path) -> anyhow::Result<String> {
    let bytes = if file == Path::new(STDIN) {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        bytes
    } else {
        std::fs::read(file)?
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// A profile of `routes` for Service `svc` in `ns`, under a comment saying
/// where they came from (`source`, e.g. `--proto api.proto`). It is parsed
/// and validated as `strand apply` would before it is returned, so that an
/// error names the route at fault here rather than at apply time.
fn generated(
    svc: &str,
    ns: &str,
    domain: &str,
    source: &str,
    routes: Vec<ProfileRoute>,
) -> anyhow::Result<String> {
    let metadata = ObjectMeta {
        name: format!("{svc}.{ns}.svc.{domain}"),
        namespace: ns.to_string(),
        ..ObjectMeta::default()
    };
    let spec = ServiceProfileSpec {
        routes,
        ..ServiceProfileSpec::default()
    };
    let doc = Document {
        api_version: ServiceProfileApi::V1alpha2.api_version(),
        kind: "ServiceProfile",
        metadata: &metadata,
        spec: &spec,
    };
    let yaml = serde_yaml_ng::to_string(&doc).expect("a profile always serializes");
    let count = spec.routes.len();
    let text = format!(
        "# A ServiceProfile for Service {svc} in namespace {ns}, made by\n\
         # `strand profile {source}`: {count} route{s}.\n\
         # Add responseClasses, isRetryable, timeout or a retryBudget as needed\n\
         # (`strand profile --template` shows them all), then `strand apply -f FILE`.\n\
         {yaml}",
        s = if count == 1 { "" } else { "s" },
    );
    parse_manifests(&text).context("the routes make an invalid profile")?;
    Ok(text)
}

/// A regex that matches exactly `path` as a request carries it: Go's
/// `regexp.QuoteMeta` escapes (Linkerd's, so profiles read the same), and
/// bytes a URI cannot carry as they are (spaces, controls, non-ASCII)
/// percent-encoded in upper case, as clients send them (the proxy matches
/// the path as sent, and compiles regexes without Unicode).
fn literal_regex(path: &str) -> String {
    let mut re = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'\\' | b'.' | b'+' | b'*' | b'?' | b'(' | b')' | b'|' | b'[' | b']' | b'{' | b'}'
            | b'^' | b'$' => {
                re.push('\\');
                re.push(char::from(b));
            }
            0x21..=0x7e => re.push(char::from(b)),
            _ => {
                let _ = write!(re, "%{b:02X}");
            }
        }
    }
    re
}

/// The running control plane's cluster domain, or the default.
pub fn cluster_domain(ctx: &Ctx) -> String {
    ctx.cluster()
        .map(|c| c.cluster_domain)
        .unwrap_or_else(|_| DEFAULT_CLUSTER_DOMAIN.to_string())
}

/// A commented ServiceProfile for Service `svc` in `ns`, valid as it is.
pub fn template(svc: &str, ns: &str, domain: &str) -> String {
    format!(
        r#"# A ServiceProfile for Service {svc} in namespace {ns}: named routes (per-route
# metrics, retries and timeouts), a retry budget, and traffic splitting.
# Edit it, then `strand apply -f FILE`. While a profile has routes or
# dstOverrides, proxies route the Service's requests by the profile rather
# than by HTTPRoutes (as Linkerd does).
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  # A profile describes the Service whose fully qualified name it bears,
  # and lives in that Service's namespace.
  name: {svc}.{ns}.svc.{domain}
  namespace: {ns}
spec:
  # Routes are tried in order: a request belongs to the first route whose
  # condition it meets (and to none if it meets no condition).
  routes:
  - name: 'GET /books/{{id}}'
    # Fields side by side must all hold.
    condition:
      method: GET
      # RE2 syntax, matched against the whole path (without the query).
      pathRegex: '/books/\d+'
      # Conditions combine with all, any and not:
      # any:
      # - pathRegex: '/books/\d+'
      # - all:
      #   - method: POST
      #   - not:
      #       pathRegex: '/books/admin/.*'

    # How responses on this route are counted: the first class whose
    # condition matches decides. Without one, a 5xx status is a failure.
    responseClasses:
    - condition:
        # Inclusive; min defaults to 100 and max to 599.
        status:
          min: 500
          max: 599
      isFailure: true

    # Failed requests on a retryable route are retried while the retry
    # budget allows. Mark only routes that are safe to send twice.
    # isRetryable: true

    # Requests on this route fail after this long (a Go duration; default 10s).
    # timeout: 300ms

  # How many retries proxies may add to this Service's requests
  # (default: retryRatio 0.2, minRetriesPerSecond 10, ttl 10s).
  # retryBudget:
  #   # Retries per original request: 0.2 adds at most 20% to the load.
  #   retryRatio: 0.2
  #   # Retries per second allowed whatever the ratio, for low traffic.
  #   minRetriesPerSecond: 10
  #   # The window the ratio is computed over (1s to 60s).
  #   ttl: 10s

  # Send the Service's requests to these authorities instead, split by
  # weight (a quantity: 1 is 1000m).
  # dstOverrides:
  # - authority: {svc}-v2.{ns}.svc.{domain}:80
  #   weight: 900m
  # - authority: {svc}.{ns}.svc.{domain}:80
  #   weight: 100m
"#
    )
}

/// `get serviceprofiles` cells after NAME: SERVICE (the Service it
/// describes, `<none>` if its name points at none), ROUTES, RETRY BUDGET,
/// DST OVERRIDES.
pub fn columns(p: &ServiceProfile, cluster_domain: &str) -> Vec<String> {
    let service = p
        .service(cluster_domain)
        .map_or_else(|| "<none>".to_string(), |k| k.name);
    let budget = p.spec.retry_budget();
    let overrides = if p.spec.dst_overrides.is_empty() {
        "<none>".to_string()
    } else {
        p.spec
            .dst_overrides
            .iter()
            .map(|d| format!("{}={}", d.authority, d.weight))
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        service,
        p.spec.routes.len().to_string(),
        format!(
            "{}% + {}/s",
            percent(budget.retry_ratio),
            budget.min_retries_per_second
        ),
        overrides,
    ]
}

/// `0.2` -> `20`, `0.125` -> `12.5` (at most two decimals, none trailing).
fn percent(ratio: f64) -> String {
    let text = format!("{:.2}", ratio * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests;
