//! The event-loop engine: one thread drives many connections ([`super::loop_conn`]) over one
//! epoll set, as wrk does, so a run on one core pays no context switch per request.
//!
//! Used for closed-loop runs against `http://` targets. Requests are claimed from the run's
//! shared counter ([`LoopJob::claim`]), so `-n` stays exact over any number of threads and
//! connections; when nothing more may start (the count, `-z` or Ctrl-C), connections close as
//! their request finishes and the loop ends when none is in flight. A request in flight is
//! bounded by `--timeout`: deadlines are checked at least every [`SCAN_EVERY`].

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::epoll::{Epoll, Events};
use super::error::ClientError;
use super::loop_conn::{split_token, LoopConn, LoopContext};
use super::progress::Counters;
use super::response::ResponseMeta;
use super::stats::Stats;

/// Longest wait for events, so Ctrl-C and deadlines are noticed without any traffic.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often the deadlines of the requests in flight are checked.
const SCAN_EVERY: Duration = Duration::from_millis(5);
/// Most events taken from the kernel per wait.
const MAX_EVENTS: usize = 1024;

/// What an event loop is given by the run (which it does not depend on).
pub struct LoopJob<'a> {
    pub addr: SocketAddr,
    /// The complete request, sent as is on every connection.
    pub request: &'a [u8],
    pub head_request: bool,
    pub keepalive: bool,
    pub timeout: Duration,
    /// Shared with the other threads, for the progress line.
    pub counters: &'a Counters,
    /// True when one more request may start (claimed from the run's counter).
    pub claim: &'a (dyn Fn() -> bool + Sync),
}

/// One thread's connections, their epoll set and its statistics.
struct Engine<'j, 'a> {
    job: &'j LoopJob<'a>,
    conns: Vec<LoopConn>,
    stats: Stats,
    /// Connections with a request in flight.
    active: usize,
    /// Requests finished and errors not yet added to the shared progress counters.
    unreported: (u64, u64),
}

/// Drives `connections` connections until the run's requests are done; returns what they
/// measured.
pub fn run_loop(job: &LoopJob<'_>, connections: usize, stats: Stats) -> io::Result<Stats> {
    let epoll = Epoll::new()?;
    let ctx = LoopContext {
        addr: job.addr,
        request: job.request,
        keepalive: job.keepalive,
        timeout: job.timeout,
        epoll: &epoll,
    };
    let mut engine = Engine {
        job,
        conns: (0..connections)
            .map(|_| LoopConn::new(job.head_request))
            .collect(),
        stats,
        active: 0,
        unreported: (0, 0),
    };
    for i in 0..connections {
        engine.start_next(&ctx, i);
    }
    let mut events = Events::with_capacity(connections.min(MAX_EVENTS));
    let mut next_scan = Instant::now() + SCAN_EVERY;
    let mut earliest = Instant::now() + MAX_WAIT;
    // Bounded: no request starts after the count, the duration or Ctrl-C, and every
    // request in flight ends by its deadline.
    while engine.active > 0 {
        let wait = earliest
            .min(next_scan)
            .saturating_duration_since(Instant::now())
            .min(MAX_WAIT);
        epoll.wait(&mut events, wait)?;
        for token in events.tokens() {
            let (i, generation) = split_token(token);
            let Some(conn) = engine.conns.get_mut(i) else {
                continue;
            };
            if conn.generation() != generation || !conn.in_flight() {
                continue;
            }
            if let Some(result) = conn.drive(&ctx, i) {
                engine.finished(i, result);
                // At once: the connection's next request is on its way before the others
                // of this batch are read (deferring it to after the batch, as wrk does,
                // measured no faster here).
                engine.start_next(&ctx, i);
            }
        }
        let now = Instant::now();
        if now >= next_scan || now >= earliest {
            earliest = engine.expire_overdue(&ctx, now);
            next_scan = now + SCAN_EVERY;
            engine.report_progress();
        }
    }
    engine.report_progress();
    engine.stats.connections = engine.conns.iter().map(LoopConn::connections).sum();
    Ok(engine.stats)
}

impl Engine<'_, '_> {
    /// Gives connection `i` its next request, or closes it when the run is over. Requests
    /// that finish at once (a refused connect) are counted and followed by the next.
    fn start_next(&mut self, ctx: &LoopContext<'_>, i: usize) {
        // Bounded: every pass claims one of the run's requests, which end by count or time.
        while (self.job.claim)() {
            match self.conns[i].begin(ctx, i, Instant::now()) {
                None => {
                    self.active += 1;
                    return;
                }
                Some(result) => self.count(i, result),
            }
        }
        self.conns[i].close();
    }

    /// Connection `i`'s request in flight ended.
    fn finished(&mut self, i: usize, result: Result<ResponseMeta, ClientError>) {
        self.active -= 1;
        self.count(i, result);
    }

    fn count(&mut self, i: usize, result: Result<ResponseMeta, ClientError>) {
        let conn = &self.conns[i];
        match result {
            Ok(meta) => {
                let latency = Instant::now().saturating_duration_since(conn.started());
                let backend = conn.backend(&meta);
                self.stats
                    .record_response(latency, meta.status, meta.body_bytes, backend);
                self.unreported.0 += 1;
            }
            Err(e) => {
                self.stats.record_error(e.kind());
                self.unreported.0 += 1;
                self.unreported.1 += 1;
            }
        }
    }

    fn report_progress(&mut self) {
        let (done, errors) = std::mem::take(&mut self.unreported);
        self.job.counters.add(done, errors);
    }

    /// Fails every request past its deadline; returns the next deadline of those in flight.
    fn expire_overdue(&mut self, ctx: &LoopContext<'_>, now: Instant) -> Instant {
        let mut earliest = now + MAX_WAIT;
        for i in 0..self.conns.len() {
            if let Some(error) = self.conns[i].expire(now) {
                self.finished(i, Err(error));
                self.start_next(ctx, i);
            }
            if self.conns[i].in_flight() {
                earliest = earliest.min(self.conns[i].deadline());
            }
        }
        earliest
    }
}
