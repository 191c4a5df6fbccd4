use std::collections::BTreeMap;

use super::*;
use crate::bench::{HandshakeMeasurement, HandshakeSeries, Measurement};
use crate::handshake::{Mode, Rate};
use crate::load::{FixedRate, Saturation};
use crate::scenario::ProxyProcess;

fn fixed(p99_ms: f64, requests: u64, errors: u64, cpu: f64) -> Phase<FixedRate> {
    Phase::Ok {
        result: FixedRate {
            requests,
            non_2xx: 0,
            errors,
            error_kinds: BTreeMap::new(),
            aborted_at_deadline: 0,
            p50_ms: Some(p99_ms / 2.0),
            p99_ms: Some(p99_ms),
            max_ms: Some(p99_ms * 3.0),
            achieved_rps: requests as f64 / 20.0,
        },
        proxy_cpu_seconds: cpu,
        proxy_peak_rss_bytes: 10 << 20,
    }
}

fn saturation(rps: f64, non_2xx: u64) -> Phase<Saturation> {
    Phase::Ok {
        result: Saturation {
            requests: (rps * 10.0) as u64,
            rps,
            non_2xx,
            errors: 0,
        },
        proxy_cpu_seconds: 1.0,
        proxy_peak_rss_bytes: 12 << 20,
    }
}

fn series(scenario: &str, protocol: Protocol, runs: Vec<Measurement>) -> Series {
    let proxies = if scenario == "direct" {
        vec![]
    } else {
        vec![ProxyProcess {
            label: "p".into(),
            pid: 1,
            protocols: vec![protocol],
        }]
    };
    Series {
        scenario: scenario.into(),
        protocol,
        url: "http://198.18.0.3:8080/".into(),
        scenario_index: 0,
        idle_rss_bytes: (!proxies.is_empty()).then_some(4 << 20),
        proxies,
        warmup_problem: None,
        runs,
    }
}

fn run(n: u32, fixed: Phase<FixedRate>, saturation: Phase<Saturation>) -> Measurement {
    Measurement {
        run: n,
        fixed,
        saturation: Some(saturation),
        instructions: None,
    }
}

#[test]
fn medians() {
    assert_eq!(median(vec![]), None);
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(vec![f64::NAN, 1.0]), Some(1.0));
}

#[test]
fn rows_take_medians_and_total_errors() {
    let s = series(
        "strand-1hop",
        Protocol::Http1,
        vec![
            run(1, fixed(1.0, 20_000, 0, 2.0), saturation(10_000.0, 0)),
            run(2, fixed(3.0, 20_000, 7, 4.0), saturation(12_000.0, 5)),
            run(
                3,
                fixed(2.0, 20_000, 0, 3.0),
                Phase::Failed {
                    error: "h2load exited".into(),
                },
            ),
        ],
    );
    let row = Row::from_series(&s);
    assert_eq!(row.p99_ms, Some(2.0));
    assert_eq!(row.p50_ms, Some(1.0));
    assert_eq!(row.throughput_rps, Some(11_000.0));
    // 3 CPU seconds for 20k requests.
    assert!((row.cpu_s_per_10k.unwrap() - 1.5).abs() < 1e-9, "{row:?}");
    assert_eq!(row.fixed_errors, 7);
    assert_eq!(row.saturation_errors, 5);
    assert_eq!(row.failed, 1);
    assert_eq!(row.rss_idle_mib, Some(4.0));
    assert_eq!(row.rss_peak_mib, Some(12.0));
    let cells = row.cells(1000.0);
    assert_eq!(cells.last().unwrap(), "7/5 +1 FAILED");
}

#[test]
fn direct_has_no_proxy_cost() {
    let s = series(
        "direct",
        Protocol::Http1,
        vec![run(1, fixed(1.0, 20_000, 0, 0.0), saturation(30_000.0, 0))],
    );
    let row = Row::from_series(&s);
    assert_eq!(row.cpu_s_per_10k, None);
    assert_eq!(row.rss_peak_mib, None);
    assert_eq!(row.cells(1000.0).last().unwrap(), "0");
}

#[test]
fn comparisons_and_ratios() {
    let one = |scenario: &str, p99: f64, rps: f64, cpu: f64| {
        Row::from_series(&series(
            scenario,
            Protocol::Http1,
            vec![run(1, fixed(p99, 20_000, 0, cpu), saturation(rps, 0))],
        ))
    };
    let mut rows = vec![
        one("direct", 1.0, 30_000.0, 0.0),
        one("strand-1hop", 1.5, 15_000.0, 2.0),
        one("strand-pair", 2.0, 10_000.0, 4.0),
        one("nginx-1hop", 1.4, 20_000.0, 4.0),
    ];
    compare_with_direct(&mut rows);
    assert_eq!(rows[0].p99_added_ms, None);
    assert_eq!(rows[2].p99_added_ms, Some(1.0));
    assert_eq!(rows[2].p99_ratio, Some(2.0));

    let ratios = Ratios::new(&rows, &[], 1000);
    assert_eq!(ratios.pair_p99_added_http1_ms, Some(1.0));
    assert_eq!(ratios.throughput.len(), 1);
    assert_eq!(ratios.throughput[0].ratio, 0.75);
    assert_eq!(ratios.cpu_per_request[0].ratio, 0.5);
    let text = ratios.render();
    assert!(
        text.contains("HTTP/1.1 at 1000 rps: +1.00 ms (2.00x direct)"),
        "{text}"
    );
    assert!(
        text.contains("throughput strand-1hop / nginx-1hop: http1 0.75"),
        "{text}"
    );
    assert!(
        text.contains("CPU per request strand-1hop / nginx-1hop: http1 0.50"),
        "{text}"
    );
    assert!(
        text.contains("idle proxy RSS, MiB: strand-1hop 4.0"),
        "{text}"
    );
}

#[test]
fn table_is_aligned() {
    let rows = [
        vec![
            "scenario".to_string(),
            "proto".into(),
            "p99 ms".into(),
            "errors".into(),
        ],
        vec![
            "strand-pair".to_string(),
            "grpc".into(),
            "1.25".into(),
            "0".into(),
        ],
    ];
    let text = render(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "scenario     proto  p99 ms  errors");
    assert_eq!(lines[1], "-".repeat(34));
    assert_eq!(lines[2], "strand-pair  grpc     1.25  0");
}

#[test]
fn mtls_costs_against_plaintext() {
    let one = |scenario: &str, protocol, p99: f64, rps: f64, cpu: f64| {
        Row::from_series(&series(
            scenario,
            protocol,
            vec![run(1, fixed(p99, 20_000, 0, cpu), saturation(rps, 0))],
        ))
    };
    let rows = vec![
        one("strand-pair-disc", Protocol::Http1, 2.0, 10_000.0, 4.0),
        one("strand-pair-mtls", Protocol::Http1, 2.2, 9_000.0, 4.2),
        one("strand-pair-disc", Protocol::Grpc, 2.0, 8_000.0, 4.0),
        one("strand-pair-mtls", Protocol::Grpc, 3.0, 6_000.0, 5.0),
    ];
    let hs = HandshakeSeries {
        scenario: "strand-pair-mtls".into(),
        target: "198.18.0.3:8080".into(),
        proxy: ProxyProcess {
            label: "p".into(),
            pid: 1,
            protocols: vec![],
        },
        concurrency: 16,
        duration_seconds: 5.0,
        scenario_index: 0,
        runs: [(Mode::Mtls, 1_000.0, 0.5), (Mode::Tcp, 4_000.0, 0.4)]
            .into_iter()
            .map(|(mode, per_second, cpu)| HandshakeMeasurement {
                run: 1,
                mode,
                rate: Phase::Ok {
                    result: Rate {
                        connections: (per_second * 5.0) as u64,
                        errors: 0,
                        error_kinds: BTreeMap::new(),
                        seconds: 5.0,
                        per_second,
                        p50_ms: Some(1.0),
                        p99_ms: Some(2.0),
                        proxy_counted: Some((per_second * 5.0) as u64),
                    },
                    proxy_cpu_seconds: cpu * per_second * 5.0 / 1000.0,
                    proxy_peak_rss_bytes: 1,
                },
            })
            .collect(),
    };
    let hrows = HandshakeRow::from_series(&hs);
    assert_eq!(hrows.len(), 2);
    assert!(
        (hrows[0].cpu_s_per_1k.unwrap() - 0.5).abs() < 1e-9,
        "{hrows:?}"
    );

    let ratios = Ratios::new(&rows, &hrows, 1000);
    assert_eq!(ratios.mtls.len(), 2);
    let http1 = &ratios.mtls[0];
    assert!((http1.cpu_per_request.unwrap() - 1.05).abs() < 1e-9);
    assert!((http1.p99.unwrap() - 1.1).abs() < 1e-9);
    assert!((http1.throughput.unwrap() - 0.9).abs() < 1e-9);
    let h = ratios.handshakes.as_ref().unwrap();
    assert_eq!(h.rate_ratio, 0.25);
    assert!((h.handshake_cpu_s_per_1k.unwrap() - 0.1).abs() < 1e-9);

    let text = ratios.render();
    assert!(
        text.contains(
            "CPU per request at 1000 rps: http1 1.05, grpc 1.25 (target <= 1.10: MISSED by grpc)"
        ),
        "{text}"
    );
    assert!(
        text.contains("p99 at 1000 rps: http1 1.10, grpc 1.50 (target <= 1.20: MISSED by grpc)"),
        "{text}"
    );
    assert!(text.contains("mtls 1000/s, tcp 4000/s (0.25x)"), "{text}");
    let table = handshakes::table(&hrows, &[hs]);
    assert!(table.contains("strand-pair-mtls  mtls"), "{table}");
}

#[test]
fn mtls_cpu_ratio_is_the_median_of_each_rounds_pair() {
    let rounds = |scenario: &str, cpu: &[(u32, f64)]| {
        Row::from_series(&series(
            scenario,
            Protocol::Http2,
            cpu.iter()
                .map(|&(n, cpu)| run(n, fixed(1.0, 20_000, 0, cpu), saturation(9_000.0, 0)))
                .collect(),
        ))
    };
    // Round 2 ran on a slower moment for both; round 4 has no plaintext
    // measurement and pairs with nothing.
    let rows = vec![
        rounds("strand-pair-disc", &[(1, 2.0), (2, 3.0), (3, 2.0)]),
        rounds(
            "strand-pair-mtls",
            &[(1, 2.1), (2, 3.2), (3, 2.3), (4, 9.0)],
        ),
    ];
    let ratios = Ratios::new(&rows, &[], 1000);
    let http2 = &ratios.mtls[0];
    let runs: Vec<String> = http2
        .cpu_per_request_runs
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect();
    assert_eq!(runs, ["1.050", "1.067", "1.150"]);
    // The ratio of the medians would be 2.3 / 2.0 = 1.15.
    assert!((http2.cpu_per_request.unwrap() - 3.2 / 3.0).abs() < 1e-9);
    let text = ratios.render();
    assert!(
        text.contains("CPU per request at 1000 rps: http2 1.07 (target <= 1.10: met)"),
        "{text}"
    );
    assert!(
        text.contains(
            "each round's pair measured back to back: http2 1.05-1.15 (1 of 3 over 1.10)"
        ),
        "{text}"
    );
}

#[test]
fn mtls_costs_need_both_scenarios() {
    let ratios = Ratios::new(&[], &[], 1000);
    let text = ratios.render();
    assert!(text.contains("mTLS cost: not measured"), "{text}");
    assert!(text.contains("handshakes: not measured"), "{text}");
}

#[test]
fn callgrind_counts_give_the_instruction_table_and_mtls_ratio() {
    let counted = |scenario: &str, per_request: [f64; 3]| {
        let runs = per_request
            .iter()
            .enumerate()
            .map(|(i, &per_request)| Measurement {
                run: i as u32 + 1,
                fixed: fixed(50.0, 2_000, 0, 3.0),
                saturation: None,
                instructions: Some(Ok(crate::callgrind::Counted {
                    requests: 1_000,
                    instructions: vec![("p".into(), (per_request * 1_000.0) as u64)],
                    per_request,
                    profiles: vec![],
                })),
            })
            .collect();
        Row::from_series(&series(scenario, Protocol::Http2, runs))
    };
    let mut failed = series(
        "strand-pair-mtls",
        Protocol::Grpc,
        vec![Measurement {
            run: 1,
            fixed: fixed(50.0, 2_000, 0, 3.0),
            saturation: None,
            instructions: Some(Err("vgdb --pid=7 zero: no such process".into())),
        }],
    );
    let rows = vec![
        counted("strand-pair-disc", [100_000.0, 90_000.0, 95_000.0]),
        counted("strand-pair-mtls", [99_000.0, 104_500.0, 120_000.0]),
        Row::from_series(&failed),
    ];
    assert_eq!(rows[0].instructions_per_request, Some(95_000.0));
    assert_eq!(rows[1].instructions_per_request, Some(104_500.0));
    // No saturation measured: no throughput, and nothing counted as failed.
    assert_eq!(rows[0].throughput_rps, None);
    assert_eq!(rows[0].failed, 0);
    assert_eq!(rows[2].failed, 1);
    assert_eq!(rows[2].instructions_per_request, None);

    let ratios = Ratios::new(&rows, &[], 100);
    let http2 = &ratios.mtls[0];
    assert!((http2.instructions_per_request.unwrap() - 1.1).abs() < 1e-9);
    let text = ratios.render();
    assert!(
        text.contains(
            "instructions per request at 100 rps (callgrind): http2 1.10 (target <= 1.10: met)"
        ),
        "{text}"
    );
    assert!(!text.contains("CPU per request at"), "{text}");

    failed.scenario = "x".into();
    let report = Report {
        meta: Meta {
            unix_time: 0,
            command_line: vec![],
            kernel: String::new(),
            cpus: 2,
            runs: 3,
            rate: 100,
            connections: 10,
            duration_seconds: 20.0,
            saturation_duration_seconds: 10.0,
            handshake_duration_seconds: 10.0,
            handshake_concurrency: 16,
            proxy_env: vec![],
            callgrind: true,
            tool_versions: BTreeMap::new(),
        },
        rows,
        handshake_rows: vec![],
        ratios,
        results: Results {
            series: vec![failed],
            handshakes: vec![],
            skipped: vec![],
            elapsed_seconds: 1.0,
        },
    };
    let table = report.table();
    assert!(
        table.contains("proxies under callgrind, no saturation"),
        "{table}"
    );
    assert!(table.contains("instructions/request"), "{table}");
    assert!(table.contains("strand-pair-mtls  http2"), "{table}");
    assert!(table.contains("104500"), "{table}");
    assert!(
        table.contains("x grpc run 1 instruction count failed: vgdb --pid=7 zero"),
        "{table}"
    );
}
