//! Reading one message head (request line or status line, then headers) from a stream that may
//! deliver it in any number of pieces, with limits and timeouts.

use std::time::{Duration, Instant};

use super::error::HttpError;
use super::limits::Limits;
use super::stream::{BufStream, Socket};

/// One header line, name as the peer spelled it (forwarded verbatim), value as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A parsed request head, owned so the read buffer can move on to the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target exactly as received: never decoded or normalised.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub minor_version: u8,
    pub headers: Vec<Header>,
}

/// Header lookups shared by requests and responses.
pub trait Headers {
    fn header_list(&self) -> &[Header];

    /// Every value of header `name` (case-insensitive), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.header_list()
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The first value of header `name`.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_list()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Whether the comma-separated list in header(s) `name` contains `token`, as in
    /// `Connection: keep-alive, Upgrade`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

impl Headers for RequestHead {
    fn header_list(&self) -> &[Header] {
        &self.headers
    }
}

impl Headers for ResponseHead {
    fn header_list(&self) -> &[Header] {
        &self.headers
    }
}

/// How long to wait for a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTimeouts {
    /// Until the first byte arrives (the keep-alive idle time between requests).
    pub idle: Option<Duration>,
    /// From the first byte to the end of the head, however the bytes trickle in; this is what
    /// stops a slowloris client from holding a connection with one byte every few seconds.
    pub whole: Option<Duration>,
}

/// Reads a request head. Leading empty lines are skipped (RFC 9112 section 2.2); bytes after the
/// head stay buffered in `stream`.
pub fn read_request_head<S: Socket>(
    stream: &mut BufStream<S>,
    limits: &Limits,
    timeouts: HeadTimeouts,
) -> Result<RequestHead, HttpError> {
    let len = collect_head(stream, limits, Some(limits.max_request_line), timeouts)?;
    let head = parse_request(&stream.buffered()[..len], limits.max_headers)?;
    stream.consume(len);
    Ok(head)
}

/// Whether `buffered` is enough for [`read_request_head`] to finish without reading more: it
/// holds a whole head, or one the reader will refuse anyway (too long). A model that must not
/// block on a slow client (stage 4's pool) checks this before handing a connection to a worker.
pub fn request_head_ready(buffered: &[u8], limits: &Limits) -> bool {
    let leading = leading_empty_lines(buffered);
    if leading > MAX_LEADING_EMPTY_BYTES {
        return true; // ready to be refused
    }
    let buf = &buffered[leading..];
    let first_line = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    !buf.is_empty()
        && (find_head_end(buf, 0).is_some()
            || first_line > limits.max_request_line
            || buf.len() >= limits.max_head)
}

/// Reads a response head; `timeout` bounds the wait for the first byte and for the whole head.
pub fn read_response_head<S: Socket>(
    stream: &mut BufStream<S>,
    limits: &Limits,
    timeout: Option<Duration>,
) -> Result<ResponseHead, HttpError> {
    let timeouts = HeadTimeouts {
        idle: timeout,
        whole: timeout,
    };
    let len = collect_head(stream, limits, None, timeouts)?;
    let head = parse_response(&stream.buffered()[..len], limits.max_headers)?;
    stream.consume(len);
    Ok(head)
}

/// Parses a complete request head (ending in an empty line).
pub fn parse_request(bytes: &[u8], max_headers: usize) -> Result<RequestHead, HttpError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut slots);
    if req.parse(bytes)?.is_partial() {
        return Err(HttpError::BadSyntax("incomplete head"));
    }
    Ok(RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        minor_version: req.version.unwrap_or(1),
        headers: own_headers(req.headers),
    })
}

/// Parses a complete response head (ending in an empty line).
pub fn parse_response(bytes: &[u8], max_headers: usize) -> Result<ResponseHead, HttpError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut slots);
    if res.parse(bytes)?.is_partial() {
        return Err(HttpError::BadSyntax("incomplete head"));
    }
    Ok(ResponseHead {
        status: res.code.unwrap_or_default(),
        reason: res.reason.unwrap_or_default().to_owned(),
        minor_version: res.version.unwrap_or(1),
        headers: own_headers(res.headers),
    })
}

fn own_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// RFC 9112 section 2.2 asks servers to ignore "at least one" empty line before a request
/// line (some old clients send a CRLF after a POST body). A few are skipped; more are refused,
/// or a client could hold a connection forever by sending a CRLF now and then.
const MAX_LEADING_EMPTY_BYTES: usize = 8;

fn leading_empty_lines(buffered: &[u8]) -> usize {
    buffered
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Reads until the buffer holds a whole head and returns its length.
fn collect_head<S: Socket>(
    stream: &mut BufStream<S>,
    limits: &Limits,
    max_first_line: Option<usize>,
    timeouts: HeadTimeouts,
) -> Result<usize, HttpError> {
    let mut scanned = 0;
    // Set when the first byte of the head arrives; `None` inside means no limit.
    let mut deadline: Option<Option<Instant>> = None;
    let mut skipped = 0;
    loop {
        let leading = leading_empty_lines(stream.buffered());
        if leading > 0 {
            skipped += leading;
            if skipped > MAX_LEADING_EMPTY_BYTES {
                return Err(HttpError::BadSyntax(
                    "too many empty lines before the request",
                ));
            }
            stream.consume(leading);
            scanned = 0;
            // The head has started: from now on the whole-head deadline runs.
            deadline.get_or_insert_with(|| deadline_after(timeouts.whole));
        }
        let buf = stream.buffered();
        if let Some(max) = max_first_line {
            let first_line = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            if first_line > max {
                return Err(HttpError::UriTooLong);
            }
        }
        if let Some(end) = find_head_end(buf, scanned) {
            return Ok(end);
        }
        if buf.len() >= limits.max_head {
            return Err(HttpError::HeadTooLarge);
        }
        scanned = buf.len().saturating_sub(3);
        let timeout = if buf.is_empty() && deadline.is_none() {
            timeouts.idle
        } else {
            match *deadline.get_or_insert_with(|| deadline_after(timeouts.whole)) {
                None => None,
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(HttpError::Timeout),
                },
            }
        };
        stream.set_read_timeout(timeout).map_err(HttpError::Io)?;
        let was_empty = buf.is_empty();
        match stream.fill_more(limits.max_head) {
            Ok(0) if was_empty => return Err(HttpError::Closed),
            Ok(0) => return Err(HttpError::Truncated),
            Ok(_) => {}
            Err(err) => {
                return Err(match HttpError::from_read(err) {
                    HttpError::Timeout if was_empty && deadline.is_none() => HttpError::IdleTimeout,
                    other => other,
                })
            }
        }
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// Finds the end of a head (an empty line, CRLF or bare LF) at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        match &buf[nl + 1..] {
            [b'\n', ..] => return Some(nl + 2),
            [b'\r', b'\n', ..] => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::tests::Trickle;

    #[test]
    fn head_readiness_matches_what_the_reader_needs() {
        let limits = Limits::default();
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        let cases: &[(&[u8], bool)] = &[
            (b"", false),
            (b"\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: t\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", true),
            (b"\r\nGET / HTTP/1.1\nHost: t\n\n", true),
            (long_line.as_bytes(), true),
        ];
        for (buf, ready) in cases {
            assert_eq!(
                request_head_ready(buf, &limits),
                *ready,
                "{:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(40)])
            );
        }
        assert!(request_head_ready(&vec![b'x'; limits.max_head], &limits));
    }

    fn read_req(input: &[u8], step: usize) -> (Result<RequestHead, HttpError>, Vec<u8>) {
        let mut stream = BufStream::new(Trickle::new(input, step));
        let limits = Limits::default();
        let timeouts = HeadTimeouts {
            idle: None,
            whole: None,
        };
        let head = read_request_head(&mut stream, &limits, timeouts);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut rest).unwrap();
        (head, rest)
    }

    /// Every request in the table parses the same whether it arrives whole, in 7-byte pieces
    /// or one byte at a time, and the bytes after the head are kept.
    #[test]
    fn request_heads_parse_in_any_fragmentation() {
        // (input, method, target, minor version, header count, bytes left after the head)
        type Case = (
            &'static [u8],
            &'static str,
            &'static str,
            u8,
            usize,
            &'static [u8],
        );
        let table: &[Case] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 1, 1, b""),
            (
                b"POST /p?q=%20 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET",
                "POST",
                "/p?q=%20",
                1,
                2,
                b"abcGET",
            ),
            (b"GET /x HTTP/1.0\n\n", "GET", "/x", 0, 0, b""),
            (
                b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET",
                "/",
                1,
                1,
                b"",
            ),
            (
                b"GET /a%2Fb/../c HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n",
                "GET",
                "/a%2Fb/../c",
                1,
                1,
                b"GET / HTTP/1.1\r\n",
            ),
        ];
        for &(input, method, target, version, headers, rest) in table {
            for step in [1, 7, input.len()] {
                let (head, left) = read_req(input, step);
                let head = head.unwrap_or_else(|e| panic!("{input:?} step {step}: {e}"));
                assert_eq!(head.method, method);
                assert_eq!(head.target, target);
                assert_eq!(head.minor_version, version);
                assert_eq!(head.headers.len(), headers);
                assert_eq!(left, rest, "{input:?} step {step}");
            }
        }
    }

    #[test]
    fn bad_heads_get_the_right_error() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(40_000)
        );
        let many_headers = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-A: 1\r\n".repeat(101)
        );
        let table: Vec<(Vec<u8>, Option<u16>)> = vec![
            (long_target.into_bytes(), Some(414)),
            (big_header.into_bytes(), Some(431)),
            (many_headers.into_bytes(), Some(431)),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), Some(400)),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec(),
                Some(400),
            ),
            (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n".to_vec(), Some(400)),
            (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n".to_vec(), Some(400)),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), Some(400)),
            (b"GET\x00 / HTTP/1.1\r\n\r\n".to_vec(), Some(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(), None),
            (b"".to_vec(), None),
            (
                b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                Some(400),
            ),
        ];
        for (input, status) in table {
            for step in [1, input.len().max(1)] {
                let (head, _) = read_req(&input, step);
                let err = head.expect_err(&String::from_utf8_lossy(&input[..input.len().min(60)]));
                assert_eq!(err.client_status(), status, "{err} for step {step}");
            }
        }
    }

    #[test]
    fn eof_before_any_byte_is_a_clean_close() {
        let (head, _) = read_req(b"", 1);
        assert!(matches!(head, Err(HttpError::Closed)));
        let (head, _) = read_req(b"GET / HT", 1);
        assert!(matches!(head, Err(HttpError::Truncated)));
    }

    #[test]
    fn response_heads_parse() {
        let input = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-B: 1\r\n\r\nrest";
        for step in [1, 5, input.len()] {
            let mut stream = BufStream::new(Trickle::new(input, step));
            let head = read_response_head(&mut stream, &Limits::default(), None).unwrap();
            assert_eq!((head.status, head.reason.as_str()), (404, "Not Found"));
            assert_eq!(head.header("x-b"), Some(&b"1"[..]));
            assert!(stream.buffered().len() <= 4);
        }
    }

    #[test]
    fn token_lists_are_matched_case_insensitively() {
        let head = parse_request(
            b"GET / HTTP/1.1\r\nConnection: Keep-Alive, X-Foo\r\nConnection: close\r\n\r\n",
            10,
        )
        .unwrap();
        assert!(head.has_token("connection", "x-foo"));
        assert!(head.has_token("Connection", "CLOSE"));
        assert!(!head.has_token("connection", "upgrade"));
    }
}
