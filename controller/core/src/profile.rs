//! Linkerd's ServiceProfile (`linkerd.io/v1alpha2`, also read as
//! `v1alpha1`): named routes of one Service (a request condition on method
//! and path regex, response classes, retryability, a timeout), a retry
//! budget, and weighted destination overrides.
//!
//! A profile is named after the fully qualified name of the Service it
//! describes, `<svc>.<ns>.svc.<cluster-domain>`, and lives in `<ns>`; a
//! profile with any other name is stored and describes nothing. Fields are
//! kept as written (defaults implicit, see the accessors), so that `strand
//! get -o json` shows what was applied. Unlike HTTPRoutes, unknown fields
//! are refused at every level: the schema is small and fixed, and a
//! misspelt `isRetryable` would otherwise silently do nothing.

use crate::{FieldError, ObjectMeta, ServiceKey};
use regex_automata::dfa::{dense, regex::Regex};
use regex_automata::util::syntax;
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod duration;
mod quantity;
mod validate;

pub use self::duration::GoDuration;
pub use self::quantity::Quantity;
pub(crate) use self::validate::usable_regex;

/// The API group of ServiceProfiles (the profile's `Metadata` names it).
pub const SERVICE_PROFILE_GROUP: &str = "linkerd.io";

/// A route's timeout when it gives none: Linkerd's documented default.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// How deep conditions may nest (`all`, `any`, `not`). Each level becomes
/// at most two levels of the `Destination` API's messages (a condition
/// with several fields is an `all` of them), and proxies refuse more than
/// 16; no real profile comes close.
pub const MAX_CONDITION_DEPTH: usize = 8;

/// The bound on a compiled path regex (its DFA and the determinization
/// that builds it), in bytes: the proxy compiles with the same limit, so a
/// regex accepted here is one every proxy can use. A megabyte holds any
/// reasonable path pattern and keeps a hostile one from costing memory.
pub const PATH_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A ServiceProfile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProfile {
    /// The `apiVersion` the document was written as; both have this schema.
    #[serde(skip)]
    pub api: ServiceProfileApi,
    pub metadata: ObjectMeta,
    pub spec: ServiceProfileSpec,
}

/// The `apiVersion`s a ServiceProfile is accepted as.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServiceProfileApi {
    /// `linkerd.io/v1alpha2`
    #[default]
    V1alpha2,
    /// `linkerd.io/v1alpha1`
    V1alpha1,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceProfileSpec {
    /// Tried in order; the first whose condition a request meets is its route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ProfileRoute>,
    /// Absent: [`RetryBudget::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// When not empty, requests to the Service go to these authorities
    /// instead, split by weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_overrides: Vec<WeightedDst>,
}

/// `spec.routes[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileRoute {
    /// Unique within the profile; the `route` label of its metrics.
    pub name: String,
    pub condition: RequestMatch,
    /// The first class whose condition a response meets classifies it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<ResponseClass>,
    /// Absent: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_retryable: Option<bool>,
    /// Absent: [`DEFAULT_ROUTE_TIMEOUT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
}

/// A request condition. Each field set is one condition and all of them
/// must hold (Linkerd's reading of an object with several fields); at
/// least one is required.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    /// An HTTP method, compared exactly (methods are case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// RE2 syntax, matched against the whole path (see
    /// [`compile_path_regex`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Every one must hold; not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<RequestMatch>>,
    /// At least one must hold; not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<RequestMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<RequestMatch>>,
}

/// `spec.routes[].responseClasses[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseClass {
    pub condition: ResponseMatch,
    /// Absent: false (the class is successes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_failure: Option<bool>,
}

/// A response condition, read like [`RequestMatch`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<ResponseMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<ResponseMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<ResponseMatch>>,
}

/// An inclusive range of HTTP statuses, within 100..=599. Wide integers so
/// that validation, not the parser, names a bad value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRange {
    /// Absent: 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Absent: 599.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// `spec.retryBudget`: how many retries the proxy may add to a Service's
/// requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries per original request, 0 to 1000 (0.2: at most 20% more load).
    pub retry_ratio: f64,
    /// Retries per second allowed whatever the ratio says (low traffic).
    pub min_retries_per_second: u32,
    /// The window the ratio is computed over, 1s to 60s.
    pub ttl: GoDuration,
}

/// `spec.dstOverrides[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedDst {
    /// `host:port`, e.g. `web-v2.emojivoto.svc.cluster.local:80`.
    pub authority: String,
    /// Relative to the other overrides; served in milli-units.
    pub weight: Quantity,
}

/// Compiles a ServiceProfile path regex exactly as the proxy does: RE2
/// syntax without Unicode classes (Go's `\d` is `[0-9]`) over bytes,
/// anchored at both ends, within [`PATH_REGEX_SIZE_LIMIT`]. The error is
/// boxed: it is large, and only ever reported. GRPCRoute header regexes are
/// checked with it too, so that each accepted one builds in every proxy.
pub fn compile_path_regex(re: &str) -> Result<Regex, Box<dense::BuildError>> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .dense(
            dense::Config::new()
                .dfa_size_limit(Some(PATH_REGEX_SIZE_LIMIT))
                .determinize_size_limit(Some(PATH_REGEX_SIZE_LIMIT)),
        )
        .build(&format!("^(?:{re})$"))
        .map_err(Box::new)
}

// === impl ServiceProfile ===

impl ServiceProfile {
    /// The Service the profile describes under `cluster_domain`: its name
    /// is `<svc>.<ns>.svc.<cluster_domain>` and `<ns>` is its namespace.
    pub fn service(&self, cluster_domain: &str) -> Option<ServiceKey> {
        ServiceKey::from_fqdn(&self.metadata.name, cluster_domain)
            .filter(|k| k.namespace == self.metadata.namespace)
    }

    /// Like [`ServiceProfile::service`] under any cluster domain: the
    /// Service a name of the form `<svc>.<ns>.svc.<anything>` points at.
    /// For callers that do not know the domain and may over-approximate.
    pub fn named_service(&self) -> Option<ServiceKey> {
        let mut labels = self.metadata.name.split('.');
        let (svc, ns, kind) = (labels.next()?, labels.next()?, labels.next()?);
        let domain = labels.next();
        (kind == "svc" && domain.is_some() && ns == self.metadata.namespace)
            .then(|| ServiceKey::new(ns, svc))
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate::profile(self)
    }
}

// === impl ServiceProfileApi ===

impl ServiceProfileApi {
    pub const ALL: [ServiceProfileApi; 2] = [Self::V1alpha2, Self::V1alpha1];

    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1alpha2 => "linkerd.io/v1alpha2",
            Self::V1alpha1 => "linkerd.io/v1alpha1",
        }
    }

    pub fn from_api_version(api_version: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.api_version() == api_version)
    }
}

// === impl ServiceProfileSpec ===

impl ServiceProfileSpec {
    /// The retry budget, defaulted.
    pub fn retry_budget(&self) -> RetryBudget {
        self.retry_budget.clone().unwrap_or_default()
    }
}

// === impl ProfileRoute ===

impl ProfileRoute {
    pub fn is_retryable(&self) -> bool {
        self.is_retryable.unwrap_or(false)
    }

    /// The timeout, defaulted ([`DEFAULT_ROUTE_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_ref()
            .map_or(DEFAULT_ROUTE_TIMEOUT, GoDuration::as_duration)
    }
}

// === impl RequestMatch ===

impl RequestMatch {
    /// How many conditions the object sets (more than one: all must hold).
    pub fn len(&self) -> usize {
        usize::from(self.method.is_some())
            + usize::from(self.path_regex.is_some())
            + usize::from(self.all.is_some())
            + usize::from(self.any.is_some())
            + usize::from(self.not.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl ResponseClass ===

impl ResponseClass {
    pub fn is_failure(&self) -> bool {
        self.is_failure.unwrap_or(false)
    }
}

// === impl ResponseMatch ===

impl ResponseMatch {
    /// How many conditions the object sets (more than one: all must hold).
    pub fn len(&self) -> usize {
        usize::from(self.status.is_some())
            + usize::from(self.all.is_some())
            + usize::from(self.any.is_some())
            + usize::from(self.not.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl StatusRange ===

impl StatusRange {
    pub const LOWEST: u16 = 100;
    pub const HIGHEST: u16 = 599;

    /// `(min, max)`, defaulted; validation keeps both within
    /// [`StatusRange::LOWEST`]..=[`StatusRange::HIGHEST`], `min <= max`.
    pub fn bounds(&self) -> (u16, u16) {
        let bound = |v: Option<i64>, default: u16| {
            v.and_then(|v| u16::try_from(v).ok())
                .map_or(default, |v| v.clamp(Self::LOWEST, Self::HIGHEST))
        };
        (
            bound(self.min, Self::LOWEST),
            bound(self.max, Self::HIGHEST),
        )
    }
}

// === impl RetryBudget ===

/// Linkerd's default: 20% more requests, plus 10 retries a second, over 10s.
impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl: GoDuration::from_secs(10),
        }
    }
}

impl RetryBudget {
    pub fn ttl(&self) -> Duration {
        self.ttl.as_duration()
    }
}

#[cfg(test)]
mod tests;
