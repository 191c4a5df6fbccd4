//! `strand profile --template`, and how `strand get serviceprofiles` shows
//! a profile.

use crate::ctx::Ctx;
use anyhow::Context as _;
use clap::Args;
use strand_controller_core::{ServiceProfile, validate_dns_label};

/// The cluster domain when no control plane says otherwise (Kubernetes'
/// default, and `strand up`'s).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Print a commented template to edit: one example route with a
    /// condition, response classes, retryability and a timeout, and the
    /// retry budget and dstOverrides commented out. It is a valid profile
    /// as it is (`strand profile --template web | strand apply -f -`).
    #[arg(long, required = true)]
    template: bool,
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
}

pub fn profile(ctx: &Ctx, args: ProfileArgs) -> anyhow::Result<u8> {
    validate_dns_label("SERVICE", &args.service).context("not a Service name")?;
    validate_dns_label("--namespace", &args.namespace).context("not a namespace")?;
    let domain = match args.cluster_domain {
        Some(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        None => cluster_domain(ctx),
    };
    // Clap requires the flag: the template is the only source so far
    // (Linkerd also reads OpenAPI and protobuf specs, and tap data).
    if !args.template {
        anyhow::bail!("say where the profile comes from: --template");
    }
    print!("{}", template(&args.service, &args.namespace, &domain));
    Ok(0)
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
mod tests {
    use super::*;
    use strand_controller_core::{Resource, ServiceKey, parse_manifests};

    fn parse(text: &str) -> ServiceProfile {
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
}
