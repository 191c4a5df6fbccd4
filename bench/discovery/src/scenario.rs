//! The `fanout` scenario: one service with many ready pods, many watchers
//! of it, then readiness flips of one pod, each timed until every watcher
//! has seen it.
//!
//! ```text
//!  start controller ─► idle RSS ─► apply Service + pods ─► loaded RSS
//!    ─► open watchers, wait for full sets ─► RSS with streams
//!    ─► rounds: PUT status(ready=!ready) ─► every watcher's Remove/Add ─► timings
//!    ─► close watchers ─► RSS
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::{Phase, Plan};
use crate::control_plane::{ControlPlane, Usage};
use crate::manifests;
use crate::perf::Perf;
use crate::report::{self, Fanout, Load, Memory, Report, Round, Stats, Sync, Targets};
use crate::watchers::{Watchers, What};

/// Lets the controller's memory settle after a phase before it is read.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(plan: &Plan, netns: &str) -> anyhow::Result<Report> {
    let cp = ControlPlane::start(&plan.controller_bin, netns, &plan.controller_env).await?;
    eprintln!(
        "controller pid {} (log {}), Destination API on {}",
        cp.pid(),
        cp.log_path().display(),
        cp.cluster.destination_addr
    );
    measure(&cp, plan).await.map_err(|e| {
        let log = cp.log_tail();
        if log.is_empty() {
            e
        } else {
            e.context(format!("the controller's log ends with:\n{log}"))
        }
    })
}

async fn measure(cp: &ControlPlane, plan: &Plan) -> anyhow::Result<Report> {
    tokio::time::sleep(SETTLE).await;
    let idle = cp.usage()?;

    let perf = Perf::maybe(plan, Phase::Load, cp.pid()).await?;
    let load = load(cp, plan).await?;
    drop(perf);
    let loaded = cp.usage()?;
    eprintln!(
        "loaded {} pods in {:.2} s; opening {} watchers",
        plan.endpoints, load.apply_seconds, plan.watchers
    );

    let perf = Perf::maybe(plan, Phase::Sync, cp.pid()).await?;
    let (mut watchers, sync) = sync(cp, plan, &loaded).await?;
    drop(perf);
    tokio::time::sleep(SETTLE).await;
    let streams = cp.usage()?;
    eprintln!(
        "{} watchers synced in {:.2} s; {} rounds",
        plan.watchers, sync.all_seconds, plan.rounds
    );

    let perf = Perf::maybe(plan, Phase::Rounds, cp.pid()).await?;
    let fanout = rounds(cp, &mut watchers, plan).await?;
    drop(perf);
    let after_rounds = cp.usage()?;

    watchers.close().await;
    tokio::time::sleep(SETTLE).await;
    let closed = cp.usage()?;

    Ok(Report {
        scenario: "fanout",
        endpoints: plan.endpoints,
        watchers: plan.watchers,
        connections: plan.connections,
        rounds: plan.rounds,
        targets: Targets::new(&streams, &fanout),
        memory: Memory {
            idle,
            loaded,
            streams,
            after_rounds,
            closed,
        },
        load,
        sync,
        fanout,
    })
}

/// Applies the service and the pods, then waits for the index to catch up.
async fn load(cp: &ControlPlane, plan: &Plan) -> anyhow::Result<Load> {
    let before = cp.usage()?;
    let start = Instant::now();
    cp.api
        .apply(&manifests::service())
        .await
        .context("applying the service")?;
    let batches = manifests::pod_batches(plan.endpoints);
    for (i, batch) in batches.iter().enumerate() {
        cp.api
            .apply(batch)
            .await
            .with_context(|| format!("applying pod batch {} of {}", i + 1, batches.len()))?;
    }
    let apply = start.elapsed();
    let settle = cp.quiesce(plan.timeout).await?;
    Ok(Load {
        applies: batches.len() + 1,
        apply_seconds: apply.as_secs_f64(),
        settle_seconds: settle.as_secs_f64(),
        cpu_seconds: cp.usage()?.cpu_seconds - before.cpu_seconds,
    })
}

/// Opens the watchers and waits until each holds every endpoint.
async fn sync(cp: &ControlPlane, plan: &Plan, before: &Usage) -> anyhow::Result<(Watchers, Sync)> {
    let client_before = strand_sys::process_stats()?.cpu_seconds;
    let (mut watchers, opened) = Watchers::open(
        cp.cluster.destination_addr,
        &manifests::authority(),
        plan.watchers,
        plan.connections,
        plan.endpoints,
    )
    .await?;
    let synced = watchers.synced(opened, plan.timeout).await?;
    let after = cp.usage()?;
    let sync = Sync {
        all_seconds: synced.iter().max().map_or(0.0, Duration::as_secs_f64),
        per_watcher_ms: Stats::of_ms(&synced),
        cpu_seconds: after.cpu_seconds - before.cpu_seconds,
        client_cpu_seconds: strand_sys::process_stats()?.cpu_seconds - client_before,
    };
    Ok((watchers, sync))
}

/// Flips pods' readiness: round 2k takes pod k out (watchers get a
/// `Remove`), round 2k+1 puts it back (an `Add`).
async fn rounds(cp: &ControlPlane, watchers: &mut Watchers, plan: &Plan) -> anyhow::Result<Fanout> {
    let before = cp.usage()?;
    let mut per_round = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        let stray = watchers.drain();
        if stray > 0 {
            eprintln!("round {round}: {stray} unexpected updates before the change");
        }
        let r = flip(
            cp,
            watchers,
            plan,
            (round / 2) % plan.endpoints,
            round % 2 == 1,
        )
        .await
        .with_context(|| format!("round {round}"))?;
        eprintln!(
            "round {round:>3}: {} ready={:<5} api {:>6.1} ms, first {:>6.1} ms, half {:>6.1} ms, last {:>6.1} ms",
            r.pod, r.ready, r.api_ms, r.first_ms, r.median_ms, r.last_ms
        );
        per_round.push(r);
        tokio::time::sleep(plan.pause).await;
    }
    let cpu = cp.usage()?.cpu_seconds - before.cpu_seconds;
    let times = |f: fn(&Round) -> f64| per_round.iter().map(f).collect::<Vec<_>>();
    Ok(Fanout {
        last_ms: Stats::of(&times(|r| r.last_ms)),
        median_ms: Stats::of(&times(|r| r.median_ms)),
        first_ms: Stats::of(&times(|r| r.first_ms)),
        api_ms: Stats::of(&times(|r| r.api_ms)),
        // Includes the pauses, in which the controller should be idle.
        cpu_seconds_per_round: cpu / plan.rounds.max(1) as f64,
        per_round,
    })
}

/// Sets pod `pod`'s readiness and times it until every watcher has seen it.
async fn flip(
    cp: &ControlPlane,
    watchers: &mut Watchers,
    plan: &Plan,
    pod: usize,
    ready: bool,
) -> anyhow::Result<Round> {
    let target = manifests::endpoint(pod);
    let name = manifests::pod_name(pod);
    let t0 = Instant::now();
    cp.api
        .update_pod_status(manifests::NAMESPACE, &name, &manifests::status(pod, ready))
        .await
        .with_context(|| format!("updating the status of pod {name}"))?;
    let api = t0.elapsed();

    let deadline = t0 + plan.timeout;
    let mut got: Vec<Option<Duration>> = vec![None; watchers.count()];
    let mut seen = 0;
    while seen < got.len() {
        let ev = watchers.next(deadline).await.with_context(|| {
            format!(
                "{seen} of {} watchers saw pod {name} turn {}",
                got.len(),
                if ready { "ready" } else { "not ready" }
            )
        })?;
        let hit = match &ev.what {
            What::Added(addrs) => ready && addrs.contains(&target),
            What::Removed(addrs) => !ready && addrs.contains(&target),
            What::NoEndpoints => bail!("watcher {} was told there are no endpoints", ev.watcher),
            What::Synced | What::Failed(_) => false,
        };
        if hit && got[ev.watcher].is_none() {
            got[ev.watcher] = Some(ev.at.duration_since(t0));
            seen += 1;
        }
    }
    let mut after: Vec<Duration> = got.into_iter().flatten().collect();
    after.sort();
    let at = |i: usize| after.get(i).map(report::ms).unwrap_or_default();
    Ok(Round {
        pod: name,
        ready,
        api_ms: report::ms(&api),
        first_ms: at(0),
        median_ms: at(after.len().saturating_sub(1) / 2),
        last_ms: at(after.len().saturating_sub(1)),
    })
}
