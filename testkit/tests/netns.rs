//! The namespace test bed itself: pods reach each other over the bridge,
//! commands run as other users, and nothing is left behind, also after a
//! panic. Needs root; skips otherwise (fails with STRAND_REQUIRE_ROOT_TESTS=1).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use strand_testkit::{Network, assert_eventually, bin_path, require_root};

fn testapp() -> std::path::PathBuf {
    bin_path("strand-testapp")
}

fn namespaces() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("`ip netns list` runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(names: &[String]) {
    let list = namespaces();
    for name in names {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "namespace {name} still exists:\n{list}"
        );
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "{name} still mounted"
        );
    }
}

#[test]
fn pods_reach_each_other_over_the_bridge() {
    if !require_root() {
        return;
    }
    let net = Network::new("reach").expect("network");
    let a = net.add_pod("a").expect("pod a");
    let b = net.add_pod("b").expect("pod b");
    assert_eq!(a.ip().to_string(), "198.18.0.2");
    assert_eq!(b.ip().to_string(), "198.18.0.3");

    let mut cmd = a.command(testapp());
    cmd.args(["tcp-echo", "--listen", "0.0.0.0:0"]);
    let mut server = a.spawn(cmd).expect("tcp-echo starts");
    let port = server.wait_listening().expect("tcp-echo listens").port();
    let target = SocketAddr::new(a.ip(), port);

    // A Rust client on a thread inside pod b.
    let reply = b.in_netns(|| {
        let mut stream =
            TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect from b");
        stream.write_all(b"across the bridge").expect("write");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read to EOF");
        reply
    });
    assert_eq!(reply, "across the bridge");

    // The root namespace cannot see the pods' network.
    assert!(TcpStream::connect_timeout(&target, Duration::from_millis(300)).is_err());

    // The testapp client inside pod b.
    let mut cmd = b.command(testapp());
    cmd.args([
        "tcp-client",
        "--connect",
        &target.to_string(),
        "--send",
        "hi",
        "--expect",
        "hi",
    ]);
    let out = b.run(cmd).expect("tcp-client succeeds");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["received"], 2);

    // curl against an HTTP server, over IPv6 where the kernel has it.
    let mut cmd = a.command(testapp());
    cmd.args(["http", "--listen", "[::]:0", "--name", "pod-a"]);
    let mut http = a.spawn(cmd).expect("http starts");
    let port = http.wait_listening().expect("http listens").port();
    let host = a.ipv6().map_or(a.ip().to_string(), |v6| format!("[{v6}]"));
    let mut curl = b.command("curl");
    curl.args(["-sS", "--max-time", "10", &format!("http://{host}:{port}/")]);
    let out = b.run(curl).expect("curl succeeds");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from pod-a\n");
    assert!(server.try_wait().is_none(), "tcp-echo still running");
}

#[test]
fn commands_run_as_other_users() {
    if !require_root() {
        return;
    }
    let net = Network::new("users").expect("network");
    let pod = net.add_pod("app").expect("pod");
    let out = pod.run(pod.command_as(2103, 2103, "id")).expect("id runs");
    let id = String::from_utf8_lossy(&out.stdout);
    assert!(id.starts_with("uid=2103 gid=2103"), "{id}");
    assert!(!id.contains("groups=0"), "{id}");

    let out = pod.output(pod.command("false")).expect("false runs");
    assert!(!out.status.success());
    let err = pod
        .run(pod.command("false"))
        .expect_err("non-zero exit is an error");
    assert!(err.to_string().contains("failed"), "{err}");
    let mut sleep = pod.command("sleep");
    sleep.arg("30");
    let err = pod
        .run_timeout(sleep, Duration::from_millis(200))
        .expect_err("timeout");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn everything_is_removed_on_drop() {
    if !require_root() {
        return;
    }
    let net = Network::new("drop").expect("network");
    let pod = net.add_pod("p").expect("pod");
    let names = vec![net.ns_name().to_string(), pod.ns_name().to_string()];
    let logs = pod.log_dir().to_path_buf();
    let mut cmd = pod.command("sleep");
    cmd.arg("600");
    let mut child = pod.spawn(cmd).expect("sleep starts");
    let pid = child.pid();
    assert!(namespaces().contains(&names[1]));

    // Dropping the network while the pod and its child are still held kills
    // the child and deletes both namespaces.
    drop(net);
    assert_gone(&names);
    assert_eventually!(
        child.try_wait().is_some(),
        "sleep (pid {pid}) survived its namespace"
    );
    drop(child);
    drop(pod);
    assert!(!logs.exists(), "log dir {} kept", logs.display());
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !require_root() {
        return;
    }
    // What the panicking scope created: namespaces, the child's pid, the
    // pod's log directory.
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let net = Network::new("panic").expect("network");
        let pod = net.add_pod("p").expect("pod");
        let mut cmd = pod.command("sleep");
        cmd.arg("600");
        let child = pod.spawn(cmd).expect("sleep starts");
        *seen.lock().expect("not poisoned") = Some((
            vec![net.ns_name().to_string(), pod.ns_name().to_string()],
            child.pid(),
            pod.log_dir().to_path_buf(),
        ));
        pod.in_netns(|| panic!("boom inside the pod"));
    }));
    let payload = result.expect_err("the closure panicked");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom inside the pod"));
    let (names, pid, logs) = seen
        .into_inner()
        .expect("not poisoned")
        .expect("the scope got as far as the panic");
    assert_gone(&names);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep (pid {pid}) still running"
    );
    // Logs are kept for a failing test to inspect; this failure was on purpose.
    assert!(logs.is_dir(), "logs of a panicking test are kept");
    std::fs::remove_dir_all(logs).expect("remove kept logs");
}
