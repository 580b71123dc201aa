//! Binding, the accept loop, and the concurrency model that runs each accepted connection.
//!
//! The stages differ only in their `ConnectionModel`: stage 1 serves each connection before
//! accepting the next ([`Sequential`], here), stage 2 forks a process for it ([`fork`]),
//! stage 3 spawns a thread ([`threads`]), stage 4 hands it to a fixed pool of threads that
//! serve one request at a time and park idle connections with a `poll` loop ([`pool`]).
//!
//! [`serve_until`] is the accept loop with a way out: a graceful shutdown stops it, and then
//! each model's [`ConnectionModel::drain`] lets the requests in flight finish. [`Swappable`]
//! is the handler a reload replaces (`swap.rs`).

mod conn;
pub mod fork;
mod parker;
pub mod pool;
mod swap;
pub mod threads;

pub use swap::Swappable;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::head::request_head_ready;
use crate::http::stream::{BoxedTransport, Transport};
use crate::http::BufStream;
use crate::lifecycle::drain::Drain;
use crate::relay::{ClientTimeouts, Phases, Relay, Reply};

/// Serves client connections: a whole connection at once, or one request at a time.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves one accepted connection to its end (stages 1 to 3).
    fn handle(&self, stream: TcpStream, peer: SocketAddr);

    /// Readies a freshly accepted socket for [`serve_next`](Self::serve_next): socket options,
    /// and the stream the requests travel in (plain TCP here; TLS in stage 9; a test double).
    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport>;

    /// Serves the next request on `conn`, waiting at most `idle` for it to start; returns
    /// whether the connection can carry another. Stage 4 calls this once per turn.
    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool;

    /// Whether `buffered` (bytes received on a connection and not served yet) lets
    /// `serve_next` start without waiting for the client: a whole request head, or one it will
    /// refuse anyway. Stage 4 parks a connection until this holds, so that a client sending its
    /// head slowly never holds a worker.
    fn request_ready(&self, buffered: &[u8]) -> bool;

    /// How long a client may idle between requests and take to send a head.
    fn timeouts(&self) -> ClientTimeouts;

    /// A connection was answered `status` before a request could be served (a model at
    /// capacity, a head that never finished), so that the logging phase counts it too.
    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration);

    /// Whether a model at capacity may answer a fresh connection in plain HTTP (its `503`).
    /// Not on a TLS listener: the client waits for a ServerHello, and `HTTP/1.1 503` would be
    /// garbage to it, so the connection is just closed.
    fn refuses_in_plain_http(&self) -> bool {
        true
    }

    /// The socket options a freshly accepted connection gets before any byte is read or
    /// written on it, for a handler that wraps this one in another stream (TLS).
    fn prepare(&self, _stream: &TcpStream) -> io::Result<()> {
        Ok(())
    }
}

impl<P: Phases> ConnectionHandler for Relay<P> {
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        self.serve_tcp(stream, peer);
    }

    fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
        self.prepare_tcp(stream)
    }

    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
        self.prepare_tcp(&stream)?;
        Ok(Box::new(stream))
    }

    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        Relay::serve_next(self, conn, peer, idle)
    }

    fn request_ready(&self, buffered: &[u8]) -> bool {
        request_head_ready(buffered, &self.config().client.limits)
    }

    fn timeouts(&self) -> ClientTimeouts {
        self.config().client.timeouts
    }

    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration) {
        self.log_refusal(peer, status, duration);
    }
}

/// Decides where an accepted connection is served.
pub trait ConnectionModel {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>);

    /// A graceful shutdown: the accept loop has stopped; close the idle connections now and
    /// wait, until `deadline` at most, for the busy ones to finish (the relay closes each
    /// after its current response). Returns whether all finished in time. The default is for
    /// a model that serves on the accept loop's own thread, where nothing is left by then.
    fn drain(&self, _deadline: Instant) -> bool {
        true
    }
}

/// Polls `done` until it holds or `deadline` passes; returns whether it held. For a model's
/// [`ConnectionModel::drain`], which counts what is still busy: a shutdown happens once, so a
/// few milliseconds of polling cost nothing, where a notification would cost every request.
pub(crate) fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    const STEP: Duration = Duration::from_millis(10);
    // Bounded by the deadline.
    while !done() {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(STEP.min(deadline - now));
    }
    true
}

/// Stage 1: the accept loop itself serves the connection, so the next client waits until this
/// one is done (all its keep-alive requests included).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequential;

impl ConnectionModel for Sequential {
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<dyn ConnectionHandler>) {
        handler.handle(stream, peer);
    }
}

/// Answers `503 Service Unavailable` with `Retry-After: 1` and closes: the reply of a model
/// that is full. Never blocks, because the caller is the accept loop, which must stay free to
/// refuse the next client too.
pub fn refuse_busy(stream: TcpStream, peer: SocketAddr, handler: &dyn ConnectionHandler) {
    if !handler.refuses_in_plain_http() {
        drop(stream); // closes: a TLS client sees the connection end during its handshake
        handler.refused(peer, 503, Duration::ZERO);
        return;
    }
    // Content-Type first, then Retry-After: the same bytes as before replies were `Reply`s.
    let reply = Reply::new(503)
        .text("503 Service Unavailable: the proxy is at capacity, retry shortly\n")
        .header("Retry-After", "1");
    refuse_now(stream, peer, &reply, handler);
}

/// Answers with `reply` and closes without ever blocking (the stream is made non-blocking):
/// for a thread that serves many connections, like the accept loop or stage 4's parker.
pub(crate) fn refuse_now<T: Transport>(
    mut stream: T,
    peer: SocketAddr,
    reply: &Reply,
    handler: &dyn ConnectionHandler,
) {
    const MAX_DRAINED: usize = 64 * 1024;
    let started = Instant::now();
    let bytes = reply.to_bytes(false, false);
    // A short reply fits in the socket's send buffer at once (it is empty on a fresh
    // connection, and drained on an idle one); non-blocking makes sure a strange socket
    // cannot stall the caller anyway.
    let sent = stream.set_nonblocking(true).is_ok()
        && stream.write_all(&bytes).is_ok()
        && stream.shutdown_write().is_ok();
    if sent {
        // Read what the client already sent: closing with unread bytes makes the kernel send
        // a reset, which may destroy the reply before the client reads it. What arrives later
        // can still cause one; a client that retries on a reset loses nothing.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAINED {
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
    handler.refused(peer, reply.status(), started.elapsed());
}

/// Binds the listening socket, with the address in the error so the user knows which one.
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))
}

/// Accepts connections forever and dispatches each through `model`.
pub fn serve(
    listener: &TcpListener,
    model: &dyn ConnectionModel,
    handler: Arc<dyn ConnectionHandler>,
) {
    serve_until(listener, model, handler, &Drain::new());
}

/// Accepts connections and dispatches each through `model` until `drain` is set. Whoever sets
/// it must also wake a blocked `accept`: [`stop_listening`] does both.
pub fn serve_until(
    listener: &TcpListener,
    model: &dyn ConnectionModel,
    handler: Arc<dyn ConnectionHandler>,
    drain: &Drain,
) {
    // Set while `accept` keeps failing: the outage is logged when it starts and when it ends,
    // not every 100 ms in between (a log that floods is one nobody reads).
    let mut failing_since: Option<Instant> = None;
    while !drain.is_draining() {
        match listener.accept() {
            // Accepted in the instant the listener was shut down: it gets a response (with
            // `Connection: close`) rather than a reset.
            Ok((stream, peer)) => {
                if let Some(since) = failing_since.take() {
                    log::warn!("accepting connections again after {:.1?}", since.elapsed());
                }
                model.dispatch(stream, peer, &handler);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if drain.is_draining() => {} // the listener was shut down to wake us
            Err(err) => {
                // Out of file descriptors, mostly. Spinning on the error would burn a core;
                // pause so connections can finish and free some. Waiting clients stay in the
                // listen backlog meanwhile, and are served once descriptors free up.
                if failing_since.is_none() {
                    log::error!(
                        "accept failed: {err}; pausing 100 ms between tries until it succeeds"
                    );
                    failing_since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Starts a graceful shutdown of the accept loop that serves `listener` with `drain`: sets the
/// flag, then shuts the listening socket down, which wakes the `accept` blocked on it, and
/// makes the kernel refuse new connections from that moment (see
/// [`sys::shutdown_listener`](crate::sys::shutdown_listener): Linux's behaviour). Chosen over
/// a connection to ourselves (which fails when the backlog is full, or the address is a
/// wildcard that a firewall guards) and over polling the listener with a timeout (a system
/// call more per connection, and a shutdown late by up to the timeout).
/// Returns whether this call started the shutdown.
pub fn stop_listening(listener: &TcpListener, drain: &Drain) -> bool {
    use std::os::fd::AsFd;
    let started = drain.start();
    if let Err(err) = crate::sys::shutdown_listener(listener.as_fd()) {
        log::warn!("cannot shut the listening socket down: {err}");
    }
    started
}
