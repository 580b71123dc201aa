//! The endpoints (the table is in `backends/README.md`).
//!
//! Each request: route on the path, read the request body to its end (kept for `/echo`,
//! dropped for the rest), wait `--delay-ms`, answer. hyper does the framing: a body with a known
//! length goes out with `Content-Length`, one without as chunked, one chunk per frame.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::body::Out;
use crate::wire::RawHead;
use crate::Shared;

/// Largest `/bytes/N` and largest `/chunked` total.
const MAX_BYTES: u64 = 1 << 30;
/// Largest `/slow?ms=N`.
const MAX_SLOW_MS: u64 = 60_000;
/// Largest body `/echo` will hold in memory (it answers 413 above).
const MAX_ECHO_BODY: usize = 16 << 20;
const MAX_CHUNKS: u64 = 1_000_000;
const MAX_CHUNK_SIZE: u64 = 16 << 20;
const MAX_CHUNK_DELAY_MS: u64 = 10_000;
const MAX_AGE_LIMIT: u64 = 365 * 24 * 3600;
/// What `/drop` announces, and what it sends before the connection is aborted.
pub(crate) const DROP_ANNOUNCED: u64 = 1000;
const DROP_SENT: u64 = 100;

const TEXT: &str = "text/plain; charset=UTF-8";
const OCTETS: &str = "application/octet-stream";

pub(crate) enum Route<'a> {
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
    /// Routes on the path only (hyper gives the path of an absolute-form target too).
    pub(crate) fn parse(path: &'a str) -> Route<'a> {
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

/// Answers one request; `raw` is its head as received (for `/echo`), if found.
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
    raw: Option<RawHead>,
) -> Response<Out> {
    let mut response = if request.uri().path() == crate::websocket::PATH {
        crate::websocket::accept(request)
    } else {
        answer(shared, request, raw).await
    };
    response
        .headers_mut()
        .insert(X_BACKEND_SERVER, shared.header.clone());
    response
}

const X_BACKEND_SERVER: HeaderName = HeaderName::from_static("x-backend-server");

async fn answer(
    shared: &Shared,
    request: Request<Incoming>,
    raw: Option<RawHead>,
) -> Response<Out> {
    let (head, mut body) = request.into_parts();
    let query = head.uri.query().unwrap_or("");
    let route = Route::parse(head.uri.path());

    // Every body is read to its end before answering, as a real application would, so a proxy
    // streaming a request body is never cut short. `/echo` keeps up to MAX_ECHO_BODY bytes.
    let keep = if matches!(route, Route::Echo) {
        MAX_ECHO_BODY
    } else {
        0
    };
    let received = match read_body(&mut body, keep).await {
        Ok(received) => received,
        Err(BodyError::TooLarge) => {
            return text(
                413,
                format!("request body larger than {MAX_ECHO_BODY} bytes\n"),
            );
        }
        // The client sent a broken body (bad chunk size, early close): hyper closes after this.
        Err(BodyError::Broken) => return text(400, "unreadable request body\n".into()),
    };

    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }

    let head_only = head.method == Method::HEAD;
    match route {
        Route::Hello => text(200, format!("hello from {}\n", shared.name)),
        Route::Health => text(200, "ok\n".into()),
        Route::Echo => echo(shared, &head, raw, &received),
        Route::Status(code) => status(code),
        Route::Bytes(n) => bytes(n),
        Route::Chunked => chunked(query, head.version),
        Route::Slow => slow(query).await,
        Route::Cacheable => cacheable(shared, &head.headers, query),
        Route::Drop => drop_midway(head_only),
        Route::NotFound => text(404, "not found\n".into()),
    }
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads the body to its end, keeping the first `keep` bytes; TooLarge if there were more.
async fn read_body(body: &mut Incoming, keep: usize) -> Result<Vec<u8>, BodyError> {
    let mut kept = Vec::new();
    let mut total: usize = 0;
    // Bounded by the body: each turn takes one frame of it, and the loop ends at its end.
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if kept.len() < keep {
                let room = keep - kept.len();
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    if total > keep && keep > 0 {
        return Err(BodyError::TooLarge);
    }
    Ok(kept)
}

fn respond(status: u16, content_type: &str, body: Out) -> Response<Out> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    // hyper writes `<none>` as the reason of a code it has no name for.
    if response.status().canonical_reason().is_none() {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Unknown"));
    }
    response
}

fn text(status: u16, body: String) -> Response<Out> {
    respond(status, TEXT, Out::full(body))
}

/// A response without a body, without `Content-Type` (hyper adds no length to 204 and 304).
fn bodiless(status: u16) -> Response<Out> {
    let mut response = Response::new(Out::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
}

fn echo(
    shared: &Shared,
    head: &hyper::http::request::Parts,
    raw: Option<RawHead>,
    body: &[u8],
) -> Response<Out> {
    // As received when the head was found on the wire (see wire.rs); otherwise hyper's view:
    // lowercase names, grouped by name.
    let (target, headers) = match raw {
        Some(raw) => (raw.target, raw.headers),
        None => {
            let target = head.uri.to_string();
            let headers = head
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_string(), v)
                })
                .collect();
            (target, headers)
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let headers: Vec<[&str; 2]> = headers
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    let json = serde_json::json!({
        "backend": shared.name,
        "method": head.method.as_str(),
        "target": target,
        "path": path,
        "query": query,
        "version": if head.version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" },
        "headers": headers,
        "body": String::from_utf8_lossy(body),
        "body_len": body.len(),
    });
    match serde_json::to_string_pretty(&json) {
        Ok(mut out) => {
            out.push('\n');
            respond(200, "application/json", Out::full(out))
        }
        Err(e) => text(500, format!("cannot write JSON: {e}\n")),
    }
}

fn status(code: &str) -> Response<Out> {
    match parse_number(code) {
        Some(c @ 200..=599) if c != 204 && c != 304 => text(c as u16, format!("status {c}\n")),
        Some(c @ (204 | 304)) => bodiless(c as u16),
        // hyper sends one response per request and refuses a 1xx as that response (it would
        // leave the client waiting for the final one), so interim responses cannot be asked for.
        Some(100..=199) => text(
            400,
            "status must be 200-599: this server (hyper) cannot send 1xx interim responses\n"
                .into(),
        ),
        _ => text(400, "status must be a number from 200 to 599\n".into()),
    }
}

fn bytes(n: &str) -> Response<Out> {
    match parse_number(n) {
        Some(len) if len <= MAX_BYTES => respond(200, OCTETS, Out::pattern(len)),
        _ => text(400, format!("N must be a number from 0 to {MAX_BYTES}\n")),
    }
}

fn chunked(query: &str, version: Version) -> Response<Out> {
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
    match params {
        // HTTP/1.0 has no chunked coding: the same bytes, at the same pace, with a length.
        Ok((chunks, size, delay)) => {
            let known_length = version == Version::HTTP_10;
            respond(200, OCTETS, Out::chunks(chunks, size, delay, known_length))
        }
        Err(msg) => text(400, msg + "\n"),
    }
}

async fn slow(query: &str) -> Response<Out> {
    match param(query, "ms", 1000, MAX_SLOW_MS) {
        Ok(ms) => {
            // A stopping backend drops this task, and the sleep with it.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(200, format!("slow {ms}\n"))
        }
        Err(msg) => text(400, msg + "\n"),
    }
}

fn cacheable(shared: &Shared, headers: &hyper::HeaderMap, query: &str) -> Response<Out> {
    let max_age = match param(query, "max_age", 60, MAX_AGE_LIMIT) {
        Ok(s) => s,
        Err(msg) => return text(400, msg + "\n"),
    };
    let etag = |n: u64| format!("\"{}-{}\"", shared.name, n);

    // Revalidation: a conditional request naming the latest response still gets 304, so a
    // cache can refresh a stale entry; the counter (and the body) only change on a 200.
    let latest = shared.cacheable_count.load(Ordering::SeqCst);
    let (mut response, tag) = if latest > 0 && if_none_match(headers, &etag(latest)) {
        (bodiless(304), etag(latest))
    } else {
        let n = shared.cacheable_count.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!("cacheable response {n} from {}\n", shared.name);
        (text(200, body), etag(n))
    };
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::CACHE_CONTROL, format!("public, max-age={max_age}"));
    set(header::ETAG, tag);
    // hyper adds a Date to every response; this one is written here, since a cache test reads
    // it, so it is there whatever hyper's settings.
    set(header::DATE, httpdate::fmt_http_date(SystemTime::now()));
    response
}

/// True if `If-None-Match` lists `etag` (weak comparison) or is `*`.
fn if_none_match(headers: &hyper::HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// Announces `DROP_ANNOUNCED` bytes, sends `DROP_SENT`, then the body fails, which makes hyper
/// abort the connection. A HEAD gets the head only, then the connection is closed too.
fn drop_midway(head_only: bool) -> Response<Out> {
    let mut response = respond(200, OCTETS, Out::drop_after(DROP_SENT));
    if head_only {
        // hyper does not poll the body of a HEAD response, so it never fails.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn routes() {
        let cases = [
            ("/", "hello"),
            ("/echo", "echo"),
            ("/echo/a/b", "echo"),
            ("/echoes", "404"),
            ("/status/204", "status 204"),
            ("/bytes/", "bytes "),
            ("/health/", "404"),
        ];
        for (path, want) in cases {
            let got = match Route::parse(path) {
                Route::Hello => "hello".to_string(),
                Route::Echo => "echo".to_string(),
                Route::Status(n) => format!("status {n}"),
                Route::Bytes(n) => format!("bytes {n}"),
                Route::NotFound => "404".to_string(),
                _ => "other".to_string(),
            };
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn status_codes() {
        let cases = [
            (200, "200"),
            (599, "599"),
            (204, "204"),
            (400, "103"),
            (400, "101"),
        ];
        for (want, code) in cases {
            assert_eq!(status(code).status().as_u16(), want, "{code}");
        }
        for bad in ["", "99", "600", "+200", "abc"] {
            assert_eq!(status(bad).status().as_u16(), 400, "{bad}");
        }
    }
}
