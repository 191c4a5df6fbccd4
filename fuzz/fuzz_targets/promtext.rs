//! The metrics API's exposition parser and store on arbitrary bytes: never
//! a panic, and the line cache reads what a full parse reads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use strand_viz::{Store, TargetKey};

fuzz_target!(|data: &[u8]| {
    let _ = strand_viz::promtext::parse(data, 1 << 20);
    let store = Store::new(Duration::from_secs(60));
    let key = TargetKey {
        namespace: "ns".into(),
        pod: "pod".into(),
    };
    let labels = BTreeMap::new();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    // The second ingest goes through the line cache the first one filled.
    let first = store.ingest(&key, &labels, at, data).is_ok();
    let second = store
        .ingest(&key, &labels, at + Duration::from_secs(10), data)
        .is_ok();
    assert_eq!(first, second, "the cache changed the verdict");
});
