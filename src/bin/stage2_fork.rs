//! Stage 2: a process per connection.
//!
//! C counterpart: `fork_proxy.c`, done right. The C version never reaped its children (a
//! zombie per connection until the process table filled) and forked without limit. Here a
//! `SIGCHLD` handler reaps every child, parent and child each close the socket they do not
//! need, a child leaves with `_exit` (even on a panic), and at `--max-children` the proxy
//! waits for a child to end before forking again (`revproxy::server::fork`).
//!
//! Forking a process that has threads is unsafe: the child inherits every lock but only one
//! thread, so a lock another thread held (malloc's, stdout's) never unlocks in the child. This
//! proxy stays single-threaded (`revproxy::sys::fork` refuses otherwise), which is why
//! `--demo` runs its backends, which use threads, in a process of their own, forked first.
//!
//! Run: `cargo run --bin stage2 -- --demo`, then `curl -i http://127.0.0.1:8080/`.
//!
//! Known limits: a fork per connection costs far more than a thread, and each child's
//! upstream connections die with it, so backend connections are never reused across clients.
//! Stage 3 uses threads.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::cli::{self, ServerArgs, TuningArgs};
use revproxy::server;
use revproxy::server::fork::{self, ForkPerConnection, DEFAULT_MAX_CHILDREN};
use revproxy::upstream::SingleUpstream;

/// Stage 2 of revproxy: a process per connection, one backend.
#[derive(Debug, Parser)]
#[command(name = "stage2", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// The backend to forward to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    backend: String,

    /// Start a demo backend (in its own process) on the --backend address first.
    #[arg(long)]
    demo: bool,

    /// Most connections served at once (one process each); further clients wait.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CHILDREN,
          value_parser = cli::parse_count)]
    max_children: usize,

    #[command(flatten)]
    tuning: TuningArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.server.log_level);
    cli::exit_with("stage2", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    // First, while this process has a single thread: the demo backends' process.
    let demo = args
        .demo
        .then(|| fork::start_demo_process(&[args.backend.as_str()]))
        .transpose()?;
    let backend = match &demo {
        Some(started) => started.addrs()[0],
        None => cli::resolve(&args.backend)?,
    };
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    let model = ForkPerConnection::new(&listener, args.max_children)
        .map_err(|e| format!("cannot install the SIGCHLD handler: {e}"))?;
    cli::announce("stage2", &listener, &[backend])?;
    let relay = args
        .tuning
        .tuning()
        .relay(Arc::new(SingleUpstream(backend)));
    server::serve(&listener, &model, Arc::new(relay));
    Ok(())
}
