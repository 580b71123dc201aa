//! Every endpoint over a real socket on port 0, with raw request bytes.

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::sync::mpsc;
use std::thread;

use backends::Options;
use common::*;

#[test]
fn hello_names_the_backend() {
    let b = start("alpha");
    let r = get(b.addr(), "/");
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    assert_eq!(r.header("X-Backend-Server"), Some("alpha"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("Content-Length"), Some("17"));
    assert_eq!(r.body_str(), "hello from alpha\n");
    assert_eq!(b.name(), "alpha");
}

#[test]
fn health_is_ok() {
    let b = start("b1");
    let r = get(b.addr(), "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "ok\n");
    assert_eq!(r.header("X-Backend-Server"), Some("b1"));
}

#[test]
fn unknown_path_is_404() {
    let b = start("b1");
    for target in ["/nope", "/healthz", "/status", "/bytes", "*"] {
        let r = get(b.addr(), target);
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.header("X-Backend-Server"), Some("b1"), "{target}");
    }
}

#[test]
fn echo_keeps_path_query_and_headers_raw_and_in_order() {
    let b = start("b2");
    let request = b"GET /echo/a%2Fb%20c?x=%41&y=1+2&x=3 HTTP/1.1\r\n\
        Host: example.test\r\n\
        X-Dup: one\r\n\
        x-other: mid\r\n\
        X-Dup: two\r\n\
        Connection: close\r\n\r\n";
    let r = parse(&exchange(b.addr(), request));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("X-Backend-Server"), Some("b2"));
    let j = r.json();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["path"], "/echo/a%2Fb%20c");
    assert_eq!(j["query"], "x=%41&y=1+2&x=3");
    assert_eq!(j["target"], "/echo/a%2Fb%20c?x=%41&y=1+2&x=3");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["backend"], "b2");
    assert_eq!(j["body"], "");
    assert_eq!(j["body_len"], 0);
    let headers: Vec<(String, String)> = j["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            let pair = pair.as_array().expect("pair");
            let s = |i: usize| pair[i].as_str().expect("string").to_string();
            (s(0), s(1))
        })
        .collect();
    let want = [
        ("Host", "example.test"),
        ("X-Dup", "one"),
        ("x-other", "mid"),
        ("X-Dup", "two"),
        ("Connection", "close"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(headers, want);
}

#[test]
fn echo_without_query_has_empty_query() {
    let b = start("b1");
    let j = get(b.addr(), "/echo").json();
    assert_eq!(j["path"], "/echo");
    assert_eq!(j["query"], "");
}

#[test]
fn echo_reads_a_content_length_body_sent_in_fragments() {
    let b = start("b1");
    let mut s = connect(b.addr());
    let parts: [&[u8]; 4] = [
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: cl",
        b"ose\r\nContent-Length: 11\r\n\r\nhel",
        b"lo ",
        b"world",
    ];
    for part in parts {
        s.write_all(part).expect("write");
        s.flush().expect("flush");
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let j = parse(&out).json();
    assert_eq!(j["method"], "PUT");
    assert_eq!(j["body"], "hello world");
    assert_eq!(j["body_len"], 11);
}

#[test]
fn echo_reads_a_chunked_body() {
    let b = start("b1");
    let mut s = connect(b.addr());
    let parts: [&[u8]; 4] = [
        b"POST /echo?k=v HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b"5\r\nhello\r\n",
        b"7\r\n, world\r\n",
        b"0\r\n\r\n",
    ];
    for part in parts {
        s.write_all(part).expect("write");
        s.flush().expect("flush");
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let j = parse(&out).json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["query"], "k=v");
    assert_eq!(j["body"], "hello, world");
    assert_eq!(j["body_len"], 12);
}

#[test]
fn echo_body_is_utf8_lossy_and_length_counts_bytes() {
    let b = start("b1");
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 4\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&[b'a', 0xff, 0xfe, b'z']);
    let j = parse(&exchange(b.addr(), &request)).json();
    assert_eq!(j["body"], "a\u{fffd}\u{fffd}z");
    assert_eq!(j["body_len"], 4);
}

#[test]
fn echo_accepts_any_method() {
    let b = start("b1");
    for method in ["DELETE", "OPTIONS", "PATCH", "PURGE"] {
        let request = format!("{method} /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let j = parse(&exchange(b.addr(), request.as_bytes())).json();
        assert_eq!(j["method"], method);
    }
}

#[test]
fn status_sends_the_code_asked_for() {
    let b = start("b1");
    for code in [200u16, 201, 302, 404, 418, 500, 502, 503, 599] {
        let r = get(b.addr(), &format!("/status/{code}"));
        assert_eq!(r.status, code);
        assert_eq!(r.body_str(), format!("status {code}\n"));
        assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    }
}

#[test]
fn status_204_and_304_have_no_body_and_no_length() {
    let b = start("b1");
    for code in [204u16, 304] {
        let r = get(b.addr(), &format!("/status/{code}"));
        assert_eq!(r.status, code);
        assert!(r.raw_body.is_empty(), "{code}: {:?}", r.raw_body);
        assert_eq!(r.header("Content-Length"), None, "{code}");
        assert_eq!(r.header("Transfer-Encoding"), None, "{code}");
        assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    }
}

#[test]
fn status_1xx_is_refused() {
    // hyper sends exactly one response per request and will not send a 1xx as that response.
    let b = start("b1");
    for target in ["/status/100", "/status/103", "/status/199"] {
        let r = get(b.addr(), target);
        assert_eq!(r.status, 400, "{target}");
        assert!(r.body_str().contains("1xx"), "{target}: {}", r.body_str());
    }
}

#[test]
fn status_rejects_bad_codes() {
    let b = start("b1");
    for target in [
        "/status/abc",
        "/status/",
        "/status/99",
        "/status/600",
        "/status/101",
        "/status/+200",
        "/status/1000",
    ] {
        let r = get(b.addr(), target);
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    }
}

#[test]
fn bytes_sends_n_bytes_with_content_length() {
    let b = start("b1");
    for n in [0usize, 1, 26, 100_000] {
        let r = get(b.addr(), &format!("/bytes/{n}"));
        assert_eq!(r.status, 200);
        // Large ones too: a Content-Length, not chunked.
        assert_eq!(r.header("Content-Length"), Some(n.to_string().as_str()));
        assert_eq!(r.header("Transfer-Encoding"), None);
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        assert_eq!(r.raw_body, pattern(n), "{n}");
    }
}

#[test]
fn bytes_over_one_gib_is_400() {
    let b = start("b1");
    // HEAD, so the test does not move a gibibyte.
    let head = b"HEAD /bytes/1073741824 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let r = parse(&exchange(b.addr(), head));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1073741824"));
    assert!(r.raw_body.is_empty());
    assert_eq!(get(b.addr(), "/bytes/1073741825").status, 400);
    assert_eq!(get(b.addr(), "/bytes/x").status, 400);
}

#[test]
fn chunked_is_really_chunked() {
    let b = start("b1");
    let r = get(b.addr(), "/chunked");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    let (sizes, data) = dechunk(&r.raw_body);
    assert_eq!(sizes, vec![10, 10, 10]);
    assert_eq!(data, pattern(30));
}

#[test]
fn chunked_takes_count_size_and_delay() {
    let b = start("b1");
    let r = get(b.addr(), "/chunked?chunks=5&size=3&delay_ms=1");
    let (sizes, data) = dechunk(&r.raw_body);
    assert_eq!(sizes, vec![3; 5]);
    assert_eq!(data, pattern(15));
    // A chunk bigger than a /bytes frame (64 KiB) is still one chunk.
    let r = get(b.addr(), "/chunked?chunks=2&size=70000");
    let (sizes, data) = dechunk(&r.raw_body);
    assert_eq!(sizes, vec![70000, 70000]);
    assert_eq!(data, pattern(140000));
    for bad in ["size=0", "chunks=x", "size=99999999999", "delay_ms=100000"] {
        assert_eq!(
            get(b.addr(), &format!("/chunked?{bad}")).status,
            400,
            "{bad}"
        );
    }
}

#[test]
fn chunked_to_http_1_0_has_a_content_length() {
    let b = start("b1");
    let r = parse(&exchange(b.addr(), b"GET /chunked HTTP/1.0\r\n\r\n"));
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.0", 200));
    assert_eq!(r.header("Transfer-Encoding"), None);
    assert_eq!(r.header("Content-Length"), Some("30"));
    assert_eq!(r.raw_body, pattern(30));
}

/// Reads until end of file or reset; returns what arrived.
fn read_until_closed(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("expected EOF or reset, got {e} after {} bytes", out.len()),
        }
    }
}

#[test]
fn drop_announces_more_than_it_sends_then_closes() {
    let b = start("b1");
    // No `Connection: close`: the connection would stay open; the backend must close it anyway.
    let mut s = connect(b.addr());
    s.write_all(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let out = read_until_closed(&mut s);
    let r = parse(&out);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    assert_eq!(r.raw_body, pattern(100));
    // The backend itself carries on.
    assert_eq!(get(b.addr(), "/health").status, 200);
}

#[test]
fn slow_waits_then_answers() {
    let b = start("b1");
    let r = get(b.addr(), "/slow?ms=20");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slow 20\n");
    assert_eq!(r.header("X-Backend-Server"), Some("b1"));
    assert_eq!(get(b.addr(), "/slow?ms=60001").status, 400);
    assert_eq!(get(b.addr(), "/slow?ms=abc").status, 400);
}

#[test]
fn slow_requests_run_side_by_side() {
    let b = start("b1");
    let addr = b.addr();
    let handles: Vec<_> = (0..2)
        .map(|_| thread::spawn(move || get(addr, "/slow?ms=300")))
        .collect();
    for h in handles {
        let r = h.join().expect("client thread");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "slow 300\n");
    }
}

#[test]
fn cacheable_counts_fresh_responses_and_revalidates() {
    let b = start("c1");
    let first = get(b.addr(), "/cacheable?max_age=30");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Cache-Control"), Some("public, max-age=30"));
    assert_eq!(first.header("ETag"), Some("\"c1-1\""));
    assert!(first.header("Date").is_some());
    assert_eq!(first.header("X-Backend-Server"), Some("c1"));
    assert_eq!(first.body_str(), "cacheable response 1 from c1\n");

    let second = get(b.addr(), "/cacheable");
    assert_eq!(second.header("Cache-Control"), Some("public, max-age=60"));
    assert_eq!(second.header("ETag"), Some("\"c1-2\""));
    assert_eq!(second.body_str(), "cacheable response 2 from c1\n");

    // The latest ETag revalidates (304, counter unchanged); an older one gets a fresh 200.
    let conditional = |etag: &str| {
        let request = format!(
            "GET /cacheable HTTP/1.1\r\nHost: t\r\nIf-None-Match: W/\"x\", {etag}\r\nConnection: close\r\n\r\n"
        );
        parse(&exchange(b.addr(), request.as_bytes()))
    };
    let not_modified = conditional("\"c1-2\"");
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("ETag"), Some("\"c1-2\""));
    assert!(not_modified.raw_body.is_empty());
    let fresh = conditional("\"c1-1\"");
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.body_str(), "cacheable response 3 from c1\n");
    assert_eq!(get(b.addr(), "/cacheable?max_age=-1").status, 400);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let b = start("b1");
    let s = connect(b.addr());
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    // An unread chunked body must not leak into the next request.
    writer
        .write_all(
            b"POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\njunk\r\n0\r\n\r\n",
        )
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!(r.body_str(), "ok\n");
    writer
        .write_all(b"HEAD /bytes/50 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let r = read_response(&mut reader, true);
    assert_eq!(r.header("Content-Length"), Some("50"));
    writer
        .write_all(b"GET /chunked?chunks=2&size=4 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!(dechunk(&r.raw_body).0, vec![4, 4]);
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!(r.body_str(), "hello from b1\n");
}

#[test]
fn http_1_0_gets_a_1_0_answer_and_a_close() {
    let b = start("b1");
    let r = parse(&exchange(b.addr(), b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.0", 200));
    assert_eq!(r.body_str(), "hello from b1\n");
}

#[test]
fn http_1_0_keep_alive_is_kept_when_asked() {
    let b = start("b1");
    let s = connect(b.addr());
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    writer
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.0", 200));
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    assert_eq!(r.body_str(), "hello from b1\n");
    // Then a plain 1.0 request on the same connection: answered, then closed.
    writer
        .write_all(b"GET /health HTTP/1.0\r\n\r\n")
        .expect("write");
    let r = parse(&read_until_closed(&mut reader));
    assert_eq!(r.body_str(), "ok\n");
}

#[test]
fn garbage_gets_400_and_the_backend_carries_on() {
    let b = start("b1");
    let out = exchange(b.addr(), b"THIS IS NOT HTTP\r\n\r\n");
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(get(b.addr(), "/health").status, 200);
}

#[test]
fn delay_option_still_answers() {
    let b = start_with(Options {
        name: "lazy".into(),
        delay_ms: 5,
        workers: 2,
    });
    let r = get(b.addr(), "/");
    assert_eq!(r.body_str(), "hello from lazy\n");
}

#[test]
fn backends_are_told_apart_by_header() {
    let (one, two) = (start("one"), start("two"));
    assert_ne!(one.addr(), two.addr());
    assert_eq!(get(one.addr(), "/").header("X-Backend-Server"), Some("one"));
    assert_eq!(get(two.addr(), "/").header("X-Backend-Server"), Some("two"));
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish in `TIMEOUT`.
fn finishes<F: FnOnce() + Send + 'static>(what: &str, f: F) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} did not finish"));
}

#[test]
fn stop_refuses_new_connections_and_closes_open_ones() {
    let b = start("b1");
    let addr = b.addr();
    let s = connect(addr);
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut reader, false).status, 200);
    // A request in flight, sleeping for a minute.
    let mut slow = connect(addr);
    slow.write_all(b"GET /slow?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");

    finishes("stop", move || b.stop());

    let err = std::net::TcpStream::connect(addr).expect_err("port closed");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The idle keep-alive connection and the slow one see the end of the connection.
    assert!(read_until_closed(&mut reader).is_empty());
    let _ = read_until_closed(&mut slow);
}

#[test]
fn drop_stops_too_even_with_a_stalled_client() {
    let b = start("b1");
    let addr = b.addr();
    // A body announced but never sent: a worker would block reading it forever.
    let mut stalled = connect(addr);
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc")
        .expect("write");
    // A big response that nobody reads: a worker would block writing it forever.
    let mut deaf = connect(addr);
    deaf.write_all(b"GET /bytes/1000000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut first = [0u8; 1];
    deaf.read_exact(&mut first).expect("response started");

    finishes("drop", move || drop(b));

    let _ = read_until_closed(&mut stalled);
    assert_eq!(
        std::net::TcpStream::connect(addr)
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::ConnectionRefused)
    );
}

#[test]
fn a_burst_of_keep_alive_connections_is_all_served() {
    // tiny_http, which these backends used before hyper, left some connections of such a
    // burst unread until another one closed; every one of these stays open.
    let b = start("b1");
    let mut streams: Vec<_> = (0..32).map(|_| connect(b.addr())).collect();
    for s in &mut streams {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
    }
    for s in streams {
        let r = read_response(&mut BufReader::new(s), false);
        assert_eq!(r.body_str(), "hello from b1\n");
    }
}

#[test]
fn stop_under_load_returns() {
    let b = start_with(Options {
        name: "busy".into(),
        delay_ms: 0,
        workers: 4,
    });
    let addr = b.addr();
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || {
                let s = connect(addr);
                let mut writer = s.try_clone().expect("clone");
                let mut reader = BufReader::new(s);
                // Keep-alive requests until the backend goes away (bounded anyway).
                for n in 0..100_000 {
                    let target = if i % 2 == 0 { "/" } else { "/bytes/5000" };
                    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
                    if writer.write_all(request.as_bytes()).is_err() {
                        return;
                    }
                    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        read_response(&mut reader, false)
                    }));
                    if ok.is_err() {
                        return;
                    }
                    if n == 0 {
                        let _ = tx.send(());
                    }
                }
            })
        })
        .collect();
    // Every client has had one answer: all are connected and busy.
    for _ in 0..clients.len() {
        rx.recv_timeout(TIMEOUT).expect("client served");
    }
    finishes("stop under load", move || b.stop());
    for c in clients {
        c.join()
            .expect("client thread ends once the backend is gone");
    }
}

#[test]
fn large_responses_on_one_keep_alive_connection_arrive_whole() {
    // tiny_http stalled ~40 ms on each such response (Nagle and delayed ACKs); that was
    // measured, not asserted here (see README, Throughput). This checks the framing: two
    // 64 KiB bodies and a small one, back to back on one connection, each complete.
    let b = start("b1");
    let s = connect(b.addr());
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    for _ in 0..2 {
        writer
            .write_all(b"GET /bytes/65536 HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let r = read_response(&mut reader, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Length"), Some("65536"));
        assert_eq!(r.raw_body, pattern(65536));
    }
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(
        read_response(&mut reader, false).body_str(),
        "hello from b1\n"
    );
}

#[test]
fn chunks_leave_as_they_are_made() {
    let b = start("b1");
    let s = connect(b.addr());
    // Well under the 10 s between the two chunks: the first must come before the second is made.
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    writer
        .write_all(b"GET /chunked?chunks=2&size=5&delay_ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).expect("head");
        head.push(byte[0]);
    }
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).expect("first chunk");
    assert_eq!(&first, b"5\r\nabcde\r\n");
    // Stopping ends the wait at once; the client sees the connection end, not a last chunk.
    finishes("stop", move || b.stop());
    let rest = read_until_closed(&mut reader);
    assert!(!rest.ends_with(b"0\r\n\r\n"), "{rest:?}");
}

#[test]
fn head_of_drop_is_answered_then_closed() {
    let b = start("b1");
    let mut s = connect(b.addr());
    s.write_all(b"HEAD /drop HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let r = parse(&read_until_closed(&mut s));
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert!(r.raw_body.is_empty());
}

/// The names and values of an /echo answer's headers.
fn echoed_headers(r: &Response) -> Vec<(String, String)> {
    r.json()["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            let s = |i: usize| pair[i].as_str().expect("string").to_string();
            (s(0), s(1))
        })
        .collect()
}

#[test]
fn echo_shows_each_request_as_sent_on_a_busy_connection() {
    let b = start("b1");
    let s = connect(b.addr());
    let mut writer = s.try_clone().expect("clone");
    let mut reader = BufReader::new(s);
    // A body that looks like the next request's head, then that request, and a third one
    // pipelined behind it; and a long chunked body before a last /echo.
    let decoy = "GET /echo/x HTTP/1.1\r\nHost: t\r\nX-Kept: decoy\r\n\r\n";
    let first = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{decoy}",
        decoy.len()
    );
    let second = "GET /echo/x HTTP/1.1\r\nhost: t\r\nX-Kept: real\r\n\r\n";
    let third = "GET /echo/y?q HTTP/1.1\r\nHOST: t\r\nte: trailers\r\nX-a: 1\r\n\r\n";
    writer
        .write_all(format!("{first}{second}{third}").as_bytes())
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!(r.json()["body"], decoy);
    let r = read_response(&mut reader, false);
    assert_eq!(
        echoed_headers(&r),
        [("host", "t"), ("X-Kept", "real")].map(|(k, v)| (k.into(), v.into()))
    );
    let r = read_response(&mut reader, false);
    assert_eq!(r.json()["target"], "/echo/y?q");
    assert_eq!(
        echoed_headers(&r),
        [("HOST", "t"), ("te", "trailers"), ("X-a", "1")].map(|(k, v)| (k.into(), v.into()))
    );

    let chunk = "x".repeat(60_000);
    let mut big =
        String::from("POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..20 {
        big.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    big.push_str("0\r\n\r\n");
    writer.write_all(big.as_bytes()).expect("write");
    assert_eq!(read_response(&mut reader, false).body_str(), "ok\n");
    writer
        .write_all(b"GET /echo HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9\r\nHost: site.test\r\n\r\n")
        .expect("write");
    let r = read_response(&mut reader, false);
    assert_eq!(
        echoed_headers(&r),
        [("X-Forwarded-For", "203.0.113.9"), ("Host", "site.test")]
            .map(|(k, v)| (k.into(), v.into()))
    );
}

#[test]
fn a_client_that_stops_sending_after_its_request_is_answered() {
    // Some clients (simple proxies among them) shut down their sending side once the request
    // is out; the answer must still come, and then the end of the connection.
    let b = start("b1");
    for request in [
        &b"GET /slow?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut s = connect(b.addr());
        s.write_all(request).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let r = parse(&read_until_closed(&mut s));
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(request));
    }
}

#[test]
fn echo_shows_a_long_header_as_sent() {
    let b = start("b1");
    let long = "v".repeat(60_000);
    let request =
        format!("GET /echo HTTP/1.1\r\nHost: t\r\nX-Long: {long}\r\nConnection: close\r\n\r\n");
    let r = parse(&exchange(b.addr(), request.as_bytes()));
    let headers = echoed_headers(&r);
    assert_eq!(headers[1], ("X-Long".to_string(), long));
}

#[test]
fn ws_without_a_handshake_is_426_and_names_the_protocol() {
    let b = start("b1");
    let r = get(b.addr(), "/ws");
    assert_eq!(r.status, 426);
    assert_eq!(r.header("Upgrade"), Some("websocket"));
}

#[test]
fn ws_with_a_bad_handshake_is_400() {
    let b = start("b1");
    // No Sec-WebSocket-Key.
    let bytes = exchange(
        b.addr(),
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(parse(&bytes).status, 400);
}

/// A client frame (masked, as RFC 6455 section 5.3 requires) with a short payload.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn ws_switches_and_echoes_frames_then_answers_a_close() {
    let b = start("b1");
    let mut s = connect(b.addr());
    // The key and accept value of RFC 6455 section 1.3; a first frame in the same packet.
    let mut packet =
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
    packet.extend(masked_frame(0x1, b"hi"));
    s.write_all(&packet).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let r = read_response(&mut reader, false);
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let mut echo = [0u8; 4];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, &[0x81, 2, b'h', b'i'], "an unmasked text frame");
    s.write_all(&masked_frame(0x9, b"p")).unwrap();
    let mut pong = [0u8; 3];
    reader.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, &[0x8A, 1, b'p']);
    s.write_all(&masked_frame(0x8, &[0x03, 0xE8])).unwrap();
    let rest = read_until_closed(&mut reader);
    assert_eq!(
        rest,
        [0x88, 2, 0x03, 0xE8],
        "the close is answered, then the end"
    );
}
