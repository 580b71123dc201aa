//! One demo origin server, for trying the proxy by hand.
//!
//! ```text
//! cargo run -p backends -- --port 8000 --name b1 [--delay-ms 0] [--host 127.0.0.1] [--workers N]
//! ```
//!
//! Prints `backend NAME listening on http://HOST:PORT` once bound, then serves until killed.
//! `backends/launch.sh` starts several in the background; `backends/stop.sh` stops them.
//! Exit codes: 0 never (it runs until killed), 1 cannot listen, 2 usage error.

use std::process::ExitCode;

use backends::{Backend, Options};
use clap::Parser;

/// Demo origin server for revproxy: /, /health, /echo, /status/N, /bytes/N, /chunked, /slow,
/// /cacheable, /drop, /ws (WebSocket echo). Every response carries X-Backend-Server: NAME.
#[derive(Parser, Debug)]
#[command(name = "backends", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Name shown in X-Backend-Server and in bodies.
    #[arg(long, default_value = "b1", value_parser = parse_name)]
    name: String,
    /// Latency added before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Runtime threads [default: CPUs, at most 4]. Each serves any number of connections;
    /// more than 64 count as 64.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: Option<u16>,
}

fn parse_name(s: &str) -> Result<String, String> {
    let printable = s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if s.is_empty() || s.trim() != s || !printable {
        return Err("must be non-empty printable ASCII, no leading/trailing space".into());
    }
    Ok(s.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    // An IPv6 host needs brackets before the port.
    let addr = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]:{}", args.host, args.port)
    } else {
        format!("{}:{}", args.host, args.port)
    };
    let options = Options {
        name: args.name,
        delay_ms: args.delay_ms,
        workers: args
            .workers
            .map_or_else(backends::default_workers, usize::from),
    };
    let backend = match Backend::start(&addr, options) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("backends: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "backend {} listening on http://{}",
        backend.name(),
        backend.addr()
    );
    // The backend's runtime threads do everything; this one only keeps the process (and
    // `backend`) alive.
    // SIGINT and SIGTERM end the process with their default action.
    loop {
        std::thread::park();
    }
}
