//! Stage 5: several backends, taken in turn (round robin), as the C course's
//! `proxy_load_balancer.c`; a backend that refuses the connection is skipped for the next.
//! Only a failed connect is tried again elsewhere: once a request is sent, it is never sent
//! twice (a POST could then be applied twice).
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage5 -- --backend 127.0.0.1:8000
//! --backend 127.0.0.1:8001 --backend 127.0.0.1:8002`. Known limit: a dead backend is tried
//! (and skipped) again on every turn; stage 6 checks health instead.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use workbook_solutions::http::{self, Error};
use workbook_solutions::{bind, init_logging, pool, Args};

const USAGE: &str =
    "usage: solution-stage5 [--listen ADDR] --backend ADDR [--backend ADDR ...] [--workers N]
       [--queue N] [--upstream-timeout 10s]";

/// The backends in turn, from one shared counter.
struct RoundRobin {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    timeout: Duration,
}

impl RoundRobin {
    /// Connects to the next backend that accepts, trying each at most once; 502 if none does.
    fn connect(&self) -> Result<TcpStream, Error> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.backends.len() {
            let addr = self.backends[(first + i) % self.backends.len()];
            match http::connect(addr, self.timeout) {
                Ok(stream) => return Ok(stream),
                Err(_) => log::warn!("{addr} refused the connection; trying the next backend"),
            }
        }
        Err(Error::Status(502))
    }
}

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let listener = bind("stage5", &args.listen);
    let balancer = RoundRobin {
        backends: args.backends.clone(),
        next: AtomicUsize::new(0),
        timeout: args.upstream_timeout,
    };
    pool::serve(listener, args.workers, args.queue, Arc::new(move || balancer.connect()));
}
