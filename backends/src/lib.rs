//! Demo origin servers for revproxy.
//!
//! A [`Backend`] is a small HTTP/1.1 server with endpoints made for testing a reverse proxy:
//! `/echo` shows what the proxy forwarded, `/chunked` and `/bytes/N` exercise body framing,
//! `/slow` and `/drop` imitate a sick upstream, `/cacheable` lets a cache test tell a cached
//! answer from a fresh one. Every response names the backend in `X-Backend-Server`, so a
//! balancing test can see where each request went.
//!
//! It is built on [tiny_http], not on the proxy's own HTTP code: if both ends shared one parser,
//! a framing bug could cancel itself out and every test would still pass.
//!
//! ```no_run
//! let backend = backends::Backend::start("127.0.0.1:0", backends::Options::default())?;
//! println!("{} on http://{}", backend.name(), backend.addr());
//! backend.stop();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The endpoint table is in `backends/README.md`; the handlers are in `routes.rs`.

mod conn;
mod routes;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How a [`Backend`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Shown in `X-Backend-Server` and in bodies. Printable ASCII without spaces at the ends.
    pub name: String,
    /// Latency added before every response, to imitate real work.
    pub delay_ms: u64,
    /// Worker threads, so many requests (a `/slow` one, say) are handled at once. At least 1.
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "b1".to_string(),
            delay_ms: 0,
            workers: 16,
        }
    }
}

/// A running demo origin server. Stops on [`Backend::stop`] or on drop.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<Arc<tiny_http::Server>>,
    /// A second handle on the listening socket: tiny_http keeps the first and closes it only
    /// some time after the `Server` is dropped; this one lets `stop` close the port at once.
    listener: Option<TcpListener>,
    workers: Vec<JoinHandle<()>>,
    nudger: Option<JoinHandle<()>>,
}

/// What the worker threads share.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) delay: Duration,
    pub(crate) addr: SocketAddr,
    /// Full `/cacheable` responses generated so far.
    pub(crate) cacheable_count: AtomicU64,
    pub(crate) stop: StopSignal,
    bell: Bell,
    started: Instant,
    /// Milliseconds after `started` when a worker last took a request.
    last_request_ms: AtomicU64,
}

impl Shared {
    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Backend {
    /// Binds `addr` (e.g. "127.0.0.1:0" for an ephemeral port) and serves on worker threads.
    ///
    /// Returns once the socket is bound, so a client may connect right away. Fails with
    /// `InvalidInput` if `options.workers` is 0 or the name cannot go in a header.
    pub fn start(addr: &str, options: Options) -> io::Result<Backend> {
        validate(&options)?;
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let control = listener.try_clone()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let shared = Arc::new(Shared {
            name: options.name,
            delay: Duration::from_millis(options.delay_ms),
            addr: local,
            cacheable_count: AtomicU64::new(0),
            stop: StopSignal::default(),
            bell: Bell::default(),
            started: Instant::now(),
            last_request_ms: AtomicU64::new(0),
        });
        let mut backend = Backend {
            addr: local,
            shared,
            server: Some(Arc::clone(&server)),
            listener: Some(control),
            workers: Vec::with_capacity(options.workers),
            nudger: None,
        };
        for i in 0..options.workers {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&backend.shared);
            // On error `backend` is dropped here, which stops the workers already started.
            let handle = thread::Builder::new()
                .name(format!("backend-{}-{}", backend.shared.name, i))
                .spawn(move || work(&server, &shared))?;
            backend.workers.push(handle);
        }
        let shared = Arc::clone(&backend.shared);
        backend.nudger = Some(
            thread::Builder::new()
                .name(format!("backend-{}-nudge", backend.shared.name))
                .spawn(move || nudge(&shared))?,
        );
        Ok(backend)
    }

    /// The real bound address (port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name given in [`Options::name`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Stops accepting (the port refuses connections once this returns, on Linux), closes every
    /// open client connection, wakes any `/slow` or delayed request, and joins the workers.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        self.shared.stop.trigger();
        self.shared.bell.ring();
        if let Some(listener) = self.listener.take() {
            conn::close_listener(listener);
        }
        // Workers may be blocked writing to a client that does not read, or reading a body that
        // never comes; closing the connections under them is what makes the join below finite.
        conn::close_accepted(self.addr, None);
        for _ in &self.workers {
            server.unblock();
        }
        for handle in self.workers.drain(..).chain(self.nudger.take()) {
            let _ = handle.join();
        }
        drop(server);
        // Off Linux the port may have accepted a connection between the two calls.
        conn::close_accepted(self.addr, None);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn validate(options: &Options) -> io::Result<()> {
    let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
    if options.workers == 0 {
        return invalid("workers must be at least 1");
    }
    let name = &options.name;
    // The name goes into a header value and a thread name.
    if name.is_empty()
        || name.trim() != name
        || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return invalid(
            "backend name must be non-empty printable ASCII, no leading/trailing space",
        );
    }
    Ok(())
}

/// One worker: take the next request from tiny_http's queue, answer it, repeat.
fn work(server: &tiny_http::Server, shared: &Shared) {
    loop {
        match server.recv() {
            Ok(request) => {
                let now = shared.millis();
                let before = shared.last_request_ms.swap(now, Ordering::Relaxed);
                if now.saturating_sub(before) >= QUIET_MS {
                    shared.bell.ring(); // requests again after a quiet spell: nudge now
                }
                routes::handle(shared, request);
            }
            // `unblock` (ours, at stop) or a failed `accept` (tiny_http's accept thread then
            // ends; requests on open connections still come, so keep serving those).
            Err(_) if shared.stop.is_set() => break,
            Err(_) => continue,
        }
    }
}

/// Requests further apart than this mean the backend is idle (for `nudge`).
const QUIET_MS: u64 = 2000;

/// Works around a lost wake-up in tiny_http 0.12's connection thread pool.
///
/// tiny_http hands each accepted connection to a pool thread, and starts a new thread only when
/// its count of idle threads is 0. That count drops only once a woken thread runs, so in a burst
/// of connections (a proxy opening many upstream connections at once) the accept thread can
/// queue more connections than there are idle threads to wake, and the extra ones wait, unread,
/// until some other connection closes: with keep-alive, maybe for ever (seen here: 12 of 32
/// connections of a burst left unanswered). A connection made while every pool thread is busy
/// gets a new thread, which, once that connection ends, takes the next queued one.
///
/// So this thread connects to the backend and closes at once: every 25 ms while requests come
/// in (and in the first 2 s), every second when idle, and at once when requests resume. Each
/// nudge frees at most one stranded connection and costs an accept and a read of end of file.
fn nudge(shared: &Shared) {
    const BUSY: Duration = Duration::from_millis(25);
    const IDLE: Duration = Duration::from_secs(1);
    let port = shared.addr.port();
    let target = match shared.addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        _ => shared.addr,
    };
    loop {
        let last = shared.last_request_ms.load(Ordering::Relaxed);
        let busy = shared.millis().saturating_sub(last) < QUIET_MS;
        shared.bell.wait(if busy { BUSY } else { IDLE });
        if shared.stop.is_set() {
            return;
        }
        let _ = TcpStream::connect_timeout(&target, Duration::from_millis(200));
    }
}

/// Wakes the nudger early: when requests resume after a quiet spell, and at stop.
#[derive(Default)]
pub(crate) struct Bell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Bell {
    fn ring(&self) {
        *lock(&self.rung) = true;
        self.cond.notify_one();
    }

    /// Waits until rung (and clears it) or until `timeout` has passed.
    fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut rung = lock(&self.rung);
        while !*rung {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            rung = match self.cond.wait_timeout(rung, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *rung = false;
    }
}

/// A flag with a condition variable, so sleeps end early when the backend stops.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    cond: Condvar,
}

impl StopSignal {
    fn trigger(&self) {
        *lock(&self.stopped) = true;
        self.cond.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps for `duration`; returns early (and `false`) if the backend is stopping.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut stopped = lock(&self.stopped);
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopped = match self.cond.wait_timeout(stopped, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        false
    }
}

/// A poisoned lock only means another worker panicked; the flag inside is still valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options() {
        let o = Options::default();
        assert_eq!((o.name.as_str(), o.delay_ms, o.workers), ("b1", 0, 16));
    }

    #[test]
    fn rejects_bad_options() {
        for options in [
            Options {
                workers: 0,
                ..Options::default()
            },
            Options {
                name: String::new(),
                ..Options::default()
            },
            Options {
                name: "b1\r\nX-Evil: 1".into(),
                ..Options::default()
            },
            Options {
                name: " b1".into(),
                ..Options::default()
            },
        ] {
            let err = Backend::start("127.0.0.1:0", options.clone()).expect_err("must fail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{options:?}");
        }
    }

    #[test]
    fn stop_signal_sleep_ends_early() {
        let signal = Arc::new(StopSignal::default());
        assert!(signal.sleep(Duration::from_millis(1)));
        let s = Arc::clone(&signal);
        let sleeper = thread::spawn(move || s.sleep(Duration::from_secs(600)));
        signal.trigger();
        assert!(!sleeper.join().expect("no panic"));
        assert!(signal.is_set());
    }
}
