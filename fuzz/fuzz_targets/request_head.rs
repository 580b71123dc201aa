//! The request head parser, read in pieces and in one go, and what the proxy forwards.
//!
//! Properties:
//! - `request_head_ready` says "ready" exactly when `read_request_head` can finish on the
//!   bytes it has (it must not send a worker to wait on a slow client, nor wait forever);
//! - the streaming reader, fed in small pieces, gives the same head as `parse_request` on the
//!   same bytes (after the few leading empty lines the reader is allowed to skip);
//! - a head that `request_framing` accepts is forwarded as exactly one head that re-parses to
//!   the same method, target and framing, with one Host and no hop-by-hop header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::http::framing::request_framing;
use revproxy::http::head::{
    parse_request, read_request_head, request_head_ready, HeadTimeouts, Headers, RequestHead,
};
use revproxy::http::headers::upstream_request;
use revproxy::http::{BodyFraming, BufStream, HttpError, Limits};
use revproxy_fuzz::{forward_info, step_from, upstream_out_framing, Pieces, HOP_BY_HOP};

/// The reader skips at most this many leading CR/LF bytes (`head::MAX_LEADING_EMPTY_BYTES`).
const MAX_LEADING: usize = 8;

const NO_TIMEOUTS: HeadTimeouts = HeadTimeouts {
    idle: None,
    whole: None,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();

    let mut stream = BufStream::new(Pieces::new(input, step_from(first)));
    let read = read_request_head(&mut stream, &limits, NO_TIMEOUTS);
    let ready = request_head_ready(input, &limits);
    let wanted_more = matches!(read, Err(HttpError::Closed | HttpError::Truncated));
    assert_eq!(
        ready, !wanted_more,
        "request_head_ready is {ready} but the reader ended with {read:?}"
    );

    let leading = input
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let within_limits = leading <= MAX_LEADING && input.len() < limits.max_head;
    if within_limits && !matches!(read, Err(HttpError::UriTooLong)) {
        let parsed = parse_request(&input[leading..], limits.max_headers);
        match (&read, &parsed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "reader and parser disagree"),
            (Ok(_), Err(e)) => panic!("reader accepted a head the parser refuses: {e}"),
            (Err(HttpError::Closed | HttpError::Truncated), _) => {}
            (Err(e), Ok(_)) => panic!("reader refused ({e}) a head the parser accepts"),
            (Err(_), Err(_)) => {}
        }
    }

    if let Ok(head) = read {
        check_forwarded(&head);
    }
});

fn check_forwarded(head: &RequestHead) {
    let Ok(framing) = request_framing(head) else {
        return;
    };
    let info = forward_info();
    let out = upstream_request(head, &info, upstream_out_framing(framing));

    // Exactly one head, nothing after it that the backend could take for a second request.
    let limits = Limits {
        max_headers: head.headers.len() + 8,
        ..Limits::default()
    };
    let mut stream = BufStream::new(Pieces::new(&out, 0));
    let sent = read_request_head(&mut stream, &limits, NO_TIMEOUTS).unwrap_or_else(|e| {
        panic!(
            "forwarded head does not parse ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert!(
        stream.buffered().is_empty() && stream.get_ref().unread().is_empty(),
        "bytes after the forwarded head"
    );

    assert_eq!(sent.method, head.method);
    assert_eq!(sent.target, head.target);
    assert_eq!(sent.minor_version, 1, "upstream always hears HTTP/1.1");
    let again = request_framing(&sent).unwrap_or_else(|e| {
        panic!(
            "forwarded head refused ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(again, framing, "framing changed on the way upstream");

    assert_eq!(sent.values("host").count(), 1, "one Host upstream");
    for name in HOP_BY_HOP {
        assert!(sent.header(name).is_none(), "{name} forwarded");
    }
    let has_te = sent.header("transfer-encoding").is_some();
    let has_cl = sent.header("content-length").is_some();
    match framing {
        BodyFraming::Chunked => assert!(has_te && !has_cl),
        BodyFraming::Length(_) => assert!(!has_te && has_cl),
        BodyFraming::Empty | BodyFraming::UntilClose => assert!(!has_te && !has_cl),
    }
    let xff = sent.values("x-forwarded-for").last().unwrap_or_default();
    assert!(
        xff.ends_with(info.client_ip.to_string().as_bytes()),
        "X-Forwarded-For must end with the client"
    );
}
