//! Flags every stage shares, and turning them into library settings.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::http::Limits;
use crate::relay::{ClientPolicy, ClientTimeouts};
use crate::server::pool::{KeepAlive, PoolConfig};
use crate::tuning::{self, Tuning};
pub use crate::upstream::resolve;
use crate::upstream::GroupPolicy;

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

/// Timeouts and limits, with nginx's defaults unless noted (`tuning` names them).
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// Longest wait to connect to a backend.
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_CONNECT_TIMEOUT))]
    pub connect_timeout: Span,

    /// Longest wait for each read from a backend, the response head included (-> 504).
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_UPSTREAM_TIMEOUT))]
    pub upstream_timeout: Span,

    /// Longest a client may take to send a request head, once it started (-> 408).
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: Span,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_IDLE_TIMEOUT))]
    pub idle_timeout: Span,

    /// Longest pause while a client sends a request body (-> 408).
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_BODY_TIMEOUT))]
    pub body_timeout: Span,

    /// Longest a write to a client may block; also the window over which --min-send-rate is
    /// averaged.
    #[arg(long, value_name = "DURATION", default_value_t = Span(tuning::DEFAULT_SEND_TIMEOUT))]
    pub send_timeout: Span,

    /// Slowest a client may read a response, in bytes per second over each --send-timeout of
    /// waiting for it, before it is cut off (0: no minimum); suffixes k, m, g.
    #[arg(long, value_name = "SIZE", default_value_t = Size(tuning::DEFAULT_MIN_SEND_RATE))]
    pub min_send_rate: Size,

    /// Largest request body accepted (-> 413); suffixes k, m, g.
    #[arg(long, value_name = "SIZE", default_value_t = Size(tuning::DEFAULT_MAX_BODY))]
    pub max_body_size: Size,

    /// Forward request header fields whose name holds an underscore (dropped by default, as
    /// nginx does: CGI-style backends read X_Foo as X-Foo).
    #[arg(long)]
    pub underscores_in_headers: bool,

    /// Forward TRACE requests (answered 405 by default: cross-site tracing).
    #[arg(long)]
    pub allow_trace: bool,
}

impl TuningArgs {
    /// The settings these flags give, the rest at their defaults.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            client: ClientPolicy {
                timeouts: ClientTimeouts {
                    idle: self.idle_timeout.0,
                    head: self.header_timeout.0,
                    body: self.body_timeout.0,
                    write: self.send_timeout.0,
                    min_send_rate: self.min_send_rate.0,
                },
                limits: Limits {
                    max_body: self.max_body_size.0,
                    ..Limits::default()
                },
                underscores_in_headers: self.underscores_in_headers,
                allow_trace: self.allow_trace,
            },
            upstream: GroupPolicy {
                connect_timeout: self.connect_timeout.0,
                read_timeout: self.upstream_timeout.0,
                ..GroupPolicy::default()
            },
            ..Tuning::default()
        }
    }
}

/// The worker pool of stage 4 (and of the stages built on it).
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Worker threads serving requests.
    #[arg(long, value_name = "N", default_value_t = tuning::DEFAULT_WORKERS, value_parser = parse_count)]
    pub workers: usize,

    /// Connections waiting for a worker before new ones are refused with 503.
    #[arg(long, value_name = "N", default_value_t = tuning::DEFAULT_QUEUE, value_parser = parse_count)]
    pub queue: usize,

    /// What a worker does with an idle keep-alive connection: park it until its next request
    /// arrives, or hold it (the naive pool, kept for comparison).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = KeepAlive::Park)]
    pub keep_alive: KeepAlive,
}

impl PoolArgs {
    /// Sets the pool part of `tuning` from these flags.
    pub fn apply(&self, tuning: &mut Tuning) {
        tuning.pool = PoolConfig {
            workers: self.workers,
            queue: self.queue,
            keep_alive: self.keep_alive,
            ..PoolConfig::default()
        };
    }
}

/// A duration flag: parsed by [`parse_duration`], shown as `5s` or `250ms` in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(text: &str) -> Result<Span, String> {
        parse_duration(text).map(Span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A size flag: parsed by [`parse_size`], shown as `1m` or `64k` in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Size, String> {
        parse_size(text).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match () {
            _ if n >= 1 << 30 && n.is_multiple_of(1 << 30) => write!(f, "{}g", n >> 30),
            _ if n >= 1 << 20 && n.is_multiple_of(1 << 20) => write!(f, "{}m", n >> 20),
            _ if n >= 1 << 10 && n.is_multiple_of(1 << 10) => write!(f, "{}k", n >> 10),
            _ => write!(f, "{n}"),
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

    /// Every flag of `TuningArgs`, set away from its default, reaches the part that reads it.
    #[test]
    fn every_tuning_flag_reaches_its_part() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            tuning: TuningArgs,
        }
        let flags = <Flags as clap::Parser>::try_parse_from([
            "stage",
            "--connect-timeout=1s",
            "--upstream-timeout=2s",
            "--header-timeout=3s",
            "--idle-timeout=4s",
            "--body-timeout=5s",
            "--send-timeout=6s",
            "--min-send-rate=7",
            "--max-body-size=8",
            "--underscores-in-headers",
            "--allow-trace",
        ])
        .unwrap();
        let tuning = flags.tuning.tuning();
        let s = Duration::from_secs;
        let upstream = tuning.connector().timeouts();
        assert_eq!(
            (upstream.connect, upstream.read, upstream.write),
            (s(1), s(2), s(2))
        );
        let relay = tuning.relay_config();
        let client = relay.client.timeouts;
        assert_eq!(
            (client.head, client.idle, client.body, client.write),
            (s(3), s(4), s(5), s(6))
        );
        assert_eq!(client.min_send_rate, 7);
        assert_eq!(relay.client.limits.max_body, 8);
        assert!(relay.client.underscores_in_headers && relay.client.allow_trace);
        let defaults = <Flags as clap::Parser>::try_parse_from(["stage"]).unwrap();
        assert_eq!(defaults.tuning.tuning(), Tuning::default());
    }

    #[test]
    fn flag_defaults_show_as_they_are_typed() {
        assert_eq!(Span(Duration::from_secs(75)).to_string(), "75s");
        assert_eq!(Span(Duration::from_millis(250)).to_string(), "250ms");
        assert_eq!(Size(1 << 20).to_string(), "1m");
        assert_eq!(Size(3000).to_string(), "3000");
        for shown in ["5s", "250ms", "75s"] {
            assert_eq!(shown.parse::<Span>().unwrap().to_string(), shown);
        }
        assert_eq!("64k".parse::<Size>().unwrap().to_string(), "64k");
    }
}
