//! The request phases plugged into a real relay over real sockets: a request phase that
//! answers itself, a route phase, a body transform, a body observer, a logging phase; and the
//! pool serving a stream that buffers inside itself (as TLS does).

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use revproxy::http::stream::{BoxedTransport, Transport};
use revproxy::http::{BufStream, RequestHead, ResponseHead, Socket};
use revproxy::relay::{
    AnsweredBy, BodyObserver, BodyPlan, BodyTransform, Client, ClientTimeouts, Phases, Relay,
    RelayConfig, Reply, Summary, UpstreamAnswer,
};
use revproxy::server::pool::{Pool, PoolConfig};
use revproxy::server::{self, ConnectionHandler};
use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts, Upstreams};
use support::{connect, dead_addr, raw_backend, read_request_head, TIMEOUT};

/// What the logging phase saw: status, who answered, whether a request head was read, and
/// the body bytes the client was sent.
type Logged = (u16, AnsweredBy, bool, u64);

struct TestPhases {
    second: SingleUpstream,
    dead: SingleUpstream,
    logged: Mutex<Sender<Logged>>,
    observed: Mutex<Sender<(Vec<u8>, bool)>>,
}

#[derive(Default)]
struct Ctx {
    upper: bool,
    observe: bool,
}

impl Phases for TestPhases {
    type Ctx = Ctx;

    fn request(&self, ctx: &mut Ctx, head: &mut RequestHead, _client: &Client) -> Option<Reply> {
        if head.target == "/teapot" {
            return Some(
                Reply::new(418)
                    .header("X-Teapot", "short and stout")
                    .text("I'm a teapot\n"),
            );
        }
        ctx.upper = head.target.starts_with("/upper");
        ctx.observe = head.target.starts_with("/observe");
        None
    }

    fn route<'a>(&'a self, _ctx: &mut Ctx, head: &RequestHead) -> Option<&'a dyn Upstreams> {
        if head.target.starts_with("/dead/") {
            return Some(&self.dead as &dyn Upstreams);
        }
        head.target
            .starts_with("/b/")
            .then_some(&self.second as &dyn Upstreams)
    }

    fn upstream_answer(
        &self,
        _ctx: &mut Ctx,
        request: &RequestHead,
        answer: UpstreamAnswer<'_>,
    ) -> Option<Reply> {
        let replaced = match answer {
            UpstreamAnswer::Response(head) => {
                request.target == "/replace-500" && head.status == 500
            }
            UpstreamAnswer::Failed(status) => request.target == "/dead/replace" && status == 502,
        };
        replaced.then(|| Reply::new(200).text("replaced\n"))
    }

    fn response_head(
        &self,
        ctx: &mut Ctx,
        _request: &RequestHead,
        _response: &mut ResponseHead,
        body: &mut BodyPlan,
    ) {
        if ctx.upper {
            body.transform(Upper);
        }
        if ctx.observe {
            body.observe(Recorder {
                seen: Vec::new(),
                to: self.observed.lock().unwrap().clone(),
            });
        }
    }

    fn logging(&self, _ctx: &mut Ctx, summary: &Summary<'_>) {
        let entry = (
            summary.status,
            summary.answered_by,
            summary.request.is_some(),
            summary.body_bytes,
        );
        let _ = self.logged.lock().unwrap().send(entry);
    }
}

struct Upper;

impl BodyTransform for Upper {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend(input.iter().map(u8::to_ascii_uppercase));
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }
}

struct Recorder {
    seen: Vec<u8>,
    to: Sender<(Vec<u8>, bool)>,
}

impl BodyObserver for Recorder {
    fn data(&mut self, bytes: &[u8]) {
        self.seen.extend_from_slice(bytes);
    }

    fn end(&mut self, complete: bool) {
        let _ = self.to.send((std::mem::take(&mut self.seen), complete));
    }
}

/// The first backend: answers by path, and reports every target it receives.
fn first_backend(targets: Sender<String>) -> SocketAddr {
    let targets = Arc::new(Mutex::new(targets));
    raw_backend(move |mut s| loop {
        let head = read_request_head(&mut s);
        if head.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let target = text.split(' ').nth(1).unwrap_or("").to_owned();
        let _ = targets.lock().unwrap().send(target.clone());
        let reply: &[u8] = match target.as_str() {
            "/upper-chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\nd\r\nchunked world\r\n0\r\n\r\n"
            }
            "/upper-length" => b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello length",
            "/replace-500" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
            "/observe-full" => b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nobserved body",
            "/observe-break" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                return; // and close: the body breaks off
            }
            "/slow" => {
                thread::sleep(Duration::from_millis(1500));
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfrom a",
        };
        if s.write_all(reply).is_err() {
            return;
        }
    })
}

fn second_backend() -> SocketAddr {
    raw_backend(|mut s| {
        while !read_request_head(&mut s).is_empty() {
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfrom b")
                .is_err()
            {
                return;
            }
        }
    })
}

struct Harness {
    addr: SocketAddr,
    targets: Receiver<String>,
    logged: Receiver<Logged>,
    observed: Receiver<(Vec<u8>, bool)>,
}

fn relay_config(head_timeout: Duration, idle: Duration) -> RelayConfig {
    let mut config = RelayConfig::default();
    config.client.timeouts = ClientTimeouts {
        head: head_timeout,
        idle,
        ..ClientTimeouts::default()
    };
    config
}

fn connector() -> Connector {
    Connector::new(UpstreamTimeouts {
        connect: TIMEOUT,
        read: TIMEOUT,
        write: TIMEOUT,
    })
}

/// Serves `handler` with a pool on a free port, in a thread that lives as long as the test.
fn serve_pool(handler: Arc<dyn ConnectionHandler>, pool: PoolConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Pool::new(&pool).unwrap();
    thread::spawn(move || server::serve(&listener, &pool, handler));
    addr
}

fn start(pool: PoolConfig, head_timeout: Duration) -> Harness {
    let (targets_tx, targets) = mpsc::channel();
    let (logged_tx, logged) = mpsc::channel();
    let (observed_tx, observed) = mpsc::channel();
    let phases = TestPhases {
        second: SingleUpstream(second_backend()),
        dead: SingleUpstream(dead_addr()),
        logged: Mutex::new(logged_tx),
        observed: Mutex::new(observed_tx),
    };
    let relay = Relay::with_phases(
        relay_config(head_timeout, TIMEOUT),
        Arc::new(SingleUpstream(first_backend(targets_tx))),
        connector(),
        phases,
    );
    Harness {
        addr: serve_pool(Arc::new(relay), pool),
        targets,
        logged,
        observed,
    }
}

fn default_harness() -> Harness {
    start(PoolConfig::default(), TIMEOUT)
}

#[test]
fn a_request_phase_answers_itself_and_the_connection_stays_usable() {
    let h = default_harness();
    let mut c = connect(h.addr);
    c.send_in_fragments(b"GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n", 5);
    let res = c.read_response("GET");
    assert_eq!(res.status, 418);
    assert_eq!(res.header("x-teapot"), Some("short and stout"));
    assert_eq!(res.text(), "I'm a teapot\n");
    c.send(b"HEAD /teapot HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!(res.status, 418);
    assert_eq!(
        res.header("content-length"),
        Some("13"),
        "HEAD gets GET's headers"
    );
    assert_eq!(res.header("x-teapot"), Some("short and stout"));
    // Nothing of a body followed the HEAD answer: the next response parses from its start.
    c.send(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "from a"));
    assert_eq!(
        h.targets.recv_timeout(TIMEOUT).unwrap(),
        "/plain",
        "the teapot never went upstream"
    );
    let answered: Vec<Logged> = (0..3)
        .map(|_| h.logged.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert_eq!(
        answered,
        vec![
            (418, AnsweredBy::Phase, true, 13),
            (418, AnsweredBy::Phase, true, 0),
            (200, AnsweredBy::Upstream, true, 6)
        ]
    );
}

#[test]
fn an_upstream_answer_phase_replaces_a_500_and_an_unreachable_backend() {
    let h = default_harness();
    let mut c = connect(h.addr);
    c.send(b"GET /replace-500 HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "replaced\n"));
    assert_eq!(h.targets.recv_timeout(TIMEOUT).unwrap(), "/replace-500");
    // The 500's unread body did not leak into the next response on this connection.
    c.send(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").text(), "from a");
    c.send(b"GET /dead/replace HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "replaced\n"));
    c.send(b"GET /dead/other HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        c.read_response("GET").status,
        502,
        "no reply: the refusal stands"
    );
    let logged: Vec<Logged> = (0..4)
        .map(|_| h.logged.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert_eq!(
        logged,
        vec![
            (200, AnsweredBy::Phase, true, 9),
            (200, AnsweredBy::Upstream, true, 6),
            (200, AnsweredBy::Phase, true, 9),
            (502, AnsweredBy::Proxy, true, 0)
        ]
    );
}

#[test]
fn a_route_phase_sends_a_prefix_to_the_second_backend() {
    let h = default_harness();
    let mut c = connect(h.addr);
    for (target, from) in [
        ("/b/x", "from b"),
        ("/x", "from a"),
        ("/b/", "from b"),
        ("/bx", "from a"),
    ] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(c.read_response("GET").text(), from, "{target}");
    }
}

#[test]
fn a_transform_reframes_chunked_and_length_bodies_for_each_client_version() {
    let h = default_harness();
    let mut c = connect(h.addr);
    for (target, body) in [
        ("/upper-chunked", "HELLO CHUNKED WORLD"),
        ("/upper-length", "HELLO LENGTH"),
    ] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let res = c.read_response("GET");
        assert_eq!(res.text(), body, "{target} over HTTP/1.1");
        assert_eq!(res.header("transfer-encoding"), Some("chunked"), "{target}");
        assert_eq!(
            res.header("content-length"),
            None,
            "{target}: the length changed"
        );
    }
    for (target, body) in [
        ("/upper-chunked", "HELLO CHUNKED WORLD"),
        ("/upper-length", "HELLO LENGTH"),
    ] {
        let mut c = connect(h.addr);
        c.send(format!("GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let all = c
            .read_to_close()
            .expect("an HTTP/1.0 re-framed body ends with the connection");
        let text = String::from_utf8_lossy(&all).into_owned();
        let (head, got) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(got, body, "{target} over HTTP/1.0");
        let head = head.to_ascii_lowercase();
        assert!(
            !head.contains("content-length") && !head.contains("transfer-encoding"),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
    }
}

#[test]
fn an_observer_sees_a_complete_body_once_and_learns_when_it_breaks_off() {
    let h = default_harness();
    let mut c = connect(h.addr);
    c.send(b"GET /observe-full HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").text(), "observed body");
    let seen = h.observed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(seen, (b"observed body".to_vec(), true));
    c.send(b"GET /observe-break HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        c.try_read_response("GET").is_none(),
        "a cut-off body is never passed off as whole"
    );
    let seen = h.observed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(seen, (b"0123456789".to_vec(), false));
    let logged: Vec<Logged> = (0..2)
        .map(|_| h.logged.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert_eq!(
        logged[1],
        (200, AnsweredBy::Upstream, true, 10),
        "the log counts the bytes sent before the body broke off"
    );
    assert!(
        h.observed.try_recv().is_err(),
        "each body is observed to its end once"
    );
}

#[test]
fn the_logging_phase_counts_a_408_and_a_pool_full_503() {
    let pool = PoolConfig {
        workers: 1,
        queue: 1,
        ..PoolConfig::default()
    };
    let h = start(pool, Duration::from_millis(300));
    // A head that never ends: the parker answers 408 once the header timeout passes.
    let mut slow = connect(h.addr);
    slow.send(b"GET / HTTP/1.1\r\nHost");
    assert_eq!(slow.read_response("GET").status, 408);
    assert_eq!(
        h.logged.recv_timeout(TIMEOUT).unwrap(),
        (408, AnsweredBy::Proxy, false, 0)
    );

    // The only worker busy with a slow backend, one connection queued: the next gets 503.
    let mut busy = connect(h.addr);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(h.targets.recv_timeout(TIMEOUT).unwrap(), "/slow");
    let mut queued = connect(h.addr);
    queued.send(b"GET /queued HTTP/1.1\r\nHost: t\r\n\r\n");
    // The accept loop takes connections in order, so `queued` is in the queue before this one.
    let mut refused = connect(h.addr);
    let res = refused.read_response("GET");
    assert_eq!(res.status, 503);
    let names: Vec<&str> = res.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Content-Type",
            "Retry-After",
            "Content-Length",
            "Connection"
        ],
        "the same bytes as before replies were `Reply`s"
    );
    assert_eq!(
        h.logged.recv_timeout(TIMEOUT).unwrap(),
        (503, AnsweredBy::Proxy, false, 0)
    );
    assert_eq!(busy.read_response("GET").status, 200);
    assert_eq!(queued.read_response("GET").status, 200);
}

/// A stream that reads everything the socket has but hands it out one request head at a
/// time, keeping the rest inside, as a TLS stream holds decrypted records. With `naive`, it
/// does not tell the pool about what it holds (the trap the `Transport` trait exists for).
struct Hoarding {
    socket: TcpStream,
    held: Vec<u8>,
    naive: bool,
}

impl Read for Hoarding {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.held.is_empty() {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.socket.read(&mut chunk)?;
            self.held.extend_from_slice(&chunk[..n]);
        }
        let record = self
            .held
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.held.len(), |p| p + 4);
        let n = record.min(out.len());
        out[..n].copy_from_slice(&self.held[..n]);
        self.held.drain(..n);
        Ok(n)
    }
}

impl Write for Hoarding {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.socket.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

impl Socket for Hoarding {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }
}

impl AsFd for Hoarding {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Transport for Hoarding {
    fn has_buffered(&self) -> bool {
        !self.naive && !self.held.is_empty()
    }

    fn read_now(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        if self.has_buffered() || revproxy::sys::readable_now(self.socket.as_fd()) {
            return self.read(out).map(Some);
        }
        Ok(None)
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }
}

/// A relay whose client connections arrive in a `Hoarding` stream.
struct HoardingHandler {
    relay: Relay,
    naive: bool,
}

impl ConnectionHandler for HoardingHandler {
    fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        self.relay.serve_tcp(stream, peer);
    }
    fn transport(&self, stream: TcpStream) -> io::Result<BoxedTransport> {
        self.relay.prepare_tcp(&stream)?;
        Ok(Box::new(Hoarding {
            socket: stream,
            held: Vec::new(),
            naive: self.naive,
        }))
    }
    fn serve_next(
        &self,
        conn: &mut BufStream<BoxedTransport>,
        peer: SocketAddr,
        idle: Duration,
    ) -> bool {
        self.relay.serve_next(conn, peer, idle)
    }
    fn request_ready(&self, buffered: &[u8]) -> bool {
        ConnectionHandler::request_ready(&self.relay, buffered)
    }
    fn timeouts(&self) -> ClientTimeouts {
        self.relay.config().client.timeouts
    }
    fn refused(&self, peer: SocketAddr, status: u16, duration: Duration) {
        self.relay.log_refusal(peer, status, duration);
    }
}

fn hoarding_proxy(naive: bool, idle: Duration) -> SocketAddr {
    let (targets, _) = mpsc::channel();
    let relay = Relay::new(
        relay_config(TIMEOUT, idle),
        Arc::new(SingleUpstream(first_backend(targets))),
        connector(),
    );
    serve_pool(
        Arc::new(HoardingHandler { relay, naive }),
        PoolConfig::default(),
    )
}

const TWO_PIPELINED: &[u8] =
    b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_pipelined_request_held_inside_the_stream_is_served_at_once() {
    // An idle timeout far beyond the client's read timeout: a stranded request fails here.
    let addr = hoarding_proxy(false, Duration::from_secs(120));
    let mut c = connect(addr);
    c.send(TWO_PIPELINED);
    assert_eq!(c.read_response("GET").text(), "from a");
    assert_eq!(c.read_response("GET").text(), "from a");
}

#[test]
fn a_stream_that_hides_its_buffer_strands_the_request_until_the_idle_timeout() {
    // The control: the same stream without `has_buffered` loses the second request, so the
    // test above shows the pool looking, not luck.
    let addr = hoarding_proxy(true, Duration::from_millis(500));
    let mut c = connect(addr);
    c.send(TWO_PIPELINED);
    assert_eq!(c.read_response("GET").text(), "from a");
    assert!(
        c.try_read_response("GET").is_none(),
        "the second request was served although the stream hid it"
    );
}
