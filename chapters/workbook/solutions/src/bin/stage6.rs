//! Stage 6: a TOML configuration file, and active health checks: every server is probed
//! (`GET /health`) each interval; `fall` failures in a row take it out of the rotation, `rise`
//! successes bring it back. Requests go round robin over the healthy servers only.
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage6 -- --config proxy.toml`, with the
//! keys of `proxy.example.toml` that `Config` below lists. A broken file exits 78 with its name,
//! line and column. Known limit: only active checks; a failure seen by a real request does not
//! count against a server (the reference's stage 6 counts both).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use workbook_solutions::http::{self, Error};
use workbook_solutions::{bind, init_logging, pool, resolve, Args};

const USAGE: &str = "usage: solution-stage6 --config FILE [--log-level LEVEL]";

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
fn load(path: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let config: Config = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        let line = text[..at].matches('\n').count() + 1;
        let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{path}:{line}:{column}: {}", e.message())
    })?;
    match config.upstreams.values().next() {
        None => Err(format!("{path}: no [upstreams.NAME] table")),
        Some(u) if u.servers.is_empty() => Err(format!("{path}: the upstream has no servers")),
        Some(u)
            if u.health
                .as_ref()
                .is_some_and(|h| h.rise == 0 || h.fall == 0 || h.interval_ms == 0) =>
        {
            Err(format!("{path}: health: rise, fall and interval_ms must be above 0"))
        }
        Some(_) => Ok(config),
    }
}

/// A server and whether its health checks currently pass.
struct Origin {
    addr: SocketAddr,
    healthy: AtomicBool,
}

/// Round robin over the healthy servers.
struct Balancer {
    servers: Vec<Origin>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Balancer {
    /// Connects to the next healthy server that accepts; 503 when none is healthy, 502 when
    /// none of the healthy ones accepts.
    fn connect(&self) -> Result<TcpStream, Error> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.servers.len();
        let healthy = (0..n)
            .map(|i| &self.servers[(first + i) % n])
            .filter(|s| s.healthy.load(Ordering::Relaxed));
        let mut tried = false;
        for server in healthy {
            tried = true;
            match http::connect(server.addr, self.timeout) {
                Ok(stream) => return Ok(stream),
                Err(_) => {
                    log::warn!("{} refused the connection; trying the next server", server.addr)
                }
            }
        }
        Err(Error::Status(if tried { 502 } else { 503 }))
    }
}

/// One probe: `GET path` answered 2xx or 3xx within `timeout`.
fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else { return false };
    let _ = (stream.set_read_timeout(Some(timeout)), stream.set_write_timeout(Some(timeout)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut status = [0u8; 12]; // "HTTP/1.1 200"
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut status).is_ok()
        && status.starts_with(b"HTTP/1.")
        && matches!(status[9], b'2' | b'3')
}

/// Probes `balancer.servers[i]` every interval, for as long as the program runs.
fn check_health(balancer: &Balancer, i: usize, health: &Health) {
    let server = &balancer.servers[i];
    let (mut successes, mut failures) = (0, 0);
    loop {
        if probe(server.addr, &health.path, Duration::from_millis(health.timeout_ms)) {
            (successes, failures) = (successes + 1, 0);
        } else {
            (successes, failures) = (0, failures + 1);
        }
        let healthy = server.healthy.load(Ordering::Relaxed);
        if healthy && failures >= health.fall {
            log::warn!("{} is down after {failures} failed checks", server.addr);
            server.healthy.store(false, Ordering::Relaxed);
        } else if !healthy && successes >= health.rise {
            log::info!("{} is back after {successes} passed checks", server.addr);
            server.healthy.store(true, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(health.interval_ms));
    }
}

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let Some(path) = args.config else {
        eprintln!("error: --config FILE is required\n{USAGE}");
        exit(2)
    };
    let config = load(&path).unwrap_or_else(|e| {
        eprintln!("solution-stage6: {e}");
        exit(78)
    });
    let (_, upstream) = config.upstreams.into_iter().next().expect("load checked one upstream");
    let servers = upstream
        .servers
        .iter()
        .map(|s| resolve(s).map(|addr| Origin { addr, healthy: AtomicBool::new(true) }));
    let servers = servers.collect::<Result<Vec<_>, _>>().unwrap_or_else(|e| {
        eprintln!("solution-stage6: {path}: {e}");
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
