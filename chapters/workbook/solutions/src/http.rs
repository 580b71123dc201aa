//! Stage 1: HTTP/1.1 framing. Read a head however many reads it takes, find where the body
//! ends (Content-Length, chunked, or the close), stream it on through one bounded buffer, and
//! answer bad input with a status. Every later stage serves its connections with this file.

use std::io::{self, BufRead, BufReader, ErrorKind::*, Read, Write};
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

/// A connection: its stream behind a buffer, which keeps what was read but not used yet (the
/// start of a body; the next request, when the client pipelines). `get_mut()` writes to it.
pub type Conn<S> = BufReader<S>;

/// Why an exchange stopped: a status to answer with (400, 413, 414, 431, 502, 503, 504), or
/// a socket that timed out or failed, when the connection can only be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Status(u16),
    Timeout,
    Closed,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        match e.kind() {
            WouldBlock | TimedOut => Error::Timeout, // a read or write timeout, as Unix reports it
            _ => Error::Closed,
        }
    }
}

/// Where a body ends: after `n` bytes (0: no body), at a chunk of size 0, or at the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one line, "\n" included; a line longer than `max` bytes is `Error::Status(too_long)`.
pub fn read_line(from: &mut impl BufRead, max: usize, too_long: u16) -> Result<Vec<u8>, Error> {
    let mut line = Vec::new();
    from.take(max as u64 + 1).read_until(b'\n', &mut line)?;
    match line.last() {
        Some(b'\n') => Ok(line),
        _ if line.len() > max => Err(Error::Status(too_long)),
        _ => Err(Error::Closed), // the stream ended: between two messages, or in one
    }
}

/// Reads lines onto `head` (what is already read of it) until it ends with an empty line:
/// CRLF, or a bare LF, which RFC 9112 lets a recipient accept. MAX_HEAD bytes at most, else 431.
pub fn read_head(from: &mut impl BufRead, mut head: Vec<u8>) -> Result<Vec<u8>, Error> {
    while !head.ends_with(b"\n\r\n") && !head.ends_with(b"\n\n") {
        let line = read_line(from, MAX_HEAD.saturating_sub(head.len()), 431)?;
        head.extend(line);
    }
    Ok(head)
}

/// Copies the next `n` bytes of `from` to `to`, a buffer at a time.
pub fn copy_exact(from: &mut impl BufRead, n: u64, to: &mut impl Write) -> Result<(), Error> {
    if io::copy(&mut from.take(n), to)? < n {
        return Err(Error::Closed); // the stream ended first
    }
    Ok(())
}

impl Body {
    /// Streams the body from `from` to `to` as it came (chunk lines included), never holding
    /// more than a buffer of it; more than `max` bytes of chunks is a 413.
    pub fn copy(self, from: &mut impl BufRead, to: &mut impl Write, max: u64) -> Result<(), Error> {
        match self {
            Body::Length(n) => copy_exact(from, n, to),
            Body::UntilClose => io::copy(from, to).map(|_| ()).map_err(Error::from),
            Body::Chunked => {
                let mut total = 0u64;
                loop {
                    let line = read_line(from, 4096, 400)?;
                    let size = match httparse::parse_chunk_size(&line) {
                        // An empty line would read as size 0: it is no chunk size at all.
                        Ok(httparse::Status::Complete((_, size))) if line != b"\r\n" => size,
                        _ => return Err(Error::Status(400)),
                    };
                    total = total.saturating_add(size);
                    if total > max {
                        return Err(Error::Status(413));
                    }
                    if size == 0 {
                        // The last chunk, trailer fields, and an empty line: the shape of a head.
                        return Ok(to.write_all(&read_head(from, line)?)?);
                    }
                    to.write_all(&line)?;
                    copy_exact(from, size, to)?;
                    if read_line(from, 2, 400)? != b"\r\n" {
                        return Err(Error::Status(400)); // the data is longer than its size
                    }
                    to.write_all(b"\r\n")?;
                }
            }
        }
    }
}

/// The comma-separated values of every header called `name`, trimmed and lowercased:
/// `Connection: Keep-Alive, X-Foo` gives `["keep-alive", "x-foo"]`.
pub fn tokens(headers: &[httparse::Header], name: &str) -> Vec<String> {
    let named = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let values: Vec<_> = named.map(|h| String::from_utf8_lossy(h.value).to_lowercase()).collect();
    values.iter().flat_map(|v| v.split(',')).map(|t| t.trim().to_owned()).collect()
}

/// Where a body ends, from Transfer-Encoding and Content-Length. A request that two hops
/// could frame differently (request smuggling) is a 400: both headers, two different lengths,
/// or a Transfer-Encoding that does not end in chunked.
pub fn framing(headers: &[httparse::Header], request: bool) -> Result<Body, Error> {
    let codings = tokens(headers, "transfer-encoding");
    let lengths = tokens(headers, "content-length");
    // Every copy of a length the same, and digits only ("+5" would parse).
    let same = lengths.iter().all(|l| *l == lengths[0] && l.bytes().all(|b| b.is_ascii_digit()));
    let bad = Err(Error::Status(400));
    match (request, codings.last().map(String::as_str), lengths.first()) {
        (true, Some(_), Some(_)) => bad,
        (_, Some("chunked"), _) => Ok(Body::Chunked), // a response's length then means nothing
        (true, Some(_), _) => bad,
        (false, Some(_), _) | (false, None, None) => Ok(Body::UntilClose),
        (true, None, None) => Ok(Body::Length(0)),
        (_, None, Some(length)) if same => length.parse().map(Body::Length).or(bad),
        (_, None, Some(_)) => bad,
    }
}

/// The head to forward: `first` line, `headers` less the hop-by-hop ones (and those its
/// `Connection` header names), then `extra`. A Content-Length beside a Transfer-Encoding goes
/// too (RFC 9112 section 6.3): the next hop must not find a length to disagree with.
pub fn rewrite(first: String, headers: &[httparse::Header], extra: &str) -> Vec<u8> {
    let named = tokens(headers, "connection");
    let coded = !tokens(headers, "transfer-encoding").is_empty();
    let mut out = first.into_bytes();
    for h in headers {
        let name = h.name.to_lowercase();
        let hop = HOP_BY_HOP.contains(&name.as_str()) || named.contains(&name);
        if !(hop || (coded && name == "content-length")) {
            out.extend_from_slice(&[h.name.as_bytes(), b": ", h.value, b"\r\n"].concat());
        }
    }
    out.extend_from_slice(format!("{extra}\r\n").as_bytes());
    out
}

/// Connects to a backend (502 if it refuses), and limits every read and write after (504).
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
    // The request line alone first: a long target is 414 even in a head over MAX_HEAD.
    let first = read_line(client, MAX_REQUEST_LINE, 414)?;
    let head = read_head(client, first)?;
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Status(431)),
        _ => return Err(Error::Status(400)),
    }
    let (method, path, version) = (req.method.unwrap_or(""), req.path.unwrap_or(""), req.version);
    let body = framing(req.headers, true)?;
    if matches!(body, Body::Length(n) if n > MAX_BODY) {
        return Err(Error::Status(413)); // before anything reaches the backend
    }
    log::info!("{method} {path}");
    // A backend connection per request, closed after it: the request never meets a connection
    // the backend is closing, and a response without a length ends with the connection.
    let mut upstream = backend()?;
    let first = format!("{method} {path} HTTP/1.{}\r\n", version.unwrap_or(1));
    let sent = upstream.write_all(&rewrite(first, req.headers, "Connection: close\r\n"));
    sent.map_err(|_| Error::Status(502))?;
    let expect = tokens(req.headers, "expect");
    if body != Body::Length(0) && expect.iter().any(|t| t == "100-continue") {
        client.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?; // Expect is not forwarded
    }
    body.copy(client, &mut upstream, MAX_BODY)?;

    let mut upstream = Conn::new(upstream);
    // Until its head has come, a failure is the backend's: 504 when it is too slow, else 502.
    let blame = |e| Error::Status(if e == Error::Timeout { 504 } else { 502 });
    let head = read_head(&mut upstream, Vec::new()).map_err(blame)?;
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(_)) = resp.parse(&head) else {
        return Err(Error::Status(502));
    };
    let status = resp.code.unwrap_or(0);
    let body = match status {
        // No Expect (answered above) nor Upgrade was forwarded: no interim head should come.
        100..=199 => return Err(Error::Status(502)),
        204 | 304 => Body::Length(0),
        _ if method == "HEAD" => Body::Length(0),
        _ => framing(resp.headers, false).map_err(|_| Error::Status(502))?,
    };
    let close = tokens(req.headers, "connection").iter().any(|t| t == "close");
    let keep_alive = version == Some(1) && !close && body != Body::UntilClose;
    let first = format!("HTTP/1.1 {status} {}\r\n", resp.reason.unwrap_or(""));
    let extra = if keep_alive { "" } else { "Connection: close\r\n" };
    client.get_mut().write_all(&rewrite(first, resp.headers, extra))?;
    // The client has its status now: a failure from here on can only close the connection.
    match body.copy(&mut upstream, client.get_mut(), u64::MAX) {
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
    let result = serve_request(client, backend);
    if let Err(Error::Status(code)) = result {
        refuse(client.get_mut(), code);
    }
    result == Ok(true)
}

/// Answers `code` without a body (a HEAD must get none) and closes. What the client still sends
/// is read first (1 s, 4 MiB at most): a close on unread bytes resets, and loses the answer.
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
    let head = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n");
    let _ = write!(stream, "{head}Connection: close\r\n\r\n");
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut (&*stream).take(4 << 20), &mut io::sink());
}
