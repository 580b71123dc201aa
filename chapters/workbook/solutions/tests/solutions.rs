//! A few of the grader's checks, over real sockets, on the solutions' binaries: enough that
//! `cargo test` catches a solution broken by a later edit. The grader (`tools/grade`) is the
//! real judge of every stage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A solution's process, stopped when the test ends, however it ends.
struct Proxy {
    child: Child,
    addr: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` on port 0 and waits (30 s at most) for the address it logs.
fn start(bin: &str, args: &[&str]) -> Proxy {
    let mut child =
        Command::new(bin).args(args).stderr(Stdio::piped()).spawn().expect("start the solution");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy says where it listens");
    Proxy { child, addr }
}

/// An origin that answers each request with a chunked body naming its path, on a connection
/// per request, and reports every request head it receives on the channel.
fn origin() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let mut stream = stream.unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            let _ = tx.send(head);
            let body = format!("{:x}\r\n{path}\r\n0\r\n\r\n", path.len());
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        }
    });
    (addr, rx)
}

/// Sends `request` one byte per write, then reads until the proxy closes.
fn exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in request {
        stream.write_all(&[*byte]).unwrap();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let _ = stream.shutdown(Shutdown::Both);
    answer
}

#[test]
fn stage1_frames_keep_alive_and_refuses_smuggling() {
    let (backend, heads) = origin();
    let proxy = start(
        env!("CARGO_BIN_EXE_solution-stage1"),
        &["--listen", "127.0.0.1:0", "--backend", &backend],
    );

    // Two requests on one connection, each split into single bytes: both answered, the body
    // relayed chunked as it came, and the second one closes the connection.
    let answer = exchange(
        &proxy.addr,
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(
        answer.contains("4\r\n/one\r\n0\r\n\r\n") && answer.ends_with("4\r\n/two\r\n0\r\n\r\n"),
        "{answer}"
    );
    let first = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.starts_with("GET /one HTTP/1.1\r\n") && first.contains("Connection: close"),
        "{first}"
    );
    assert!(heads.recv_timeout(Duration::from_secs(10)).is_ok());

    // Smuggling framings are refused with 400, and none reaches the origin.
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Content-Length: 5\r\nContent-Length: 6",
    ] {
        let request = format!("POST /smuggled HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n0\r\n\r\n");
        let answer = exchange(&proxy.addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{framing}: {answer}");
    }
    assert!(heads.try_recv().is_err(), "a refused request reached the origin");
}

#[test]
fn stage1_dead_backend_is_502() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = unused.local_addr().unwrap().to_string();
    drop(unused); // nothing listens there now: connections are refused
    let proxy = start(
        env!("CARGO_BIN_EXE_solution-stage1"),
        &["--listen", "127.0.0.1:0", "--backend", &dead],
    );
    let answer = exchange(&proxy.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[test]
fn stage6_broken_config_names_file_line_and_column() {
    let path = std::env::temp_dir().join(format!("workbook-broken-{}.toml", std::process::id()));
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\n\
                [upstreams.app]\nservers = [\"127.0.0.1:1\"]\nretires = 2\n";
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_solution-stage6"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:6:1: unknown field `retires`", path.display())),
        "{stderr}"
    );
}
