//! loadtest: the load generator that ships with the course, and `loadtest compare`, which
//! starts the demo backends and each stage in turn and measures them side by side. It has no
//! counterpart in the C course (which measured with ab by hand).
//!
//! Run: `cargo run --release --bin loadtest -- -c 16 -z 10s http://127.0.0.1:8080/`, or
//! `cargo build --release --workspace && target/release/loadtest compare`.
//!
//! Limits: plain HTTP/1.1, one request in flight per connection, loopback targets unless
//! `--allow-remote`. See the `loadtest` library (`tools/loadtest/src/lib.rs`) for how it measures.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use loadtest::cli::{Cli, Command};
use loadtest::{compare, LoadtestError};

fn main() -> ExitCode {
    // Usage errors print clap's message and exit with code 2.
    let cli = Cli::parse();

    // Ctrl-C and SIGTERM only set a flag: the run stops starting requests and unwinds, so
    // the report is still printed and every child process guard in `compare` runs.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("loadtest: warning: Ctrl-C will not stop cleanly: {e}");
    }

    let result = match &cli.command {
        Some(Command::Compare(args)) => {
            compare::run_command(args, &stop).map_err(LoadtestError::from)
        }
        None => loadtest::run_command(&cli.run, &stop).map(|report| println!("{report}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
