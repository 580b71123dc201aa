//! The run: `c` connections until the request count or the duration is used up (or the
//! stop flag is set), driven by one of two engines:
//! - the event-loop engine ([`super::event_loop`]): `--threads` threads, each driving its
//!   share of the connections over epoll; for closed-loop runs against `http://` targets,
//!   where the tester must not be the bottleneck (a thread per connection pays a context
//!   switch per request, which on a shared core costs more than the request itself);
//! - a worker thread per connection, blocking ([`super::client`]): for TLS targets and for
//!   the open loop (`--rate`), whose workers sleep until each request's due time.
//!
//! Workers claim request numbers from one atomic counter, so `-n` is exact however fast
//! each worker is. In open loop the claimed number also fixes the due time (see
//! [`super::schedule`]). Requests already in flight when the duration ends are allowed to
//! finish: each is bounded by `--timeout`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::client::Client;
use super::event_loop::{self, LoopJob};
use super::progress::{self, Counters};
use super::schedule::{latency_from_due, Schedule};
use super::stats::{Stats, StatsError, LATE_START};
use super::tls::TlsClient;

/// Small stacks: a worker needs a few KiB, and `-c 1000` should not reserve 2 GiB.
const WORKER_STACK: usize = 256 * 1024;
/// Longest single sleep of an open-loop worker, so a stop request is noticed quickly.
const MAX_NAP: Duration = Duration::from_millis(50);

/// Everything a run needs, already validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub addr: SocketAddr,
    /// The complete request (head and body), sent as is by every worker.
    pub request: Vec<u8>,
    pub head_request: bool,
    pub concurrency: usize,
    pub keepalive: bool,
    /// At most this many requests.
    pub requests: Option<u64>,
    /// Stop starting requests after this long.
    pub duration: Option<Duration>,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Event-loop threads [default: the number of CPUs]; never more than connections.
    pub threads: Option<usize>,
    pub progress: bool,
    /// For an `https://` target.
    pub tls: Option<TlsClient>,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub stats: Stats,
    /// From the first request to the last response.
    pub elapsed: Duration,
    /// The stop flag ended the run early.
    pub interrupted: bool,
}

#[derive(Debug)]
pub enum RunError {
    /// The target refused or timed out before any load was sent.
    Unreachable {
        addr: SocketAddr,
        source: io::Error,
    },
    /// The target answered, but a TLS handshake with it failed (a certificate the client
    /// does not trust, a plain HTTP port).
    Handshake {
        addr: SocketAddr,
        source: io::Error,
    },
    Stats(StatsError),
    Spawn(io::Error),
    /// The event loop's epoll set failed (e.g. out of file descriptors).
    EventLoop(io::Error),
    WorkerPanicked,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Unreachable { addr, source } => {
                write!(f, "target {addr} is not reachable: {source}")
            }
            RunError::Handshake { addr, source } => write!(
                f,
                "TLS handshake with {addr} failed: {source} (is it a TLS port? does --cacert \
                 name the CA that signed its certificate?)"
            ),
            RunError::Stats(e) => e.fmt(f),
            RunError::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
            RunError::EventLoop(e) => write!(f, "event loop failed: {e}"),
            RunError::WorkerPanicked => f.write_str("a worker thread panicked"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<StatsError> for RunError {
    fn from(e: StatsError) -> Self {
        RunError::Stats(e)
    }
}

/// What the workers (or event loops) share, read-mostly.
struct Shared<'a> {
    config: &'a RunConfig,
    next: AtomicU64,
    limit: u64,
    deadline: Option<Instant>,
    schedule: Option<Schedule>,
    stop: &'a AtomicBool,
    /// Set by the run itself, e.g. when a worker could not be spawned.
    abort: AtomicBool,
    counters: Counters,
}

impl Shared<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed)
    }

    /// The number of the next request to send, or `None` when the run is over: the count
    /// is used up, the duration has passed, or the run was stopped.
    fn claim(&self) -> Option<u64> {
        if self.stopped() || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        // Closed loop without -n: the numbers matter to no one, so no shared counter is
        // bumped (its cache line would bounce between the threads on every request).
        if self.limit == u64::MAX && self.schedule.is_none() {
            return Some(0);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.limit).then_some(i)
    }
}

/// The event-loop engine applies: closed loop over plain HTTP.
pub fn uses_event_loop(config: &RunConfig) -> bool {
    config.tls.is_none() && config.rate.is_none()
}

/// How many event-loop threads drive `connections` connections.
pub fn loop_threads(config: &RunConfig, connections: usize) -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    config.threads.unwrap_or(cpus).clamp(1, connections.max(1))
}

/// Fails fast (exit code 1) when nothing listens, or when a TLS target's handshake fails,
/// instead of reporting a run of errors.
pub fn check_reachable(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Result<(), RunError> {
    let socket = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| RunError::Unreachable { addr, source })?;
    if let Some(tls) = tls {
        socket
            .set_read_timeout(Some(timeout))
            .and_then(|()| socket.set_write_timeout(Some(timeout)))
            .and_then(|()| tls.connect(socket).map(drop))
            .map_err(|source| RunError::Handshake { addr, source })?;
    }
    Ok(())
}

/// Runs the load. `stop` (set by Ctrl-C) ends it early; what was measured is still returned.
pub fn run(config: &RunConfig, stop: &AtomicBool) -> Result<RunOutcome, RunError> {
    check_reachable(config.addr, config.timeout, config.tls.as_ref())?;
    let start = Instant::now();
    let schedule = config.rate.map(|rate| Schedule::new(start, rate));
    let mut limit = config.requests.unwrap_or(u64::MAX);
    if let (Some(schedule), Some(duration)) = (&schedule, config.duration) {
        limit = limit.min(schedule.count_within(duration));
    }
    let shared = Shared {
        config,
        next: AtomicU64::new(0),
        limit,
        deadline: config.duration.map(|d| start + d),
        schedule,
        stop,
        abort: AtomicBool::new(false),
        counters: Counters::default(),
    };
    let connections =
        usize::try_from(limit).map_or(config.concurrency, |l| config.concurrency.min(l));
    // Each worker thread drives one connection; each event loop a share of them.
    let event_loop = uses_event_loop(config);
    let workers = match event_loop {
        true => loop_threads(config, connections),
        false => connections,
    };
    let mut per_worker = Vec::with_capacity(workers);
    for _ in 0..workers {
        per_worker.push(Stats::new()?);
    }
    let total = (limit != u64::MAX).then_some(limit);

    let claim = || shared.claim().is_some();
    let job = LoopJob {
        addr: config.addr,
        request: &config.request,
        head_request: config.head_request,
        keepalive: config.keepalive,
        timeout: config.timeout,
        counters: &shared.counters,
        claim: &claim,
    };
    let results = thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        if config.progress {
            let shared = &shared;
            scope.spawn(move || progress::draw_until(&done_rx, &shared.counters, total, start));
        }
        let mut handles = Vec::with_capacity(workers);
        let mut spawn_error = None;
        for (i, stats) in per_worker.into_iter().enumerate() {
            let (shared, job) = (&shared, &job);
            // Thread i's share: an even split, the first ones taking the remainder.
            let share = connections / workers + usize::from(i < connections % workers);
            let spawned = thread::Builder::new()
                .name(format!("loadtest-{i}"))
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, move || match event_loop {
                    true => event_loop::run_loop(job, share, stats).map_err(RunError::EventLoop),
                    false => Ok(worker(shared, stats)),
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    shared.abort.store(true, Ordering::Relaxed);
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        drop(done_tx);
        (joined, spawn_error)
    });
    let elapsed = start.elapsed();
    let (joined, spawn_error) = results;
    if let Some(e) = spawn_error {
        return Err(RunError::Spawn(e));
    }
    let mut stats = Stats::new()?;
    for result in joined {
        let worker_stats = result.map_err(|_| RunError::WorkerPanicked)??;
        stats.merge(&worker_stats)?;
    }
    Ok(RunOutcome {
        stats,
        elapsed,
        interrupted: stop.load(Ordering::Relaxed),
    })
}

fn worker(shared: &Shared<'_>, mut stats: Stats) -> Stats {
    let config = shared.config;
    let mut client = Client::new(
        config.addr,
        config.timeout,
        &config.request,
        config.head_request,
        config.keepalive,
    )
    .with_tls(config.tls.as_ref());
    // Bounded: by the request limit and/or the deadline; each request by the timeout.
    while let Some(i) = shared.claim() {
        let measure_from = match &shared.schedule {
            Some(schedule) => {
                let due = schedule.due(i);
                if !sleep_until(due, shared) {
                    break;
                }
                if Instant::now().saturating_duration_since(due) > LATE_START {
                    stats.late_starts += 1;
                }
                due
            }
            None => Instant::now(),
        };
        match client.send() {
            Ok(response) => {
                let latency = latency_from_due(measure_from, Instant::now());
                stats.record_response(
                    latency,
                    response.status,
                    response.body_bytes,
                    response.backend,
                );
                shared.counters.finished(false);
            }
            Err(e) => {
                stats.record_error(e.kind());
                shared.counters.finished(true);
            }
        }
    }
    stats.connections = client.connections();
    stats
}

/// Sleeps until `due` in short naps; false when the run was stopped meanwhile.
fn sleep_until(due: Instant, shared: &Shared<'_>) -> bool {
    // Bounded: `due` is at most the run's duration (or n/rate) after its start.
    loop {
        if shared.stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        thread::sleep((due - now).min(MAX_NAP));
    }
}
