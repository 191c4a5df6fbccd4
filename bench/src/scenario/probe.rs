//! Readiness probes run inside a pod: wait until a process accepts
//! connections (or answers an HTTP GET with 200) on loopback, failing early
//! with its stderr if it exits.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strand_testkit::{Child, Pod};

/// How long one probe attempt may take: loopback in an idle pod answers in
/// microseconds, so this only bounds a process that accepts and then hangs.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between attempts: short, since a proxy binds within milliseconds.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Waits until `127.0.0.1:port` in `pod` accepts a TCP connection.
pub fn wait_tcp(pod: &Pod, child: &mut Child, port: u16) -> anyhow::Result<()> {
    let patience = strand_testkit::patience();
    wait(pod, child, &format!("port {port}"), patience, || {
        connect(port).map(drop)
    })
}

/// `GET http://127.0.0.1:port{path}` in `pod`, once: the body of a 200.
pub fn http_get(pod: &Pod, port: u16, path: &str) -> anyhow::Result<String> {
    let response = pod.in_netns(|| {
        let mut stream = connect(port)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        // HTTP/1.0: the server closes after the response.
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok::<_, std::io::Error>(response)
    })?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET :{port}{path}: no end of headers"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET :{port}{path}: {status:?}");
    }
    Ok(body.to_string())
}

/// Waits until `GET http://127.0.0.1:port{path}` in `pod` answers 200,
/// for at most `patience`.
pub fn wait_http_ok(
    pod: &Pod,
    child: &mut Child,
    port: u16,
    path: &str,
    patience: Duration,
) -> anyhow::Result<()> {
    wait(pod, child, &format!("GET :{port}{path}"), patience, || {
        let mut stream = connect(port)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        // "HTTP/1.x 200"
        if &head[9..12] == b"200" {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "status line {:?}",
                String::from_utf8_lossy(&head)
            )))
        }
    })
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, ATTEMPT_TIMEOUT)?;
    stream.set_read_timeout(Some(ATTEMPT_TIMEOUT))?;
    stream.set_write_timeout(Some(ATTEMPT_TIMEOUT))?;
    Ok(stream)
}

/// Retries `attempt` inside `pod` for `patience`.
fn wait(
    pod: &Pod,
    child: &mut Child,
    what: &str,
    patience: Duration,
    attempt: impl Fn() -> std::io::Result<()> + Send + Sync,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let last = pod.in_netns(&attempt);
        let Err(e) = last else {
            return Ok(());
        };
        if let Some(status) = child.try_wait() {
            bail!(
                "{} exited ({status}) before {what} was ready\nstderr: {}",
                child.label(),
                child.stderr_text().trim()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready: {what}: {e}\nstderr: {}",
                child.label(),
                child.stderr_text().trim()
            );
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}
