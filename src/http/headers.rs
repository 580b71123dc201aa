//! The header rules of a proxy: which headers belong to one hop only, and which a proxy adds
//! (`X-Forwarded-*`, `Via`). Heads are serialised here, in one buffer, so each goes out in a
//! single write.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::head::{Header, Headers, RequestHead, ResponseHead};

/// Headers that describe one connection rather than the message (RFC 9110 section 7.6.1). The
/// framing headers are in the list too: the proxy writes its own for the body it sends.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Headers the proxy writes itself on the way to the upstream: `X-Forwarded-For` and `Via`
/// extend what the client sent (the chain of hops), the others replace it.
const REWRITTEN_UPSTREAM: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "via",
    // 100-continue is answered by the proxy itself; see `relay`.
    "expect",
];

/// What the proxy knows about the hop the request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    pub client_ip: IpAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'a str,
    /// This proxy's name in `Via`.
    pub via_name: &'a str,
    /// `Host` to send when an HTTP/1.0 client sent none (HTTP/1.1 upstreams require one).
    pub fallback_host: SocketAddr,
}

/// How the receiver will find the end of the body that follows a head: the framing of a
/// forwarded head, and of a reply the proxy makes itself (`relay::reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    /// No body follows. A forwarded head keeps the original's framing headers as they are (a
    /// HEAD or 304 response's `Content-Length` describes the body the client did not ask
    /// for); a reply of the proxy's own writes none (the answer to a HEAD whose GET would be
    /// re-framed by a transform).
    NoBody,
    Length(u64),
    Chunked,
    /// The connection closes after the body (for a reply, an HTTP/1.0 client of a re-framed
    /// body).
    Close,
}

/// The header names a message's `Connection` field lists (`keep-alive`, `close`, `upgrade`,
/// or a custom hop-by-hop header), borrowed from the message. Nearly always one or none, so
/// they are kept on the stack: this runs for both heads of every exchange.
type ConnectionTokens<'a> = SmallVec<[&'a [u8]; 4]>;

fn connection_tokens(head: &impl Headers) -> ConnectionTokens<'_> {
    head.values("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_in(name: &str, list: &[&str]) -> bool {
    list.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn is_hop_by_hop(name: &str, named_by_connection: &ConnectionTokens<'_>) -> bool {
    // `Connection: host` must not strip the one header every HTTP/1.1 request needs.
    is_in(name, HOP_BY_HOP)
        || (!name.eq_ignore_ascii_case("host")
            && named_by_connection
                .iter()
                .any(|token| name.as_bytes().eq_ignore_ascii_case(token)))
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The end-to-end headers of a message: every header except hop-by-hop ones and `skip`.
fn end_to_end<'a>(head: &'a impl Headers, skip: &'a [&'a str]) -> impl Iterator<Item = &'a Header> {
    let named = connection_tokens(head);
    head.header_list()
        .iter()
        .filter(move |h| !is_hop_by_hop(&h.name, &named) && !is_in(&h.name, skip))
}

/// Writes the header `name` with every value the message had for it, joined by commas as
/// one list (RFC 9110 section 5.3), and our element at the end, written by `ours`: a chain
/// that a proxy extends (`X-Forwarded-For`, `Via`). Straight into `out`, with no list built
/// on the side.
fn put_extended(
    out: &mut Vec<u8>,
    head: &impl Headers,
    name: &str,
    ours: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for value in head.values(name) {
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    ours(out);
    out.extend_from_slice(b"\r\n");
}

/// Writes a number in decimal. Heads are written for every request, and `write!` goes through
/// `fmt`'s machinery (padding, an adapter, a dynamic call per piece): with the address below,
/// a seventh of stage 5's instructions a request (`valgrind --tool=callgrind`, notes.md).
fn put_number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes an address as `Display` does (`10.1.2.3`), without `fmt` for the usual IPv4.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                put_number(out, octet);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

fn put_framing(out: &mut Vec<u8>, framing: OutFraming, original: &impl Headers) {
    match framing {
        OutFraming::NoBody => {
            for value in original.values("content-length") {
                put_header(out, "Content-Length", value);
            }
        }
        OutFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            put_number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::Close => {}
    }
}

/// Appends our hop to the `Via` chain, with the protocol version the message arrived in.
fn put_via(out: &mut Vec<u8>, head: &impl Headers, minor_version: u8, via_name: &str) {
    put_extended(out, head, "Via", |out| {
        out.extend_from_slice(b"1.");
        put_number(out, minor_version);
        out.push(b' ');
        out.extend_from_slice(via_name.as_bytes());
    });
}

/// Serialises the request head sent upstream: the same method and target, byte for byte,
/// always as HTTP/1.1, with hop-by-hop headers removed and the forwarding headers set.
pub fn upstream_request(
    head: &RequestHead,
    info: &ForwardInfo<'_>,
    framing: OutFraming,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in end_to_end(head, REWRITTEN_UPSTREAM) {
        put_header(&mut out, &h.name, &h.value);
    }
    let host = head.header("host");
    if host.is_none() {
        let _ = write!(out, "Host: {}\r\n", info.fallback_host);
    }
    put_extended(&mut out, head, "X-Forwarded-For", |out| {
        put_ip(out, info.client_ip)
    });
    put_header(&mut out, "X-Forwarded-Proto", info.proto.as_bytes());
    if let Some(host) = host {
        put_header(&mut out, "X-Forwarded-Host", host);
    }
    put_via(&mut out, head, head.minor_version, info.via_name);
    put_framing(&mut out, framing, head);
    out.extend_from_slice(b"\r\n");
    out
}

/// Serialises the response head sent to the client. The client always hears HTTP/1.1 (as from
/// nginx); `keep_alive` decides the `Connection` header it needs to see. `Date` is not added
/// here: `read_response_head` appends one at receipt to a head that lacks it (RFC 9110 section
/// 6.6.1), so a head made some other way carries its own.
pub fn client_response(
    head: &ResponseHead,
    framing: OutFraming,
    keep_alive: bool,
    client_minor_version: u8,
    via_name: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    put_number(&mut out, head.status);
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in end_to_end(head, &["via"]) {
        put_header(&mut out, &h.name, &h.value);
    }
    put_via(&mut out, head, head.minor_version, via_name);
    put_framing(&mut out, framing, head);
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The standard reason phrase for the statuses this proxy produces itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response};

    fn info() -> ForwardInfo<'static> {
        ForwardInfo {
            client_ip: "10.1.2.3".parse().unwrap(),
            proto: "http",
            via_name: "revproxy",
            fallback_host: "127.0.0.1:8000".parse().unwrap(),
        }
    }

    #[test]
    fn upstream_request_drops_hop_by_hop_and_adds_forwarding_headers() {
        let head = parse_request(
            b"GET /a%20b?x=%2F HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n\
              Proxy-Connection: close\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n\
              Via: 1.0 edge\r\nAccept: */*\r\n\r\n",
            100,
        )
        .unwrap();
        let text = String::from_utf8(upstream_request(&head, &info(), OutFraming::NoBody)).unwrap();
        assert!(text.starts_with("GET /a%20b?x=%2F HTTP/1.1\r\n"), "{text}");
        for gone in [
            "Connection",
            "X-Secret",
            "Keep-Alive",
            "TE:",
            "Upgrade",
            "Proxy-Connection",
        ] {
            assert!(!text.contains(gone), "{gone} must be dropped:\n{text}");
        }
        for kept in [
            "Host: example.com\r\n",
            "Accept: */*\r\n",
            "X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n",
            "X-Forwarded-Proto: http\r\n",
            "X-Forwarded-Host: example.com\r\n",
            "Via: 1.0 edge, 1.1 revproxy\r\n",
        ] {
            assert!(text.contains(kept), "missing {kept:?} in\n{text}");
        }
    }

    #[test]
    fn every_header_the_connection_field_names_goes_and_repeated_chains_are_joined() {
        // Six names, in two fields: more than the four kept on the stack.
        let head = parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-1, X-2,,x-3\r\nconnection: x-4 , x-5, x-6\r\n\
              X-1: a\r\nX-2: b\r\nX-3: c\r\nX-4: d\r\nX-5: e\r\nX-6: f\r\nX-7: kept\r\n\
              X-Forwarded-For: 1.1.1.1\r\nVia: 1.0 a\r\nX-Forwarded-For: \r\nVia: 1.1 b\r\n\
              x-forwarded-for: 2.2.2.2\r\n\r\n",
            100,
        )
        .unwrap();
        let text = String::from_utf8(upstream_request(&head, &info(), OutFraming::NoBody)).unwrap();
        for gone in ["X-1", "X-2", "X-3", "X-4", "X-5", "X-6", "onnection"] {
            assert!(!text.contains(gone), "{gone} must be dropped:\n{text}");
        }
        for kept in [
            "X-7: kept\r\n",
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n",
            "Via: 1.0 a, 1.1 b, 1.1 revproxy\r\n",
        ] {
            assert!(text.contains(kept), "missing {kept:?} in\n{text}");
        }
        assert_eq!(text.matches("Via").count(), 1, "{text}");
        assert_eq!(text.matches("X-Forwarded-For").count(), 1, "{text}");
    }

    #[test]
    fn numbers_and_addresses_read_as_display_writes_them() {
        let head = parse_request(b"POST /p HTTP/1.1\r\nHost: a\r\n\r\n", 10).unwrap();
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.200.7",
            "::1",
            "2001:db8::2:1",
        ] {
            let info = ForwardInfo {
                client_ip: ip.parse().unwrap(),
                ..info()
            };
            let out = upstream_request(&head, &info, OutFraming::Length(u64::MAX));
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("POST /p HTTP/1.1\r\n"), "{text}");
            assert!(
                text.contains(&format!("X-Forwarded-For: {ip}\r\n")),
                "{text}"
            );
            assert!(text.contains(&format!("Content-Length: {}\r\n", u64::MAX)));
        }
        for (status, framing, length) in [
            (204, OutFraming::Length(0), "0"),
            (599, OutFraming::Length(10), "10"),
        ] {
            let head = ResponseHead {
                status,
                reason: "R".to_owned(),
                minor_version: 0,
                headers: Vec::new(),
            };
            let text = String::from_utf8(client_response(&head, framing, true, 1, "p")).unwrap();
            assert_eq!(
                text,
                format!("HTTP/1.1 {status} R\r\nVia: 1.0 p\r\nContent-Length: {length}\r\n\r\n")
            );
        }
    }

    #[test]
    fn http10_request_without_host_gets_one() {
        let head = parse_request(b"GET / HTTP/1.0\r\n\r\n", 10).unwrap();
        let text = String::from_utf8(upstream_request(&head, &info(), OutFraming::NoBody)).unwrap();
        assert!(text.contains("Host: 127.0.0.1:8000\r\n"), "{text}");
        assert!(text.contains("Via: 1.0 revproxy\r\n"), "{text}");
    }

    #[test]
    fn client_response_reframes_and_says_close() {
        let head = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nServer: b\r\n\r\n",
            100,
        )
        .unwrap();
        let text = String::from_utf8(client_response(
            &head,
            OutFraming::Close,
            false,
            0,
            "revproxy",
        ))
        .unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: b\r\nVia: 1.1 revproxy\r\nConnection: close\r\n\r\n"
        );
        let text = String::from_utf8(client_response(
            &head,
            OutFraming::Chunked,
            true,
            0,
            "revproxy",
        ))
        .unwrap();
        assert!(
            text.contains("Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"),
            "{text}"
        );
    }

    #[test]
    fn head_responses_keep_their_content_length() {
        let head = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", 10).unwrap();
        let text =
            String::from_utf8(client_response(&head, OutFraming::NoBody, true, 1, "r")).unwrap();
        assert!(text.contains("Content-Length: 42\r\n"), "{text}");
    }
}
