//! Stage 3: a thread per connection.
//!
//! C counterpart: `threaded_proxy.c`, done right. The C version started a thread per
//! connection with no limit and no timeouts: a flood of clients spawns threads until memory
//! runs out, and a client that vanishes mid-request pins its thread forever. Here threads
//! are named (`conn-N`, shown in the log), at most `--max-connections` run at once, and above
//! that a client gets `503` with `Retry-After: 1` at once. Every socket read and write has a
//! timeout, so no thread waits forever, and the count is given back even if a thread panics
//! (see `revproxy::server::threads`).
//!
//! Run: `cargo run --bin stage3 -- --demo`, then `curl -i http://127.0.0.1:8080/`.
//!
//! Known limits: each connection costs a thread (a stack, a scheduler entry) for its whole
//! life, idle keep-alive time included, so `--max-connections` idle clients are enough to
//! refuse everyone else. Stage 4 serves from a fixed pool instead. On `SIGTERM`/`SIGINT`
//! (graceful, as from stage 3 on) an idle keep-alive connection's thread sits in a blocking
//! read, so the drain waits for it up to its 10 s deadline.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::cli::{self, ServerArgs, SingleBackendArgs, TuningArgs};
use revproxy::lifecycle::graceful::Graceful;
use revproxy::server;
use revproxy::server::threads::{ThreadPerConnection, DEFAULT_MAX_CONNECTIONS};
use revproxy::tuning::DEFAULT_SHUTDOWN_TIMEOUT;
use revproxy::upstream::SingleUpstream;

/// Stage 3 of revproxy: a thread per connection, one backend.
#[derive(Debug, Parser)]
#[command(name = "stage3", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    backend: SingleBackendArgs,

    /// Most connections served at once (a thread each); above it clients get 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = cli::parse_count)]
    max_connections: usize,

    #[command(flatten)]
    tuning: TuningArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.server.log_level);
    cli::exit_with("stage3", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    // First, before any thread starts: SIGTERM and SIGINT then drain rather than kill.
    let graceful = Graceful::start()?;
    let (backend, _demo) = args.backend.start()?;
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    cli::announce("stage3", &listener, &[backend])?;
    let relay = args
        .tuning
        .tuning()
        .relay(Arc::new(SingleUpstream(backend)))
        .with_drain(graceful.drain());
    let model = ThreadPerConnection::new(args.max_connections);
    graceful.serve(listener, &model, Arc::new(relay), DEFAULT_SHUTDOWN_TIMEOUT)
}
