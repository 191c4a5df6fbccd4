//! `strand identity init` writes the CA files; `strand identity POD` asks a
//! pod's proxy for its certificate and checks it, like `linkerd identity`.

use crate::ctx::Ctx;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use strand_identity::{CaError, CaPems, GenerateOptions};

mod inspect;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct IdentityArgs {
    #[command(subcommand)]
    command: Option<IdentityCommand>,
    /// The pod whose proxy to ask for its certificate.
    #[arg(value_name = "POD", required = true)]
    pod: Option<String>,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// `table` (the chain, one block per certificate) or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

#[derive(Subcommand, Debug)]
enum IdentityCommand {
    /// Write the CA files into <state-dir>/identity: a new trust anchor and
    /// issuer, or ones made elsewhere (--trust-anchor, --issuer,
    /// --issuer-key), checked first. A running control plane picks a new
    /// issuer up within 2 s; proxies started before keep trusting the old
    /// trust anchor until their workload restarts.
    Init(InitArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The trust anchor (PEM, one or more CA certificates) to import.
    #[arg(long, value_name = "FILE", requires_all = ["issuer", "issuer_key"])]
    trust_anchor: Option<PathBuf>,
    /// The issuer certificate (PEM; a CA signed by the trust anchor).
    #[arg(long, value_name = "FILE", requires_all = ["trust_anchor", "issuer_key"])]
    issuer: Option<PathBuf>,
    /// The issuer's private key (PEM, PKCS#8 or EC PRIVATE KEY).
    #[arg(long, value_name = "FILE", requires_all = ["trust_anchor", "issuer"])]
    issuer_key: Option<PathBuf>,
    /// Replace existing CA files (the token key is kept, so pods' tokens
    /// stay valid).
    #[arg(long)]
    force: bool,
    /// How long a generated trust anchor is valid.
    #[arg(long, default_value = "3650d", value_parser = crate::run::parse_duration, conflicts_with = "trust_anchor")]
    trust_anchor_lifetime: std::time::Duration,
    /// How long a generated issuer is valid (`strand check` warns 60 days
    /// before it expires).
    #[arg(long, default_value = "365d", value_parser = crate::run::parse_duration, conflicts_with = "trust_anchor")]
    issuer_lifetime: std::time::Duration,
}

pub async fn identity(ctx: &Ctx, args: IdentityArgs) -> anyhow::Result<u8> {
    match (args.command, args.pod) {
        (Some(IdentityCommand::Init(init_args)), _) => init(ctx, init_args),
        (None, Some(pod)) => inspect::inspect(ctx, &args.namespace, &pod, &args.output).await,
        (None, None) => bail!("name a pod (`strand identity POD`) or run `strand identity init`"),
    }
}

/// `<state-dir>/identity`, or where the running control plane says.
pub fn identity_dir(ctx: &Ctx) -> PathBuf {
    ctx.cluster()
        .ok()
        .map(|c| c.identity_dir)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| ctx.state_dir().join(strand_controller_core::IDENTITY_DIR))
}

fn init(ctx: &Ctx, args: InitArgs) -> anyhow::Result<u8> {
    let dir = identity_dir(ctx);
    let res = match (&args.trust_anchor, &args.issuer, &args.issuer_key) {
        (Some(anchor), Some(issuer), Some(key)) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let pems = CaPems {
                trust_anchor: read(anchor)?,
                issuer_cert: read(issuer)?,
                issuer_key: read(key)?,
            };
            strand_identity::import(&dir, &pems, args.force).map_err(|e| {
                let given = |part| match part {
                    strand_identity::CaPart::TrustAnchor => Some(anchor),
                    strand_identity::CaPart::IssuerCert => Some(issuer),
                    strand_identity::CaPart::IssuerKey => Some(key),
                    strand_identity::CaPart::TokenKey => None,
                };
                match e {
                    CaError::Invalid { part, reason } => match given(part) {
                        Some(path) => anyhow::anyhow!(
                            "{} ({}) cannot be used: {reason}",
                            path.display(),
                            part.what()
                        ),
                        None => anyhow::anyhow!("{part}: {reason}"),
                    },
                    e => explain(e),
                }
            })
        }
        _ => {
            let opts = GenerateOptions {
                force: args.force,
                trust_anchor_lifetime: args.trust_anchor_lifetime,
                issuer_lifetime: args.issuer_lifetime,
            };
            strand_identity::generate(&dir, &opts).map_err(explain)
        }
    };
    res?;
    let files = strand_identity::CaFiles::new(&dir);
    let show = |path: PathBuf| -> anyhow::Result<String> {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let info = strand_identity::cert_info(&text)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(format!(
            "{} ({}, valid until {})",
            path.display(),
            info.subject,
            strand_identity::format_time(info.not_after)
        ))
    };
    let verb = if args.trust_anchor.is_some() {
        "imported"
    } else {
        "generated"
    };
    println!("{verb} the identity CA in {}:", dir.display());
    println!("  trust anchor  {}", show(files.trust_anchor())?);
    println!("  issuer        {}", show(files.issuer_cert())?);
    println!("  issuer key    {}", files.issuer_key().display());
    println!("  token key     {}", files.token_key().display());
    if ctx.cluster().is_ok() {
        println!(
            "the running control plane uses the new issuer within 2s; restart running workloads so that their proxies trust the new anchor"
        );
    }
    Ok(0)
}

fn explain(e: CaError) -> anyhow::Error {
    match e {
        CaError::Exists(path) => anyhow::anyhow!(
            "{} already exists; pass --force to replace the CA (running workloads then need a restart to trust the new anchor)",
            path.display()
        ),
        e => e.into(),
    }
}

/// One `strand check` line about a certificate file.
pub enum CertCheck {
    Valid(String),
    /// Valid, but expires within [`EXPIRY_WARNING`].
    ExpiresSoon(String),
    Invalid(String),
}

/// Certificates expiring sooner than this are flagged by `strand check`:
/// time to rotate them without hurry.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(60 * 86_400);

/// Reads a PEM file and judges the certificate that expires first.
pub fn check_cert(path: &Path, now: SystemTime) -> CertCheck {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => return CertCheck::Invalid(format!("cannot read {}: {e}", path.display())),
    };
    let infos = match strand_identity::cert_infos(&text) {
        Ok(i) => i,
        Err(e) => return CertCheck::Invalid(format!("{}: {e}", path.display())),
    };
    let Some(first) = infos.iter().min_by_key(|i| i.not_after) else {
        return CertCheck::Invalid(format!("{}: no certificate", path.display()));
    };
    let when = strand_identity::format_time(first.not_after);
    if now >= first.not_after {
        return CertCheck::Invalid(format!("{} expired at {when}", first.subject));
    }
    if now < first.not_before {
        return CertCheck::Invalid(format!(
            "{} is not valid before {}",
            first.subject,
            strand_identity::format_time(first.not_before)
        ));
    }
    let left = first.expires_in(now);
    if left < EXPIRY_WARNING {
        return CertCheck::ExpiresSoon(format!(
            "{} expires at {when} (in {})",
            first.subject,
            strand_identity::format_duration(left)
        ));
    }
    CertCheck::Valid(format!("{} valid until {when}", first.subject))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn certificates_are_judged_by_their_expiry() {
        let dir = std::env::temp_dir().join(format!("strand-cli-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = GenerateOptions {
            issuer_lifetime: Duration::from_secs(30 * 86_400),
            ..GenerateOptions::default()
        };
        strand_identity::generate(&dir, &opts).expect("generate");
        let now = SystemTime::now();
        let anchor = check_cert(&dir.join("ca.crt"), now);
        assert!(
            matches!(&anchor, CertCheck::Valid(d) if d.contains("CN=root.linkerd.cluster.local valid until")),
            "{}",
            text(&anchor)
        );
        let issuer = check_cert(&dir.join("issuer.crt"), now);
        assert!(
            matches!(&issuer, CertCheck::ExpiresSoon(d) if d.contains("(in 29d")),
            "{}",
            text(&issuer)
        );
        let later = now + Duration::from_secs(31 * 86_400);
        let expired = check_cert(&dir.join("issuer.crt"), later);
        assert!(
            matches!(&expired, CertCheck::Invalid(d) if d.contains("expired at")),
            "{}",
            text(&expired)
        );
        let missing = check_cert(&dir.join("nope.crt"), now);
        assert!(
            matches!(&missing, CertCheck::Invalid(d) if d.contains("cannot read")),
            "{}",
            text(&missing)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn text(c: &CertCheck) -> &str {
        match c {
            CertCheck::Valid(s) | CertCheck::ExpiresSoon(s) | CertCheck::Invalid(s) => s,
        }
    }
}
