//! What chapter 1 shows: the C course's `Reverse_Proxy.c` read a request with one `read()` into
//! 4 KiB and read the response until the backend closed or the buffer filled. `c_style_forward`
//! below does the same in Rust. Each test runs one scenario through it and through stage 1:
//! the C style fails, stage 1 does not.
//!
//! Run with `cargo test --test c_course_failures -- --nocapture --test-threads 1` to see what
//! happens in each scenario.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::{raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE1: &str = env!("CARGO_BIN_EXE_stage1");
const C_BUFFER_SIZE: usize = 4096;
/// The C code had no timeouts; ours gives up after this so the test can report the hang.
const C_PATIENCE: Duration = Duration::from_secs(1);

/// One exchange the way `Reverse_Proxy.c` does it; returns what the client got.
fn c_style_forward(listener: TcpListener, backend: SocketAddr) {
    let (mut client, _) = listener.accept().unwrap();
    let mut buffer = [0u8; C_BUFFER_SIZE];
    // One read: whatever arrived in the first packet is "the request".
    let received = client.read(&mut buffer[..C_BUFFER_SIZE - 1]).unwrap_or(0);
    let mut upstream = TcpStream::connect(backend).unwrap();
    upstream.write_all(&buffer[..received]).unwrap();
    // Read until the backend closes or the buffer is full.
    upstream.set_read_timeout(Some(C_PATIENCE)).unwrap();
    let mut response = vec![0u8; C_BUFFER_SIZE];
    let mut total = 0;
    while let Ok(n) = upstream.read(&mut response[total..C_BUFFER_SIZE - 1]) {
        if n == 0 {
            break;
        }
        total += n;
        if total >= C_BUFFER_SIZE - 1 {
            break;
        }
    }
    let _ = client.write_all(&response[..total]);
}

/// Starts the C-style forwarder for one exchange and returns its address.
fn c_style(backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || c_style_forward(listener, backend));
    addr
}

fn body_len(response: &[u8]) -> usize {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| response.len() - p - 4)
}

#[test]
fn a_10_kb_response() {
    let backend = raw_backend(|mut s| {
        read_request_head(&mut s);
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10240\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&[b'x'; 10240]);
    });
    let request = b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    let mut c = support::connect(c_style(backend));
    c.send(request);
    let got = c.read_to_close().unwrap_or_default();
    println!(
        "10 KB response, C style: {} of 10240 body bytes arrived",
        body_len(&got)
    );
    assert!(body_len(&got) < 10240);

    let proxy = Proxy::start(STAGE1, &[backend], &[]);
    let mut c = proxy.connect();
    c.send(request);
    let res = c.read_response("GET");
    println!(
        "10 KB response, stage 1: {} of 10240 body bytes arrived",
        res.body.len()
    );
    assert_eq!(res.body.len(), 10240);
}

/// The client sends the head, and the body only once the head has reached the backend: the
/// request arrives in two packets, as it does whenever a body follows a slow network.
#[test]
fn a_request_in_two_packets() {
    let (head_seen_tx, head_seen_rx) = mpsc::channel::<()>();
    let head_seen_tx = Arc::new(Mutex::new(head_seen_tx));
    let (body_tx, body_rx) = mpsc::channel::<Vec<u8>>();
    let body_tx = Arc::new(Mutex::new(body_tx));
    let backend = raw_backend(move |mut s| {
        read_request_head(&mut s);
        let _ = head_seen_tx.lock().unwrap().send(());
        s.set_read_timeout(Some(C_PATIENCE)).unwrap();
        let mut body = [0u8; 5];
        let got = s
            .read_exact(&mut body)
            .map(|()| body.to_vec())
            .unwrap_or_default();
        let _ = body_tx.lock().unwrap().send(got);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
    let head = b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n";

    let mut c = support::connect(c_style(backend));
    c.send(head);
    head_seen_rx.recv_timeout(TIMEOUT).unwrap();
    c.send(b"hello");
    let body = body_rx.recv_timeout(TIMEOUT).unwrap();
    println!(
        "request in two packets, C style: the backend received body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.is_empty());

    let proxy = Proxy::start(STAGE1, &[backend], &[]);
    let mut c = proxy.connect();
    c.send(head);
    head_seen_rx.recv_timeout(TIMEOUT).unwrap();
    c.send(b"hello");
    let body = body_rx.recv_timeout(TIMEOUT).unwrap();
    println!(
        "request in two packets, stage 1: the backend received body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, b"hello");
    assert_eq!(c.read_response("POST").status, 200);
}

/// A keep-alive backend answers and keeps the connection open for the next request. Reading
/// "until the backend closes" then waits forever (here: until our patience runs out).
#[test]
fn a_keep_alive_backend() {
    let backend = raw_backend(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        // Keep the connection open, as any HTTP/1.1 server does, until the peer closes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    let mut c = support::connect(c_style(backend));
    c.send(request);
    let started = std::time::Instant::now();
    c.stream.set_read_timeout(Some(C_PATIENCE / 2)).unwrap();
    let mut first = [0u8; 64];
    let answered = matches!(c.stream.read(&mut first), Ok(n) if n > 0);
    println!(
        "keep-alive backend, C style: answered: {answered}, after waiting {:?} (it waits for a close that never comes)",
        started.elapsed()
    );
    assert!(!answered);

    let proxy = Proxy::start(STAGE1, &[backend], &[]);
    let mut c = proxy.connect();
    c.send(request);
    let started = std::time::Instant::now();
    let res = c.read_response("GET");
    println!(
        "keep-alive backend, stage 1: {} {:?} after {:?}",
        res.status,
        res.text(),
        started.elapsed()
    );
    assert_eq!(res.text(), "hello");
}
