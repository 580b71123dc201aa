//! Stage 4: a fixed pool of worker threads, a bounded queue, and a parker for idle
//! keep-alive connections.
//!
//! A pool fixes stage 3's cost per connection (a thread each) but brings a new problem: if a
//! worker serves a connection to its end, a keep-alive client that idles between requests
//! holds a worker while doing nothing, and `workers` such clients stop the pool for everyone
//! else until their idle timeout ([`KeepAlive::Hold`], kept for comparison).
//!
//! So by default ([`KeepAlive::Park`]) the unit of work is one *request*, not one connection:
//!
//! 1. the accept loop queues the connection, or answers `503` with `Retry-After` when
//!    `queue` connections already wait (threadpool's own queue has no bound);
//! 2. a worker serves requests while one is already there (bytes buffered, or the socket
//!    readable right now), at most [`MAX_REQUESTS_PER_TURN`] in a row;
//! 3. then, if the connection is idle, it goes to the parker (`parker.rs`), a single thread
//!    that `poll`s every parked socket and queues the readable ones again, and closes those
//!    idle longer than the idle timeout.
//!
//! A worker is therefore busy only while a request is in flight, and thousands of idle
//! keep-alive connections cost one descriptor and a few hundred bytes each. Step 3 is the
//! core of an event loop (nginx, HAProxy); stage 4 uses it only for the idle wait, and
//! leaves reading and writing blocking.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use threadpool::ThreadPool;

use super::parker::{Parker, ParkerHandle};
use super::{refuse_busy, ConnectionHandler, ConnectionModel};
use crate::http::BufStream;
use crate::sys;

/// Default for `--workers`: a blocking worker spends most of its time waiting on a backend,
/// so the pool is sized by how many requests may wait at once, not by cores.
pub const DEFAULT_WORKERS: usize = 16;

/// Default for `--queue`: connections waiting for a worker before new ones get `503`.
pub const DEFAULT_QUEUE: usize = 128;

/// Default for the parker's capacity: past it, the longest-idle parked connection is closed.
pub const DEFAULT_MAX_PARKED: usize = 1024;

/// Requests served back to back on one connection (pipelined, or arriving while the previous
/// answer was sent) before it goes to the back of the queue, so that one busy client cannot
/// keep a worker from the others.
pub const MAX_REQUESTS_PER_TURN: usize = 16;

/// What a worker does with a keep-alive connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeepAlive {
    /// Hand it to the parker until its next request arrives (the default).
    Park,
    /// Keep serving it until it closes: the naive pool, kept to measure the difference.
    Hold,
}

/// How big the pool is and how it treats idle connections.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub queue: usize,
    pub keep_alive: KeepAlive,
    pub max_parked: usize,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE,
            keep_alive: KeepAlive::Park,
            max_parked: DEFAULT_MAX_PARKED,
        }
    }
}

/// A client connection between requests: what travels between the workers and the parker.
pub(super) struct Conn {
    pub(super) stream: BufStream<TcpStream>,
    pub(super) peer: SocketAddr,
    /// When the last response ended (or the connection was accepted).
    pub(super) idle_since: Instant,
    pub(super) handler: Arc<dyn ConnectionHandler>,
}

impl Conn {
    /// When the parker should give up waiting for the next request.
    pub(super) fn idle_deadline(&self) -> Instant {
        self.idle_since + self.handler.idle_timeout()
    }
}

/// A fixed pool of workers behind a bounded queue.
pub struct Pool {
    shared: Arc<Shared>,
    queue: usize,
    keep_alive: KeepAlive,
}

/// What the accept loop, the workers and the parker all use.
struct Shared {
    workers: ThreadPool,
    parker: ParkerHandle,
}

impl Pool {
    /// Starts the workers and the parker thread.
    pub fn new(config: &PoolConfig) -> std::io::Result<Pool> {
        let workers = threadpool::Builder::new()
            .num_threads(config.workers.max(1))
            .thread_name("worker".to_owned())
            .build();
        let (handle, parker) = Parker::new(config.max_parked)?;
        let shared = Arc::new(Shared {
            workers,
            parker: handle,
        });
        let requeue = Arc::clone(&shared);
        parker.spawn(move |conn| requeue.run(conn))?;
        Ok(Pool {
            shared,
            queue: config.queue,
            keep_alive: config.keep_alive,
        })
    }

    /// Connections waiting for a worker right now.
    pub fn queued(&self) -> usize {
        self.shared.workers.queued_count()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The parker holds the shared state (to queue work); stopping it breaks the cycle.
        self.shared.parker.stop();
    }
}

impl ConnectionModel for Pool {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>) {
        // Only new connections are refused: one coming back from the parker was admitted
        // already and has a request waiting. The queue can therefore exceed `queue` by the
        // parked connections that became ready at the same moment, a bounded amount.
        if self.shared.workers.queued_count() >= self.queue {
            log::debug!(
                "{peer}: {} connections queued already, refusing",
                self.queue
            );
            refuse_busy(stream, peer);
            return;
        }
        match self.keep_alive {
            KeepAlive::Hold => {
                let handler = Arc::clone(handler);
                self.shared
                    .workers
                    .execute(move || handler.handle(stream, peer));
            }
            KeepAlive::Park => {
                if let Err(err) = handler.prepare(&stream) {
                    log::warn!("{peer}: cannot set up the client socket: {err}");
                    return;
                }
                self.shared.run(Conn {
                    stream: BufStream::new(stream),
                    peer,
                    idle_since: Instant::now(),
                    handler: Arc::clone(handler),
                });
            }
        }
    }
}

impl Shared {
    /// Queues a turn for `conn` on the workers.
    fn run(self: &Arc<Self>, conn: Conn) {
        let shared = Arc::clone(self);
        self.workers.execute(move || shared.turn(conn));
    }

    /// One worker's turn with a connection: serve what is there, then park it or let it go.
    fn turn(self: &Arc<Self>, mut conn: Conn) {
        for _ in 0..MAX_REQUESTS_PER_TURN {
            // Bytes already in our buffer are invisible to `poll`, so they are checked first:
            // parking a connection with a buffered request would strand that request.
            let waiting = !conn.stream.buffered().is_empty()
                || sys::readable_now(conn.stream.get_ref().as_fd());
            if !waiting {
                self.parker.park(conn);
                return;
            }
            // The request has started (or the client closed), so this wait is short; it is
            // bounded by what is left of the client's idle allowance all the same.
            let idle = conn
                .idle_deadline()
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let handler = Arc::clone(&conn.handler);
            if !handler.serve_next(&mut conn.stream, conn.peer, idle) {
                return; // closed, by either side
            }
            conn.idle_since = Instant::now();
        }
        // Its turn is used up while it still has requests: to the back of the queue.
        self.run(conn);
    }
}
