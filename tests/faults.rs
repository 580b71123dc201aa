//! Faults the proxy must survive. Descriptor exhaustion: with a low `ulimit -n`, a flood of
//! connections makes `accept` fail; the accept loop must back off rather than spin, say so
//! once rather than ten times a second, and serve again as soon as descriptors free up.
//! A slow reader: a client that takes its response a trickle at a time holds one worker, and
//! only until the minimum send rate cuts it off.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{backend, connect, Proxy, TIMEOUT};

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

/// Shrinks a socket's receive buffer, so the kernel cannot soak up a large body on the
/// client's behalf and the proxy really waits on the reader.
fn small_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    // SAFETY: a valid descriptor, and a pointer to a c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_RCVBUF)");
}

/// A client on stage 4 (two workers) that asked for 10 MB through a 4 KiB receive buffer, so
/// the proxy really waits on it; its first bytes have arrived.
fn slow_client(p: &Proxy, body: usize) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&p.addr, TIMEOUT).unwrap();
    small_receive_buffer(&stream, 4096);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(format!("GET /bytes/{body} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = [0u8; 1024];
    let n = stream.read(&mut first).expect("the start of the response");
    assert!(n > 0, "the slow client gets the start of its response");
    stream
}

/// Two parts, each decided by events rather than by how long anything took, so a loaded
/// machine cannot fail them: the holding part runs without a minimum rate (nothing can cut
/// the slow client off while the other is served, which the old single-stage version raced
/// against a 300 ms window), the cut-off part with a test-sized one.
#[test]
fn a_slow_reader_holds_one_worker_and_is_cut_off() {
    const BODY: usize = 10 * 1024 * 1024;
    let b = backend("b1");

    // Holding: the slow client, reading nothing now, keeps its worker; the other one serves.
    let p = Proxy::start(
        env!("CARGO_BIN_EXE_stage4"),
        &[b.addr()],
        &["--workers", "2", "--min-send-rate", "0"],
    );
    let mut slow = slow_client(&p, BODY);
    let mut other = p.connect();
    other.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(other.read_response("GET").status, 200);
    let mut more = [0u8; 1024];
    assert!(
        matches!(slow.read(&mut more), Ok(n) if n > 0),
        "the slow client's response was still coming after the other client was served"
    );
    drop((slow, other, p));

    let log = std::env::temp_dir().join(format!("revproxy-faults-{}-slow.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    // Cut-off: test-sized rule, 1 MB/s over every 300 ms of waiting; the reader takes about
    // 50 KB/s.
    let p = Proxy::start_with_stderr(
        env!("CARGO_BIN_EXE_stage4"),
        &[b.addr()],
        &[
            "--workers",
            "2",
            "--send-timeout",
            "300ms",
            "--min-send-rate",
            "1m",
        ],
        Stdio::from(file),
    );
    let mut slow = slow_client(&p, BODY);
    let reader = thread::spawn(move || {
        let began = Instant::now();
        let mut taken = 0usize;
        let mut buf = [0u8; 1024];
        // Bounded by time: without the rule this reader would need over three minutes. The
        // bound only stops a broken proxy; a working one ends the connection long before.
        while began.elapsed() < Duration::from_secs(60) {
            match slow.read(&mut buf) {
                Ok(0) | Err(_) => return (taken, true),
                Ok(n) => taken += n,
            }
            // The pace of a slow reader: 1 KiB each 20 ms.
            thread::sleep(Duration::from_millis(20));
        }
        (taken, false)
    });
    let (taken, ended_by_proxy) = reader.join().unwrap();
    assert!(
        ended_by_proxy,
        "the proxy never cut the slow reader off ({taken} bytes)"
    );
    assert!(
        taken < BODY,
        "the slow reader was given the whole body ({taken} bytes)"
    );
    // It left through the warning that says why (written before the connection is reset),
    // not a silent timeout. Normally the rate rule; on a machine so loaded that the reader
    // thread did not run for the whole 300 ms window, the send timeout fires first, which is
    // the same rule's other half (it took nothing at all).
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        said.contains("below the minimum send rate") || said.contains("(the send timeout)"),
        "the stage did not log the cut-off:\n{said}"
    );
    // Its worker is free again: two clients are served at once.
    let mut first = p.connect();
    let mut second = p.connect();
    first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    second.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.read_response("GET").status, 200);
    assert_eq!(second.read_response("GET").status, 200);
}
