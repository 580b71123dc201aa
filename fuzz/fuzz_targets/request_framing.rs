//! Request framing decisions on header sets built from the names and value pieces that decide
//! framing (random bytes would almost never spell `Transfer-Encoding: chunked`).
//!
//! The head is written out and parsed with `parse_request`, so the target sees heads exactly
//! as the proxy does. Invariants, checked against the headers directly (not against
//! `framing.rs`'s own helpers):
//! - both Content-Length and Transfer-Encoding: refused;
//! - a Transfer-Encoding whose last coding is not `chunked`, or with `chunked` twice: refused;
//! - `Chunked` only for HTTP/1.1, with `chunked` the one and last coding;
//! - `Length(n)`: every Content-Length item is the decimal number n;
//! - `Empty`: neither header; and a head with neither header and a valid Host is accepted;
//! - accepted heads have exactly one Host (or none in HTTP/1.0);
//! - what `upstream_request` writes for an accepted head frames the same way, and refuses
//!   nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revproxy::http::framing::request_framing;
use revproxy::http::head::{parse_request, Headers, RequestHead};
use revproxy::http::headers::upstream_request;
use revproxy::http::target::valid_host;
use revproxy::http::BodyFraming;
use revproxy_fuzz::{forward_info, upstream_out_framing};

#[derive(Arbitrary, Debug)]
struct Input {
    http10: bool,
    headers: Vec<(Name, Vec<Piece>)>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
    /// A name from its bytes (the parser refuses what is not a token).
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Chunked,
    Gzip,
    Identity,
    Comma,
    Space,
    Tab,
    Number(u64),
    Digits(Vec<u8>),
    Byte(u8),
}

/// Spellings chosen by a fuzz byte: names are case-insensitive and each spelling must count.
fn spell(name: &Name, case: u8) -> Vec<u8> {
    let canonical: &[u8] = match name {
        Name::Host => b"Host",
        Name::ContentLength => b"Content-Length",
        Name::TransferEncoding => b"Transfer-Encoding",
        Name::Connection => b"Connection",
        Name::Expect => b"Expect",
        Name::Other(bytes) => return bytes.clone(),
    };
    match case % 3 {
        0 => canonical.to_vec(),
        1 => canonical.to_ascii_lowercase(),
        _ => canonical.to_ascii_uppercase(),
    }
}

fn value(pieces: &[Piece]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in pieces {
        match p {
            Piece::Chunked => v.extend_from_slice(b"chunked"),
            Piece::Gzip => v.extend_from_slice(b"gzip"),
            Piece::Identity => v.extend_from_slice(b"identity"),
            Piece::Comma => v.push(b','),
            Piece::Space => v.push(b' '),
            Piece::Tab => v.push(b'\t'),
            Piece::Number(n) => v.extend_from_slice(n.to_string().as_bytes()),
            Piece::Digits(d) => v.extend(d.iter().map(|b| b'0' + b % 10)),
            Piece::Byte(b) => v.push(*b),
        }
    }
    v
}

fn items(head: &RequestHead, name: &str) -> Vec<Vec<u8>> {
    head.values(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|item| item.trim_ascii().to_vec())
        .collect()
}

fn head_text(input: &Input) -> Vec<u8> {
    let mut text = Vec::new();
    text.extend_from_slice(b"POST /upload HTTP/1.");
    text.push(if input.http10 { b'0' } else { b'1' });
    text.extend_from_slice(b"\r\n");
    for (i, (name, pieces)) in input.headers.iter().enumerate() {
        text.extend_from_slice(&spell(name, i as u8));
        text.extend_from_slice(b": ");
        text.extend_from_slice(&value(pieces));
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    text
}

/// `FUZZ_SHOW=1` prints each head and its framing: the structured input is not readable as
/// bytes, so this is how a seed or a crash is read.
fn show() -> bool {
    static SHOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("FUZZ_SHOW").is_some())
}

fuzz_target!(|input: Input| {
    let text = head_text(&input);
    let Ok(head) = parse_request(&text, 100) else {
        return;
    };
    let result = request_framing(&head);
    if show() {
        eprintln!("{}=> {result:?}", String::from_utf8_lossy(&text));
    }

    let has_cl = head.header("content-length").is_some();
    let has_te = head.header("transfer-encoding").is_some();
    let hosts = head.values("host").count();
    let codings: Vec<Vec<u8>> = items(&head, "transfer-encoding")
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let is_chunked = |c: &Vec<u8>| c.eq_ignore_ascii_case(b"chunked");

    if has_cl && has_te {
        assert!(result.is_err(), "CL + TE accepted: {result:?}");
    }
    if has_te && (codings.last().is_none_or(|c| !is_chunked(c))) {
        assert!(result.is_err(), "TE not ending in chunked accepted");
    }
    if codings.iter().filter(|c| is_chunked(c)).count() > 1 {
        assert!(result.is_err(), "chunked twice accepted");
    }
    if hosts > 1 || (hosts == 0 && head.minor_version == 1) {
        assert!(result.is_err(), "{hosts} Host headers accepted");
    }
    // One Host, and a valid `uri-host [":" port]` (RFC 9112 section 3.2), or none in 1.0.
    let host_ok = (hosts == 1 && head.header("host").is_some_and(valid_host))
        || (hosts == 0 && head.minor_version == 0);
    if !has_cl && !has_te && host_ok {
        assert_eq!(result.as_ref().ok(), Some(&BodyFraming::Empty));
    }

    let Ok(framing) = result else {
        return;
    };
    match framing {
        BodyFraming::Chunked => {
            assert!(has_te && !has_cl && head.minor_version == 1);
            assert_eq!(codings.len(), 1, "only chunked is forwarded as chunked");
            assert!(is_chunked(&codings[0]));
        }
        BodyFraming::Length(n) => {
            assert!(has_cl && !has_te);
            for item in items(&head, "content-length") {
                let text = std::str::from_utf8(&item).expect("digits are ASCII");
                assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
                assert_eq!(text.parse::<u64>().ok(), Some(n), "{text:?} is not {n}");
            }
        }
        BodyFraming::Empty => assert!(!has_cl && !has_te),
        BodyFraming::UntilClose => panic!("a request is never read until close"),
    }

    let out = upstream_request(&head, &forward_info(), upstream_out_framing(framing));
    let sent = parse_request(&out, head.headers.len() + 8).unwrap_or_else(|e| {
        panic!(
            "forwarded head does not parse ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(
        request_framing(&sent).ok(),
        Some(framing),
        "forwarded head frames differently:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(sent.values("content-length").count() <= 1);
    assert!(sent.values("transfer-encoding").count() <= 1);
});
