//! The metrics API's core: Linkerd's golden metrics (success rate, request
//! rate, latency percentiles, connections) from every meshed proxy's
//! Prometheus endpoint, answered either by an embedded store that scrapes
//! the proxies itself or by a real Prometheus server.
//!
//! ```text
//!                        ┌─ Store (embedded) ◄── scrape::run ◄── <pod-ip>:4191/metrics
//!  stat code ─ Query ─►──┤     increase / irate / histogram_quantile / sum
//!            Evaluate    └─ PrometheusClient ─► GET <url>/api/v1/query?query=<PromQL>
//! ```
//!
//! Both implement [`Evaluate`] over the same three [`Query`] shapes, and
//! the store follows Prometheus's semantics (extrapolation, counter resets,
//! staleness, bucket interpolation), so the stat code above them gives the
//! same numbers either way; so does [`routes`], the golden metrics per
//! ServiceProfile route from the proxies' `route_*` families.
//!
//! [`grafana`] holds the Grafana dashboards that ask a Prometheus the same
//! questions, panel by panel.
//!
//! [`traces`] is the local mode's trace collector: the spans proxies
//! export over OTLP/gRPC, kept in memory (bounded) and answered by the
//! same HTTP API.

#![forbid(unsafe_code)]

pub mod api;
pub mod client;
mod fetch;
pub mod functions;
pub mod grafana;
pub mod inventory;
pub mod prom;
pub mod promtext;
pub mod query;
pub mod routes;
pub mod scrape;
pub mod stat;
pub mod store;
pub mod traces;

pub use self::prom::PrometheusClient;
pub use self::query::{EvalError, Evaluate, Matcher, Query, Sample, Selector, format_duration};
pub use self::scrape::{ScrapeConfig, ScrapeError, ScrapeTarget, run};
pub use self::store::{DEFAULT_RETENTION, HealthChange, Prepared, Store, TargetInfo, TargetKey};
pub use self::traces::{TraceId, TraceStore};
