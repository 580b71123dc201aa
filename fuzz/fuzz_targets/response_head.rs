//! The response head parser, response framing, and the head the proxy sends to its client.
//!
//! Properties, for each of a few request methods and both client versions:
//! - the streaming reader in small pieces agrees with `parse_response` on the same bytes;
//! - a response the relay would forward (a final status, 200 to 599, with a framing it
//!   accepts) reaches the client as exactly one head with the same status and reason, whose
//!   framing the client reads the same way: no body stays no body, a length stays that length,
//!   chunked or until-close become chunked for HTTP/1.1 clients and until-close for 1.0;
//! - a connection the proxy will close says `Connection: close`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::http::framing::response_framing;
use revproxy::http::head::{parse_response, read_response_head, Headers, ResponseHead};
use revproxy::http::headers::{client_response, OutFraming};
use revproxy::http::{BodyFraming, BufStream, HttpError, Limits};
use revproxy_fuzz::{step_from, Pieces, HOP_BY_HOP};

/// The reader skips at most this many leading CR/LF bytes (`head::MAX_LEADING_EMPTY_BYTES`).
const MAX_LEADING: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    let mut stream = BufStream::new(Pieces::new(input, step_from(first)));
    let read = read_response_head(&mut stream, &limits, None);
    // The reader skips a few leading CR/LF bytes (shared with requests; an origin that sends
    // a stray CRLF after a body), the parser none.
    let leading = input
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if leading <= MAX_LEADING && input.len() < limits.max_head {
        let parsed = parse_response(&input[leading..], limits.max_headers);
        match (&read, &parsed) {
            (Ok(a), Ok(b)) => {
                // The reader stamps a `Date` on a response that has none (RFC 9110 section
                // 6.6.1); apart from that the two agree.
                let mut a = a.clone();
                if b.header("date").is_none() {
                    a.headers.retain(|h| !h.name.eq_ignore_ascii_case("date"));
                }
                assert_eq!(&a, b, "reader and parser disagree")
            }
            (Ok(_), Err(e)) => panic!("reader accepted a head the parser refuses: {e}"),
            (Err(e), Ok(_)) if !matches!(e, HttpError::Closed | HttpError::Truncated) => {
                panic!("reader refused ({e}) a head the parser accepts")
            }
            _ => {}
        }
    }
    let Ok(head) = read else {
        return;
    };
    // The relay passes on final responses only (`relay::read_final_head`).
    if !(200..=599).contains(&head.status) {
        return;
    }
    for method in ["GET", "HEAD", "POST"] {
        let Ok(framing) = response_framing(method, &head) else {
            continue;
        };
        for client_minor in [0, 1] {
            for client_keep_alive in [false, true] {
                check_forwarded(&head, method, framing, client_minor, client_keep_alive);
            }
        }
    }
});

fn check_forwarded(
    head: &ResponseHead,
    method: &str,
    framing: BodyFraming,
    client_minor: u8,
    client_keep_alive: bool,
) {
    // The same choice as `relay::relay_response`.
    let out_framing = match framing {
        BodyFraming::Empty => OutFraming::NoBody,
        BodyFraming::Length(n) => OutFraming::Length(n),
        _ if client_minor >= 1 => OutFraming::Chunked,
        _ => OutFraming::Close,
    };
    let keep_alive = client_keep_alive && out_framing != OutFraming::Close;
    let out = client_response(head, out_framing, keep_alive, client_minor, "revproxy");

    let limits = Limits {
        max_headers: head.headers.len() + 8,
        ..Limits::default()
    };
    let mut stream = BufStream::new(Pieces::new(&out, 0));
    let sent = read_response_head(&mut stream, &limits, None).unwrap_or_else(|e| {
        panic!(
            "head sent to the client does not parse ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert!(
        stream.buffered().is_empty() && stream.get_ref().unread().is_empty(),
        "bytes after the client's head"
    );
    assert_eq!(sent.status, head.status);
    assert_eq!(sent.reason, head.reason);
    assert_eq!(sent.minor_version, 1);

    let seen = response_framing(method, &sent).unwrap_or_else(|e| {
        panic!(
            "client cannot frame the head ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    let expected = match framing {
        BodyFraming::Empty => BodyFraming::Empty,
        BodyFraming::Length(n) => BodyFraming::Length(n),
        _ if client_minor >= 1 => BodyFraming::Chunked,
        _ => BodyFraming::UntilClose,
    };
    assert_eq!(seen, expected, "client frames the body differently");

    let closes = sent.has_token("connection", "close");
    assert_eq!(
        closes, !keep_alive,
        "Connection: close iff the proxy closes"
    );
    for name in HOP_BY_HOP {
        if *name != "connection" {
            assert!(sent.header(name).is_none(), "{name} forwarded");
        }
    }
}
