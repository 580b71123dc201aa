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
//! 2. a worker reads what has arrived without waiting and serves requests while a whole head
//!    is there, at most [`MAX_REQUESTS_PER_TURN`] in a row;
//! 3. then the connection, idle or with half a head, goes to the parker (`parker.rs`), a
//!    single thread that waits in `epoll` for any parked socket to become readable, queues
//!    the readable ones again, and closes those past their idle timeout (or answers 408 past
//!    the header timeout).
//!
//! A worker is therefore busy only while a request is in flight, and an idle keep-alive
//! connection, or a client typing its head one byte a second, costs a descriptor and its read
//! buffer, not a thread. Step 3 is the core of an event loop (nginx, HAProxy); stage 4 uses it
//! only for the waits before a request, and leaves bodies and responses blocking.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use threadpool::ThreadPool;

use super::conn::{Conn, ConnGauges, Open};
use super::parker::{Parked, Parker, ParkerHandle};
use super::{refuse_busy, wait_until, ConnectionHandler, ConnectionModel};
use crate::http::BufStream;

/// Default for `--workers`. A worker blocks while its backend answers, so the pool bounds
/// the requests in flight, and by Little's law throughput is at most workers / backend
/// latency: 64 workers give 3,200 req/s against a backend that takes 20 ms (16 gave 800 in
/// chapter 4's measurement). Cores do not come into it; memory does, a little (an idle
/// thread's stack is a few resident pages).
pub const DEFAULT_WORKERS: usize = 64;

/// Default for `--queue`: connections waiting for a worker before new ones get `503`. Four
/// times the workers: at 20 ms a request, the last in the queue waits about 80 ms.
pub const DEFAULT_QUEUE: usize = 256;

/// Default for the parker's capacity: past it, the longest-idle parked connection is closed.
/// A parked connection costs a socket and about 200 bytes here (its read buffer is given
/// back), and `epoll` makes the number watched free for the others: 10,000 idle clients add
/// a few MiB (chapter 4 measures it). The descriptor limit usually binds first.
pub const DEFAULT_MAX_PARKED: usize = 16 * 1024;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What reading without waiting found on a connection.
enum Gathered {
    /// Enough for `serve_next` to run without waiting for the client.
    Ready,
    /// Nothing, or part of a head: park until more arrives.
    Waiting,
    /// The client closed or the socket failed, with nothing left to serve.
    Gone,
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
    gauges: Arc<ConnGauges>,
}

/// The pool's load at one moment, for `/metrics` and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolSnapshot {
    pub workers: usize,
    /// Workers serving a request (or a turn of one connection) right now.
    pub busy: usize,
    /// Connections waiting for a worker.
    pub queued: usize,
    /// Client connections accepted and not closed.
    pub open: usize,
    /// Connections the parker watches, and of those, the ones with no request started.
    pub parked: usize,
    pub idle: usize,
}

/// A handle that reads the pool's gauges from another thread (the admin listener's).
#[derive(Clone)]
pub struct PoolStatus {
    shared: Arc<Shared>,
}

impl PoolStatus {
    pub fn snapshot(&self) -> PoolSnapshot {
        let gauges = &self.shared.gauges;
        let workers = &self.shared.workers;
        PoolSnapshot {
            workers: workers.max_count(),
            busy: workers.active_count(),
            queued: workers.queued_count(),
            open: gauges.open.load(Ordering::Relaxed),
            parked: gauges.parked.load(Ordering::Relaxed),
            idle: gauges.idle.load(Ordering::Relaxed),
        }
    }
}

impl Pool {
    /// Starts the workers and the parker thread.
    pub fn new(config: &PoolConfig) -> std::io::Result<Pool> {
        let workers = threadpool::Builder::new()
            .num_threads(config.workers.max(1))
            .thread_name("worker".to_owned())
            .build();
        let gauges = Arc::new(ConnGauges::default());
        let (handle, parker) = Parker::new(config.max_parked, Arc::clone(&gauges))?;
        let shared = Arc::new(Shared {
            workers,
            parker: handle,
            gauges,
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

    /// A reader of the pool's gauges (workers busy, queue, connections open and parked).
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            shared: Arc::clone(&self.shared),
        }
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
        crate::exercise::stub!("Pool::dispatch");
        // Only new connections are refused: one coming back from the parker was admitted
        // already and has a request waiting. The queue can therefore exceed `queue` by the
        // parked connections that became ready at the same moment, a bounded amount.
        if self.shared.workers.queued_count() >= self.queue {
            log::debug!(
                "{peer}: {} connections queued already, refusing",
                self.queue
            );
            refuse_busy(stream, peer, &**handler);
            return;
        }
        match self.keep_alive {
            KeepAlive::Hold => {
                let handler = Arc::clone(handler);
                let open = Open::new(&self.shared.gauges);
                self.shared.workers.execute(move || {
                    let _open = open;
                    handler.handle(stream, peer);
                });
            }
            KeepAlive::Park => {
                let transport = match handler.transport(stream) {
                    Ok(transport) => transport,
                    Err(err) => {
                        log::warn!("{peer}: cannot set up the client connection: {err}");
                        return;
                    }
                };
                self.shared.run(Conn {
                    stream: BufStream::new(transport),
                    peer,
                    idle_since: Instant::now(),
                    head_since: None,
                    handler: Arc::clone(handler),
                    watch: None,
                    _open: Open::new(&self.shared.gauges),
                });
            }
        }
    }

    /// Stopping the parker closes every parked connection (idle, or with a head still
    /// arriving) at once, and any parked later, since nobody takes them any more; a worker's
    /// connection closes after its response, which says `Connection: close` while draining.
    fn drain(&self, deadline: Instant) -> bool {
        self.shared.parker.stop();
        let workers = &self.shared.workers;
        wait_until(deadline, || {
            workers.active_count() == 0 && workers.queued_count() == 0
        })
    }
}

impl Shared {
    /// Queues a turn for `conn` on the workers.
    fn run(self: &Arc<Self>, conn: Conn) {
        let shared = Arc::clone(self);
        self.workers.execute(move || shared.turn(conn));
    }

    /// One worker's turn with a connection: serve the requests that have arrived, then park
    /// the connection or let it go.
    fn turn(self: &Arc<Self>, mut conn: Conn) {
        for _ in 0..MAX_REQUESTS_PER_TURN {
            match gather(&mut conn) {
                Gathered::Ready => {}
                Gathered::Waiting => {
                    conn.stream.release_if_empty();
                    match self.parker.park(conn) {
                        Parked::Done => return,
                        Parked::ServeAgain(again) => {
                            conn = again;
                            continue;
                        }
                    }
                }
                Gathered::Gone => return conn.stream.finish(),
            }
            conn.head_since = None;
            // The head is here, so this wait for its first byte never happens; the body and
            // the response can still block, within the relay's timeouts.
            let idle = conn.handler.timeouts().idle;
            let handler = Arc::clone(&conn.handler);
            if !handler.serve_next(&mut conn.stream, conn.peer, idle) {
                return conn.stream.finish(); // closed, by either side
            }
            conn.idle_since = Instant::now();
            if !conn.stream.has_pending() {
                // Nothing of a next request is here yet, and a client that waits for each
                // answer (nearly all of them) has not sent one: park now rather than ask the
                // socket first, one system call per request fewer. A request that did arrive
                // meanwhile was reported to the parker, which hands the connection back.
                conn.stream.release_if_empty();
                match self.parker.park(conn) {
                    Parked::Done => return,
                    Parked::ServeAgain(again) => conn = again,
                }
            }
        }
        // Its turn is used up while it still has requests: to the back of the queue.
        self.run(conn);
    }
}

/// Largest read-ahead while collecting a head without waiting; past it (a head larger than
/// any default limit), `serve_next` reads the rest and decides.
const MAX_GATHERED: usize = 64 * 1024;

/// Reads what has arrived on `conn`, without waiting, until it holds a request to serve.
///
/// Bytes already in the buffer, or held inside the transport (decrypted TLS), are invisible
/// to `poll`, so they are looked at first: parking a connection with a whole request
/// buffered would strand that request until the idle timeout. And the transport is asked only
/// for what it can give without blocking, so a TLS record that arrived in part never blocks a
/// worker.
fn gather(conn: &mut Conn) -> Gathered {
    crate::exercise::stub!("gather");
    // Bounded: each round reads at least one byte, and the buffer stops at MAX_GATHERED.
    loop {
        if conn.handler.request_ready(conn.stream.buffered()) {
            return Gathered::Ready;
        }
        match conn.stream.fill_now(MAX_GATHERED) {
            Ok(None) => {
                if !conn.stream.buffered().is_empty() && conn.head_since.is_none() {
                    conn.head_since = Some(Instant::now());
                }
                return Gathered::Waiting;
            }
            Ok(Some(0)) if conn.stream.buffered().is_empty() => return Gathered::Gone,
            // The client closed mid-head, or the head outgrew MAX_GATHERED: the relay
            // answers (400, 431) or closes, as it would have reading it itself.
            Ok(Some(0)) => return Gathered::Ready,
            Err(err) if err.kind() == std::io::ErrorKind::OutOfMemory => return Gathered::Ready,
            Err(_) => return Gathered::Gone,
            Ok(Some(_)) => {}
        }
    }
}
