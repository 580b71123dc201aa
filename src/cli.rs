//! Flags every stage shares, and turning them into library settings.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::http::Limits;
use crate::relay::{ClientTimeouts, RelayConfig};
use crate::server::pool::{self, KeepAlive, PoolConfig};
use crate::upstream::UpstreamTimeouts;

/// Where to listen and how much to log.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to accept clients on (port 0 picks a free port and prints it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Diagnostics level: error, warn, info (includes the access log), debug, trace, off.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: log::LevelFilter,
}

/// `--backend` and `--demo` of the stages with one backend (1, 3 and 4).
#[derive(Debug, Args)]
pub struct SingleBackendArgs {
    /// The backend to forward to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub backend: String,

    /// Start a demo backend on the --backend address first, so nothing else is needed.
    #[arg(long)]
    pub demo: bool,
}

impl SingleBackendArgs {
    /// The backend's address, after starting the in-process demo backend when `--demo` asks
    /// for it; keep the returned backends alive as long as the proxy runs.
    pub fn start(&self) -> Result<(SocketAddr, Vec<backends::Backend>), String> {
        if !self.demo {
            return Ok((resolve(&self.backend)?, Vec::new()));
        }
        let started = start_demo_backends(&[self.backend.as_str()])?;
        Ok((started[0].addr(), started))
    }
}

/// Timeouts and limits, with nginx's defaults unless noted.
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// Longest wait to connect to a backend.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest wait for each read from a backend, the response head included (-> 504).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Longest a client may take to send a request head, once it started (-> 408).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Largest request body accepted (-> 413); suffixes k, m, g.
    #[arg(long, value_name = "SIZE", default_value = "1m", value_parser = parse_size)]
    pub max_body_size: u64,
}

impl TuningArgs {
    /// A relay to `upstreams` with these timeouts and limits.
    pub fn relay(
        &self,
        upstreams: std::sync::Arc<dyn crate::upstream::Upstreams>,
    ) -> crate::relay::Relay {
        let connector = crate::upstream::Connector::new(self.upstream_timeouts());
        crate::relay::Relay::new(self.relay_config(), upstreams, connector)
    }

    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            limits: Limits {
                max_body: self.max_body_size,
                ..Limits::default()
            },
            client: ClientTimeouts {
                idle: self.idle_timeout,
                head: self.header_timeout,
                ..ClientTimeouts::default()
            },
            ..RelayConfig::default()
        }
    }

    pub fn upstream_timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect: self.connect_timeout,
            read: self.upstream_timeout,
            write: self.upstream_timeout,
        }
    }
}

/// The worker pool of stage 4 (and of the stages built on it).
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Worker threads serving requests.
    #[arg(long, value_name = "N", default_value_t = pool::DEFAULT_WORKERS, value_parser = parse_count)]
    pub workers: usize,

    /// Connections waiting for a worker before new ones are refused with 503.
    #[arg(long, value_name = "N", default_value_t = pool::DEFAULT_QUEUE, value_parser = parse_count)]
    pub queue: usize,

    /// What a worker does with an idle keep-alive connection: park it until its next request
    /// arrives, or hold it (the naive pool, kept for comparison).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = KeepAlive::Park)]
    pub keep_alive: KeepAlive,
}

impl PoolArgs {
    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            workers: self.workers,
            queue: self.queue,
            keep_alive: self.keep_alive,
            ..PoolConfig::default()
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h`, `1.5s`, or a bare number of seconds; more than zero (a zero
/// socket timeout is an error to the OS) and at most a week.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    if !(seconds > 0.0 && seconds <= 7.0 * 24.0 * 3600.0) {
        return Err(format!("'{text}' must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `512`, `64k`, `1m`, `2g` (binary units, as nginx reads them).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (number, factor) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("'{text}' is not a size like 512, 64k or 1m"))
}

/// A count of at least 1 (`--workers`, `--max-connections` and the like).
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// Resolves `host:port` to one socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    // Under `cargo fuzz` (which sets `--cfg fuzzing`) names are not looked up: the config
    // fuzzer would otherwise send a DNS query for every string it invents, and wait on each.
    #[cfg(fuzzing)]
    let found = addr.parse::<SocketAddr>().map(std::iter::once);
    #[cfg(not(fuzzing))]
    let found = std::net::ToSocketAddrs::to_socket_addrs(addr);
    found
        .map_err(|e| format!("cannot resolve '{addr}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address"))
}

/// Diagnostics on stderr with UTC timestamps (local time panics in threaded programs) and
/// thread names, which tell the concurrency models apart in the log.
pub fn init_logging(level: log::LevelFilter) {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_utc_timestamps()
        .with_threads(true)
        .init();
}

/// Runs a stage's main function and turns its error into a message and exit code 1.
pub fn exit_with(program: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Starts one demo backend per address (`--demo`), named b1, b2, ...
pub fn start_demo_backends(addrs: &[&str]) -> Result<Vec<backends::Backend>, String> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let options = backends::Options {
                name: format!("b{}", i + 1),
                ..backends::Options::default()
            };
            backends::Backend::start(addr, options).map_err(|e| {
                format!("cannot start a demo backend on {addr}: {e} (is something else using it? pass --backend 127.0.0.1:0 to pick a free port)")
            })
        })
        .collect()
}

/// `--demo` for stages with several backends: starts one demo backend per spec and points the
/// spec at it (an address with port 0 gets whatever free port the demo found).
pub fn start_demo_for(
    specs: &mut [crate::balancer::BackendSpec],
) -> Result<Vec<backends::Backend>, String> {
    let addrs: Vec<String> = specs.iter().map(|s| s.addr.to_string()).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let started = start_demo_backends(&addrs)?;
    for (spec, backend) in specs.iter_mut().zip(&started) {
        spec.addr = backend.addr();
    }
    Ok(started)
}

/// A backend listed twice would share one load counter between two entries, and make a
/// balancer's shares wrong; refuse it. (Port 0 is exempt: each `--demo` gets its own port.)
pub fn reject_duplicate_backends(specs: &[crate::balancer::BackendSpec]) -> Result<(), String> {
    for (i, spec) in specs.iter().enumerate() {
        if spec.addr.port() != 0 && specs[..i].iter().any(|s| s.addr == spec.addr) {
            return Err(format!("backend {} is listed twice", spec.addr));
        }
    }
    Ok(())
}

/// Prints the line scripts and tests wait for (`NAME listening on ADDR`), then the backends.
pub fn announce(
    program: &str,
    listener: &std::net::TcpListener,
    backends: &[SocketAddr],
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{program} listening on {addr}");
    for backend in backends {
        println!("{program} forwarding to {backend}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        for bad in ["", "s", "-1s", "10x", "1e3s", "9999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(65_536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_count("16"), Ok(16));
        assert!(parse_count("0").is_err());
        assert!(parse_count("-1").is_err());
    }
}
