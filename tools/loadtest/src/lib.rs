//! The load tester: `loadtest URL` measures one server, `loadtest compare` measures every
//! stage of the course side by side.
//!
//! How it measures:
//! - Closed loop (default): `-c` connections each send a request, wait for the whole
//!   response, send the next. Throughput is what the server sustains at that concurrency;
//!   latency is per request. Over plain HTTP, `--threads` event loops drive the connections
//!   ([`event_loop`], one epoll set each, like wrk), so the tester costs little CPU per
//!   request; over TLS each connection has its own blocking thread.
//! - Open loop (`--rate R`): request `i` is due at `start + i/R` whatever the server does,
//!   and its latency counts from that due time ([`schedule`]), so a stalling server cannot
//!   hide its stalls by slowing the tester down (coordinated omission).
//! - Latencies go into an HDR histogram (µs, 3 significant digits, [`stats`]); the report
//!   ([`report`]) gives percentiles, a small histogram, status codes, errors by kind, and how
//!   responses spread over backends by their `X-Backend-Server` header.
//!
//! Module map: [`cli`] flags; [`target`] URL and the loopback-only rule; [`request`] the
//! request bytes; [`client`] one blocking HTTP/1.1 connection; [`response`] its response
//! framing; [`loop_conn`] one connection of the event loop, [`decoder`] its incremental
//! response framing, [`epoll`] its system calls; [`error`] failure kinds; [`run`] the engines; [`progress`] the live line; [`report`] text
//! and JSON; [`compare`] and [`procs`] start and measure the stages, [`proc_cpu`] reads what
//! each spent from `/proc`; [`cell`] is one measurement;
//! [`svg`] draws the comparison chart.
//!
//! Known limits: one request in flight per connection (no pipelining); requests in flight
//! when `-z` ends are waited for (up to `--timeout`) and counted; HTTP/1.1 only (plain or TLS);
//! the event-loop engine is Linux only (epoll).

pub mod cell;
pub mod cli;
pub mod client;
pub mod compare;
pub mod decoder;
pub mod epoll;
pub mod error;
pub mod event_loop;
pub mod loop_conn;
pub mod proc_cpu;
pub mod procs;
pub mod progress;
pub mod report;
pub mod request;
pub mod response;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod svg;
pub mod target;
pub mod tls;

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;

use cli::RunArgs;
use report::Report;
use request::build_request;
use run::{RunConfig, RunError};
use target::TargetError;
use tls::TlsClient;

/// When neither `-n` nor `-z` is given (as in hey).
pub const DEFAULT_REQUESTS: u64 = 200;

/// Why the load tester could not do its job, and the exit code that says so.
#[derive(Debug)]
pub enum LoadtestError {
    Target(TargetError),
    BodyFile {
        path: String,
        source: std::io::Error,
    },
    /// The TLS client cannot be set up (`--cacert` unreadable, neither it nor `--insecure`).
    Tls(String),
    Run(RunError),
    Compare(compare::CompareError),
}

impl LoadtestError {
    /// 2 for arguments that cannot work, 1 for everything that went wrong while trying.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadtestError::Target(_) | LoadtestError::BodyFile { .. } | LoadtestError::Tls(_) => 2,
            LoadtestError::Run(_) | LoadtestError::Compare(_) => 1,
        }
    }
}

impl fmt::Display for LoadtestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadtestError::Target(e) => e.fmt(f),
            LoadtestError::BodyFile { path, source } => {
                write!(f, "cannot read --body-file {path}: {source}")
            }
            LoadtestError::Tls(why) => f.write_str(why),
            LoadtestError::Run(e) => e.fmt(f),
            LoadtestError::Compare(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadtestError {}

impl From<TargetError> for LoadtestError {
    fn from(e: TargetError) -> Self {
        LoadtestError::Target(e)
    }
}

impl From<RunError> for LoadtestError {
    fn from(e: RunError) -> Self {
        LoadtestError::Run(e)
    }
}

impl From<compare::CompareError> for LoadtestError {
    fn from(e: compare::CompareError) -> Self {
        LoadtestError::Compare(e)
    }
}

/// `loadtest URL`: runs the load and returns the report (text, or JSON with `--json`).
pub fn run_command(args: &RunArgs, stop: &AtomicBool) -> Result<String, LoadtestError> {
    let url = args.url.as_deref().unwrap_or_default();
    let target = target::parse(url, args.allow_remote)?;
    let body = match (&args.data, &args.body_file) {
        (Some(data), _) => data.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path).map_err(|source| LoadtestError::BodyFile {
            path: path.display().to_string(),
            source,
        })?,
        (None, None) => Vec::new(),
    };
    let keepalive = !args.no_keepalive;
    let request = build_request(
        &args.method,
        &target.host_header,
        &target.path,
        &args.headers,
        &body,
        keepalive,
    );
    let requests = match (args.requests, args.duration) {
        (None, None) => Some(DEFAULT_REQUESTS),
        (n, _) => n,
    };
    let config = RunConfig {
        addr: target.addr,
        request,
        head_request: args.method == "HEAD",
        concurrency: args.concurrency as usize,
        keepalive,
        requests,
        duration: args.duration,
        rate: args.rate,
        timeout: args.timeout,
        threads: args.threads.map(|n| n as usize),
        progress: std::io::stderr().is_terminal(),
        tls: match target.tls {
            true => Some(TlsClient::new(&target.host, &args.tls).map_err(LoadtestError::Tls)?),
            false => None,
        },
    };
    let outcome = run::run(&config, stop)?;
    let report = Report::new(&target.url, &args.method, &config, &outcome);
    Ok(if args.json {
        report.to_json()
    } else {
        report.to_text()
    })
}
