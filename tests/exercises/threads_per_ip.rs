//! Chapter 03, exercise: `stage3 --max-connections-per-ip N`, nginx's `limit_conn` by client
//! address. `--max-connections` caps threads for everyone together, so one client that opens
//! that many keep-alive connections refuses every other client; a cap per address leaves the
//! rest of the threads to the others. Above it the client gets the same `503` with
//! `Retry-After: 1` as above the global cap, and its count goes down as its connections
//! close, a panicking thread's included (as `Slot` does for the global count).
//! Solution: `solutions/03-threads-per-ip.patch`.

use std::time::Instant;

use crate::support::{backend, Client, Proxy, TIMEOUT};

const STAGE3: &str = env!("CARGO_BIN_EXE_stage3");

/// A keep-alive connection that has been served once, so its thread is surely running.
fn served(p: &Proxy) -> Client {
    let mut c = p.connect();
    c.send_in_fragments(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 5);
    assert_eq!(c.read_response("GET").status, 200);
    c
}

#[test]
#[ignore = "exercise (chapter 03): --max-connections-per-ip"]
fn one_address_gets_503_above_its_own_cap_long_before_the_global_one() {
    let b = backend("b1");
    let p = Proxy::start(
        STAGE3,
        &[b.addr()],
        &["--max-connections", "50", "--max-connections-per-ip", "2"],
    );
    let first = served(&p);
    let mut second = served(&p);

    let mut third = p.connect();
    third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = third.read_response("GET");
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));

    // The two admitted connections still serve.
    second.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(second.read_response("GET").status, 200);

    // When one closes, its thread ends and the address may connect again.
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let status = c.read_response("GET").status;
        if status == 200 {
            break;
        }
        assert_eq!(
            status, 503,
            "only 503 while the closed connection's thread ends"
        );
        assert!(Instant::now() < deadline, "still refused after {TIMEOUT:?}");
    }
}

#[test]
#[ignore = "exercise (chapter 03): --max-connections-per-ip"]
fn a_per_ip_cap_of_zero_is_refused_at_start() {
    let out = std::process::Command::new(STAGE3)
        .args(["--max-connections-per-ip", "0"])
        .output()
        .expect("run stage3");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-connections-per-ip"), "{stderr}");
    assert!(stderr.contains("at least 1"), "{stderr}");
}
