//! Issue 13, gaps 6 and 7, over real sockets: a full-duplex relay (an origin that answers
//! before it has read the request body gets its answer to the client, and an echo streams
//! back while the body is still coming), and blame (a client that breaks its body off never
//! counts against the backend's passive health).
//!
//! The clients here wait for the answer before they send the rest of their body, as a real
//! client does once it sees one: a relay that finishes the upload first waits for them
//! forever (until the 60 s body timeout), and these tests fail at their 10 s read timeout.
//! Run against stage 1 (sequential), stage 4 (the pool) and stage 9 (the full proxy).

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use revproxy::relay::{Relay, RelayConfig};
use revproxy::upstream::{Connector, Outcome, UpstreamTimeouts, Upstreams};
use support::{raw_backend, read_request_head, Client, Proxy};

/// A body far larger than the socket buffers, so that a proxy pushing it into an origin that
/// does not read would block.
const BIG: usize = 8 << 20;
const PIECE: usize = 64 * 1024;

/// Starts `bin` in front of `backend`, allowing bodies of `BIG` bytes: flags for stages 1 to
/// 5, a config file for the others.
fn proxy(bin: &str, backend: SocketAddr, name: &str) -> Proxy {
    if bin.ends_with("stage1") || bin.ends_with("stage4") {
        return Proxy::start(
            bin,
            &[backend],
            &["--max-body-size", "16m", "--upstream-timeout", "5s"],
        );
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 16777216\n\n\
         [upstreams.app]\nservers = [\"{backend}\"]\nread_timeout_ms = 5000\n"
    );
    let path = config_file(
        &format!("{name}-{}", bin.rsplit('/').next().unwrap_or("")),
        &text,
    );
    Proxy::start(bin, &[], &["--config", path.to_str().unwrap()])
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "revproxy-duplex-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Sends the head of a `BIG` upload in fragments, then the first `first` bytes of its body.
fn start_upload(c: &mut Client, path: &str, first: usize) {
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n");
    c.send_in_fragments(head.as_bytes(), 7);
    c.send(&vec![b'x'; first]);
}

/// Sends what is left of a `BIG` upload, a piece at a time, until the proxy stops taking it
/// (bounded: `BIG / PIECE` writes, each under the client's write timeout); returns whether
/// the proxy then closed the connection (rather than leaving it hanging).
fn finish_upload_until_closed(c: &mut Client) -> bool {
    c.stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let piece = vec![b'x'; PIECE];
    for _ in 1..BIG / PIECE {
        if c.stream.write_all(&piece).is_err() {
            break;
        }
    }
    c.read_to_close().is_some()
}

/// An origin that reads the head and answers `413` with `Connection: close` at once, without
/// reading a byte of the body, then holds the connection open a while.
fn refusing_origin() -> SocketAddr {
    raw_backend(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
        );
        // Until the proxy closes its side (or the socket's timeout): never read the body.
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut one = [0u8; 1];
        let _ = s.peek(&mut one);
    })
}

pub fn an_early_413_reaches_a_client_that_waits_for_it(bin: &str) {
    let p = proxy(bin, refusing_origin(), "413");
    let mut c = p.connect();
    // The head alone: this client waits for an answer before it sends its body.
    start_upload(&mut c, "/upload", 0);
    let res = c
        .try_read_response("POST")
        .expect("the origin's answer while the body is still coming (not a 502 or a hang)");
    assert_eq!((res.status, res.text().as_str()), (413, "too large"));
    assert_eq!(res.header("connection"), Some("close"));
    assert!(
        finish_upload_until_closed(&mut c),
        "the proxy closes the connection after the rest of the body"
    );
}

/// An origin that answers a POST with `401` once it has read a first piece of the body,
/// keeping its connection (it reads no more of the body, nor closes), and a GET with 200;
/// it counts the connections it accepts.
fn denying_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepts);
    let addr = raw_backend(move |mut s| {
        counted.fetch_add(1, Ordering::SeqCst);
        // Bounded: a few requests per connection at most in these tests.
        for _ in 0..8 {
            let head = read_request_head(&mut s);
            if head.starts_with(b"POST") && s.read_exact(&mut vec![0u8; PIECE]).is_err() {
                return;
            }
            let reply: &[u8] = if head.starts_with(b"POST") {
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied"
            } else if head.starts_with(b"GET") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            } else {
                // The body, read as if it were the next head: what a reused connection
                // would carry. Answer so that the test sees it.
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nbytes"
            };
            if head.is_empty() || s.write_all(reply).is_err() {
                return;
            }
        }
    });
    (addr, accepts)
}

pub fn an_early_401_on_a_kept_connection_is_not_reused(bin: &str) {
    let (origin, accepts) = denying_origin();
    let p = proxy(bin, origin, "401");
    let mut c = p.connect();
    start_upload(&mut c, "/private", PIECE);
    let res = c
        .try_read_response("POST")
        .expect("the origin's 401 while the body is still coming");
    assert_eq!((res.status, res.text().as_str()), (401, "denied"));
    assert_eq!(
        res.header("connection"),
        Some("close"),
        "the rest of the body is not read as a request"
    );
    assert!(finish_upload_until_closed(&mut c));
    drop(c);

    let mut next = p.connect();
    next.send_in_fragments(
        b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        5,
    );
    let res = next.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        2,
        "the next request went on a new upstream connection"
    );
}

/// An origin that answers `200` chunked at once and echoes the chunked body back as it
/// arrives, byte for byte, until its last chunk.
fn echo_origin() -> SocketAddr {
    raw_backend(|mut s| {
        read_request_head(&mut s);
        if s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .is_err()
        {
            return;
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded by the socket's read timeout and the end of the body.
        while !seen.ends_with(b"0\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

pub fn a_streaming_echo_answers_before_the_body_ends(bin: &str) {
    let p = proxy(bin, echo_origin(), "echo");
    let mut c = p.connect();
    c.send_in_fragments(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        6,
    );
    let head = c.read_until(b"\r\n\r\n").expect("the echo's head");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        read_chunks_until(&mut c, b"first"),
        Some(b"first".to_vec()),
        "the echo of the first chunk arrives before the last is sent"
    );
    c.send(b"4\r\nlast\r\n0\r\n\r\n");
    assert_eq!(
        read_chunks_until(&mut c, b""),
        Some(b"last".to_vec()),
        "the rest of the echo, then the end of the body"
    );
}

/// Reads chunks of a chunked body (whose data holds no CRLF) and returns their data once it
/// is `want`, or up to the last chunk if `want` is empty; `None` if the body ends or breaks
/// off first. Bounded by the client's read timeout and the data's length.
fn read_chunks_until(c: &mut Client, want: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    for _ in 0..64 {
        let line = c.read_until(b"\r\n")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).ok()?;
        if size == 0 {
            c.read_until(b"\r\n")?;
            return want.is_empty().then_some(data);
        }
        let chunk = c.read_until(b"\r\n")?;
        data.extend_from_slice(&chunk[..chunk.len() - 2]);
        if !want.is_empty() && data == want {
            return Some(data);
        }
    }
    None
}

macro_rules! stages {
    ($($stage:ident),*) => {
        $(
            mod $stage {
                const BIN: &str = env!(concat!("CARGO_BIN_EXE_", stringify!($stage)));
                stages!(@tests
                    an_early_413_reaches_a_client_that_waits_for_it,
                    an_early_401_on_a_kept_connection_is_not_reused,
                    a_streaming_echo_answers_before_the_body_ends,
                );
            }
        )*
    };
    (@tests $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test(BIN);
            }
        )*
    };
}

stages!(stage1, stage4, stage9);

// Blame (gap 7) -------------------------------------------------------------------------------

/// An origin that answers `200` as soon as it has the head, then reads the whole body before
/// it sends its own body; it answers its health checks with 200. `/quiet` gets no early head
/// (nothing until the body is in); `/broken` gets a response cut off short.
fn early_200_origin() -> SocketAddr {
    raw_backend(|mut s| {
        let head = read_request_head(&mut s);
        if head.starts_with(b"GET /health") {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            return;
        }
        if head.starts_with(b"GET") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            return;
        }
        if head.starts_with(b"POST /broken") {
            // The origin's own failure, for contrast: a body cut off short of its length.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
            return;
        }
        if !head.starts_with(b"POST /quiet") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
        }
        let mut buf = [0u8; 4096];
        let mut got = 0;
        // Bounded by the socket's read timeout; ends when the proxy closes.
        while got < 1000 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
        let _ = s.write_all(b"done");
    })
}

#[test]
fn a_client_that_breaks_its_body_off_does_not_count_against_the_backend() {
    let origin = early_200_origin();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstreams.app]\nservers = [\"{origin}\"]\nretries = 0\nread_timeout_ms = 1000\n\n\
         [upstreams.app.health]\npath = \"/health\"\ninterval_ms = 60000\ntimeout_ms = 1000\n\
         rise = 1\nfall = 1\n"
    );
    let path = config_file("blame", &text);
    let log =
        std::env::temp_dir().join(format!("revproxy-duplex-{}-blame.log", std::process::id()));
    let stderr = std::fs::File::create(&log).unwrap();
    let stage6 = env!("CARGO_BIN_EXE_stage6");
    let p = Proxy::start_with_stderr(
        stage6,
        &[],
        &["--config", path.to_str().unwrap()],
        Stdio::from(stderr),
    );
    for _ in 0..3 {
        let mut c = p.connect();
        c.send_in_fragments(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nhalf a body",
            9,
        );
        // The origin's early head may or may not reach us before we vanish.
        let _ = c.read_until(b"\r\n\r\n");
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
    // A later request still reaches the backend: it was never marked down.
    let mut c = p.connect();
    c.send(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    drop(p);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains("unhealthy"),
        "a client's failure counted against the backend:\n{logged}"
    );
}

/// The backends' outcomes, as a balancer or a health table would see them.
struct Recording {
    backend: SocketAddr,
    outcomes: std::sync::Mutex<std::sync::mpsc::Sender<Outcome>>,
}

impl Upstreams for Recording {
    fn pick(&self, _client: IpAddr, tried: &[SocketAddr]) -> Option<SocketAddr> {
        (!tried.contains(&self.backend)).then_some(self.backend)
    }

    fn finished(&self, _backend: SocketAddr, outcome: Outcome) {
        let _ = self.outcomes.lock().unwrap().send(outcome);
    }
}

/// An in-process relay whose client body timeout is short (no stage has a flag for it), in
/// front of `early_200_origin`, reporting each attempt's outcome.
fn recording_relay() -> (SocketAddr, std::sync::mpsc::Receiver<Outcome>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let upstreams = Recording {
        backend: early_200_origin(),
        outcomes: std::sync::Mutex::new(tx),
    };
    let mut config = RelayConfig::default();
    config.client.timeouts.body = Duration::from_millis(150);
    let second = Duration::from_secs(3);
    let relay = Arc::new(Relay::new(
        config,
        Arc::new(upstreams),
        Connector::new(UpstreamTimeouts {
            connect: second,
            read: second,
            write: second,
        }),
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (stream, peer) in listener.incoming().map_while(Result::ok).map(|s| {
            let peer = s.peer_addr().unwrap();
            (s, peer)
        }) {
            let relay = Arc::clone(&relay);
            std::thread::spawn(move || relay.serve(stream, peer));
        }
    });
    (addr, rx)
}

#[test]
fn a_stalled_or_vanished_upload_is_the_clients_failure_not_the_backends() {
    let (addr, outcomes) = recording_relay();
    // (path, whether the client vanishes rather than stalls)
    let cases = [
        ("/early", false), // the origin answered early and waits for the body
        ("/early", true),
        ("/quiet", false), // the origin waits for the body before it says anything
        ("/quiet", true),
    ];
    for (path, vanish) in cases {
        let mut c = support::connect(addr);
        c.send_in_fragments(
            format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nhalf")
                .as_bytes(),
            11,
        );
        if vanish {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        // Otherwise the client stalls past the body timeout, and the attempt ends with it
        // (the connection is then closed, after a linger this test need not wait for).
        let outcome = outcomes
            .recv_timeout(Duration::from_secs(5))
            .expect("the attempt ended");
        assert!(
            !outcome.is_backend_failure(),
            "{path} (vanish: {vanish}): the client's failure counted as {outcome:?}"
        );
    }
    // The backend's own failure still counts.
    let mut c = support::connect(addr);
    c.send(b"POST /broken HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    let outcome = outcomes
        .recv_timeout(Duration::from_secs(5))
        .expect("the attempt ended");
    assert_eq!(outcome, Outcome::Failed);
}
