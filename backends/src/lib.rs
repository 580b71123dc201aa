//! Demo origin servers for revproxy.
//!
//! A [`Backend`] is a small HTTP/1.1 server with endpoints made for testing a reverse proxy:
//! `/echo` shows what the proxy forwarded, `/chunked` and `/bytes/N` exercise body framing,
//! `/slow` and `/drop` imitate a sick upstream, `/cacheable` lets a cache test tell a cached
//! answer from a fresh one, `/ws` is a WebSocket echo. Every response names the backend in `X-Backend-Server`, so a
//! balancing test can see where each request went.
//!
//! It is built on [hyper] (on a tokio runtime the `Backend` owns), not on the proxy's own HTTP
//! code: if both ends shared one implementation, a framing bug could cancel itself out and
//! every test would still pass.
//!
//! ```no_run
//! let backend = backends::Backend::start("127.0.0.1:0", backends::Options::default())?;
//! println!("{} on http://{}", backend.name(), backend.addr());
//! backend.stop();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The endpoint table is in `backends/README.md`; the handlers are in `routes.rs`.

mod body;
mod routes;
mod websocket;
mod wire;

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// More runtime threads than this only add contention (a thread serves any number of
/// connections); a larger `workers` is accepted and treated as this.
pub const MAX_THREADS: usize = 64;

/// How a [`Backend`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Shown in `X-Backend-Server` and in bodies. Printable ASCII without spaces at the ends.
    pub name: String,
    /// Latency added before every response, to imitate real work (a timer, not a thread).
    pub delay_ms: u64,
    /// Runtime worker threads. At least 1; above [`MAX_THREADS`] counts as `MAX_THREADS`. Each
    /// thread serves any number of connections, so this is not a limit on concurrent requests.
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "b1".to_string(),
            delay_ms: 0,
            workers: default_workers(),
        }
    }
}

/// The default of [`Options::workers`]: the CPUs available, at most 4.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A running demo origin server. Stops on [`Backend::stop`] or on drop.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: usize,
    /// Owns every task: the accept loop (with the listening socket) and one per connection.
    runtime: Option<Runtime>,
}

/// What the connection tasks share.
pub(crate) struct Shared {
    pub(crate) name: String,
    /// `name` as a header value, made once.
    pub(crate) header: HeaderValue,
    pub(crate) delay: Duration,
    /// Full `/cacheable` responses generated so far.
    pub(crate) cacheable_count: AtomicU64,
}

impl Backend {
    /// Binds `addr` (e.g. "127.0.0.1:0" for an ephemeral port) and serves on a runtime of its
    /// own, in background threads named `backend-NAME`.
    ///
    /// Returns once the socket is bound and listening, so a client may connect right away.
    /// Fails with `InvalidInput` if `options.workers` is 0 or the name cannot go in a header.
    pub fn start(addr: &str, options: Options) -> io::Result<Backend> {
        let header = validate(&options)?;
        let listener = StdListener::bind(addr)?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let threads = options.workers.min(MAX_THREADS);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("backend-{}", options.name))
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            name: options.name,
            header,
            delay: Duration::from_millis(options.delay_ms),
            cacheable_count: AtomicU64::new(0),
        });
        runtime.spawn(accept(listener, Arc::clone(&shared)));
        Ok(Backend {
            addr: local,
            shared,
            threads,
            runtime: Some(runtime),
        })
    }

    /// The real bound address (port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name given in [`Options::name`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Stops like a process that dies: the port refuses connections once this returns, every
    /// open connection is closed, and `/slow` or delayed requests end unanswered.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside another runtime a blocking wait would panic: the tasks (listener,
            // connections, sleeps) are still dropped, but maybe after this returns.
            runtime.shutdown_background();
        } else {
            // Drops every task, and with them the listening socket and every connection. Tasks
            // here never block, so this is quick; the timeout only bounds the wait.
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
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
            .field("threads", &self.threads)
            .finish()
    }
}

/// Checks the options; returns the name as a header value.
fn validate(options: &Options) -> io::Result<HeaderValue> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_string());
    if options.workers == 0 {
        return Err(invalid("workers must be at least 1"));
    }
    let name = &options.name;
    // The name goes into a header value and a thread name.
    if name.is_empty()
        || name.trim() != name
        || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(invalid(
            "backend name must be non-empty printable ASCII, no leading/trailing space",
        ));
    }
    HeaderValue::from_str(name).map_err(|_| invalid("backend name cannot go in a header"))
}

/// Accepts connections until the runtime is shut down (which drops this task, and the
/// listening socket with it).
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors, say: wait a little instead of spinning on the error.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Serves one connection: HTTP/1.1 keep-alive (and HTTP/1.0's, when asked) until the client
/// closes, a request asks to close, or the backend stops.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    // Without it a response written in two pieces (head, then body) waits for the client's
    // delayed ACK (Nagle): some 40 ms per keep-alive response.
    let _ = stream.set_nodelay(true);
    let log = Arc::new(Mutex::new(wire::HeadLog::default()));
    let io = TokioIo::new(wire::Recorder::new(stream, Arc::clone(&log)));
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        // Now, before the body is read: the head hyper just parsed is still in the log.
        let parsed = wire::Parsed {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
        };
        let is_echo = matches!(
            routes::Route::parse(request.uri().path()),
            routes::Route::Echo
        );
        let raw = wire::lock(&log).take(&parsed, is_echo);
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(routes::handle(&shared, request, raw).await) }
    });
    // An error here is the client's (a malformed request, hyper has answered 400 if it could)
    // or `/drop`'s; either way the connection is over.
    let _ = http1::Builder::new()
        // A client may shut down its sending side once the request is out (a simple proxy
        // does); without this hyper would then drop the request unanswered.
        .half_close(true)
        .title_case_headers(true)
        .max_buf_size(wire::MAX_BUF)
        .serve_connection(io, service)
        // `/ws` takes the connection over after its 101.
        .with_upgrades()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options() {
        let o = Options::default();
        assert_eq!((o.name.as_str(), o.delay_ms), ("b1", 0));
        assert!((1..=4).contains(&o.workers), "{}", o.workers);
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
    fn many_workers_are_capped() {
        let options = Options {
            workers: 4096,
            ..Options::default()
        };
        let b = Backend::start("127.0.0.1:0", options).expect("start");
        assert_eq!(b.threads, MAX_THREADS);
    }
}
