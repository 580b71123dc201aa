//! Stage 6: a TOML configuration, health checks, and failover.
//!
//! C counterpart: none. Stage 5 sent requests to a dead backend until it answered again; here
//! a background thread probes every server (`GET /health` every `interval_ms`), real requests
//! count too (a refused connection or a timeout is a failure), and a server that fails `fall`
//! times in a row gets no traffic until it succeeds `rise` times. A request whose backend
//! cannot be reached goes to the next healthy one; when none is left the client gets 503 with
//! `Retry-After`.
//!
//! Run: `cargo run --bin stage6 -- --config proxy.example.toml --debug` (start backends first
//! with `backends/launch.sh 3`), or `--demo` to start them inside the proxy. Check a file
//! without starting anything: `cargo run --bin stage6 -- -t --config proxy.example.toml`.
//!
//! Known limits: one upstream (routing by host and path comes in stage 9); a request is never
//! retried once its bytes reached a backend (safe for POSTs, but a GET that times out is not
//! tried elsewhere either).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use revproxy::balancer::Balancer;
use revproxy::config::{self, Settings};
use revproxy::health::{HealthChecker, HealthTable};
use revproxy::relay::{ClientTimeouts, Relay, RelayConfig};
use revproxy::server::{self, pool::Pool, pool::PoolConfig};
use revproxy::upstream::{Connector, UpstreamTimeouts};
use revproxy::{cli, dashboard};

/// Exit code for a configuration error (EX_CONFIG in sysexits.h, as nginx users expect).
const EXIT_CONFIG: u8 = 78;

/// Stage 6 of revproxy: a TOML config, health checks and failover.
#[derive(Debug, Parser)]
#[command(name = "stage6", version)]
struct Args {
    /// The configuration file (see proxy.example.toml for every key).
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
            summary(&settings)
        );
        return ExitCode::SUCCESS;
    }
    // The live table and per-request access lines would fight over the terminal.
    let default_level = if args.debug {
        log::LevelFilter::Warn
    } else {
        settings.log_level
    };
    cli::init_logging(args.log_level.unwrap_or(default_level));
    cli::exit_with("stage6", run(&args, settings))
}

fn summary(s: &Settings) -> String {
    let health = s
        .upstream
        .health
        .as_ref()
        .map_or("no health checks".to_owned(), |h| {
            format!(
                "health checks every {:?}, rise {}, fall {}",
                h.interval, h.rise, h.fall
            )
        });
    format!(
        "upstream {}: {} servers, {}, {health}",
        s.upstream.name,
        s.upstream.servers.len(),
        s.upstream.strategy
    )
}

fn run(args: &Args, mut settings: Settings) -> Result<(), String> {
    let up = &mut settings.upstream;
    let addrs: Vec<String> = up.servers.iter().map(|s| s.addr.to_string()).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let demo = args
        .demo
        .then(|| cli::start_demo_backends(&addrs))
        .transpose()?;
    for (spec, backend) in up.servers.iter_mut().zip(demo.iter().flatten()) {
        spec.addr = backend.addr();
    }
    let listener = server::bind(args.listen.as_deref().unwrap_or(&settings.listen))
        .map_err(|e| e.to_string())?;
    let pool = Pool::new(&PoolConfig {
        workers: settings.workers,
        queue: settings.queue,
        ..PoolConfig::default()
    })
    .map_err(|e| format!("cannot start the pool: {e}"))?;
    let up = &settings.upstream;
    let server_addrs: Vec<_> = up.servers.iter().map(|s| s.addr).collect();
    cli::announce("stage6", &listener, &server_addrs)?;

    let strategy = up.strategy.build(up.servers.len(), None);
    let (balancer, _checker) = match &up.health {
        Some(health) => {
            let table = Arc::new(HealthTable::new(
                &up.name,
                &server_addrs,
                health.rise,
                health.fall,
            ));
            let balancer = Arc::new(Balancer::with_eligibility(
                &up.servers,
                strategy,
                Box::new(Arc::clone(&table)),
            ));
            let checker = HealthChecker::start(Arc::clone(&table), health.clone())
                .map_err(|e| format!("cannot start health checks: {e}"))?;
            if args.debug {
                dashboard::spawn(up.name.clone(), table, Arc::clone(&balancer))
                    .map_err(|e| format!("cannot start the --debug table: {e}"))?;
            }
            (balancer, Some(checker))
        }
        None => (Arc::new(Balancer::new(&up.servers, strategy)), None),
    };
    let relay_config = RelayConfig {
        limits: revproxy::http::Limits {
            max_body: settings.max_body_bytes,
            ..Default::default()
        },
        client: ClientTimeouts {
            idle: settings.idle_timeout,
            head: settings.header_timeout,
            ..ClientTimeouts::default()
        },
        retries: up.retries,
        ..RelayConfig::default()
    };
    let connector = Connector::new(UpstreamTimeouts {
        connect: up.connect_timeout,
        read: up.read_timeout,
        write: up.read_timeout,
    });
    let relay = Relay::new(relay_config, balancer, connector);
    server::serve(&listener, &pool, Arc::new(relay));
    Ok(())
}
