//! The short cuts of the keep-alive path, each checked against what it must never change:
//!
//! - a kept upstream connection idle for under a second is not probed before a GET (the GET
//!   can be sent again on a new connection if the backend had closed it), but always before a
//!   POST, which must never go out on a dead connection;
//! - the parker watches each connection in an edge-triggered `epoll` set from its first park
//!   to its close, so a park is no system call: many parked connections are each served again
//!   when their next request comes, one past its idle timeout is closed on time, and a request
//!   that arrives while a worker still has its connection is served, not left for a report
//!   that an edge-triggered set never sends twice.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{backend, raw_backend, read_request_head, Proxy, TIMEOUT};

/// The first line of a request head, without its CRLF.
fn request_line(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Length of the body a request head announces (0 without `Content-Length`).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

#[test]
fn a_kept_connection_the_backend_closed_is_replaced_for_a_get_and_probed_for_a_post() {
    // A backend that answers one request per connection as if it kept it (no
    // `Connection: close`), then closes it: every kept connection is dead when reused.
    let accepted = Arc::new(AtomicUsize::new(0));
    let (seen_tx, seen) = mpsc::channel::<String>();
    let (closed_tx, closed) = mpsc::channel::<()>();
    let counter = Arc::clone(&accepted);
    let addr = raw_backend(move |mut stream: TcpStream| {
        counter.fetch_add(1, Ordering::SeqCst);
        let head = read_request_head(&mut stream);
        if head.is_empty() {
            return; // the proxy's probe or a connection it never used
        }
        let mut body = vec![0u8; content_length(&head)];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let line = request_line(&head);
        let _ = seen_tx.send(line);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        drop(stream);
        let _ = closed_tx.send(());
    });
    let proxy = Proxy::start(env!("CARGO_BIN_EXE_stage5"), &[addr], &[]);
    let mut client = proxy.connect();
    let requests: [&[u8]; 3] = [
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /third HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for request in requests {
        client.send_in_fragments(request, 11);
        let response = client.read_response("GET");
        assert_eq!(
            response.status,
            200,
            "after {:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(response.text(), "ok");
        // The backend has closed its side before the next request is sent.
        closed.recv_timeout(TIMEOUT).expect("the backend closes");
    }
    let lines: Vec<String> = seen.try_iter().collect();
    assert_eq!(
        lines,
        [
            "GET /first HTTP/1.1",
            "GET /second HTTP/1.1",
            "POST /third HTTP/1.1"
        ],
        "each request reached the backend exactly once"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per request"
    );
}

#[test]
fn many_parked_connections_are_each_served_again_and_an_idle_one_closes_on_time() {
    let b = backend("b1");
    let proxy = Proxy::start(
        env!("CARGO_BIN_EXE_stage4"),
        &[b.addr()],
        &["--idle-timeout", "60s"],
    );
    // 300 keep-alive clients, each served once, then all parked at the same time.
    let mut clients: Vec<_> = (0..300).map(|_| proxy.connect()).collect();
    for client in &mut clients {
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 200);
    }
    // Each comes back in reverse order, a request split in fragments for a few of them.
    for (i, client) in clients.iter_mut().enumerate().rev() {
        let request = b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n";
        if i % 50 == 0 {
            client.send_in_fragments(request, 5);
        } else {
            client.send(request);
        }
        assert_eq!(client.read_response("GET").status, 200, "client {i}");
    }

    // With a short idle timeout a parked connection is closed when it runs out, not at the
    // parker's next safety wake-up (a second later).
    let short = Proxy::start(
        env!("CARGO_BIN_EXE_stage4"),
        &[b.addr()],
        &["--idle-timeout", "300ms"],
    );
    let mut client = short.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
    let parked_at = Instant::now();
    let mut rest = Vec::new();
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let end = client.stream.read_to_end(&mut rest);
    let waited = parked_at.elapsed();
    assert!(
        end.is_ok() && rest.is_empty(),
        "closed without a byte: {end:?}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(900),
        "closed after {waited:?}, for an idle timeout of 300 ms"
    );
}

#[test]
fn a_body_read_whole_before_its_head_goes_out_still_arrives_whole_or_ends_the_connection() {
    // Bodies up to 32 KiB are read whole from the backend before the head goes to the client
    // (one write for both). The backend sends this one in three pieces, each after the
    // proxy has asked for it by reading; then, on a second connection, it breaks off.
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let sent = body.clone();
    let addr = raw_backend(move |mut stream: TcpStream| {
        let head = read_request_head(&mut stream);
        if head.is_empty() {
            return;
        }
        let cut = head.starts_with(b"GET /cut");
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n");
        for piece in sent.chunks(7_000) {
            let _ = stream.write_all(piece);
            let _ = stream.flush();
            if cut {
                return; // 7,000 bytes of 20,000, then the connection ends
            }
            std::thread::sleep(Duration::from_millis(20)); // a backend producing slowly
        }
    });
    let proxy = Proxy::start(env!("CARGO_BIN_EXE_stage4"), &[addr], &[]);
    let mut client = support::connect(proxy.addr);
    client.send_in_fragments(b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\n", 5);
    let res = client.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.body, body, "the body, whole and in order");
    // Still kept alive: the next request on the same connection is answered.
    client.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    let got = client
        .read_to_close()
        .expect("the proxy closes within the timeout");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:.80}");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[head_end..], &body[..7_000], "what came, then a close");
}

#[test]
fn a_request_that_arrives_while_the_worker_waits_on_the_backend_is_served_next() {
    // The backend answers the first request only when told to, so the second one reaches the
    // proxy while a worker still has the connection: its arrival is reported then, and never
    // again, so the worker must find the note when it parks the connection.
    let (got_tx, got) = mpsc::channel::<String>();
    let (answer_tx, answer) = mpsc::channel::<()>();
    let answer = Arc::new(Mutex::new(answer));
    let addr = raw_backend(move |mut stream: TcpStream| loop {
        let head = read_request_head(&mut stream);
        if head.is_empty() {
            return;
        }
        let line = request_line(&head);
        let first = line.starts_with("GET /first");
        let _ = got_tx.send(line.clone());
        if first && answer.lock().unwrap().recv_timeout(TIMEOUT).is_err() {
            return;
        }
        // The body is the path's name: `/first` is answered `first`.
        let name = line
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/');
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    });
    // An idle timeout far beyond the test's patience: a stranded request would not be saved
    // by it.
    let proxy = Proxy::start(
        env!("CARGO_BIN_EXE_stage5"),
        &[addr],
        &["--idle-timeout", "120s"],
    );
    let mut client = proxy.connect();
    // Parked once first, so the socket is in the parker's set before the test starts.
    client.send_in_fragments(b"GET /zero HTTP/1.1\r\nHost: t\r\n\r\n", 7);
    assert_eq!(client.read_response("GET").text(), "zero");
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), "GET /zero HTTP/1.1");
    client.send_in_fragments(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n", 7);
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), "GET /first HTTP/1.1");
    // The worker now waits on the backend; the next request arrives meanwhile.
    client.send_in_fragments(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n", 7);
    answer_tx.send(()).unwrap();
    assert_eq!(client.read_response("GET").text(), "first");
    let started = Instant::now();
    let second = client.read_response("GET");
    assert_eq!(second.text(), "second", "the second request is served");
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), "GET /second HTTP/1.1");
    assert!(started.elapsed() < TIMEOUT);
}
