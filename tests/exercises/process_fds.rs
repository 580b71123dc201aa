//! Chapter 10, exercise: `process_open_fds` and `process_max_fds` on `/metrics`, two of the
//! standard process metrics every official Prometheus client library exports. Every client
//! connection, upstream connection, log file and listener is a file descriptor; past the
//! soft `RLIMIT_NOFILE` (`ulimit -n`), `accept` fails with `EMFILE` and the proxy refuses
//! everyone. With both gauges an alert can fire at 80% of the limit, before that happens.
//! Solution: `solutions/10-process-fds.patch`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::support::{connect, raw_backend, read_request_head, Client, TIMEOUT};

const STAGE9: &str = env!("CARGO_BIN_EXE_stage9");

/// Stage 9 with an `[admin]` listener: its process and both addresses.
struct Stage {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(origin: SocketAddr) -> Stage {
    let text = format!(
        "[server]\nworkers = 2\n[upstreams.app]\nservers = [\"{origin}\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n"
    );
    let path: PathBuf = std::env::temp_dir().join(format!(
        "revproxy-exercise-{}-process-fds.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config");
    let mut child = Command::new(STAGE9)
        .args(["--config", path.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start stage9");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut admin) = (None, None);
    let deadline = Instant::now() + TIMEOUT;
    while addr.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("stage9 did not announce its listener and its admin listener");
        };
        if let Some(a) = line.split("listening on ").nth(1) {
            addr = a.trim().parse().ok();
        }
        if let Some(a) = line.split("admin on http://").nth(1) {
            admin = a.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    Stage {
        child,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
    }
}

/// The unlabelled samples of one scrape, and the `# TYPE` of each family.
fn scrape(stage: &Stage) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut conn = connect(stage.admin);
    conn.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let res = conn.read_response("GET");
    assert_eq!(res.status, 200);
    let (mut samples, mut types) = (HashMap::new(), HashMap::new());
    for line in res.text().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_owned(), kind.to_owned());
            }
        } else if let Some((name, value)) = line.split_once(' ') {
            if let Ok(value) = value.parse::<f64>() {
                samples.insert(name.to_owned(), value);
            }
        }
    }
    (samples, types)
}

/// What the kernel says the proxy has open, read from outside it.
fn fds_in_proc(stage: &Stage) -> f64 {
    let dir = format!("/proc/{}/fd", stage.child.id());
    std::fs::read_dir(&dir).expect("read /proc/PID/fd").count() as f64
}

/// The proxy's soft limit on open files, from `/proc/PID/limits`.
fn soft_limit_in_proc(stage: &Stage) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", stage.child.id()))
        .expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
        .expect("a numeric soft limit")
}

fn gauge(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no {name} sample on /metrics"))
}

#[test]
#[ignore = "exercise (chapter 10): process_open_fds, process_max_fds"]
fn open_and_max_fds_are_the_processs_own_and_follow_its_connections() {
    let origin = raw_backend(|mut stream| loop {
        let head = read_request_head(&mut stream);
        if !head.ends_with(b"\r\n\r\n")
            || stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
        {
            return;
        }
    });
    let stage = start(origin);
    let (samples, types) = scrape(&stage);
    for name in ["process_open_fds", "process_max_fds"] {
        assert_eq!(types.get(name).map(String::as_str), Some("gauge"), "{name}");
    }
    assert_eq!(
        gauge(&samples, "process_max_fds"),
        soft_limit_in_proc(&stage)
    );
    let before = gauge(&samples, "process_open_fds");
    // The scrape's own connection may still be open when /proc is read, or already closed.
    let slack = 3.0;
    assert!(
        (before - fds_in_proc(&stage)).abs() <= slack,
        "{before} open, /proc says {}",
        fds_in_proc(&stage)
    );

    // Eight clients, each served once and kept alive: eight more descriptors at least.
    let clients: Vec<Client> = (0..8)
        .map(|_| {
            let mut c = connect(stage.addr);
            c.send_in_fragments(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 6);
            assert_eq!(c.read_response("GET").status, 200);
            c
        })
        .collect();
    let (samples, _) = scrape(&stage);
    let during = gauge(&samples, "process_open_fds");
    assert!(
        during >= before + clients.len() as f64,
        "{during} open with {} clients, {before} before",
        clients.len()
    );
    assert!(
        (during - fds_in_proc(&stage)).abs() <= slack,
        "{during} open, /proc says {}",
        fds_in_proc(&stage)
    );
}
