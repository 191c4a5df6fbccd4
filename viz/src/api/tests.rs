use super::*;

#[test]
fn queries_decode() {
    let q = parse_query("resource=deploy%2Fweb&namespace=emojivoto&window=30&x=%zz&y=a+b&z=%4");
    assert_eq!(q["resource"], "deploy/web");
    assert_eq!(q["namespace"], "emojivoto");
    assert_eq!(q["x"], "%zz");
    assert_eq!(q["y"], "a b");
    assert_eq!(q["z"], "%4");
    let r = stat_request(&q).expect("valid");
    assert_eq!(r.window, Duration::from_secs(30));
    assert_eq!(r.resource.name.as_deref(), Some("web"));
}

#[test]
fn bad_requests_are_explained() {
    let q = parse_query("resource=pods/x/y");
    assert!(stat_request(&q).unwrap_err().contains("unknown resource"));
    let q = parse_query("resource=deploy&window=0");
    assert!(stat_request(&q).unwrap_err().contains("out of range"));
    let q = parse_query("resource=deploy&window=abc");
    assert!(stat_request(&q).unwrap_err().contains("not a number"));
    let q = parse_query("resource=svc");
    assert!(edges_request(&q).unwrap_err().contains("deployments"));
}

#[test]
fn traces_limits() {
    assert_eq!(traces_limit(&parse_query("")), Ok(DEFAULT_TRACES_LIMIT));
    assert_eq!(traces_limit(&parse_query("limit=1000")), Ok(1000));
    for bad in ["limit=0", "limit=1001", "limit=-1", "limit=ten", "limit="] {
        let err = traces_limit(&parse_query(bad)).unwrap_err();
        assert!(err.contains("from 1 to 1000"), "{bad}: {err}");
    }
}

#[test]
fn routes_parameters() {
    let q = parse_query(
        "resource=deploy%2Fweb&namespace=emojivoto&to=svc%2Femoji-svc&to_namespace=other&window=30",
    );
    let r = routes_request(&q).expect("valid");
    assert_eq!(r.resource.to_string(), "deploy/web");
    assert_eq!(r.namespace.as_deref(), Some("emojivoto"));
    assert_eq!(
        r.to.map(|t| t.to_string()).as_deref(),
        Some("svc/emoji-svc")
    );
    assert_eq!(r.to_namespace.as_deref(), Some("other"));
    assert_eq!(r.window, Duration::from_secs(30));

    let r = routes_request(&parse_query("resource=svc%2Fweb-svc&to=")).expect("valid");
    assert!(r.to.is_none() && r.namespace.is_none());
    assert_eq!(r.window, Duration::from_secs(60));

    let err = |q: &str| routes_request(&parse_query(q)).unwrap_err();
    assert!(err("").contains("missing `resource`"));
    assert!(err("resource=deploy").contains("name the resource"));
    assert!(err("resource=deploy%2Fweb&to=gadget%2Fx").starts_with("to: unknown"));
    assert!(err("resource=deploy%2Fweb&to=deploy%2Femoji").contains("takes a Service"));
}
