//! Stage 5: a balancer over several backends, on stage 4's thread pool.
//!
//! C counterpart: `proxy_load_balancer.c`, done right and concurrent. The C version cycled
//! through its backends one connection at a time and, when the chosen backend refused the
//! connection, sent the client an empty reply. Here the choice is a strategy (`--strategy`:
//! round robin, nginx's smooth weighted round robin, random, least connections, IP hash, or
//! two random choices), backends can carry weights (`--backend ADDR,weight=3`), and a backend
//! that refuses the connection is skipped: the next one is tried, up to `--retries` more.
//!
//! Run: `cargo run --bin stage5 -- --demo --strategy weighted-round-robin \
//!   --backend 127.0.0.1:8000,weight=3 --backend 127.0.0.1:8001 --backend 127.0.0.1:8002`,
//! then `curl -s http://127.0.0.1:8080/` a few times and watch `hello from bN` change.
//!
//! Known limits: a backend that is down is still tried by every request that lands on it
//! (each pays a refused connection); nothing remembers that it is down. Stage 6 adds health
//! checks.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::balancer::{BackendSpec, Balancer, StrategyKind};
use revproxy::cli::{self, PoolArgs, ServerArgs, TuningArgs};
use revproxy::lifecycle::graceful::Graceful;
use revproxy::server::{self, pool::Pool};
use revproxy::tuning::{DEFAULT_RETRIES, DEFAULT_SHUTDOWN_TIMEOUT};

/// Stage 5 of revproxy: several backends, chosen by a load-balancing strategy.
#[derive(Debug, Parser)]
#[command(name = "stage5", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// A backend, as ADDR or ADDR,weight=N (repeat for each backend).
    #[arg(long = "backend", value_name = "ADDR[,weight=N]",
          default_values = ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"])]
    backends: Vec<BackendSpec>,

    /// How the backend of each request is chosen.
    #[arg(long, value_enum, default_value_t = StrategyKind::RoundRobin)]
    strategy: StrategyKind,

    /// Further backends to try when one refuses the connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRIES)]
    retries: usize,

    /// Seed for the random strategies, to make a run repeatable.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Start a demo backend on every --backend address first.
    #[arg(long)]
    demo: bool,

    #[command(flatten)]
    pool: PoolArgs,

    #[command(flatten)]
    tuning: TuningArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.server.log_level);
    cli::exit_with("stage5", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    // First, before any thread starts: SIGTERM and SIGINT then drain rather than kill.
    let graceful = Graceful::start()?;
    let mut specs = args.backends.clone();
    cli::reject_duplicate_backends(&specs)?;
    let _demo = if args.demo {
        Some(cli::start_demo_for(&mut specs)?)
    } else {
        None
    };
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    let mut tuning = args.tuning.tuning();
    args.pool.apply(&mut tuning);
    tuning.upstream.retries = args.retries;
    let model = Pool::new(&tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    let addrs: Vec<_> = specs.iter().map(|s| s.addr).collect();
    cli::announce("stage5", &listener, &addrs)?;
    let balancer = Balancer::new(&specs, args.strategy.build(specs.len(), args.seed));
    let relay = tuning
        .relay(Arc::new(balancer))
        .with_drain(graceful.drain());
    graceful.serve(listener, &model, Arc::new(relay), DEFAULT_SHUTDOWN_TIMEOUT)
}
