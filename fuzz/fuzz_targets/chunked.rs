//! The chunked body decoder.
//!
//! Properties:
//! - decoding never yields more bytes than it was given, and reports what it wrote;
//! - the result does not depend on how the input is split into reads: in small pieces and in
//!   one read, the same bytes come out, the same bytes are left for the next message, and an
//!   error gets the same status;
//! - re-encoding the decoded bytes as chunked (what the proxy sends a HTTP/1.1 peer) and
//!   decoding that again gives the same bytes, and consumes exactly the re-encoded body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::http::body::{copy_body, BodyError, Encoding};
use revproxy::http::{BodyFraming, BufStream, Limits};
use revproxy_fuzz::{step_from, Pieces};

/// Decodes `input` as a chunked body read in pieces of `step`: the result, the decoded bytes,
/// and the bytes left unread after the body.
fn decode(input: &[u8], step: usize) -> (Result<u64, Option<u16>>, Vec<u8>, Vec<u8>) {
    let limits = Limits::default();
    let mut src = BufStream::new(Pieces::new(input, step));
    let mut out = Vec::new();
    let res = copy_body(
        &mut src,
        BodyFraming::Chunked,
        &mut out,
        Encoding::Raw,
        &limits,
        None,
    );
    let (rest_reader, mut rest) = src.into_parts();
    rest.extend_from_slice(rest_reader.unread());
    // Errors compare by the status the client gets: the message may differ with read sizes
    // (a short line check sees "line too long" before it sees the line end), the answer not.
    let res = res.map_err(|e| match e {
        BodyError::Sink(_) => panic!("writing to a Vec failed: {e}"),
        BodyError::Source(err) => err.client_status(),
        BodyError::TooLarge => Some(413),
    });
    (res, out, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let (res, out, rest) = decode(input, step_from(first));
    assert!(out.len() <= input.len(), "decoded more than the input");
    if let Ok(n) = res {
        assert_eq!(n, out.len() as u64, "reported length");
        assert!(out.len() + rest.len() <= input.len());
    }

    let (whole_res, whole_out, whole_rest) = decode(input, 0);
    assert_eq!(res, whole_res, "result depends on read sizes");
    if res.is_ok() {
        assert_eq!(out, whole_out, "body depends on read sizes");
        assert_eq!(
            rest, whole_rest,
            "bytes after the body depend on read sizes"
        );
    }

    // Re-encoding: the decoded body as the proxy would send it, chunked.
    let Ok(_) = res else {
        return;
    };
    let mut encoded = Vec::new();
    let mut src = BufStream::new(Pieces::new(&out, step_from(first)));
    let n = copy_body(
        &mut src,
        BodyFraming::Length(out.len() as u64),
        &mut encoded,
        Encoding::Chunked,
        &Limits::default(),
        None,
    )
    .expect("re-encoding a body held in memory");
    assert_eq!(n, out.len() as u64);
    let (res2, out2, rest2) = decode(&encoded, step_from(first));
    assert_eq!(
        res2,
        Ok(out.len() as u64),
        "re-encoded body does not decode"
    );
    assert_eq!(out2, out, "round trip changed the body");
    assert!(rest2.is_empty(), "re-encoded body not consumed exactly");
});
