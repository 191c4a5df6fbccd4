use super::*;

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "strand-cli-grafana-{tag}-{}-{nanos}",
            std::process::id()
        ));
        assert!(!dir.exists(), "{} exists", dir.display());
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn writes_dashboards_and_provisioning() {
    let tmp = TempDir::new("write");
    let out = tmp.0.join("grafana");
    let files = plan(&out, "http://127.0.0.1:9091", Duration::from_secs(15)).expect("a plan");
    write(&files, false).expect("writes");

    let dashboards = strand_viz::grafana::dashboards();
    assert!(dashboards.len() >= 6);
    for d in &dashboards {
        let path = out.join("dashboards").join(d.file_name);
        assert_eq!(read(&path), d.json, "{}", path.display());
    }
    let provider = read(&out.join("provisioning/dashboards/strand.yaml"));
    assert!(
        provider.contains(&format!(
            "      path: \"{}\"\n",
            out.join("dashboards").display()
        )),
        "{provider}"
    );
    assert!(provider.contains("    type: file\n"), "{provider}");
    assert!(provider.contains("    folder: \"strand\"\n"), "{provider}");
    let ds = read(&out.join("provisioning/datasources/strand.yaml"));
    assert!(ds.contains("  - name: \"prometheus\"\n"), "{ds}");
    assert!(ds.contains("    type: prometheus\n"), "{ds}");
    assert!(ds.contains("    url: \"http://127.0.0.1:9091\"\n"), "{ds}");
    assert!(ds.contains("      timeInterval: \"15s\"\n"), "{ds}");

    let text = report(&out, &files);
    assert!(
        text.contains("dashboard \"strand / Top line\" (uid strand-top-line)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "GF_PATHS_PROVISIONING={} grafana-server",
            out.join("provisioning").display()
        )),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("wrote ")).count(),
        dashboards.len() + 2
    );
}

#[test]
fn refuses_to_overwrite_without_force() {
    let tmp = TempDir::new("force");
    let files = plan(&tmp.0, DEFAULT_PROMETHEUS_URL, Duration::from_secs(10)).expect("a plan");
    write(&files, false).expect("writes");
    let edited = &files[0].path;
    std::fs::write(edited, "edited").expect("edits");

    let err = write(&files, false).expect_err("files exist").to_string();
    assert_eq!(
        err,
        format!(
            "{} and {} more of the files already exist; pass --force to replace them",
            edited.display(),
            files.len() - 1
        )
    );
    assert_eq!(read(edited), "edited", "nothing is written on refusal");

    // One file in the way is enough to refuse, and nothing is written.
    let tmp2 = TempDir::new("one");
    let files = plan(&tmp2.0, DEFAULT_PROMETHEUS_URL, Duration::from_secs(10)).expect("a plan");
    let last = &files[files.len() - 1].path;
    std::fs::create_dir_all(last.parent().expect("a parent")).expect("mkdir");
    std::fs::write(last, "mine").expect("writes");
    let err = write(&files, false).expect_err("a file exists").to_string();
    assert_eq!(
        err,
        format!(
            "{} already exists; pass --force to replace it",
            last.display()
        )
    );
    assert!(!files[0].path.exists());

    let files = plan(&tmp.0, DEFAULT_PROMETHEUS_URL, Duration::from_secs(10)).expect("a plan");
    write(&files, true).expect("--force replaces");
    assert_eq!(read(edited), files[0].contents);
}

#[test]
fn bad_arguments_are_refused() {
    let out = Path::new("/nonexistent/strand-grafana");
    for bad in [
        "127.0.0.1:9090",
        "ftp://127.0.0.1",
        "http://",
        "http:///metrics",
        "http://a b",
        "http://a\n",
    ] {
        let err = plan(out, bad, Duration::from_secs(10)).expect_err(bad);
        assert!(err.to_string().contains("--prometheus-url"), "{err}");
    }
    for good in ["http://127.0.0.1:9090", "https://prom.example/sub/"] {
        plan(out, good, Duration::from_secs(10)).expect(good);
    }
    assert!(plan(out, DEFAULT_PROMETHEUS_URL, Duration::from_millis(500)).is_err());
}

#[test]
fn quoting() {
    assert_eq!(yaml_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    assert_eq!(yaml_string("/tmp/g"), "\"/tmp/g\"");
    assert_eq!(
        shell_quote("/tmp/out/provisioning"),
        "/tmp/out/provisioning"
    );
    assert_eq!(shell_quote("/tmp/my dir"), "'/tmp/my dir'");
    assert_eq!(shell_quote("/tmp/it's"), "'/tmp/it'\\''s'");
}
