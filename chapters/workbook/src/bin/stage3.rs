//! Stage 3: a thread per connection, as the C course's `threaded_proxy.c`, with a cap: past
//! MAX_THREADS connections at once, a new one gets 503 instead of a thread.
//!
//! Run: `cargo run --bin workbook-stage3 -- --backend 127.0.0.1:8000`.
//! Known limit: every idle keep-alive client holds a thread and its stack (stage 4 pools them).
//!
//! You write `spawn_connection` (their `todo!()` says what, in order); the rest is given. Stuck?
//! `chapters/workbook/solutions/src/bin/stage3.rs` is one answer.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
#[allow(unused_imports)] // used by the code you write
use std::thread;
use std::time::Duration;

#[allow(unused_imports)] // used by the code you write
use workbook::{bind, http, init_logging, Args};

const USAGE: &str =
    "usage: workbook-stage3 [--listen ADDR] [--backend ADDR] [--upstream-timeout 10s]";
/// Connections served at once; each costs a thread (and its stack).
#[allow(dead_code)] // used by the code you write
const MAX_THREADS: usize = 512;

/// Counts one connection's thread while it lives, however it ends (a panic included).
#[allow(dead_code)] // used by the code you write
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let listener = bind("stage3", &args.listen);
    let (backend, timeout) = (args.backends[0], args.upstream_timeout);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        spawn_connection(stream, &active, backend, timeout);
    }
}

/// Serves `stream` on a thread of its own, counted in `active`; 503 past MAX_THREADS.
#[allow(unused_variables, unused_mut)] // a stub: its arguments are unused until you write its body
fn spawn_connection(
    mut stream: TcpStream,
    active: &Arc<AtomicUsize>,
    backend: SocketAddr,
    timeout: Duration,
) {
    // Count the connection in `active` (`fetch_add`); past MAX_THREADS, take it back, set the
    // stream non-blocking and `http::refuse(&mut stream, 503)`: the accept loop must not wait.
    // Otherwise make a `Slot` (it gives the count back when dropped, even on a panic) and spawn a
    // named thread (`thread::Builder`) that owns the slot and calls `http::serve_connection`. A
    // failed spawn is logged. Checks: a second client served while a first sits idle; 50 at once.
    todo!("stage 3: write spawn_connection in chapters/workbook/src/bin/stage3.rs (a thread per connection, with a cap); see chapters/03-thread-per-connection.md#build-it-yourself")
}
