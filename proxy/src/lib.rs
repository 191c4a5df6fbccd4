//! strand-proxy: the transparent proxy that runs beside every workload.
//!
//! `strand-init` redirects the pod's TCP traffic into two listeners:
//! outbound (what the workload sends) and inbound (what it receives). For
//! each connection the proxy reads the original destination, detects the
//! protocol, and forwards HTTP/1, HTTP/2 and gRPC request by request (with
//! metrics per request) or other TCP byte for byte. An admin server exposes
//! Prometheus metrics, readiness and liveness, and a shutdown endpoint.
//!
//! ```text
//!   workload ──► :4140 outbound ──► target pod :4143 inbound ──► workload
//!                   │                                │
//!                   └──────── :4191 admin ◄──────────┘ (/metrics)
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod config;
pub mod detect;
pub mod discovery;
pub mod errors;
pub mod http;
pub mod identity;
pub mod io;
pub mod metrics;
pub mod orig_dst;
pub mod proxy;
pub mod tap;
pub mod tcp;
pub mod trace;
pub mod workers;

pub use config::Config;
pub use proxy::{Bound, Proxy};
