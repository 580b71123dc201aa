//! Where a message body ends (RFC 9112 section 6), and the request checks that keep that answer
//! unambiguous. Two parsers that disagree on where a body ends are how request smuggling works,
//! so anything ambiguous is refused rather than guessed.

use super::error::HttpError;
use super::head::{Headers, RequestHead, ResponseHead};
use super::target::valid_host;

/// How the body of one message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// Checks a request head for the ambiguities a proxy must refuse, and returns its body framing.
pub fn request_framing(head: &RequestHead) -> Result<BodyFraming, HttpError> {
    crate::exercise::stub!("request_framing");
    check_host(head)?;
    let has_te = head.header("transfer-encoding").is_some();
    let length = content_length(head)?;
    if has_te {
        if length.is_some() {
            return Err(HttpError::BadSyntax(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if head.minor_version == 0 {
            return Err(HttpError::BadSyntax(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        return match final_coding_is_chunked(head)? {
            Codings::ChunkedOnly => Ok(BodyFraming::Chunked),
            Codings::ChunkedAfterOthers => Err(HttpError::UnsupportedTransferCoding),
            Codings::NotChunked => Err(HttpError::BadSyntax(
                "Transfer-Encoding does not end in chunked",
            )),
        };
    }
    // An explicit `Content-Length: 0` stays explicit: some servers insist on one for a POST.
    Ok(length.map_or(BodyFraming::Empty, BodyFraming::Length))
}

/// The framing of a response to a request made with `request_method`.
pub fn response_framing(
    request_method: &str,
    head: &ResponseHead,
) -> Result<BodyFraming, HttpError> {
    // Methods are case-sensitive (RFC 9110 section 9.1): `head` is not HEAD.
    if request_method == "HEAD"
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(BodyFraming::Empty);
    }
    if head.header("transfer-encoding").is_some() {
        // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3, rule 3); a response
        // whose last coding is not chunked can only be delimited by closing.
        return Ok(match final_coding_is_chunked(head)? {
            Codings::ChunkedOnly => BodyFraming::Chunked,
            _ => BodyFraming::UntilClose,
        });
    }
    Ok(match content_length(head)? {
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

/// HTTP/1.1 requires exactly one Host, and a valid one (RFC 9112 section 3.2): two Hosts, or
/// one like `a.test, b.test`, could route differently in two parsers.
fn check_host(head: &RequestHead) -> Result<(), HttpError> {
    let mut hosts = head.values("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if head.minor_version >= 1 => Err(HttpError::BadSyntax("missing Host header")),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(HttpError::BadSyntax("more than one Host header")),
        (Some(host), None) if !valid_host(host) => Err(HttpError::BadSyntax("invalid Host header")),
        (Some(_), None) => Ok(()),
    }
}

/// The Content-Length, if any. Repeated values (in several headers or as a list) must all be
/// the same valid number, as RFC 9110 section 8.6 allows and requires.
fn content_length(head: &impl Headers) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for value in head.values("content-length") {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::BadSyntax("invalid Content-Length"));
            }
            let n = item
                .iter()
                .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
            match found {
                Some(prev) if prev != n => {
                    return Err(HttpError::BadSyntax("conflicting Content-Length values"))
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

enum Codings {
    ChunkedOnly,
    ChunkedAfterOthers,
    NotChunked,
}

fn final_coding_is_chunked(head: &impl Headers) -> Result<Codings, HttpError> {
    let codings: Vec<&[u8]> = head
        .values("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .collect();
    let Some((last, before)) = codings.split_last() else {
        return Err(HttpError::BadSyntax("empty Transfer-Encoding"));
    };
    let is_chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    if !is_chunked(last) || before.iter().any(is_chunked) {
        return Ok(Codings::NotChunked);
    }
    Ok(if before.is_empty() {
        Codings::ChunkedOnly
    } else {
        Codings::ChunkedAfterOthers
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response};

    fn req(head: &str) -> Result<BodyFraming, HttpError> {
        let text = format!("{head}\r\n\r\n");
        request_framing(&parse_request(text.as_bytes(), 100).unwrap())
    }

    #[test]
    fn request_framing_table() {
        use BodyFraming::*;
        let ok: &[(&str, BodyFraming)] = &[
            ("GET / HTTP/1.1\r\nHost: a", Empty),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0", Length(0)),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12",
                Length(12),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5",
                Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5",
                Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked",
                Chunked,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED",
                Chunked,
            ),
            ("GET / HTTP/1.0", Empty),
            ("GET / HTTP/1.1\r\nHost: a.test:", Empty),
            ("GET / HTTP/1.1\r\nHost: [::1]:8080", Empty),
            ("GET / HTTP/1.1\r\nHost: 127.0.0.1:80", Empty),
        ];
        for (head, want) in ok {
            assert_eq!(req(head).unwrap(), *want, "{head}");
        }
    }

    /// Every smuggling vector the issue names, refused with the status it names.
    #[test]
    fn smuggling_vectors_are_refused() {
        let bad: &[(&str, u16)] = &[
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4",
                400,
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2", 400),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked",
                400,
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:", 400),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked",
                501,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
            ("GET / HTTP/1.1", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
            ("GET / HTTP/1.1\r\nHost: a.test, b.test", 400),
            ("GET / HTTP/1.1\r\nHost: a.test b.test", 400),
            ("GET / HTTP/1.1\r\nHost: a.test/x", 400),
            ("GET / HTTP/1.1\r\nHost: user@a.test", 400),
            ("GET / HTTP/1.1\r\nHost:", 400),
            ("GET / HTTP/1.0\r\nHost: a,b", 400),
        ];
        for (head, status) in bad {
            let err = req(head).expect_err(head);
            assert_eq!(err.client_status(), Some(*status), "{head}: {err}");
        }
    }

    #[test]
    fn response_framing_table() {
        use BodyFraming::*;
        let table: &[(&str, &str, BodyFraming)] = &[
            ("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5", Length(5)),
            ("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5", Empty),
            ("GET", "HTTP/1.1 204 No Content\r\nContent-Length: 5", Empty),
            (
                "GET",
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5",
                Empty,
            ),
            ("GET", "HTTP/1.1 100 Continue", Empty),
            (
                "GET",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                Chunked,
            ),
            (
                "GET",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9",
                Chunked,
            ),
            (
                "GET",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
                UntilClose,
            ),
            ("GET", "HTTP/1.1 200 OK", UntilClose),
            ("GET", "HTTP/1.0 200 OK", UntilClose),
        ];
        for (method, head, want) in table {
            let text = format!("{head}\r\n\r\n");
            let res = parse_response(text.as_bytes(), 100).unwrap();
            assert_eq!(response_framing(method, &res).unwrap(), *want, "{head}");
        }
    }
}
