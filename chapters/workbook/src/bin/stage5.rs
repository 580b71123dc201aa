//! Stage 5: several backends, taken in turn (round robin), as the C course's
//! `proxy_load_balancer.c`; a backend that refuses the connection is skipped for the next.
//! Only a failed connect is tried again elsewhere: once a request is sent, it is never sent
//! twice (a POST could then be applied twice).
//!
//! Run: `cargo run --bin workbook-stage5 -- --backend 127.0.0.1:8000
//! --backend 127.0.0.1:8001 --backend 127.0.0.1:8002`. Known limit: a dead backend is tried
//! (and skipped) again on every turn; stage 6 checks health instead.
//!
//! You write `RoundRobin::connect` (their `todo!()` says what, in order); the rest is given. Stuck?
//! `chapters/workbook/solutions/src/bin/stage5.rs` is one answer.

use std::net::{SocketAddr, TcpStream};
#[allow(unused_imports)] // used by the code you write
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports)] // used by the code you write
use workbook::http::{self, Error};
use workbook::{bind, init_logging, pool, Args};

const USAGE: &str =
    "usage: workbook-stage5 [--listen ADDR] --backend ADDR [--backend ADDR ...] [--workers N]
       [--queue N] [--upstream-timeout 10s]";

/// The backends in turn, from one shared counter.
#[allow(dead_code)] // used by the code you write
struct RoundRobin {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    timeout: Duration,
}

impl RoundRobin {
    /// Connects to the next backend that accepts, trying each at most once; 502 if none does.
    fn connect(&self) -> Result<TcpStream, Error> {
        // Take a turn from `self.next` (`fetch_add(1, Relaxed)`), then try the backends from that
        // one on, each at most once (`http::connect(addr, self.timeout)`): return the first stream;
        // log a refusal and go on to the next. None accepts: `Error::Status(502)`. Only a failed
        // connect is tried again: a request already sent is never sent twice. Checks: round robin
        // over two and three origins; a refusing origin skipped; a POST never sent twice.
        todo!("stage 5: write RoundRobin::connect in chapters/workbook/src/bin/stage5.rs; see chapters/05-load-balancer.md#build-it-yourself")
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
