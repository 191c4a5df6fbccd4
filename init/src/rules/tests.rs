use super::*;
use crate::subnets::SubnetList;

/// The defaults, for either family (IPv6 differs only in ignored subnets).
const DEFAULTS: &str = r#"*nat
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
-A STRAND_INBOUND -p tcp -m multiport --dports 4190,4191 -m comment --comment "strand-init/ignore-inbound-ports" -j RETURN
-A STRAND_INBOUND -p tcp -m comment --comment "strand-init/redirect-inbound" -j REDIRECT --to-ports 4143
-A STRAND_OUTPUT -m owner --uid-owner 2102 -m comment --comment "strand-init/ignore-proxy-uid" -j RETURN
-A STRAND_OUTPUT -o lo -m comment --comment "strand-init/ignore-loopback" -j RETURN
-A STRAND_OUTPUT -p tcp -m comment --comment "strand-init/redirect-outbound" -j REDIRECT --to-ports 4140
-A PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-A OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
COMMIT
"#;

fn with_ignores() -> Config {
    let subnets = |s: &str| s.parse::<SubnetList>().expect("valid subnets").0;
    Config {
        inbound_ports_to_ignore: Config::default()
            .inbound_ports_to_ignore
            .union(&"22".parse().expect("valid ports")),
        outbound_ports_to_ignore: "25,587,3306-3310".parse().expect("valid ports"),
        inbound_subnets_to_ignore: subnets("10.0.0.0/8,fd00::/8"),
        outbound_subnets_to_ignore: subnets("192.168.0.0/16,fd00:5a::/64"),
        ..Config::default()
    }
}

#[test]
fn defaults_ipv4() {
    assert_eq!(Config::default().install_input(Family::V4, ""), DEFAULTS);
}

#[test]
fn defaults_ipv6_mirror_ipv4() {
    assert_eq!(Config::default().install_input(Family::V6, ""), DEFAULTS);
    assert_eq!(Config::default().families(), [Family::V4, Family::V6]);
    let v4_only = Config {
        ipv6: false,
        ..Config::default()
    };
    assert_eq!(v4_only.families(), [Family::V4]);
}

#[test]
fn ignored_ports_and_subnets_ipv4() {
    let expected = r#"*nat
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
-A STRAND_INBOUND -p tcp -m multiport --dports 22,4190,4191 -m comment --comment "strand-init/ignore-inbound-ports" -j RETURN
-A STRAND_INBOUND -s 10.0.0.0/8 -m comment --comment "strand-init/ignore-inbound-subnet" -j RETURN
-A STRAND_INBOUND -p tcp -m comment --comment "strand-init/redirect-inbound" -j REDIRECT --to-ports 4143
-A STRAND_OUTPUT -m owner --uid-owner 2102 -m comment --comment "strand-init/ignore-proxy-uid" -j RETURN
-A STRAND_OUTPUT -o lo -m comment --comment "strand-init/ignore-loopback" -j RETURN
-A STRAND_OUTPUT -p tcp -m multiport --dports 25,587,3306:3310 -m comment --comment "strand-init/ignore-outbound-ports" -j RETURN
-A STRAND_OUTPUT -d 192.168.0.0/16 -m comment --comment "strand-init/ignore-outbound-subnet" -j RETURN
-A STRAND_OUTPUT -p tcp -m comment --comment "strand-init/redirect-outbound" -j REDIRECT --to-ports 4140
-A PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-A OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
COMMIT
"#;
    assert_eq!(with_ignores().install_input(Family::V4, ""), expected);
}

#[test]
fn ignored_ports_and_subnets_ipv6() {
    let expected = r#"*nat
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
-A STRAND_INBOUND -p tcp -m multiport --dports 22,4190,4191 -m comment --comment "strand-init/ignore-inbound-ports" -j RETURN
-A STRAND_INBOUND -s fd00::/8 -m comment --comment "strand-init/ignore-inbound-subnet" -j RETURN
-A STRAND_INBOUND -p tcp -m comment --comment "strand-init/redirect-inbound" -j REDIRECT --to-ports 4143
-A STRAND_OUTPUT -m owner --uid-owner 2102 -m comment --comment "strand-init/ignore-proxy-uid" -j RETURN
-A STRAND_OUTPUT -o lo -m comment --comment "strand-init/ignore-loopback" -j RETURN
-A STRAND_OUTPUT -p tcp -m multiport --dports 25,587,3306:3310 -m comment --comment "strand-init/ignore-outbound-ports" -j RETURN
-A STRAND_OUTPUT -d fd00:5a::/64 -m comment --comment "strand-init/ignore-outbound-subnet" -j RETURN
-A STRAND_OUTPUT -p tcp -m comment --comment "strand-init/redirect-outbound" -j REDIRECT --to-ports 4140
-A PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-A OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
COMMIT
"#;
    assert_eq!(with_ignores().install_input(Family::V6, ""), expected);
}

#[test]
fn custom_ports_and_uid() {
    let config = Config {
        inbound_proxy_port: 5143,
        outbound_proxy_port: 5140,
        proxy_uid: 0,
        inbound_ports_to_ignore: PortList::default(),
        ipv6: false,
        ..Config::default()
    };
    let input = config.install_input(Family::V4, "");
    assert!(
        !input.contains("multiport"),
        "nothing ignored, no multiport rule:\n{input}"
    );
    assert!(input.contains(" --uid-owner 0 "), "{input}");
    assert!(input.contains("-j REDIRECT --to-ports 5143\n"), "{input}");
    assert!(input.contains("-j REDIRECT --to-ports 5140\n"), "{input}");
}

#[test]
fn many_ignored_ports_split_into_several_rules() {
    let ports: Vec<String> = (1000..1020).map(|p| p.to_string()).collect();
    let config = Config {
        outbound_ports_to_ignore: ports.join(",").parse().expect("valid"),
        ..Config::default()
    };
    let rules: Vec<String> = config
        .rules(Family::V4)
        .iter()
        .filter(|r| r.comment == "ignore-outbound-ports")
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        rules,
        [
            r#"-A STRAND_OUTPUT -p tcp -m multiport --dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 -m comment --comment "strand-init/ignore-outbound-ports" -j RETURN"#,
            r#"-A STRAND_OUTPUT -p tcp -m multiport --dports 1015,1016,1017,1018,1019 -m comment --comment "strand-init/ignore-outbound-ports" -j RETURN"#,
        ]
    );
}

/// What `iptables-save -t nat` shows after one run with the defaults.
const SAVED_AFTER_RUN: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 08:34:04 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j RETURN
-A PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-A OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
-A STRAND_INBOUND -p tcp -m multiport --dports 4190,4191 -m comment --comment "strand-init/ignore-inbound-ports" -j RETURN
-A STRAND_INBOUND -p tcp -m comment --comment "strand-init/redirect-inbound" -j REDIRECT --to-ports 4143
-A STRAND_OUTPUT -m owner --uid-owner 2102 -m comment --comment "strand-init/ignore-proxy-uid" -j RETURN
-A STRAND_OUTPUT -o lo -m comment --comment "strand-init/ignore-loopback" -j RETURN
-A STRAND_OUTPUT -p tcp -m comment --comment "strand-init/redirect-outbound" -j REDIRECT --to-ports 4140
COMMIT
# Completed on Thu Nov 26 08:34:04 2026
"#;

#[test]
fn rerun_deletes_the_existing_jumps_first() {
    let input = Config::default().install_input(Family::V4, SAVED_AFTER_RUN);
    let expected_head = r#"*nat
-D PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-D OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
"#;
    assert!(input.starts_with(expected_head), "{input}");
    assert_eq!(
        input[expected_head.len()..],
        DEFAULTS["*nat\n:STRAND_INBOUND - [0:0]\n:STRAND_OUTPUT - [0:0]\n".len()..]
    );
    assert!(
        !input.contains("udp"),
        "other rules are left alone:\n{input}"
    );
}

#[test]
fn clear_deletes_jumps_and_chains() {
    let expected = r#"*nat
-D PREROUTING -p tcp -m comment --comment "strand-init/install-inbound" -j STRAND_INBOUND
-D OUTPUT -p tcp -m comment --comment "strand-init/install-outbound" -j STRAND_OUTPUT
:STRAND_INBOUND - [0:0]
:STRAND_OUTPUT - [0:0]
-X STRAND_INBOUND
-X STRAND_OUTPUT
COMMIT
"#;
    assert_eq!(clear_input(SAVED_AFTER_RUN), expected);
    assert_eq!(
        clear_input(""),
        "*nat\n:STRAND_INBOUND - [0:0]\n:STRAND_OUTPUT - [0:0]\n-X STRAND_INBOUND\n-X STRAND_OUTPUT\nCOMMIT\n"
    );
}
