//! Stage 1: HTTP/1.1 framing. Read a head however many reads it takes, find where the body
//! ends (Content-Length, chunked, or the close), stream it on through one bounded buffer, and
//! answer bad input with a status. Every later stage serves its connections with this file.
//!
//! You write the functions whose body is a `todo!()`, starting with `serve_request` (the
//! first request a client sends reaches it); each says what to write and which grader checks
//! pass once it is there. The rest is given. Stuck? `chapters/workbook/solutions/src/http.rs`
//! is one answer.

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
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn read_line(from: &mut impl BufRead, max: usize, too_long: u16) -> Result<Vec<u8>, Error> {
    // `from.take(max as u64 + 1).read_until(b'\n', &mut line)` reads up to a "\n", however many
    // reads that takes, and never more than `max` + 1 bytes (a line that never ends must not
    // fill the memory). In this order: longer than `max` (the "\n" counted):
    // `Error::Status(too_long)`; ends in "\n": Ok; otherwise the stream ended first:
    // `Error::Closed`. Used for heads, chunk-size lines and
    // trailers. Checks: 414 and 431 (with read_head), a head split at every byte.
    todo!("stage 1: write read_line (one line, at most max bytes); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

/// Reads lines onto `head` (what is already read of it) until it ends with an empty line:
/// CRLF, or a bare LF, which RFC 9112 lets a recipient accept. MAX_HEAD bytes at most, else 431.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn read_head(from: &mut impl BufRead, head: Vec<u8>) -> Result<Vec<u8>, Error> {
    // While `head` (make it `mut`) does not end with "\n\r\n" (or "\n\n"), append the next
    // `read_line`, whose `max` is what MAX_HEAD leaves (431 past it). What follows the empty line
    // stays in `from`'s buffer: the start of the body, or the next request when the client
    // pipelines. Checks: a head split at every byte, pipelining, 431.
    todo!("stage 1: write read_head (lines up to the empty one); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

/// Copies the next `n` bytes of `from` to `to`, a buffer at a time.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn copy_exact(from: &mut impl BufRead, n: u64, to: &mut impl Write) -> Result<(), Error> {
    // `io::copy(&mut from.take(n), to)` streams them through one small buffer (that is what
    // keeps a 100 MiB body in bounded memory); fewer than `n` copied means the stream ended
    // first: `Error::Closed`.
    todo!("stage 1: write copy_exact (n bytes, streamed); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

impl Body {
    /// Streams the body from `from` to `to` as it came (chunk lines included), never holding
    /// more than a buffer of it; more than `max` bytes of chunks is a 413.
    #[allow(unused_variables)] // a stub: its arguments are unused until you write its body
    pub fn copy(self, from: &mut impl BufRead, to: &mut impl Write, max: u64) -> Result<(), Error> {
        // One arm per `Body`: Length(n) is copy_exact; UntilClose copies until the stream ends
        // (`io::copy`); Chunked repeats: `read_line(from, 4096, 400)`, its size with
        // `httparse::parse_chunk_size` (400 if bad, and for an empty line, which it reads as 0),
        // the running total against `max` (413), forward the line, copy_exact(size), then the
        // "\r\n" after the data (anything else is 400). The chunk of size 0 is followed by
        // trailer lines up to an empty one, which is the shape of a head: for it, forward
        // `read_head(from, line)` instead of the line alone (what it returns starts with the
        // line: the "0" line must go out once). Checks: chunked both ways, until-close, 100 MiB streamed,
        // keep-alive after a chunked response.
        todo!("stage 1: write Body::copy (stream a body framed by length, chunks or the close); see chapters/01-single-connection-forwarder.md#build-it-yourself")
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
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn framing(headers: &[httparse::Header], request: bool) -> Result<Body, Error> {
    // `tokens` gives the values of Content-Length and Transfer-Encoding. Requests: both headers
    // 400; a Transfer-Encoding whose last coding is not `chunked` 400; lengths that are not all
    // digits, or differ, 400; neither header: Body::Length(0). Responses: Transfer-Encoding
    // with chunked last -> Chunked, with another coding last -> UntilClose; no
    // Transfer-Encoding: Content-Length -> Length (400 if not all digits or they differ, as
    // for requests; serve_request makes it 502), neither header -> UntilClose. Checks: the three smuggling framings
    // refused with nothing sent to the origin; 400 for `Content-Length: abc`.
    todo!("stage 1: write framing (where a body ends, and the smuggling refusals); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

/// The head to forward: `first` line, `headers` less the hop-by-hop ones (and those its
/// `Connection` header names), then `extra`. A Content-Length beside a Transfer-Encoding goes
/// too (RFC 9112 section 6.3): the next hop must not find a length to disagree with.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn rewrite(first: String, headers: &[httparse::Header], extra: &str) -> Vec<u8> {
    // `first` (the request or status line, with its "\r\n": serve_request builds it from the
    // parsed parts, `format!("{method} {path} HTTP/1.{version}\r\n")`, which also turns a
    // bare LF into CRLF), then each header "Name: value\r\n"
    // except the HOP_BY_HOP ones and those `tokens(headers, "connection")` names (compare
    // lowercased: `Connection: keep-alive, X-Foo` makes X-Foo hop-by-hop), then `extra`, then the
    // "\r\n" that ends the head. Check: hop_by_hop_removed.
    todo!("stage 1: write rewrite (the forwarded head, less the hop-by-hop headers); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

/// Connects to a backend (502 if it refuses), and limits every read and write after (504).
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    // `TcpStream::connect_timeout(&addr, crate::CONNECT_TIMEOUT)`: a failure is 502. Then a read
    // and a write timeout of `timeout`, so a silent backend is a 504 (serve_request turns
    // `Error::Timeout` from its read into one), not a hang; and `set_nodelay(true)`. Checks: 502
    // and 504.
    todo!("stage 1: write connect (to the backend, with timeouts); see chapters/01-single-connection-forwarder.md#build-it-yourself")
}

/// Serves one request of `client` through the backend that `backend()` connects to; `Ok(true)`
/// when the connection may carry another request.
#[allow(unused_variables)] // a stub: its arguments are unused until you write its body
pub fn serve_request(
    client: &mut Conn<TcpStream>,
    backend: &dyn Fn() -> Result<TcpStream, Error>,
) -> Result<bool, Error> {
    // Stage 1, what to write first. Every request goes through here; write it in this order,
    // writing each helper it calls as you reach it (each has its own todo!):
    //  1. The request line alone, `read_line(client, MAX_REQUEST_LINE, 414)` (a long target is
    //     414 even in a head over MAX_HEAD), then the rest: `read_head(client, first)`. An
    //     `Err(Error::Closed)` there is the client leaving: `?` passes it up.
    //  2. Parse the head with `httparse::Request` (100 header slots): too many headers is
    //     `Error::Status(431)`, any other parse error 400.
    //  3. `framing(req.headers, true)`: where the request body ends; smuggling framings are 400
    //     and nothing reaches the backend. A Content-Length over MAX_BODY is 413, also before (a
    //     chunked body is only known to be too large once MAX_BODY has gone by: Body::copy's 413).
    //  4. `let mut upstream = backend()?` connects (stage 1 passes `connect`); write it the head
    //     `rewrite` makes from the client's own request line, with `Connection: close` (one
    //     backend connection per request); a failed write is 502. If the client sent `Expect:
    //     100-continue` with a body, answer `HTTP/1.1 100 Continue` yourself (Expect is
    //     hop-by-hop); then `body.copy(client, &mut upstream, MAX_BODY)` streams the body.
    //  5. `let mut upstream = Conn::new(upstream)` buffers what it answers; `read_head(&mut
    //     upstream, Vec::new())`: `Error::Timeout` is 504, any other failure 502. Parse it with
    //     `httparse::Response` (a bad head is 502; so is a 1xx, since no Expect nor Upgrade was
    //     forwarded); 204, 304 and answers to HEAD have no body (`Body::Length(0)`), others
    //     `framing(resp.headers, false)` (a bad one is 502). Write the head to
    //     `client.get_mut()` (`rewrite` from "HTTP/1.1 {status} {reason}\r\n", adding
    //     `Connection: close` when this connection will close), then `body.copy(&mut upstream,
    //     client.get_mut(), u64::MAX)`. Once the client has any byte of the response, a failure
    //     can no longer be a status: return `Err(Error::Closed)` (the caller closes).
    // Return Ok(keep_alive): the client's request was HTTP/1.1 without `Connection: close`, and
    // the response did not end with the close. Grader checks that pass then: framing by
    // Content-Length, chunked and close; HEAD/204/304; split heads; 100 MiB streamed;
    // keep-alive, pipelining; hop-by-hop removed; 400, 413, 414, 431, 502, 504; smuggling
    // refused.
    todo!("stage 1: write serve_request in chapters/workbook/src/http.rs (read the head, frame the body, forward it, relay the response); see chapters/01-single-connection-forwarder.md#build-it-yourself")
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
