//! Stage 2: a process per connection (`fork`), as the C course's `fork_proxy.c`, and every
//! child reaped, so none stays a zombie.
//!
//! Run: `cargo run --bin workbook-stage2 -- --backend 127.0.0.1:8000`.
//! Known limit: a process per connection is costly to start, and children share nothing
//! (stage 3 uses threads).
//!
//! You write `fork_child` and `reap_children` (their `todo!()` says what, in order); the rest is
//! given. Stuck? `chapters/workbook/solutions/src/bin/stage2.rs` is one answer.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

#[allow(unused_imports)] // used by the code you write
use workbook::{bind, http, init_logging, Args};

const USAGE: &str =
    "usage: workbook-stage2 [--listen ADDR] [--backend ADDR] [--upstream-timeout 10s]";

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let listener = bind("stage2", &args.listen);
    let (backend, timeout) = (args.backends[0], args.upstream_timeout);
    loop {
        // Reap between accepts, and wake at least every 100 ms to do it: a child that ends
        // while no client arrives would otherwise stay a zombie until the next one does.
        reap_children();
        if !readable(&listener, 100) {
            continue;
        }
        if let Ok((stream, _)) = listener.accept() {
            fork_child(&listener, stream, backend, timeout);
        }
    }
}

/// Serves `stream` in a child process of its own; the parent goes back to accepting at once.
#[allow(unused_variables, unused_mut)] // a stub: its arguments are unused until you write its body
fn fork_child(
    listener: &TcpListener,
    mut stream: TcpStream,
    backend: SocketAddr,
    timeout: Duration,
) {
    // `libc::fork()` (unsafe: say in a SAFETY comment why it is sound here: one thread). -1: log
    // the error and `http::refuse(&mut stream, 503)`. 0, the child: close its copy of the listener
    // (`libc::close(listener.as_raw_fd())`), `http::serve_connection(stream, ...)` as stage 1 does,
    // then `libc::_exit(0)`, never return into the accept loop. Any other value, the parent: drop
    // `stream` (the child has its own copy) and return. Checks: a second client is served while a
    // first sits idle; 50 clients at once.
    todo!("stage 2: write fork_child in chapters/workbook/src/bin/stage2.rs; see chapters/02-process-per-connection.md#build-it-yourself")
}

/// Collects the exit status of every child that has ended, without waiting for the others.
fn reap_children() {
    // Call `libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG)` (unsafe, with a SAFETY comment)
    // until it returns 0 or -1: each call collects one ended child, and WNOHANG never waits for one
    // still running. Check: no zombie children after 200 connections.
    todo!("stage 2: write reap_children (then fork_child) in chapters/workbook/src/bin/stage2.rs; see chapters/02-process-per-connection.md#build-it-yourself")
}

/// Whether a connection waits on `listener`, waiting at most `ms` milliseconds.
fn readable(listener: &TcpListener, ms: i32) -> bool {
    let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `fd` is one valid pollfd, alive for the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}
