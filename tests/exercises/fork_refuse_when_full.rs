//! Chapter 02, exercise: `stage2 --refuse-when-full`. At `--max-children`, stage 2 waits for
//! a child to end before it accepts again, so further clients wait in the kernel's backlog
//! with no answer (Apache prefork's way); stage 3 answers `503` with `Retry-After: 1` at once
//! instead. With the flag, stage 2 refuses like stage 3: a client learns at once that the
//! proxy is full, and a balancer in front can try another instance. Without it, nothing
//! changes. Solution: `solutions/02-fork-refuse-when-full.patch`.

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::support::{raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE2: &str = env!("CARGO_BIN_EXE_stage2");

#[test]
#[ignore = "exercise (chapter 02): --refuse-when-full"]
fn at_max_children_a_new_client_gets_503_at_once_and_is_served_once_a_child_ends() {
    // The backend says when a request reached it, and answers only when the test lets it.
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let first = Arc::new(Mutex::new(true));
    let backend = raw_backend(move |mut stream| {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        let hold = std::mem::replace(&mut *first.lock().unwrap(), false);
        if hold {
            let _ = arrived_tx.send(());
            let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
    let p = Proxy::start(
        STAGE2,
        &[backend],
        &["--max-children", "1", "--refuse-when-full"],
    );
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    // The first client's child is busy at the backend: the one child allowed is taken.
    let mut busy = p.connect();
    busy.send(request);
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the first request reaches the backend");

    // In one piece: the 503 is sent, and the connection closed, as soon as it is accepted.
    let mut refused = p.connect();
    refused.send(request);
    let res = refused.read_response("GET");
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));

    release.send(()).expect("the backend waits");
    let res = busy.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"ok");

    // Once the first child has ended (and been reaped), a client is served again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = p.connect();
        c.send(request);
        let status = c.read_response("GET").status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only 503 while the child ends");
        assert!(Instant::now() < deadline, "still refused after {TIMEOUT:?}");
    }
}
