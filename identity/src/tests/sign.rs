use super::*;
use crate::{DEFAULT_CERT_LIFETIME, Issuer, Reason};
use strand_controller_core::IdentityName;
use x509_parser::prelude::{FromDer, X509Certificate};

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

fn issuer() -> (CaPems, Issuer) {
    let pems = make_ca(CaSpec::default());
    let issuer = Issuer::from_pems(&pems).expect("issuer");
    (pems, issuer)
}

#[test]
fn signs_a_leaf_that_chains_to_the_anchor_and_names_the_identity() {
    let dir = TempDir::new("sign");
    crate::generate(dir.path(), &crate::GenerateOptions::default()).expect("generate");
    let issuer = Issuer::load(dir.path()).expect("load");
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca");
    let now = SystemTime::now();
    let issued = issuer
        .sign(&csr(&[ID]), &IdentityName::new(ID), DEFAULT_CERT_LIFETIME)
        .expect("signed");

    verify_chain(&ca, &issued, ID).expect("chains to the anchor for the identity");
    let other = "db.default.serviceaccount.identity.linkerd.cluster.local";
    assert!(
        verify_chain(&ca, &issued, other).is_err(),
        "and no other name"
    );
    assert_eq!(issued.intermediates, vec![issuer.certificate_der().clone()]);

    let (_, leaf) = X509Certificate::from_der(&issued.leaf).expect("parse");
    let info = crate::CertInfo::from_der(&issued.leaf).expect("info");
    assert_eq!(info.sans, vec![ID.to_string()]);
    assert_eq!(info.subject, format!("CN={ID}"));
    assert!(!leaf.is_ca());
    let bc = leaf.basic_constraints().expect("bc").expect("present");
    assert!(!bc.value.ca, "explicitly not a CA");
    let ku = leaf.key_usage().expect("ku").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth);

    assert!(info.not_before < now, "starts a little in the past");
    assert!(info.not_before > now - Duration::from_secs(60));
    let lifetime = issued
        .valid_until
        .duration_since(now)
        .expect("in the future");
    assert!(
        lifetime > DEFAULT_CERT_LIFETIME - Duration::from_secs(5)
            && lifetime <= DEFAULT_CERT_LIFETIME,
        "{lifetime:?}"
    );
    assert_eq!(issued.valid_until, info.not_after);

    // Each certificate gets its own serial.
    let again = issuer
        .sign(&csr(&[ID]), &IdentityName::new(ID), DEFAULT_CERT_LIFETIME)
        .expect("signed");
    let (_, again) = X509Certificate::from_der(&again.leaf).expect("parse");
    assert_ne!(again.raw_serial(), leaf.raw_serial());
}

#[test]
fn a_leaf_never_outlives_its_issuer() {
    let now = SystemTime::now();
    let pems = make_ca(CaSpec {
        issuer_valid: (now - HOUR, now + HOUR),
        ..CaSpec::default()
    });
    let issuer = Issuer::from_pems(&pems).expect("issuer");
    let issued = issuer
        .sign(&csr(&[ID]), &IdentityName::new(ID), DEFAULT_CERT_LIFETIME)
        .expect("signed");
    assert_eq!(issued.valid_until, issuer.not_after());
    verify_chain(&pems.trust_anchor, &issued, ID).expect("chains");
}

#[test]
fn a_csr_for_another_identity_is_refused() {
    let (_, issuer) = issuer();
    let id = IdentityName::new(ID);
    let other = "admin.kube-system.serviceaccount.identity.linkerd.cluster.local";
    let err = issuer
        .sign(&csr(&[other]), &id, DEFAULT_CERT_LIFETIME)
        .expect_err("another name");
    assert_eq!(err.reason, Reason::IdentityMismatch);
    assert!(
        err.message.contains(other) && err.message.contains(ID),
        "{err}"
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition
    );

    let err = issuer
        .sign(&csr(&[ID, other]), &id, DEFAULT_CERT_LIFETIME)
        .expect_err("an extra name");
    assert_eq!(err.reason, Reason::IdentityMismatch, "{err}");
    assert!(err.message.contains("2 DNS names"), "{err}");

    let err = issuer
        .sign(&csr(&[ID, "10.42.0.7"]), &id, DEFAULT_CERT_LIFETIME)
        .expect_err("an IP address");
    assert_eq!(err.reason, Reason::MalformedCsr, "{err}");
    assert!(err.message.contains("10.42.0.7"), "{err}");

    let err = issuer
        .sign(&csr(&[]), &id, DEFAULT_CERT_LIFETIME)
        .expect_err("no name");
    assert_eq!(err.reason, Reason::MalformedCsr, "{err}");
}

#[test]
fn a_malformed_csr_is_refused() {
    let (_, issuer) = issuer();
    let id = IdentityName::new(ID);
    let good = csr(&[ID]);
    let mut bad_signature = good.clone();
    let last = bad_signature.len() - 3;
    bad_signature[last] ^= 0x55;
    let p384 = {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        CertificateParams::new(vec![ID.to_string()])
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .der()
            .to_vec()
    };
    let pem = CertificateParams::new(vec![ID.to_string()])
        .expect("params")
        .serialize_request(&KeyPair::generate().expect("key"))
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "carries none"),
        ("garbage", b"not a csr".to_vec(), "not a DER PKCS#10"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not a DER PKCS#10",
        ),
        (
            "trailing bytes",
            [good.as_slice(), b"xx"].concat(),
            "2 bytes follow",
        ),
        ("bad signature", bad_signature, "signature does not verify"),
        ("P-384 key", p384, "only ECDSA P-256"),
        ("PEM instead of DER", pem, "not a DER PKCS#10"),
    ];
    for (what, der, needle) in cases {
        let err = issuer
            .sign(&der, &id, DEFAULT_CERT_LIFETIME)
            .expect_err(what);
        assert_eq!(err.reason, Reason::MalformedCsr, "{what}: {err}");
        assert!(err.message.contains(needle), "{what}: {err}");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument,
            "{what}"
        );
    }
}

#[test]
fn an_expired_issuer_is_unavailable() {
    let now = SystemTime::now();
    let pems = make_ca(CaSpec {
        issuer_valid: (now - 2 * DAY, now - DAY),
        ..CaSpec::default()
    });
    // Loads (so that requests are told why), but signs nothing.
    let issuer = Issuer::from_pems(&pems).expect("an expired issuer loads");
    let err = issuer
        .sign(&csr(&[ID]), &IdentityName::new(ID), DEFAULT_CERT_LIFETIME)
        .expect_err("expired");
    assert_eq!(err.reason, Reason::IssuerUnavailable);
    assert!(err.message.contains("expired at"), "{err}");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);

    // And a good one, asked after its end.
    let (_, issuer) = self::issuer();
    let later = issuer.not_after() + Duration::from_secs(1);
    let err = issuer
        .sign_at(
            &csr(&[ID]),
            &IdentityName::new(ID),
            DEFAULT_CERT_LIFETIME,
            later,
        )
        .expect_err("expired by then");
    assert_eq!(err.reason, Reason::IssuerUnavailable);
}
