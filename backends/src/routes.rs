//! The endpoints.
//!
//! Most answers go through tiny_http's `Response`. These are written byte by byte with
//! `Request::into_writer`, because tiny_http would change what they are meant to show:
//!
//! - `/chunked`: tiny_http's chunk encoder gathers writes into 8 KiB chunks, so "3 chunks of
//!   10 bytes" would leave as one chunk of 30;
//! - `/drop`: tiny_http always sends the body it announced, so a short one must be written by
//!   hand, and the connection then closed under tiny_http (see `conn.rs`);
//! - `/status/1xx`: sent by tiny_http as a final response, it would leave the client waiting
//!   for a real one; here a 1xx is an interim response followed by a final 200;
//! - `/status/204`, `/status/304` and the 304 of `/cacheable`: tiny_http adds
//!   `Content-Length: 0`, which a 204 must not carry and which would misstate a 304.

use std::io::{self, Cursor, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tiny_http::{HTTPVersion, Header, Method, Request, Response, StatusCode};

use crate::{conn, Shared};

/// Largest `/bytes/N` and largest `/chunked` total.
const MAX_BYTES: u64 = 1 << 30;
/// Largest `/slow?ms=N`.
const MAX_SLOW_MS: u64 = 60_000;
/// Largest body `/echo` will hold in memory (it answers 413 above).
const MAX_ECHO_BODY: u64 = 16 << 20;
const MAX_CHUNKS: u64 = 1_000_000;
const MAX_CHUNK_SIZE: u64 = 16 << 20;
const MAX_CHUNK_DELAY_MS: u64 = 10_000;
const MAX_AGE_LIMIT: u64 = 365 * 24 * 3600;
/// What `/drop` announces, and what it sends before closing.
const DROP_ANNOUNCED: u64 = 1000;
const DROP_SENT: u64 = 100;
/// What tiny_http puts in its own responses; the hand-written ones say the same.
const SERVER: &str = "tiny-http (Rust)";

enum Route<'a> {
    Hello,
    Health,
    Echo,
    Status(&'a str),
    Bytes(&'a str),
    Chunked,
    Slow,
    Cacheable,
    Drop,
    NotFound,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Route<'a> {
        match path {
            "/" => Route::Hello,
            "/health" => Route::Health,
            "/echo" => Route::Echo,
            "/chunked" => Route::Chunked,
            "/slow" => Route::Slow,
            "/cacheable" => Route::Cacheable,
            "/drop" => Route::Drop,
            // `/echo/anything`, so a test of path routing can see the path that arrived.
            p if p.starts_with("/echo/") => Route::Echo,
            p => {
                if let Some(n) = p.strip_prefix("/status/") {
                    Route::Status(n)
                } else if let Some(n) = p.strip_prefix("/bytes/") {
                    Route::Bytes(n)
                } else {
                    Route::NotFound
                }
            }
        }
    }
}

/// Answers one request. Errors writing the answer mean the client left; nothing to do then.
pub(crate) fn handle(shared: &Shared, mut request: Request) {
    let target = request.url().to_owned();
    let (path, query) = split_target(&target);
    let route = Route::parse(origin_path(path));

    // `/echo` keeps the body; every other endpoint reads it to the end and throws it away, so
    // the next request on this connection starts where it should (tiny_http does not skip an
    // unread chunked body, and skips an unread sized one by allocating all of it at once).
    let body = match route {
        Route::Echo => read_body(&mut request),
        _ => discard_body(&mut request).map(|()| Vec::new()),
    };
    let body = match body {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let msg = format!("request body larger than {MAX_ECHO_BODY} bytes\n");
            let _ = send(shared, request, text(413, msg));
            return;
        }
        Err(BodyError::Io) => {
            let _ = send(
                shared,
                request,
                text(400, "unreadable request body\n".into()),
            );
            return;
        }
    };

    if !shared.delay.is_zero() {
        shared.stop.sleep(shared.delay);
    }

    // tiny_http keeps an HTTP/1.0 connection open when the request asks for keep-alive, but
    // cannot say so (it drops a `Connection` header from responses), so the client, seeing no
    // `Connection: keep-alive`, waits for a close that never comes (`ab -k` stalls). Closing
    // after the response is what such a response promises.
    let close_after = *request.http_version() == HTTPVersion(1, 0) && asks_keep_alive(&request);
    let peer = request.remote_addr().copied();

    let _ = match route {
        Route::Hello => send(
            shared,
            request,
            text(200, format!("hello from {}\n", shared.name)),
        ),
        Route::Health => send(shared, request, text(200, "ok\n".into())),
        Route::Echo => echo(shared, request, &target, path, query, &body),
        Route::Status(code) => status(shared, request, code),
        Route::Bytes(n) => bytes(shared, request, n),
        Route::Chunked => chunked(shared, request, query),
        Route::Slow => slow(shared, request, query),
        Route::Cacheable => cacheable(shared, request, query),
        Route::Drop => drop_midway(shared, request),
        Route::NotFound => send(shared, request, text(404, "not found\n".into())),
    };

    if let (true, Some(peer)) = (close_after, peer) {
        conn::close_accepted(shared.addr, Some(peer));
    }
}

/// The test tiny_http applies to an HTTP/1.0 request to keep its connection open.
fn asks_keep_alive(request: &Request) -> bool {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Connection"))
        .is_some_and(|h| {
            let value = h.value.as_str().to_ascii_lowercase();
            value.contains("keep-alive") && !value.contains("close") && !value.contains("upgrade")
        })
}

/// Splits a request target at the first `?`: raw path and raw query ("" if none), undecoded.
fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The path to route on: an absolute-form target (`http://host/path`) is routed by its path.
fn origin_path(path: &str) -> &str {
    match path.split_once("://") {
        Some((scheme, rest)) if !scheme.contains('/') => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => path,
    }
}

enum BodyError {
    TooLarge,
    Io,
}

fn read_body(request: &mut Request) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_ECHO_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|_| BodyError::Io)?;
    if body.len() as u64 > MAX_ECHO_BODY {
        discard_body(request)?;
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}

fn discard_body(request: &mut Request) -> Result<(), BodyError> {
    io::copy(request.as_reader(), &mut io::sink())
        .map(drop)
        .map_err(|_| BodyError::Io)
}

/// A response with a body in memory; tiny_http makes it `text/plain; charset=UTF-8`.
fn text(status: u16, body: String) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body).with_status_code(status)
}

fn add_header<R: Read>(response: &mut Response<R>, name: &str, value: &str) {
    // Only fails for non-ASCII, and every name and value here is ASCII by construction.
    if let Ok(header) = Header::from_bytes(name, value) {
        response.add_header(header);
    }
}

/// Sends a response through tiny_http, with `X-Backend-Server`.
fn send<R: Read>(shared: &Shared, request: Request, mut response: Response<R>) -> io::Result<()> {
    add_header(&mut response, "X-Backend-Server", &shared.name);
    // tiny_http switches to chunked for known lengths of 32 KiB and more; a known length is
    // always sent as Content-Length here, chunked only when the length is unknown.
    request.respond(response.with_chunked_threshold(usize::MAX))
}

fn echo(
    shared: &Shared,
    request: Request,
    target: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> io::Result<()> {
    let headers: Vec<[&str; 2]> = request
        .headers()
        .iter()
        .map(|h| [h.field.as_str().as_str(), h.value.as_str()])
        .collect();
    let version = request.http_version();
    let json = serde_json::json!({
        "backend": shared.name,
        "method": request.method().as_str(),
        "target": target,
        "path": path,
        "query": query,
        "version": format!("HTTP/{}.{}", version.0, version.1),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
        "body_len": body.len(),
    });
    let mut out = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    out.push('\n');
    let mut response = text(200, out);
    add_header(&mut response, "Content-Type", "application/json");
    send(shared, request, response)
}

fn status(shared: &Shared, request: Request, code: &str) -> io::Result<()> {
    let code = match parse_number(code) {
        Some(c @ 100..=599) if c != 101 => c as u16,
        _ => {
            let msg = "status must be 100-599 (not 101: a switch needs a real upgrade)\n";
            return send(shared, request, text(400, msg.into()));
        }
    };
    let body = format!("status {code}\n");
    match code {
        100..=199 => {
            let version = request.http_version().clone();
            let head_only = request.method() == &Method::Head;
            let mut out = request.into_writer();
            // An HTTP/1.0 client knows no interim responses; it would take this one as final.
            if version >= (1, 1) {
                write_head(&mut out, &version, code, &shared.name, &[])?;
            }
            let length = body.len().to_string();
            let headers = [
                ("Content-Type", "text/plain; charset=UTF-8"),
                ("Content-Length", length.as_str()),
            ];
            write_head(&mut out, &version, 200, &shared.name, &headers)?;
            if !head_only {
                out.write_all(body.as_bytes())?;
            }
            out.flush()
        }
        204 | 304 => {
            let version = request.http_version().clone();
            let mut out = request.into_writer();
            write_head(&mut out, &version, code, &shared.name, &[])?;
            out.flush()
        }
        _ => send(shared, request, text(code, body)),
    }
}

fn bytes(shared: &Shared, request: Request, n: &str) -> io::Result<()> {
    let len = match parse_number(n) {
        Some(len) if len <= MAX_BYTES => len,
        _ => {
            let msg = format!("N must be a number from 0 to {MAX_BYTES}\n");
            return send(shared, request, text(400, msg));
        }
    };
    send(shared, request, pattern_response(len))
}

/// `len` bytes of the pattern, streamed (never all in memory), with a known length.
fn pattern_response(len: u64) -> Response<Pattern> {
    // len <= MAX_BYTES, which fits in usize on every platform Rust supports threads on.
    let length = usize::try_from(len).unwrap_or(usize::MAX);
    let mut response = Response::new(
        StatusCode(200),
        vec![],
        Pattern::new(len),
        Some(length),
        None,
    );
    add_header(&mut response, "Content-Type", "application/octet-stream");
    response
}

fn chunked(shared: &Shared, request: Request, query: &str) -> io::Result<()> {
    let params = (|| {
        let chunks = param(query, "chunks", 3, MAX_CHUNKS)?;
        let size = param(query, "size", 10, MAX_CHUNK_SIZE)?;
        let delay = param(query, "delay_ms", 0, MAX_CHUNK_DELAY_MS)?;
        if size == 0 {
            // A chunk of size 0 is the end of the body.
            return Err("size must be at least 1".to_string());
        }
        if chunks * size > MAX_BYTES {
            return Err(format!("chunks * size must be at most {MAX_BYTES}"));
        }
        Ok((chunks, size, Duration::from_millis(delay)))
    })();
    let (chunks, size, delay) = match params {
        Ok(p) => p,
        Err(msg) => return send(shared, request, text(400, msg + "\n")),
    };
    let version = request.http_version().clone();
    if version < (1, 1) {
        // HTTP/1.0 has no chunked coding: the same bytes, with a Content-Length.
        return send(shared, request, pattern_response(chunks * size));
    }
    let head_only = request.method() == &Method::Head;
    let mut out = request.into_writer();
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Transfer-Encoding", "chunked"),
    ];
    write_head(&mut out, &version, 200, &shared.name, &headers)?;
    out.flush()?;
    if head_only {
        return Ok(());
    }
    let mut pattern = Pattern::new(chunks * size);
    let mut buf = vec![0u8; size.min(8192) as usize];
    for i in 0..chunks {
        if i > 0 && !delay.is_zero() && !shared.stop.sleep(delay) {
            return Ok(()); // stopping: the connection is about to be closed anyway
        }
        write!(out, "{size:x}\r\n")?;
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.read_exact(&mut buf[..n])?;
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        out.write_all(b"\r\n")?;
        // Each chunk leaves as it is made, so a client sees them arrive one by one.
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn slow(shared: &Shared, request: Request, query: &str) -> io::Result<()> {
    let ms = match param(query, "ms", 1000, MAX_SLOW_MS) {
        Ok(ms) => ms,
        Err(msg) => return send(shared, request, text(400, msg + "\n")),
    };
    shared.stop.sleep(Duration::from_millis(ms));
    send(shared, request, text(200, format!("slow {ms}\n")))
}

fn cacheable(shared: &Shared, request: Request, query: &str) -> io::Result<()> {
    let max_age = match param(query, "max_age", 60, MAX_AGE_LIMIT) {
        Ok(s) => s,
        Err(msg) => return send(shared, request, text(400, msg + "\n")),
    };
    let cache_control = format!("public, max-age={max_age}");
    let etag = |n: u64| format!("\"{}-{}\"", shared.name, n);

    // Revalidation: a conditional request naming the latest response still gets 304, so a
    // cache can refresh a stale entry; the counter (and the body) only change on a 200.
    let latest = shared.cacheable_count.load(Ordering::SeqCst);
    if latest > 0 && if_none_match(&request, &etag(latest)) {
        let version = request.http_version().clone();
        let mut out = request.into_writer();
        let tag = etag(latest);
        let headers = [
            ("ETag", tag.as_str()),
            ("Cache-Control", cache_control.as_str()),
        ];
        write_head(&mut out, &version, 304, &shared.name, &headers)?;
        return out.flush();
    }

    let n = shared.cacheable_count.fetch_add(1, Ordering::SeqCst) + 1;
    let mut response = text(
        200,
        format!("cacheable response {n} from {}\n", shared.name),
    );
    add_header(&mut response, "Cache-Control", &cache_control);
    add_header(&mut response, "ETag", &etag(n));
    add_header(
        &mut response,
        "Date",
        &httpdate::fmt_http_date(SystemTime::now()),
    );
    send(shared, request, response)
}

/// True if the request's `If-None-Match` lists `etag` (weak comparison) or is `*`.
fn if_none_match(request: &Request, etag: &str) -> bool {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("If-None-Match"))
        .flat_map(|h| h.value.as_str().split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// Announces `DROP_ANNOUNCED` bytes, sends `DROP_SENT`, then closes the connection.
fn drop_midway(shared: &Shared, request: Request) -> io::Result<()> {
    let version = request.http_version().clone();
    let head_only = request.method() == &Method::Head;
    let peer = request.remote_addr().copied();
    let mut out = request.into_writer();
    let result = (|| {
        let announced = DROP_ANNOUNCED.to_string();
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", announced.as_str()),
        ];
        write_head(&mut out, &version, 200, &shared.name, &headers)?;
        if !head_only {
            io::copy(&mut Pattern::new(DROP_SENT), &mut out)?;
        }
        out.flush()
    })();
    // Everything written is flushed to the socket before it is shut down.
    drop(out);
    if let Some(peer) = peer {
        conn::close_accepted(shared.addr, Some(peer));
    }
    result
}

/// Writes a status line and headers (with `Date`, `Server`, `X-Backend-Server`) by hand.
fn write_head(
    out: &mut dyn Write,
    version: &HTTPVersion,
    code: u16,
    name: &str,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let reason = StatusCode(code).default_reason_phrase();
    write!(out, "HTTP/{}.{} {code} {reason}\r\n", version.0, version.1)?;
    write!(out, "Server: {SERVER}\r\n")?;
    write!(
        out,
        "Date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )?;
    write!(out, "X-Backend-Server: {name}\r\n")?;
    for (field, value) in headers {
        write!(out, "{field}: {value}\r\n")?;
    }
    out.write_all(b"\r\n")
}

/// A decimal number of digits only (no sign, no spaces), or None.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The raw value of `key` in a query string, a number from 0 to `max`, or `default` if absent.
fn param(query: &str, key: &str, default: u64, max: u64) -> Result<u64, String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v);
    match raw {
        None => Ok(default),
        Some(v) => match parse_number(v) {
            Some(n) if n <= max => Ok(n),
            _ => Err(format!("{key} must be a number from 0 to {max}")),
        },
    }
}

/// `len` bytes of `abc...zabc...`, made as they are read.
pub(crate) struct Pattern {
    pos: u64,
    len: u64,
}

const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

impl Pattern {
    pub(crate) fn new(len: u64) -> Pattern {
        Pattern { pos: 0, len }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let start = (self.pos % 26) as usize;
        for (b, c) in buf[..n].iter_mut().zip(ALPHABET.iter().cycle().skip(start)) {
            *b = *c;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_target_keeps_raw_bytes() {
        let cases = [
            ("/", ("/", "")),
            ("/echo?a=1&b=%20", ("/echo", "a=1&b=%20")),
            ("/a%2Fb?", ("/a%2Fb", "")),
            ("/x?y?z", ("/x", "y?z")),
        ];
        for (target, want) in cases {
            assert_eq!(split_target(target), want, "{target}");
        }
    }

    #[test]
    fn origin_path_of_absolute_form() {
        let cases = [
            ("/health", "/health"),
            ("http://example.com/health", "/health"),
            ("http://example.com", "/"),
            ("/a://b", "/a://b"),
        ];
        for (path, want) in cases {
            assert_eq!(origin_path(path), want, "{path}");
        }
    }

    #[test]
    fn params() {
        let cases: [(&str, &str, Result<u64, ()>); 8] = [
            ("", "ms", Ok(7)),
            ("ms=5", "ms", Ok(5)),
            ("a=1&ms=5", "ms", Ok(5)),
            ("ms=", "ms", Err(())),
            ("ms=-1", "ms", Err(())),
            ("ms=+1", "ms", Err(())),
            ("ms=101", "ms", Err(())),
            ("xms=5", "ms", Ok(7)),
        ];
        for (query, key, want) in cases {
            assert_eq!(param(query, key, 7, 100).map_err(drop), want, "{query}");
        }
    }

    #[test]
    fn pattern_continues_across_reads() {
        let mut p = Pattern::new(30);
        let mut a = [0u8; 27];
        assert_eq!(p.read(&mut a).expect("read"), 27);
        assert_eq!(&a[..], b"abcdefghijklmnopqrstuvwxyza");
        let mut b = [0u8; 10];
        assert_eq!(p.read(&mut b).expect("read"), 3);
        assert_eq!(&b[..3], b"bcd");
        assert_eq!(p.read(&mut b).expect("read"), 0);
    }
}
