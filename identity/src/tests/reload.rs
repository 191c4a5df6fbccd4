use super::*;
use crate::{GenerateOptions, Metrics, Reload, ReloadingIssuer, generate};
use strand_controller_core::IdentityName;

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

#[test]
fn the_issuer_follows_its_files() {
    let dir = TempDir::new("reload");
    generate(dir.path(), &GenerateOptions::default()).expect("generate");
    let metrics = Metrics::default();
    let reloading = ReloadingIssuer::load(dir.path(), metrics.clone()).expect("load");
    let updates = reloading.subscribe();
    let first = reloading.current();
    assert_eq!(metrics.issuer_expiry(), Some(first.not_after()));
    assert_eq!(reloading.check(), Reload::Unchanged);

    // Rotation: a new anchor and issuer, with a shorter life.
    let opts = GenerateOptions {
        force: true,
        issuer_lifetime: Duration::from_secs(30 * 86_400),
        ..GenerateOptions::default()
    };
    generate(dir.path(), &opts).expect("rotate");
    assert_eq!(reloading.check(), Reload::Replaced);
    assert!(
        updates.has_changed().expect("open"),
        "subscribers hear of it"
    );
    let second = reloading.current();
    assert_ne!(second.certificate_der(), first.certificate_der());
    assert_eq!(metrics.issuer_expiry(), Some(second.not_after()));
    let issued = second
        .sign(&csr(&[ID]), &IdentityName::new(ID), HOUR)
        .expect("signs");
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca");
    verify_chain(&ca, &issued, ID).expect("with the new anchor");
    assert_eq!(reloading.check(), Reload::Unchanged);

    // A broken file is not taken; the issuer in use stays, and stays
    // rejected while the file stays broken.
    std::fs::write(dir.path().join("issuer.crt"), "oops").expect("write");
    assert_eq!(reloading.check(), Reload::Rejected);
    assert_eq!(reloading.check(), Reload::Rejected);
    assert_eq!(reloading.check(), Reload::Rejected);
    assert_eq!(
        reloading.current().certificate_der(),
        second.certificate_der()
    );
    assert_eq!(metrics.issuer_expiry(), Some(second.not_after()));

    // An expired replacement is not taken either.
    let now = SystemTime::now();
    let expired = make_ca(CaSpec {
        issuer_valid: (now - 2 * DAY, now - DAY),
        ..CaSpec::default()
    });
    crate::ca::write_atomic(
        &dir.path().join("ca.crt"),
        expired.trust_anchor.as_bytes(),
        0o644,
    )
    .expect("write");
    crate::ca::write_atomic(
        &dir.path().join("issuer.crt"),
        expired.issuer_cert.as_bytes(),
        0o644,
    )
    .expect("write");
    crate::ca::write_atomic(
        &dir.path().join("issuer.key"),
        expired.issuer_key.as_bytes(),
        0o600,
    )
    .expect("write");
    assert_eq!(reloading.check(), Reload::Rejected);
    assert_eq!(
        reloading.current().certificate_der(),
        second.certificate_der()
    );

    // A good one is.
    let fresh = make_ca(CaSpec::default());
    crate::import(dir.path(), &fresh, true).expect("import");
    assert_eq!(reloading.check(), Reload::Replaced);
    assert_eq!(reloading.current().info().subject, "CN=test-issuer");
}

#[test]
fn loading_files_that_do_not_fit_fails_with_the_file_named() {
    let dir = TempDir::new("reload-bad");
    let err = ReloadingIssuer::load(dir.path(), Metrics::default()).expect_err("no files");
    assert!(err.to_string().contains("ca.crt"), "{err}");

    let a = make_ca(CaSpec::default());
    let b = make_ca(CaSpec::default());
    crate::import(dir.path(), &a, false).expect("import");
    std::fs::write(dir.path().join("issuer.key"), &b.issuer_key).expect("write");
    let err = ReloadingIssuer::load(dir.path(), Metrics::default()).expect_err("wrong key");
    assert!(
        err.to_string().contains("issuer.key") && err.to_string().contains("does not belong"),
        "{err}"
    );
}

#[tokio::test]
async fn run_polls_the_files() {
    let dir = TempDir::new("reload-run");
    generate(dir.path(), &GenerateOptions::default()).expect("generate");
    let reloading = ReloadingIssuer::load(dir.path(), Metrics::default()).expect("load");
    let mut updates = reloading.subscribe();
    let task = tokio::spawn(reloading.clone().run(Duration::from_millis(20)));
    let opts = GenerateOptions {
        force: true,
        ..GenerateOptions::default()
    };
    generate(dir.path(), &opts).expect("rotate");
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("reloaded within a few polls")
        .expect("open");
    task.abort();
}
