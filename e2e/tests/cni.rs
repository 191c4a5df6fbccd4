//! The CNI plugin in a real CNI chain: Debian's `bridge` plugin (with
//! `host-local` IPAM) plugs a pod into the test network from the bridge
//! namespace, then `strand-cni` captures the pod's traffic, with no
//! `strand-init` run inside the pod. The pod's proxy then sees the traffic
//! a client sends it; CHECK notices rules that went missing; DEL removes
//! them and succeeds again once the namespace is gone.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strand_e2e::cni::{Chain, DEBIAN_PLUGIN_DIR, Plugin, invoke_raw};
use strand_e2e::{APP_UID, MeshedPod, SharedDir};
use strand_testkit::{Network, bin_path, require_root};

fn bridge_plugin() -> PathBuf {
    let path = Path::new(DEBIAN_PLUGIN_DIR).join("bridge");
    assert!(
        path.exists(),
        "{} is missing: install Debian's containernetworking-plugins \
         (apt-get install containernetworking-plugins)",
        path.display()
    );
    path
}

fn saved_nat(pod: &strand_testkit::Pod) -> String {
    let mut cmd = pod.command("iptables-save");
    cmd.args(["-t", "nat"]);
    String::from_utf8(pod.run(cmd).unwrap().stdout).unwrap()
}

#[test]
fn a_cni_chain_captures_a_pods_traffic_for_its_proxy() {
    if !require_root() {
        return;
    }
    let bridge = bridge_plugin();
    let net = Network::new("cni").unwrap();
    let client = net.add_pod("client").unwrap();
    let pod = net.add_unplugged_pod("server").unwrap();
    let ipam_dir = SharedDir::new("cni-ipam").unwrap();
    let ip = pod.ip().to_string();

    let chain = Chain {
        name: "strand-e2e".into(),
        version: "1.0.0".into(),
        plugins: vec![
            Plugin {
                binary: bridge,
                // The bridge the test network already has; the address the
                // test network reserved for this pod.
                config: json!({
                    "type": "bridge",
                    "bridge": "br0",
                    "isGateway": false,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": ip, "rangeEnd": ip}]],
                        "dataDir": ipam_dir.path(),
                    }
                }),
                host_netns: Some(net.ns_name().to_string()),
            },
            Plugin {
                binary: bin_path("strand-cni"),
                config: json!({
                    "type": "strand-cni",
                    "linkerd": {
                        "incoming-proxy-port": 4143,
                        "outgoing-proxy-port": 4140,
                        "proxy-uid": 2102,
                        "inbound-ports-to-ignore": ["4191", "4190"],
                        "ipv6": false
                    }
                }),
                host_netns: None,
            },
        ],
        container_id: "e2e-server".into(),
        netns: pod.netns_path(),
        ifname: "eth0".into(),
    };

    // ADD: the bridge plugin's result comes back through strand-cni.
    let result = chain.add().unwrap();
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert_eq!(
        result["ips"][0]["address"],
        format!("{ip}/24"),
        "the address host-local gave, passed on: {result}"
    );
    let saved = saved_nat(&pod);
    assert!(
        saved.contains("-j STRAND_INBOUND")
            && saved.contains("--to-ports 4143")
            && saved.contains("--to-ports 4140"),
        "strand-cni installed the capture in the pod:\n{saved}"
    );

    // CHECK passes on the installed rules.
    let check = chain
        .invoke(&chain.plugins[1], "CHECK", Some(&result))
        .unwrap();
    assert!(check.success, "CHECK: {check:?}");

    // The pod's proxy and app, started with no strand-init: a client's
    // request reaches the app through the proxy.
    let server = MeshedPod::start_in(pod, &[]).unwrap();
    let mut app = server.app();
    app.args(["http", "--listen", "0.0.0.0:8080"]);
    let mut app = server.pod.spawn(app).unwrap();
    app.wait_listening().unwrap();
    let mut curl = client.command_as(APP_UID, APP_UID, "curl");
    curl.args(["-sf", "--max-time", "5", &format!("http://{ip}:8080/")]);
    let out = client.run(curl).unwrap();
    assert!(
        out.status.success(),
        "curl through the captured pod: {out:?}"
    );
    let deadline = Instant::now() + strand_testkit::patience();
    loop {
        let m = server.metrics().unwrap();
        let inbound = m.sum(
            "request_total",
            &[
                "direction=\"inbound\"",
                &format!("target_addr=\"{ip}:8080\""),
            ],
        );
        if inbound >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request went through the proxy's inbound side:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Someone removes the rules: CHECK reports them, with code 101.
    let mut clear = server.pod.command(bin_path("strand-init"));
    clear.args(["--clear", "--ipv6=false"]);
    server.pod.run(clear).unwrap();
    let check = chain
        .invoke(&chain.plugins[1], "CHECK", Some(&result))
        .unwrap();
    assert!(!check.success, "CHECK must fail: {check:?}");
    let err = check.json().unwrap();
    assert_eq!(err["code"], 101, "{err}");
    assert!(
        err["details"].as_str().unwrap().contains("--to-ports 4143"),
        "{err}"
    );

    // strand-cni's ADD again restores them (it replaces its rules
    // whatever is left); DEL removes them and unplugs the pod.
    let again = chain
        .invoke(&chain.plugins[1], "ADD", Some(&result))
        .unwrap();
    assert!(again.success, "ADD again: {again:?}");
    let check = chain
        .invoke(&chain.plugins[1], "CHECK", Some(&result))
        .unwrap();
    assert!(check.success, "CHECK after ADD: {check:?}");
    chain.del().unwrap();
    let saved = saved_nat(&server.pod);
    assert!(!saved.contains("STRAND"), "DEL removed the rules:\n{saved}");

    // DEL of a namespace that is already gone succeeds (runtimes retry it).
    let gone = Chain {
        netns: PathBuf::from("/run/netns/strand-e2e-no-such-netns"),
        ..chain
    };
    let out = gone.invoke(&gone.plugins[1], "DEL", None).unwrap();
    assert!(out.success, "DEL of a gone namespace: {out:?}");
    assert!(out.stderr.contains("nothing to remove"), "{out:?}");
}

#[test]
fn the_plugin_answers_bad_invocations_with_cni_errors() {
    let bin = bin_path("strand-cni");
    let env = |cmd: &'static str| {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/strand-e2e-no-such-netns"),
            ("CNI_IFNAME", "eth0"),
        ]
    };
    let error = |env: &[(&str, &str)], stdin: &[u8]| -> Value {
        let out = invoke_raw(&bin, None, env, stdin).unwrap();
        assert!(!out.success, "must fail: {out:?}");
        assert!(out.stderr.starts_with("strand-cni: "), "{out:?}");
        out.json().unwrap()
    };

    let garbage = error(&env("ADD"), b"\x16\x03\x01 not a configuration");
    assert_eq!(garbage["code"], 6, "{garbage}");
    assert_eq!(garbage["cniVersion"], "1.0.0", "{garbage}");

    let too_new = error(&env("ADD"), br#"{"cniVersion": "2.0.0", "name": "n"}"#);
    assert_eq!(too_new["code"], 1, "{too_new}");

    let no_command = error(&[], b"{}");
    assert_eq!(no_command["code"], 4, "{no_command}");

    let no_netns = error(
        &env("ADD"),
        br#"{"cniVersion": "0.4.0", "name": "n", "type": "strand-cni"}"#,
    );
    assert_eq!(no_netns["code"], 3, "{no_netns}");
    assert_eq!(no_netns["cniVersion"], "0.4.0", "{no_netns}");

    // A megabyte and more of stdin is refused, not read without bound.
    let huge = vec![b' '; (1 << 20) + 10];
    let big = error(&env("ADD"), &huge);
    assert_eq!(big["code"], 6, "{big}");

    let out = invoke_raw(&bin, None, &env("VERSION"), b"").unwrap();
    assert!(out.success, "{out:?}");
    assert_eq!(out.json().unwrap()["cniVersion"], "1.1.0");

    let help = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && text.contains("CNI_NETNS"),
        "{text}"
    );
}
