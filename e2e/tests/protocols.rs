//! End to end through real iptables capture and both proxies: a client pod
//! whose outbound traffic goes through its proxy, to a server pod whose
//! inbound traffic goes through its proxy, for every protocol the proxy
//! handles. After each exchange, the proxies' metrics must account for it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use strand_e2e::MeshedPod;
use strand_testkit::{Child, Network, require_root};

struct Mesh {
    client: MeshedPod,
    server: MeshedPod,
    _net: Network,
}

fn mesh(name: &str) -> Mesh {
    let net = Network::new(name).unwrap();
    let server = MeshedPod::start(&net, "server", &[]).unwrap();
    let client = MeshedPod::start(&net, "client", &[]).unwrap();
    Mesh {
        client,
        server,
        _net: net,
    }
}

impl Mesh {
    fn serve(&self, args: &[&str]) -> Child {
        let mut cmd = self.server.app();
        cmd.args(args);
        let mut child = self.server.pod.spawn(cmd).unwrap();
        child.wait_listening().unwrap();
        child
    }

    fn server_addr(&self, port: u16) -> String {
        format!("{}:{port}", self.server.pod.ip())
    }

    /// Polls both proxies until `check` accepts their metrics.
    fn eventually_metrics(
        &self,
        what: &str,
        check: impl Fn(&strand_e2e::Metrics, &strand_e2e::Metrics) -> bool,
    ) {
        let deadline = Instant::now() + strand_testkit::patience();
        loop {
            let (c, s) = (
                self.client.metrics().unwrap(),
                self.server.metrics().unwrap(),
            );
            if check(&c, &s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}\n--- client proxy ---\n{c}\n--- server proxy ---\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn http1_keepalive_and_streamed_10mb_post() {
    if !require_root() {
        return;
    }
    let m = mesh("h1");
    let _srv = m.serve(&["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    let url = format!("http://{}/", m.server_addr(8080));
    let out = m
        .client
        .run_app(&["http-client", "--url", &url, "--count", "5"])
        .unwrap();
    assert_eq!(out["ok"], 5, "{out}");
    assert_eq!(out["connections"], 1, "{out}");

    let sink = format!("http://{}/sink", m.server_addr(8080));
    let out = m
        .client
        .run_app(&[
            "http-client",
            "--url",
            &sink,
            "--method",
            "POST",
            "--body-bytes",
            "10485760",
            "--chunked",
        ])
        .unwrap();
    assert_eq!(out["ok"], 1, "{out}");
    assert!(
        out.to_string().contains("10485760"),
        "server counted the whole body: {out}"
    );

    let authority = format!("authority=\"{}\"", m.server_addr(8080));
    m.eventually_metrics(
        "6 HTTP/1 requests on both sides, 10 MiB through both proxies",
        |c, s| {
            let out_req = c.sum("request_total", &["direction=\"outbound\"", &authority]);
            let in_req = s.sum("request_total", &["direction=\"inbound\"", &authority]);
            let ok = s.sum(
                "response_total",
                &[
                    "direction=\"inbound\"",
                    "status_code=\"200\"",
                    "classification=\"success\"",
                ],
            );
            let c_wrote = c.sum(
                "tcp_write_bytes_total",
                &["direction=\"outbound\"", "peer=\"dst\""],
            );
            let s_read = s.sum(
                "tcp_read_bytes_total",
                &["direction=\"inbound\"", "peer=\"src\""],
            );
            out_req == 6.0
                && in_req == 6.0
                && ok == 6.0
                && c_wrote > 10_485_760.0
                && s_read > 10_485_760.0
        },
    );
}

#[test]
fn http2_prior_knowledge_with_curl() {
    if !require_root() {
        return;
    }
    let m = mesh("h2");
    let _srv = m.serve(&["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    let url = format!("http://{}/", m.server_addr(8080));
    // One curl per request: curl 7.88 (Debian 12) cannot reuse an HTTP/2
    // prior-knowledge connection.
    for _ in 0..2 {
        let mut curl = m
            .client
            .pod
            .command_as(strand_e2e::APP_UID, strand_e2e::APP_UID, "curl");
        curl.args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version}",
            &url,
        ]);
        let out = m.client.pod.run(curl).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("hello from server"), "{text}");
        assert!(text.trim_end().ends_with('2'), "curl spoke HTTP/2: {text}");
    }
    // And many requests multiplexed on one connection.
    let out = m
        .client
        .run_app(&[
            "http-client",
            "--url",
            &url,
            "--http2-prior-knowledge",
            "--count",
            "20",
        ])
        .unwrap();
    assert_eq!(out["ok"], 20, "{out}");
    assert_eq!(out["connections"], 1, "{out}");
    m.eventually_metrics("22 HTTP/2 requests on both sides", |c, s| {
        c.sum(
            "response_total",
            &["direction=\"outbound\"", "status_code=\"200\""],
        ) == 22.0
            && s.sum(
                "response_total",
                &["direction=\"inbound\"", "status_code=\"200\""],
            ) == 22.0
    });
}

#[test]
fn grpc_unary_and_bidi_streaming() {
    if !require_root() {
        return;
    }
    let m = mesh("grpc");
    let _srv = m.serve(&["grpc", "--listen", "0.0.0.0:9090"]);
    let target = format!("http://{}", m.server_addr(9090));
    let out = m
        .client
        .run_app(&["grpc-client", "--target", &target, "unary", "--count", "3"])
        .unwrap();
    assert_eq!(out["ok"], 3, "{out}");
    let out = m
        .client
        .run_app(&["grpc-client", "--target", &target, "bidi", "--count", "50"])
        .unwrap();
    assert_eq!(out["received"], 50, "{out}");
    // A failing call: grpc-status 13 in the trailers, classified as failure.
    let mut cmd = m.client.app();
    cmd.args([
        "grpc-client",
        "--target",
        &target,
        "unary",
        "--message",
        "fail:13",
    ]);
    let out = m.client.pod.output(cmd).unwrap();
    assert!(!out.status.success(), "the call fails");

    m.eventually_metrics("gRPC statuses from trailers on both sides", |c, s| {
        let ok = ["grpc_status=\"0\"", "classification=\"success\""];
        let failed = ["grpc_status=\"13\"", "classification=\"failure\""];
        c.sum("response_total", &ok) == 4.0
            && s.sum("response_total", &ok) == 4.0
            && c.sum("response_total", &failed) == 1.0
            && s.sum("response_total", &failed) == 1.0
    });
}

#[test]
fn websocket_echo_through_both_proxies() {
    if !require_root() {
        return;
    }
    let m = mesh("ws");
    let _srv = m.serve(&["ws", "--listen", "0.0.0.0:8090"]);
    let url = format!("ws://{}/", m.server_addr(8090));
    let out = m
        .client
        .run_app(&["ws-client", "--url", &url, "--count", "20"])
        .unwrap();
    assert_eq!(out["ok"], 20, "{out}");
    m.eventually_metrics("the upgrade is one 101 response on both sides", |c, s| {
        c.sum("response_total", &["status_code=\"101\""]) == 1.0
            && s.sum("response_total", &["status_code=\"101\""]) == 1.0
    });
}

#[test]
fn raw_tcp_echo_with_half_close() {
    if !require_root() {
        return;
    }
    let m = mesh("tcp");
    let _srv = m.serve(&["tcp-echo", "--listen", "0.0.0.0:7000"]);
    let addr = m.server_addr(7000);
    let text = "plain bytes, not a protocol the proxy knows";
    let start = Instant::now();
    let out = m
        .client
        .run_app(&[
            "tcp-client",
            "--connect",
            &addr,
            "--send",
            text,
            "--expect",
            text,
        ])
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no detection timeout on opaque bytes"
    );
    assert_eq!(out["received"], text.len(), "{out}");
    let target = format!("target_addr=\"{addr}\"");
    m.eventually_metrics("opaque bytes counted on both sides", |c, s| {
        let n = text.len() as f64;
        c.sum(
            "tcp_write_bytes_total",
            &["direction=\"outbound\"", "peer=\"dst\"", &target],
        ) == n
            && c.sum(
                "tcp_read_bytes_total",
                &["direction=\"outbound\"", "peer=\"dst\"", &target],
            ) == n
            && s.sum(
                "tcp_read_bytes_total",
                &["direction=\"inbound\"", "peer=\"src\"", &target],
            ) == n
            && s.sum(
                "tcp_close_total",
                &["direction=\"inbound\"", "peer=\"src\"", &target],
            ) == 1.0
            && s.sum("request_total", &[]) == 0.0
    });
}

#[test]
fn server_speaks_first_on_an_opaque_port() {
    if !require_root() {
        return;
    }
    let m = mesh("banner");
    // 5432 is in the default opaque port list (PostgreSQL).
    let _srv = m.serve(&[
        "banner",
        "--listen",
        "0.0.0.0:5432",
        "--banner",
        "220 strand banner ready",
    ]);
    let start = Instant::now();
    let out = m
        .client
        .run_app(&["banner-client", "--connect", &m.server_addr(5432)])
        .unwrap();
    assert!(out.to_string().contains("220 strand banner ready"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the banner did not wait for detection: {:?}",
        start.elapsed()
    );
    // The banner line (with its newline) crossed both proxies as opaque TCP.
    let banner_len = "220 strand banner ready\n".len() as f64;
    let target = format!("target_addr=\"{}\"", m.server_addr(5432));
    m.eventually_metrics(
        "the banner counted as opaque bytes on both sides",
        |c, s| {
            c.sum(
                "tcp_write_bytes_total",
                &["direction=\"outbound\"", "peer=\"src\"", &target],
            ) >= banner_len
                && s.sum(
                    "tcp_read_bytes_total",
                    &["direction=\"inbound\"", "peer=\"dst\"", &target],
                ) >= banner_len
                && s.sum(
                    "tcp_close_total",
                    &["direction=\"inbound\"", "peer=\"src\"", &target],
                ) == 1.0
                && c.sum("request_total", &[]) == 0.0
        },
    );
}

#[test]
fn tls_passes_through_untouched() {
    if !require_root() {
        return;
    }
    let m = mesh("tls");
    // A directory both apps (uid 2103) can use to share the CA.
    let shared = strand_e2e::SharedDir::new("tls").unwrap();
    let ca_str = shared.path().join("ca.pem").to_str().unwrap().to_string();
    let _srv = m.serve(&[
        "tls",
        "--listen",
        "0.0.0.0:8443",
        "--name",
        "secure.example",
        "--ca-out",
        &ca_str,
    ]);
    // The client verifies the server's own certificate end to end: had a
    // proxy terminated TLS, verification against this CA would fail.
    let out = m
        .client
        .run_app(&[
            "tls-client",
            "--connect",
            &m.server_addr(8443),
            "--sni",
            "secure.example",
            "--ca",
            &ca_str,
            "--send",
            "hello over tls",
        ])
        .unwrap();
    assert_eq!(out["ok"], true, "{out}");
    assert!(
        out["reply"]
            .as_str()
            .unwrap_or("")
            .contains("hello over tls"),
        "{out}"
    );
    let target = format!("target_addr=\"{}\"", m.server_addr(8443));
    m.eventually_metrics("TLS counted as TCP, not as HTTP", |c, s| {
        c.sum("tcp_close_total", &["peer=\"src\"", &target]) == 1.0
            && s.sum("tcp_read_bytes_total", &["peer=\"src\"", &target]) > 0.0
            && c.sum("request_total", &[]) == 0.0
    });
}

#[test]
fn server_killed_mid_stream_fails_cleanly_and_proxies_survive() {
    if !require_root() {
        return;
    }
    let m = mesh("kill");
    let mut srv = m.serve(&["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    // A long download that the server dies in the middle of. (The reader
    // is fast: a rate-limited one would first drain what the kernel and the
    // proxies had buffered, as it would without a proxy.)
    let url = format!("http://{}/bytes?n=100000000000", m.server_addr(8080));
    let mut curl = m
        .client
        .pod
        .command_as(strand_e2e::APP_UID, strand_e2e::APP_UID, "curl");
    curl.args(["-sS", "-o", "/dev/null", "--max-time", "120", &url]);
    let mut download = m.client.pod.spawn(curl).unwrap();
    // Wait until the download is flowing through both proxies.
    m.eventually_metrics("the download is under way", |c, _| {
        c.sum(
            "tcp_read_bytes_total",
            &["direction=\"outbound\"", "peer=\"dst\""],
        ) > 20_000_000.0
    });
    srv.signal(strand_testkit::Signal::SIGKILL).unwrap();
    let status = download
        .wait_timeout(Duration::from_secs(30))
        .expect("curl ends soon after the server dies");
    assert!(
        !status.success(),
        "curl must see an error, not a complete body"
    );
    let err = download.stderr_text();
    assert!(
        err.contains("curl: (18)") || err.contains("curl: (56)") || err.contains("curl: (92)"),
        "a transfer error: {err}"
    );

    // Both proxies are still up and serve a new server.
    assert!(m.client.proxy_rss().is_ok() && m.server.proxy_rss().is_ok());
    m.client.wait_ready().unwrap();
    m.server.wait_ready().unwrap();
    let _srv2 = m.serve(&["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    let out = m
        .client
        .run_app(&[
            "http-client",
            "--url",
            &format!("http://{}/", m.server_addr(8080)),
        ])
        .unwrap();
    assert_eq!(out["ok"], 1, "{out}");
}

#[test]
fn ipv6_through_ip6tables_and_both_proxies() {
    if !require_root() {
        return;
    }
    let m = mesh("v6");
    let Some(v6) = m.server.pod.ipv6() else {
        eprintln!("skipping: this kernel has no IPv6");
        return;
    };
    let _srv = m.serve(&["http", "--listen", "[::]:8080", "--name", "server-v6"]);
    let url = format!("http://[{v6}]:8080/");
    let out = m
        .client
        .run_app(&["http-client", "--url", &url, "--count", "3"])
        .unwrap();
    assert_eq!(out["ok"], 3, "{out}");
    let target = format!("target_addr=\"[{v6}]:8080\"");
    m.eventually_metrics(
        "IPv6 requests seen with their original IPv6 destination",
        |c, s| {
            c.sum("request_total", &["direction=\"outbound\"", &target]) == 3.0
                && s.sum("request_total", &["direction=\"inbound\"", &target]) == 3.0
        },
    );
}

#[test]
fn sigterm_drains_in_flight_requests() {
    if !require_root() {
        return;
    }
    let mut m = mesh("term");
    let _srv = m.serve(&["http", "--listen", "0.0.0.0:8080", "--name", "server"]);
    let url = format!("http://{}/delay?ms=1500", m.server_addr(8080));
    let mut cmd = m.client.app();
    cmd.args(["http-client", "--url", &url]);
    let mut slow = m.client.pod.spawn(cmd).unwrap();
    // Wait until the request has reached the server's proxy.
    m.eventually_metrics("the slow request is in flight", |_, s| {
        s.sum("request_total", &["direction=\"inbound\""]) == 1.0
    });
    let start = Instant::now();
    m.server
        .proxy
        .signal(strand_testkit::Signal::SIGTERM)
        .unwrap();
    let status = slow
        .wait_timeout(Duration::from_secs(10))
        .expect("request finishes");
    assert!(
        status.success(),
        "in-flight request completed: {}",
        slow.stderr_text()
    );
    assert!(
        slow.stdout_text().contains("\"ok\":1"),
        "{}",
        slow.stdout_text()
    );
    let proxy_status = m
        .server
        .proxy
        .wait_timeout(Duration::from_secs(10))
        .expect("proxy exits after draining");
    assert!(
        proxy_status.success(),
        "exit 0 after a clean shutdown: {proxy_status}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    let log = m.server.proxy.stderr_text();
    assert!(log.contains("shutdown complete"), "{log}");
}
