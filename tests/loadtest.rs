//! The `loadtest` binary end to end, against a raw HTTP/1.1 server on port 0 in this test.
//! No timing is asserted; every socket has timeouts and every loop a bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves up to `max_connections` connections, each on its own thread: every request gets a
/// 2-byte body, named alternately b1 and b2 in X-Backend-Server. Chunked on odd requests, so
/// both framings go through the binary. Returns the base URL.
fn start_server(max_connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    let served = Arc::new(AtomicU64::new(0));
    thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(stream) = stream else { continue };
            let served = Arc::clone(&served);
            thread::spawn(move || serve_connection(stream, &served));
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn serve_connection(mut stream: TcpStream, served: &AtomicU64) {
    if stream.set_read_timeout(Some(TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(TIMEOUT)).is_err()
    {
        return;
    }
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: by the client (it closes) and by the read timeout.
    for _ in 0..100_000 {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
        pending.drain(..end + 4);
        let n = served.fetch_add(1, Ordering::Relaxed);
        let even = n.is_multiple_of(2);
        let backend = if even { "b1" } else { "b2" };
        let close = head.contains("connection: close");
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = if even {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Server: {backend}\r\n{connection}\r\nok")
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend-Server: {backend}\r\n{connection}\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n"
            )
        };
        if stream.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("run the loadtest binary")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn closed_loop_keepalive_counts_everything() {
    let url = start_server(16);
    let report = json(&loadtest(&["-n", "40", "-c", "4", "--json", &url]));
    assert_eq!(report["responses"], 40);
    assert_eq!(report["errors_total"], 0);
    assert_eq!(report["status_codes"]["200"], 40);
    assert_eq!(report["body_bytes"], 80);
    assert_eq!(report["backends"]["b1"], 20);
    assert_eq!(report["backends"]["b2"], 20);
    // At most one connection per worker: keep-alive reuses it. (Fewer when a worker thread
    // starts after the others have taken every request, as happens on a busy machine.)
    let connections = report["connections"].as_u64().expect("a count");
    assert!(
        (1..=4).contains(&connections),
        "keep-alive reuses one connection per worker, got {connections}"
    );
    assert_eq!(report["mode"], "closed");
}

#[test]
fn no_keepalive_opens_a_connection_per_request() {
    let url = start_server(64);
    let report = json(&loadtest(&[
        "-n",
        "12",
        "-c",
        "3",
        "--no-keepalive",
        "--json",
        &url,
    ]));
    assert_eq!(report["responses"], 12);
    assert_eq!(report["connections"], 12);
    assert_eq!(report["keepalive"], false);
}

#[test]
fn open_loop_runs_the_schedule() {
    let url = start_server(16);
    let report = json(&loadtest(&[
        "--rate", "500", "-n", "25", "-c", "4", "--json", &url,
    ]));
    assert_eq!(report["mode"], "open");
    assert_eq!(report["rate"], 500.0);
    assert_eq!(report["responses"], 25);
}

#[test]
fn text_report_by_default() {
    let url = start_server(16);
    let output = loadtest(&["-n", "10", "-c", "2", &url]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for section in [
        "Summary:",
        "Requests/sec:",
        "Latency:",
        "p99.9",
        "Status codes:",
        "[200] 10",
        "Backends",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
}

#[test]
fn remote_target_is_a_usage_error() {
    // Refused before any socket is opened: no packet goes to 10.0.0.1.
    let output = loadtest(&["-n", "1", "http://10.0.0.1:8080/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-remote"));
}

#[test]
fn unreachable_target_is_a_failure() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let output = loadtest(&[
        "-n",
        "1",
        "--timeout",
        "2s",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not reachable"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(loadtest(&[]).status.code(), Some(2));
    assert_eq!(
        loadtest(&["-z", "soon", "http://127.0.0.1/"]).status.code(),
        Some(2)
    );
    let help = loadtest(&["compare", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("cargo build --release --workspace"));
}
