//! The identity service's metrics.
//!
//! ```text
//!  identity_cert_issued_total
//!  identity_cert_rejected_total{reason}           one series per Reason, from 0
//!  identity_issuer_expiry_timestamp_seconds       of the issuer in use
//!  identity_trust_anchor_expiry_timestamp_seconds the earliest of ca.crt's anchors
//! ```

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::SystemTime;

use crate::cert::unix_seconds;
use crate::issuer::Issuer;
use crate::rejection::Reason;

type ReasonLabel = [(&'static str, &'static str); 1];

/// Cheap to clone; all clones count into the same series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    issued: Counter,
    rejected: Family<ReasonLabel, Counter>,
    issuer_expiry: Gauge,
    trust_anchor_expiry: Gauge,
}

// === impl Metrics ===

impl Metrics {
    /// New metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        registry.register(
            "identity_cert_issued",
            "Workload certificates issued",
            m.issued.clone(),
        );
        registry.register(
            "identity_cert_rejected",
            "Certification requests refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "identity_issuer_expiry_timestamp_seconds",
            "When the issuer certificate in use expires (Unix time)",
            m.issuer_expiry.clone(),
        );
        registry.register(
            "identity_trust_anchor_expiry_timestamp_seconds",
            "When the earliest trust anchor expires (Unix time)",
            m.trust_anchor_expiry.clone(),
        );
        // Every reason from zero, so rates and alerts work before the first.
        for reason in Reason::ALL {
            drop(m.rejected.get_or_create(&label(reason)));
        }
        m
    }

    pub fn issued(&self) {
        self.issued.inc();
    }

    pub fn rejected(&self, reason: Reason) {
        self.rejected.get_or_create(&label(reason)).inc();
    }

    /// Records the expiries of the issuer now in use.
    pub fn issuer_loaded(&self, issuer: &Issuer) {
        self.issuer_expiry.set(unix_seconds(issuer.not_after()));
        self.trust_anchor_expiry
            .set(unix_seconds(issuer.trust_anchor_expiry()));
    }

    pub fn issued_total(&self) -> u64 {
        self.issued.get()
    }

    pub fn rejected_total(&self, reason: Reason) -> u64 {
        self.rejected.get_or_create(&label(reason)).get()
    }

    pub fn issuer_expiry(&self) -> Option<SystemTime> {
        let t = self.issuer_expiry.get();
        (t != 0).then(|| crate::cert::system_time(t))
    }
}

fn label(reason: Reason) -> ReasonLabel {
    [("reason", reason.label())]
}
