//! Stage 3: a thread per connection, as the C course's `threaded_proxy.c`, with a cap: past
//! MAX_THREADS connections at once, a new one gets 503 instead of a thread.
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage3 -- --backend 127.0.0.1:8000`.
//! Known limit: every idle keep-alive client holds a thread and its stack (stage 4 pools them).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use workbook_solutions::{bind, http, init_logging, Args};

const USAGE: &str =
    "usage: solution-stage3 [--listen ADDR] [--backend ADDR] [--upstream-timeout 10s]";
/// Connections served at once; each costs a thread (and its stack).
const MAX_THREADS: usize = 512;

/// Counts one connection's thread while it lives, however it ends (a panic included).
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
fn spawn_connection(
    mut stream: TcpStream,
    active: &Arc<AtomicUsize>,
    backend: SocketAddr,
    timeout: Duration,
) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_THREADS {
        active.fetch_sub(1, Ordering::SeqCst);
        let _ = stream.set_nonblocking(true); // the accept loop must not wait on it
        return http::refuse(&mut stream, 503);
    }
    let slot = Slot(Arc::clone(active));
    let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
        let _slot = slot;
        http::serve_connection(stream, &|| http::connect(backend, timeout));
    });
    if let Err(e) = spawned {
        log::error!("cannot start a thread: {e}"); // the closure, its slot and stream are dropped
    }
}
