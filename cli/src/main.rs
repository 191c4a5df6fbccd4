//! `strand`: the command users drive the mesh with.
//!
//! In local mode it starts the control plane (`strand up`), feeds it resources
//! (`strand apply/get/delete`, with templates from `strand profile`), runs
//! workloads as meshed processes in network namespaces (`strand run`,
//! `strand scale`), manages and shows workload identity (`strand identity`),
//! shows traffic metrics (`strand viz`) and runs a demo application
//! (`strand demo`).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod ctx;
mod demo;
mod identity;
mod profile;
mod resources;
mod run;
mod up;
mod viz;

/// The strand service mesh.
///
/// Local mode runs the control plane and meshed workloads on one Linux host:
/// `strand up` starts the control plane, `strand apply -f svc.yaml` adds
/// Services (and Gateway API HTTPRoutes and GRPCRoutes, and Linkerd ServiceProfiles), and `strand run --name web --port
/// 8080 -- CMD` runs CMD in its own network namespace beside a proxy.
#[derive(Parser)]
#[command(name = "strand", version, propagate_version = true)]
struct Cli {
    /// Where the local control plane keeps its state (store, admin token,
    /// cluster.json, logs).
    #[arg(long, global = true, env = "STRAND_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// The control plane's management API (default: from cluster.json, else
    /// 127.0.0.1:8089).
    #[arg(long, global = true, env = "STRAND_API_ADDR", value_name = "ADDR")]
    api_addr: Option<SocketAddr>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local control plane (needs root).
    Up(up::UpArgs),
    /// Stop the local control plane.
    Down(up::DownArgs),
    /// Report whether the mesh is healthy: control plane, identity, DNS,
    /// every proxy ready, capture rules in every pod.
    Check(up::CheckArgs),
    /// Run a meshed demo application (emojivoto's shape: web, emoji, voting,
    /// vote-bot) and show its live metrics (needs root); `--down` removes it.
    Demo(demo::DemoArgs),
    /// Traffic metrics, live requests and traces: `stat`, `edges`, `routes`,
    /// `tap`, `top`, `trace`, `dashboard`, `grafana`, `prometheus-config`.
    Viz(viz::VizArgs),
    /// Create or update resources from YAML documents: Services, Workloads,
    /// Pods, HTTPRoutes, GRPCRoutes, ServiceProfiles.
    Apply(resources::ApplyArgs),
    /// List resources, or show one.
    Get(resources::GetArgs),
    /// Delete a resource.
    Delete(resources::DeleteArgs),
    /// Print a ServiceProfile (Linkerd's per-service routes, retry budget
    /// and traffic split): a commented template (`--template`), or routes
    /// from an OpenAPI spec (`--open-api FILE`) or a .proto file
    /// (`--proto FILE`), as `linkerd profile` does.
    Profile(profile::ProfileArgs),
    /// Run a command as a meshed workload: one network namespace and proxy per replica (needs root).
    Run(run::RunArgs),
    /// Change the number of replicas of a running workload.
    Scale(run::ScaleArgs),
    /// Show a pod's certificate as its proxy presents it, verified against
    /// the trust anchor (`strand identity POD`), or write the CA files
    /// (`strand identity init`).
    Identity(identity::IdentityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = ctx::Ctx::new(cli.state_dir, cli.api_addr);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::up(&ctx, args).await,
            Command::Down(args) => up::down(&ctx, args).await,
            Command::Check(args) => up::check(&ctx, args).await,
            Command::Demo(args) => demo::demo(&ctx, args).await,
            Command::Viz(args) => viz::viz(&ctx, args).await,
            Command::Apply(args) => resources::apply(&ctx, args).await,
            Command::Get(args) => resources::get(&ctx, args).await,
            Command::Delete(args) => resources::delete(&ctx, args).await,
            Command::Profile(args) => profile::profile(&ctx, args),
            Command::Run(args) => run::run(&ctx, args).await,
            Command::Scale(args) => run::scale(&ctx, args).await,
            Command::Identity(args) => identity::identity(&ctx, args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
