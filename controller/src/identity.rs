//! `strand-controller identity`: the identity service alone, and the pieces
//! local mode shares with it.
//!
//! ```text
//!  <identity-dir>/ca.crt issuer.crt issuer.key token.key
//!        └─▶ ReloadingIssuer (every 2 s) ─▶ Identity/Certify over TLS (--addr)
//!                                            └─▶ /metrics /ready /live (--admin-addr)
//! ```

use anyhow::Context as _;
use clap::Args;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strand_controller_core::{Pod, TrustDomain};
use strand_controller_local::{PodToken, PodTokenMinter};
use strand_identity::{
    Claims, IdentityService, LocalVerifier, Metrics, PodLookup, ReloadingIssuer, ServerCertificate,
    TokenKey,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, Readiness};

#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// The CA files: ca.crt, issuer.crt, issuer.key and token.key (`strand
    /// identity init` writes them). Changes to the first three are picked up
    /// within 2 s.
    #[arg(
        long,
        env = "STRAND_IDENTITY_DIR",
        default_value = "/var/lib/strand/identity"
    )]
    identity_dir: PathBuf,
    /// Where to serve Identity/Certify (TLS).
    #[arg(long, default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
    /// How long workload certificates are valid: `60s`, `90m`, `24h`, `7d`
    /// (never past the issuer's own expiry).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    cert_lifetime: Duration,
    /// `/metrics`, `/ready` and `/live`.
    #[arg(long, default_value = "127.0.0.1:9990")]
    admin_addr: SocketAddr,
}

/// The identity service, loaded and ready to serve.
pub struct Identity {
    service: IdentityService,
    cert: Arc<ServerCertificate>,
    key: TokenKey,
}

/// Mints pods' tokens for the management API.
struct Minter {
    key: TokenKey,
    trust: TrustDomain,
}

pub async fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    // Standalone, there is no store to ask about pods.
    let identity = Identity::load(&args.identity_dir, args.cert_lifetime, None, &mut registry)?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let admin = Admin::bind(args.admin_addr).await?;
    let addr = identity.spawn(args.addr, &mut tasks, &stop).await?;
    {
        let (ready, stop) = (identity.readiness(), stop.clone());
        tasks.spawn(async move {
            admin.run(registry, ready, stop).await;
            Ok(())
        });
    }
    tracing::info!(%addr, dir = %args.identity_dir.display(), "identity serving");
    let failed = tokio::select! {
        () = crate::shutdown_signal() => None,
        Some(res) = tasks.join_next() => Some(res),
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    match failed {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

// === impl Identity ===

impl Identity {
    /// Loads the CA files of `dir` (making a token key if there is none);
    /// with `pods`, tokens of pods that no longer exist are refused.
    pub fn load(
        dir: &Path,
        lifetime: Duration,
        pods: Option<Arc<dyn PodLookup>>,
        registry: &mut Registry,
    ) -> anyhow::Result<Identity> {
        let metrics = Metrics::register(registry);
        let issuer = ReloadingIssuer::load(dir, metrics.clone()).with_context(|| {
            format!(
                "loading the identity issuer from {} (replace bad files with `strand identity init --force`)",
                dir.display()
            )
        })?;
        let key = strand_identity::load_or_create_token_key(dir)
            .with_context(|| format!("loading the token key in {}", dir.display()))?;
        let verifier = match pods {
            Some(pods) => LocalVerifier::with_pods(key.clone(), pods),
            None => LocalVerifier::new(key.clone()),
        };
        let service = IdentityService::new(issuer, Arc::new(verifier), lifetime, metrics);
        let cert =
            ServerCertificate::new(strand_identity::service_identity(&TrustDomain::default()));
        Ok(Identity { service, cert, key })
    }

    /// Where its CA files are.
    pub fn dir(&self) -> &Path {
        self.service.issuer().dir()
    }

    /// The name proxies verify the service's certificate against.
    pub fn server_name(&self) -> String {
        self.cert.name().to_string()
    }

    /// The management API's token minter.
    pub fn minter(&self) -> Arc<dyn PodTokenMinter> {
        Arc::new(Minter {
            key: self.key.clone(),
            trust: TrustDomain::default(),
        })
    }

    /// Ready once it has certified itself and its issuer is valid.
    pub fn readiness(&self) -> Readiness {
        let (cert, issuer) = (self.cert.clone(), self.service.issuer().clone());
        Arc::new(move || {
            issuer
                .current()
                .usable_at(SystemTime::now())
                .map_err(|e| e.message)?;
            if !cert.is_ready() {
                return Err("the identity service has no certificate of its own yet".into());
            }
            Ok(())
        })
    }

    /// Binds `addr` and spawns the TLS server and the file watcher into
    /// `tasks`; both stop with `stop`. Returns the bound address.
    pub async fn spawn(
        &self,
        addr: SocketAddr,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the identity service to {addr}"))?;
        let bound = listener.local_addr()?;
        let (service, cert, shutdown) = (self.service.clone(), self.cert.clone(), stop.clone());
        tasks.spawn(async move {
            strand_identity::serve(listener, service, cert, shutdown.cancelled_owned())
                .await
                .map_err(|e| anyhow::anyhow!("identity service {bound}: {e}"))
        });
        let (issuer, shutdown) = (self.service.issuer().clone(), stop.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = issuer.run(strand_identity::RELOAD_INTERVAL) => {}
                () = shutdown.cancelled() => {}
            }
            Ok(())
        });
        Ok(bound)
    }
}

// === impl Minter ===

impl PodTokenMinter for Minter {
    fn mint(&self, pod: &Pod) -> Result<PodToken, String> {
        let ip = pod.status.pod_ip.ok_or("the pod has no address")?;
        let identity = pod.workload_identity(&self.trust).to_string();
        let token = self.key.mint(&Claims {
            namespace: pod.metadata.namespace.clone(),
            pod: pod.metadata.name.clone(),
            service_account: pod.spec.service_account_name.clone(),
            identity: identity.clone(),
            ip,
        });
        Ok(PodToken { token, identity })
    }
}

/// `500ms`, `60s`, `90m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 60s, 90m, 24h or 7d");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs).ok_or_else(bad);
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => secs(1)?,
        "m" => secs(60)?,
        "h" => secs(3600)?,
        "d" => secs(86_400)?,
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("{s:?} is zero; a certificate must last a while"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("60s", 60),
            ("90m", 5400),
            ("24h", 86_400),
            ("7d", 604_800),
            ("45", 45),
        ];
        for (s, secs) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "h", "1.5h", "10y", "-1s", "0s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
