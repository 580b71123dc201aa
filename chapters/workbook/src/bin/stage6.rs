//! Stage 6: a TOML configuration file, and active health checks: every server is probed
//! (`GET /health`) each interval; `fall` failures in a row take it out of the rotation, `rise`
//! successes bring it back. Requests go round robin over the healthy servers only.
//!
//! Run: `cargo run --bin workbook-stage6 -- --config proxy.toml`, with the
//! keys of `proxy.example.toml` that `Config` below lists. A broken file exits 78 with its name,
//! line and column. Known limit: only active checks; a failure seen by a real request does not
//! count against a server (the reference's stage 6 counts both).
//!
//! You write `load`, `Balancer::connect`, `probe` and `check_health` (their `todo!()` says what, in
//! order); the rest is given. Stuck? `chapters/workbook/solutions/src/bin/stage6.rs` is one answer.

use std::collections::BTreeMap;
#[allow(unused_imports)] // used by the code you write
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::exit;
#[allow(unused_imports)] // used by the code you write
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
#[allow(unused_imports)] // used by the code you write
use workbook::http::{self, Error};
use workbook::{bind, init_logging, pool, resolve, Args};

const USAGE: &str = "usage: workbook-stage6 --config FILE [--log-level LEVEL]";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    server: Server,
    upstreams: BTreeMap<String, Upstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    listen: String,
    #[serde(default = "default_workers")]
    workers: usize,
    #[serde(default = "default_queue")]
    queue: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upstream {
    servers: Vec<String>,
    #[serde(default = "default_read_timeout")]
    read_timeout_ms: u64,
    health: Option<Health>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // used by the code you write
struct Health {
    path: String,
    interval_ms: u64,
    timeout_ms: u64,
    rise: u32,
    fall: u32,
}

fn default_workers() -> usize {
    8
}
fn default_queue() -> usize {
    64
}
fn default_read_timeout() -> u64 {
    10_000
}

/// Reads and checks `path`; a mistake is reported as `FILE:LINE:COLUMN: what`.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
fn load(path: &str) -> Result<Config, String> {
    // Read the file (an error names `path`), then `toml::from_str::<Config>`: on an error, turn
    // `e.span()` (a byte range) into a line and a column (count the '\n' before its start) and
    // return "PATH:LINE:COLUMN: {e.message()}". Then check what the types cannot: one
    // `[upstreams.NAME]` at least, with servers, and rise, fall, interval_ms above 0. Check: a
    // broken config is refused with its file and line.
    todo!("stage 6: write load in chapters/workbook/src/bin/stage6.rs (the config file, and errors with line and column); see chapters/06-health-checks.md#build-it-yourself")
}

/// A server and whether its health checks currently pass.
#[allow(dead_code)] // used by the code you write
struct Origin {
    addr: SocketAddr,
    healthy: AtomicBool,
}

/// Round robin over the healthy servers.
#[allow(dead_code)] // used by the code you write
struct Balancer {
    servers: Vec<Origin>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Balancer {
    /// Connects to the next healthy server that accepts; 503 when none is healthy, 502 when
    /// none of the healthy ones accepts.
    fn connect(&self) -> Result<TcpStream, Error> {
        // Stage 5's round robin, over the servers whose `healthy` is true only: none healthy is
        // `Error::Status(503)`; healthy ones that all refuse, 502. Check: a killed origin leaves
        // the rotation (no request waits on it) and comes back.
        todo!("stage 6: write Balancer::connect (round robin over the healthy servers); see chapters/06-health-checks.md#build-it-yourself")
    }
}

/// One probe: `GET path` answered 2xx or 3xx within `timeout`.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
#[allow(dead_code)] // used by the code you write
fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    // Connect with `timeout` (`TcpStream::connect_timeout`), set read and write timeouts, send "GET
    // {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", read the first 12 bytes
    // ("HTTP/1.1 200"): true when they start "HTTP/1." and the status starts with 2 or 3.
    todo!("stage 6: write probe (one health check); see chapters/06-health-checks.md#build-it-yourself")
}

/// Probes `balancer.servers[i]` every interval, for as long as the program runs.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
fn check_health(balancer: &Balancer, i: usize, health: &Health) {
    // Forever: probe, count successes and failures in a row (a success resets the failures and the
    // other way round); a healthy server with `fall` failures becomes unhealthy, an unhealthy one
    // with `rise` successes healthy again (store in `server.healthy`, log the change); sleep
    // `interval_ms`. Check: a killed origin leaves the rotation and comes back.
    todo!("stage 6: write check_health (rise and fall); see chapters/06-health-checks.md#build-it-yourself")
}

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let Some(path) = args.config else {
        eprintln!("error: --config FILE is required\n{USAGE}");
        exit(2)
    };
    let config = load(&path).unwrap_or_else(|e| {
        eprintln!("workbook-stage6: {e}");
        exit(78)
    });
    let (_, upstream) = config.upstreams.into_iter().next().expect("load checked one upstream");
    let servers = upstream
        .servers
        .iter()
        .map(|s| resolve(s).map(|addr| Origin { addr, healthy: AtomicBool::new(true) }));
    let servers = servers.collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| {
        eprintln!("workbook-stage6: {path}: {e}");
        exit(78)
    });
    let timeout = Duration::from_millis(upstream.read_timeout_ms);
    let balancer = Arc::new(Balancer { servers, next: AtomicUsize::new(0), timeout });
    let listener = bind("stage6", &config.server.listen);
    for i in 0..balancer.servers.len() {
        let (balancer, health) = (Arc::clone(&balancer), upstream.health.clone());
        let Some(health) = health else { break };
        thread::Builder::new()
            .name("health".into())
            .spawn(move || check_health(&balancer, i, &health))
            .expect("a health thread");
    }
    pool::serve(
        listener,
        config.server.workers,
        config.server.queue,
        Arc::new(move || balancer.connect()),
    );
}
