//! The command line: flags named after Linkerd's proxy-init where it has
//! them, turned into a [`Config`] in one place.

use std::io::Write;

use clap::{ArgAction, Parser};

use crate::ports::{PortList, PortRange};
use crate::rules::{DEFAULT_ADMIN_PORT, DEFAULT_CONTROL_PORT};
use crate::subnets::SubnetList;
use crate::{Action, Config, Error, Iptables, Mode, SystemIptables};

/// Installs the iptables rules that send this network namespace's TCP
/// traffic through the strand proxy.
#[derive(Debug, Parser)]
#[command(
    name = "strand-init",
    version,
    about,
    long_about = "Installs iptables nat rules in the current network namespace so that TCP \
                  arriving at the pod goes to the proxy's inbound port and TCP its processes \
                  open goes to the proxy's outbound port. Runs as root (or with CAP_NET_ADMIN \
                  and CAP_NET_RAW). Running it again replaces its rules; --clear removes them.\n\n\
                  Exit codes: 0 done, 2 bad flags, 69 iptables not installed, 77 not \
                  privileged, 1 iptables failed.",
    after_help = "Ports take lists and ranges: --outbound-ports-to-ignore 25,587,3306-3310. \
                  List flags may be repeated."
)]
pub struct Args {
    /// Proxy inbound port: TCP arriving at the pod is redirected here.
    #[arg(long, short = 'p', value_name = "PORT", default_value_t = 4143,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub incoming_proxy_port: u16,

    /// Proxy outbound port: TCP the pod's processes open is redirected here.
    #[arg(long, short = 'o', value_name = "PORT", default_value_t = 4140,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub outgoing_proxy_port: u16,

    /// User id the proxy runs as; its own connections are never redirected.
    #[arg(long, short = 'u', value_name = "UID", default_value_t = 2102)]
    pub proxy_uid: u32,

    /// Proxy admin port (metrics, probes); always reached directly, not via the proxy.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_ADMIN_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_admin_port: u16,

    /// Proxy control (tap) port; always reached directly, not via the proxy.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_CONTROL_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_control_port: u16,

    /// Inbound destination ports that bypass the proxy, e.g. 22,8000-8010.
    #[arg(long, value_name = "PORTS", action = ArgAction::Append)]
    pub inbound_ports_to_ignore: Vec<PortList>,

    /// Outbound destination ports that bypass the proxy, e.g. 25,587,3306-3310.
    #[arg(long, value_name = "PORTS", action = ArgAction::Append)]
    pub outbound_ports_to_ignore: Vec<PortList>,

    /// Source subnets (CIDR) whose inbound connections bypass the proxy (Linkerd's flag).
    #[arg(long, value_name = "CIDRS", action = ArgAction::Append)]
    pub subnets_to_ignore: Vec<SubnetList>,

    /// Destination subnets (CIDR) that outbound connections reach without the proxy.
    #[arg(long, value_name = "CIDRS", action = ArgAction::Append)]
    pub outbound_subnets_to_ignore: Vec<SubnetList>,

    /// Also install the rules with ip6tables (IPv6 subnets go there); --ipv6=false to skip.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipv6: bool,

    /// iptables backend: legacy or nft (default: whatever `iptables-restore` is on this system).
    #[arg(long, value_name = "MODE", value_enum)]
    pub iptables_mode: Option<Mode>,

    /// Print the iptables-restore input and change nothing (needs no iptables, no root).
    #[arg(long, visible_alias = "simulate")]
    pub dry_run: bool,

    /// Remove strand-init's rules and chains instead of installing them.
    #[arg(long)]
    pub clear: bool,
}

// === impl Args ===

impl Args {
    /// The rule configuration these flags describe.
    pub fn config(&self) -> Config {
        let always_ignored = PortList::new([
            PortRange::single(self.proxy_admin_port),
            PortRange::single(self.proxy_control_port),
        ]);
        Config {
            inbound_proxy_port: self.incoming_proxy_port,
            outbound_proxy_port: self.outgoing_proxy_port,
            proxy_uid: self.proxy_uid,
            inbound_ports_to_ignore: always_ignored
                .union(&self.inbound_ports_to_ignore.iter().cloned().collect()),
            outbound_ports_to_ignore: self.outbound_ports_to_ignore.iter().cloned().collect(),
            inbound_subnets_to_ignore: self
                .subnets_to_ignore
                .iter()
                .flat_map(|l| l.0.clone())
                .collect(),
            outbound_subnets_to_ignore: self
                .outbound_subnets_to_ignore
                .iter()
                .flat_map(|l| l.0.clone())
                .collect(),
            ipv6: self.ipv6,
        }
    }

    /// Whether this run installs or clears.
    pub fn action(&self) -> Action {
        if self.clear {
            Action::Clear
        } else {
            Action::Install
        }
    }
}

/// Runs the command: prints the plan on a dry run, applies it otherwise,
/// and reports what happened on `out` (dry run) or `log` (a summary).
pub fn run(
    args: &Args,
    iptables: &dyn Iptables,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<(), Error> {
    let config = args.config();
    let action = args.action();
    let names = SystemIptables::new(args.iptables_mode);
    if args.dry_run {
        let _ = out.write_all(dry_run(&config, action, &names).as_bytes());
        return Ok(());
    }
    let applied = crate::apply(&config, action, iptables)?;
    for a in &applied {
        let _ = match action {
            Action::Install => writeln!(
                log,
                "strand-init: {}: installed {} rules; inbound TCP -> :{}, outbound TCP -> :{} \
                 (uid {} and loopback exempt)",
                a.family,
                config.rules(a.family).len(),
                config.inbound_proxy_port,
                config.outbound_proxy_port,
                config.proxy_uid,
            ),
            Action::Clear => writeln!(
                log,
                "strand-init: {}: removed strand-init's rules and chains",
                a.family
            ),
        };
    }
    Ok(())
}

/// The restore input for every family, headed by comment lines (which
/// iptables-restore accepts) saying which command would read it.
pub fn dry_run(config: &Config, action: Action, names: &SystemIptables) -> String {
    let mut out = String::new();
    for family in config.families() {
        out.push_str(&format!(
            "# {family}: input for `{}`; nothing was changed. A real run first \
             deletes jumps into our chains that `{} -t nat` shows.\n",
            names.restore_command(family),
            names.save_binary(family),
        ));
        out.push_str(&action.input(config, family, ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("strand-init").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_linkerds() {
        let args = parse(&[]).expect("no flags is valid");
        assert_eq!(args.config(), Config::default());
        assert_eq!(args.action(), Action::Install);
        assert_eq!(args.iptables_mode, None);
    }

    #[test]
    fn list_flags_merge_with_defaults_and_repeat() {
        let args = parse(&[
            "--inbound-ports-to-ignore=22,4191",
            "--inbound-ports-to-ignore",
            "8000-8010",
            "--outbound-ports-to-ignore=25,587,3306-3310",
            "--subnets-to-ignore=10.0.0.0/8,fd00::/8",
            "--outbound-subnets-to-ignore=192.168.0.0/16",
        ])
        .expect("valid flags");
        let c = args.config();
        let ports = |l: &PortList| {
            l.ranges()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ports(&c.inbound_ports_to_ignore),
            ["22", "4190", "4191", "8000:8010"]
        );
        assert_eq!(
            ports(&c.outbound_ports_to_ignore),
            ["25", "587", "3306:3310"]
        );
        let subnets = c
            .inbound_subnets_to_ignore
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        assert_eq!(subnets, ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(c.outbound_subnets_to_ignore.len(), 1);
    }

    #[test]
    fn ipv6_is_a_go_style_bool() {
        assert!(parse(&["--ipv6"]).expect("valid").ipv6);
        assert!(!parse(&["--ipv6=false"]).expect("valid").ipv6);
        assert!(parse(&["--ipv6=true"]).expect("valid").ipv6);
        assert!(parse(&["--ipv6=maybe"]).is_err());
    }

    #[test]
    fn other_flags() {
        let args = parse(&[
            "-p",
            "5143",
            "-o",
            "5140",
            "-u",
            "0",
            "--iptables-mode",
            "nft",
            "--simulate",
            "--clear",
        ])
        .expect("valid flags");
        assert_eq!(
            (
                args.incoming_proxy_port,
                args.outgoing_proxy_port,
                args.proxy_uid
            ),
            (5143, 5140, 0)
        );
        assert_eq!(args.iptables_mode, Some(Mode::Nft));
        assert!(args.dry_run);
        assert_eq!(args.action(), Action::Clear);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for bad in [
            &["--outbound-ports-to-ignore=25,x"][..],
            &["--inbound-ports-to-ignore=10-5"],
            &["--subnets-to-ignore=10.0.0.0/40"],
            &["--incoming-proxy-port=0"],
            &["--outgoing-proxy-port=70000"],
            &["--iptables-mode=ebtables"],
            &["--proxy-uid=-1"],
        ] {
            let e = parse(bad).expect_err("invalid");
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let e = parse(&["--outbound-ports-to-ignore=25,x"]).expect_err("invalid");
        assert!(e.to_string().contains(r#""x" is not a port"#), "{e}");
    }

    #[test]
    fn dry_run_prints_and_touches_nothing() {
        struct Untouchable;
        impl Iptables for Untouchable {
            fn save(&self, _: crate::Family) -> Result<String, Error> {
                panic!("a dry run must not read iptables")
            }
            fn restore(&self, _: crate::Family, _: &str) -> Result<(), Error> {
                panic!("a dry run must not change iptables")
            }
        }
        let args = parse(&["--dry-run", "--ipv6=false", "--iptables-mode=legacy"]).expect("valid");
        let (mut out, mut log) = (Vec::new(), Vec::new());
        run(&args, &Untouchable, &mut out, &mut log).expect("dry run succeeds");
        let out = String::from_utf8(out).expect("utf-8");
        assert!(
            out.starts_with("# IPv4: input for `iptables-legacy-restore -w --noflush`"),
            "{out}"
        );
        assert!(out.contains("-j REDIRECT --to-ports 4143\n"), "{out}");
        assert!(!out.contains("IPv6"), "{out}");
        assert!(log.is_empty());
    }
}
