//! The shared integration suite: every proxy stage must pass all of it, against real backends
//! over real sockets. Each test starts its own stage process on port 0.
//!
//! What any proxy must do (framing both ways, streaming, keep-alive and pipelining, hop-by-hop
//! fields, the target byte for byte, 400/413/414/431/502/504, the smuggling framings) is the
//! grader's to check (`tools/grade`), and `tests/grade.rs` runs every one of its checks against
//! every stage; this suite keeps what is this proxy's own (`Via`, `X-Forwarded-*`, its limits
//! and timeouts, HTTP/1.0 clients, `Expect`). A test here that a chapter names and that the
//! grader covers runs the grader's check by name (`support::grader`), so there is one copy.
//!
//! Adding a stage: one more `suite!` line at the bottom.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{backend, grader, raw_backend, read_request_head, Proxy};

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

/// Chapter 01's exercise on `copy_framed` names this test. Stages 1 to 5 all take `--listen`
/// and `--backend`, so each is graded as a stage 1 program.
pub fn chunked_response(bin: &str) {
    grader::assert_check_passes(1, bin, "chunked_response");
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

/// The grader's origin holds back the last 64 KiB of a 100 MiB body until the client has seen
/// its first bytes: a proxy that collected the whole body first would never deliver any.
pub fn large_response_streams_before_backend_finishes(bin: &str) {
    grader::assert_check_passes(1, bin, "large_body_streams");
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

/// Refusals beyond the grader's (its `bad_request_400`, `body_too_large_413` and the three
/// `smuggling_*` checks): a space before the colon, no Host, a bad chunk size, obs-fold, a
/// control character, CONNECT, an unknown expectation. Each answer says `Connection: close`.
pub fn bad_requests_get_400_and_the_next_client_is_served(bin: &str) {
    let b = backend("b1");
    let mut p = proxy(bin, b.addr());
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400),
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

/// Our own limit on the number of header fields (100): the grader's `header_too_large_431`
/// covers a head too large in bytes, and `uri_too_long_414` a long target.
pub fn too_many_header_fields_get_431(bin: &str) {
    let b = backend("b1");
    let mut p = proxy(bin, b.addr());
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-N: 1\r\n".repeat(150)
    );
    let mut c = p.connect();
    c.send(many.as_bytes());
    assert_eq!(c.read_response("GET").status, 431);
    drop(c);
    p.assert_serves();
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
                chunked_response,
                http10_client_gets_chunked_response_delimited_by_close,
                large_response_streams_before_backend_finishes,
                forwarding_headers_are_set,
                post_on_a_reused_connection_is_not_replayed,
                bad_requests_get_400_and_the_next_client_is_served,
                too_many_header_fields_get_431,
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
