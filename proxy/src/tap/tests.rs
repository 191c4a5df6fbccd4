use std::collections::BTreeMap;
use std::sync::Arc;

use linkerd2_proxy_api::http_types;
use linkerd2_proxy_api::net::{IpAddress, TcpAddress};
use linkerd2_proxy_api::tap::observe_request::{Match, r#match as m};
use linkerd2_proxy_api::tap::{Eos, eos, tap_event};

use super::*;
use crate::metrics::{DstLabels, NoTlsReason, PeerId};

fn http(h: m::http::Match) -> Match {
    Match {
        r#match: Some(m::Match::Http(m::Http { r#match: Some(h) })),
    }
}

fn path_prefix(p: &str) -> Match {
    http(m::http::Match::Path(m::http::StringMatch {
        r#match: Some(m::http::string_match::Match::Prefix(p.to_string())),
    }))
}

fn method(name: &str) -> Match {
    http(m::http::Match::Method(http_types::HttpMethod {
        r#type: Some(http_types::http_method::Type::Unregistered(
            name.to_string(),
        )),
    }))
}

fn netmask(side: fn(m::Tcp) -> m::Match, ip: &str, mask: u32) -> Match {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    Match {
        r#match: Some(side(m::Tcp {
            r#match: Some(m::tcp::Match::Netmask(m::tcp::Netmask {
                ip: Some(IpAddress::from(ip)),
                mask,
            })),
        })),
    }
}

fn ports(min: u32, max: u32) -> Match {
    Match {
        r#match: Some(m::Match::Destination(m::Tcp {
            r#match: Some(m::tcp::Match::Ports(m::tcp::PortRange { min, max })),
        })),
    }
}

fn not(inner: Match) -> Match {
    Match {
        r#match: Some(m::Match::Not(Box::new(inner))),
    }
}

fn all(ms: Vec<Match>) -> Match {
    Match {
        r#match: Some(m::Match::All(m::Seq { matches: ms })),
    }
}

fn any(ms: Vec<Match>) -> Match {
    Match {
        r#match: Some(m::Match::Any(m::Seq { matches: ms })),
    }
}

fn view<'a>(
    method: &'a http::Method,
    path: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
) -> RequestView<'a> {
    RequestView {
        source: "10.0.0.7:40000".parse().unwrap(),
        destination: "10.0.1.9:8080".parse().unwrap(),
        scheme: "http",
        method,
        authority: Some("web.default.svc.cluster.local:8080"),
        path,
        labels,
    }
}

fn matches(m: &Match, path: &str) -> bool {
    let get = http::Method::GET;
    Matcher::compile(Some(m))
        .unwrap()
        .matches(&view(&get, path, None))
}

#[test]
fn matches_compose() {
    let get = http::Method::GET;
    assert!(
        Matcher::compile(None)
            .unwrap()
            .matches(&view(&get, "/", None))
    );
    assert!(matches(&path_prefix("/api"), "/api/vote"));
    assert!(!matches(&path_prefix("/api"), "/index.html"));
    assert!(matches(&method("GET"), "/"));
    assert!(!matches(&method("POST"), "/"));
    assert!(matches(&netmask(m::Match::Source, "10.0.0.0", 24), "/"));
    assert!(!matches(&netmask(m::Match::Source, "10.0.1.0", 24), "/"));
    assert!(matches(
        &netmask(m::Match::Destination, "10.0.1.9", 32),
        "/"
    ));
    assert!(matches(&netmask(m::Match::Destination, "0.0.0.0", 0), "/"));
    assert!(!matches(&netmask(m::Match::Destination, "::", 0), "/"));
    assert!(matches(&ports(8000, 8080), "/"));
    assert!(matches(&ports(8080, 0), "/"), "one end given: that port");
    assert!(!matches(&ports(9090, 9091), "/"));
    assert!(matches(&not(method("POST")), "/"));
    assert!(matches(
        &all(vec![method("GET"), path_prefix("/api")]),
        "/api/x"
    ));
    assert!(!matches(
        &all(vec![method("GET"), path_prefix("/api")]),
        "/x"
    ));
    assert!(matches(&any(vec![method("POST"), path_prefix("/x")]), "/x"));
    assert!(!matches(&any(vec![]), "/x"), "an empty any matches nothing");
    assert!(
        matches(&all(vec![]), "/x"),
        "an empty all matches everything"
    );

    let label = Match {
        r#match: Some(m::Match::DestinationLabel(m::Label {
            key: "deployment".into(),
            value: "voting".into(),
        })),
    };
    let compiled = Matcher::compile(Some(&label)).unwrap();
    let labels = BTreeMap::from([("deployment".to_string(), "voting".to_string())]);
    assert!(compiled.matches(&view(&get, "/", Some(&labels))));
    assert!(!compiled.matches(&view(&get, "/", None)));
}

#[test]
fn bad_matches_are_refused_with_a_reason() {
    let err = |m: Match| Matcher::compile(Some(&m)).unwrap_err();
    assert!(err(Match { r#match: None }).contains("nothing"));
    assert!(err(netmask(m::Match::Source, "10.0.0.0", 33)).contains("/33"));
    assert!(err(ports(9000, 8000)).contains("9000 down to 8000"));
    assert!(err(ports(70000, 70001)).contains("out of range"));
    assert!(err(ports(0, 0)).contains("no ports"));
    assert!(err(method("GE T")).contains("not an HTTP method"));
    let mut deep = method("GET");
    for _ in 0..40 {
        deep = not(deep);
    }
    assert!(err(deep).contains("deeper"));
    let wide = any((0..300).map(|_| method("GET")).collect());
    assert!(err(wide).contains("parts"));
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("http://web:8080{path}"))
        .header("x-marker", "tapped")
        .body(())
        .unwrap()
}

fn conn(tls: &Tls) -> ConnMeta<'_> {
    ConnMeta {
        direction: Direction::Inbound,
        source: "[::ffff:10.0.0.7]:40000".parse().unwrap(),
        destination: "10.0.1.9:8080".parse().unwrap(),
        tls: Some(tls),
        labels: None,
    }
}

fn target(tls: Tls) -> TargetLabels {
    TargetLabels {
        direction: Direction::Inbound,
        authority: None,
        target_addr: Arc::from("10.0.1.9:8080"),
        tls,
        dst: DstLabels::default(),
    }
}

fn http_event(ev: &api::TapEvent) -> &tap_event::http::Event {
    match ev.event.as_ref().unwrap() {
        tap_event::Event::Http(h) => h.event.as_ref().unwrap(),
    }
}

#[tokio::test]
async fn a_tap_sees_each_request_it_matches_until_its_limit() {
    let taps = Arc::new(Taps::default());
    assert!(!taps.is_active());
    let (reg, mut rx) = taps.register(
        Matcher::compile(Some(&path_prefix("/api"))).unwrap(),
        true,
        2,
    );
    assert!(taps.is_active());
    let tls = Tls::Established(PeerId::Client(Some(Arc::from(
        "web.default.serviceaccount",
    ))));

    assert!(taps.tap(&request("/index.html"), &conn(&tls)).is_none());
    let mut first = taps.tap(&request("/api/vote?x=1"), &conn(&tls)).unwrap();
    let second = taps.tap(&request("/api/list"), &conn(&tls)).unwrap();
    // The limit is reached: the tap leaves, and requests pay nothing again.
    assert!(!taps.is_active());
    assert!(taps.tap(&request("/api/more"), &conn(&tls)).is_none());

    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    first.response_init(
        http::StatusCode::OK,
        &HeaderMap::new(),
        &target(tls.clone()),
    );
    first.data(5);
    first.data(7);
    first.trailers(&trailers);
    first.response_end(None);
    second.response_end(Some(h2::Reason::CANCEL));

    let mut events = Vec::new();
    while let Some(ev) = rx.recv().await {
        events.push(ev.unwrap());
    }
    // The stream ended once both requests were done.
    assert_eq!(events.len(), 5);
    let e = &events[0];
    assert_eq!(
        e.source,
        Some(TcpAddress::from(
            "10.0.0.7:40000".parse::<std::net::SocketAddr>().unwrap()
        ))
    );
    assert_eq!(
        e.proxy_direction,
        i32::from(tap_event::ProxyDirection::Inbound)
    );
    let source_labels = &e.source_meta.as_ref().unwrap().labels;
    assert_eq!(source_labels["tls"], "true");
    assert_eq!(source_labels["client_id"], "web.default.serviceaccount");
    let tap_event::http::Event::RequestInit(init) = http_event(e) else {
        panic!("{e:?}")
    };
    assert_eq!(init.path, "/api/vote?x=1");
    assert_eq!(init.authority, "web:8080");
    let headers = init.headers.as_ref().unwrap();
    assert!(
        headers
            .headers
            .iter()
            .any(|h| h.name == "x-marker" && h.value == b"tapped")
    );
    let id = init.id;
    let stream_ids: Vec<_> = events
        .iter()
        .map(|e| match http_event(e) {
            tap_event::http::Event::RequestInit(x) => x.id,
            tap_event::http::Event::ResponseInit(x) => x.id,
            tap_event::http::Event::ResponseEnd(x) => x.id,
        })
        .collect();
    assert_eq!(stream_ids.iter().filter(|s| **s == id).count(), 3);
    let end = events
        .iter()
        .find_map(|e| match http_event(e) {
            tap_event::http::Event::ResponseEnd(x) if x.id == id => Some(x),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.response_bytes, 12);
    assert_eq!(
        end.eos,
        Some(Eos {
            end: Some(eos::End::GrpcStatusCode(14))
        })
    );
    assert!(end.trailers.is_some());
    let reset = events
        .iter()
        .find_map(|e| match http_event(e) {
            tap_event::http::Event::ResponseEnd(x) if x.id != id => Some(x),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reset.eos,
        Some(Eos {
            end: Some(eos::End::ResetErrorCode(u32::from(h2::Reason::CANCEL)))
        })
    );
    drop(reg);
}

#[tokio::test]
async fn closing_a_tap_removes_it_and_a_slow_reader_loses_events_not_requests() {
    let taps = Arc::new(Taps::default());
    let tls = Tls::NoIdentity(NoTlsReason::NoTlsFromRemote);
    let (reg, rx) = taps.register(Matcher::Everything, false, u32::MAX);
    // Nobody reads: the queue fills and further events are dropped.
    for _ in 0..(EVENT_QUEUE + 10) {
        let t = taps.tap(&request("/"), &conn(&tls)).unwrap();
        drop(t);
    }
    assert_eq!(taps.dropped(), 10);
    drop(reg);
    assert!(!taps.is_active());
    assert!(taps.tap(&request("/"), &conn(&tls)).is_none());
    drop(rx);

    // A client that went away without its registration being dropped yet:
    // the next request notices the closed queue.
    let (_reg, rx) = taps.register(Matcher::Everything, false, 10);
    drop(rx);
    assert!(taps.tap(&request("/"), &conn(&tls)).is_none());
    assert!(!taps.is_active());
}
