//! Tests of the concurrency models themselves (stages 1 to 4), beside the shared suite that
//! checks HTTP behaviour. None of them measures time: each waits on a channel, a barrier or a
//! socket with a deadline, and a model that is wrong fails or times out.
//!
//! That stage 1 serves one request at a time and stages 2 to 4 serve a client while another
//! waits for a silent origin is the grader's `silent_origin` check, run on every stage by
//! `tests/grade.rs`; here are the flags (`--max-children`, `--workers`, `--queue`), the
//! processes and the pool's own behaviour.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{backend, raw_backend, read_request_head, Client, Proxy, TIMEOUT};

const STAGE2: &str = env!("CARGO_BIN_EXE_stage2");
const STAGE3: &str = env!("CARGO_BIN_EXE_stage3");
const STAGE4: &str = env!("CARGO_BIN_EXE_stage4");

/// A backend that answers a request only once two requests are inside it at the same time
/// (a barrier of two, with a deadline). Only a proxy that has two requests in flight at once
/// can get a `200` from it; alone, a request gets `500` after `TIMEOUT`.
fn meeting_backend() -> SocketAddr {
    let inside = Arc::new((Mutex::new(0usize), Condvar::new()));
    raw_backend(move |mut s: TcpStream| {
        if read_request_head(&mut s).is_empty() {
            return;
        }
        let (count, arrived) = &*inside;
        let mut n = count.lock().unwrap();
        *n += 1;
        arrived.notify_all();
        let (n, _) = arrived.wait_timeout_while(n, TIMEOUT, |n| *n < 2).unwrap();
        let reply: &[u8] = if *n >= 2 {
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nmet\n"
        } else {
            b"HTTP/1.1 500 Alone\r\nContent-Length: 6\r\nConnection: close\r\n\r\nalone\n"
        };
        drop(n);
        let _ = s.write_all(reply);
    })
}

/// Two clients each send a request; returns the first client's status.
fn two_clients_at_once(proxy: &Proxy) -> (Client, Client, u16) {
    let mut a = proxy.connect();
    a.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut b = proxy.connect();
    b.send(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    let status = a.read_response("GET").status;
    (a, b, status)
}

fn requests_meet_at_the_backend(bin: &str, extra: &[&str]) {
    let p = Proxy::start(bin, &[meeting_backend()], extra);
    let (_a, mut b, status) = two_clients_at_once(&p);
    assert_eq!(status, 200, "the first request was not answered");
    assert_eq!(b.read_response("GET").status, 200);
}

/// One request at a time: the first request to reach the backend waits there alone until the
/// proxy's upstream timeout ends it with 504 (the other is not even read yet). The other may
/// then find the backend still holding the first one's place and meet it (200), so the check
/// is that the two did not both get 200. Which one goes first is not the test's to say: on a
/// loaded machine the kernel may deliver `a`'s request after `b` connects, and a pool then
/// parks `a` and serves `b` first.
fn requests_never_meet(bin: &str, extra: &[&str]) {
    let mut args = vec!["--upstream-timeout", "1s"];
    args.extend_from_slice(extra);
    let p = Proxy::start(bin, &[meeting_backend()], &args);
    let (a, mut b, first) = two_clients_at_once(&p);
    // Stage 2's one child serves `a`'s connection until it closes, and `b` only then.
    drop(a);
    let second = b.read_response("GET").status;
    assert!(
        first == 504 || second == 504,
        "two requests were in flight at once: a got {first}, b got {second}"
    );
}

#[test]
fn stage2_with_one_child_serves_one_request_at_a_time() {
    requests_never_meet(STAGE2, &["--max-children", "1"]);
}

/// Also the control of `meeting_backend`: the tests that expect one request at a time would
/// pass with a backend that never answered, and this one shows that two meeting get a 200.
#[test]
fn stage3_has_two_requests_in_flight() {
    requests_meet_at_the_backend(STAGE3, &[]);
}

#[test]
fn stage4_with_one_worker_serves_one_request_at_a_time() {
    requests_never_meet(STAGE4, &["--workers", "1"]);
}

/// `(state, ppid)` of every process whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // ended meanwhile
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after
        // the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push((pid, state));
        }
    }
    children
}

#[test]
fn stage2_reaps_every_child() {
    let b = backend("b1");
    let p = Proxy::start(STAGE2, &[b.addr()], &[]);

    // A kept connection is served by a child process, which waits for the next request.
    let mut kept = p.connect();
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);
    let serving = children_of(p.pid());
    assert!(
        serving.iter().any(|&(_, state)| state != 'Z'),
        "no child process serves the kept connection: {serving:?}"
    );
    drop(kept);

    // 50 connections come and go: 40 with a request, 10 that vanish without a word.
    for i in 0..50 {
        let mut c = p.connect();
        if i % 5 == 4 {
            drop(c);
            continue;
        }
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
        assert!(
            c.read_to_close().is_some(),
            "the child closes after the response"
        );
    }

    // Every child ends once its client is gone; each must then be reaped, not left a zombie.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let children = children_of(p.pid());
        if children.is_empty() {
            break;
        }
        let zombies = children.iter().filter(|&&(_, s)| s == 'Z').count();
        assert!(
            Instant::now() < deadline,
            "{zombies} zombie(s) among the children left: {children:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Each child closes its copy of the listening socket: once the parent is gone, the port
/// refuses connections, even while a child still serves a client (which it finishes).
#[test]
fn stage2_children_do_not_keep_the_listening_socket() {
    let b = backend("b1");
    let mut p = Proxy::start(STAGE2, &[b.addr()], &[]);
    let mut kept = p.connect();
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);

    p.kill();
    let refused = TcpStream::connect_timeout(&p.addr, TIMEOUT);
    assert!(
        refused.is_err(),
        "the port still accepts: a child kept the listening socket"
    );
    // The orphaned child still serves its own connection to the end.
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);
}

#[test]
fn stage3_over_the_cap_gets_503_with_retry_after() {
    let b = backend("b1");
    let p = Proxy::start(STAGE3, &[b.addr()], &["--max-connections", "1"]);
    let mut first = p.connect();
    first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.read_response("GET").status, 200);

    // `first` is still open, so its thread holds the only slot.
    let mut second = p.connect();
    second.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let refused = second.read_response("GET");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(second.read_to_close().is_some(), "closed after the 503");

    // Once `first` leaves, its slot is given back: a new client is served (bounded retry,
    // since the proxy sees the close a moment later).
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        match c.read_response("GET").status {
            200 => break,
            503 if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            status => panic!("the slot was not given back: {status}"),
        }
    }
}

/// Eight keep-alive clients, each keeping its connection open, take turns on a pool of two
/// workers: all are answered, twice. A pool whose workers stay with a connection until it
/// closes would serve the first two and leave the other six waiting (see the next test).
#[test]
fn stage4_keep_alive_clients_do_not_starve_a_small_pool() {
    let b = backend("b1");
    let p = Proxy::start(STAGE4, &[b.addr()], &["--workers", "2"]);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..8 {
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = c.try_read_response("GET");
        assert_eq!(
            res.map(|r| r.status),
            Some(200),
            "client {i} was not served"
        );
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = c.try_read_response("GET");
        assert_eq!(
            res.map(|r| r.status),
            Some(201),
            "client {i}, second request"
        );
    }
}

/// The control for the test above: with `--keep-alive hold`, two idle keep-alive clients
/// occupy both workers, and a third gets nothing while they stay.
#[test]
fn stage4_holding_workers_starve_the_third_client() {
    let b = backend("b1");
    let p = Proxy::start(
        STAGE4,
        &[b.addr()],
        &["--workers", "2", "--keep-alive", "hold"],
    );
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
        holders.push(c);
    }
    let mut third = p.connect();
    third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    // The idle timeout is 75 s: one second without an answer shows the queue is stuck.
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        third.try_read_response("GET").is_none(),
        "a third client was served while both workers held idle connections"
    );
}

/// Clients that send half a request head and stall (slowloris) wait at the parker, not in a
/// worker: with a single worker, a normal client is still served, and so is each slow one
/// once it finishes its head.
#[test]
fn stage4_slow_request_heads_do_not_hold_workers() {
    let b = backend("b1");
    let p = Proxy::start(STAGE4, &[b.addr()], &["--workers", "1"]);
    let mut slow: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = p.connect();
            c.send(b"GET /status/202 HTTP/1.1\r\nHost: t\r\n");
            c
        })
        .collect();
    let mut normal = p.connect();
    normal.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = normal.try_read_response("GET");
    assert_eq!(
        res.map(|r| r.status),
        Some(200),
        "a slow head held the worker"
    );
    for c in &mut slow {
        c.send(b"\r\n");
        assert_eq!(c.read_response("GET").status, 202);
    }
}

/// A backend that tells the test when a request arrives, then holds it until released.
fn gated_backend() -> (SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (arrived_tx, arrived_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let arrived_tx = Arc::new(Mutex::new(arrived_tx));
    let release_rx = Arc::new(Mutex::new(release_rx));
    let addr = raw_backend(move |mut s: TcpStream| {
        if read_request_head(&mut s).is_empty() {
            return;
        }
        let _ = arrived_tx.lock().unwrap().send(());
        if release_rx.lock().unwrap().recv_timeout(TIMEOUT).is_ok() {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    (addr, arrived_rx, release_tx)
}

#[test]
fn stage4_full_queue_answers_503_with_retry_after() {
    let (addr, arrived, release) = gated_backend();
    let p = Proxy::start(STAGE4, &[addr], &["--workers", "1", "--queue", "1"]);

    // The only worker is busy: its request is held at the backend.
    let mut first = p.connect();
    first.send(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n");
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the first request reaches the backend");

    // The second waits in the queue (accepted before the third: one accept loop, in order).
    let mut second = p.connect();
    second.send(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n");

    let mut third = p.connect();
    third.send(b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n");
    let refused = third.read_response("GET");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(third.read_to_close().is_some(), "closed after the 503");

    for _ in 0..2 {
        release.send(()).unwrap();
    }
    assert_eq!(first.read_response("GET").status, 200);
    assert_eq!(
        second.read_response("GET").status,
        200,
        "the queued one is served"
    );
}

#[test]
fn stage4_closes_parked_connections_after_the_idle_timeout() {
    let b = backend("b1");
    let p = Proxy::start(STAGE4, &[b.addr()], &["--idle-timeout", "300ms"]);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    let rest = c
        .read_to_close()
        .expect("the parker closes an idle connection");
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
}
