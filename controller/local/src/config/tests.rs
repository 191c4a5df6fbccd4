use super::*;

#[test]
fn parses_and_bounds() {
    let c: Cidr = "10.96.0.0/16".parse().expect("valid");
    assert_eq!(c, DEFAULT_SERVICE_CIDR);
    assert_eq!(c.gateway().to_string(), "10.96.0.1");
    assert_eq!(c.allocatable(), (2, 65_534));
    assert_eq!(c.at(2).to_string(), "10.96.0.2");
    assert_eq!(c.at(65_534).to_string(), "10.96.255.254");
    assert!(c.contains("10.96.3.4".parse().expect("ip")));
    assert!(!c.contains("10.97.0.1".parse().expect("ip")));
    assert!(!c.contains("::1".parse().expect("ip")));
    let v6: Cidr = "fd00:10:96::/112".parse().expect("valid");
    assert_eq!(v6.allocatable(), (2, 65_535));
    assert_eq!(v6.at(2).to_string(), "fd00:10:96::2");
    assert!(c.overlaps(&"10.0.0.0/8".parse().expect("valid")));
    assert!(!c.overlaps(&DEFAULT_POD_CIDR));
}

#[test]
fn rejects_bad_cidrs() {
    for (s, why) in [
        ("10.96.0.0", "missing /prefix"),
        ("10.96.0.1/16", "did you mean 10.96.0.0/16"),
        ("10.96.0.0/31", "at most /30"),
        ("10.96.0.0/33", "out of range"),
        ("ten/8", "not an IP"),
    ] {
        let e = s.parse::<Cidr>().expect_err(s).to_string();
        assert!(e.contains(why), "{s}: {e}");
    }
}
