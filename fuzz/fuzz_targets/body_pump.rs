//! The request body pump (`revproxy::http::pump`), which a full-duplex exchange uses instead
//! of `copy_body`: the two decoders must never frame one body differently, or the proxy would
//! forward something the origin reads as a different request.
//!
//! Properties, for a chunked body read in pieces of any size:
//! - the pump ends with the same verdict as `copy_body` (the same client status, or the same
//!   length) and leaves the same bytes after the body for the next request;
//! - what it wrote is a valid chunked body that decodes to the bytes `copy_body` decoded;
//! - every step moves on (it consumes input or ends), so the pump always ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revproxy::http::body::{copy_body, BodyError, Encoding};
use revproxy::http::pump::BodyPump;
use revproxy::http::{BodyFraming, BufStream, Limits};
use revproxy_fuzz::{step_from, Pieces};

type Verdict = Result<u64, Option<u16>>;

fn verdict(res: Result<u64, BodyError>) -> Verdict {
    res.map_err(|e| match e {
        BodyError::Sink(_) => panic!("writing to a Vec failed: {e}"),
        BodyError::Source(err) => err.client_status(),
        BodyError::TooLarge => Some(413),
    })
}

/// `copy_body`'s verdict, decoded bytes and the bytes left after the body.
fn copied(input: &[u8], step: usize) -> (Verdict, Vec<u8>, Vec<u8>) {
    let mut src = BufStream::new(Pieces::new(input, step));
    let mut out = Vec::new();
    let res = copy_body(
        &mut src,
        BodyFraming::Chunked,
        &mut out,
        Encoding::Raw,
        &Limits::default(),
        None,
    );
    let (reader, mut rest) = src.into_parts();
    rest.extend_from_slice(reader.unread());
    (verdict(res), out, rest)
}

/// The pump's verdict, what it wrote (chunked) and the bytes left after the body.
fn pumped(input: &[u8], step: usize) -> (Verdict, Vec<u8>, Vec<u8>) {
    let limits = Limits::default();
    let mut src = BufStream::new(Pieces::new(input, step));
    let mut out = Vec::new();
    let mut pump = BodyPump::new(BodyFraming::Chunked, u64::MAX).expect("a chunked body");
    // Each step consumes at least one byte or ends the body: bounded by the input.
    let mut res = Err(BodyError::Source(revproxy::http::HttpError::Truncated));
    for _ in 0..=input.len() + 1 {
        if pump.is_done() {
            res = Ok(pump.sent());
            break;
        }
        if let Err(err) = pump.step(&mut src, &mut out, &limits) {
            res = Err(err);
            break;
        }
    }
    assert!(
        pump.is_done() || res.is_err(),
        "the pump neither ended nor failed within {} steps",
        input.len() + 2
    );
    let (reader, mut rest) = src.into_parts();
    rest.extend_from_slice(reader.unread());
    (verdict(res), out, rest)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let step = step_from(first);
    let (want, decoded, want_rest) = copied(input, step);
    let (got, written, rest) = pumped(input, step);
    assert_eq!(got, want, "the pump and copy_body disagree");
    if got.is_ok() {
        assert_eq!(rest, want_rest, "bytes after the body differ");
        let (again, redecoded, extra) = copied(&written, 0);
        assert_eq!(
            again,
            Ok(decoded.len() as u64),
            "the pump wrote a bad chunked body"
        );
        assert_eq!(redecoded, decoded, "the pump changed the body");
        assert!(extra.is_empty(), "the pump wrote past the end of the body");
    }
});
