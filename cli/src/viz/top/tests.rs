use super::*;
use linkerd2_proxy_api::tap::{Eos, tap_event::http};

fn ev(source: &str, e: http::Event) -> TapEvent {
    TapEvent {
        source: Some(source.parse::<SocketAddr>().unwrap().into()),
        destination: Some("10.42.0.9:8080".parse::<SocketAddr>().unwrap().into()),
        event: Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })),
        ..Default::default()
    }
}

fn request(top: &mut Top, stream: u64, path: &str, status: u32, micros: i32, eos: Option<Eos>) {
    let id = Some(http::StreamId { base: 1, stream });
    // Clients come from new ports; the row is per address.
    let source = format!("10.42.0.5:{}", 40000 + stream);
    top.add(&ev(
        &source,
        http::Event::RequestInit(http::RequestInit {
            id,
            method: Some(linkerd2_proxy_api::http_types::HttpMethod {
                r#type: Some(
                    linkerd2_proxy_api::http_types::http_method::Type::Unregistered("GET".into()),
                ),
            }),
            path: path.into(),
            ..Default::default()
        }),
    ));
    top.add(&ev(
        &source,
        http::Event::ResponseInit(http::ResponseInit {
            id,
            http_status: status,
            since_request_init: Some(prost_types::Duration {
                seconds: 0,
                nanos: micros * 1000,
            }),
            ..Default::default()
        }),
    ));
    top.add(&ev(
        &source,
        http::Event::ResponseEnd(http::ResponseEnd {
            id,
            eos,
            ..Default::default()
        }),
    ));
}

#[test]
fn routes_are_counted_with_latency_and_success() {
    let mut top = Top::default();
    request(&mut top, 1, "/api/list?x=1", 200, 1500, None);
    request(&mut top, 2, "/api/list", 503, 500, None);
    request(&mut top, 3, "/api/list", 200, 2500, None);
    request(
        &mut top,
        4,
        "/api/vote",
        200,
        900,
        Some(Eos::from_grpc_status(14)),
    );
    // An end without its start (the tap opened mid-request) is skipped.
    top.add(&ev(
        "10.42.0.5:1",
        http::Event::ResponseEnd(http::ResponseEnd {
            id: Some(http::StreamId {
                base: 1,
                stream: 99,
            }),
            ..Default::default()
        }),
    ));
    let table = top.render(10);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("Source"), "{table}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "10.42.0.5",
            "10.42.0.9:8080",
            "GET",
            "/api/list",
            "3",
            "0.5ms",
            "2.5ms",
            "2.5ms",
            "66.67%"
        ],
        "{table}"
    );
    assert!(
        lines[2].contains("/api/vote") && lines[2].ends_with("0.00%"),
        "{table}"
    );
    assert_eq!(
        top.render(1).lines().count(),
        2,
        "--rows 1: the busiest only"
    );
}
