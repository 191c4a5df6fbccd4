//! A replica's identity: the variables that point its proxy at the
//! identity service, and its token, in a file only the proxy can read.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use strand_controller_core::LocalCluster;
use strand_controller_local::ApiClient;

use super::pod::PROXY_UID;

/// The pod's identity token, in its directory under the state directory.
pub const TOKEN_FILE: &str = "identity-token";

/// The proxy's identity variables shared by every replica: where the
/// identity service is, its name, the trust anchors (the contents of
/// `ca.crt`), and the tap service's identity (the tap API is on wherever
/// identity is). None when the control plane serves no identity.
pub fn shared_env(cluster: &LocalCluster) -> anyhow::Result<Vec<(String, String)>> {
    if !cluster.identity_enabled() {
        eprintln!(
            "strand: the control plane serves no identity (it predates it); proxies run without certificates"
        );
        return Ok(Vec::new());
    }
    let ca = cluster
        .identity_dir
        .join(strand_identity::TRUST_ANCHOR_FILE);
    let anchors = std::fs::read_to_string(&ca)
        .with_context(|| format!("reading the trust anchors {}", ca.display()))?;
    Ok(vec![
        (
            "STRAND_PROXY_IDENTITY_SVC_ADDR".into(),
            cluster.identity_addr.to_string(),
        ),
        (
            "STRAND_PROXY_IDENTITY_SVC_NAME".into(),
            cluster.identity_server_name.clone(),
        ),
        ("STRAND_PROXY_IDENTITY_TRUST_ANCHORS".into(), anchors),
        // `strand viz tap` presents this identity.
        (
            "STRAND_PROXY_TAP_SVC_NAME".into(),
            strand_identity::tap_identity(&strand_controller_core::TrustDomain::default())
                .to_string(),
        ),
    ])
}

/// Gets the pod's token from the management API, writes it for the proxy
/// ([`write_token`]), and returns the proxy's per-pod identity variables.
pub async fn pod_env(
    client: &ApiClient,
    state_dir: &Path,
    namespace: &str,
    pod: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let minted = client
        .pod_token(namespace, pod)
        .await
        .with_context(|| format!("getting the identity token of pod {pod}"))?;
    let path = write_token(state_dir, namespace, pod, &minted.token)?;
    Ok(vec![
        ("STRAND_PROXY_IDENTITY_LOCAL_NAME".into(), minted.identity),
        (
            "STRAND_PROXY_IDENTITY_TOKEN_FILE".into(),
            path.display().to_string(),
        ),
    ])
}

/// Writes `token` to `<state-dir>/pods/<ns>_<pod>/identity-token`, readable
/// by the proxy's user alone (directory 0700 and file 0400, both owned by
/// uid 2102): the application in the pod runs as another user and cannot
/// read it. Returns the file's path.
pub fn write_token(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    token: &str,
) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    };
    let ctx = |what: &str, path: &Path| format!("{what} {}", path.display());
    // The proxy must be able to pass through the state directory (search
    // only, not list: the admin token stays private by its own mode).
    for dir in state_dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 && meta.uid() != PROXY_UID {
            anyhow::bail!(
                "the proxy (uid {PROXY_UID}) cannot reach its token under {}: {} is not searchable by other users; `chmod o+x` it or use another --state-dir",
                state_dir.display(),
                dir.display()
            );
        }
    }
    let meta = std::fs::metadata(state_dir).with_context(|| ctx("reading", state_dir))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(mode | 0o001))
            .with_context(|| ctx("letting the proxy through", state_dir))?;
    }
    let pods = state_dir.join("pods");
    std::fs::create_dir_all(&pods).with_context(|| ctx("creating", &pods))?;
    std::fs::set_permissions(&pods, std::fs::Permissions::from_mode(0o711))
        .with_context(|| ctx("setting the mode of", &pods))?;
    let dir = LocalCluster::pod_state_dir(state_dir, namespace, pod);
    // A leftover from a runner that was killed.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| ctx("creating", &dir))?;
    std::os::unix::fs::chown(&dir, Some(PROXY_UID), Some(PROXY_UID))
        .with_context(|| ctx("giving the proxy", &dir))?;
    let path = dir.join(TOKEN_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
        .with_context(|| ctx("creating", &path))?;
    f.write_all(token.as_bytes())
        .with_context(|| ctx("writing", &path))?;
    std::os::unix::fs::chown(&path, Some(PROXY_UID), Some(PROXY_UID))
        .with_context(|| ctx("giving the proxy", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    #[test]
    fn the_token_is_for_the_proxy_alone() {
        if !strand_sys::is_root() {
            eprintln!("skipped: giving files to uid {PROXY_UID} needs root");
            return;
        }
        let state = std::env::temp_dir().join(format!("strand-cli-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let _cleanup = Cleanup(state.clone());
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");

        let path = write_token(&state, "shop", "web-1", "first").expect("written");
        assert_eq!(path, state.join("pods/shop_web-1/identity-token"));
        let meta = |p: &Path| std::fs::metadata(p).expect("stat");
        assert_eq!(meta(&path).mode() & 0o777, 0o400);
        assert_eq!(
            (meta(&path).uid(), meta(&path).gid()),
            (PROXY_UID, PROXY_UID)
        );
        let dir = path.parent().expect("dir");
        assert_eq!(meta(dir).mode() & 0o777, 0o700);
        assert_eq!(meta(dir).uid(), PROXY_UID);
        assert_eq!(meta(&state.join("pods")).mode() & 0o777, 0o711);
        assert_eq!(
            meta(&state).mode() & 0o777,
            0o701,
            "the proxy may pass through"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "first");

        // A state directory inside a private one cannot be reached.
        let private = state.join("private");
        std::fs::create_dir_all(private.join("state")).expect("mkdir");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = write_token(&private.join("state"), "shop", "web-1", "x").expect_err("private");
        assert!(err.to_string().contains("not searchable"), "{err}");

        // A leftover from a killed runner is replaced.
        write_token(&state, "shop", "web-1", "second").expect("again");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "second");
    }

    /// Removes the directory, even when the test fails.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
