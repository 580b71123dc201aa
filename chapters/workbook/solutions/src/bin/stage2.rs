//! Stage 2: a process per connection (`fork`), as the C course's `fork_proxy.c`, and every
//! child reaped, so none stays a zombie.
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage2 -- --backend 127.0.0.1:8000`.
//! Known limit: a process per connection is costly to start, and children share nothing
//! (stage 3 uses threads).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use workbook_solutions::{bind, http, init_logging, Args};

const USAGE: &str =
    "usage: solution-stage2 [--listen ADDR] [--backend ADDR] [--upstream-timeout 10s]";

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
fn fork_child(
    listener: &TcpListener,
    mut stream: TcpStream,
    backend: SocketAddr,
    timeout: Duration,
) {
    // SAFETY: this process has one thread, so the child gets every lock in a known state;
    // the child only serves its connection and exits.
    match unsafe { libc::fork() } {
        -1 => {
            log::error!("fork: {}", std::io::Error::last_os_error());
            http::refuse(&mut stream, 503);
        }
        0 => {
            // SAFETY: the child never accepts: it closes its copy of the listening socket.
            unsafe { libc::close(listener.as_raw_fd()) };
            http::serve_connection(stream, &|| http::connect(backend, timeout));
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        _ => drop(stream), // the child holds its own copy of the socket
    }
}

/// Collects the exit status of every child that has ended, without waiting for the others.
fn reap_children() {
    // SAFETY: a null status pointer is allowed; WNOHANG returns at once.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// Whether a connection waits on `listener`, waiting at most `ms` milliseconds.
fn readable(listener: &TcpListener, ms: i32) -> bool {
    let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `fd` is one valid pollfd, alive for the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}
