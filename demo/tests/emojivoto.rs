//! The whole demo in-process on 127.0.0.1: emoji, voting and web on
//! ephemeral ports, vote-bot against web, and the binary's flags and
//! signal handling.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use strand_demo::api::voting::{VoteRequest, VotingServiceClient};
use strand_demo::vote_bot::{self, StatsSnapshot};
use strand_demo::web::{EmojiJson, INDEX_HTML, LeaderboardEntry};
use strand_demo::{ServiceAddr, Shutdown, Trigger, api, emoji, shutdown, voting, web};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long to wait for something that should happen promptly, from
/// `STRAND_TEST_PATIENCE_MS` as the workspace's other tests (10 s default:
/// generous for a loaded 2-core machine).
fn patience() -> Duration {
    std::env::var("STRAND_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

async fn listener() -> (TcpListener, ServiceAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServiceAddr::from(listener.local_addr().unwrap());
    (listener, addr)
}

/// emoji, voting (failing `:doughnut:`) and web, each on its own port.
struct Demo {
    trigger: Trigger,
    shutdown: Shutdown,
    voting: ServiceAddr,
    web: ServiceAddr,
    tasks: Vec<JoinHandle<Result<(), strand_demo::Error>>>,
}

impl Demo {
    async fn start() -> Self {
        let (trigger, shutdown) = shutdown::channel();
        let (emoji_listener, emoji_addr) = listener().await;
        let (voting_listener, voting_addr) = listener().await;
        let (web_listener, web_addr) = listener().await;
        let tasks = vec![
            tokio::spawn(emoji::serve(emoji_listener, shutdown.clone())),
            tokio::spawn(voting::serve(
                voting_listener,
                Some(":doughnut:".to_string()),
                shutdown.clone(),
            )),
            tokio::spawn({
                let (emoji, voting, shutdown) =
                    (emoji_addr.clone(), voting_addr.clone(), shutdown.clone());
                async move { web::serve(web_listener, &emoji, &voting, shutdown).await }
            }),
        ];
        Self {
            trigger,
            shutdown,
            voting: voting_addr,
            web: web_addr,
            tasks,
        }
    }

    /// Fires shutdown and expects every server to stop cleanly, promptly.
    async fn stop(self) {
        self.trigger.fire();
        for task in self.tasks {
            tokio::time::timeout(patience(), task)
                .await
                .expect("servers stop promptly")
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
    }
}

struct Http(Client<HttpConnector, Empty<Bytes>>);

impl Http {
    fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    async fn get(&self, addr: &ServiceAddr, path: &str) -> (StatusCode, String, String) {
        let uri = format!("http://{addr}{path}");
        let rsp = tokio::time::timeout(patience(), self.0.get(uri.parse().unwrap()))
            .await
            .expect("answered in time")
            .unwrap_or_else(|e| panic!("GET {uri}: {e}"));
        let status = rsp.status();
        let content_type = rsp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, addr: &ServiceAddr, path: &str) -> T {
        let (status, content_type, body) = self.get(addr, path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        assert_eq!(content_type, "application/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_end_to_end() {
    let demo = Demo::start().await;
    let http = Http::new();

    // The page and the health check.
    let (status, content_type, page) = http.get(&demo.web, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(page, INDEX_HTML);
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("<title>Emoji Vote</title>"));
    assert!(page.contains("id=\"leaderboard\""));
    assert!(page.contains("fetch(url"));
    assert_eq!(http.get(&demo.web, "/healthz").await.0, StatusCode::OK);
    assert_eq!(http.get(&demo.web, "/nope").await.0, StatusCode::NOT_FOUND);

    // The list comes from emoji.
    let list: Vec<EmojiJson> = http.json(&demo.web, "/api/list").await;
    assert_eq!(list.len(), emoji::CATALOG.len());
    assert!(list.contains(&EmojiJson {
        shortcode: ":doughnut:".into(),
        unicode: "🍩".into(),
    }));

    // Votes, raw and as a browser encodes them.
    for path in [
        "/api/vote?choice=:joy:",
        "/api/vote?choice=%3Ajoy%3A",
        "/api/vote?choice=:joy:",
        "/api/vote?choice=:taco:",
    ] {
        let ok: serde_json::Value = http.json(&demo.web, path).await;
        assert_eq!(ok, serde_json::json!({ "ok": true }));
    }
    let (status, _, body) = http.get(&demo.web, "/api/vote?choice=:nope:").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, _, body) = http.get(&demo.web, "/api/vote").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The fail shortcode: a 500 from web, UNKNOWN "ERROR" from voting.
    let (status, content_type, body) = http.get(&demo.web, "/api/vote?choice=:doughnut:").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(content_type, "application/json");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "voting call failed: Unknown: ERROR");
    let mut voting = VotingServiceClient::new(api::lazy_channel(&demo.voting).unwrap());
    let status = voting
        .vote(VoteRequest {
            shortcode: ":doughnut:".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown);
    assert_eq!(status.message(), "ERROR");

    // The leaderboard counts the votes and knows their emoji.
    let board: Vec<LeaderboardEntry> = http.json(&demo.web, "/api/leaderboard").await;
    let expected =
        [(":joy:", "😂", 3), (":taco:", "🌮", 1)].map(|(s, u, votes)| LeaderboardEntry {
            shortcode: s.into(),
            unicode: u.into(),
            votes,
        });
    assert_eq!(board, expected);

    // vote-bot at 50 rps for 3 s against web.
    let (stats_listener, stats_addr) = listener().await;
    let stats = vote_bot::Stats::new();
    let stats_server = tokio::spawn(vote_bot::serve_stats(
        stats_listener,
        stats.clone(),
        demo.shutdown.clone(),
    ));
    let config = vote_bot::Config {
        web: demo.web.clone(),
        rps: 50.0,
        duration: Some(Duration::from_secs(3)),
        favorite: Some(":doughnut:".into()),
    };
    let started = Instant::now();
    vote_bot::generate(&config, &stats, demo.shutdown.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(3) + patience());

    let snapshot: StatsSnapshot = http.json(&stats_addr, "/stats").await;
    let total = snapshot.total;
    assert_eq!(
        total.requests,
        total.success + total.failure,
        "{snapshot:?}"
    );
    assert!(total.success > 0, "{snapshot:?}");
    assert!(total.failure > 0, "{snapshot:?}");
    // 150 ticks were due; a loaded machine may delay some (ticks never
    // catch up in a burst), never add any.
    assert!((30..=152).contains(&total.requests), "{snapshot:?}");
    assert_eq!(snapshot.skipped, 0);
    assert!(snapshot.uptime_s >= 3.0, "{snapshot:?}");
    let list = snapshot.by_path["/api/list"];
    let votes = snapshot.by_path["/api/vote"];
    assert_eq!(snapshot.by_path.len(), 2, "{snapshot:?}");
    assert_eq!(list.requests + votes.requests, total.requests);
    assert_eq!(list.failure, 0, "{snapshot:?}");
    // Only the doughnut votes fail.
    assert_eq!(votes.failure, total.failure);
    // Every successful vote was counted, and only those.
    let board: Vec<LeaderboardEntry> = http.json(&demo.web, "/api/leaderboard").await;
    let counted: u64 = board.iter().map(|e| e.votes as u64).sum();
    assert_eq!(counted, 4 + votes.success, "{board:?}");
    assert!(board.iter().all(|e| e.shortcode != ":doughnut:"));
    assert!(board.iter().all(|e| !e.unicode.is_empty()));
    assert!(board.windows(2).all(|w| w[0].votes >= w[1].votes));
    // The raw JSON has the documented shape.
    let (_, _, raw) = http.get(&stats_addr, "/stats").await;
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for key in ["requests", "success", "failure", "by_path", "uptime_s"] {
        assert!(raw.get(key).is_some(), "no {key} in {raw}");
    }

    demo.stop().await;
    tokio::time::timeout(patience(), stats_server)
        .await
        .expect("stats server stops promptly")
        .unwrap()
        .unwrap();
}

/// Dependencies that are not there yet fail requests, not web, and web
/// finds them once they are.
#[tokio::test]
async fn web_survives_missing_dependencies() {
    // A port nothing listens on yet, for emoji.
    let (emoji_listener, emoji_addr) = listener().await;
    let emoji_port = emoji_listener.local_addr().unwrap();
    drop(emoji_listener);
    let (web_listener, web_addr) = listener().await;
    let (trigger, shutdown) = shutdown::channel();
    let unresolvable: ServiceAddr = "voting-svc.emojivoto.invalid:8080".parse().unwrap();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { web::serve(web_listener, &emoji_addr, &unresolvable, shutdown).await }
    });
    let http = Http::new();
    assert_eq!(http.get(&web_addr, "/healthz").await.0, StatusCode::OK);
    for path in ["/api/list", "/api/vote?choice=:joy:", "/api/leaderboard"] {
        let (status, _, body) = http.get(&web_addr, path).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {body}");
        assert!(body.contains(" call failed: "), "{path}: {body}");
    }
    assert_eq!(http.get(&web_addr, "/").await.0, StatusCode::OK);

    // Emoji comes up where web expects it; web reconnects by itself.
    let emoji_listener = TcpListener::bind(emoji_port).await.unwrap();
    let emoji_server = tokio::spawn(emoji::serve(emoji_listener, shutdown));
    let deadline = Instant::now() + patience();
    loop {
        let (status, _, body) = http.get(&web_addr, "/api/list").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "web never reached emoji: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, body) = http.get(&web_addr, "/api/vote?choice=:joy:").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    // Resolution fails, or times out where no DNS server answers.
    assert!(body.contains("voting call failed: "), "{body}");

    drop(trigger);
    for task in [server, emoji_server] {
        tokio::time::timeout(patience(), task)
            .await
            .expect("servers stop promptly")
            .unwrap()
            .unwrap();
    }
}

/// vote-bot against nothing counts failures and carries on.
#[tokio::test]
async fn vote_bot_counts_connection_errors() {
    let (closed, closed_addr) = listener().await;
    drop(closed);
    let (_trigger, shutdown) = shutdown::channel();
    let stats = vote_bot::Stats::new();
    let config = vote_bot::Config {
        web: closed_addr,
        rps: 50.0,
        duration: Some(Duration::from_millis(500)),
        favorite: None,
    };
    vote_bot::generate(&config, &stats, shutdown).await;
    let s = stats.snapshot();
    assert!(s.total.requests > 0, "{s:?}");
    assert_eq!(s.total.failure, s.total.requests, "{s:?}");
}

fn demo_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strand-demo"))
}

#[test]
fn help_and_bad_flags() {
    let out = demo_binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for sub in ["emoji", "voting", "web", "vote-bot"] {
        assert!(help.contains(sub), "{help}");
    }
    let out = demo_binary().args(["vote-bot", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--web", "--rps", "--listen", "--duration", "--favorite"] {
        assert!(help.contains(flag), "{help}");
    }
    for bad in [
        &["vote-bot", "--rps", "0"][..],
        &["vote-bot", "--duration", "soon"],
        &["web", "--emoji-addr", "no-port"],
        &["voting", "--listen", "nowhere"],
        &["emoji", "--bogus"],
    ] {
        let out = demo_binary().args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn exits_zero_on_sigterm() {
    for role in [
        &["emoji", "--listen", "127.0.0.1:0"][..],
        &["voting", "--listen", "127.0.0.1:0"],
        &[
            "web",
            "--listen",
            "127.0.0.1:0",
            "--emoji-addr",
            "127.0.0.1:1",
            "--voting-addr",
            "127.0.0.1:1",
        ],
        &[
            "vote-bot",
            "--listen",
            "127.0.0.1:0",
            "--web",
            "127.0.0.1:1",
        ],
    ] {
        let mut child = demo_binary()
            .args(role)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening") && !line.contains("serving /stats") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "{role:?} exited");
        }
        let started = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        // Drain stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{role:?}: {status}");
                break;
            }
            assert!(started.elapsed() < patience(), "{role:?} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
