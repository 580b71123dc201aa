//! The `backends` binary: flags, exit codes, the ready line, and serving.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::{get, TIMEOUT};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_backends"))
}

/// Kills the child when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_and_version_exit_0() {
    let help = bin().arg("--help").output().expect("run --help");
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--port",
        "--name",
        "--delay-ms",
        "--host",
        "--workers",
        "--version",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let version = bin().arg("-V").output().expect("run -V");
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 5] = [
        &["--bogus"],
        &["--port", "70000"],
        &["--workers", "0"],
        &["--name", ""],
        &["--delay-ms", "-1"],
    ];
    for args in cases {
        let out = bin().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn port_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = bin().args(["--port", &port]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn prints_the_ready_line_then_serves() {
    let child = bin()
        .args(["--port", "0", "--name", "cli", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout");
    // Read the first line on a thread, so a silent binary fails the test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(TIMEOUT).expect("ready line");
    let url = line
        .trim_end()
        .strip_prefix("backend cli listening on http://")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let addr: SocketAddr = url.parse().expect("address in the ready line");
    assert_ne!(addr.port(), 0);
    let r = get(addr, "/");
    assert_eq!(r.body_str(), "hello from cli\n");
    assert_eq!(r.header("X-Backend-Server"), Some("cli"));
}
