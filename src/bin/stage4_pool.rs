//! Stage 4: a fixed pool of worker threads (the `threadpool` crate) behind a bounded queue.
//!
//! C counterpart: none; the C course stopped at a thread per connection. The pool costs the
//! same however many clients come: `--workers` threads, `--queue` connections waiting, and
//! `503` with `Retry-After: 1` beyond that, so an overload is refused at once instead of
//! growing a queue without end. A worker serves one request at a time; an idle keep-alive
//! connection is parked with a `poll(2)` thread until its next request arrives, so idle
//! clients never hold a worker (`--keep-alive hold` shows the naive pool that does; see
//! `revproxy::server::pool` and `chapters/04-thread-pool.md`).
//!
//! Run: `cargo run --bin stage4 -- --demo`, then `curl -i http://127.0.0.1:8080/`.
//!
//! Known limits: reads and writes still block, so a client that sends its head slowly, or
//! reads its response slowly, holds a worker until the timeouts end it, and `--workers` slow
//! clients stall the pool. One backend only; stage 5 balances several.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::cli::{self, PoolArgs, ServerArgs, SingleBackendArgs, TuningArgs};
use revproxy::lifecycle::graceful::Graceful;
use revproxy::server;
use revproxy::server::pool::Pool;
use revproxy::tuning::DEFAULT_SHUTDOWN_TIMEOUT;
use revproxy::upstream::SingleUpstream;

/// Stage 4 of revproxy: a fixed thread pool with a bounded queue, one backend.
#[derive(Debug, Parser)]
#[command(name = "stage4", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    backend: SingleBackendArgs,

    #[command(flatten)]
    pool: PoolArgs,

    #[command(flatten)]
    tuning: TuningArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.server.log_level);
    cli::exit_with("stage4", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    // First, before any thread starts: SIGTERM and SIGINT then drain rather than kill.
    let graceful = Graceful::start()?;
    let (backend, _demo) = args.backend.start()?;
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    let mut tuning = args.tuning.tuning();
    args.pool.apply(&mut tuning);
    let model = Pool::new(&tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    cli::announce("stage4", &listener, &[backend])?;
    let relay = tuning
        .relay(Arc::new(SingleUpstream(backend)))
        .with_drain(graceful.drain());
    graceful.serve(listener, &model, Arc::new(relay), DEFAULT_SHUTDOWN_TIMEOUT)
}
