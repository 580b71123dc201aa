//! Stage 1: a forwarder that serves one client connection at a time.
//!
//! C counterpart: `Reverse_Proxy.c`, done right. The C version read a request with a single
//! `read()` into 4 KiB, so a request split over two packets, a response over 4 KiB, a
//! keep-alive backend or a chunked body all broke it. This stage frames every message
//! (Content-Length, chunked, until-close), keeps client and backend connections alive, and
//! answers bad input with a status code.
//!
//! Run: `cargo run --bin stage1 -- --demo`, then `curl -i http://127.0.0.1:8080/`.
//!
//! Known limit (the lesson of this stage): connections are served in turn, so while one client
//! holds its keep-alive connection, a second client waits. Stage 2 fixes that.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::cli::{self, ServerArgs, SingleBackendArgs, TuningArgs};
use revproxy::server::{self, Sequential};
use revproxy::upstream::SingleUpstream;

/// Stage 1 of revproxy: one connection at a time, one backend.
#[derive(Debug, Parser)]
#[command(name = "stage1", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    backend: SingleBackendArgs,

    #[command(flatten)]
    tuning: TuningArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.server.log_level);
    cli::exit_with("stage1", run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    let (backend, _demo) = args.backend.start()?;
    let listener = server::bind(&args.server.listen).map_err(|e| e.to_string())?;
    cli::announce("stage1", &listener, &[backend])?;
    let relay = args
        .tuning
        .tuning()
        .relay(Arc::new(SingleUpstream(backend)));
    server::serve(&listener, &Sequential, Arc::new(relay));
    Ok(())
}
