use crate::{
    Claims, LocalVerifier, PodInfo, PodLookup, Reason, TokenError, TokenKey, TokenVerifier,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::net::IpAddr;
use std::sync::Arc;
use strand_controller_core::IdentityName;

const ID: &str = "web.default.serviceaccount.identity.linkerd.cluster.local";

fn claims() -> Claims {
    Claims {
        namespace: "default".into(),
        pod: "web-1".into(),
        service_account: "web".into(),
        identity: ID.into(),
        ip: "10.42.0.7".parse().expect("ip"),
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

#[test]
fn a_minted_token_verifies_and_tampering_is_caught() {
    let key = TokenKey::generate();
    let token = key.mint(&claims());
    assert!(token.len() < 400, "{token}");
    assert_eq!(key.verify(&token), Ok(claims()));
    assert_eq!(
        key.verify(&format!("{token}\n")),
        Ok(claims()),
        "a trailing newline"
    );

    let other = TokenKey::generate();
    assert_eq!(other.verify(&token), Err(TokenError::BadSignature));

    // New claims under the old signature.
    let (_, tag) = token.split_once('.').expect("two parts");
    let forged = Claims {
        identity: "admin.kube-system.serviceaccount.identity.linkerd.cluster.local".into(),
        ..claims()
    };
    let body = B64.encode(serde_json::to_vec(&forged).expect("json"));
    assert_eq!(
        key.verify(&format!("{body}.{tag}")),
        Err(TokenError::BadSignature)
    );
    // A flipped bit in the signature.
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).expect("ascii");
    assert!(key.verify(&flipped).is_err());

    for bad in ["", "abc", "a.b.c", "!!!.???", &"x".repeat(5000)] {
        assert!(
            matches!(
                key.verify(bad),
                Err(TokenError::Malformed(_) | TokenError::BadSignature)
            ),
            "{bad:.20}"
        );
    }
    assert!(format!("{key:?}").contains(".."), "no secret in Debug");
}

#[test]
fn token_keys_load_from_their_bytes() {
    let key = TokenKey::generate();
    let again = TokenKey::from_bytes(key.secret_bytes()).expect("32 bytes");
    assert_eq!(again.verify(&key.mint(&claims())), Ok(claims()));
    assert_eq!(
        TokenKey::from_bytes(&[0; 16]).err(),
        Some(TokenError::KeyLength(16))
    );
}

#[test]
fn the_local_verifier_checks_signature_peer_and_pod() {
    let key = TokenKey::generate();
    let token = key.mint(&claims());

    let standalone = LocalVerifier::new(key.clone());
    assert_eq!(
        standalone.verify(token.as_bytes(), ip("10.42.0.7")),
        Ok(IdentityName::new(ID))
    );
    assert_eq!(
        standalone.verify(token.as_bytes(), ip("::ffff:10.42.0.7")),
        Ok(IdentityName::new(ID)),
        "a v4-mapped peer is the same peer"
    );

    let err = standalone
        .verify(token.as_bytes(), ip("10.42.0.8"))
        .expect_err("stolen");
    assert_eq!(err.reason, Reason::TokenPeerMismatch);
    assert!(
        err.message.contains("10.42.0.7") && err.message.contains("10.42.0.8"),
        "names both addresses: {err}"
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::PermissionDenied
    );
    let err = standalone
        .verify(token.as_bytes(), None)
        .expect_err("no peer");
    assert_eq!(err.reason, Reason::TokenPeerMismatch);

    let err = standalone
        .verify(
            TokenKey::generate().mint(&claims()).as_bytes(),
            ip("10.42.0.7"),
        )
        .expect_err("another key");
    assert_eq!(err.reason, Reason::InvalidToken);
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::Unauthenticated
    );
    let err = standalone.verify(b"", ip("10.42.0.7")).expect_err("none");
    assert_eq!(err.reason, Reason::InvalidToken);
    assert!(err.message.contains("no token"), "{err}");
    let err = standalone
        .verify(&[0xff, 0xfe], ip("10.42.0.7"))
        .expect_err("binary");
    assert_eq!(err.reason, Reason::InvalidToken);

    // With the pods in view.
    let pods: Arc<std::sync::Mutex<Option<PodInfo>>> = Arc::default();
    let lookup = {
        let pods = pods.clone();
        move |ns: &str, name: &str| {
            assert_eq!((ns, name), ("default", "web-1"));
            pods.lock().expect("lock").clone()
        }
    };
    let lookup: Arc<dyn PodLookup> = Arc::new(lookup);
    let verifier = LocalVerifier::with_pods(key, lookup);
    let set = |info: Option<PodInfo>| *pods.lock().expect("lock") = info;

    let err = verifier
        .verify(token.as_bytes(), ip("10.42.0.7"))
        .expect_err("gone");
    assert_eq!(err.reason, Reason::UnknownPod);
    assert!(err.message.contains("default/web-1"), "{err}");

    set(Some(PodInfo {
        ip: ip("10.42.0.9"),
        identity: IdentityName::new(ID),
    }));
    let err = verifier
        .verify(token.as_bytes(), ip("10.42.0.7"))
        .expect_err("moved");
    assert_eq!(err.reason, Reason::UnknownPod);
    assert!(err.message.contains("10.42.0.9"), "{err}");

    set(Some(PodInfo {
        ip: ip("10.42.0.7"),
        identity: IdentityName::new("other.default.serviceaccount.identity.linkerd.cluster.local"),
    }));
    let err = verifier
        .verify(token.as_bytes(), ip("10.42.0.7"))
        .expect_err("identity changed");
    assert_eq!(err.reason, Reason::IdentityMismatch);

    set(Some(PodInfo {
        ip: ip("10.42.0.7"),
        identity: IdentityName::new(ID),
    }));
    assert_eq!(
        verifier.verify(token.as_bytes(), ip("10.42.0.7")),
        Ok(IdentityName::new(ID))
    );
}
