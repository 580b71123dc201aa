//! Stage 4: a fixed pool of workers with a bounded queue (503 when it is full), and idle
//! connections parked with `poll` so that they hold no worker (`pool.rs`).
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage4 -- --backend 127.0.0.1:8000
//! --workers 8 --queue 64`. Known limit: one backend (stage 5 balances several).

use std::sync::Arc;

use workbook_solutions::{bind, http, init_logging, pool, Args};

const USAGE: &str =
    "usage: solution-stage4 [--listen ADDR] [--backend ADDR] [--workers N] [--queue N]
       [--upstream-timeout 10s]";

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let listener = bind("stage4", &args.listen);
    let (backend, timeout) = (args.backends[0], args.upstream_timeout);
    pool::serve(
        listener,
        args.workers,
        args.queue,
        Arc::new(move || http::connect(backend, timeout)),
    );
}
