use std::time::Duration;

use linkerd2_proxy_api::destination::{
    self as api, DestinationProfile, HttpStatusRange, PathMatch, RequestMatch as PbReq,
    ResponseClass as PbClass, ResponseMatch as PbRsp, RetryBudget as PbBudget, WeightedDst,
    request_match::{Match as Req, Seq as ReqSeq},
    response_match::Match as Rsp,
};
use linkerd2_proxy_api::http_types::{HttpMethod, http_method};

use super::*;

fn path(re: &str) -> PbReq {
    PbReq {
        r#match: Some(Req::Path(PathMatch { regex: re.into() })),
    }
}

fn method(m: http_method::Registered) -> PbReq {
    PbReq {
        r#match: Some(Req::Method(HttpMethod {
            r#type: Some(http_method::Type::Registered(m as i32)),
        })),
    }
}

fn status(min: u32, max: u32) -> PbRsp {
    PbRsp {
        r#match: Some(Rsp::Status(HttpStatusRange { min, max })),
    }
}

fn pb_route(name: &str, condition: PbReq) -> api::Route {
    api::Route {
        condition: Some(condition),
        metrics_labels: [("route".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn routes_match_in_order_on_method_and_whole_path() {
    let get_author = pb_route(
        "GET /authors/{id}",
        PbReq {
            r#match: Some(Req::All(ReqSeq {
                matches: vec![method(http_method::Registered::Get), path(r"/authors/\d+")],
            })),
        },
    );
    let any_books = pb_route(
        "books",
        PbReq {
            r#match: Some(Req::Any(ReqSeq {
                matches: vec![path("/books"), path("/books/.*")],
            })),
        },
    );
    let not_post = pb_route(
        "not POST",
        PbReq {
            r#match: Some(Req::Not(Box::new(method(http_method::Registered::Post)))),
        },
    );
    let profile = Profile::from_proto(&DestinationProfile {
        routes: vec![get_author, any_books, not_post],
        ..Default::default()
    });
    let name = |m: http::Method, p: &str| profile.route_for(&m, p).map(|r| r.name.to_string());
    assert_eq!(
        name(http::Method::GET, "/authors/12").as_deref(),
        Some("GET /authors/{id}")
    );
    // Anchored: a prefix or a suffix is not a match.
    assert_eq!(
        name(http::Method::GET, "/authors/12/books").as_deref(),
        Some("not POST")
    );
    assert_eq!(name(http::Method::POST, "/x/authors/12"), None);
    // ASCII digits only, as in RE2.
    assert_eq!(name(http::Method::POST, "/authors/١٢"), None);
    assert_eq!(name(http::Method::POST, "/books").as_deref(), Some("books"));
    assert_eq!(
        name(http::Method::POST, "/books/7").as_deref(),
        Some("books")
    );
    assert!(profile.is_active());
    assert_eq!(profile.retry_budget, RetryBudget::default());
}

#[test]
fn responses_are_classified_by_the_first_matching_class_else_5xx() {
    let mut route = pb_route("r", path("/"));
    route.response_classes = vec![
        PbClass {
            condition: Some(status(503, 0)),
            is_failure: false,
        },
        PbClass {
            condition: Some(PbRsp {
                r#match: Some(Rsp::Any(api::response_match::Seq {
                    matches: vec![status(400, 499), status(500, 599)],
                })),
            }),
            is_failure: true,
        },
        PbClass {
            condition: Some(PbRsp {
                r#match: Some(Rsp::Not(Box::new(status(100, 399)))),
            }),
            is_failure: true,
        },
    ];
    let profile = Profile::from_proto(&DestinationProfile {
        routes: vec![route],
        ..Default::default()
    });
    let r = &profile.routes[0];
    assert!(!r.is_failure(503), "the first class wins");
    assert!(r.is_failure(404));
    assert!(r.is_failure(500));
    assert!(!r.is_failure(200));
    assert!(r.is_failure(600), "not 100-399");

    let plain = Profile::from_proto(&DestinationProfile {
        routes: vec![pb_route("plain", path("/"))],
        ..Default::default()
    });
    assert!(plain.routes[0].is_failure(502), "no class: 5xx fails");
    assert!(!plain.routes[0].is_failure(404));
}

#[test]
fn budget_timeouts_and_overrides_are_read_and_bad_routes_left_out() {
    let mut slow = pb_route("slow", path("/slow"));
    slow.is_retryable = true;
    slow.timeout = Some(prost_types::Duration {
        seconds: 0,
        nanos: 300_000_000,
    });
    let bad_regex = pb_route("bad", path("(unclosed"));
    let no_condition = api::Route::default();
    let p = DestinationProfile {
        routes: vec![bad_regex, slow, no_condition],
        retry_budget: Some(PbBudget {
            retry_ratio: 0.5,
            min_retries_per_second: 3,
            ttl: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }),
        dst_overrides: vec![
            WeightedDst {
                authority: "web-v2.ns.svc.cluster.local:80".into(),
                weight: 500,
                ..Default::default()
            },
            WeightedDst {
                authority: "zero.ns.svc.cluster.local:80".into(),
                weight: 0,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let profile = Profile::from_proto(&p);
    assert_eq!(profile.routes.len(), 1);
    let slow = &profile.routes[0];
    assert_eq!(&*slow.name, "slow");
    assert!(slow.retryable);
    assert_eq!(slow.timeout, Some(Duration::from_millis(300)));
    assert_eq!(
        profile.retry_budget,
        RetryBudget {
            ratio: 0.5,
            min_per_second: 3,
            ttl: Duration::from_secs(60),
        },
        "ttl clamped to a minute"
    );
    assert_eq!(
        profile.dst_overrides,
        vec![DstOverride {
            authority: "web-v2.ns.svc.cluster.local:80".into(),
            weight: 500,
        }]
    );
    assert_eq!(profile, Profile::from_proto(&p), "equal by regex source");
    assert!(!Profile::default().is_active());
}

#[test]
fn hostile_conditions_are_refused_not_followed() {
    // A regex whose DFA would be huge.
    let huge = pb_route("huge", path("(a|b)*a(a|b){40}"));
    let mut deep = path("/");
    for _ in 0..100 {
        deep = PbReq {
            r#match: Some(Req::Not(Box::new(deep))),
        };
    }
    let deep = pb_route("deep", deep);
    let profile = Profile::from_proto(&DestinationProfile {
        routes: vec![huge, deep],
        ..Default::default()
    });
    assert!(profile.routes.is_empty());
}
