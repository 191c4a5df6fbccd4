use std::time::{Duration, SystemTime};

use super::certify::refresh_in;

#[test]
fn renews_at_seventy_percent_within_bounds() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert_eq!(
        refresh_in(now + Duration::from_secs(100), now),
        Duration::from_secs(70)
    );
    assert_eq!(
        refresh_in(now + Duration::from_secs(60), now),
        Duration::from_secs(42)
    );
    // Already expired or about to: soon, but not in a busy loop.
    assert_eq!(refresh_in(now, now), Duration::from_secs(1));
    assert_eq!(
        refresh_in(now + Duration::from_secs(365 * 86400), now),
        Duration::from_secs(86400)
    );
}

#[test]
fn csr_names_the_local_identity() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = super::certify::csr(
        "web.default.serviceaccount.identity.linkerd.cluster.local",
        &key,
    )
    .unwrap();
    // A DER SEQUENCE carrying the name as a dNSName.
    assert_eq!(der[0], 0x30);
    let needle = b"web.default.serviceaccount.identity.linkerd.cluster.local";
    assert!(der.windows(needle.len()).any(|w| w == needle));
}
