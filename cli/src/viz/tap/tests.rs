use super::*;
use clap::Parser;
use linkerd2_proxy_api::tap::Eos;
use std::collections::HashMap;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TapArgs,
}

fn args(argv: &[&str]) -> Result<TapArgs, clap::Error> {
    let mut full = vec!["tap"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full).map(|c| c.args)
}

#[test]
fn flags_become_one_match_of_all_of_them() {
    let a = args(&[
        "deploy/web",
        "--path",
        "/api",
        "--method",
        "get",
        "--max-requests",
        "3",
    ])
    .unwrap();
    let req = observe_request(&a.filter, a.output == "json").unwrap();
    assert_eq!(req.limit, 3);
    assert!(req.extract.is_none(), "headers only for json");
    let Some(m::Match::All(seq)) = req.r#match.and_then(|m| m.r#match) else {
        panic!("expected all")
    };
    assert_eq!(seq.matches.len(), 2);

    let a = args(&["po/web-0", "-o", "json"]).unwrap();
    let req = observe_request(&a.filter, a.output == "json").unwrap();
    assert_eq!(req.limit, u32::MAX);
    assert!(req.r#match.is_none(), "no flag: every request");
    assert!(req.extract.is_some());
}

#[test]
fn bad_flags_are_refused_clearly() {
    let refused = |argv: &[&str]| {
        observe_request(&args(argv).unwrap().filter, false)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(&["deploy/web", "--path", "api"]).contains("must start with /"));
    assert!(refused(&["deploy/web", "--method", "G T"]).contains("not an HTTP method"));
    assert!(refused(&["deploy/web", "--scheme", "ftp"]).contains("http or https"));
    assert!(args(&["deploy/web", "--max-requests", "0"]).is_err());
    assert!(args(&["deploy/web", "-o", "yaml"]).is_err());
    assert!(args(&["rocket/web"]).is_err());
}

fn event(outbound: bool, ev: tap_event::http::Event) -> TapEvent {
    let labels = HashMap::from([("tls".to_string(), "true".to_string())]);
    let meta = Some(tap_event::EndpointMeta { labels });
    TapEvent {
        source: Some("10.20.0.5:41000".parse::<SocketAddr>().unwrap().into()),
        source_meta: if outbound { None } else { meta.clone() },
        route_meta: None,
        destination: Some("10.20.0.7:8080".parse::<SocketAddr>().unwrap().into()),
        destination_meta: if outbound { meta } else { None },
        proxy_direction: i32::from(if outbound {
            tap_event::ProxyDirection::Outbound
        } else {
            tap_event::ProxyDirection::Inbound
        }),
        event: Some(tap_event::Event::Http(tap_event::Http { event: Some(ev) })),
    }
}

const ID: tap_event::http::StreamId = tap_event::http::StreamId { base: 7, stream: 1 };

#[test]
fn events_print_as_linkerds_tap_lines() {
    use tap_event::http::{Event, RequestInit, ResponseEnd, ResponseInit};
    let req = event(
        false,
        Event::RequestInit(RequestInit {
            id: Some(ID),
            method: Some(http_types::HttpMethod {
                r#type: Some(http_types::http_method::Type::Registered(
                    http_types::http_method::Registered::Get.into(),
                )),
            }),
            scheme: Some("http".into()),
            authority: "web-svc:80".into(),
            path: "/api/list".into(),
            headers: None,
        }),
    );
    assert_eq!(
        render_line(&req).unwrap(),
        "req id=7:1 proxy=in  src=10.20.0.5:41000 dst=10.20.0.7:8080 tls=true :method=GET :authority=web-svc:80 :path=/api/list"
    );
    let rsp = event(
        true,
        Event::ResponseInit(ResponseInit {
            id: Some(ID),
            since_request_init: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_525_000,
            }),
            http_status: 200,
            headers: None,
        }),
    );
    assert_eq!(
        render_line(&rsp).unwrap(),
        "rsp id=7:1 proxy=out src=10.20.0.5:41000 dst=10.20.0.7:8080 tls=true :status=200 latency=1525µs"
    );
    let end = event(
        true,
        Event::ResponseEnd(ResponseEnd {
            id: Some(ID),
            since_request_init: None,
            since_response_init: Some(prost_types::Duration {
                seconds: 1,
                nanos: 67_000,
            }),
            response_bytes: 4640,
            eos: Some(Eos::from_grpc_status(14)),
            trailers: None,
        }),
    );
    assert_eq!(
        render_line(&end).unwrap(),
        "end id=7:1 proxy=out src=10.20.0.5:41000 dst=10.20.0.7:8080 tls=true grpc-status=Unavailable duration=1000067µs response-length=4640B"
    );
    assert!(is_end(&end) && !is_end(&req));
    let doc = render_json(&end);
    assert_eq!(doc["type"], "responseEnd");
    assert_eq!(doc["grpcStatus"], 14);
    assert_eq!(doc["proxyDirection"], "outbound");
    assert_eq!(doc["destinationMeta"]["tls"], "true");
}
