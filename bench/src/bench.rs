//! The run: start every scenario, record the proxies' idle memory, warm each
//! path up, then take `--runs` rounds of measurements. A round measures one
//! protocol at a time on every scenario back to back (starting at a
//! different scenario each round), so that slow drift on the machine
//! spreads over all of them and the measurements one ratio compares are
//! close in time. A scenario with a handshake load (strand-pair-mtls) gets
//! `--runs` handshake-rate measurements after all the rounds.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::callgrind::{self, Callgrind, Counted};
use crate::cli::Plan;
use crate::handshake::{self, Mode};
use crate::load::{self, FixedRate, Protocol, Saturation, SaturationTool, Target, parse};
use crate::measure::{self, Observed};
use crate::scenario::{ProxyProcess, Scenario, Setup};
use crate::stop::StopFlag;
use crate::tools::Tools;

/// Everything measured.
#[derive(Serialize)]
pub struct Results {
    pub series: Vec<Series>,
    /// Handshake-rate measurements, per scenario that has them.
    pub handshakes: Vec<HandshakeSeries>,
    /// Scenarios that could not be started, with the reason.
    pub skipped: Vec<Skipped>,
    /// Wall-clock length of the whole run, in seconds.
    pub elapsed_seconds: f64,
}

#[derive(Serialize)]
pub struct Skipped {
    pub scenario: String,
    pub reason: String,
}

/// The measurements of one scenario and protocol.
#[derive(Serialize)]
pub struct Series {
    pub scenario: String,
    pub protocol: Protocol,
    pub url: String,
    /// The proxy processes on the path.
    pub proxies: Vec<ProxyProcess>,
    /// Index of the scenario in the run's list.
    #[serde(skip)]
    pub scenario_index: usize,
    /// Their summed resident memory after start, before any load, in bytes.
    pub idle_rss_bytes: Option<u64>,
    /// Failures seen while warming up (the warm-up is not measured).
    pub warmup_problem: Option<String>,
    pub runs: Vec<Measurement>,
}

/// New connections into one scenario's server proxy, per round.
#[derive(Serialize)]
pub struct HandshakeSeries {
    pub scenario: String,
    /// Where the connections go (redirected to the inbound proxy).
    pub target: String,
    /// The proxy whose CPU is counted.
    pub proxy: ProxyProcess,
    /// Connections in flight at a time.
    pub concurrency: u32,
    pub duration_seconds: f64,
    #[serde(skip)]
    pub scenario_index: usize,
    pub runs: Vec<HandshakeMeasurement>,
}

/// One round's handshake-rate measurements, one per [`Mode`].
#[derive(Serialize)]
pub struct HandshakeMeasurement {
    /// 1-based round number.
    pub run: u32,
    pub mode: Mode,
    pub rate: Phase<handshake::Rate>,
}

/// One round's fixed-rate and saturation measurements.
#[derive(Serialize)]
pub struct Measurement {
    /// 1-based round number.
    pub run: u32,
    pub fixed: Phase<FixedRate>,
    /// Not measured with `--callgrind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Phase<Saturation>>,
    /// With `--callgrind`: the proxies' instructions during the fixed-rate
    /// measurement, or why they could not be counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Result<Counted, String>>,
}

/// A load generator's result and the proxies' cost meanwhile, or why the
/// measurement failed.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase<T> {
    Ok {
        result: T,
        /// CPU seconds the proxies on the path used.
        proxy_cpu_seconds: f64,
        /// Peak summed resident memory of the proxies, in bytes.
        proxy_peak_rss_bytes: u64,
    },
    Failed {
        error: String,
    },
}

/// The warm-up before the first round: long enough for connection pools
/// and allocator caches to fill, short enough not to matter for run time.
const WARMUP: Duration = Duration::from_secs(2);

/// How much longer than asked a load generator may take (start-up and
/// draining in-flight requests) before it counts as hung.
const SLACK: Duration = Duration::from_secs(30);

/// Pause between measurements, so connections of one close before the next
/// starts and CPU use from one does not spill into the next.
const PAUSE: Duration = Duration::from_millis(500);

/// Runs the whole plan. Stops early, returning what it has, when `stop` is set.
pub fn run(plan: &Plan, tools: &Tools, stop: &StopFlag) -> anyhow::Result<Results> {
    let start = Instant::now();
    let setup = Setup {
        tools,
        proxy_env: &plan.proxy_env,
    };
    let mut scenarios = Vec::new();
    let mut skipped = Vec::new();
    for kind in &plan.scenarios {
        if stop.is_set() {
            break;
        }
        eprintln!("==> starting {}", kind.name());
        match Scenario::start(kind.clone(), &setup) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("strand-bench: skipping {}: {e:#}", kind.name());
                skipped.push(Skipped {
                    scenario: kind.name().to_string(),
                    reason: format!("{e:#}"),
                });
            }
        }
    }

    // Idle memory first, before any request has touched a proxy.
    let mut series: Vec<Series> = Vec::new();
    for (scenario_index, scenario) in scenarios.iter().enumerate() {
        for &protocol in &plan.protocols {
            if !scenario.kind.carries(protocol) {
                continue;
            }
            let proxies = scenario.proxies(protocol);
            let pids: Vec<u32> = proxies.iter().map(|p| p.pid).collect();
            series.push(Series {
                scenario: scenario.kind.name().to_string(),
                protocol,
                url: scenario.target(protocol).url(),
                scenario_index,
                idle_rss_bytes: (!pids.is_empty()).then(|| measure::rss_of(&pids)),
                proxies,
                warmup_problem: None,
                runs: Vec::new(),
            });
        }
    }

    let mut handshakes: Vec<HandshakeSeries> = scenarios
        .iter()
        .enumerate()
        // Handshakes under callgrind would measure valgrind.
        .filter(|_| tools.callgrind.is_none())
        .filter_map(|(scenario_index, scenario)| {
            let (client, proxy) = scenario.handshake()?;
            Some(HandshakeSeries {
                scenario: scenario.kind.name().to_string(),
                target: client.target().to_string(),
                proxy: proxy.clone(),
                concurrency: plan.handshake_concurrency,
                duration_seconds: plan.handshake_duration.as_secs_f64(),
                scenario_index,
                runs: Vec::new(),
            })
        })
        .collect();

    for s in series.iter_mut() {
        if stop.is_set() {
            break;
        }
        let scenario = &scenarios[s.scenario_index];
        eprintln!("==> warming up {} {}", s.scenario, s.protocol.name());
        s.warmup_problem = warm_up(scenario, s.protocol, plan, tools, stop);
        if let Some(problem) = &s.warmup_problem {
            eprintln!("    warning: {problem}");
        }
    }

    // Within a round, each protocol is measured on every scenario back to
    // back, so the measurements one ratio compares (strand-pair-mtls over
    // strand-pair-disc, say) are seconds apart rather than a whole
    // scenario's protocols apart. The scenario order rotates every round,
    // so no scenario always goes first.
    'rounds: for run in 1..=plan.runs {
        let order: Vec<usize> = (0..scenarios.len())
            .map(|offset| (offset + run as usize - 1) % scenarios.len())
            .collect();
        for &protocol in &plan.protocols {
            for &si in &order {
                let Some(s) = series
                    .iter_mut()
                    .find(|s| s.scenario_index == si && s.protocol == protocol)
                else {
                    continue;
                };
                if stop.is_set() {
                    break 'rounds;
                }
                let m = measure_once(&scenarios[si], s.protocol, run, plan, tools, stop);
                eprintln!(
                    "[{run}/{}] {:<16} {:<5} {}",
                    plan.runs,
                    s.scenario,
                    s.protocol.name(),
                    m.summary()
                );
                s.runs.push(m);
            }
        }
    }
    // Handshakes come after every round: a handshake measurement leaves
    // tens of thousands of TIME_WAIT sockets and conntrack entries in the
    // server pod's namespace for a minute or two, which would make the
    // next kept-alive measurements of that scenario alone cost more.
    'handshakes: for run in 1..=plan.runs {
        for h in handshakes.iter_mut() {
            for mode in Mode::ALL {
                if stop.is_set() {
                    break 'handshakes;
                }
                let rate = measure_handshakes(&scenarios[h.scenario_index], mode, plan, stop);
                eprintln!(
                    "[{run}/{}] {:<16} {:<5} {}",
                    plan.runs,
                    h.scenario,
                    mode.name(),
                    handshake_summary(&rate)
                );
                h.runs.push(HandshakeMeasurement { run, mode, rate });
            }
        }
    }
    // Stop every process and delete the namespaces before reporting.
    drop(scenarios);
    Ok(Results {
        series,
        handshakes,
        skipped,
        elapsed_seconds: start.elapsed().as_secs_f64(),
    })
}

/// A short fixed-rate run through the path; `Some` describes what went wrong.
fn warm_up(
    scenario: &Scenario,
    protocol: Protocol,
    plan: &Plan,
    tools: &Tools,
    stop: &StopFlag,
) -> Option<String> {
    let target = scenario.target(protocol);
    let duration = WARMUP.min(plan.duration);
    let args = load::oha_args(
        &target,
        plan.rate,
        plan.connections,
        duration,
        &tools.grpc_body,
    );
    let mut cmd = scenario.load_command(&tools.oha);
    cmd.args(args);
    let observed = measure::observe(scenario.load_pod(), cmd, &[], duration + SLACK, stop);
    std::thread::sleep(PAUSE);
    match observed.and_then(|o| parsed(&o, "oha", parse::oha_json)) {
        Err(e) => Some(format!("warm-up failed: {e:#}")),
        Ok(r) if r.errors + r.non_2xx > 0 => Some(format!(
            "warm-up: {} errors and {} non-2xx responses of {} requests ({:?})",
            r.errors, r.non_2xx, r.requests, r.error_kinds
        )),
        Ok(_) => None,
    }
}

fn measure_once(
    scenario: &Scenario,
    protocol: Protocol,
    run: u32,
    plan: &Plan,
    tools: &Tools,
    stop: &StopFlag,
) -> Measurement {
    let target = scenario.target(protocol);
    let pids: Vec<u32> = scenario.proxies(protocol).iter().map(|p| p.pid).collect();

    let args = load::oha_args(
        &target,
        plan.rate,
        plan.connections,
        plan.duration,
        &tools.grpc_body,
    );
    let mut cmd = scenario.load_command(&tools.oha);
    cmd.args(args);
    let observe = || measure::observe(scenario.load_pod(), cmd, &pids, plan.duration + SLACK, stop);
    let Some(callgrind) = &tools.callgrind else {
        let fixed = phase(observe(), "oha", parse::oha_json);
        std::thread::sleep(PAUSE);
        let saturation = saturate(scenario, &target, &pids, plan, tools, stop);
        std::thread::sleep(PAUSE);
        return Measurement {
            run,
            fixed,
            saturation: Some(saturation),
            instructions: None,
        };
    };
    let proxies = scenario.proxies(protocol);
    let (observed, counted) = std::thread::scope(|scope| {
        let counter =
            scope.spawn(|| count_instructions(scenario, protocol, run, &proxies, callgrind, plan));
        let observed = observe();
        let counted = counter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (observed, counted)
    });
    std::thread::sleep(PAUSE);
    Measurement {
        run,
        fixed: phase(observed, "oha", parse::oha_json),
        saturation: None,
        instructions: Some(counted.map_err(|e| format!("{e:#}"))),
    }
}

/// Counts the instructions of `proxies` over the counted window of a
/// fixed-rate measurement that starts now (see [`callgrind::window`]).
fn count_instructions(
    scenario: &Scenario,
    protocol: Protocol,
    run: u32,
    proxies: &[ProxyProcess],
    callgrind: &Callgrind,
    plan: &Plan,
) -> anyhow::Result<Counted> {
    let start = Instant::now();
    let (from, to) = callgrind::window(plan.duration).ok_or_else(|| {
        anyhow::anyhow!("--duration is too short to count instructions (at least 3s)")
    })?;
    std::thread::sleep(from);
    for p in proxies {
        callgrind.zero(p.pid)?;
    }
    let before = scenario.server_requests()?;
    std::thread::sleep(to.saturating_sub(start.elapsed()));
    let after = scenario.server_requests()?;
    let mut instructions = Vec::new();
    let mut profiles = Vec::new();
    let keep = callgrind::profiles_dir(&plan.json_path);
    std::fs::create_dir_all(&keep).with_context(|| format!("creating {}", keep.display()))?;
    for p in proxies {
        let (count, dump) = callgrind.dump(p.pid)?;
        let name = callgrind::profile_name(scenario.kind.name(), protocol.name(), run, &p.label);
        let kept = keep.join(name);
        std::fs::copy(&dump, &kept)
            .with_context(|| format!("copying {} to {}", dump.display(), kept.display()))?;
        instructions.push((p.label.clone(), count));
        profiles.push(kept);
    }
    let requests = after.saturating_sub(before);
    if requests == 0 {
        anyhow::bail!("no request was served while instructions were counted");
    }
    let total: u64 = instructions.iter().map(|(_, n)| n).sum();
    Ok(Counted {
        requests,
        instructions,
        per_request: total as f64 / requests as f64,
        profiles,
    })
}

fn saturate(
    scenario: &Scenario,
    target: &Target,
    pids: &[u32],
    plan: &Plan,
    tools: &Tools,
    stop: &StopFlag,
) -> Phase<Saturation> {
    let tool = target.protocol.saturation_tool();
    let program = match tools.saturation(tool) {
        Ok(p) => p,
        Err(e) => {
            return Phase::Failed {
                error: format!("{e:#}"),
            };
        }
    };
    // One client thread per core: the generator shares the machine with the
    // proxy and the backend, as every scenario's does.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = u32::try_from(threads).unwrap_or(1);
    let args = load::saturation_args(
        target,
        plan.connections,
        plan.saturation_duration,
        threads,
        &tools.grpc_body,
    );
    let mut cmd = scenario.load_command(program);
    cmd.args(args);
    let observed = measure::observe(
        scenario.load_pod(),
        cmd,
        pids,
        plan.saturation_duration + SLACK,
        stop,
    );
    match tool {
        SaturationTool::Wrk => phase(observed, "wrk", parse::wrk),
        SaturationTool::H2load => phase(observed, "h2load", parse::h2load),
    }
}

/// New connections into the scenario's server proxy for the handshake
/// duration, with the proxy's CPU meanwhile.
fn measure_handshakes(
    scenario: &Scenario,
    mode: Mode,
    plan: &Plan,
    stop: &StopFlag,
) -> Phase<handshake::Rate> {
    let Some((client, proxy)) = scenario.handshake() else {
        return Phase::Failed {
            error: "the scenario has no handshake load".to_string(),
        };
    };
    let counted_before = scenario.proxy_counted(mode);
    let observed = measure::observe_in_process(&[proxy.pid], || {
        client.run(
            mode,
            plan.handshake_concurrency,
            plan.handshake_duration,
            stop,
        )
    });
    let counted_after = scenario.proxy_counted(mode);
    std::thread::sleep(PAUSE);
    match observed.result {
        Ok(mut result) => {
            result.proxy_counted = match (counted_before, counted_after) {
                (Ok(before), Ok(after)) => Some(after.saturating_sub(before)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("    warning: cannot read the server proxy's metrics: {e:#}");
                    None
                }
            };
            Phase::Ok {
                result,
                proxy_cpu_seconds: observed.cpu_seconds,
                proxy_peak_rss_bytes: observed.peak_rss_bytes,
            }
        }
        Err(e) => Phase::Failed {
            error: format!("{e:#}"),
        },
    }
}

fn handshake_summary(rate: &Phase<handshake::Rate>) -> String {
    match rate {
        Phase::Ok {
            result: r,
            proxy_cpu_seconds,
            ..
        } => format!(
            "{:.0} conn/s, p99 {} ms, proxy {:.3} cpu-s/1k, {} err",
            r.per_second,
            fmt_ms(r.p99_ms),
            proxy_cpu_seconds / r.connections as f64 * 1000.0,
            r.errors
        ),
        Phase::Failed { error } => format!("FAILED: {error}"),
    }
}

fn phase<T>(
    observed: anyhow::Result<Observed>,
    tool: &str,
    parser: fn(&str) -> anyhow::Result<T>,
) -> Phase<T> {
    match observed.and_then(|o| parsed(&o, tool, parser).map(|r| (r, o))) {
        Ok((result, o)) => Phase::Ok {
            result,
            proxy_cpu_seconds: o.cpu_seconds,
            proxy_peak_rss_bytes: o.peak_rss_bytes,
        },
        Err(e) => Phase::Failed {
            error: format!("{e:#}"),
        },
    }
}

/// Parses a load generator's stdout; the error carries its exit status and
/// stderr, which say why there was nothing to parse.
fn parsed<T>(o: &Observed, tool: &str, parser: fn(&str) -> anyhow::Result<T>) -> anyhow::Result<T> {
    parser(&o.stdout).map_err(|e| {
        let stderr: Vec<&str> = o.stderr.lines().rev().take(5).collect();
        let stderr: Vec<&str> = stderr.into_iter().rev().collect();
        e.context(format!(
            "{tool} exited with {}; stderr: {}",
            o.status,
            stderr.join(" | ")
        ))
    })
}

// === impl Measurement ===

impl Measurement {
    /// One line for the progress log.
    fn summary(&self) -> String {
        let fixed = match &self.fixed {
            Phase::Ok { result: r, .. } => format!(
                "p50 {} p99 {} ms, {} err",
                fmt_ms(r.p50_ms),
                fmt_ms(r.p99_ms),
                r.errors + r.non_2xx
            ),
            Phase::Failed { error } => format!("fixed-rate FAILED: {error}"),
        };
        let second = match (&self.saturation, &self.instructions) {
            (Some(Phase::Ok { result: r, .. }), _) => {
                format!("{:.0} rps, {} err", r.rps, r.errors + r.non_2xx)
            }
            (Some(Phase::Failed { error }), _) => format!("saturation FAILED: {error}"),
            (None, Some(Ok(c))) => format!(
                "{:.0} instructions/request over {} requests",
                c.per_request, c.requests
            ),
            (None, Some(Err(error))) => format!("instructions FAILED: {error}"),
            (None, None) => "-".to_string(),
        };
        format!("{fixed} | {second}")
    }
}

fn fmt_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}
