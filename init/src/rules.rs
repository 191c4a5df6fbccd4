//! Rule generation: a [`Config`] becomes the `nat` rules for one address
//! family and the `iptables-restore --noflush` input that installs (or
//! clears) them. Pure functions of their inputs, so they are golden-tested.

use std::fmt;

use crate::ports::{PortList, PortRange};
use crate::saved;
use crate::subnets::Cidr;

/// The chain that `nat PREROUTING` jumps to: traffic arriving at the pod.
pub const INBOUND_CHAIN: &str = "STRAND_INBOUND";

/// The chain that `nat OUTPUT` jumps to: traffic the pod's processes send.
pub const OUTPUT_CHAIN: &str = "STRAND_OUTPUT";

/// Every chain strand-init owns.
pub const OUR_CHAINS: [&str; 2] = [INBOUND_CHAIN, OUTPUT_CHAIN];

/// Every rule's comment starts with this, so `iptables-save | grep
/// strand-init/` shows what we installed.
pub const COMMENT_PREFIX: &str = "strand-init/";

/// An IP version: each has its own tables and binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

/// What to capture and what to leave alone. Ports are TCP ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The proxy's inbound listener; inbound TCP is redirected here.
    pub inbound_proxy_port: u16,
    /// The proxy's outbound listener; outbound TCP is redirected here.
    pub outbound_proxy_port: u16,
    /// The user the proxy runs as; its own connections are not captured.
    pub proxy_uid: u32,
    /// Destination ports of inbound connections that bypass the proxy
    /// (including the proxy's own admin and control ports).
    pub inbound_ports_to_ignore: PortList,
    /// Destination ports of outbound connections that bypass the proxy.
    pub outbound_ports_to_ignore: PortList,
    /// Sources of inbound connections that bypass the proxy.
    pub inbound_subnets_to_ignore: Vec<Cidr>,
    /// Destinations of outbound connections that bypass the proxy.
    pub outbound_subnets_to_ignore: Vec<Cidr>,
    /// Whether to install the same rules for IPv6 as well.
    pub ipv6: bool,
}

/// One `-A` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The chain the rule is appended to.
    pub chain: &'static str,
    /// Match arguments in the order `iptables-save` prints them (addresses,
    /// interfaces, protocol, then `-m` modules), so that the rules we print
    /// read the same as the ones the kernel reports back.
    pub matches: Vec<String>,
    /// The comment after [`COMMENT_PREFIX`], naming the rule's purpose.
    pub comment: &'static str,
    /// What happens to a matching packet.
    pub target: Target,
}

/// A rule's `-j` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Stop processing our chain: the packet is not captured.
    Return,
    /// Rewrite the destination to this local port (the proxy's listener).
    Redirect(u16),
    /// Continue in one of our chains.
    Jump(&'static str),
}

/// The proxy's control (tap) port, which must stay reachable directly.
pub const DEFAULT_CONTROL_PORT: u16 = 4190;
/// The proxy's admin port (metrics, probes), which must stay reachable
/// directly so that kubelet's probes and Prometheus reach the proxy itself.
pub const DEFAULT_ADMIN_PORT: u16 = 4191;

// === impl Family ===

impl Family {
    /// How people call it in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Config ===

impl Default for Config {
    /// Linkerd's defaults (`DESIGN.md` section 3).
    fn default() -> Self {
        Config {
            inbound_proxy_port: 4143,
            outbound_proxy_port: 4140,
            proxy_uid: 2102,
            inbound_ports_to_ignore: PortList::new([
                PortRange::single(DEFAULT_CONTROL_PORT),
                PortRange::single(DEFAULT_ADMIN_PORT),
            ]),
            outbound_ports_to_ignore: PortList::default(),
            inbound_subnets_to_ignore: Vec::new(),
            outbound_subnets_to_ignore: Vec::new(),
            ipv6: true,
        }
    }
}

impl Config {
    /// The families whose tables get rules.
    pub fn families(&self) -> Vec<Family> {
        if self.ipv6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }

    /// The rules for one family, in the order they are appended: our two
    /// chains' rules, then the jumps into them.
    pub fn rules(&self, family: Family) -> Vec<Rule> {
        let mut rules = self.inbound_rules(family);
        rules.extend(self.outbound_rules(family));
        rules.push(Rule {
            chain: "PREROUTING",
            matches: args(["-p", "tcp"]),
            comment: "install-inbound",
            target: Target::Jump(INBOUND_CHAIN),
        });
        rules.push(Rule {
            chain: "OUTPUT",
            matches: args(["-p", "tcp"]),
            comment: "install-outbound",
            target: Target::Jump(OUTPUT_CHAIN),
        });
        rules
    }

    /// Inbound: every TCP connection arriving at the pod goes to the proxy's
    /// inbound port, except to ignored ports or from ignored subnets.
    fn inbound_rules(&self, family: Family) -> Vec<Rule> {
        let mut rules = ignore_ports(
            INBOUND_CHAIN,
            &self.inbound_ports_to_ignore,
            "ignore-inbound-ports",
        );
        rules.extend(ignore_subnets(
            INBOUND_CHAIN,
            &self.inbound_subnets_to_ignore,
            family,
            "-s",
            "ignore-inbound-subnet",
        ));
        rules.push(Rule {
            chain: INBOUND_CHAIN,
            matches: args(["-p", "tcp"]),
            comment: "redirect-inbound",
            target: Target::Redirect(self.inbound_proxy_port),
        });
        rules
    }

    /// Outbound: every TCP connection a process in the pod opens goes to the
    /// proxy's outbound port, with these exceptions, in this order:
    ///
    /// 1. Connections opened by the proxy's user. The proxy's own
    ///    connections (to endpoints, to the control plane) must leave the
    ///    pod, or they would come straight back into the proxy.
    /// 2. Connections over the loopback interface, as Linkerd's proxy-init
    ///    does (`-o lo -j RETURN`). That covers 127.0.0.0/8 and ::1, and also
    ///    the pod's own addresses, which the kernel routes over `lo`. So an
    ///    app that calls its own pod IP reaches itself directly: NAT for a
    ///    locally opened connection is decided once, here in `OUTPUT`, and
    ///    `PREROUTING` never sees it, so it bypasses the proxy on both sides
    ///    and works. We deliberately do not add Istio's rule that sends the
    ///    proxy's own connections to its pod IP through the inbound side
    ///    (`-o lo ! -d 127.0.0.1/32 -m owner --uid-owner <proxy> -j
    ///    <inbound>`): strand's inbound side forwards to the original
    ///    destination, the pod IP, as the proxy user, so that rule would
    ///    capture the forwarded connection again and loop. A proxy that
    ///    resolves a service to its own pod therefore reaches the app
    ///    directly, as with Linkerd.
    /// 3. Ignored destination ports and subnets.
    fn outbound_rules(&self, family: Family) -> Vec<Rule> {
        let mut rules = vec![
            Rule {
                chain: OUTPUT_CHAIN,
                matches: args(["-m", "owner", "--uid-owner", &self.proxy_uid.to_string()]),
                comment: "ignore-proxy-uid",
                target: Target::Return,
            },
            Rule {
                chain: OUTPUT_CHAIN,
                matches: args(["-o", "lo"]),
                comment: "ignore-loopback",
                target: Target::Return,
            },
        ];
        rules.extend(ignore_ports(
            OUTPUT_CHAIN,
            &self.outbound_ports_to_ignore,
            "ignore-outbound-ports",
        ));
        rules.extend(ignore_subnets(
            OUTPUT_CHAIN,
            &self.outbound_subnets_to_ignore,
            family,
            "-d",
            "ignore-outbound-subnet",
        ));
        rules.push(Rule {
            chain: OUTPUT_CHAIN,
            matches: args(["-p", "tcp"]),
            comment: "redirect-outbound",
            target: Target::Redirect(self.outbound_proxy_port),
        });
        rules
    }

    /// The `iptables-restore --noflush` input that installs this config's
    /// rules for `family`, given the table's current state (`iptables-save
    /// -t nat` output; empty when unknown, as in a dry run).
    ///
    /// One transaction: delete every jump into our chains found in `saved`,
    /// declare our chains (which in `--noflush` mode creates or flushes
    /// them), append our rules and the jumps. Running it again on the result
    /// leaves exactly one set of rules.
    pub fn install_input(&self, family: Family, saved: &str) -> String {
        let mut out = restore_prologue(saved);
        for rule in self.rules(family) {
            out.push_str(&rule.to_string());
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }

    /// The rules of this config for `family` that the saved table
    /// (`iptables-save -t nat` output) does not hold, as restore lines.
    /// Empty when the capture is in place exactly as configured.
    pub fn missing_rules(&self, family: Family, saved: &str) -> Vec<String> {
        let lines: std::collections::HashSet<&str> = saved.lines().map(str::trim).collect();
        self.rules(family)
            .iter()
            .map(ToString::to_string)
            .filter(|rule| !lines.contains(rule.as_str()))
            .collect()
    }
}

/// The `iptables-restore --noflush` input that removes our jumps, rules and
/// chains, given the table's current state. Declaring a chain before `-X`
/// makes deleting it succeed whether or not it existed.
pub fn clear_input(saved: &str) -> String {
    let mut out = restore_prologue(saved);
    for chain in OUR_CHAINS {
        out.push_str(&format!("-X {chain}\n"));
    }
    out.push_str("COMMIT\n");
    out
}

/// `*nat`, deletions of the jumps into our chains, our chain declarations.
fn restore_prologue(saved: &str) -> String {
    let mut out = String::from("*nat\n");
    for jump in saved::jumps_into_our_chains(saved) {
        if let Some(rest) = jump.strip_prefix("-A ") {
            out.push_str(&format!("-D {rest}\n"));
        }
    }
    for chain in OUR_CHAINS {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    out
}

/// `-p tcp -m multiport --dports ... -j RETURN`, as many rules as the
/// multiport limit requires.
/// `RETURN` rules for the subnets of `family`, matched as source (`-s`) or
/// destination (`-d`).
fn ignore_subnets<'a>(
    chain: &'static str,
    subnets: &'a [Cidr],
    family: Family,
    flag: &'static str,
    comment: &'static str,
) -> impl Iterator<Item = Rule> + 'a {
    subnets
        .iter()
        .filter(move |c| c.family() == family)
        .map(move |c| Rule {
            chain,
            matches: args([flag, &c.to_string()]),
            comment,
            target: Target::Return,
        })
}

fn ignore_ports(chain: &'static str, ports: &PortList, comment: &'static str) -> Vec<Rule> {
    ports
        .multiport_args()
        .into_iter()
        .map(|dports| Rule {
            chain,
            matches: args(["-p", "tcp", "-m", "multiport", "--dports", &dports]),
            comment,
            target: Target::Return,
        })
        .collect()
}

fn args<const N: usize>(a: [&str; N]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

// === impl Rule ===

impl fmt::Display for Rule {
    /// The rule as an `iptables-restore` line, in `iptables-save`'s order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {}", self.chain)?;
        for m in &self.matches {
            write!(f, " {m}")?;
        }
        write!(
            f,
            " -m comment --comment \"{COMMENT_PREFIX}{}\" {}",
            self.comment, self.target
        )
    }
}

// === impl Target ===

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Return => f.write_str("-j RETURN"),
            Target::Redirect(port) => write!(f, "-j REDIRECT --to-ports {port}"),
            Target::Jump(chain) => write!(f, "-j {chain}"),
        }
    }
}

#[cfg(test)]
mod tests;
