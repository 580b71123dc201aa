//! The shared integration suite: every proxy stage must pass all of it, against real backends
//! over real sockets. Each test starts its own stage process on port 0.
//!
//! Adding a stage: one more `suite!` line at the bottom.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use support::{backend, dead_addr, raw_backend, read_request_head, Proxy, TIMEOUT};

fn proxy(bin: &str, backend: SocketAddr) -> Proxy {
    Proxy::start(bin, &[backend], &[])
}

fn echo_json(res: &support::Response) -> String {
    assert_eq!(res.status, 200, "{}", res.text());
    res.text()
}

pub fn get_is_forwarded(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send_in_fragments(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", 5);
    let res = c.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello from b1\n");
    assert_eq!(res.header("x-backend-server"), Some("b1"));
    assert_eq!(res.header("via"), Some("1.1 revproxy"));
}

pub fn head_has_no_body_and_keeps_the_connection(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"HEAD /bytes/5000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("HEAD");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-length"), Some("5000"));
    // Had the proxy sent (or waited for) a body, this second response would be garbled.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").text(), "hello from b1\n");
}

pub fn post_with_content_length_in_fragments(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    let body = "x".repeat(10_000);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send_in_fragments(request.as_bytes(), 1500);
    let json = echo_json(&c.read_response("POST"));
    assert!(json.contains("\"body_len\": 10000"), "{json}");
    assert!(json.contains("\"method\": \"POST\""), "{json}");
}

pub fn chunked_request_body(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send_in_fragments(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        3,
    );
    let json = echo_json(&c.read_response("POST"));
    assert!(json.contains("\"body\": \"hello, world\""), "{json}");
}

pub fn chunked_response(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"GET /chunked?chunks=5&size=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.header("transfer-encoding"), Some("chunked"));
    assert_eq!(res.body.len(), 5000);
    // The connection is still usable after the last chunk.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
}

pub fn http10_client_gets_chunked_response_delimited_by_close(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"GET /chunked?chunks=3&size=10 HTTP/1.0\r\n\r\n");
    let all = c.read_to_close().expect("the proxy closes after the body");
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains("Transfer-Encoding"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).expect("a body");
    assert_eq!(body.len(), 30, "three chunks of ten bytes, decoded: {text}");
}

/// The backend sends the first megabyte of a 5 MB body and then waits until the client has
/// seen body bytes: a proxy that collected the whole body first would never deliver any.
pub fn large_response_streams_before_backend_finishes(bin: &str) {
    const TOTAL: usize = 5_000_000;
    let (seen_tx, seen_rx) = mpsc::channel::<()>();
    let seen_rx = std::sync::Arc::new(std::sync::Mutex::new(seen_rx));
    let addr = raw_backend(move |mut s| {
        read_request_head(&mut s);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![b'a'; 1_000_000]).unwrap();
        let released = seen_rx.lock().unwrap().recv_timeout(TIMEOUT).is_ok();
        if released {
            let _ = s.write_all(&vec![b'b'; TOTAL - 1_000_000]);
        }
    });
    let p = proxy(bin, addr);
    let mut c = p.connect();
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 65536];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"aaaa") {
        let n = std::io::Read::read(&mut c.stream, &mut first)
            .expect("body bytes arrive while the backend waits");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&first[..n]);
    }
    seen_tx.send(()).unwrap();
    let rest = c.read_to_close_or_len(TOTAL, &got);
    assert_eq!(rest, TOTAL);
}

pub fn three_requests_on_one_connection(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    for path in ["/", "/status/201", "/bytes/20000"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.send(request.as_bytes());
        let res = c.read_response("GET");
        match path {
            "/" => assert_eq!(res.status, 200),
            "/status/201" => assert_eq!(res.status, 201),
            _ => assert_eq!(res.body.len(), 20_000),
        }
    }
}

pub fn pipelined_requests_are_answered_in_order(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(
        b"GET /status/202 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/second HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read_response("GET").status, 202);
    let json = echo_json(&c.read_response("GET"));
    assert!(json.contains("/echo/second"), "{json}");
}

pub fn forwarding_headers_are_set(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"GET /echo HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    let json = echo_json(&c.read_response("GET"));
    let compact: String = json.split_whitespace().collect();
    assert!(
        compact.contains("[\"X-Forwarded-For\",\"203.0.113.9,127.0.0.1\"]"),
        "{json}"
    );
    assert!(
        compact.contains("[\"X-Forwarded-Proto\",\"http\"]"),
        "{json}"
    );
    assert!(
        compact.contains("[\"X-Forwarded-Host\",\"site.test\"]"),
        "{json}"
    );
    assert!(
        compact.contains("[\"Host\",\"site.test\"]"),
        "the client's Host is kept: {json}"
    );
}

pub fn hop_by_hop_headers_are_removed(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Upgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    );
    let json = echo_json(&c.read_response("GET"));
    for gone in [
        "X-Private",
        "Keep-Alive",
        "Proxy-Connection",
        "\"TE\"",
        "Upgrade",
        "\"Connection\"",
    ] {
        assert!(!json.contains(gone), "{gone} reached the backend: {json}");
    }
    assert!(json.contains("X-Kept"), "{json}");
}

pub fn path_and_query_are_forwarded_byte_for_byte(bin: &str) {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let addr = raw_backend(move |mut s| {
        let head = read_request_head(&mut s);
        let _ = tx.lock().unwrap().send(head);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let p = proxy(bin, addr);
    let mut c = p.connect();
    let target = "/a%2Fb/../%7Euser/./x%20y?q=%2F%zz&r=a+b#frag";
    // '#' never goes on the wire; use the part a client would send.
    let target = target.split('#').next().unwrap();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(c.read_response("GET").status, 200);
    let head = rx
        .recv_timeout(TIMEOUT)
        .expect("the backend saw the request");
    let line = String::from_utf8_lossy(&head);
    assert!(
        line.starts_with(&format!("GET {target} HTTP/1.1\r\n")),
        "{line}"
    );
}

pub fn bad_gateway_when_backend_is_down(bin: &str) {
    let mut p = proxy(bin, dead_addr());
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 502);
    // The client's connection stays usable after a 502 on a request without a body.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 502);
    assert!(p.is_running());
}

/// The proxy's own answer to a HEAD has no body: on a kept connection, a body would be read
/// as the start of the next response.
pub fn error_reply_to_head_has_no_body(bin: &str) {
    let p = proxy(bin, dead_addr());
    let mut c = p.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_response("HEAD");
    assert_eq!(head.status, 502);
    let next = c.read_response("GET");
    assert_eq!(
        next.status, 502,
        "the second response starts where the first ended"
    );
    assert_eq!(next.text(), "502 Bad Gateway\n");
}

/// A backend that takes a POST on a kept connection and closes without answering may have
/// acted on it: the POST must not be sent again on a new connection.
pub fn post_on_a_reused_connection_is_not_replayed(bin: &str) {
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&posts);
    let addr = raw_backend(move |mut s| {
        loop {
            let head = read_request_head(&mut s);
            if head.is_empty() {
                return;
            }
            if head.starts_with(b"POST") {
                counted.fetch_add(1, Ordering::SeqCst);
                return; // close without answering
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    let p = proxy(bin, addr);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    c.send(b"POST /charge HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read_response("POST").status, 502);
    assert_eq!(posts.load(Ordering::SeqCst), 1, "the POST was sent twice");
}

pub fn gateway_timeout_with_slow_backend(bin: &str) {
    let b = backend("b1");
    let mut p = Proxy::start(bin, &[b.addr()], &["--upstream-timeout", "300ms"]);
    let mut c = p.connect();
    c.send(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 504);
    drop(c); // stage 1 serves one connection at a time: let the next client in
    p.assert_serves();
}

pub fn bad_requests_get_400_and_the_next_client_is_served(bin: &str) {
    let b = backend("b1");
    let mut p = proxy(bin, b.addr());
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n", 417),
    ];
    for (request, status) in cases {
        let mut c = p.connect();
        c.send(request);
        let res = c.read_response("GET");
        assert_eq!(
            res.status,
            *status,
            "for {:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(res.header("connection"), Some("close"));
        assert!(
            c.read_to_close().is_some(),
            "the proxy closes after refusing"
        );
        drop(c);
        p.assert_serves();
    }
}

pub fn oversized_heads_get_414_and_431(bin: &str) {
    let b = backend("b1");
    let mut p = proxy(bin, b.addr());
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
        "c".repeat(40_000)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-N: 1\r\n".repeat(150)
    );
    for (request, status) in [(long_uri, 414), (big_header, 431), (many, 431)] {
        let mut c = p.connect();
        c.send(request.as_bytes());
        assert_eq!(c.read_response("GET").status, status);
        drop(c);
        p.assert_serves();
    }
}

pub fn slow_header_gets_408(bin: &str) {
    let b = backend("b1");
    let mut p = Proxy::start(bin, &[b.addr()], &["--header-timeout", "300ms"]);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n"); // never finished
    assert_eq!(c.read_response("GET").status, 408);
    drop(c);
    p.assert_serves();
}

/// A body that stops coming is answered 408 after `--body-timeout`, not after the 60 s
/// default, and the proxy serves the next client.
pub fn stalled_body_gets_408(bin: &str) {
    let b = backend("b1");
    let mut p = Proxy::start(bin, &[b.addr()], &["--body-timeout", "300ms"]);
    let mut c = p.connect();
    let started = std::time::Instant::now();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"); // 7 short
    assert_eq!(c.read_response("POST").status, 408);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "answered after {took:?}"
    );
    drop(c);
    p.assert_serves();
}

pub fn expect_100_continue(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(
        c.read_response("POST").status,
        100,
        "the proxy invites the body"
    );
    c.send(b"hello");
    let json = echo_json(&c.read_response("POST"));
    assert!(json.contains("\"body\": \"hello\""), "{json}");
    assert!(!json.contains("Expect"), "{json}");
}

/// A response cut off midway must not look complete: the proxy closes the connection.
pub fn truncated_response_closes_the_client_connection(bin: &str) {
    let b = backend("b1");
    let mut p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        c.try_read_response("GET").is_none(),
        "a truncated body must not arrive as complete"
    );
    p.assert_serves();
}

pub fn http10_keep_alive_when_asked(bin: &str) {
    let b = backend("b1");
    let p = proxy(bin, b.addr());
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.header("connection"), Some("keep-alive"));
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(c.read_to_close().is_some());
}

pub fn keep_alive_backend_that_never_closes(bin: &str) {
    // The C course read until the backend closed; a keep-alive backend never does.
    let addr = raw_backend(|mut s| {
        for _ in 0..10 {
            if read_request_head(&mut s).is_empty() {
                return;
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nalive")
                .is_err()
            {
                return;
            }
        }
    });
    let p = proxy(bin, addr);
    let mut c = p.connect();
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").text(), "alive");
    }
}

macro_rules! suite {
    ($stage:ident) => {
        mod $stage {
            const BIN: &str = env!(concat!("CARGO_BIN_EXE_", stringify!($stage)));
            suite!(@tests
                get_is_forwarded,
                head_has_no_body_and_keeps_the_connection,
                post_with_content_length_in_fragments,
                chunked_request_body,
                chunked_response,
                http10_client_gets_chunked_response_delimited_by_close,
                large_response_streams_before_backend_finishes,
                three_requests_on_one_connection,
                pipelined_requests_are_answered_in_order,
                forwarding_headers_are_set,
                hop_by_hop_headers_are_removed,
                path_and_query_are_forwarded_byte_for_byte,
                bad_gateway_when_backend_is_down,
                gateway_timeout_with_slow_backend,
                error_reply_to_head_has_no_body,
                post_on_a_reused_connection_is_not_replayed,
                bad_requests_get_400_and_the_next_client_is_served,
                oversized_heads_get_414_and_431,
                slow_header_gets_408,
                stalled_body_gets_408,
                expect_100_continue,
                truncated_response_closes_the_client_connection,
                http10_keep_alive_when_asked,
                keep_alive_backend_that_never_closes,
            );
        }
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

suite!(stage1);
suite!(stage2);
suite!(stage3);
suite!(stage4);
suite!(stage5);
