use super::*;
use crate::{CaError, CaFiles, CaPart, GenerateOptions, Issuer, generate, import, validate};
use std::os::unix::fs::PermissionsExt;
use x509_parser::prelude::{FromDer, X509Certificate};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn generate_writes_an_anchor_an_issuer_and_a_token_key() {
    let dir = TempDir::new("generate");
    let id = dir.path().join("identity");
    generate(&id, &GenerateOptions::default()).expect("generate");
    let files = CaFiles::new(&id);
    assert_eq!(mode(&files.issuer_key()), 0o600);
    assert_eq!(mode(&files.token_key()), 0o600);
    assert_eq!(
        std::fs::read(files.token_key()).expect("token key").len(),
        crate::TOKEN_KEY_LEN
    );

    let pems = files.read_pems().expect("read");
    validate(&pems, SystemTime::now()).expect("valid");
    let now = SystemTime::now();
    let anchor = crate::cert_info(pems.trust_anchor.as_bytes()).expect("anchor");
    assert_eq!(anchor.subject, "CN=root.linkerd.cluster.local");
    assert!(anchor.is_ca);
    let years = anchor.expires_in(now).as_secs() / (365 * 86_400);
    assert_eq!(years, 9, "about ten years: {anchor:?}");

    let der = crate::parse_pem_certs(pems.issuer_cert.as_bytes()).expect("issuer")[0].clone();
    let (_, issuer) = X509Certificate::from_der(&der).expect("parse");
    assert_eq!(
        issuer.subject().to_string(),
        "CN=identity.linkerd.cluster.local"
    );
    assert_eq!(issuer.issuer().to_string(), "CN=root.linkerd.cluster.local");
    let bc = issuer
        .basic_constraints()
        .expect("bc")
        .expect("present")
        .value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let days = CertInfoExt::days_left(&issuer);
    assert!((364..=365).contains(&days), "about a year: {days}");
    // The key is PKCS#8 and loads.
    assert!(pems.issuer_key.contains("BEGIN PRIVATE KEY"));
    Issuer::load(&id).expect("loads");
}

trait CertInfoExt {
    fn days_left(&self) -> u64;
}

impl CertInfoExt for X509Certificate<'_> {
    fn days_left(&self) -> u64 {
        crate::CertInfo::from_x509(self)
            .expires_in(SystemTime::now())
            .as_secs()
            / 86_400
    }
}

#[test]
fn generate_refuses_to_overwrite_and_force_keeps_the_token_key() {
    let dir = TempDir::new("overwrite");
    generate(dir.path(), &GenerateOptions::default()).expect("generate");
    let files = CaFiles::new(dir.path());
    let before = files.read_pems().expect("read");
    let token_key = std::fs::read(files.token_key()).expect("token key");

    let err = generate(dir.path(), &GenerateOptions::default()).expect_err("exists");
    assert!(
        matches!(&err, CaError::Exists(p) if p.ends_with("ca.crt")),
        "{err}"
    );
    assert_eq!(files.read_pems().expect("read"), before, "nothing changed");

    let force = GenerateOptions {
        force: true,
        issuer_lifetime: Duration::from_secs(7 * 86_400),
        ..GenerateOptions::default()
    };
    generate(dir.path(), &force).expect("forced");
    let after = files.read_pems().expect("read");
    assert_ne!(after.trust_anchor, before.trust_anchor);
    assert_ne!(after.issuer_key, before.issuer_key);
    assert_eq!(std::fs::read(files.token_key()).expect("key"), token_key);
    let issuer = crate::cert_info(after.issuer_cert.as_bytes()).expect("issuer");
    assert_eq!(issuer.expires_in(SystemTime::now()).as_secs() / 86_400, 6);
}

#[test]
fn import_writes_valid_files() {
    let dir = TempDir::new("import");
    let pems = make_ca(CaSpec::default());
    import(dir.path(), &pems, false).expect("import");
    let files = CaFiles::new(dir.path());
    assert_eq!(files.read_pems().expect("read"), pems);
    assert_eq!(mode(&files.issuer_key()), 0o600);
    assert!(files.token_key().exists());
    let err = import(dir.path(), &pems, false).expect_err("exists");
    assert!(matches!(err, CaError::Exists(_)), "{err}");
    import(dir.path(), &pems, true).expect("forced");
}

#[test]
fn import_accepts_a_sec1_key() {
    // `step` and `openssl ecparam` write "EC PRIVATE KEY" (SEC1), with an
    // "EC PARAMETERS" block first.
    let pems = make_ca(CaSpec::default());
    use aws_lc_rs::encoding::AsDer as _;
    let key = KeyPair::from_pem(&pems.issuer_key).expect("key");
    let ec = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
    )
    .expect("P-256");
    let sec1 = ec.private_key().as_der().expect("SEC1");
    let sec1 = sec1.as_ref();
    let b64 = base64_std(sec1);
    let pem = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n"
    );
    let pems = CaPems {
        issuer_key: pem,
        ..pems
    };
    validate(&pems, SystemTime::now()).expect("SEC1 accepted");
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn import_refuses_what_does_not_fit() {
    let now = SystemTime::now();
    let good = make_ca(CaSpec::default());
    let other = make_ca(CaSpec::default());
    let cases: Vec<(&str, CaPems, CaPart, &str)> = vec![
        (
            "issuer not a CA",
            make_ca(CaSpec {
                issuer_is_ca: false,
                ..CaSpec::default()
            }),
            CaPart::IssuerCert,
            "is not a CA certificate",
        ),
        (
            "issuer signed by another anchor",
            CaPems {
                trust_anchor: other.trust_anchor.clone(),
                ..good.clone()
            },
            CaPart::IssuerCert,
            "is not signed by the trust anchor",
        ),
        (
            "key of another issuer",
            CaPems {
                issuer_key: other.issuer_key.clone(),
                ..good.clone()
            },
            CaPart::IssuerKey,
            "does not belong to the issuer certificate",
        ),
        (
            "anchor not a CA",
            CaPems {
                trust_anchor: {
                    let key = KeyPair::generate().expect("key");
                    params("leaf", false, (now - HOUR, now + DAY))
                        .self_signed(&key)
                        .expect("cert")
                        .pem()
                },
                ..good.clone()
            },
            CaPart::TrustAnchor,
            "is not a CA certificate",
        ),
        (
            "expired issuer",
            make_ca(CaSpec {
                issuer_valid: (now - 2 * DAY, now - DAY),
                ..CaSpec::default()
            }),
            CaPart::IssuerCert,
            "expired at",
        ),
        (
            "expired anchor",
            make_ca(CaSpec {
                anchor_valid: (now - 2 * DAY, now - DAY),
                ..CaSpec::default()
            }),
            CaPart::TrustAnchor,
            "expired at",
        ),
        (
            "issuer not yet valid",
            make_ca(CaSpec {
                issuer_valid: (now + DAY, now + 2 * DAY),
                ..CaSpec::default()
            }),
            CaPart::IssuerCert,
            "is not valid before",
        ),
        (
            "no certificate in ca.crt",
            CaPems {
                trust_anchor: "hello\n".into(),
                ..good.clone()
            },
            CaPart::TrustAnchor,
            "no PEM CERTIFICATE block",
        ),
        (
            "no key",
            CaPems {
                issuer_key: good.issuer_cert.clone(),
                ..good.clone()
            },
            CaPart::IssuerKey,
            "no private key found",
        ),
        (
            "issuer.crt with two certificates",
            CaPems {
                issuer_cert: format!("{}{}", good.issuer_cert, other.issuer_cert),
                ..good.clone()
            },
            CaPart::IssuerCert,
            "holds 2 certificates",
        ),
    ];
    for (what, pems, part, needle) in cases {
        let dir = TempDir::new("import-bad");
        let err = import(dir.path(), &pems, false).expect_err(what);
        match &err {
            CaError::Invalid { part: p, reason } => {
                assert_eq!(*p, part, "{what}: {err}");
                assert!(reason.contains(needle), "{what}: {err}");
            }
            other => panic!("{what}: {other}"),
        }
        assert!(
            !dir.path().join("ca.crt").exists(),
            "{what}: nothing written"
        );
        let shown = err.to_string();
        assert!(shown.starts_with("the "), "names the file: {shown}");
    }
    validate(&good, now).expect("the good one is valid");
}

#[test]
fn a_missing_token_key_is_made_once() {
    let dir = TempDir::new("token-key");
    let key = crate::load_or_create_token_key(dir.path()).expect("made");
    assert_eq!(mode(&dir.path().join("token.key")), 0o600);
    let again = crate::load_or_create_token_key(dir.path()).expect("loaded");
    let token = key.mint(&crate::Claims {
        namespace: "a".into(),
        pod: "b".into(),
        service_account: "c".into(),
        identity: "d".into(),
        ip: "10.0.0.1".parse().expect("ip"),
    });
    assert!(again.verify(&token).is_ok(), "the same key");
    std::fs::write(dir.path().join("token.key"), b"short").expect("write");
    let err = crate::load_or_create_token_key(dir.path()).expect_err("bad key");
    assert!(err.to_string().contains("token.key"), "{err}");
}
