//! The `strand-init` binary against the real iptables, each test in its own
//! network namespace (`strand-init-<pid>-<n>`), deleted on drop. Needs root:
//! without it the tests print a skip line, or fail when
//! `STRAND_REQUIRE_ROOT_TESTS=1` (as in CI).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_strand-init");

/// Whether root-only tests can run; see the module docs.
fn require_root() -> bool {
    if is_root() {
        return true;
    }
    let required = std::env::var("STRAND_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "network-namespace tests need root (STRAND_REQUIRE_ROOT_TESTS=1 is set)"
    );
    eprintln!("skipping: network-namespace tests need root");
    false
}

/// Effective uid 0, read from `/proc/self/status` (`Uid: real effective ...`).
fn is_root() -> bool {
    let status =
        std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// A network namespace that is deleted when dropped, also on panic.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "strand-init-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip runs");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// Runs `program args` inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs `program args` inside the namespace and returns its stdout;
    /// panics when it fails.
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The `-A` lines a dry run prints for one family (`IPv4`/`IPv6`).
fn planned_rules(args: &[&str], family: &str) -> Vec<String> {
    let out = Command::new(BIN)
        .arg("--dry-run")
        .args(args)
        .output()
        .expect("strand-init runs");
    assert!(
        out.status.success(),
        "dry run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let section = text
        .split("# ")
        .find(|s| s.starts_with(family))
        .expect("a section per family");
    section
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_owned)
        .collect()
}

/// Installs twice, checks that the saved table holds the planned rules once
/// each and leaves other rules alone, then clears and checks they are gone.
fn install_twice_then_clear(args: &[&str], save: [&str; 2]) {
    let ns = Netns::new();
    let foreign = [
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "udp",
        "--dport",
        "53",
        "-j",
        "RETURN",
    ];
    let restore = save.map(|s| s.replace("-save", ""));
    for tool in &restore {
        ns.ok(tool, &foreign);
    }

    for _ in 0..2 {
        ns.ok(BIN, args);
    }
    for (save, family) in save.iter().zip(["IPv4", "IPv6"]) {
        let saved = ns.ok(save, &["-t", "nat"]);
        let planned = planned_rules(args, family);
        let ours: Vec<&str> = saved
            .lines()
            .filter(|l| l.contains("strand-init/"))
            .collect();
        assert_eq!(
            ours.len(),
            planned.len(),
            "{family}: exactly one set of rules\n{saved}"
        );
        for rule in &planned {
            assert_eq!(
                saved.lines().filter(|l| l == rule).count(),
                1,
                "{family}: {rule}\n{saved}"
            );
        }
        assert!(
            saved.contains("-j REDIRECT --to-ports 4143"),
            "{family}: inbound redirect\n{saved}"
        );
        assert!(
            saved.contains("-j REDIRECT --to-ports 4140"),
            "{family}: outbound redirect\n{saved}"
        );
        assert!(
            saved.contains("-A PREROUTING -p udp -m udp --dport 53 -j RETURN"),
            "{family}: foreign rule kept"
        );
    }

    let clear: Vec<&str> = args.iter().copied().chain(["--clear"]).collect();
    ns.ok(BIN, &clear);
    for save in save {
        let saved = ns.ok(save, &["-t", "nat"]);
        assert!(!saved.contains("STRAND"), "{save}: cleared\n{saved}");
        assert!(
            saved.contains("--dport 53 -j RETURN"),
            "{save}: foreign rule kept\n{saved}"
        );
    }
}

#[test]
fn default_backend_installs_once_and_clears() {
    if !require_root() {
        return;
    }
    install_twice_then_clear(&[], ["iptables-save", "ip6tables-save"]);
}

#[test]
fn ignores_apply_and_rerun_with_them_is_idempotent() {
    if !require_root() {
        return;
    }
    install_twice_then_clear(
        &[
            "--inbound-ports-to-ignore=22,8000-8010",
            "--outbound-ports-to-ignore=25,587,3306-3310",
            "--subnets-to-ignore=10.0.0.0/8,fd00::/8",
            "--outbound-subnets-to-ignore=192.168.0.0/16",
        ],
        ["iptables-save", "ip6tables-save"],
    );
}

#[test]
fn legacy_backend_installs_once_and_clears() {
    if !require_root() {
        return;
    }
    if !Path::new("/usr/sbin/iptables-legacy-restore").exists() {
        eprintln!("skipping: iptables-legacy-restore is not installed");
        return;
    }
    install_twice_then_clear(
        &["--iptables-mode=legacy"],
        ["iptables-legacy-save", "ip6tables-legacy-save"],
    );
}

#[test]
fn missing_iptables_exits_69() {
    // The PATH check comes first, so this needs neither root nor a namespace.
    let out = Command::new(BIN)
        .env("PATH", "/nonexistent")
        .output()
        .expect("strand-init runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("iptables-save") && stderr.contains("apt-get install iptables"),
        "{stderr}"
    );
}

#[test]
fn unprivileged_exits_77() {
    // Unprivileged, the privilege check refuses before anything runs; as
    // root, drop to nobody with setpriv to get there.
    let mut cmd = if is_root() {
        if !Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipping: setpriv is not installed");
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd.output().expect("strand-init runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !is_root() && out.status.code() == Some(69) {
        eprintln!("skipping: iptables is not installed here");
        return;
    }
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}

/// Set (to a comma-separated list of `ip:port`) only in the copy of this
/// test binary that [`outbound_tcp_is_redirected`] runs inside a namespace.
const PROBE_ENV: &str = "STRAND_INIT_PROBE";

/// Where connections to each address end up: `PROBE <addr> -> <port>`
/// for the local listener (8080 = the app, 4140/4143 = the proxy) that
/// accepted it, or `PROBE <addr> -> none` when none did (not captured, and
/// nothing answered). Does nothing unless [`PROBE_ENV`] is set.
#[test]
fn probe_helper() {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let Ok(targets) = std::env::var(PROBE_ENV) else {
        return;
    };
    let listeners: Vec<(u16, TcpListener)> = [8080, 4140, 4143]
        .into_iter()
        .map(|port| {
            let l = TcpListener::bind(("0.0.0.0", port)).expect("bind a probe listener");
            l.set_nonblocking(true).expect("nonblocking listener");
            (port, l)
        })
        .collect();
    for target in targets.split(',') {
        let addr: SocketAddr = target.parse().expect("an ip:port target");
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut accepted = None;
        while accepted.is_none() && conn.is_ok() && Instant::now() < deadline {
            accepted = listeners
                .iter()
                .find_map(|(port, l)| l.accept().ok().map(|_| *port));
            std::thread::sleep(Duration::from_millis(10));
        }
        match accepted {
            Some(port) => println!("PROBE {target} -> {port}"),
            None => println!("PROBE {target} -> none"),
        }
    }
}

impl Netns {
    /// Runs [`probe_helper`] in the namespace (as `uid`, if given) and
    /// returns its `PROBE` lines.
    fn probe(&self, uid: Option<u32>, targets: &[&str]) -> Vec<String> {
        let exe = std::env::current_exe().expect("the test binary has a path");
        let exe = exe.to_str().expect("a UTF-8 path");
        let env = format!("{PROBE_ENV}={}", targets.join(","));
        let mut args: Vec<String> = Vec::new();
        if let Some(uid) = uid {
            args.extend([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "env".into(),
            ]);
        }
        args.extend([
            env,
            exe.into(),
            "--exact".into(),
            "probe_helper".into(),
            "--nocapture".into(),
        ]);
        let program = if uid.is_some() { "setpriv" } else { "env" };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.ok(program, &args);
        out.lines()
            .filter(|l| l.starts_with("PROBE "))
            .map(str::to_owned)
            .collect()
    }
}

/// Real traffic. Outbound: a connection to another host reaches the
/// proxy's outbound port; one to the pod's own IP or to localhost reaches
/// the app directly; the proxy's user and ignored ports are not captured.
/// Inbound: a peer's connection hits the redirect rule, one to the admin
/// port the ignore rule (seen in the rules' packet counters).
#[test]
fn tcp_is_redirected() {
    if !require_root() {
        return;
    }
    let (pod, peer) = (Netns::new(), Netns::new());
    let run = |ns: &Netns, cmd: &str| {
        let words: Vec<&str> = cmd.split(' ').collect();
        ns.ok(words[0], &words[1..]);
    };
    // The pod is 198.18.0.9, the peer 198.18.0.10, on a veth pair between
    // them; nothing answers at 198.18.0.77.
    for cmd in [
        "ip link set lo up",
        "ip link add v0 type veth peer name v1",
        &format!("ip link set v1 netns {}", peer.name),
        "ip addr add 198.18.0.9/24 dev v0",
        "ip link set v0 up",
    ] {
        run(&pod, cmd);
    }
    for cmd in [
        "ip link set lo up",
        "ip addr add 198.18.0.10/24 dev v1",
        "ip link set v1 up",
    ] {
        run(&peer, cmd);
    }
    pod.ok(BIN, &["--outbound-ports-to-ignore=9999"]);

    assert_eq!(
        pod.probe(
            None,
            &[
                "198.18.0.77:8080",
                "198.18.0.9:8080",
                "127.0.0.1:8080",
                "198.18.0.77:9999"
            ]
        ),
        [
            "PROBE 198.18.0.77:8080 -> 4140",
            "PROBE 198.18.0.9:8080 -> 8080",
            "PROBE 127.0.0.1:8080 -> 8080",
            "PROBE 198.18.0.77:9999 -> none",
        ]
    );
    if Path::new("/usr/bin/setpriv").exists() {
        assert_eq!(
            pod.probe(Some(2102), &["198.18.0.77:8080", "198.18.0.9:8080"]),
            [
                "PROBE 198.18.0.77:8080 -> none",
                "PROBE 198.18.0.9:8080 -> 8080"
            ],
            "the proxy's own connections are not captured"
        );
    }

    // Nothing listens in the pod, so both are refused; what matters is which
    // rule saw each SYN.
    peer.probe(
        None,
        &["198.18.0.9:8080", "198.18.0.9:4191", "198.18.0.9:8081"],
    );
    let saved = pod.ok("iptables-save", &["-c", "-t", "nat"]);
    let packets = |comment: &str| -> u64 {
        let line = saved
            .lines()
            .find(|l| l.contains(comment))
            .expect("the rule is installed");
        let counter = line
            .trim_start_matches('[')
            .split(':')
            .next()
            .unwrap_or_default();
        counter
            .parse()
            .unwrap_or_else(|_| panic!("a packet counter in {line}"))
    };
    assert_eq!(packets("strand-init/redirect-inbound"), 2, "{saved}");
    assert_eq!(packets("strand-init/ignore-inbound-ports"), 1, "{saved}");
}
