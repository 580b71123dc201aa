//! Edge cases of the phases, on a relay serving a test-double client: observers told how a
//! body ended on every path, framing headers of bodiless and transformed answers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use revproxy::http::{RequestHead, ResponseHead, Socket};
use revproxy::relay::{
    BodyObserver, BodyPlan, BodyTransform, Client, Phases, Relay, RelayConfig, Reply,
};
use revproxy::upstream::{Connector, SingleUpstream, UpstreamTimeouts};

/// A client that sent `input` and whose writes either succeed (recorded) or all fail.
struct Double {
    input: io::Cursor<Vec<u8>>,
    out: Arc<Mutex<Vec<u8>>>,
    fail_writes: bool,
}

impl Read for Double {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}
impl Write for Double {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.fail_writes {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.out.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Socket for Double {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// One backend connection answered with `response` after the request head.
fn backend(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().take(4) {
            let mut conn = conn.unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = conn.write_all(response);
        }
    });
    addr
}

struct Ends(Arc<Mutex<Vec<bool>>>);
impl BodyObserver for Ends {
    fn data(&mut self, _: &[u8]) {}
    fn end(&mut self, complete: bool) {
        self.0.lock().unwrap().push(complete);
    }
}

struct Upper;
impl BodyTransform for Upper {
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend(input.iter().map(u8::to_ascii_uppercase));
        Ok(())
    }
    fn finish(&mut self, _: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }
}

struct P {
    ends: Arc<Mutex<Vec<bool>>>,
    transform: bool,
}
impl Phases for P {
    type Ctx = ();
    fn request(&self, _: &mut (), head: &mut RequestHead, _: &Client) -> Option<Reply> {
        match head.target.as_str() {
            "/reply" => Some(Reply::new(200).text("hello")),
            "/nocontent" => Some(Reply::new(204)),
            _ => None,
        }
    }
    fn response_head(&self, _: &mut (), _: &RequestHead, _: &mut ResponseHead, b: &mut BodyPlan) {
        b.observe(Ends(Arc::clone(&self.ends)));
        if self.transform {
            b.transform(Upper);
        }
    }
}

fn run(addr: SocketAddr, request: &str, fail_writes: bool, transform: bool) -> (String, Vec<bool>) {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let s = Duration::from_secs(5);
    let relay = Relay::with_phases(
        RelayConfig::default(),
        Arc::new(SingleUpstream(addr)),
        Connector::new(UpstreamTimeouts {
            connect: s,
            read: s,
            write: s,
        }),
        P {
            ends: Arc::clone(&ends),
            transform,
        },
    );
    let out = Arc::new(Mutex::new(Vec::new()));
    let client = Double {
        input: io::Cursor::new(request.as_bytes().to_vec()),
        out: Arc::clone(&out),
        fail_writes,
    };
    relay.serve(client, "127.0.0.1:9".parse().unwrap());
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let ends = ends.lock().unwrap().clone();
    (text, ends)
}

#[test]
fn observer_end_when_client_write_of_upstream_head_fails() {
    let addr = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let (_, ends) = run(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", true, false);
    assert_eq!(ends, vec![false], "observer must be told end exactly once");
}

#[test]
fn observer_end_when_client_write_of_phase_reply_head_fails() {
    let addr = backend(b"");
    let (_, ends) = run(addr, "GET /reply HTTP/1.1\r\nHost: x\r\n\r\n", true, false);
    assert_eq!(ends, vec![false], "observer must be told end exactly once");
}

#[test]
fn head_with_a_transform_keeps_the_identity_content_length() {
    let addr = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    let (text, _) = run(
        addr,
        "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
        true,
    );
    assert!(
        !text.to_ascii_lowercase().contains("content-length"),
        "re-framed (transformed) response must drop Content-Length, also for HEAD:\n{text}"
    );
}

#[test]
fn phase_204_reply_gets_no_content_length() {
    let addr = backend(b"");
    let (text, _) = run(
        addr,
        "GET /nocontent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
        false,
    );
    assert!(
        !text.to_ascii_lowercase().contains("content-length"),
        "RFC 9110 8.6: no Content-Length in a 204:\n{text}"
    );
}
