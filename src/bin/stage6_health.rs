//! Stage 6: a TOML configuration, health checks, and failover.
//!
//! C counterpart: none. Stage 5 sent requests to a dead backend until it answered again; here
//! a background thread probes every server (`GET /health` every `interval_ms`), real requests
//! count too (a refused connection or a timeout is a failure), and a server that fails `fall`
//! times in a row gets no traffic until it succeeds `rise` times. A request whose backend
//! cannot be reached goes to the next healthy one; when none is left the client gets 503 with
//! `Retry-After`.
//!
//! Run: `backends/launch.sh 3`, then `cargo run --bin stage6 -- --config proxy.example.toml
//! --debug`; or add `--demo` to start the backends inside the proxy. Check a file without
//! starting anything: `cargo run --bin stage6 -- -t --config proxy.example.toml`.
//!
//! Signals (stage 6 on): `SIGTERM`/`SIGINT` drain and exit 0, `SIGHUP` reloads the file,
//! `SIGUSR1` reopens `[log] access_log` (see `revproxy::lifecycle`).
//!
//! Known limits: one upstream (routing by host and path comes in stage 9). Once a request
//! reached a backend, it goes to another only if it is replayable (an idempotent method, no
//! body) and the backend closed without a byte of answer; a timeout is a 504, never a retry.

use std::process::ExitCode;

use clap::Parser;
use revproxy::launch::{self, ConfigArgs};
use revproxy::relay::NoPhases;

/// Stage 6 of revproxy: a TOML config, health checks and failover.
#[derive(Debug, Parser)]
#[command(name = "stage6", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    launch::main("stage6", &args.config, |_| Ok(()), |_, _| Ok(NoPhases))
}
