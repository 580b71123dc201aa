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
//! Known limits: one upstream (routing by host and path comes in stage 9). Once a request
//! reached a backend, it goes to another only if it is replayable (an idempotent method, no
//! body) and the backend closed without a byte of answer; a timeout is a 504, never a retry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::config::{self, Settings};
use revproxy::health::MonitoredUpstream;
use revproxy::server::{self, pool::Pool};
use revproxy::{cli, dashboard};

/// Exit code for a configuration error (EX_CONFIG in sysexits.h, as with nginx -t).
const EXIT_CONFIG: u8 = 78;

/// Stage 6 of revproxy: a TOML config, health checks and failover.
#[derive(Debug, Parser)]
#[command(name = "stage6", version)]
struct Args {
    /// The configuration file (proxy.example.toml lists every key).
    #[arg(long, value_name = "FILE", default_value = "proxy.toml")]
    config: PathBuf,

    /// Check the configuration and exit (0 if valid, 78 if not), like `nginx -t`.
    #[arg(short = 't', long)]
    check: bool,

    /// Listen here instead of the configured address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// Log level instead of the configured one.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,

    /// Show a live table of the servers' health on stderr.
    #[arg(long)]
    debug: bool,

    /// Start a demo backend on every configured server address first.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match config::load(&args.config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("stage6: configuration error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!(
            "{}: configuration is valid ({})",
            args.config.display(),
            settings.summary()
        );
        return ExitCode::SUCCESS;
    }
    // The live table and per-request access lines would fight over the terminal.
    let level = if args.debug {
        log::LevelFilter::Warn
    } else {
        settings.log_level
    };
    cli::init_logging(args.log_level.unwrap_or(level));
    cli::exit_with("stage6", run(&args, settings))
}

fn run(args: &Args, mut settings: Settings) -> Result<(), String> {
    let _demo = if args.demo {
        Some(cli::start_demo_for(&mut settings.upstream.servers)?)
    } else {
        None
    };
    let listen = args.listen.as_deref().unwrap_or(&settings.listen);
    let listener = server::bind(listen).map_err(|e| e.to_string())?;
    let pool =
        Pool::new(&settings.tuning.pool).map_err(|e| format!("cannot start the pool: {e}"))?;
    let addrs: Vec<_> = settings.upstream.servers.iter().map(|s| s.addr).collect();
    cli::announce("stage6", &listener, &addrs)?;
    let upstream = MonitoredUpstream::start(&settings.upstream)
        .map_err(|e| format!("cannot start health checks: {e}"))?;
    if let (true, Some(health)) = (args.debug, &upstream.health) {
        dashboard::spawn(
            settings.upstream.name.clone(),
            Arc::clone(health),
            Arc::clone(&upstream.balancer),
        )
        .map_err(|e| format!("cannot start the --debug table: {e}"))?;
    }
    let relay = settings.tuning.relay(upstream.balancer.clone());
    server::serve(&listener, &pool, Arc::new(relay));
    Ok(())
}
