//! Everything the proxy answers itself: its errors and refusals, and the replies phases make
//! (a 401 with `WWW-Authenticate`, a 429 with `Retry-After`, a redirect, a fixed page, a
//! response served from memory).

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::head::{Header, Headers};
use crate::http::headers::{reason_phrase, OutFraming};
use crate::http::{BufStream, ResponseHead, Socket};

/// The body of a reply, held in memory (a reply is short, or shared with a cache).
#[derive(Debug, Clone)]
pub enum ReplyBody {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    /// Shared without copying, as a cache entry is between the clients it serves.
    Shared(Arc<[u8]>),
}

impl ReplyBody {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ReplyBody::Static(bytes) => bytes,
            ReplyBody::Owned(bytes) => bytes,
            ReplyBody::Shared(bytes) => bytes,
        }
    }
}

/// Header fields that many replies share, serialised once: a cache entry's stored fields,
/// written for each hit as they are instead of being cloned into its head and formatted
/// again. Framing and `Connection` fields are left out, as [`write_head`] leaves them out of
/// a head.
#[derive(Debug)]
pub struct SharedFields {
    headers: Vec<Header>,
    wire: Vec<u8>,
}

impl SharedFields {
    pub fn new(headers: Vec<Header>) -> SharedFields {
        let mut wire = Vec::with_capacity(
            headers
                .iter()
                .map(|h| h.name.len() + h.value.len() + 4)
                .sum(),
        );
        write_fields(&mut wire, &headers);
        SharedFields { headers, wire }
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
}

/// A whole response made by the proxy: a head, a body, and whether the connection must close
/// after it. The framing (`Content-Length`) is written when it is sent, and a HEAD request
/// gets the same head without the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub head: ResponseHead,
    /// Fields sent before the head's own (a cache hit's stored fields, shared with the entry;
    /// the head then holds only what this reply adds, such as `Age`). The relay copies them
    /// into the head first when a response-head phase reads a reply's fields
    /// ([`Phases::reads_reply_fields`](super::Phases::reads_reply_fields)).
    pub shared: Option<Arc<SharedFields>>,
    pub body: ReplyBody,
    /// Close the connection after this reply, whatever the client wants.
    pub close: bool,
}

impl Reply {
    /// A reply with `status`, its standard reason phrase, and no body.
    pub fn new(status: u16) -> Reply {
        Reply {
            head: ResponseHead {
                status,
                reason: reason_phrase(status).to_owned(),
                minor_version: 1,
                headers: Vec::new(),
            },
            shared: None,
            body: ReplyBody::Static(b""),
            close: false,
        }
    }

    /// The proxy's answer for an error `status`: a one-line text body. A 503 (no backend can
    /// take the request) says when to come back, as RFC 9110 section 10.2.3 suggests.
    pub fn error(status: u16) -> Reply {
        let reply = Reply::new(status).text(format!("{status} {}\n", reason_phrase(status)));
        if status == 503 {
            reply.header("Retry-After", "1")
        } else {
            reply
        }
    }

    /// Adds a header (names are sent as written).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Reply {
        self.head.headers.push(Header {
            name: name.to_owned(),
            value: value.as_ref().to_vec(),
        });
        self
    }

    /// A `text/plain` body.
    pub fn text(self, body: impl Into<String>) -> Reply {
        self.body(
            "text/plain; charset=utf-8",
            ReplyBody::Owned(body.into().into_bytes()),
        )
    }

    /// A body with its content type.
    pub fn body(mut self, content_type: &str, body: ReplyBody) -> Reply {
        self.head
            .headers
            .retain(|h| !h.name.eq_ignore_ascii_case("content-type"));
        self = self.header("Content-Type", content_type);
        self.body = body;
        self
    }

    /// Closes the connection after the reply.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Moves the shared fields into the head, before its own: for phases that read them.
    pub fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut headers = Vec::with_capacity(shared.headers.len() + self.head.headers.len());
            headers.extend_from_slice(&shared.headers);
            headers.append(&mut self.head.headers);
            self.head.headers = headers;
        }
    }

    /// The reply as bytes: head and, unless `head_only` (a HEAD request), the body.
    pub fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let body = self.body.as_bytes();
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { body.len() });
        write_head(
            &mut out,
            &self.head,
            self.shared.as_deref(),
            OutFraming::Length(body.len() as u64),
            keep_alive,
        );
        if !head_only {
            out.extend_from_slice(body);
        }
        out
    }
}

/// Serialises a reply head: the shared fields, the phase-made headers minus any framing or
/// connection headers (the proxy writes its own), then the framing and `Connection`.
pub(super) fn write_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    shared: Option<&SharedFields>,
    framing: OutFraming,
    keep_alive: bool,
) {
    // Written by hand rather than with `write!`: this runs for every cache hit.
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(shared) = shared {
        out.extend_from_slice(&shared.wire);
    }
    write_fields(out, head.header_list());
    match framing {
        OutFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::NoBody | OutFraming::Close => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    // At most 20 turns: u64::MAX has 20 digits.
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes header lines, less the framing and connection ones (the proxy writes its own).
fn write_fields(out: &mut Vec<u8>, headers: &[Header]) {
    const OURS: &[&str] = &["content-length", "transfer-encoding", "connection"];
    for h in headers {
        if !OURS.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// After a reply that closes the connection, reads (and drops) what the client is still
/// sending for a moment before closing. Closing a socket with unread data sends a reset,
/// which can destroy the reply before the client reads it; nginx calls this lingering close.
pub(super) fn linger<S: Socket>(client: &mut BufStream<S>) {
    const LINGER: Duration = Duration::from_secs(1);
    const MAX_DRAINED: usize = 1024 * 1024;
    if client.shutdown_write().is_err() || client.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut sink = [0u8; 8192];
    while drained < MAX_DRAINED && Instant::now() < deadline {
        match client.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_have_a_text_body_and_503_says_when_to_retry() {
        let text = String::from_utf8(Reply::error(503).to_bytes(false, false)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Retry-After: 1\r\nContent-Length: 24\r\nConnection: close\r\n\r\n\
             503 Service Unavailable\n"
        );
    }

    #[test]
    fn a_head_request_gets_the_head_alone_with_the_body_length() {
        let reply = Reply::new(418)
            .header("X-Tea", "earl grey")
            .text("short and stout\n");
        let text = String::from_utf8(reply.to_bytes(true, true)).unwrap();
        assert!(text.contains("X-Tea: earl grey\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 16\r\n\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert!(!text.contains("Connection"), "{text}");
    }

    #[test]
    fn shared_fields_are_written_first_and_the_same_once_unshared() {
        let shared = Arc::new(SharedFields::new(vec![
            Header {
                name: "Content-Type".into(),
                value: b"text/plain".to_vec(),
            },
            Header {
                name: "Content-Length".into(),
                value: b"999".to_vec(),
            },
        ]));
        let mut reply = Reply::new(200).header("Age", "3");
        reply.shared = Some(shared);
        reply.body = ReplyBody::Static(b"hi");
        let text = String::from_utf8(reply.to_bytes(false, true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAge: 3\r\nContent-Length: 2\r\n\r\nhi"
        );
        reply.unshare();
        assert!(reply.shared.is_none());
        assert_eq!(reply.head.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(
            String::from_utf8(reply.to_bytes(false, true)).unwrap(),
            text
        );
    }

    #[test]
    fn decimals_are_written_whole() {
        for n in [0, 7, 10, 200, 16_384, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn phase_headers_cannot_override_the_framing() {
        let reply = Reply::new(200)
            .header("Content-Length", "999")
            .header("Transfer-Encoding", "chunked")
            .text("ok");
        let text = String::from_utf8(reply.to_bytes(false, true)).unwrap();
        assert!(!text.contains("999") && !text.contains("chunked"), "{text}");
        assert!(text.ends_with("Content-Length: 2\r\n\r\nok"), "{text}");
    }
}
