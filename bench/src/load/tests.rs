//! Parsers against outputs captured from the real tools (oha 1.16, wrk
//! 4.1.0, h2load 1.52), and the command lines the generators get.

use std::path::Path;
use std::time::Duration;

use super::*;

const OHA_OK: &str = include_str!("testdata/oha-ok.json");
/// Every request refused: only errors.
const OHA_ERRORS: &str = include_str!("testdata/oha-errors.json");
/// gRPC over HTTP/2, with requests cut off at the end of the duration.
const OHA_GRPC_DEADLINE: &str = include_str!("testdata/oha-grpc-deadline.json");
const WRK_OK: &str = include_str!("testdata/wrk-ok.txt");
/// Every response 503.
const WRK_NON_2XX: &str = include_str!("testdata/wrk-non2xx.txt");
/// Every request timed out.
const WRK_ERRORS: &str = include_str!("testdata/wrk-errors.txt");
const H2LOAD_OK: &str = include_str!("testdata/h2load-ok.txt");
/// Every response 503.
const H2LOAD_NON_2XX: &str = include_str!("testdata/h2load-non2xx.txt");
/// Connection refused: h2load reports zero requests and zero errors.
const H2LOAD_REFUSED: &str = include_str!("testdata/h2load-refused.txt");

fn target(protocol: Protocol) -> Target {
    Target {
        addr: "198.18.0.3:8080".parse().unwrap(),
        protocol,
    }
}

#[test]
fn grpc_body_is_a_length_prefixed_echo_request() {
    let body = grpc_body();
    let message = GRPC_MESSAGE.as_bytes();
    assert_eq!(body[0], 0, "not compressed");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, body.len() - 5);
    assert_eq!(body[5], 0x0a, "field 1, length-delimited");
    assert_eq!(usize::from(body[6]), message.len());
    assert_eq!(&body[7..], message);
}

#[test]
fn oha_command_lines() {
    let body = Path::new("/tmp/body");
    let d = Duration::from_secs(20);
    let h1 = oha_args(&target(Protocol::Http1), 1000, 100, d, body);
    assert_eq!(
        h1.join(" "),
        "--no-tui --output-format json --latency-correction -t 5s -q 1000 -c 100 -z 20000ms -w \
         http://198.18.0.3:8080/"
    );
    let grpc = oha_args(&target(Protocol::Grpc), 500, 10, d, body).join(" ");
    assert!(
        grpc.ends_with(
            "--http2 -m POST -D /tmp/body -H content-type: application/grpc -H te: trailers \
             http://198.18.0.3:8080/strand.test.Echo/Unary"
        ),
        "{grpc}"
    );
}

#[test]
fn saturation_command_lines() {
    let body = Path::new("/tmp/body");
    let d = Duration::from_millis(3500);
    let wrk = saturation_args(&target(Protocol::Http1), 100, d, 2, body);
    assert_eq!(
        wrk.join(" "),
        "-t 2 -c 100 -d 3s --timeout 5s http://198.18.0.3:8080/"
    );
    let h2 = saturation_args(&target(Protocol::Http2), 100, d, 2, body);
    assert_eq!(
        h2.join(" "),
        "-t 2 -c 100 -m 10 -D 3 http://198.18.0.3:8080/"
    );
    let grpc = saturation_args(&target(Protocol::Grpc), 4, d, 8, body).join(" ");
    assert!(
        grpc.starts_with("-t 4 -c 4 "),
        "threads are capped by connections: {grpc}"
    );
    assert!(
        grpc.contains("-d /tmp/body -H content-type: application/grpc"),
        "{grpc}"
    );
}

#[test]
fn oha_json_ok() {
    let r = parse::oha_json(OHA_OK).unwrap();
    assert_eq!((r.requests, r.errors, r.non_2xx), (200, 0, 0));
    assert_eq!(r.p50_ms.map(|v| v > 0.0), Some(true));
    assert_eq!(r.p99_ms, Some(1.018668));
    assert_eq!(r.max_ms, Some(1.106938));
    assert!((r.achieved_rps - 199.65).abs() < 0.01, "{r:?}");
}

#[test]
fn oha_json_all_errors() {
    let r = parse::oha_json(OHA_ERRORS).unwrap();
    assert_eq!((r.requests, r.errors, r.non_2xx), (200, 200, 0));
    assert_eq!(r.error_kinds["Connection refused (os error 111)"], 200);
    assert_eq!((r.p50_ms, r.p99_ms, r.max_ms), (None, None, None));
}

#[test]
fn oha_deadline_aborts_are_not_errors() {
    let r = parse::oha_json(OHA_GRPC_DEADLINE).unwrap();
    assert_eq!((r.requests, r.errors, r.aborted_at_deadline), (200, 0, 5));
    assert!(r.error_kinds.is_empty(), "{r:?}");
}

#[test]
fn oha_garbage_is_an_error() {
    assert!(parse::oha_json("").is_err());
    assert!(parse::oha_json("{\"summary\": 1}").is_err());
}

#[test]
fn wrk_ok() {
    let r = parse::wrk(WRK_OK).unwrap();
    assert_eq!(r.requests, 29217);
    assert_eq!(r.rps, 26558.20);
    assert_eq!((r.non_2xx, r.errors), (0, 0));
}

#[test]
fn wrk_non_2xx_and_socket_errors() {
    let r = parse::wrk(WRK_NON_2XX).unwrap();
    assert_eq!((r.requests, r.non_2xx, r.errors), (34726, 34726, 0));
    let r = parse::wrk(WRK_ERRORS).unwrap();
    assert_eq!((r.non_2xx, r.errors), (0, 4));
}

#[test]
fn h2load_ok() {
    let r = parse::h2load(H2LOAD_OK).unwrap();
    assert_eq!((r.requests, r.rps), (29537, 29537.00));
    assert_eq!((r.non_2xx, r.errors), (0, 0));
}

#[test]
fn h2load_non_2xx() {
    let r = parse::h2load(H2LOAD_NON_2XX).unwrap();
    assert_eq!((r.requests, r.non_2xx, r.errors), (44009, 44009, 0));
}

#[test]
fn nothing_completed_is_an_error() {
    let err = parse::h2load(H2LOAD_REFUSED).unwrap_err().to_string();
    assert!(err.contains("no request"), "{err}");
    assert!(parse::wrk("Running 3s test @ http://x/\n").is_err());
    assert!(parse::h2load("starting benchmark...\n").is_err());
}
