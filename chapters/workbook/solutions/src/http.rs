//! Stage 1: HTTP/1.1 framing. Read a head however many reads it takes, find where the body
//! ends (Content-Length, chunked, or the close), stream it on through one bounded buffer, and
//! answer bad input with a status. Every later stage serves its connections with this file.

use std::io::{self, ErrorKind::*, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::CLIENT_TIMEOUT;

pub const MAX_REQUEST_LINE: usize = 8 * 1024; // nginx's large_client_header_buffers
pub const MAX_HEAD: usize = 32 * 1024;
pub const MAX_BODY: u64 = 1024 * 1024; // nginx's client_max_body_size
/// Hop-by-hop headers describe one connection, so the proxy never forwards them; nor any
/// header the message's own `Connection` header names (RFC 9110 section 7.6.1).
pub const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"];

/// Why an exchange stopped: a status to answer with (400, 413, 414, 431, 502, 503, 504), or
/// a socket that timed out or failed, when the connection can only be closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    Status(u16),
    Timeout,
    Closed,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        match e.kind() {
            WouldBlock | TimedOut => Error::Timeout,
            _ => Error::Closed,
        }
    }
}

/// Where a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A stream, and the bytes read from it but not used yet (the next request, when pipelined).
pub struct Conn<S> {
    pub stream: S,
    pub buf: Vec<u8>,
}

impl<S: Read> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn { stream, buf: Vec::new() }
    }

    /// Reads once more onto the end of the buffer; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        let old = self.buf.len();
        self.buf.resize(old + 16 * 1024, 0);
        let read = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Reads more, and calls the end of the stream an error.
    pub fn more(&mut self) -> Result<(), Error> {
        match self.fill()? {
            0 => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Reads up to the empty line that ends a head, and returns the head; `None` when the
    /// peer closed before sending a byte of it.
    pub fn read_head(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut from = 0; // bytes already searched: a head sent a byte at a time costs O(n)
        loop {
            // The empty line: CRLF CRLF, or bare LFs, which RFC 9112 lets a recipient accept.
            let end = (from..self.buf.len()).find_map(|i| match &self.buf[i..] {
                [b'\n', b'\n', ..] => Some(i + 2),
                [b'\n', b'\r', b'\n', ..] => Some(i + 3),
                _ => None,
            });
            if let Some(end) = end {
                if end > MAX_HEAD {
                    return Err(Error::Status(431));
                }
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            if !self.buf.contains(&b'\n') && self.buf.len() > MAX_REQUEST_LINE {
                return Err(Error::Status(414));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Error::Status(431));
            }
            from = self.buf.len().saturating_sub(2);
            match self.fill()? {
                0 if self.buf.is_empty() => return Ok(None),
                0 => return Err(Error::Status(400)),
                _ => {}
            }
        }
    }

    /// Reads one line (a chunk size, the end of a chunk, a trailer), at most 4 KiB.
    pub fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        while !self.buf.contains(&b'\n') {
            if self.buf.len() > 4096 {
                return Err(Error::Status(400));
            }
            self.more()?;
        }
        let end = self.buf.iter().position(|&b| b == b'\n').unwrap_or(0);
        Ok(self.buf.drain(..=end).collect())
    }

    /// Copies the next `n` bytes to `to`, one buffer at a time.
    pub fn copy_exact(&mut self, n: u64, to: &mut impl Write) -> Result<(), Error> {
        let mut n = n;
        while n > 0 {
            if self.buf.is_empty() {
                self.more()?;
            }
            let take = self.buf.len().min(n as usize);
            to.write_all(&self.buf[..take])?;
            self.buf.drain(..take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Streams a body framed as `body` to `to` as it came (chunk lines included), never
    /// holding more than one read of it; more than `limit` bytes of payload is a 413.
    pub fn copy_body(&mut self, body: Body, to: &mut impl Write, limit: u64) -> Result<(), Error> {
        match body {
            Body::None => Ok(()),
            Body::Length(n) if n > limit => Err(Error::Status(413)),
            Body::Length(n) => self.copy_exact(n, to),
            Body::UntilClose => loop {
                to.write_all(&self.buf)?;
                self.buf.clear();
                if self.fill()? == 0 {
                    return Ok(());
                }
            },
            Body::Chunked => {
                let mut total = 0u64;
                loop {
                    let line = self.read_line()?;
                    let text = String::from_utf8_lossy(&line);
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let size = match u64::from_str_radix(hex, 16) {
                        Ok(size) if !hex.starts_with('+') => size,
                        _ => return Err(Error::Status(400)),
                    };
                    total = total.saturating_add(size);
                    if total > limit {
                        return Err(Error::Status(413));
                    }
                    to.write_all(&line)?;
                    if size == 0 {
                        break;
                    }
                    self.copy_exact(size, to)?;
                    if self.read_line()? != b"\r\n" {
                        return Err(Error::Status(400)); // data longer than its size
                    }
                    to.write_all(b"\r\n")?;
                }
                loop {
                    let line = self.read_line()?; // trailers, up to an empty line
                    to.write_all(&line)?;
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Where a body ends, from Content-Length and Transfer-Encoding. A request that two hops
/// could frame differently (request smuggling) is a 400: both headers, two different lengths,
/// or a Transfer-Encoding that does not end in chunked.
pub fn framing(headers: &[httparse::Header], request: bool) -> Result<Body, Error> {
    let values = |name: &str| -> Vec<String> {
        let named = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        let text: Vec<_> = named.map(|h| String::from_utf8_lossy(h.value).to_lowercase()).collect();
        text.iter().flat_map(|v| v.split(',')).map(|s| s.trim().to_owned()).collect()
    };
    let (lengths, codings) = (values("content-length"), values("transfer-encoding"));
    match (request, codings.last().map(String::as_str), lengths.first()) {
        (true, Some(_), Some(_)) => Err(Error::Status(400)),
        (_, Some("chunked"), _) => Ok(Body::Chunked),
        (true, Some(_), _) => Err(Error::Status(400)),
        (false, Some(_), _) => Ok(Body::UntilClose),
        (true, None, None) => Ok(Body::None),
        (false, None, None) => Ok(Body::UntilClose),
        (_, None, Some(first)) => match first.parse() {
            Ok(n)
                if first.bytes().all(|b| b.is_ascii_digit())
                    && lengths.iter().all(|l| l == first) =>
            {
                Ok(Body::Length(n))
            }
            _ => Err(Error::Status(400)),
        },
    }
}

/// The head to forward: `first` line, `headers` less the hop-by-hop ones (and those its
/// `Connection` header names), then `extra`.
pub fn rewrite(first: String, headers: &[httparse::Header], extra: &str) -> Vec<u8> {
    let named: Vec<String> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| {
            String::from_utf8_lossy(h.value)
                .to_lowercase()
                .split(',')
                .map(|t| t.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let hop = |name: &str| {
        let name = name.to_lowercase();
        HOP_BY_HOP.contains(&name.as_str()) || named.contains(&name)
    };
    let mut out = first.into_bytes();
    for h in headers.iter().filter(|h| !hop(h.name)) {
        out.extend_from_slice(format!("{}: ", h.name).as_bytes());
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("{extra}\r\n").as_bytes());
    out
}

/// Connects to a backend, with a timeout on the connect (502) and on every read and write after
/// (`timeout`: 504).
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect_timeout(&addr, crate::CONNECT_TIMEOUT)
        .map_err(|_| Error::Status(502))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Serves one request of `client` through the backend that `backend()` connects to; `Ok(true)`
/// when the connection may carry another request.
pub fn serve_request(
    client: &mut Conn<TcpStream>,
    backend: &dyn Fn() -> Result<TcpStream, Error>,
) -> Result<bool, Error> {
    let Some(bytes) = client.read_head()? else {
        return Ok(false);
    };
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Status(431)),
        _ => return Err(Error::Status(400)),
    }
    let (method, path, version) = (req.method.unwrap_or(""), req.path.unwrap_or(""), req.version);
    if path.len() > MAX_REQUEST_LINE {
        return Err(Error::Status(414));
    }
    let body = framing(req.headers, true)?;
    if matches!(body, Body::Length(n) if n > MAX_BODY) {
        return Err(Error::Status(413)); // before anything reaches the backend
    }
    let has = |name: &str, token: &str| {
        let mut named = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        named.any(|h| String::from_utf8_lossy(h.value).to_lowercase().contains(token))
    };
    let keep_alive = version == Some(1) && !has("connection", "close");
    log::info!("{method} {path}");
    // A backend connection per request, closed after it: the request never meets a connection
    // the backend is closing, and a response without a length ends with the connection.
    let first = format!("{method} {path} HTTP/1.{}\r\n", version.unwrap_or(1));
    let mut upstream = Conn::new(backend()?);
    let sent = upstream.stream.write_all(&rewrite(first, req.headers, "Connection: close\r\n"));
    sent.map_err(|_| Error::Status(502))?;
    if has("expect", "100-continue") && body != Body::None {
        client.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?; // Expect is not forwarded
    }
    client.copy_body(body, &mut upstream.stream, MAX_BODY)?;

    let bytes = match upstream.read_head() {
        Ok(Some(bytes)) => bytes,
        Err(Error::Timeout) => return Err(Error::Status(504)),
        _ => return Err(Error::Status(502)),
    };
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut slots);
    let status = match resp.parse(&bytes) {
        Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
        _ => return Err(Error::Status(502)),
    };
    let body = match status {
        100..=199 => return Err(Error::Status(502)), // no Expect nor Upgrade was forwarded
        204 | 304 => Body::None,
        _ if method == "HEAD" => Body::None,
        _ => framing(resp.headers, false)?,
    };
    let keep_alive = keep_alive && body != Body::UntilClose;
    let first = format!("HTTP/1.1 {status} {}\r\n", resp.reason.unwrap_or(""));
    let mut headers = resp.headers.to_vec();
    if body == Body::Chunked {
        headers.retain(|h| !h.name.eq_ignore_ascii_case("content-length"));
    }
    let extra = if keep_alive { "" } else { "Connection: close\r\n" };
    client.stream.write_all(&rewrite(first, &headers, extra))?;
    // The client has its status now: a failure from here on can only close the connection.
    match upstream.copy_body(body, &mut client.stream, u64::MAX) {
        Ok(()) => Ok(keep_alive),
        Err(_) => Err(Error::Closed),
    }
}

/// Gives a client connection its timeouts, and sends small writes at once (without Nagle's
/// delay, a head and a body written apart wait for the client's delayed ACK, 40 ms).
pub fn accepted(stream: TcpStream) -> Conn<TcpStream> {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_nodelay(true);
    Conn::new(stream)
}

/// Serves a client's requests in turn until it closes or fails.
pub fn serve_connection(stream: TcpStream, backend: &dyn Fn() -> Result<TcpStream, Error>) {
    let mut client = accepted(stream);
    while serve(&mut client, backend) {}
}

/// Serves one request of an open connection and answers a failure that has a status; `true`
/// while the connection stays open for another request.
pub fn serve(client: &mut Conn<TcpStream>, backend: &dyn Fn() -> Result<TcpStream, Error>) -> bool {
    match serve_request(client, backend) {
        Ok(open) => open,
        Err(Error::Closed | Error::Timeout) => false,
        Err(Error::Status(code)) => {
            refuse(&mut client.stream, code);
            false
        }
    }
}

/// Answers `code` and closes. What the client still sends is read first (1 s, 4 MiB at most):
/// closing with unread bytes resets the connection, and can destroy the answer in flight.
pub fn refuse(stream: &mut TcpStream, code: u16) {
    let reason = match code {
        400 => "Bad Request",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    log::warn!("{code} {reason}");
    let len = reason.len() + 1;
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    let _ = write!(stream, "{head}Content-Type: text/plain\r\n\r\n{reason}\n");
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut (&*stream).take(4 << 20), &mut io::sink());
}
