use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::{Config, Mode};

/// Records what the plugin asked for; "applies" nothing.
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    /// What `saved` returns for every family.
    saved: String,
    /// Namespaces that exist.
    existing: Vec<PathBuf>,
}

impl Capture for Fake {
    fn apply(&self, netns: &Path, conf: &NetConf, install: bool) -> Result<Vec<Family>, CniError> {
        self.calls.borrow_mut().push(format!(
            "{} {} uid={}",
            if install { "install" } else { "clear" },
            netns.display(),
            conf.config.proxy_uid
        ));
        Ok(conf.config.families())
    }

    fn saved(&self, netns: &Path, conf: &NetConf) -> Result<Vec<(Family, String)>, CniError> {
        self.calls
            .borrow_mut()
            .push(format!("save {}", netns.display()));
        Ok(conf
            .config
            .families()
            .into_iter()
            .map(|f| (f, self.saved.clone()))
            .collect())
    }

    fn netns_exists(&self, netns: &Path) -> bool {
        self.existing.iter().any(|p| p == netns)
    }
}

const NETNS: &str = "/run/netns/pod-a";

fn fake() -> Fake {
    Fake {
        existing: vec![PathBuf::from(NETNS)],
        ..Fake::default()
    }
}

fn env(command: &str) -> Env {
    let vars = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
    ];
    Env::from_vars(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .expect("valid environment")
}

fn prev_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": NETNS}],
        "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}],
        "dns": {}
    })
}

fn conf(linkerd: Value) -> Vec<u8> {
    json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "type": "strand-cni",
        "linkerd": linkerd,
        "prevResult": prev_result(),
    })
    .to_string()
    .into_bytes()
}

fn run_err(env: &Env, stdin: &[u8], capture: &dyn Capture) -> CniError {
    match run(env, stdin, capture) {
        Ok(o) => panic!("expected an error, got {o:?}"),
        Err((e, _)) => e,
    }
}

#[test]
fn reads_linkerds_own_network_configuration() {
    // linkerd-cni's ConfigMap, as its installer renders it.
    let text = r#"{
      "cniVersion": "0.3.1",
      "name": "linkerd-cni",
      "type": "linkerd-cni",
      "log_level": "info",
      "policy": {"type": "k8s", "k8s_api_root": "https://10.96.0.1:443", "k8s_auth_token": "t"},
      "kubernetes": {"kubeconfig": "/etc/cni/net.d/ZZZ-linkerd-cni-kubeconfig"},
      "linkerd": {
        "incoming-proxy-port": 4143,
        "outgoing-proxy-port": 4140,
        "proxy-uid": 2102,
        "ports-to-redirect": [],
        "inbound-ports-to-ignore": ["4191","4190","22"],
        "outbound-ports-to-ignore": ["443", "3306-3310"],
        "simulate": false,
        "use-wait-flag": "false"
      }
    }"#;
    let conf = NetConf::parse(text.as_bytes()).expect("Linkerd's configuration parses");
    assert_eq!(conf.version, "0.3.1");
    assert_eq!(conf.name, "linkerd-cni");
    assert!(!conf.simulate);
    assert_eq!(conf.mode, None);
    assert_eq!(conf.config.proxy_uid, 2102);
    assert_eq!(
        conf.config.inbound_ports_to_ignore.multiport_args(),
        ["22,4190,4191"]
    );
    assert_eq!(
        conf.config.outbound_ports_to_ignore.multiport_args(),
        ["443,3306:3310"]
    );
    assert_eq!(conf.prev_result, None);
}

#[test]
fn no_section_means_strand_inits_defaults() {
    let bare = NetConf::parse(br#"{"cniVersion": "1.0.0", "name": "n", "type": "strand-cni"}"#)
        .expect("parses");
    assert_eq!(bare.config, Config::default());
    // Admin and control ports stay ignored even when a list omits them.
    let listed = NetConf::parse(&conf(json!({"inbound-ports-to-ignore": [22]}))).unwrap();
    assert_eq!(
        listed.config.inbound_ports_to_ignore.multiport_args(),
        ["22,4190,4191"]
    );
}

#[test]
fn every_field_is_read() {
    let conf = NetConf::parse(&conf(json!({
        "incoming-proxy-port": 5143,
        "outgoing-proxy-port": 5140,
        "proxy-uid": 999,
        "outbound-ports-to-ignore": "25,587",
        "subnets-to-ignore": ["10.0.0.0/8", "fd00::/8"],
        "outbound-subnets-to-ignore": ["192.168.0.0/16"],
        "iptables-mode": "nft",
        "ipv6": false,
        "simulate": true,
        "proxy-gid": null
    })))
    .expect("parses");
    assert_eq!(conf.config.inbound_proxy_port, 5143);
    assert_eq!(conf.config.outbound_proxy_port, 5140);
    assert_eq!(conf.config.proxy_uid, 999);
    assert_eq!(
        conf.config.outbound_ports_to_ignore.multiport_args(),
        ["25,587"]
    );
    assert_eq!(conf.config.inbound_subnets_to_ignore.len(), 2);
    assert_eq!(conf.config.outbound_subnets_to_ignore.len(), 1);
    assert_eq!(conf.mode, Some(Mode::Nft));
    assert!(!conf.config.ipv6);
    assert!(conf.simulate);
}

#[test]
fn bad_configurations_get_the_specifications_codes() {
    let cases: [(&[u8], u32, &str); 12] = [
        (b"", code::DECODE_FAILURE, "not JSON"),
        (b"{\"name\": ", code::DECODE_FAILURE, "not JSON"),
        (b"[1, 2]", code::DECODE_FAILURE, "JSON object"),
        (
            br#"{"cniVersion": "9.9.9", "name": "n"}"#,
            code::INCOMPATIBLE_VERSION,
            "9.9.9",
        ),
        (br#"{"cniVersion": "1.0.0"}"#, code::INVALID_CONFIG, "no name"),
        (
            br#"{"cniVersion": 1, "name": "n"}"#,
            code::INVALID_CONFIG,
            "cniVersion",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": []}"#,
            code::INVALID_CONFIG,
            "object",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": {"incoming-proxy-port": 70000}}"#,
            code::INVALID_CONFIG,
            "incoming-proxy-port",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": {"inbound-ports-to-ignore": ["http"]}}"#,
            code::INVALID_CONFIG,
            "inbound-ports-to-ignore",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": {"ports-to-redirect": ["8080"]}}"#,
            code::UNSUPPORTED_FIELD,
            "ports-to-redirect",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": {"incomming-proxy-port": 1}}"#,
            code::UNSUPPORTED_FIELD,
            "incomming-proxy-port",
        ),
        (
            br#"{"cniVersion": "1.0.0", "name": "n", "linkerd": {"iptables-mode": "ebpf"}}"#,
            code::INVALID_CONFIG,
            "iptables-mode",
        ),
    ];
    for (input, want, mention) in cases {
        let e = NetConf::parse(input).expect_err("rejected");
        assert_eq!(e.code, want, "{}: {e}", String::from_utf8_lossy(input));
        assert!(
            e.to_string().contains(mention),
            "{}: {e} should mention {mention}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_environment_is_checked() {
    let e = Env::from_vars(|_| None).expect_err("no command");
    assert_eq!(e.code, code::INVALID_ENV);
    assert!(e.details.contains("container runtime"), "{e}");
    let e = Env::from_vars(|k| (k == "CNI_COMMAND").then(|| "ATTACH".into())).unwrap_err();
    assert_eq!(e.code, code::INVALID_ENV);
    assert!(e.to_string().contains("ATTACH"), "{e}");

    // ADD needs the container's namespace.
    let add = Env::from_vars(|k| (k == "CNI_COMMAND").then(|| "ADD".into())).unwrap();
    let e = run_err(&add, &conf(json!({})), &fake());
    assert_eq!(e.code, code::INVALID_ENV);
    assert!(e.msg.contains("CNI_CONTAINERID"), "{e}");
}

#[test]
fn add_installs_in_the_namespace_and_passes_the_previous_result_on() {
    let capture = fake();
    let out = run(&env("ADD"), &conf(json!({"proxy-uid": 2102})), &capture).expect("ADD");
    assert_eq!(
        *capture.calls.borrow(),
        [format!("install {NETNS} uid=2102")]
    );
    let result: Value = serde_json::from_str(&out.stdout).expect("a JSON result");
    assert_eq!(
        result,
        prev_result(),
        "the previous plugin's result, unchanged"
    );
    assert!(out.log.contains("c0ffee"), "{}", out.log);
    assert!(out.log.contains("IPv4 and IPv6"), "{}", out.log);

    // Not chained: an empty result of the configuration's version.
    let alone = br#"{"cniVersion": "0.4.0", "name": "n", "type": "strand-cni"}"#;
    let out = run(&env("ADD"), alone, &fake()).expect("ADD");
    assert_eq!(out.stdout, r#"{"cniVersion":"0.4.0"}"#);
}

#[test]
fn add_to_a_missing_namespace_is_container_unknown() {
    let capture = Fake::default();
    let (e, version) = run(&env("ADD"), &conf(json!({})), &capture).expect_err("no netns");
    assert_eq!(e.code, code::UNKNOWN_CONTAINER);
    assert_eq!(version.as_deref(), Some("1.0.0"));
    assert!(capture.calls.borrow().is_empty());
    let obj: Value = serde_json::from_str(&e.to_json(version.as_deref())).unwrap();
    assert_eq!(obj["code"], 3);
    assert_eq!(obj["cniVersion"], "1.0.0");
    assert_eq!(obj["details"], NETNS);
}

#[test]
fn del_clears_and_succeeds_when_the_namespace_is_gone() {
    let capture = fake();
    let out = run(&env("DEL"), &conf(json!({})), &capture).expect("DEL");
    assert_eq!(out.stdout, "");
    assert_eq!(*capture.calls.borrow(), [format!("clear {NETNS} uid=2102")]);

    let gone = Fake::default();
    let out = run(&env("DEL"), &conf(json!({})), &gone).expect("DEL of a gone netns");
    assert!(out.log.contains("nothing to remove"), "{}", out.log);
    assert!(gone.calls.borrow().is_empty());
    // Without CNI_NETNS at all, too.
    let bare = Env::from_vars(|k| (k == "CNI_COMMAND").then(|| "DEL".into())).unwrap();
    run(&bare, &conf(json!({})), &gone).expect("DEL without a netns");
}

#[test]
fn check_compares_the_saved_table_with_the_plan() {
    let config = Config::default();
    let planned: String = config
        .rules(Family::V4)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let saved = format!("*nat\n:PREROUTING ACCEPT [0:0]\n{planned}COMMIT\n");
    let ok = Fake { saved, ..fake() };
    let v4_only = conf(json!({"ipv6": false}));
    run(&env("CHECK"), &v4_only, &ok).expect("CHECK passes with every rule present");

    let partial: String = planned
        .lines()
        .filter(|l| !l.contains("--to-ports 4140"))
        .map(|l| format!("{l}\n"))
        .collect();
    let broken = Fake {
        saved: partial,
        ..fake()
    };
    let e = run_err(&env("CHECK"), &v4_only, &broken);
    assert_eq!(e.code, code::RULES_MISSING);
    assert!(e.details.contains("REDIRECT --to-ports 4140"), "{e}");
    assert!(!e.details.contains("--to-ports 4143"), "{e}");
}

#[test]
fn simulate_changes_nothing_and_logs_the_rules() {
    let capture = fake();
    let out = run(&env("ADD"), &conf(json!({"simulate": true})), &capture).expect("ADD");
    assert!(capture.calls.borrow().is_empty());
    assert!(
        out.log.contains("-j REDIRECT --to-ports 4143"),
        "{}",
        out.log
    );
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result, prev_result());
}

#[test]
fn version_needs_no_configuration() {
    let out = run(&env("VERSION"), b"", &Fake::default()).expect("VERSION");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    for command in ["STATUS", "GC"] {
        let out = run(&env(command), &conf(json!({})), &Fake::default()).expect(command);
        assert_eq!(out, Outcome::default());
    }
}
