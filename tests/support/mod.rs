//! Fixtures for the integration tests: real stage binaries and real backends on port 0, raw
//! TCP clients, and a small independent HTTP/1.1 response reader.
//!
//! Nothing here sleeps to synchronise: a stage is ready when it prints its listening line, a
//! backend when `start` returns. Every socket has a timeout, so a bug fails a test instead of
//! hanging the suite.

#![allow(dead_code)] // each test binary uses its own subset

pub mod grader;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A stage binary running on an ephemeral port; killed and reaped on drop.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    /// Every line the stage printed on stdout so far (its announcements).
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts `bin` with `--listen 127.0.0.1:0`, the given backends and extra flags, and waits
    /// (bounded) for its `listening on` line.
    pub fn start(bin: &str, backends: &[SocketAddr], extra: &[&str]) -> Proxy {
        Proxy::start_with_stderr(bin, backends, extra, Stdio::inherit())
    }

    /// Like `start`, with the stage's diagnostics going to `stderr` (a file, to count log
    /// lines).
    pub fn start_with_stderr(
        bin: &str,
        backends: &[SocketAddr],
        extra: &[&str],
        stderr: Stdio,
    ) -> Proxy {
        Proxy::start_with_env(bin, backends, extra, stderr, &[])
    }

    /// Like `start_with_stderr`, with variables added to the stage's environment only (a
    /// test must not change its own: the others run beside it).
    pub fn start_with_env(
        bin: &str,
        backends: &[SocketAddr],
        extra: &[&str],
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.args(["--listen", "127.0.0.1:0", "--log-level", "warn"]);
        for backend in backends {
            cmd.args(["--backend", &backend.to_string()]);
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                seen.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => addr.parse().expect("listening line has an address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{bin} did not print its listening line within {TIMEOUT:?}");
            }
        };
        Proxy {
            child,
            addr,
            stdout: lines,
        }
    }

    /// The address on the first stdout line that holds `marker` followed by an address
    /// (`"TLS on "` for stage 9's TLS listener), waiting for it at most `TIMEOUT`.
    pub fn announced(&self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found = self.stdout.lock().unwrap().iter().find_map(|line| {
                line.split(marker)
                    .nth(1)
                    .and_then(|a| a.trim().parse().ok())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} line within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self) -> Client {
        connect(self.addr)
    }

    /// The stage's process id, to inspect its children in `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the stage process (not its children) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit by itself, e.g. after a signal.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Whether the process is still running (it must never die on bad input).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A plain GET on a new connection succeeds: the proxy is still serving.
    pub fn assert_serves(&mut self) {
        assert!(self.is_running(), "the proxy process died");
        let mut conn = self.connect();
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let res = conn.read_response("GET");
        assert_eq!(res.status, 200, "the proxy no longer serves a plain GET");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A demo backend (the `backends` crate, on hyper) on an ephemeral port.
pub fn backend(name: &str) -> backends::Backend {
    let options = backends::Options {
        name: name.to_owned(),
        ..backends::Options::default()
    };
    backends::Backend::start("127.0.0.1:0", options).expect("demo backend starts")
}

/// An address where nothing listens (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A hand-written backend for behaviours no well-behaved server has: each accepted connection
/// is passed to `handle` on its own thread. The listener thread ends with the test process.
pub fn raw_backend<F>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            let handle = handle.clone();
            thread::spawn(move || handle(stream));
        }
    });
    addr
}

/// Reads one request head (through the empty line) from a raw backend's connection.
pub fn read_request_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

pub fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to the proxy");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    Client {
        stream,
        buf: Vec::new(),
    }
}

/// A response as the test client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection with a small HTTP/1.1 response reader of its own, independent of
/// the proxy's parser on purpose. Bytes read past one response are kept for the next.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the proxy");
    }

    /// Sends `bytes` in pieces of `size` with a short pause between them, so the proxy sees a
    /// request arrive over several reads as it would from a slow network.
    pub fn send_in_fragments(&mut self, bytes: &[u8], size: usize) {
        for piece in bytes.chunks(size) {
            self.send(piece);
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads one response to a request made with `method`: Content-Length, chunked, or until
    /// close.
    pub fn read_response(&mut self, method: &str) -> Response {
        self.try_read_response(method).expect("a complete response")
    }

    /// Like `read_response`, but `None` when the connection ends before a complete response.
    pub fn try_read_response(&mut self, method: &str) -> Option<Response> {
        let head = self.until(b"\r\n\r\n")?;
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut slots);
        parsed.parse(&head).expect("a valid response head");
        let status = parsed.code.expect("status");
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut res = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            return Some(res);
        }
        res.body = if res
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            self.chunked()?
        } else if let Some(len) = res.header("content-length") {
            self.exact(len.trim().parse().expect("numeric Content-Length"))?
        } else {
            self.rest_until_close()
        };
        Some(res)
    }

    /// Reads until the proxy closes the connection; `None` if it stays open past the timeout.
    pub fn read_to_close(&mut self) -> Option<Vec<u8>> {
        let mut all = std::mem::take(&mut self.buf);
        match self.stream.read_to_end(&mut all) {
            Ok(_) => Some(all),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(all),
            Err(_) => None,
        }
    }

    /// Reads through the first `end` (within the timeout) and returns what came up to and
    /// including it, for a test that reads a response while it is still arriving.
    pub fn read_until(&mut self, end: &[u8]) -> Option<Vec<u8>> {
        self.until(end)
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn until(&mut self, end: &[u8]) -> Option<Vec<u8>> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(pos) = self.buf.windows(end.len()).position(|w| w == end) {
                return Some(self.buf.drain(..pos + end.len()).collect());
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    fn exact(&mut self, len: usize) -> Option<Vec<u8>> {
        while self.buf.len() < len {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..len).collect())
    }

    fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.until(b"\r\n")?;
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {text:?}"));
            if size == 0 {
                // Trailers, then the empty line.
                while self.until(b"\r\n")?.len() > 2 {}
                return Some(body);
            }
            let mut chunk = self.exact(size + 2)?;
            assert!(chunk.ends_with(b"\r\n"), "chunk data not followed by CRLF");
            chunk.truncate(size);
            body.extend(chunk);
        }
    }

    fn rest_until_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}

impl Client {
    /// Counts body bytes until `total` arrived (the bytes in `already` count too, minus the
    /// head), or the connection ends.
    pub fn read_to_close_or_len(&mut self, total: usize, already: &[u8]) -> usize {
        let head_end = already
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        let mut count = already.len() - head_end;
        let mut chunk = vec![0u8; 64 * 1024];
        while count < total {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => count += n,
            }
        }
        count
    }
}
