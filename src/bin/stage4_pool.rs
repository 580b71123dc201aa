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
use revproxy::cli::{self, PoolArgs, ServerArgs, TuningArgs};
use revproxy::relay::Relay;
use revproxy::server;
use revproxy::server::pool::Pool;
use revproxy::upstream::{Connector, SingleUpstream};

/// Stage 4 of revproxy: a fixed thread pool with a bounded queue, one backend.
#[derive(Debug, Parser)]
#[command(name = "stage4", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// The backend to forward to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    backend: String,

    /// Start a demo backend on the --backend address first, so nothing else is needed.
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
    cli::exit_with("stage4", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    let demo = args
        .demo
        .then(|| cli::start_demo_backends(&[args.backend.as_str()]))
        .transpose()?;
    let backend = match &demo {
        Some(started) => started[0].addr(),
        None => cli::resolve(&args.backend)?,
    };
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    let model =
        Pool::new(&args.pool.pool_config()).map_err(|e| format!("cannot start the pool: {e}"))?;
    cli::announce("stage4", &listener, &[backend])?;
    let connector = Connector::new(args.tuning.upstream_timeouts());
    let relay = Relay::new(
        args.tuning.relay_config(),
        Arc::new(SingleUpstream(backend)),
        connector,
    );
    server::serve(&listener, &model, Arc::new(relay));
    Ok(())
}
