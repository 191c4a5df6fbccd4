//! nginx as a plain reverse proxy in the server pod, configured the way one
//! would for a fair comparison: upstream keepalive, no access log, a worker
//! per core, and connections never recycled by request count (strand does
//! not recycle them either).

use std::net::SocketAddr;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use strand_testkit::Pod;

/// Where nginx listens and where it forwards, all in the server pod.
pub struct Ports {
    /// HTTP/1.1 listener, proxied to the HTTP backend.
    pub http1: u16,
    /// Cleartext HTTP/2 (prior knowledge) listener: `/` goes to the HTTP
    /// backend over HTTP/1.1 (nginx proxies HTTP only as 1.x), gRPC to the
    /// gRPC backend over HTTP/2.
    pub http2: u16,
    pub http_upstream: u16,
    pub grpc_upstream: u16,
}

/// Idle upstream connections each worker keeps: above the benchmark's 100
/// client connections so that nginx never has to open upstream connections
/// in the middle of a measurement.
const UPSTREAM_KEEPALIVE: u32 = 256;

/// Per-worker connection limit: 1,000 client connections plus their
/// upstream connections with plenty of margin.
const WORKER_CONNECTIONS: u32 = 8192;

/// Writes the configuration into `dir` (created, readable by nginx's
/// workers) and returns the command that runs nginx in the foreground.
pub fn command(server: &Pod, nginx: &Path, dir: &Path, ports: &Ports) -> anyhow::Result<Command> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, ports))
        .with_context(|| format!("writing {}", conf.display()))?;
    let mut cmd = server.command(nginx);
    // -p: relative paths resolve here; -e: the log before the config is read.
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    Ok(cmd)
}

/// Like [`command`], for one HTTP/1.1 listener on `listen` forwarding to
/// `upstream`, with nginx run as `uid` (which owns `dir`, since a master
/// that is not root writes its pid file and logs there itself).
pub fn redirect_command(
    pod: &Pod,
    nginx: &Path,
    dir: &Path,
    listen: u16,
    upstream: SocketAddr,
    uid: u32,
) -> anyhow::Result<Command> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, redirect_config(dir, listen, upstream))
        .with_context(|| format!("writing {}", conf.display()))?;
    for path in [dir, conf.as_path()] {
        chown(path, Some(uid), Some(uid))
            .with_context(|| format!("chown {uid} {}", path.display()))?;
    }
    let mut cmd = pod.command_as(uid, uid, nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    Ok(cmd)
}

/// The configuration of [`redirect_command`]: the same settings as
/// [`config`]'s HTTP/1.1 listener.
pub fn redirect_config(dir: &Path, listen: u16, upstream: SocketAddr) -> String {
    format!(
        "{head}    server {{
        listen {listen} reuseport;
{HTTP_LOCATION}    }}
}}
",
        head = head(dir, &upstream.to_string()),
    )
}

/// The configuration file.
pub fn config(dir: &Path, ports: &Ports) -> String {
    let Ports {
        http1,
        http2,
        http_upstream,
        grpc_upstream,
    } = ports;
    format!(
        "{head}    upstream grpc_backend {{
        server 127.0.0.1:{grpc_upstream};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 1000000;
    }}

    server {{
        listen {http1} reuseport;
{HTTP_LOCATION}    }}

    server {{
        listen {http2} http2 reuseport;
{HTTP_LOCATION}        location /strand.test.Echo/ {{
            grpc_pass grpc://grpc_backend;
        }}
    }}
}}
",
        head = head(dir, &format!("127.0.0.1:{http_upstream}")),
    )
}

/// Proxies everything to `http_backend` over kept-alive HTTP/1.1.
const HTTP_LOCATION: &str = "        location / {
            proxy_pass http://http_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
";

/// Everything both configurations share, up to the `http` block's
/// upstreams: process settings, files under `dir`, and the HTTP upstream.
fn head(dir: &Path, http_upstream: &str) -> String {
    let dir = dir.display();
    format!(
        "\
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {WORKER_CONNECTIONS};
}}

http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream http_backend {{
        server {http_upstream};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 1000000;
    }}

"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_wires_listeners_to_upstreams() {
        let ports = Ports {
            http1: 8081,
            http2: 8082,
            http_upstream: 8080,
            grpc_upstream: 9090,
        };
        let conf = config(Path::new("/tmp/b"), &ports);
        assert!(conf.contains("pid /tmp/b/nginx.pid;"), "{conf}");
        assert!(conf.contains("listen 8081 reuseport;"), "{conf}");
        assert!(conf.contains("listen 8082 http2 reuseport;"), "{conf}");
        assert!(conf.contains("server 127.0.0.1:8080;"), "{conf}");
        assert!(conf.contains("server 127.0.0.1:9090;"), "{conf}");
        assert!(conf.contains("grpc_pass grpc://grpc_backend;"), "{conf}");
        assert!(conf.contains("access_log off;"), "{conf}");
        // Balanced braces: nginx refuses the file otherwise.
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }

    #[test]
    fn redirect_config_listens_on_the_proxy_port() {
        let upstream = "198.18.0.3:8080".parse().unwrap();
        let conf = redirect_config(Path::new("/tmp/b"), 4143, upstream);
        assert!(conf.contains("listen 4143 reuseport;"), "{conf}");
        assert!(conf.contains("server 198.18.0.3:8080;"), "{conf}");
        assert!(!conf.contains("http2"), "{conf}");
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }
}
