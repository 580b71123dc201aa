//! Stage 4: a fixed pool of worker threads behind a bounded queue, and a parker thread that
//! holds every connection with nothing to read yet (a new client before its first byte, a
//! keep-alive client between requests), so that an idle client holds no worker. The parker
//! `poll`s them all at once and hands a connection to the pool when a request arrives; a
//! connection that finds the queue full gets 503.
//!
//! Given: `Parker` and `serve`, which wire the pool, the parker thread and the accept loop.
//! You write `park_loop` and `dispatch`. Stuck? `chapters/workbook/solutions/src/pool.rs` is one answer.

#[allow(unused_imports)] // used by the code you write
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
#[allow(unused_imports)] // used by the code you write
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;
#[allow(unused_imports)] // used by the code you write
use std::time::Instant;

use threadpool::ThreadPool;

use crate::http::{self, Conn, Error};
#[allow(unused_imports)] // used by the code you write
use crate::CLIENT_TIMEOUT;

/// Connects to the backend that serves the next request (stage 5 and 6 choose one).
pub type Backend = dyn Fn() -> Result<TcpStream, Error> + Send + Sync;

/// Hands a connection to the parker: a channel, and a socket whose byte wakes its `poll`.
#[derive(Clone)]
pub struct Parker {
    tx: Sender<Conn<TcpStream>>,
    wake: Arc<UnixStream>,
}

impl Parker {
    pub fn park(&self, conn: Conn<TcpStream>) {
        if self.tx.send(conn).is_ok() {
            let _ = (&*self.wake).write(&[1]);
        }
    }
}

/// Serves `listener`'s connections with `workers` threads; at most `queue` requests wait for
/// one, and the next gets 503.
pub fn serve(listener: TcpListener, workers: usize, queue: usize, backend: Arc<Backend>) {
    let (tx, rx) = channel();
    let (wake, woken) = UnixStream::pair().expect("a socket pair for the parker");
    // Neither end ever blocks: the parker empties `woken` on every turn, and a wake-up that
    // finds the socket full is not needed (one is already pending).
    let _ = (woken.set_nonblocking(true), wake.set_nonblocking(true));
    let parker = Parker { tx, wake: Arc::new(wake) };
    let pool = ThreadPool::with_name("worker".into(), workers);
    let to_pool = parker.clone();
    let parking =
        move || park_loop(rx, woken, |conn| dispatch(conn, &pool, queue, &to_pool, &backend));
    thread::Builder::new().name("parker".into()).spawn(parking).expect("the parker thread");
    for stream in listener.incoming().flatten() {
        parker.park(http::accepted(stream));
    }
}

/// Gives a connection whose request has arrived to a worker, or 503 when the queue is full.
/// The worker serves requests while they are already buffered (pipelined), then parks it.
#[allow(unused_variables, unused_mut)] // a stub: its arguments are unused until you write its body
fn dispatch(
    mut conn: Conn<TcpStream>,
    pool: &ThreadPool,
    queue: usize,
    parker: &Parker,
    backend: &Arc<Backend>,
) {
    // If `pool.queued_count()` is already `queue`, answer 503 with `http::refuse(conn.get_mut(),
    // 503)` (set `conn.get_ref()`, the stream, non-blocking first: the parker must never wait on
    // a client) and return. Otherwise `pool.execute` a job that calls `http::serve(&mut conn,
    // &*backend)` while it returns true, and, when the buffer holds no next request
    // (`conn.buffer().is_empty()`), parks the connection again (`parker.park(conn)`) instead of
    // waiting for it on a worker. Checks: a full queue gets 503 at once; idle clients do not
    // starve the pool.
    todo!("stage 4: write dispatch in chapters/workbook/src/pool.rs (503 when the queue is full, else a worker serves and parks); see chapters/04-thread-pool.md#build-it-yourself")
}

/// Holds the parked connections: `poll`s them (and `woken`, written to when one is parked),
/// hands each that turns readable (a request, or its close) to `ready`, and closes those idle
/// longer than CLIENT_TIMEOUT.
#[allow(unused_variables, unused_mut)] // a stub: its arguments are unused until you write its body
fn park_loop(
    rx: Receiver<Conn<TcpStream>>,
    mut woken: UnixStream,
    ready: impl Fn(Conn<TcpStream>),
) {
    // Keep the parked connections in a `Vec<(Conn<TcpStream>, Instant)>`, and loop forever: add
    // what `rx.try_iter()` brings, each with `Instant::now()`; build one `libc::pollfd` per parked
    // stream (`conn.get_ref().as_raw_fd()`, events POLLIN) after one for `woken`; `libc::poll`
    // them (unsafe, with a SAFETY comment) for at most 1000 ms; read `woken` to empty it (it is
    // non-blocking); then go through the parked connections in the order they came (the first to
    // arrive gets the last place in the queue, not the 503): hand each whose `revents` is not 0
    // to `ready`, drop those parked longer than CLIENT_TIMEOUT, and keep the others. Checks: 6
    // idle keep-alive clients on 2 workers do not starve a new one; a full queue answers the
    // newest client 503; every stage 1 check on stage 4.
    todo!("stage 4: write park_loop in chapters/workbook/src/pool.rs (poll the parked connections, hand the readable ones on); see chapters/04-thread-pool.md#build-it-yourself")
}
