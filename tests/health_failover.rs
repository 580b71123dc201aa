//! Stage 6 over real sockets: configuration errors, health transitions as a backend goes and
//! comes back, failover under load, and the rule that a POST is never sent twice.

mod support;

use std::io::Read;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use revproxy::config::HealthSettings;
use revproxy::health::{HealthChecker, HealthTable, State};
use support::{backend, dead_addr, raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE6: &str = env!("CARGO_BIN_EXE_stage6");

/// Writes a config file for this test and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("revproxy-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write the config");
    path
}

fn upstream_config(servers: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[upstreams.app]\nservers = [{}]\nretries = 2\nconnect_timeout_ms = 1000\nread_timeout_ms = 5000\n{extra}",
        list.join(", ")
    )
}

const FAST_HEALTH: &str =
    "[upstreams.app.health]\ninterval_ms = 100\ntimeout_ms = 100\nrise = 2\nfall = 2\n";

/// Polls `condition` until it holds or `limit` passes.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn config_errors_exit_78_and_name_line_and_column() {
    let path = config_file("typo", "[server]\nlisten = \"127.0.0.1:0\"\nworkerz = 4\n");
    let out = Command::new(STAGE6)
        .args(["-t", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:1: unknown field `workerz`", path.display())),
        "{stderr}"
    );

    let out = Command::new(STAGE6)
        .args(["-t", "--config", "proxy.example.toml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn health_follows_a_backend_that_stops_and_starts_again() {
    let b = backend("b1");
    let addr = b.addr();
    let table = Arc::new(HealthTable::new("app", &[addr, dead_addr()], 2, 2));
    let settings = HealthSettings {
        path: "/health".to_owned(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        rise: 2,
        fall: 2,
    };
    let _checker = HealthChecker::start(Arc::clone(&table), settings).unwrap();
    assert!(
        wait_until(TIMEOUT, || table.state(0) == State::Healthy),
        "{:?}",
        table.snapshot()
    );
    assert!(
        wait_until(TIMEOUT, || table.state(1) == State::Unhealthy),
        "a server that never answers must not stay unknown"
    );
    b.stop();
    assert!(
        wait_until(TIMEOUT, || table.state(0) == State::Unhealthy),
        "{:?}",
        table.snapshot()
    );
    let options = backends::Options {
        name: "b1-again".to_owned(),
        ..backends::Options::default()
    };
    let _again =
        backends::Backend::start(&addr.to_string(), options).expect("the port is free again");
    assert!(
        wait_until(TIMEOUT, || table.state(0) == State::Healthy),
        "{:?}",
        table.snapshot()
    );
}

/// Eight clients send GETs while one of three backends is stopped midway. Only requests in
/// flight at that moment may fail (at most one per client); failover and the stale-connection
/// retry usually save even those.
#[test]
fn failover_under_load_loses_at_most_the_requests_in_flight() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 60;
    let b1 = backend("b1");
    let b2 = backend("b2");
    let b3 = backend("b3");
    let path = config_file(
        "failover",
        &upstream_config(&[b1.addr(), b2.addr(), b3.addr()], FAST_HEALTH),
    );
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sent, failed) = (Arc::clone(&sent), Arc::clone(&failed));
            let addr = p.addr;
            thread::spawn(move || {
                let mut c = support::connect(addr);
                for _ in 0..PER_CLIENT {
                    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                    sent.fetch_add(1, Ordering::Relaxed);
                    match c.try_read_response("GET") {
                        Some(res) if res.status == 200 => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            c = support::connect(addr);
                        }
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(TIMEOUT, || sent.load(Ordering::Relaxed)
        >= CLIENTS * PER_CLIENT / 3));
    b2.stop();
    for w in workers {
        w.join().unwrap();
    }
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "failover: {failed} of {} requests failed",
        CLIENTS * PER_CLIENT
    );
    assert!(
        failed <= CLIENTS,
        "{failed} failures: more than the {CLIENTS} requests in flight"
    );
}

/// A backend that takes the whole request and closes without answering: the POST reached it,
/// so it must not be sent to another backend too.
#[test]
fn a_post_is_never_sent_twice() {
    let swallowed = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&swallowed);
    let swallower = raw_backend(move |mut s| {
        read_request_head(&mut s);
        let mut body = [0u8; 5];
        if s.read_exact(&mut body).is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
        // Close without a response.
    });
    let received = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&received);
    let live = raw_backend(move |mut s| {
        read_request_head(&mut s);
        let mut body = [0u8; 5];
        if s.read_exact(&mut body).is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let post =
        b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

    // Round robin tries the swallower first: 502, and the live backend never sees the POST.
    let path = config_file("post-sent", &upstream_config(&[swallower, live], ""));
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    let mut c = p.connect();
    c.send(post);
    assert_eq!(c.read_response("POST").status, 502);
    assert_eq!(swallowed.load(Ordering::Relaxed), 1);
    assert_eq!(
        received.load(Ordering::Relaxed),
        0,
        "the POST was sent a second time"
    );

    // A backend that refuses the connection got nothing: the POST goes to the next one, once.
    let path = config_file("post-refused", &upstream_config(&[dead_addr(), live], ""));
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    let mut c = p.connect();
    c.send(post);
    assert_eq!(c.read_response("POST").status, 200);
    assert_eq!(received.load(Ordering::Relaxed), 1);
}

#[test]
fn all_servers_down_is_503_with_retry_after() {
    let path = config_file(
        "all-down",
        &upstream_config(&[dead_addr(), dead_addr()], FAST_HEALTH),
    );
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    let mut last = None;
    let got_503 = wait_until(TIMEOUT, || {
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let res = c.read_response("GET");
        let done = res.status == 503;
        last = Some(res);
        done
    });
    let res = last.expect("a response");
    assert!(
        got_503,
        "status {} instead of 503 once every server is unhealthy",
        res.status
    );
    assert_eq!(res.header("retry-after"), Some("1"));
}

/// A GET without a body is idempotent: when a backend closes without answering, the request
/// goes to the next one and the client never sees the failure.
#[test]
fn a_dropped_get_is_retried_on_the_next_backend() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&dropped);
    let dropper = raw_backend(move |mut s| {
        if !read_request_head(&mut s).is_empty() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let live = backend("live");
    let path = config_file("get-dropped", &upstream_config(&[dropper, live.addr()], ""));
    let p = Proxy::start(STAGE6, &[], &["--config", path.to_str().unwrap()]);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = c.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-backend-server"), Some("live"));
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        1,
        "the first backend did get the request once"
    );
}
