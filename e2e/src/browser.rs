//! A headless Chromium, for tests where a browser is the user: it loads a
//! page, runs its scripts against the real server, and the test reads and
//! clicks the page through the DevTools protocol.
//!
//! ```text
//!  test ── eval(js) ──▶ worker thread (in the page's network namespace)
//!        ── WebSocket, DevTools protocol ──▶ chromium --headless --remote-debugging-port=0
//! ```

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long Chromium may take to start, and one call to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One DevTools call: method, params, session, where the answer goes.
type Call = (
    String,
    Value,
    Option<String>,
    mpsc::Sender<anyhow::Result<Value>>,
);

/// A headless Chromium showing one page; killed on drop.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    calls: Option<mpsc::Sender<Call>>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// The page's DevTools session.
    session: String,
}

// === impl Browser ===

impl Browser {
    /// Opens `url` in a new headless Chromium, in the network namespace at
    /// `netns` (or this one), once its page exists.
    pub fn open(netns: Option<&Path>, url: &str) -> anyhow::Result<Browser> {
        let profile = std::env::temp_dir().join(format!(
            "strand-chromium-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&profile)?;
        let mut cmd = match netns {
            Some(path) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", path.display()))
                    .arg("--")
                    .arg("chromium");
                c
            }
            None => Command::new("chromium"),
        };
        // Without the background-networking flags Chromium keeps trying to
        // reach Google's services, which this closed network refuses.
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1300,1000",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .context("starting chromium (Debian package `chromium`)")?;
        let stderr = child.stderr.take().context("chromium's stderr")?;
        let (url_tx, url_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so Chromium never blocks on a full pipe.
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    let _ = url_tx.send(ws.trim().to_string());
                }
            }
        });
        let mut browser = Browser {
            child,
            profile,
            calls: None,
            worker: None,
            session: String::new(),
        };
        let ws_url = url_rx
            .recv_timeout(START_TIMEOUT)
            .context("chromium did not open its DevTools endpoint")?;
        let (tx, rx) = mpsc::channel::<Call>();
        let netns = netns.map(Path::to_path_buf);
        browser.calls = Some(tx);
        browser.worker = Some(std::thread::spawn(move || {
            worker(netns, &ws_url, rx);
        }));

        let deadline = Instant::now() + START_TIMEOUT;
        let target = loop {
            let targets = browser.call("Target.getTargets", json!({}), None)?;
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["targetId"].as_str())
                .map(str::to_string);
            match page {
                Some(id) => break id,
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                None => bail!("chromium opened no page: {targets}"),
            }
        };
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            None,
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no DevTools session")?
            .to_string();
        Ok(browser)
    }

    /// The value of the JavaScript expression `js` in the page (promises
    /// are awaited); an exception is an error.
    pub fn eval(&self, js: &str) -> anyhow::Result<Value> {
        let out = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            Some(self.session.clone()),
        )?;
        if let Some(e) = out.get("exceptionDetails") {
            bail!("{js}: {e}");
        }
        Ok(out["result"]["value"].clone())
    }

    /// Evaluates `js` until its value is truthy; returns it. On timeout
    /// the error shows the page's text.
    pub fn wait_for(&self, js: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(js)?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(_) | Value::Object(_) => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText").unwrap_or(Value::Null);
                bail!(
                    "still false after {timeout:?}: {js}\npage:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn call(&self, method: &str, params: Value, session: Option<String>) -> anyhow::Result<Value> {
        let (tx, rx) = mpsc::channel();
        self.calls
            .as_ref()
            .context("the browser is closed")?
            .send((method.to_string(), params, session, tx))
            .context("the DevTools connection is gone")?;
        rx.recv_timeout(CALL_TIMEOUT + Duration::from_secs(1))
            .with_context(|| format!("{method}: no answer"))?
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.calls = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Runs the DevTools connection: one call at a time, each answered by the
/// message with its id (events in between are skipped).
fn worker(netns: Option<PathBuf>, ws_url: &str, calls: mpsc::Receiver<Call>) {
    let fail = |calls: &mpsc::Receiver<Call>, why: String| {
        for (_, _, _, reply) in calls.iter() {
            let _ = reply.send(Err(anyhow::anyhow!("{why}")));
        }
    };
    if let Some(path) = &netns
        && let Err(e) = strand_sys::enter_netns(path)
    {
        return fail(&calls, format!("entering {}: {e}", path.display()));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&calls, e.to_string()),
    };
    rt.block_on(async {
        let mut ws = match tokio::time::timeout(
            CALL_TIMEOUT,
            tokio_tungstenite::connect_async(ws_url),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return fail(&calls, format!("connecting to {ws_url}: {e}")),
            Err(_) => return fail(&calls, format!("connecting to {ws_url}: timed out")),
        };
        let mut id = 0u64;
        // The test thread waits on each answer, so blocking here between
        // calls holds up nothing.
        while let Ok((method, params, session, reply)) = calls.recv() {
            id += 1;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if let Some(s) = session {
                msg["sessionId"] = Value::String(s);
            }
            let answer = async {
                ws.send(Message::text(msg.to_string())).await?;
                loop {
                    let Some(frame) = ws.next().await else {
                        bail!("the DevTools connection closed")
                    };
                    let Message::Text(text) = frame? else {
                        continue;
                    };
                    let v: Value = serde_json::from_str(text.as_str())?;
                    if v["id"] != id {
                        continue;
                    }
                    if let Some(e) = v.get("error") {
                        bail!("{method}: {e}");
                    }
                    return Ok(v["result"].clone());
                }
            };
            let res = match tokio::time::timeout(CALL_TIMEOUT, answer).await {
                Ok(res) => res,
                Err(_) => Err(anyhow::anyhow!("{method}: no answer in {CALL_TIMEOUT:?}")),
            };
            let _ = reply.send(res);
        }
    });
}

/// A suffix that keeps two browsers of one process apart.
fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
