//! The request head as it arrived on the wire, for `/echo`.
//!
//! hyper hands a service a `HeaderMap`: names lowercased, values grouped by name. A test of a
//! proxy wants to see what the proxy really sent: `X-Forwarded-For` as spelt, headers in the
//! order sent, repeats where they were. hyper can record the original case
//! (`preserve_header_case`) but keeps it in a private extension, and records no order at all.
//!
//! So each connection's socket is wrapped in a [`Recorder`] that copies every byte read into a
//! [`HeadLog`]. When hyper calls the service for a request, that request's head has been read
//! and is in the log; [`HeadLog::take`] finds it, checks it against what hyper parsed (same
//! method, target, version, and the same header names and values), and drops the log up to its
//! end. hyper stays the parser that decides everything: the log only supplies spelling and
//! order for headers hyper accepted, and if no head in the log matches exactly, `/echo` falls
//! back to hyper's lowercase names in `HeaderMap` order.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use hyper::{HeaderMap, Method, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// hyper's read buffer limit (`http1::Builder::max_buf_size`), about the longest head accepted.
pub(crate) const MAX_BUF: usize = 64 * 1024;

/// What the log keeps at least, however long a body: when hyper calls the service, everything
/// it has read past the start of that request's head is still in its read buffer, which stops
/// growing at `MAX_BUF` but may hold up to about twice that (one read can fill the spare
/// capacity it has reserved). Twice that again, for a margin.
const KEEP: usize = 4 * MAX_BUF;

/// What the log may keep allocated between requests.
const SMALL: usize = 8 * 1024;

/// A TCP stream that records what is read from it.
pub(crate) struct Recorder {
    stream: TcpStream,
    log: SharedLog,
}

pub(crate) type SharedLog = Arc<Mutex<HeadLog>>;

impl Recorder {
    pub(crate) fn new(stream: TcpStream, log: SharedLog) -> Recorder {
        Recorder { stream, log }
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            lock(&this.log).record(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The bytes read on one connection since the last head taken (bounded).
#[derive(Default)]
pub(crate) struct HeadLog {
    bytes: Vec<u8>,
}

/// What `/echo` shows of a head: the raw target and the header lines as sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawHead {
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// What hyper parsed, to find the same head in the log.
pub(crate) struct Parsed<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
}

impl HeadLog {
    fn record(&mut self, new: &[u8]) {
        self.bytes.extend_from_slice(new);
        // A long body passes through here too; keep only what a head could still be in.
        if self.bytes.len() > 2 * KEEP {
            let cut = self.bytes.len() - KEEP;
            self.bytes.drain(..cut);
        }
    }

    /// Finds the head hyper parsed as `parsed` and drops the log up to its end. With `keep`,
    /// returns it (allocating); without, only drops it, so the log stays small.
    pub(crate) fn take(&mut self, parsed: &Parsed<'_>, keep: bool) -> Option<RawHead> {
        let method = parsed.method.as_str().as_bytes();
        let mut start = 0;
        // Bounded by the log's length: each turn moves past one line.
        while start < self.bytes.len() {
            let rest = &self.bytes[start..];
            if rest.starts_with(method) && rest.get(method.len()) == Some(&b' ') {
                if let Some(end) = head_len(rest).filter(|&end| matches(&rest[..end], parsed)) {
                    let head = keep.then(|| raw_head(&rest[..end]));
                    self.bytes.drain(..start + end);
                    // After a long body, do not hold its buffer for the life of the connection.
                    if self.bytes.capacity() > SMALL && self.bytes.len() <= SMALL / 2 {
                        self.bytes.shrink_to(SMALL);
                    }
                    return head;
                }
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(eol) => start += eol + 1,
                None => break,
            }
        }
        None
    }
}

/// The lines of a head: each without its `\n` or `\r\n` (hyper accepts both line ends).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Length of the head at the start of `buf`, through its empty line; None if incomplete.
fn head_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let eol = buf[pos..].iter().position(|&b| b == b'\n')?;
        let line = &buf[pos..pos + eol];
        pos += eol + 1;
        if line.is_empty() || line == b"\r" {
            return Some(pos);
        }
    }
}

/// Splits a request line into method, target and version.
fn request_line(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((method, target, version))
}

/// `name: value` with the value trimmed as hyper (httparse) trims it.
fn header_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let value = &line[colon + 1..];
    let from = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let to = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(from, |i| i + 1);
    Some((&line[..colon], &value[from..to]))
}

/// True if `head` is the head hyper parsed: same request line, and each header line is one
/// of hyper's headers, as many as hyper has.
fn matches(head: &[u8], parsed: &Parsed<'_>) -> bool {
    let mut lines = lines(head).filter(|l| !l.is_empty());
    let Some((method, target, version)) = lines.next().and_then(request_line) else {
        return false;
    };
    let version_ok = match parsed.version {
        Version::HTTP_10 => version == b"HTTP/1.0",
        Version::HTTP_11 => version == b"HTTP/1.1",
        _ => false,
    };
    if method != parsed.method.as_str().as_bytes()
        || !version_ok
        || !same_target(target, parsed.uri)
    {
        return false;
    }
    let mut count = 0;
    for line in lines {
        let Some((name, value)) = header_line(line) else {
            return false;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        if !parsed
            .headers
            .get_all(name)
            .iter()
            .any(|v| v.as_bytes() == value)
        {
            return false;
        }
        count += 1;
    }
    count == parsed.headers.len()
}

fn same_target(raw: &[u8], uri: &Uri) -> bool {
    if raw.first() == Some(&b'/') {
        // Origin form, by far the most common: hyper keeps it byte for byte.
        return uri.path_and_query().map(|pq| pq.as_str().as_bytes()) == Some(raw);
    }
    Uri::try_from(raw).is_ok_and(|u| u == *uri)
}

fn raw_head(head: &[u8]) -> RawHead {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut lines = lines(head).filter(|l| !l.is_empty());
    let target = lines
        .next()
        .and_then(request_line)
        .map_or_else(String::new, |(_, target, _)| text(target));
    let headers = lines
        .filter_map(header_line)
        .map(|(name, value)| (text(name), text(value)))
        .collect();
    RawHead { target, headers }
}

/// A poisoned lock only means a task panicked mid-record; the bytes are still bytes.
pub(crate) fn lock(log: &SharedLog) -> MutexGuard<'_, HeadLog> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    struct Owned {
        method: Method,
        uri: Uri,
        version: Version,
        headers: HeaderMap,
    }

    impl Owned {
        fn new(method: &str, uri: &str, version: Version, headers: &[(&str, &str)]) -> Owned {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            Owned {
                method: method.parse().expect("method"),
                uri: uri.parse().expect("uri"),
                version,
                headers: map,
            }
        }

        fn parsed(&self) -> Parsed<'_> {
            Parsed {
                method: &self.method,
                uri: &self.uri,
                version: self.version,
                headers: &self.headers,
            }
        }
    }

    fn log_of(bytes: &[u8]) -> HeadLog {
        let mut log = HeadLog::default();
        log.record(bytes);
        log
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keeps_case_order_and_repeats() {
        let mut log = log_of(
            b"GET /e?x=%41 HTTP/1.1\r\nHost: h\r\nX-Dup:  one \r\nx-other: mid\r\nX-Dup: two\r\n\r\nGET /next",
        );
        let req = Owned::new(
            "GET",
            "/e?x=%41",
            Version::HTTP_11,
            &[
                ("host", "h"),
                ("x-dup", "one"),
                ("x-dup", "two"),
                ("x-other", "mid"),
            ],
        );
        let head = log.take(&req.parsed(), true).expect("found");
        assert_eq!(head.target, "/e?x=%41");
        let want = [
            ("Host", "h"),
            ("X-Dup", "one"),
            ("x-other", "mid"),
            ("X-Dup", "two"),
        ];
        assert_eq!(head.headers, pairs(&want));
        // The log now starts at the next request.
        assert_eq!(log.bytes, b"GET /next");
    }

    #[test]
    fn skips_a_body_and_leading_empty_lines() {
        // The previous request's body (not a match: different headers) and an empty line.
        let mut log = log_of(b"\nGET /a HTTP/1.1\r\nX: body\r\n\r\n\r\nGET /a HTTP/1.1\nX: 1\n\n");
        let req = Owned::new("GET", "/a", Version::HTTP_11, &[("x", "1")]);
        let head = log.take(&req.parsed(), true).expect("found");
        assert_eq!(head.headers, pairs(&[("X", "1")]));
        assert!(log.bytes.is_empty());
    }

    #[test]
    fn no_match_leaves_the_log_alone() {
        let cases: [(&[u8], Owned); 5] = [
            // A header hyper does not have, or one fewer than it has.
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n",
                Owned::new("GET", "/", Version::HTTP_11, &[("a", "1")]),
            ),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\n\r\n",
                Owned::new("GET", "/", Version::HTTP_11, &[("a", "1"), ("b", "2")]),
            ),
            // Another target, version or method.
            (
                b"GET /x HTTP/1.1\r\n\r\n",
                Owned::new("GET", "/", Version::HTTP_11, &[]),
            ),
            (
                b"GET / HTTP/1.0\r\n\r\n",
                Owned::new("GET", "/", Version::HTTP_11, &[]),
            ),
            // Incomplete.
            (
                b"GET / HTTP/1.1\r\nA: 1\r\n",
                Owned::new("GET", "/", Version::HTTP_11, &[("a", "1")]),
            ),
        ];
        for (bytes, req) in cases {
            let mut log = log_of(bytes);
            assert_eq!(
                log.take(&req.parsed(), true),
                None,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(log.bytes, bytes);
        }
    }

    #[test]
    fn absolute_form_target_is_kept_raw() {
        let mut log = log_of(b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let req = Owned::new(
            "GET",
            "http://example.com/p?q",
            Version::HTTP_11,
            &[("host", "example.com")],
        );
        let head = log.take(&req.parsed(), true).expect("found");
        assert_eq!(head.target, "http://example.com/p?q");
    }

    #[test]
    fn a_long_body_is_not_kept() {
        let mut log = HeadLog::default();
        for _ in 0..100 {
            log.record(&[b'x'; 16 * 1024]);
        }
        assert!(log.bytes.len() <= 2 * KEEP);
        log.record(b"\r\nPUT /a HTTP/1.1\r\n\r\n");
        let req = Owned::new("PUT", "/a", Version::HTTP_11, &[]);
        assert!(
            log.take(&req.parsed(), false).is_none(),
            "keep=false returns nothing"
        );
        assert!(log.bytes.is_empty(), "but drops the head");
        assert!(log.bytes.capacity() <= SMALL, "and the long body's buffer");
    }
}
