//! Issue 13, protocol gaps 1, 2, 3 and 5, over real sockets: Host validation, absolute-form
//! targets, `Date`, and heads that never end; issue 23's strict HTTP/1.1 edges (non-ASCII and
//! NUL in targets, chunk extensions, long methods, `HTTP/1.2`, underscored fields, TRACE). Run against stage 1 (sequential) and stage 4
//! (the pool, whose readiness check decides when a head is worth a worker).

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use revproxy::http::date::parse_http_date;
use support::{raw_backend, read_request_head, Proxy, TIMEOUT};

const ORIGIN_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// A backend that sends every request head it receives down the channel, and answers a path
/// containing `with-date` with the origin's own `Date`, anything else without one.
fn recording_backend() -> (SocketAddr, Receiver<String>) {
    let (tx, rx) = mpsc::channel::<String>();
    let tx = Arc::new(Mutex::new(tx));
    let addr = raw_backend(move |mut s| {
        for _ in 0..100 {
            let head = String::from_utf8_lossy(&read_request_head(&mut s)).into_owned();
            if head.is_empty() {
                return;
            }
            let line = head.lines().next().unwrap_or("").to_owned();
            let reply = if line.contains("early-hints") {
                "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                 HTTP/1.1 100 Continue\r\n\r\n\
                 HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_owned()
            } else if line.contains("with-date") {
                format!("HTTP/1.1 200 OK\r\nDate: {ORIGIN_DATE}\r\nContent-Length: 2\r\n\r\nok")
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned()
            };
            let _ = tx.lock().unwrap().send(head);
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// Sends `request` (in 3-byte pieces if `fragments`) on a new connection and returns the
/// status of the proxy's answer, after checking that a refusal closes the connection.
fn status_of(p: &Proxy, request: &[u8], fragments: bool) -> u16 {
    let mut c = p.connect();
    if fragments {
        c.send_in_fragments(request, 3);
    } else {
        c.send(request);
    }
    let res = c
        .try_read_response("GET")
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
    if res.status >= 400 {
        assert_eq!(res.header("connection"), Some("close"));
        assert!(
            c.read_to_close().is_some(),
            "the proxy closes after refusing"
        );
    }
    res.status
}

/// The next client is served, and the next head the backend sees is that client's: nothing
/// refused before it reached the backend.
fn next_client_is_the_first_to_reach_the_backend(p: &Proxy, rx: &Receiver<String>, n: usize) {
    let path = format!("/next-{n}");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(p, request.as_bytes(), false), 200);
    let head = rx
        .recv_timeout(TIMEOUT)
        .expect("the backend saw the request");
    assert!(
        head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
        "a refused request reached the backend:\n{head}"
    );
}

fn refused_and_not_forwarded(bin: &str, cases: &[&[u8]]) {
    let (addr, rx) = recording_backend();
    let mut p = Proxy::start(bin, &[addr], &[]);
    for (n, request) in cases.iter().enumerate() {
        for fragments in [false, true] {
            assert_eq!(
                status_of(&p, request, fragments),
                400,
                "for {:?}",
                String::from_utf8_lossy(request)
            );
            next_client_is_the_first_to_reach_the_backend(&p, &rx, n);
        }
    }
    assert!(p.is_running());
}

pub fn bad_hosts_get_400_and_never_reach_the_backend(bin: &str) {
    refused_and_not_forwarded(
        bin,
        &[
            b"GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test,b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test:8o\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a,b\r\n\r\n",
        ],
    );
}

pub fn valid_hosts_are_forwarded_as_sent(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    for host in [
        "[::1]:8080",
        "a.test:",
        "127.0.0.1:80",
        "xn--bcher-kva.test",
    ] {
        let request = format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(status_of(&p, request.as_bytes(), true), 200, "{host}");
        let head = rx
            .recv_timeout(TIMEOUT)
            .expect("the backend saw the request");
        assert!(head.contains(&format!("\r\nHost: {host}\r\n")), "{head}");
    }
}

pub fn absolute_form_is_forwarded_in_origin_form_with_its_host(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    // (request, request line the backend sees, its Host)
    let cases: &[(&[u8], &str, &str)] = &[
        (
            b"GET http://example.test/x?q HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
            "GET /x?q HTTP/1.1",
            "example.test",
        ),
        (
            b"GET HTTP://Example.test:8080 HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1",
            "Example.test:8080",
        ),
        (
            b"GET https://example.test?a=1 HTTP/1.0\r\n\r\n",
            "GET /?a=1 HTTP/1.1",
            "example.test",
        ),
    ];
    for &(request, line, host) in cases {
        assert_eq!(status_of(&p, request, true), 200);
        let head = rx
            .recv_timeout(TIMEOUT)
            .expect("the backend saw the request");
        assert!(head.starts_with(&format!("{line}\r\n")), "{head}");
        assert!(head.contains(&format!("\r\nHost: {host}\r\n")), "{head}");
        assert_eq!(head.matches("\r\nHost:").count(), 1, "{head}");
        assert!(!head.contains("other.test"), "{head}");
    }
}

pub fn bad_targets_get_400_and_never_reach_the_backend(bin: &str) {
    refused_and_not_forwarded(
        bin,
        &[
            b"GET x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET ftp://a.test/x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http://user@a.test/x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http://a.test/x HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        ],
    );
}

pub fn connect_and_options_star_keep_their_answers(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let connect = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n";
    assert_eq!(status_of(&p, connect, false), 501);
    let options = b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&p, options, false), 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw OPTIONS");
    assert!(head.starts_with("OPTIONS * HTTP/1.1\r\n"), "{head}");
}

pub fn a_response_without_date_gets_one_and_a_date_is_kept(bin: &str) {
    let (addr, _rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let mut c = p.connect();
    c.send(b"GET /no-date HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.status, 200);
    let date = res.header("date").expect("the proxy adds a Date");
    let at = parse_http_date(date.as_bytes()).unwrap_or_else(|| panic!("{date:?} parses"));
    let now = SystemTime::now();
    let skew = now
        .duration_since(at)
        .unwrap_or_else(|e| e.duration())
        .as_secs();
    assert!(skew <= 5, "Date {date} is {skew} s from now");
    assert_eq!(res.headers.iter().filter(|(n, _)| n == "Date").count(), 1);

    c.send(b"GET /with-date HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    let dates: Vec<&str> = res
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dates, [ORIGIN_DATE], "the origin's Date is kept, alone");
}

/// With the default 60 s head timeout, a head that can never end must still be answered at
/// once, and with 400, not 408. "At once" is the client's own read deadline (`TIMEOUT`, 10 s),
/// far below the head timeout: a proxy that waited for more would leave `status_of` without
/// an answer. No duration is asserted, so a loaded machine cannot fail it.
pub fn heads_that_never_end_get_400_at_once(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\rHost: t\r\r",
        b"GET / HTTP/1.1\r\nHost: t\rX-A: 1\r",
        b"GET /x\r\n",
        b"GET /x\n",
        b"GET /x HTTP/1.1 junk\r\n",
    ];
    for (n, request) in cases.iter().enumerate() {
        for fragments in [false, true] {
            assert_eq!(
                status_of(&p, request, fragments),
                400,
                "for {:?}",
                String::from_utf8_lossy(request)
            );
            next_client_is_the_first_to_reach_the_backend(&p, &rx, n);
        }
    }
}

pub fn early_hints_reach_http11_clients_only(bin: &str) {
    let (addr, _rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let mut c = p.connect();
    c.send(b"GET /early-hints HTTP/1.1\r\nHost: t\r\n\r\n");
    let hints = c.read_response("GET");
    assert_eq!(hints.status, 103, "the interim response comes first");
    assert_eq!(hints.header("link"), Some("</style.css>; rel=preload"));
    let res = c.read_response("GET");
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "ok"),
        "the backend's 100 is not forwarded"
    );
    // The connection is still in step: another request on it gets its own answer.
    c.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    drop(c); // stage 1 serves one connection at a time

    let mut old = p.connect();
    old.send(b"GET /early-hints HTTP/1.0\r\n\r\n");
    let res = old.read_response("GET");
    assert_eq!(
        res.status, 200,
        "an HTTP/1.0 client gets no interim response"
    );
}

pub fn an_early_refusal_of_a_large_upload_reaches_the_client(bin: &str) {
    // The origin refuses on seeing the head, and reads none of the body.
    let addr = raw_backend(|mut s| {
        read_request_head(&mut s);
        let _ =
            s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\ntoo large");
        std::thread::sleep(std::time::Duration::from_secs(3));
    });
    // A body far larger than the socket buffers, so a proxy that keeps sending blocks.
    const BODY: usize = 32 << 20;
    let p = Proxy::start(
        bin,
        &[addr],
        &["--max-body-size", "64m", "--upstream-timeout", "4s"],
    );
    let mut c = p.connect();
    c.send(
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    );
    let mut sender = c.stream.try_clone().unwrap();
    sender
        .set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let upload = std::thread::spawn(move || {
        let piece = vec![b'x'; 64 * 1024];
        // Bounded: BODY / 64 KiB writes at most, and each gives up after the write timeout.
        for _ in 0..BODY / piece.len() {
            if sender.write_all(&piece).is_err() {
                return;
            }
        }
    });
    let res = c.read_response("POST");
    assert_eq!((res.status, res.text().as_str()), (413, "too large"));
    assert_eq!(
        res.header("connection"),
        Some("close"),
        "the rest of the body is not read"
    );
    drop(c);
    upload.join().unwrap();
}

pub fn an_early_2xx_still_gets_the_whole_body(bin: &str) {
    // An origin that answers at once and reads the body while it streams its answer.
    const BODY: usize = 256 * 1024;
    let addr = raw_backend(|mut s| {
        read_request_head(&mut s);
        let said = format!("got {BODY}");
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", said.len());
        let _ = s.write_all(head.as_bytes());
        let mut left = BODY;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        let _ = s.write_all(said.as_bytes());
    });
    let p = Proxy::start(bin, &[addr], &[]);
    let mut c = p.connect();
    let mut request =
        format!("POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    request.resize(request.len() + BODY, b'y');
    c.send(&request);
    let res = c.read_response("POST");
    assert_eq!((res.status, res.text()), (200, format!("got {BODY}")));
}

/// Issue 23's strict HTTP/1.1 edges that are refused: a raw non-ASCII byte in the target, an
/// encoded NUL in the path, and a chunked body whose first chunk-size line has an invalid
/// extension (a bare `;`, a name that is not a token). None reaches the backend: the chunk
/// line is checked before a backend is chosen.
pub fn strict_edges_get_400_and_never_reach_the_backend(bin: &str) {
    refused_and_not_forwarded(
        bin,
        &[
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /caf\xe9 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /x%00.php?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http://t/%00 HTTP/1.1\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;(x)\r\nhello\r\n0\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a b=c\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

/// A valid extension still goes through (to a backend that echoes the body it decoded), and
/// a `%00` in the query is not the path's.
pub fn valid_chunk_extensions_and_query_nuls_are_forwarded(bin: &str) {
    let echo = support::backend("b1");
    let p = Proxy::start(bin, &[echo.addr()], &[]);
    let mut c = p.connect();
    c.send_in_fragments(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5 ; name=\"v;al\" ; flag\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n",
        3,
    );
    let res = c.read_response("POST");
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        res.text().contains("\"body\": \"hello!\""),
        "{}",
        res.text()
    );

    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let request = b"GET /q?nul=%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&p, request, true), 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    assert!(head.starts_with("GET /q?nul=%00 HTTP/1.1\r\n"), "{head}");
}

/// A method of thousands of characters is a bad request line (400), not a long target (414),
/// and is refused from its first bytes: the proxy does not wait for the rest of the line.
pub fn a_very_long_method_gets_400_not_414(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    for len in [2_000, 10_000] {
        let request = format!("{} / HTTP/1.1\r\nHost: t\r\n\r\n", "M".repeat(len));
        assert_eq!(status_of(&p, request.as_bytes(), false), 400, "{len}");
        next_client_is_the_first_to_reach_the_backend(&p, &rx, len);
    }
    // Only a start of the method, in pieces, and the line never ends.
    assert_eq!(status_of(&p, "M".repeat(100).as_bytes(), true), 400);
    next_client_is_the_first_to_reach_the_backend(&p, &rx, 0);
}

/// RFC 9112 section 2.3: `HTTP/1.2` is read as HTTP/1.1 (forwarded as such, and kept alive
/// as an HTTP/1.1 connection is), never refused with 400.
pub fn a_higher_minor_version_is_served_as_http11(bin: &str) {
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    let mut c = p.connect();
    c.send_in_fragments(b"GET /v12 HTTP/1.2\r\nHost: t\r\n\r\n", 3);
    let res = c.read_response("GET");
    assert_eq!(res.status, 200);
    assert_ne!(res.header("connection"), Some("close"), "kept alive as 1.1");
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    assert!(head.starts_with("GET /v12 HTTP/1.1\r\n"), "{head}");
    c.send(b"GET /again HTTP/1.9\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    assert!(head.starts_with("GET /again HTTP/1.1\r\n"), "{head}");
}

/// Fields named with `_` are dropped by default (nginx's `underscores_in_headers off`): a
/// CGI-style backend would read `Content_Length` as `Content-Length`. The flag keeps them.
pub fn underscored_fields_are_dropped_unless_kept(bin: &str) {
    let request = b"GET /u HTTP/1.1\r\nHost: t\r\nContent_Length: 99\r\n\
                    Transfer_Encoding: chunked\r\nX_Api_Key: k\r\nX-Kept: 1\r\nConnection: close\r\n\r\n";
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    assert_eq!(status_of(&p, request, true), 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    assert!(
        !head.contains('_'),
        "an underscored field was forwarded:\n{head}"
    );
    assert!(head.contains("\r\nX-Kept: 1\r\n"), "{head}");

    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &["--underscores-in-headers"]);
    assert_eq!(status_of(&p, request, true), 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    for kept in [
        "Content_Length: 99",
        "Transfer_Encoding: chunked",
        "X_Api_Key: k",
    ] {
        assert!(
            head.contains(&format!("\r\n{kept}\r\n")),
            "{kept} dropped:\n{head}"
        );
    }
}

/// TRACE is answered 405 by the proxy (cross-site tracing) unless `--allow-trace`.
pub fn trace_gets_405_unless_allowed(bin: &str) {
    let request = b"TRACE /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &[]);
    for fragments in [false, true] {
        assert_eq!(status_of(&p, request, fragments), 405);
        next_client_is_the_first_to_reach_the_backend(&p, &rx, 1);
    }

    let (addr, rx) = recording_backend();
    let p = Proxy::start(bin, &[addr], &["--allow-trace"]);
    assert_eq!(status_of(&p, request, false), 200);
    let head = rx.recv_timeout(TIMEOUT).expect("the backend saw it");
    assert!(head.starts_with("TRACE /t HTTP/1.1\r\n"), "{head}");
}

macro_rules! stages {
    ($($stage:ident),*) => {
        $(
            mod $stage {
                const BIN: &str = env!(concat!("CARGO_BIN_EXE_", stringify!($stage)));
                stages!(@tests
                    bad_hosts_get_400_and_never_reach_the_backend,
                    valid_hosts_are_forwarded_as_sent,
                    absolute_form_is_forwarded_in_origin_form_with_its_host,
                    bad_targets_get_400_and_never_reach_the_backend,
                    connect_and_options_star_keep_their_answers,
                    a_response_without_date_gets_one_and_a_date_is_kept,
                    heads_that_never_end_get_400_at_once,
                    early_hints_reach_http11_clients_only,
                    an_early_refusal_of_a_large_upload_reaches_the_client,
                    an_early_2xx_still_gets_the_whole_body,
                    strict_edges_get_400_and_never_reach_the_backend,
                    valid_chunk_extensions_and_query_nuls_are_forwarded,
                    a_very_long_method_gets_400_not_414,
                    a_higher_minor_version_is_served_as_http11,
                    underscored_fields_are_dropped_unless_kept,
                    trace_gets_405_unless_allowed,
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

stages!(stage1, stage4);
