//! Your proxy, stages 1 to 6. This file is given: flags, logging and the timeouts
//! every socket gets. The lesson is in `http.rs` (stage 1: where a message ends, streaming a
//! body, the statuses for bad input) and `pool.rs` (stage 4: a bounded pool and parked idle
//! connections); each stage's own part is in `src/bin/stageN.rs`.
//!
//! Flags (`-h` prints them): `--listen ADDR`, `--backend ADDR` (repeatable), `--workers N`,
//! `--queue N`, `--upstream-timeout 1500ms`, `--config FILE`, `--log-level LEVEL`, `-V`.
//! Exit codes: 0 ok, 2 usage error, 78 config error, 1 other failure.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::exit;
use std::time::Duration;

pub mod http;
pub mod pool;

/// How long a client may stay silent: an idle keep-alive connection, or a head that stalls.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a backend may take to accept a connection (-> 502).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each read from a backend may wait, the response head included (-> 504), unless
/// `--upstream-timeout` (or stage 6's `read_timeout_ms`) says otherwise.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line of every stage; each stage reads the flags it needs.
#[derive(Debug, Clone)]
pub struct Args {
    pub listen: String,
    pub backends: Vec<SocketAddr>,
    pub workers: usize,
    pub queue: usize,
    pub config: Option<String>,
    pub upstream_timeout: Duration,
    pub log_level: log::LevelFilter,
}

impl Args {
    /// Parses the command line; `-h` prints `usage`, `-V` the version, and both exit 0; a bad
    /// flag exits 2.
    pub fn parse(usage: &str) -> Args {
        let fail = |message: String| -> ! {
            eprintln!("error: {message}\n{usage}");
            exit(2)
        };
        let mut args = Args {
            listen: "127.0.0.1:8080".to_owned(),
            backends: Vec::new(),
            workers: 8,
            queue: 64,
            config: None,
            upstream_timeout: BACKEND_TIMEOUT,
            log_level: log::LevelFilter::Info,
        };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            match flag.as_str() {
                "-h" | "--help" => println!("{usage}"),
                "-V" | "--version" => println!("workbook {}", env!("CARGO_PKG_VERSION")),
                _ => {}
            }
            if ["-h", "--help", "-V", "--version"].contains(&flag.as_str()) {
                exit(0)
            }
            let value = words.next().unwrap_or_else(|| fail(format!("{flag} needs a value")));
            let number = || match value.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => fail(format!("{flag}: expected a number above 0, got {value:?}")),
            };
            match flag.as_str() {
                "--listen" => args.listen = value.clone(),
                "--backend" => args.backends.push(resolve(&value).unwrap_or_else(|e| fail(e))),
                "--workers" => args.workers = number(),
                "--queue" => args.queue = number(),
                "--config" => args.config = Some(value.clone()),
                "--upstream-timeout" => {
                    args.upstream_timeout = duration(&value).unwrap_or_else(|e| fail(e))
                }
                "--log-level" => {
                    args.log_level =
                        value.parse().unwrap_or_else(|_| fail(format!("bad level {value}")))
                }
                _ => fail(format!("unknown flag {flag}")),
            }
        }
        if args.backends.is_empty() {
            args.backends.push(resolve("127.0.0.1:8000").unwrap_or_else(|e| fail(e)));
        }
        args
    }
}

/// "1500ms", "2s" or "2" (seconds) as a duration.
pub fn duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 1),
        None => (text.strip_suffix('s').unwrap_or(text), 1000),
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n * scale)),
        _ => Err(format!("bad duration {text:?} (1500ms, 2s)")),
    }
}

/// The first address `addr` names ("127.0.0.1:8000", "localhost:8000").
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let mut all = addr.to_socket_addrs().map_err(|e| format!("{addr}: {e}"))?;
    all.next().ok_or_else(|| format!("{addr}: no address"))
}

/// Logs to stderr with UTC timestamps (local ones panic in threaded programs) and thread names.
/// A panic in any thread ends the program (exit 101) after its message: a `todo!()` reached
/// in a worker shows at once, instead of a proxy that hangs without it.
pub fn init_logging(level: log::LevelFilter) {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_utc_timestamps()
        .with_threads(true)
        .init();
    std::panic::set_hook(Box::new(|info| {
        // One line, the message with its place, so that a grader quoting the line or the last
        // lines of stderr shows the todo!() whole; then a backtrace if RUST_BACKTRACE asks.
        let at = info.location().map_or(String::new(), |l| l.to_string());
        let line = format!(
            "thread '{}' panicked at {at}: {}",
            thread_name(),
            info.payload_as_str().unwrap_or("?")
        );
        eprintln!("{line}");
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{trace}\n{line}");
        }
        exit(101)
    }));
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_owned()
}

/// Binds `addr` and says where it listens; a port in use ends the program (exit 1).
pub fn bind(stage: &str, addr: &str) -> TcpListener {
    match TcpListener::bind(addr).and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((local, listener)) => {
            log::info!("{stage} listening on {local}");
            listener
        }
        Err(e) => {
            eprintln!("{stage}: cannot listen on {addr}: {e}");
            exit(1)
        }
    }
}
