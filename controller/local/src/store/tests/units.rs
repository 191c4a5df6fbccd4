//! Pure pieces: log framing, address pools, the lock's /proc parsing, time.

use crate::store::ipam::{IpPool, IpProblem};
use crate::store::lock::{Owner, parse_stat, start_time};
use crate::store::state;
use crate::store::wal::{Frame, MAX_RECORD, Stop, crc32, encode, scan};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use strand_controller_core::{Kind, ResourceKey};

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn scan_stops_at_the_first_bad_record() {
    let a = encode(b"{\"a\":1}");
    let b = encode(b"{\"b\":2}");
    let mut log = [a.clone(), b.clone()].concat();
    let (frames, stop) = scan(&log);
    assert_eq!(
        frames,
        [
            Frame {
                offset: 0,
                payload: b"{\"a\":1}"
            },
            Frame {
                offset: a.len() as u64,
                payload: b"{\"b\":2}"
            },
        ]
    );
    assert_eq!(stop, None);

    type Case = (Vec<u8>, usize, Option<(u64, Stop)>);
    let cases: Vec<Case> = vec![
        (Vec::new(), 0, None),
        (log[..3].to_vec(), 0, Some((0, Stop::Torn))),
        (
            log[..a.len() + 10].to_vec(),
            1,
            Some((a.len() as u64, Stop::Torn)),
        ),
        (
            [
                a.clone(),
                ((MAX_RECORD + 1) as u32).to_le_bytes().to_vec(),
                vec![0; 4],
            ]
            .concat(),
            1,
            Some((a.len() as u64, Stop::TooLong(MAX_RECORD + 1))),
        ),
    ];
    for (bytes, n, want) in cases {
        let (frames, stop) = scan(&bytes);
        assert_eq!((frames.len(), stop), (n, want));
    }
    // A flipped payload bit in the first record hides the second one too.
    log[9] ^= 1;
    let (frames, stop) = scan(&log);
    assert!(frames.is_empty());
    assert_eq!(stop, Some((0, Stop::BadChecksum)));
}

fn key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::Service, "default", name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn allocates_next_fit_and_checks_requests() {
    let mut pool = IpPool::new("10.0.0.0/29".parse().expect("cidr"), "service CIDR");
    let none = HashSet::new();
    let mut cursor = pool.cursor();
    let a = pool.allocate(&mut cursor, &none).expect("free");
    assert_eq!(a, ip("10.0.0.2"));
    pool.reserve(a, &key("a"));
    pool.reserve(ip("10.0.0.4"), &key("b"));
    let mut cursor = pool.cursor();
    assert_eq!(pool.allocate(&mut cursor, &none), Ok(ip("10.0.0.5")));
    pool.release(a, &key("a"));
    for n in ["c", "d"] {
        let mut cursor = pool.cursor();
        let got = pool.allocate(&mut cursor, &none).expect("free");
        pool.reserve(got, &key(n));
    }
    // .5 and .6 went first; the freed .2 comes back only after wrapping.
    let mut cursor = pool.cursor();
    assert_eq!(pool.allocate(&mut cursor, &none), Ok(ip("10.0.0.2")));

    let batch = HashMap::from([(ip("10.0.0.3"), 2)]);
    let check = |s: &str| pool.check(ip(s), &key("x"), &batch);
    assert!(matches!(check("10.0.0.9"), Err(IpProblem::Invalid(m)) if m.contains("not inside")));
    assert!(matches!(check("10.0.0.1"), Err(IpProblem::Invalid(m)) if m.contains("reserved")));
    assert!(matches!(check("10.0.0.7"), Err(IpProblem::Invalid(m)) if m.contains("reserved")));
    assert!(matches!(check("10.0.0.3"), Err(IpProblem::Invalid(m)) if m.contains("document 2")));
    assert!(
        matches!(check("10.0.0.4"), Err(IpProblem::Taken(m)) if m.contains("Service default/b"))
    );
    assert_eq!(pool.check(ip("10.0.0.4"), &key("b"), &batch), Ok(()));
    assert_eq!(check("10.0.0.2"), Ok(()));
}

#[test]
fn reports_a_full_range() {
    let mut pool = IpPool::new("10.0.0.0/30".parse().expect("cidr"), "pod CIDR");
    pool.reserve(ip("10.0.0.2"), &key("a"));
    let mut cursor = pool.cursor();
    let err = pool.allocate(&mut cursor, &HashSet::new());
    assert!(matches!(err, Err(IpProblem::Taken(m)) if m.contains("no free address")));
}

#[test]
fn parses_stat_with_odd_command_names() {
    let stat = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
    assert_eq!(parse_stat(stat), Some(('S', 777)));
    assert!(start_time("self").is_some());
}

#[test]
fn own_process_is_alive_and_a_reused_pid_is_not() {
    let me = Owner {
        pid: std::process::id(),
        start_time: start_time("self").expect("readable"),
    };
    assert!(me.is_alive());
    let reused = Owner {
        start_time: me.start_time + 1,
        ..me
    };
    assert!(!reused.is_alive());
    assert!(
        !Owner {
            pid: u32::MAX,
            start_time: 0
        }
        .is_alive()
    );
}

#[test]
fn formats_rfc3339() {
    use std::time::{Duration, UNIX_EPOCH};
    let at = |s: u64| state::rfc3339(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
}
