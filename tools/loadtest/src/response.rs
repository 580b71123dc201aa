//! Reading one HTTP/1.1 response from any `Read`, counting and dropping its body.
//!
//! Framing follows RFC 9112 section 6.3: no body for HEAD, 1xx, 204 and 304;
//! `Transfer-Encoding: chunked` (sizes, extensions and trailers); then `Content-Length`;
//! otherwise the body runs until the server closes. One reusable buffer per connection
//! ([`Buf`]) holds the bytes read ahead, so a response in steady state allocates nothing.
//! Generic over `Read`, so the tests can feed a response one byte per read. The event-loop
//! engine's [`super::decoder`] uses the same head and chunk-size parsing on its buffers.

use std::io::{self, Read};
use std::time::Instant;

use super::error::ClientError;

/// Longest response head (or chunk-size line) accepted; past that the response is bad.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Enough for a head and a few body reads; grows towards `MAX_HEAD` only for huge heads.
const INITIAL_BUF: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A server that sends 1xx responses forever must not keep a worker forever.
pub(super) const MAX_INTERIM: usize = 16;
pub(super) const MAX_TRAILERS: usize = 64;

/// The read buffer of one connection: unconsumed bytes live in `data[start..end]`.
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes read for the current request; zero means the server sent nothing at all.
    received: u64,
    /// Bounds the whole request, not only each read, so a slow trickle cannot hold a worker.
    deadline: Option<Instant>,
}

impl Default for Buf {
    fn default() -> Self {
        Buf {
            data: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            received: 0,
            deadline: None,
        }
    }
}

impl Buf {
    /// Starts a new request: leftovers of the previous one (there should be none, as
    /// requests are not pipelined) are dropped.
    pub fn reset(&mut self, deadline: Option<Instant>) {
        self.start = 0;
        self.end = 0;
        self.received = 0;
        self.deadline = deadline;
    }

    /// Bytes read for the current request so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn available(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes after the unconsumed ones; `Ok(0)` means end of stream.
    fn fill<R: Read>(&mut self, r: &mut R) -> Result<usize, ClientError> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let e = io::Error::new(
                io::ErrorKind::TimedOut,
                "request took longer than --timeout",
            );
            return Err(ClientError::Io(e));
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < MAX_HEAD {
                let len = (self.data.len() * 2).min(MAX_HEAD);
                self.data.resize(len, 0);
            } else {
                return Err(ClientError::Bad("response head or chunk line too long"));
            }
        }
        // Bounded: EINTR is rare and each retry is a fresh read with its own timeout.
        loop {
            match r.read(&mut self.data[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    self.received += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }
}

/// What the worker needs to know about one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    pub status: u16,
    pub body_bytes: u64,
    /// The connection cannot carry another request.
    pub close: bool,
    /// `X-Backend-Server` was present; its value was copied into the caller's buffer.
    pub has_backend: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

pub(super) struct Head {
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) close: bool,
    pub(super) has_backend: bool,
}

/// Reads one whole response from `r` and drops its body; `backend` receives the value of
/// `X-Backend-Server` (reused, so no allocation once it is big enough).
pub fn read_response<R: Read>(
    r: &mut R,
    buf: &mut Buf,
    head_request: bool,
    backend: &mut Vec<u8>,
) -> Result<ResponseMeta, ClientError> {
    let mut head = read_head(r, buf, backend)?;
    let mut interim = 0;
    while (100..200).contains(&head.status) {
        if head.status == 101 {
            return Err(ClientError::Bad("unexpected 101 Switching Protocols"));
        }
        interim += 1;
        if interim > MAX_INTERIM {
            return Err(ClientError::Bad("too many 1xx responses"));
        }
        head = read_head(r, buf, backend)?;
    }
    let framing = if head_request || head.status == 204 || head.status == 304 {
        Framing::None
    } else {
        head.framing
    };
    let body_bytes = match framing {
        Framing::None => 0,
        Framing::Length(n) => {
            skip_exact(r, buf, n)?;
            n
        }
        Framing::Chunked => read_chunked(r, buf)?,
        Framing::UntilClose => read_to_close(r, buf)?,
    };
    Ok(ResponseMeta {
        status: head.status,
        body_bytes,
        close: head.close || framing == Framing::UntilClose,
        has_backend: head.has_backend,
    })
}

fn read_head<R: Read>(
    r: &mut R,
    buf: &mut Buf,
    backend: &mut Vec<u8>,
) -> Result<Head, ClientError> {
    // Bounded: each pass reads at least one byte or returns, and the buffer is capped.
    loop {
        if let Some((n, head)) = parse_head(buf.available(), backend)? {
            buf.consume(n);
            return Ok(head);
        }
        if buf.fill(r)? == 0 {
            return Err(if buf.available().is_empty() {
                ClientError::Closed
            } else {
                ClientError::Bad("connection closed inside the response head")
            });
        }
    }
}

pub(super) fn parse_head(
    bytes: &[u8],
    backend: &mut Vec<u8>,
) -> Result<Option<(usize, Head)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ClientError::Bad("malformed response head")),
    };
    let status = resp.code.ok_or(ClientError::Bad("no status code"))?;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut saw_close = false;
    let mut saw_keepalive = false;
    let mut has_backend = false;
    for h in resp.headers.iter() {
        let value = trim(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(value).ok_or(ClientError::Bad("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ClientError::Bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only the last coding decides the framing (RFC 9112 6.3, rule 4).
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
            chunked = trim(last).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                saw_close |= token.eq_ignore_ascii_case(b"close");
                saw_keepalive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("x-backend-server") {
            has_backend = true;
            backend.clear();
            backend.extend_from_slice(value);
        }
    }
    // HTTP/1.0 closes unless it asked to stay open; HTTP/1.1 stays open unless told to close.
    let close = saw_close || (resp.version == Some(0) && !saw_keepalive);
    let framing = match (transfer_encoding, chunked, length) {
        (true, true, _) => Framing::Chunked,
        (true, false, _) => Framing::UntilClose,
        (false, _, Some(n)) => Framing::Length(n),
        (false, _, None) => Framing::UntilClose,
    };
    let head = Head {
        status,
        framing,
        close,
        has_backend,
    };
    Ok(Some((n, head)))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

pub(super) fn parse_chunk_size(line: &[u8]) -> Result<u64, ClientError> {
    let bad = ClientError::Bad("invalid chunk size");
    // Extensions (";name=value") carry nothing a load tester needs.
    let digits = trim(line.split(|&b| b == b';').next().unwrap_or(line));
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char)
            .to_digit(16)
            .ok_or(ClientError::Bad("invalid chunk size"))?;
        Ok(acc * 16 + u64::from(digit))
    })
}

fn skip_exact<R: Read>(r: &mut R, buf: &mut Buf, mut n: u64) -> Result<(), ClientError> {
    // Bounded: each pass consumes at least one byte or returns.
    loop {
        let take = (buf.available().len() as u64).min(n);
        buf.consume(take as usize);
        n -= take;
        if n == 0 {
            return Ok(());
        }
        if buf.fill(r)? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Hands the next line (without CRLF) to `f` and consumes it.
fn read_line<R: Read, T>(
    r: &mut R,
    buf: &mut Buf,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T, ClientError> {
    let mut scanned = 0;
    // Bounded: each pass reads at least one byte or returns, and the buffer is capped.
    loop {
        let avail = buf.available();
        if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + i;
            let line = &avail[..end];
            let value = f(line.strip_suffix(b"\r").unwrap_or(line));
            buf.consume(end + 1);
            return Ok(value);
        }
        scanned = avail.len();
        if buf.fill(r)? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

fn read_chunked<R: Read>(r: &mut R, buf: &mut Buf) -> Result<u64, ClientError> {
    let mut total = 0u64;
    // Bounded by the request deadline that `fill` enforces: every chunk needs bytes.
    loop {
        let size = read_line(r, buf, parse_chunk_size)??;
        if size == 0 {
            break;
        }
        skip_exact(r, buf, size)?;
        total = total.saturating_add(size);
        if !read_line(r, buf, <[u8]>::is_empty)? {
            return Err(ClientError::Bad("chunk data not followed by CRLF"));
        }
    }
    for _ in 0..MAX_TRAILERS {
        if read_line(r, buf, <[u8]>::is_empty)? {
            return Ok(total);
        }
    }
    Err(ClientError::Bad("too many trailer fields"))
}

fn read_to_close<R: Read>(r: &mut R, buf: &mut Buf) -> Result<u64, ClientError> {
    let mut total = buf.available().len() as u64;
    buf.consume(buf.available().len());
    // Bounded by the request deadline that `fill` enforces.
    loop {
        let n = buf.fill(r)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        buf.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::io::Cursor;

    /// Returns one byte per read, so every partial-parse path is taken.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn parse(raw: &[u8], head_request: bool) -> Result<(ResponseMeta, Vec<u8>), ClientError> {
        let mut whole = Vec::new();
        let meta = read_response(
            &mut Cursor::new(raw),
            &mut Buf::default(),
            head_request,
            &mut whole,
        )?;
        let mut bytewise = Vec::new();
        let meta2 = read_response(
            &mut OneByte(raw),
            &mut Buf::default(),
            head_request,
            &mut bytewise,
        )?;
        assert_eq!(meta, meta2, "framing must not depend on read sizes");
        assert_eq!(whole, bytewise);
        Ok((meta, whole))
    }

    #[test]
    fn framing_table() {
        // (raw response, HEAD request?, status, body bytes, close afterwards?)
        let cases: &[(&[u8], bool, u16, u64, bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, 200, 5, false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", false, 200, 5, true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", false, 200, 15, false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false, 200, 0, false),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil close", false, 200, 11, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 200, 0, false),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, 204, 0, false),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", false, 304, 0, false),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, 2, false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, 2, true),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", false, 200, 2, false),
        ];
        for &(raw, head, status, body, close) in cases {
            let (meta, _) = parse(raw, head).unwrap_or_else(|e| panic!("{e} for {raw:?}"));
            assert_eq!(meta.status, status, "{raw:?}");
            assert_eq!(meta.body_bytes, body, "{raw:?}");
            assert_eq!(meta.close, close, "{raw:?}");
        }
    }

    #[test]
    fn bad_responses() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"NOT HTTP\r\n\r\n",
            b"",
        ];
        for &raw in cases {
            let mut backend = Vec::new();
            let result = read_response(
                &mut Cursor::new(raw),
                &mut Buf::default(),
                false,
                &mut backend,
            );
            assert!(result.is_err(), "accepted {raw:?}");
        }
        let closed = read_response(
            &mut Cursor::new(b""),
            &mut Buf::default(),
            false,
            &mut Vec::new(),
        );
        assert_eq!(closed.map_err(|e| e.kind()), Err(ErrorKind::Reset));
        let bad = read_response(
            &mut Cursor::new(b"NOPE\r\n\r\n"),
            &mut Buf::default(),
            false,
            &mut Vec::new(),
        );
        assert_eq!(bad.map_err(|e| e.kind()), Err(ErrorKind::BadResponse));
    }

    #[test]
    fn backend_header_is_captured() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Backend-Server:  b2 \r\nContent-Length: 0\r\n\r\n";
        let (meta, backend) = parse(raw, false).expect("valid response");
        assert!(meta.has_backend);
        assert_eq!(backend, b"b2");
    }

    #[test]
    fn huge_head_is_rejected() {
        let mut raw = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        raw.extend_from_slice(b"\r\n\r\n");
        let result = read_response(
            &mut Cursor::new(&raw),
            &mut Buf::default(),
            false,
            &mut Vec::new(),
        );
        assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::BadResponse));
    }
}
