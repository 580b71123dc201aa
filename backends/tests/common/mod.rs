//! Raw-socket helpers: requests are bytes written to a `TcpStream`, responses are parsed here
//! by hand (not with tiny_http, not with the proxy's code).

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use backends::{Backend, Options};

/// Long enough for a loaded CI machine, short enough that a bug fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn start(name: &str) -> Backend {
    start_with(Options {
        name: name.to_string(),
        ..Options::default()
    })
}

pub fn start_with(options: Options) -> Backend {
    Backend::start("127.0.0.1:0", options).expect("start backend")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

#[derive(Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as framed on the wire: still chunk-encoded if the response was chunked.
    pub raw_body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.raw_body).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.raw_body).expect("JSON body")
    }
}

/// Sends `request` on a new connection and reads until the server closes it. The request
/// should carry `Connection: close` (or be HTTP/1.0 without keep-alive).
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write request");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read to EOF");
    out
}

/// A GET with `Connection: close`, answered and parsed.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let bytes = exchange(addr, request.as_bytes());
    parse(&bytes)
}

/// Parses one complete response whose body runs to the end of `bytes`.
pub fn parse(bytes: &[u8]) -> Response {
    let end = find(bytes, b"\r\n\r\n").expect("end of head");
    let (version, status, headers) = parse_head(&bytes[..end + 2]);
    Response {
        version,
        status,
        headers,
        raw_body: bytes[end + 4..].to_vec(),
    }
}

fn parse_head(head: &[u8]) -> (String, u16, Vec<(String, String)>) {
    let head = std::str::from_utf8(head).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().expect("version").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header colon");
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    (version, status, headers)
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response from a kept-alive connection: the head, then a body framed by
/// Content-Length or chunked coding (kept raw), or none for HEAD/1xx/204/304.
pub fn read_response(reader: &mut BufReader<TcpStream>, head_request: bool) -> Response {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).expect("read head");
        assert!(n > 0, "connection closed before the end of the head");
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let (version, status, headers) = parse_head(&head[..head.len() - 2]);
    let mut response = Response {
        version,
        status,
        headers,
        raw_body: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return response;
    }
    if let Some(len) = response.header("Content-Length") {
        let len: usize = len.parse().expect("Content-Length");
        response.raw_body = vec![0; len];
        reader
            .read_exact(&mut response.raw_body)
            .expect("read body");
    } else if response.header("Transfer-Encoding") == Some("chunked") {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).expect("size");
            response.raw_body.extend_from_slice(&size_line);
            let size = std::str::from_utf8(&size_line).expect("ASCII size");
            let size = usize::from_str_radix(size.trim_end(), 16).expect("hex size");
            let mut data = vec![0; size + 2];
            reader.read_exact(&mut data).expect("chunk data");
            response.raw_body.extend_from_slice(&data);
            if size == 0 {
                break;
            }
        }
    } else {
        reader
            .read_to_end(&mut response.raw_body)
            .expect("read to EOF");
    }
    response
}

/// Decodes a chunked body (no trailers): the size of each data chunk, and the data.
pub fn dechunk(raw: &[u8]) -> (Vec<usize>, Vec<u8>) {
    let mut sizes = Vec::new();
    let mut data = Vec::new();
    let mut rest = raw;
    loop {
        let eol = find(rest, b"\r\n").expect("chunk size line");
        let size = std::str::from_utf8(&rest[..eol]).expect("ASCII size");
        let size = usize::from_str_radix(size, 16).expect("hex size");
        rest = &rest[eol + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n", "nothing after the last chunk");
            return (sizes, data);
        }
        sizes.push(size);
        data.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n", "CRLF after chunk data");
        rest = &rest[size + 2..];
    }
}

/// The first `len` bytes of the pattern served by /bytes, /chunked and /drop.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}
