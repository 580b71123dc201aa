//! A request body copied a step at a time, so that one thread can relay it and the response
//! at once (a full-duplex exchange: an origin that answers before it has read the whole
//! upload, or echoes it as it comes).
//!
//! [`copy_body`](super::body::copy_body) runs until the body ends, which is right when nothing
//! else has to happen meanwhile. A [`BodyPump`] keeps the decoder's place between calls
//! instead: each [`step`](BodyPump::step) reads from the sender at most once when nothing is
//! buffered, and passes on what it decoded, so its caller may wait on both peers between steps
//! (`poll(2)`) and never blocks on a sender that has nothing to say. The framing rules are the
//! same as `copy_body`'s (CRLF-only chunk lines, checked trailers, a size limit).

use std::io::{Read, Write};

use super::body::{
    buffer_line, parse_chunk_size, read_trailers, write_chunk, BodyError, Encoding, LAST_CHUNK,
};
use super::error::HttpError;
use super::framing::BodyFraming;
use super::limits::Limits;
use super::stream::BufStream;

/// Where the decoder stands in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `n` bytes of data left: the rest of a `Content-Length` body, or of one chunk.
    Data { left: u64, in_chunk: bool },
    /// Before a chunk-size line.
    ChunkLine,
    /// After a chunk's data, before its CRLF.
    ChunkEnd,
    /// Everything was read and passed on.
    Done,
}

/// A request body on its way from the client to the origin, one step at a time.
#[derive(Debug)]
pub struct BodyPump {
    place: Place,
    encoding: Encoding,
    max_body: u64,
    /// Decoded body bytes passed on so far.
    sent: u64,
    scratch: Vec<u8>,
}

impl BodyPump {
    /// A pump for a body with `framing`, written out raw (`Content-Length`) or chunked, as it
    /// came; `None` for a framing without a body to pump (empty, or until close, which a
    /// request never has).
    pub fn new(framing: BodyFraming, max_body: u64) -> Option<BodyPump> {
        let (place, encoding) = match framing {
            BodyFraming::Length(0) | BodyFraming::Empty | BodyFraming::UntilClose => return None,
            BodyFraming::Length(n) => (
                Place::Data {
                    left: n,
                    in_chunk: false,
                },
                Encoding::Raw,
            ),
            BodyFraming::Chunked => (Place::ChunkLine, Encoding::Chunked),
        };
        Some(BodyPump {
            place,
            encoding,
            max_body,
            sent: 0,
            scratch: Vec::new(),
        })
    }

    /// Whether the whole body was passed on.
    pub fn is_done(&self) -> bool {
        self.place == Place::Done
    }

    /// Decoded body bytes passed on so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Moves the body on by what is buffered, reading from `src` once if nothing is (so a
    /// caller that knows `src` is readable never waits, except for the rest of a chunk line
    /// that has started). A chunk-size line or the trailers are read whole.
    pub fn step<S: Read, W: Write + ?Sized>(
        &mut self,
        src: &mut BufStream<S>,
        dst: &mut W,
        limits: &Limits,
    ) -> Result<(), BodyError> {
        match self.place {
            Place::Done => Ok(()),
            Place::Data { left, in_chunk } => {
                if src.buffered().is_empty() {
                    match src.fill_more(0) {
                        Ok(0) => return Err(BodyError::Source(HttpError::Truncated)),
                        Ok(_) => {}
                        Err(err) => return Err(BodyError::Source(HttpError::from_read(err))),
                    }
                }
                let n = src
                    .buffered()
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                self.pass(&src.buffered()[..n], dst)?;
                src.consume(n);
                let left = left - n as u64;
                self.place = match (left, in_chunk) {
                    (0, true) => Place::ChunkEnd,
                    (0, false) => Place::Done,
                    (left, _) => Place::Data { left, in_chunk },
                };
                Ok(())
            }
            Place::ChunkLine => {
                let len = buffer_line(src, limits.max_chunk_line)?;
                let size = parse_chunk_size(&src.buffered()[..len]).map_err(BodyError::Source)?;
                src.consume(len);
                if size > 0 {
                    self.place = Place::Data {
                        left: size,
                        in_chunk: true,
                    };
                    return Ok(());
                }
                read_trailers(src, limits)?;
                dst.write_all(LAST_CHUNK).map_err(BodyError::Sink)?;
                dst.flush().map_err(BodyError::Sink)?;
                self.place = Place::Done;
                Ok(())
            }
            Place::ChunkEnd => {
                let len = buffer_line(src, 2)?;
                if &src.buffered()[..len] != b"\r\n" {
                    return Err(BodyError::Source(HttpError::BadSyntax(
                        "chunk data not followed by CRLF",
                    )));
                }
                src.consume(len);
                self.place = Place::ChunkLine;
                Ok(())
            }
        }
    }

    /// Passes decoded bytes on in the receiver's encoding, within the size limit.
    fn pass<W: Write + ?Sized>(&mut self, bytes: &[u8], dst: &mut W) -> Result<(), BodyError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.sent + bytes.len() as u64 > self.max_body {
            return Err(BodyError::TooLarge);
        }
        match self.encoding {
            Encoding::Raw => dst.write_all(bytes),
            Encoding::Chunked => write_chunk(dst, bytes, &mut self.scratch),
        }
        .map_err(BodyError::Sink)?;
        self.sent += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::tests::Trickle;

    /// Pumps `input` to the end (bounded), `step` bytes per read.
    fn pump(input: &[u8], framing: BodyFraming, step: usize) -> (Result<u64, BodyError>, Vec<u8>) {
        let mut src = BufStream::new(Trickle::new(input, step));
        let mut out = Vec::new();
        let Some(mut pump) = BodyPump::new(framing, 1 << 20) else {
            return (Ok(0), out);
        };
        for _ in 0..10_000 {
            if pump.is_done() {
                return (Ok(pump.sent()), out);
            }
            if let Err(err) = pump.step(&mut src, &mut out, &Limits::default()) {
                return (Err(err), out);
            }
        }
        panic!("the pump did not end");
    }

    #[test]
    fn bodies_come_out_as_they_went_in() {
        let chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        let cases: &[(&[u8], BodyFraming, &[u8], u64)] = &[
            (b"hello", BodyFraming::Length(5), b"hello", 5),
            (b"hello, and more", BodyFraming::Length(5), b"hello", 5),
            (
                chunked,
                BodyFraming::Chunked,
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                11,
            ),
            (b"0\r\n\r\n", BodyFraming::Chunked, b"0\r\n\r\n", 0),
        ];
        for &(input, framing, want, sent) in cases {
            for step in [1, 3, 64] {
                let (got, out) = pump(input, framing, step);
                assert_eq!(got.ok(), Some(sent), "{input:?} by {step}");
                // Chunk boundaries follow the reads; the decoded data does not.
                if step == 64 {
                    assert_eq!(out, want, "{input:?}");
                }
            }
        }
    }

    #[test]
    fn broken_bodies_blame_the_sender() {
        let cases: &[(&[u8], BodyFraming)] = &[
            (b"hel", BodyFraming::Length(5)),
            (b"5\r\nhel", BodyFraming::Chunked),
            (b"5\r\nhelloXY0\r\n\r\n", BodyFraming::Chunked),
            (b"5\nhello\r\n0\r\n\r\n", BodyFraming::Chunked),
            (b"zz\r\n", BodyFraming::Chunked),
        ];
        for &(input, framing) in cases {
            let (got, _) = pump(input, framing, 2);
            assert!(
                matches!(got, Err(BodyError::Source(_))),
                "{input:?}: {got:?}"
            );
        }
    }

    #[test]
    fn the_pump_and_copy_body_agree() {
        // Same verdict and byte count as the run-to-completion copy, for good and bad bodies
        // alike: the two must never frame one request differently (the fuzz target
        // `body_pump` checks the same on any input).
        let cases: &[(&[u8], BodyFraming)] = &[
            (b"abc", BodyFraming::Length(3)),
            (b"ab", BodyFraming::Length(3)),
            (b"3\r\nabc\r\n0\r\n\r\n", BodyFraming::Chunked),
            (b"3\r\nabc\r\n0\r\nA: b\r\n\r\n", BodyFraming::Chunked),
            (b"3\r\nabc\r\n0\r\nA b\r\n\r\n", BodyFraming::Chunked),
            (b"3\r\nabc\n0\r\n\r\n", BodyFraming::Chunked),
            (b"-1\r\n", BodyFraming::Chunked),
            (b"ffffffffffffffffff\r\n", BodyFraming::Chunked),
            (b"3\r\nabc\r\n0\r\n\n", BodyFraming::Chunked),
        ];
        let verdict = |r: &Result<u64, BodyError>| match r {
            Ok(n) => format!("ok {n}"),
            Err(BodyError::Source(_)) => "source".to_owned(),
            Err(BodyError::Sink(_)) => "sink".to_owned(),
            Err(BodyError::TooLarge) => "too large".to_owned(),
        };
        for &(input, framing) in cases {
            for step in [1, 2, 5, 100] {
                let mut src = BufStream::new(Trickle::new(input, step));
                let copied = crate::http::body::copy_body(
                    &mut src,
                    framing,
                    &mut Vec::new(),
                    Encoding::Raw,
                    &Limits::default(),
                    Some(1 << 20),
                );
                let (pumped, _) = pump(input, framing, step);
                assert_eq!(verdict(&pumped), verdict(&copied), "{input:?} by {step}");
            }
        }
    }

    #[test]
    fn a_body_past_the_limit_stops_before_the_excess_is_sent() {
        let mut src = BufStream::new(Trickle::new(b"0123456789", 64));
        let mut out = Vec::new();
        let mut pump = BodyPump::new(BodyFraming::Length(10), 4).unwrap();
        let got = pump.step(&mut src, &mut out, &Limits::default());
        assert!(matches!(got, Err(BodyError::TooLarge)));
        assert!(out.is_empty());
    }

    #[test]
    fn nothing_to_pump_for_an_empty_body() {
        assert!(BodyPump::new(BodyFraming::Length(0), 1).is_none());
        assert!(BodyPump::new(BodyFraming::Empty, 1).is_none());
    }
}
