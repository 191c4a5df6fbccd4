//! `strand viz grafana`: writes strand's Grafana dashboards and the
//! provisioning files that make a Grafana server load them, reading a
//! Prometheus that scrapes the proxies.
//!
//! ```text
//!  DIR/dashboards/*.json                       the dashboards (strand_viz::grafana)
//!  DIR/provisioning/dashboards/strand.yaml     a file provider: DIR/dashboards, folder "strand"
//!  DIR/provisioning/datasources/strand.yaml    the Prometheus datasource "prometheus"
//! ```
//!
//! Nothing here needs root or a running control plane.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

/// Where `strand viz grafana` points the datasource unless told otherwise:
/// Prometheus's own default listen address.
const DEFAULT_PROMETHEUS_URL: &str = "http://127.0.0.1:9090";
/// The datasource's name; the dashboards' `$datasource` variable lists
/// every Prometheus datasource and starts on the default one, which this
/// one is.
const DATASOURCE_NAME: &str = "prometheus";
/// The Grafana folder the dashboards appear in.
const FOLDER: &str = "strand";

#[derive(Args, Debug)]
pub struct GrafanaArgs {
    /// The directory to write into (created if missing): DIR/dashboards
    /// and DIR/provisioning.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The Prometheus server the dashboards read: one that scrapes the
    /// proxies with the configuration `strand viz prometheus-config`
    /// prints.
    #[arg(long, value_name = "URL", default_value = DEFAULT_PROMETHEUS_URL)]
    prometheus_url: String,
    /// How often that Prometheus scrapes the proxies; Grafana makes
    /// `$__rate_interval` at least four of them, so rates always span
    /// several samples.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::run::parse_duration)]
    scrape_interval: Duration,
    /// Replace files that already exist.
    #[arg(long)]
    force: bool,
}

/// A file to write and what it is, for the report.
#[derive(Debug)]
struct File {
    path: PathBuf,
    contents: String,
    what: String,
}

pub fn grafana(args: GrafanaArgs) -> anyhow::Result<u8> {
    let out =
        std::path::absolute(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let files = plan(&out, &args.prometheus_url, args.scrape_interval)?;
    write(&files, args.force)?;
    print!("{}", report(&out, &files));
    Ok(0)
}

/// The files for an absolute `out`.
fn plan(out: &Path, prometheus_url: &str, scrape_interval: Duration) -> anyhow::Result<Vec<File>> {
    check_url(prometheus_url)?;
    if scrape_interval < Duration::from_secs(1) {
        bail!("--scrape-interval must be at least 1s");
    }
    let dashboards_dir = out.join("dashboards");
    let mut files: Vec<File> = strand_viz::grafana::dashboards()
        .into_iter()
        .map(|d| File {
            path: dashboards_dir.join(d.file_name),
            contents: d.json.to_string(),
            what: format!("dashboard {:?} (uid {})", d.title, d.uid),
        })
        .collect();
    let provisioning = out.join("provisioning");
    files.push(File {
        path: provisioning.join("dashboards").join("strand.yaml"),
        contents: dashboard_provider(&dashboards_dir),
        what: format!(
            "loads {} into the folder {FOLDER:?}",
            dashboards_dir.display()
        ),
    });
    files.push(File {
        path: provisioning.join("datasources").join("strand.yaml"),
        contents: datasource(prometheus_url, scrape_interval),
        what: format!("the Prometheus datasource {DATASOURCE_NAME:?} at {prometheus_url}"),
    });
    Ok(files)
}

/// Writes every file, or none when one exists and `force` is not set.
fn write(files: &[File], force: bool) -> anyhow::Result<()> {
    if !force {
        let existing: Vec<String> = files
            .iter()
            .filter(|f| f.path.exists())
            .map(|f| f.path.display().to_string())
            .collect();
        match existing.as_slice() {
            [] => {}
            [one] => bail!("{one} already exists; pass --force to replace it"),
            [first, rest @ ..] => bail!(
                "{first} and {} more of the files already exist; pass --force to replace them",
                rest.len()
            ),
        }
    }
    for f in files {
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&f.path, &f.contents)
            .with_context(|| format!("writing {}", f.path.display()))?;
    }
    Ok(())
}

fn report(out: &Path, files: &[File]) -> String {
    let mut s = String::new();
    for f in files {
        let _ = writeln!(s, "wrote {}: {}", f.path.display(), f.what);
    }
    let provisioning = shell_quote(&out.join("provisioning").display().to_string());
    let _ = write!(
        s,
        "\nStart Grafana with them (`grafana server` in recent releases):\n\
         \x20 GF_PATHS_PROVISIONING={provisioning} grafana-server\n\
         or copy the two strand.yaml files into your Grafana's provisioning directory.\n\
         The dashboards are in the folder {FOLDER:?}; Prometheus must scrape the proxies with\n\
         the configuration `strand viz prometheus-config` prints.\n"
    );
    s
}

/// Grafana's file provider for the dashboards directory.
fn dashboard_provider(dir: &Path) -> String {
    format!(
        "# strand's Grafana dashboards (`strand viz grafana`).\n\
         apiVersion: 1\n\
         providers:\n\
         \x20 - name: strand\n\
         \x20   orgId: 1\n\
         \x20   folder: {folder}\n\
         \x20   type: file\n\
         \x20   disableDeletion: false\n\
         \x20   allowUiUpdates: false\n\
         \x20   updateIntervalSeconds: 30\n\
         \x20   options:\n\
         \x20     path: {path}\n\
         \x20     foldersFromFilesStructure: false\n",
        folder = yaml_string(FOLDER),
        path = yaml_string(&dir.display().to_string()),
    )
}

/// The Prometheus datasource; `timeInterval` is the scrape interval, from
/// which Grafana derives `$__rate_interval`.
fn datasource(url: &str, scrape_interval: Duration) -> String {
    format!(
        "# The Prometheus that strand's Grafana dashboards read (`strand viz grafana`).\n\
         apiVersion: 1\n\
         datasources:\n\
         \x20 - name: {name}\n\
         \x20   uid: strand-prometheus\n\
         \x20   type: prometheus\n\
         \x20   access: proxy\n\
         \x20   url: {url}\n\
         \x20   isDefault: true\n\
         \x20   editable: true\n\
         \x20   jsonData:\n\
         \x20     timeInterval: {interval}\n",
        name = yaml_string(DATASOURCE_NAME),
        url = yaml_string(url),
        interval = yaml_string(&strand_viz::format_duration(scrape_interval)),
    )
}

/// `http(s)://HOST[:PORT][/PATH]`, nothing Grafana would choke on.
fn check_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && !r.starts_with('/')
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => bail!("--prometheus-url {url:?}: expected http://HOST[:PORT][/PATH] or https://..."),
    }
}

/// A double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests;
