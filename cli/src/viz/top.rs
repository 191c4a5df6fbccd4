//! `strand viz top`: the routes a workload's proxies see most, from their
//! tap streams, as `linkerd viz top` shows them: per source, destination,
//! method and path, the count, the best, worst and last latency, and the
//! success rate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args;
use linkerd2_proxy_api::tap::{TapEvent, eos, tap_event};

use super::tap::{self, TapFilter};
use crate::ctx::Ctx;

/// How often the table is redrawn on a terminal.
const REDRAW: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    filter: TapFilter,
    /// How many rows to show, busiest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    rows: u32,
}

/// A row: who called whom, how.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Route {
    source: String,
    destination: String,
    method: String,
    path: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Stats {
    count: u64,
    successes: u64,
    best: Duration,
    worst: Duration,
    last: Duration,
}

/// A request between its first event and its last.
#[derive(Debug)]
struct Open {
    route: Route,
    status: u32,
    latency: Duration,
}

/// The table being built from the events.
#[derive(Debug, Default)]
pub struct Top {
    open: HashMap<(u32, u64), Open>,
    routes: HashMap<Route, Stats>,
}

pub async fn top(ctx: &Ctx, args: TopArgs) -> anyhow::Result<u8> {
    let rx = tap::open(ctx, &args.filter, false).await?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut table = Top::default();
    let mut drawn = Instant::now();
    let rows = usize::try_from(args.rows).unwrap_or(usize::MAX);
    let code = tap::each_event(rx, args.filter.max_requests, |ev| {
        table.add(ev);
        if terminal && drawn.elapsed() >= REDRAW {
            drawn = Instant::now();
            // Clear the screen and go home, then the table.
            print!("\x1b[2J\x1b[H{}", table.render(rows));
        }
    })
    .await?;
    if terminal {
        print!("\x1b[2J\x1b[H");
    }
    print!("{}", table.render(rows));
    Ok(code)
}

// === impl Top ===

impl Top {
    pub fn add(&mut self, ev: &TapEvent) {
        use tap_event::http::Event;
        let Some(tap_event::Event::Http(h)) = &ev.event else {
            return;
        };
        match h.event.as_ref() {
            Some(Event::RequestInit(r)) => {
                let Some(id) = r.id else { return };
                let path = r.path.split('?').next().unwrap_or_default().to_string();
                let route = Route {
                    source: host(ev.source.as_ref()),
                    destination: tap::addr(ev.destination.as_ref()),
                    method: tap::method_name(r.method.as_ref()),
                    path,
                };
                self.open.insert(
                    (id.base, id.stream),
                    Open {
                        route,
                        status: 0,
                        latency: Duration::ZERO,
                    },
                );
            }
            Some(Event::ResponseInit(r)) => {
                if let Some(o) = r.id.and_then(|id| self.open.get_mut(&(id.base, id.stream))) {
                    o.status = r.http_status;
                    o.latency = duration(r.since_request_init.as_ref());
                }
            }
            Some(Event::ResponseEnd(r)) => {
                let Some(o) = r.id.and_then(|id| self.open.remove(&(id.base, id.stream))) else {
                    return;
                };
                let ok = match r.eos.as_ref().and_then(|e| e.end.as_ref()) {
                    Some(eos::End::GrpcStatusCode(c)) => *c == 0,
                    Some(eos::End::ResetErrorCode(_)) => false,
                    None => (1..500).contains(&o.status),
                };
                let s = self.routes.entry(o.route).or_default();
                s.best = if s.count == 0 {
                    o.latency
                } else {
                    s.best.min(o.latency)
                };
                s.count += 1;
                s.successes += u64::from(ok);
                s.worst = s.worst.max(o.latency);
                s.last = o.latency;
            }
            None => {}
        }
    }

    /// The table, busiest route first.
    pub fn render(&self, rows: usize) -> String {
        let mut sorted: Vec<_> = self.routes.iter().collect();
        sorted.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then_with(|| a.0.path.cmp(&b.0.path))
        });
        let mut table = vec![
            [
                "Source",
                "Destination",
                "Method",
                "Path",
                "Count",
                "Best",
                "Worst",
                "Last",
                "Success Rate",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for (r, s) in sorted.into_iter().take(rows) {
            table.push(vec![
                r.source.clone(),
                r.destination.clone(),
                r.method.clone(),
                r.path.clone(),
                s.count.to_string(),
                ms(s.best),
                ms(s.worst),
                ms(s.last),
                format!("{:.2}%", 100.0 * s.successes as f64 / s.count as f64),
            ]);
        }
        super::table(&table)
    }
}

/// An address without its port (a client's port changes per connection).
fn host(a: Option<&linkerd2_proxy_api::net::TcpAddress>) -> String {
    a.and_then(|a| SocketAddr::try_from(*a).ok())
        .map(|a| a.ip())
        .map_or_else(|| "?".to_string(), |ip: IpAddr| ip.to_string())
}

fn duration(d: Option<&prost_types::Duration>) -> Duration {
    Duration::from_micros(tap::micros(d))
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests;
