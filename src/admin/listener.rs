//! The admin listener: its own socket, its own accept thread, blocking `std::net`, and a
//! thread per connection, at most [`MAX_CLIENTS`] at once (a scrape every few seconds and a
//! person's browser are the whole load). Every connection gets short timeouts and one answer,
//! then is closed, so a slow or silent client holds one thread for a few seconds and delays
//! no one: not the proxy's own listener, and not the next scrape. Past the cap, a connection
//! is answered 503 at once.
//!
//! - `GET /metrics`: the Prometheus text format;
//! - `GET /status`: the HTML page; `GET /status.json`: the same as JSON; `/` redirects there;
//! - anything else: 404, a method other than GET or HEAD 405, a malformed request 400, a
//!   missing or wrong key 401 (when `api_key` is set; compared in constant time).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::config::AdminSettings;
use super::status::Sources;
use super::{exposition, html};
use crate::access::keys::KeyStore;
use crate::http::head::{read_request_head, HeadTimeouts, Headers};
use crate::http::{BufStream, Limits, RequestHead};
use crate::metrics::text::CONTENT_TYPE;

/// Longest an admin client may take to send its request, or to read a write of the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Admin connections served at once. Enough that a few clients that connect and say nothing
/// (each holds its thread for [`CLIENT_TIMEOUT`]) never make a scrape wait; few enough that a
/// flood of them costs a handful of threads, not one each.
pub const MAX_CLIENTS: usize = 8;

/// Binds `[admin] listen` and serves it on a thread of its own for the life of the process.
/// Returns the address bound (a port 0 resolved).
pub fn start(settings: &AdminSettings, sources: Sources) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(&settings.listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {} for [admin]: {e}", settings.listen),
        )
    })?;
    let addr = listener.local_addr()?;
    let admin = Arc::new(Admin {
        sources,
        key: settings.api_key.clone(),
    });
    thread::Builder::new()
        .name("admin".to_owned())
        .spawn(move || admin.serve(&listener))?;
    Ok(addr)
}

struct Admin {
    sources: Sources,
    key: Option<KeyStore>,
}

/// One answer of the admin listener.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

impl Answer {
    fn ok(content_type: &'static str, body: String) -> Answer {
        Answer {
            status: 200,
            content_type,
            body: body.into_bytes(),
            extra: Vec::new(),
        }
    }

    fn error(status: u16, reason: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {reason}\n").into_bytes(),
            extra: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.extra.push((name, value.to_owned()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// One admin connection being served, counted until its thread ends (however it ends).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admin {
    fn serve(self: Arc<Self>, listener: &TcpListener) {
        let serving = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => self.dispatch(stream, &serving),
                Err(err) => {
                    // Out of descriptors, mostly: pause rather than spin on the error.
                    log::warn!("admin: accept failed: {err}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Serves `stream` on a thread of its own, or answers 503 at once past [`MAX_CLIENTS`].
    fn dispatch(self: &Arc<Self>, stream: TcpStream, serving: &Arc<AtomicUsize>) {
        if serving.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            serving.fetch_sub(1, Ordering::SeqCst);
            // Debug, not warn: a flood of connections must not become a flood of log lines.
            log::debug!("admin: {MAX_CLIENTS} connections in progress already, answering 503");
            return refuse_busy(stream);
        }
        let slot = Slot(Arc::clone(serving));
        let admin = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("admin-conn".to_owned())
            .spawn(move || {
                let _slot = slot;
                if let Err(err) = admin.connection(stream) {
                    log::debug!("admin: {err}");
                }
            });
        // A thread that could not start drops its closure, the slot and the stream with it.
        if let Err(err) = spawned {
            log::warn!("admin: cannot start a thread for a connection: {err}");
        }
    }

    fn connection(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut conn = BufStream::new(stream);
        let limits = Limits {
            max_request_line: 4 * 1024,
            max_head: 16 * 1024,
            max_headers: 64,
            ..Limits::default()
        };
        let timeouts = HeadTimeouts {
            idle: Some(CLIENT_TIMEOUT),
            whole: Some(CLIENT_TIMEOUT),
        };
        let (answer, head_only) = match read_request_head(&mut conn, &limits, timeouts) {
            Ok(head) => (self.answer(&head), head.method == "HEAD"),
            Err(err) => match err.client_status() {
                Some(status) => (Answer::error(status, reason(status)), false),
                None => return Ok(()), // gone, or silent until the timeout
            },
        };
        let (mut stream, _) = conn.into_parts();
        write_answer(&mut stream, &answer, head_only)?;
        linger(stream);
        Ok(())
    }

    fn answer(&self, head: &RequestHead) -> Answer {
        if head.method != "GET" && head.method != "HEAD" {
            return Answer::error(405, reason(405)).header("Allow", "GET, HEAD");
        }
        if let Some(key) = &self.key {
            if !authorized(head, key) {
                return Answer::error(401, "Unauthorized: send X-API-Key or Authorization: Bearer")
                    .header("WWW-Authenticate", "Bearer realm=\"revproxy admin\"");
            }
        }
        let path = head.target.split('?').next().unwrap_or("");
        match path {
            "/metrics" => {
                let status = self.sources.status();
                let text = exposition::render(&status, &self.sources.registry);
                Answer::ok(CONTENT_TYPE, text)
            }
            "/status" => Answer::ok(
                "text/html; charset=utf-8",
                html::render(&self.sources.status()),
            )
            .header(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            "/status.json" => match serde_json::to_string_pretty(&self.sources.status()) {
                Ok(json) => Answer::ok("application/json", json + "\n"),
                Err(err) => {
                    log::error!("admin: cannot serialise the status: {err}");
                    Answer::error(500, "Internal Server Error")
                }
            },
            "/" => Answer::error(302, reason(302)).header("Location", "/status"),
            _ => Answer::error(404, "Not Found: try /metrics, /status or /status.json"),
        }
    }
}

/// Whether `head` carries the key, as `X-API-Key` or `Authorization: Bearer`.
fn authorized(head: &RequestHead, key: &KeyStore) -> bool {
    let bearer = head.header("authorization").and_then(|v| {
        let v = v.trim_ascii();
        let (scheme, token) = v.split_at(v.iter().position(|&b| b == b' ')?);
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| token.trim_ascii())
    });
    [head.header("x-api-key"), bearer]
        .into_iter()
        .flatten()
        .any(|presented| key.check(presented).is_some())
}

fn write_answer(stream: &mut TcpStream, answer: &Answer, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    )
    .into_bytes();
    for (name, value) in &answer.extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&answer.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// The answer past [`MAX_CLIENTS`], written by the accept thread itself: one small write into
/// an empty socket buffer, bounded by a short timeout anyway. It never waits for the client:
/// what the request sent so far is read without waiting and dropped (closing with unread bytes
/// would reset the connection, and the 503 with it), and the write side is shut.
fn refuse_busy(mut stream: TcpStream) {
    let answer = Answer::error(503, "Service Unavailable: too many admin connections")
        .header("Retry-After", "1");
    if stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .is_ok()
        && write_answer(&mut stream, &answer, false).is_ok()
    {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        if stream.set_nonblocking(true).is_ok() {
            let mut sink = [0u8; 4096];
            let _ = stream.read(&mut sink);
        }
    }
}

/// Closes after reading what the client still sends, for a moment: closing with unread
/// bytes (a body we did not want) sends a reset that can destroy the answer in flight.
fn linger(mut stream: TcpStream) {
    const LINGER: Duration = Duration::from_millis(500);
    if stream.shutdown(std::net::Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(LINGER)).is_err()
    {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 256 * 1024 && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::keys::ApiKey;
    use crate::http::Header;

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: "/metrics".into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            route: None,
            original_target: None,
        }
    }

    #[test]
    fn the_key_is_taken_from_either_header() {
        let key = KeyStore::new(vec![ApiKey::from_value("admin", "s3cret")]);
        // (headers, accepted)
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("X-API-Key", "s3cret")], true),
            (&[("x-api-key", "s3cre")], false),
            (&[("Authorization", "Bearer s3cret")], true),
            (&[("Authorization", "bearer   s3cret ")], true),
            (&[("Authorization", "Basic s3cret")], false),
            (&[("Authorization", "Bearer")], false),
            (&[("Authorization", "s3cret")], false),
            (
                &[("X-API-Key", "wrong"), ("Authorization", "Bearer s3cret")],
                true,
            ),
        ];
        for (headers, accepted) in table {
            assert_eq!(authorized(&head(headers), &key), *accepted, "{headers:?}");
        }
    }
}
