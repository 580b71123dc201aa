//! Faults the proxy must survive. Descriptor exhaustion: with a low `ulimit -n`, a flood of
//! connections makes `accept` fail; the accept loop must back off rather than spin, say so
//! once rather than ten times a second, and serve again as soon as descriptors free up.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{backend, connect, TIMEOUT};

/// A stage started under `ulimit -n limit`, its stderr lines collected.
struct Limited {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_limited(bin: &str, limit: u32, backend: SocketAddr) -> Limited {
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .args([
            "-c",
            &script,
            bin,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .args(["--backend", &backend.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the stage under sh");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&stderr);
    let pipe = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(TIMEOUT)
        .expect("the stage prints its address");
    Limited {
        child,
        addr: addr.parse().unwrap(),
        stderr,
    }
}

fn count(lines: &Mutex<Vec<String>>, needle: &str) -> usize {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits, bounded, until `done` holds.
fn wait_for(what: &str, lines: &Mutex<Vec<String>>, done: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the stage said:\n{:#?}",
            lines.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_logs_once_and_recovers() {
    let b = backend("b1");
    let p = start_limited(env!("CARGO_BIN_EXE_stage4"), 40, b.addr());
    let mut held: Vec<TcpStream> = Vec::new();
    // Idle keep-alive connections, each a descriptor in the proxy until it closes. Bounded:
    // the limit is 40, so 200 attempts are far past it.
    for _ in 0..200 {
        match TcpStream::connect_timeout(&p.addr, TIMEOUT) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
        if count(&p.stderr, "accept failed") > 0 {
            break;
        }
    }
    wait_for("the accept failure to be logged", &p.stderr, || {
        count(&p.stderr, "accept failed") > 0
    });
    // Time is the subject here: a loop that logged on every retry would write ten lines in
    // this second; one that spun would write thousands.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        count(&p.stderr, "accept failed"),
        1,
        "one line per outage, not per retry:\n{:#?}",
        p.stderr.lock().unwrap()
    );

    drop(held);
    // Descriptors free up as the parked connections close; a new client is served.
    let mut c = connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    wait_for("the recovery to be logged", &p.stderr, || {
        count(&p.stderr, "accepting connections again") >= 1
    });
}
