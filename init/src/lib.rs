//! strand-init: installs the iptables `nat` rules that send a pod's TCP
//! traffic through its strand proxy, in the current network namespace, as
//! Linkerd's proxy-init does. It runs once, before the workload starts (as an
//! init container, or inside a local-mode pod's namespace).
//!
//! ```text
//!   peer ──► PREROUTING ─► STRAND_INBOUND ─ REDIRECT ─► proxy :4143 ─► app
//!   app  ──► OUTPUT ─────► STRAND_OUTPUT ── REDIRECT ─► proxy :4140 ─► peer
//!                           (proxy uid 2102, lo, ignored ports/subnets: RETURN)
//! ```
//!
//! [`rules`] turns a [`Config`] into rules and `iptables-restore --noflush`
//! input without touching the system; [`exec`] runs the iptables tools
//! behind the [`Iptables`] trait; [`apply`] joins the two. Every run
//! replaces the previous run's rules in one transaction per family, so
//! running twice leaves one set.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cni;
pub mod exec;
pub mod ports;
pub mod rules;
mod saved;
pub mod subnets;

pub use exec::{Error, Iptables, Mode, SystemIptables};
pub use rules::{Config, Family, Rule, Target};

/// What a run does to the `nat` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Replace strand's rules with the ones the config describes.
    Install,
    /// Remove strand's rules and chains.
    Clear,
}

/// The restore input for one family, as applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The family whose table was changed.
    pub family: Family,
    /// What `iptables-restore --noflush` was given.
    pub input: String,
}

// === impl Action ===

impl Action {
    /// The `iptables-restore --noflush` input for `family`, given the
    /// table's current `iptables-save -t nat` output.
    pub fn input(&self, config: &Config, family: Family, saved: &str) -> String {
        match self {
            Action::Install => config.install_input(family, saved),
            Action::Clear => rules::clear_input(saved),
        }
    }
}

/// Applies `action` for every family of `config` through `iptables`.
///
/// All tables are read before any is changed, so a missing `ip6tables` or
/// a lack of privilege fails the run before the IPv4 rules change. The
/// restores then run one family at a time; if the second fails, the first
/// stays applied, and running again (or `--clear`) converges.
pub fn apply(
    config: &Config,
    action: Action,
    iptables: &dyn Iptables,
) -> Result<Vec<Applied>, Error> {
    let families = config.families();
    iptables.preflight(&families)?;
    let mut planned = Vec::with_capacity(families.len());
    for family in families {
        let saved = iptables.save(family)?;
        planned.push(Applied {
            family,
            input: action.input(config, family, &saved),
        });
    }
    for a in &planned {
        iptables.restore(a.family, &a.input)?;
    }
    Ok(planned)
}

#[cfg(test)]
mod tests;
