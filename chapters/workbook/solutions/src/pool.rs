//! Stage 4: a fixed pool of worker threads behind a bounded queue, and a parker thread that
//! holds every connection with nothing to read yet (a new client before its first byte, a
//! keep-alive client between requests), so that an idle client holds no worker. The parker
//! `poll`s them all at once and hands a connection to the pool when a request arrives; a
//! connection that finds the queue full gets 503.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use threadpool::ThreadPool;

use crate::http::{self, Conn, Error};
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
fn dispatch(
    mut conn: Conn<TcpStream>,
    pool: &ThreadPool,
    queue: usize,
    parker: &Parker,
    backend: &Arc<Backend>,
) {
    if pool.queued_count() >= queue {
        let _ = conn.get_ref().set_nonblocking(true); // the parker must not wait on this client
        http::refuse(conn.get_mut(), 503);
        return;
    }
    let (parker, backend) = (parker.clone(), Arc::clone(backend));
    pool.execute(move || {
        while http::serve(&mut conn, &*backend) {
            if conn.buffer().is_empty() {
                return parker.park(conn);
            }
        }
    });
}

/// Holds the parked connections: `poll`s them (and `woken`, written to when one is parked),
/// hands each that turns readable (a request, or its close) to `ready`, and closes those idle
/// longer than CLIENT_TIMEOUT.
fn park_loop(
    rx: Receiver<Conn<TcpStream>>,
    mut woken: UnixStream,
    ready: impl Fn(Conn<TcpStream>),
) {
    let mut parked: Vec<(Conn<TcpStream>, Instant)> = Vec::new();
    loop {
        parked.extend(rx.try_iter().map(|conn| (conn, Instant::now())));
        let fds = std::iter::once(woken.as_raw_fd())
            .chain(parked.iter().map(|(c, _)| c.get_ref().as_raw_fd()));
        let mut fds: Vec<_> =
            fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd, alive for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        // Empties the wake-ups (non-blocking).
        let _ = woken.read(&mut [0; 256]);
        // In the order they were parked: the first to arrive gets the last place in the queue,
        // and the one after it the 503.
        let mut kept = Vec::with_capacity(parked.len());
        for ((conn, since), fd) in parked.drain(..).zip(&fds[1..]) {
            if fd.revents != 0 {
                ready(conn);
            } else if since.elapsed() < CLIENT_TIMEOUT {
                kept.push((conn, since));
            } // else dropped, which closes it
        }
        parked = kept;
    }
}
