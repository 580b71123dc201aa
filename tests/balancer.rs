//! Stage 5 over real sockets: the strategies' sequences through the proxy, and a refusing
//! backend skipped rather than answered with an empty reply. Every backend refusing is a 502:
//! the grader's `dead_origin_502`, run on stage 5 by `tests/grade.rs`.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use support::{backend, dead_addr, raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE5: &str = env!("CARGO_BIN_EXE_stage5");

fn start(backends: &[String], strategy: &str) -> Proxy {
    let mut args = vec!["--strategy".to_owned(), strategy.to_owned()];
    for b in backends {
        args.push("--backend".to_owned());
        args.push(b.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(STAGE5, &[], &args)
}

/// Which backend served each of `n` requests, sent one after another on one connection.
fn sequence(proxy: &Proxy, n: usize) -> Vec<String> {
    let mut c = proxy.connect();
    (0..n)
        .map(|_| {
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let res = c.read_response("GET");
            assert_eq!(res.status, 200);
            res.header("x-backend-server")
                .expect("X-Backend-Server")
                .to_owned()
        })
        .collect()
}

#[test]
fn round_robin_takes_turns() {
    let bs = [backend("b1"), backend("b2"), backend("b3")];
    let addrs: Vec<String> = bs.iter().map(|b| b.addr().to_string()).collect();
    let p = start(&addrs, "round-robin");
    assert_eq!(sequence(&p, 6), ["b1", "b2", "b3", "b1", "b2", "b3"]);
}

#[test]
fn smooth_weighted_round_robin_interleaves_by_weight() {
    let bs = [backend("a"), backend("b"), backend("c")];
    let addrs = vec![
        format!("{},weight=5", bs[0].addr()),
        bs[1].addr().to_string(),
        bs[2].addr().to_string(),
    ];
    let p = start(&addrs, "weighted-round-robin");
    assert_eq!(sequence(&p, 7), ["a", "a", "b", "a", "c", "a", "a"]);
}

#[test]
fn ip_hash_keeps_a_client_on_one_backend() {
    let bs = [backend("b1"), backend("b2"), backend("b3")];
    let addrs: Vec<String> = bs.iter().map(|b| b.addr().to_string()).collect();
    let p = start(&addrs, "ip-hash");
    let seen = sequence(&p, 6);
    assert!(seen.iter().all(|b| *b == seen[0]), "{seen:?}");
}

#[test]
fn a_refusing_backend_is_skipped() {
    let live = backend("live");
    let addrs = vec![
        dead_addr().to_string(),
        live.addr().to_string(),
        dead_addr().to_string(),
    ];
    let p = start(&addrs, "round-robin");
    assert_eq!(
        sequence(&p, 6),
        vec!["live"; 6],
        "every request reaches the live backend"
    );
}

/// A backend that reports each request as it arrives and holds requests to `/hold` until
/// released, so the test knows exactly what is in flight where.
fn holding_backend(
    name: &'static str,
    arrived: mpsc::Sender<&'static str>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
) -> SocketAddr {
    let arrived = Arc::new(Mutex::new(arrived));
    raw_backend(move |mut s| {
        while let Some(line) = {
            let head = read_request_head(&mut s);
            (!head.is_empty()).then_some(head)
        } {
            let _ = arrived.lock().unwrap().send(name);
            if line.starts_with(b"GET /hold") {
                let _ = release.lock().unwrap().recv_timeout(TIMEOUT);
            }
            let body = format!("from {name}");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nX-Backend-Server: {name}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn least_connections_sends_to_the_idle_backend() {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let a = holding_backend("a", arrived_tx.clone(), Arc::clone(&release_rx));
    let b = holding_backend("b", arrived_tx, release_rx);
    let p = start(&[a.to_string(), b.to_string()], "least-conn");
    let mut rounds_right = 0;
    // A client can read the whole response a moment before the proxy's worker has counted
    // the request as finished, so the count from one round may still be up when the next
    // round picks. Rounds are repeated (bounded) rather than slept between; a strategy blind
    // to the load (random) gets the held backend about every other time, and fails here.
    for _ in 0..9 {
        let mut busy = p.connect();
        busy.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
        let holder = arrived
            .recv_timeout(TIMEOUT)
            .expect("the held request arrives");
        let mut c = p.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = c.read_response("GET");
        let other = res.header("x-backend-server").unwrap().to_owned();
        if other != holder {
            rounds_right += 1;
        }
        arrived.recv_timeout(TIMEOUT).unwrap();
        release_tx.send(()).unwrap();
        assert_eq!(busy.read_response("GET").status, 200);
    }
    assert!(
        rounds_right >= 7,
        "the busy backend got the request in {} of 9 rounds",
        9 - rounds_right
    );
}
