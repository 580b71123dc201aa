//! Reading one message head (request line or status line, then headers) from a stream that may
//! deliver it in any number of pieces, with limits and timeouts.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::date;
use super::error::HttpError;
use super::limits::Limits;
use super::stream::{BufStream, Socket};
use super::target::{check_target, valid_host, AbsoluteTarget};

mod spare;

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
    /// The request target exactly as received (never decoded or normalised), except an
    /// absolute-form target, which is reduced to origin-form (`http://a.test/x?q` becomes
    /// `/x?q`) while its authority replaces `Host` (RFC 9112 section 3.2.2): the upstream sees
    /// one form only, and routing by `Host` sees the authority the client named.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    /// The name of the route that took the request (stage 9's routing phase sets it; `None`
    /// before, and in earlier stages). It travels with the head because more than one phase
    /// needs it: the cache keys by it (two routes that strip their prefix can send `/x` to
    /// different services), and the logging phase counts and logs by it.
    pub route: Option<Arc<str>>,
    /// The target as the client sent it, once `target` was rewritten (an absolute-form
    /// target reduced to origin-form, a route's `strip_prefix`): the access log shows the
    /// request the client made, as nginx's `$request` does, not the one the backend got.
    /// `None` while `target` is the client's.
    pub original_target: Option<String>,
}

impl RequestHead {
    /// Replaces the target, keeping the client's for the access log.
    pub fn rewrite_target(&mut self, target: String) {
        let original = std::mem::replace(&mut self.target, target);
        self.original_target.get_or_insert(original);
    }

    /// The target the client sent, whatever a phase made of it since.
    pub fn client_target(&self) -> &str {
        self.original_target.as_deref().unwrap_or(&self.target)
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub minor_version: u8,
    pub headers: Vec<Header>,
}

// A dropped head leaves its memory to the next one this thread parses (`spare`): a worker
// drops a head for every one it parses.
impl Drop for RequestHead {
    fn drop(&mut self) {
        spare::keep_fields(std::mem::take(&mut self.headers));
        // The target first: strings come back last in, first out, and the next parse takes
        // the method's first, so each gets back a string of its own size.
        spare::keep_str(std::mem::take(&mut self.target));
        spare::keep_str(std::mem::take(&mut self.method));
    }
}

impl Drop for ResponseHead {
    fn drop(&mut self) {
        spare::keep_fields(std::mem::take(&mut self.headers));
        spare::keep_str(std::mem::take(&mut self.reason));
    }
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
/// holds a whole head, or one the reader will refuse anyway (too long, a bare CR, a malformed
/// or HTTP/0.9 request line). A model that must not block on a slow client (stage 4's pool)
/// checks this before handing a connection to a worker.
pub fn request_head_ready(buffered: &[u8], limits: &Limits) -> bool {
    let leading = leading_empty_lines(buffered);
    if leading > MAX_LEADING_EMPTY_BYTES {
        return true; // ready to be refused
    }
    let buf = &buffered[leading..];
    let first_line = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    !buf.is_empty()
        && (find_head_end(buf, 0).is_some()
            || first_line > limits.max_request_line
            || buf.len() >= limits.max_head
            || early_refusal(buf, 0, true).is_some())
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
    let mut head = parse_response(&stream.buffered()[..len], limits.max_headers)?;
    stream.consume(len);
    // RFC 9110 section 6.6.1: a recipient with a clock records when a response without `Date`
    // was received and appends a `Date` saying so before it forwards or caches it. Done here,
    // at receipt, so the head a cache stores carries the time it arrived (its age is counted
    // from that), and every forwarding path gets it without a step of its own.
    if head.header("date").is_none() {
        head.headers.push(Header {
            name: "Date".to_owned(),
            value: date::now_imf_fixdate().to_vec(),
        });
    }
    Ok(head)
}

/// Parses a complete request head (ending in an empty line).
pub fn parse_request(bytes: &[u8], max_headers: usize) -> Result<RequestHead, HttpError> {
    let bytes = as_highest_minor_version(bytes);
    let (mut head, absolute) = with_slots(max_headers, |slots| {
        let mut req = httparse::Request::new(&mut []);
        if req.parse_with_uninit_headers(&bytes, slots)?.is_partial() {
            return Err(HttpError::BadSyntax("incomplete head"));
        }
        let method = req.method.unwrap_or_default();
        if method.len() > MAX_METHOD {
            return Err(METHOD_TOO_LONG);
        }
        let target = req.path.unwrap_or_default();
        let head = RequestHead {
            method: spare::own_str(method),
            target: spare::own_str(target),
            minor_version: req.version.unwrap_or(1),
            headers: spare::own_fields(req.headers),
            route: None,
            original_target: None,
        };
        Ok((head, check_target(method, target)?))
    })?;
    if let Some(absolute) = absolute {
        use_authority(&mut head, absolute)?;
    }
    Ok(head)
}

/// Reduces an absolute-form request to origin-form with the URI's authority as its only
/// `Host`. The Host lines it replaces must still be valid, and one at most: RFC 9112 section
/// 3.2 refuses an invalid or repeated Host in any request, and a proxy that silently dropped
/// them would hide the attempt from whatever reads the request after it.
fn use_authority(head: &mut RequestHead, absolute: AbsoluteTarget) -> Result<(), HttpError> {
    {
        let mut hosts = head.values("host");
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(HttpError::BadSyntax("more than one Host header"));
        }
        if first.is_some_and(|h| !valid_host(h)) {
            return Err(HttpError::BadSyntax("invalid Host header"));
        }
    }
    let host = Header {
        name: "Host".to_owned(),
        value: absolute.authority.into_bytes(),
    };
    match head
        .headers
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("host"))
    {
        Some(at) => head.headers[at] = host,
        // RFC 9110 section 7.2: Host goes first, where a server looks for it.
        None => head.headers.insert(0, host),
    }
    head.rewrite_target(absolute.origin_form);
    Ok(())
}

/// Parses a complete response head (ending in an empty line).
pub fn parse_response(bytes: &[u8], max_headers: usize) -> Result<ResponseHead, HttpError> {
    with_slots(max_headers, |slots| {
        let mut res = httparse::Response::new(&mut []);
        let parser = httparse::ParserConfig::default();
        if parser
            .parse_response_with_uninit_headers(&mut res, bytes, slots)?
            .is_partial()
        {
            return Err(HttpError::BadSyntax("incomplete head"));
        }
        Ok(ResponseHead {
            status: res.code.unwrap_or_default(),
            reason: spare::own_str(res.reason.unwrap_or_default()),
            minor_version: res.version.unwrap_or(1),
            headers: spare::own_fields(res.headers),
        })
    })
}

/// Header slots up to this many live on the stack (the default limit is 100): a parse then
/// allocates nothing but the head it returns, where a `Vec` of slots was an allocation and
/// 3 KiB of zeroes for each request and each response.
const STACK_SLOTS: usize = 128;

/// Runs `parse` with `max` uninitialised header slots for httparse, which refuses a head
/// with more headers than slots (431).
fn with_slots<'b, T>(
    max: usize,
    parse: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> T,
) -> T {
    if max <= STACK_SLOTS {
        let mut slots = [const { MaybeUninit::uninit() }; STACK_SLOTS];
        parse(&mut slots[..max])
    } else {
        let mut slots = Vec::with_capacity(max);
        slots.resize_with(max, MaybeUninit::uninit);
        parse(&mut slots)
    }
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

/// Longest method accepted. The longest registered methods (`UPDATEREDIRECTREF`,
/// `BASELINE-CONTROL`) have 17 characters; a method of thousands is a bad request line, and
/// must not be answered 414 (the target is not what is too long), so it is refused on its own
/// as soon as it is longer than this, before the line-length limit is reached.
const MAX_METHOD: usize = 64;

const METHOD_TOO_LONG: HttpError = HttpError::BadSyntax("method too long");

/// Whether the request line that `buf` starts with has a method longer than [`MAX_METHOD`]:
/// no space, CR or LF among its first `MAX_METHOD + 1` bytes. Decided from a prefix, so the
/// reader refuses it before the rest of the line arrives.
fn method_too_long(buf: &[u8]) -> bool {
    buf.len() > MAX_METHOD
        && !buf[..=MAX_METHOD]
            .iter()
            .any(|&b| b == b' ' || b == b'\r' || b == b'\n')
}

/// RFC 9112 section 2.3: a recipient reads a message of a higher minor version of a major
/// version it implements as the highest minor version it supports. `HTTP/1.2` to `HTTP/1.9`
/// in a request line is therefore read as `HTTP/1.1`, not refused (httparse knows only 1.0
/// and 1.1, so the version is rewritten in a copy before it parses). Not 505: that status is
/// for a major version the server does not support, and the client speaks HTTP/1 features we
/// implement. The copy is made only for such a line; any other request is borrowed as it is.
fn as_highest_minor_version(bytes: &[u8]) -> Cow<'_, [u8]> {
    let start = leading_empty_lines(bytes);
    let Some(nl) = memchr::memchr(b'\n', &bytes[start..]) else {
        return Cow::Borrowed(bytes);
    };
    let line_end = start + nl;
    let line = &bytes[start..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line {
        [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor]
            if (b'2'..=b'9').contains(minor) =>
        {
            let mut owned = bytes.to_vec();
            owned[start + line.len() - 1] = b'1';
            Cow::Owned(owned)
        }
        _ => Cow::Borrowed(bytes),
    }
}

/// Reads until the buffer holds a whole head and returns its length.
fn collect_head<S: Socket>(
    stream: &mut BufStream<S>,
    limits: &Limits,
    max_first_line: Option<usize>,
    timeouts: HeadTimeouts,
) -> Result<usize, HttpError> {
    crate::exercise::stub!("collect_head");
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
        if max_first_line.is_some() && method_too_long(buf) {
            return Err(METHOD_TOO_LONG);
        }
        if let Some(max) = max_first_line {
            let first_line = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
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
        // Only now, with no end in the buffer: every buffered byte belongs to the head (after
        // its end, a bare CR is body data).
        if let Some(err) = early_refusal(buf, scanned, max_first_line.is_some()) {
            return Err(err);
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

/// Refuses a head that can never become valid, judging from the part that has arrived, so the
/// client hears 400 now and not 408 when the head timeout runs out. Two shapes never end on
/// their own: lines ended by a bare CR (the empty line the reader waits for never comes), and
/// an HTTP/0.9 request line (`GET /x` with no version; such a client sends no headers and waits
/// for a response). The request-line check refuses any other malformed request line early too.
/// All are refused by the full parse anyway, so nothing valid is refused early.
///
/// `buf` holds no head end and no leading empty lines; the bare-CR scan starts at `from`, so a
/// reader calling this after every read rescans only the new bytes. With `request`, a complete
/// first line is also parsed on its own, once: it is at most `max_request_line` long.
fn early_refusal(buf: &[u8], from: usize, request: bool) -> Option<HttpError> {
    // A CR is decided once the byte after it has arrived: it must be LF.
    let bare_cr = buf
        .get(from..)?
        .windows(2)
        .any(|pair| pair[0] == b'\r' && pair[1] != b'\n');
    if bare_cr {
        return Some(HttpError::BadSyntax("bare CR in the head"));
    }
    if !request {
        return None;
    }
    if method_too_long(buf) {
        return Some(METHOD_TOO_LONG);
    }
    let line_end = memchr::memchr(b'\n', buf)?;
    if line_end + 1 < from {
        return None; // judged on an earlier call, when it first arrived whole
    }
    // With no header slots and nothing after the line, a valid request line is `Partial`
    // (the headers are still to come); an invalid one is an error whatever follows.
    let line = as_highest_minor_version(&buf[..=line_end]);
    let mut req = httparse::Request::new(&mut []);
    match req.parse(&line) {
        Err(err) => Some(HttpError::from(err)),
        Ok(_) => None,
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// Finds the end of a head (an empty line, CRLF or bare LF) at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    // memchr's vector search over all the line ends, set up once for the head.
    memchr::memchr_iter(b'\n', &buf[from..])
        .map(|offset| from + offset)
        .find_map(|nl| match &buf[nl + 1..] {
            [b'\n', ..] => Some(nl + 2),
            [b'\r', b'\n', ..] => Some(nl + 3),
            _ => None,
        })
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

    #[test]
    fn a_rewritten_target_keeps_the_one_the_client_sent() {
        let mut head = read_req(b"GET /api/v1/x?q=1 HTTP/1.1\r\nHost: t\r\n\r\n", 64)
            .0
            .unwrap();
        assert_eq!(head.client_target(), "/api/v1/x?q=1");
        head.rewrite_target("/v1/x?q=1".to_owned());
        head.rewrite_target("/x?q=1".to_owned());
        assert_eq!(head.target, "/x?q=1");
        assert_eq!(head.client_target(), "/api/v1/x?q=1");
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
    fn the_header_count_limit_holds_on_the_stack_and_past_it() {
        fn with_headers(first_line: &str, n: usize) -> Vec<u8> {
            let fields: String = (0..n).map(|i| format!("X-F{i}: {i}\r\n")).collect();
            format!("{first_line}\r\n{fields}\r\n").into_bytes()
        }
        // 100 is the default and fits the stack slots; 200 does not.
        for max in [100, STACK_SLOTS, 200] {
            let request = with_headers("GET / HTTP/1.1", max);
            let head = parse_request(&request, max).unwrap();
            assert_eq!(head.headers.len(), max);
            assert_eq!(head.header("x-f7"), Some(&b"7"[..]));
            let over = with_headers("GET / HTTP/1.1", max + 1);
            let refused = parse_request(&over, max);
            assert!(matches!(refused, Err(HttpError::HeadTooLarge)), "{max}");
            let response = with_headers("HTTP/1.1 200 OK", max);
            assert_eq!(parse_response(&response, max).unwrap().headers.len(), max);
            let over = with_headers("HTTP/1.1 200 OK", max + 1);
            let refused = parse_response(&over, max);
            assert!(matches!(refused, Err(HttpError::HeadTooLarge)), "{max}");
        }
    }

    /// RFC 9112 section 2.3: a higher minor version is read as the highest we implement, in
    /// the reader and the parser alike; another major version stays a bad request.
    #[test]
    fn a_higher_minor_version_is_read_as_http11() {
        for input in [
            &b"GET /v HTTP/1.2\r\nHost: a\r\n\r\n"[..],
            b"\r\nGET /v HTTP/1.9\nHost: a\n\n",
        ] {
            for step in [1, 5, input.len()] {
                let (head, _) = read_req(input, step);
                let head = head.unwrap_or_else(|e| panic!("{input:?} step {step}: {e}"));
                assert_eq!((head.target.as_str(), head.minor_version), ("/v", 1));
            }
            assert!(request_head_ready(input, &Limits::default()));
        }
        let head = parse_request(b"GET /v HTTP/1.2\r\nHost: a\r\n\r\n", 10).unwrap();
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.header("host"), Some(&b"a"[..]));
        // Only the request line's version: a header that ends the same way is left alone.
        let head = parse_request(b"GET / HTTP/1.1\r\nX: HTTP/1.2\r\n\r\n", 10).unwrap();
        assert_eq!(head.header("x"), Some(&b"HTTP/1.2"[..]));
        for bad in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.x\r\n\r\n",
            b"GET / HTTP/1.12\r\n\r\n",
            b"GET HTTP/1.2\r\n\r\n",
        ] {
            let (head, _) = read_req(bad, 1);
            assert_eq!(head.expect_err("refused").client_status(), Some(400));
        }
    }

    /// A method of thousands of token characters is a bad request line (400), refused from
    /// its first bytes, not a target too long (414).
    #[test]
    fn a_very_long_method_is_a_bad_request_not_a_long_uri() {
        let limits = Limits::default();
        let huge = format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "A".repeat(10_000));
        let over = format!(
            "{} / HTTP/1.1\r\nHost: a\r\n\r\n",
            "A".repeat(MAX_METHOD + 1)
        );
        for input in [huge.as_bytes(), over.as_bytes()] {
            for step in [1, 7, input.len()] {
                let (head, _) = read_req(input, step);
                let err = head.expect_err("a long method is refused");
                assert_eq!(err.client_status(), Some(400), "{err}");
            }
            assert!(request_head_ready(&input[..MAX_METHOD + 1], &limits));
            assert!(parse_request(input, 10).is_err());
        }
        let longest = format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "A".repeat(MAX_METHOD));
        let (head, _) = read_req(longest.as_bytes(), 3);
        assert_eq!(head.unwrap().method.len(), MAX_METHOD);
        assert!(!request_head_ready(
            &longest.as_bytes()[..MAX_METHOD],
            &limits
        ));
    }

    /// Heads that can never end are refused from what has arrived, without waiting for more
    /// (the trickle ends at the input, so waiting would give `Truncated`, not 400), and the
    /// pool's readiness check agrees that they are decided.
    #[test]
    fn heads_that_never_end_are_refused_early() {
        let limits = Limits::default();
        let table: &[&[u8]] = &[
            b"GET / HTTP/1.1\rHost: a\r\r",
            b"GET / HTTP/1.1\r\nHost: a\rX",
            b"GET /\rHTTP/1.1",
            b"GET / HTTP/1.1\r\nHost: a\r\n\rX",
            b"GET /x\r\n",
            b"GET /x\n",
            b"\r\nGET /x\r\n",
            b"GET\r\n",
            b"GET / HTTP/1.1 extra\r\n",
        ];
        for input in table {
            for step in [1, 3, input.len()] {
                let (head, _) = read_req(input, step);
                let err = head.expect_err(&String::from_utf8_lossy(input));
                assert_eq!(
                    err.client_status(),
                    Some(400),
                    "{err}: {input:?} step {step}"
                );
            }
            assert!(request_head_ready(input, &limits), "{input:?} is decided");
        }
        // Undecided yet: the LF may still come.
        for input in [
            &b"GET / HTTP/1.1\r"[..],
            b"GET / HTTP/1.1\r\nHost: a\r",
            b"GET /x",
        ] {
            assert!(
                !request_head_ready(input, &limits),
                "{input:?} is not decided"
            );
            let (head, _) = read_req(input, 1);
            assert!(matches!(head, Err(HttpError::Truncated)), "{input:?}");
        }
        // A bare CR after the head is body data, not part of the head.
        let (head, rest) = read_req(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n\rX", 1);
        assert_eq!(head.unwrap().target, "/");
        assert_eq!(rest, b"\rX");
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_the_authority_as_host() {
        // (request, target forwarded, Host values after parsing)
        let table: &[(&[u8], &str, &[&str])] = &[
            (
                b"GET http://example.test/x?q HTTP/1.1\r\nHost: other.test\r\nA: 1\r\n\r\n",
                "/x?q",
                &["example.test"],
            ),
            (
                b"GET http://example.test HTTP/1.1\r\nA: 1\r\n\r\n",
                "/",
                &["example.test"],
            ),
            (
                b"GET HTTPS://[::1]:8443?a HTTP/1.0\r\n\r\n",
                "/?a",
                &["[::1]:8443"],
            ),
            (
                b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n",
                "/plain",
                &["a.test"],
            ),
        ];
        for &(input, target, hosts) in table {
            let head = parse_request(input, 10).unwrap();
            assert_eq!(head.target, target);
            let got: Vec<&[u8]> = head.values("host").collect();
            let want: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
        let head = parse_request(b"GET http://a.test/ HTTP/1.1\r\nA: 1\r\n\r\n", 10).unwrap();
        assert_eq!(head.headers[0].name, "Host", "Host goes first");
        let bad: &[&[u8]] = &[
            b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET http://u@a.test/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for input in bad {
            let err = parse_request(input, 10).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(err.client_status(), Some(400), "{err}");
        }
        // CONNECT is left for the relay to refuse with 501.
        let head = parse_request(
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            10,
        );
        assert_eq!(head.unwrap().target, "a.test:443");
    }

    #[test]
    fn a_response_without_date_gets_one_and_a_date_is_kept() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut stream = BufStream::new(Trickle::new(input, 4));
        let head = read_response_head(&mut stream, &Limits::default(), None).unwrap();
        let date = head.header("date").expect("a Date was added");
        let at = crate::http::date::parse_http_date(date).expect("an IMF-fixdate");
        let age = std::time::SystemTime::now().duration_since(at).unwrap();
        assert!(age < Duration::from_secs(5), "{age:?}");

        let input = b"HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        let mut stream = BufStream::new(Trickle::new(input, 4));
        let head = read_response_head(&mut stream, &Limits::default(), None).unwrap();
        let dates: Vec<&[u8]> = head.values("date").collect();
        assert_eq!(dates, [&b"Sun, 06 Nov 1994 08:49:37 GMT"[..]]);
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
