//! Protocol detection over arbitrary bytes: classification must never
//! panic, and a decision must be stable once made (more bytes never turn an
//! opaque connection into HTTP, or the reverse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand_proxy::detect::{Detection, classify};

fuzz_target!(|data: &[u8]| {
    let mut decided = None;
    for n in 0..=data.len().min(512) {
        match classify(&data[..n]) {
            Detection::NeedMore => assert!(decided.is_none(), "undecided after deciding at {n}"),
            Detection::Done(p) => {
                if let Some(prev) = &decided {
                    // TLS may learn its SNI later; anything else is fixed.
                    let both_tls = matches!((prev, &p), (strand_proxy::detect::Protocol::Tls { .. }, strand_proxy::detect::Protocol::Tls { .. }));
                    assert!(both_tls || *prev == p, "decision changed at {n}");
                } else {
                    decided = Some(p);
                }
            }
        }
    }
});
