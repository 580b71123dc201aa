//! gzip and deflate of a body whose length the origin declared and which is small enough to
//! hold: the payload is gathered and compressed in one call by libdeflate, which has no
//! streaming interface and is faster than zlib at the levels most used, with smaller output
//! (`cargo run --release --example deflate_levels`, chapters/notes.md):
//!
//! - on text, twice zlib's speed at level 1 with 10% fewer bytes, 2.2 to 2.4 times at its
//!   own level 6 with the same size;
//! - on chapter 09's generated JSON, its weakest case, 1.4 to 1.6 times at level 1 with 8%
//!   fewer bytes, and about zlib's speed at its own level 6 with 11% fewer (so zlib's level 6
//!   is served by libdeflate's 5, below).
//!
//! From level 7 up libdeflate trades much more time for bytes than zlib does (at level 9,
//! over three times zlib's time on the JSON), so those levels stay on zlib's stream.
//!
//! A configured level names zlib's trade (nginx's `gzip_comp_level` means the same), so it
//! is served by libdeflate's level of the same number, except level 6, served by its 5
//! ([`libdeflate_level`] says why).
//!
//! Holding the body costs what the origin sends before the client gets anything, so it is
//! held only while the origin keeps sending: when the relay reports a pause (a slow origin),
//! what was gathered goes into a zlib stream ([`Deflater`]), which takes the rest piece by
//! piece as before, and the client gets a flushed prefix at once. So the gain is for bodies
//! that arrive faster than the proxy reads them (an origin on the same host or a fast
//! network); one that comes in pieces with pauses between goes to zlib at its first pause.

use std::io;

use libdeflater::{CompressionLvl, Compressor};

use super::deflater::{Deflater, Wrapper};
use crate::stock::Stock;

/// Largest declared length gathered whole: compressing it takes a few milliseconds at most,
/// the longest a client can wait for a first byte that streaming would have sent sooner.
pub const WHOLE_BODY_MAX: u64 = 256 * 1024;

/// Highest zlib level served by libdeflate (see the module's comment).
const HIGHEST_LEVEL: u32 = 6;

/// libdeflate's level for zlib's `level` (only 1 to `HIGHEST_LEVEL` reach libdeflate; the
/// others stream through zlib at their own number). At 6, libdeflate's own 6 is about zlib's
/// speed on JSON whose rows repeat almost word for word (0.93 to 1.04 of it on chapter 09's
/// body, 0.76 to 0.86 on a 20 KiB one), while its 5 is 1.4 to 3.7 times zlib's 6 on nine
/// bodies (JSON, HTML, CSS, JavaScript, Rust, Markdown), from 11.4% smaller to 1.6% larger
/// (`cargo run --release --example deflate_levels`; chapters/notes.md, "Kept: level 6 is
/// libdeflate's 5"). Levels 1 to 5 keep their number (notes.md has both libraries at each).
pub fn libdeflate_level(level: u32) -> u32 {
    match level {
        6 => 5,
        other => other,
    }
}

/// Compressors, with the buffer each writes into, and buffers to gather bodies in, kept
/// between responses. Made anew for each response, their few hundred KiB came from `malloc`
/// as fresh pages: 16 page faults a response (`perf stat`) and a tenth of the throughput.
/// At most about 11 MiB kept: eight compressors of up to 0.65 MiB (levels 2 to 6) with their
/// output buffers, and eight gathering buffers of up to 256 KiB.
const STOCK_MAX: usize = 8;

static WORKSPACES: Stock<Workspace> = Stock::new(STOCK_MAX);
static BODIES: Stock<Vec<u8>> = Stock::new(STOCK_MAX);

/// A compressor for one of libdeflate's levels, and the buffer it compresses into before the
/// output is copied (a tenth of the input's size, for text) to the caller.
struct Workspace {
    level: u32,
    compressor: Compressor,
    output: Vec<u8>,
}

/// One response's body, gathered, or streamed since the origin paused.
pub struct Whole {
    wrapper: Wrapper,
    level: u32,
    /// The declared length, bounded: what the gathering buffer is sized for.
    room: usize,
    state: State,
}

enum State {
    /// Empty, without a buffer, until the first payload (a HEAD never gets one).
    Gathering(Vec<u8>),
    Streaming(Deflater),
    /// Finished: the body's stream has ended.
    Done,
}

impl Whole {
    /// A gathering encoder, when a body of `declared` length at zlib `level` is compressed
    /// whole; `None` sends it to zlib's stream.
    pub fn for_body(wrapper: Wrapper, level: u32, declared: Option<u64>) -> Option<Whole> {
        let length = declared.filter(|&n| n <= WHOLE_BODY_MAX)?;
        (1..=HIGHEST_LEVEL).contains(&level).then(|| Whole {
            wrapper,
            level,
            room: usize::try_from(length).unwrap_or(0),
            state: State::Gathering(Vec::new()),
        })
    }

    pub fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.state {
            State::Gathering(body) => {
                if body.capacity() == 0 {
                    *body = take_body(self.room);
                }
                body.extend_from_slice(input);
                // More than declared comes only with a chunked body that also claims a
                // length (a Length-framed body is cut off at its length by the relay): it is
                // streamed, so nothing gathered outgrows the bound.
                if body.len() as u64 > WHOLE_BODY_MAX {
                    self.streaming(out)?;
                }
                Ok(())
            }
            State::Streaming(deflater) => deflater.data(input, out),
            State::Done => Err(io::Error::other("deflate: data after the end")),
        }
    }

    /// The origin paused: from here on the body is streamed, and what came so far is
    /// flushed to the client.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match self.streaming(out)? {
            Some(deflater) => deflater.flushed(&[], out),
            None => Ok(()),
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let ended = match &mut self.state {
            State::Gathering(body) => {
                let compressed = compress(self.wrapper, self.level, body, out);
                give_body(std::mem::take(body));
                compressed
            }
            State::Streaming(deflater) => deflater.finish(out),
            State::Done => Ok(()),
        };
        self.state = State::Done;
        ended
    }

    /// Moves to a zlib stream, giving it what was gathered; the stream, unless finished.
    fn streaming(&mut self, out: &mut Vec<u8>) -> io::Result<Option<&mut Deflater>> {
        if let State::Gathering(body) = &mut self.state {
            let mut deflater = Deflater::take(self.wrapper, self.level);
            deflater.data(body, out)?;
            give_body(std::mem::take(body));
            self.state = State::Streaming(deflater);
        }
        Ok(match &mut self.state {
            State::Streaming(deflater) => Some(deflater),
            _ => None,
        })
    }
}

impl Drop for Whole {
    fn drop(&mut self) {
        if let State::Gathering(body) = &mut self.state {
            give_body(std::mem::take(body));
        }
    }
}

/// A gathering buffer with room for `room` bytes: a kept one that has it if there is one
/// (so a body never outgrows a kept buffer into one too large to keep), else any kept one,
/// grown to exactly that.
fn take_body(room: usize) -> Vec<u8> {
    let mut body = BODIES
        .take(|b| b.capacity() >= room)
        .or_else(|| BODIES.take(|_| true))
        .unwrap_or_default();
    body.reserve_exact(room);
    body
}

/// Back to the stock, empty, unless it grew past what a gathered body may be.
fn give_body(mut body: Vec<u8>) {
    let capacity = body.capacity() as u64;
    if capacity > 0 && capacity <= WHOLE_BODY_MAX {
        body.clear();
        BODIES.give(body);
    }
}

/// `body` in `wrapper` at `level`, appended to `out` in one libdeflate call.
fn compress(wrapper: Wrapper, level: u32, body: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let served = libdeflate_level(level);
    let mut space = match WORKSPACES.take(|w| w.level == served) {
        Some(space) => space,
        None => Workspace::new(served)?,
    };
    let compressor = &mut space.compressor;
    let bound = match wrapper {
        Wrapper::Gzip => compressor.gzip_compress_bound(body.len()),
        Wrapper::Zlib => compressor.zlib_compress_bound(body.len()),
    };
    if space.output.len() < bound {
        space.output.resize(bound, 0);
    }
    let room = &mut space.output[..bound];
    let written = match wrapper {
        Wrapper::Gzip => compressor.gzip_compress(body, room),
        Wrapper::Zlib => compressor.zlib_compress(body, room),
    };
    let result = match written {
        Ok(n) => {
            out.extend_from_slice(&space.output[..n]);
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("libdeflate: {e:?}"))),
    };
    WORKSPACES.give(space);
    result
}

impl Workspace {
    /// A compressor at libdeflate's `level`.
    fn new(level: u32) -> io::Result<Workspace> {
        let lvl = i32::try_from(level)
            .ok()
            .and_then(|l| CompressionLvl::new(l).ok())
            .ok_or_else(|| io::Error::other(format!("libdeflate has no level {level}")))?;
        Ok(Workspace {
            level,
            compressor: Compressor::new(lvl),
            output: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..4000)
            .flat_map(|i| format!("{{\"id\":{i},\"tag\":\"t{}\"}},", i % 13).into_bytes())
            .collect()
    }

    fn decode(wrapper: Wrapper, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match wrapper {
            Wrapper::Gzip => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
            Wrapper::Zlib => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out),
        }
        .unwrap();
        out
    }

    #[test]
    fn a_gathered_body_is_one_stream_in_either_wrapper_at_every_level_it_takes() {
        let body = sample();
        for wrapper in [Wrapper::Gzip, Wrapper::Zlib] {
            for level in 1..=HIGHEST_LEVEL {
                let mut whole = Whole::for_body(wrapper, level, Some(body.len() as u64)).unwrap();
                let mut out = Vec::new();
                for piece in body.chunks(16 * 1024) {
                    whole.data(piece, &mut out).unwrap();
                }
                assert!(out.is_empty(), "nothing before the end");
                whole.finish(&mut out).unwrap();
                assert!(out.len() < body.len() / 4, "{wrapper:?} {level} compresses");
                assert_eq!(decode(wrapper, &out), body, "{wrapper:?} level {level}");
            }
        }
    }

    #[test]
    fn a_pause_flushes_what_came_and_streams_the_rest() {
        let body = sample();
        let (first, rest) = body.split_at(5000);
        let mut whole = Whole::for_body(Wrapper::Gzip, 6, Some(body.len() as u64)).unwrap();
        let mut out = Vec::new();
        whole.data(first, &mut out).unwrap();
        whole.flush(&mut out).unwrap();
        let mut prefix = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&out[..]);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = decoder.read(&mut buf) {
            prefix.extend_from_slice(&buf[..n]);
        }
        assert_eq!(prefix, first, "the flushed prefix decodes to what came");
        for piece in rest.chunks(3000) {
            whole.data(piece, &mut out).unwrap();
        }
        whole.finish(&mut out).unwrap();
        assert_eq!(decode(Wrapper::Gzip, &out), body);
    }

    #[test]
    fn more_than_the_bound_is_streamed_and_the_levels_above_six_are_not_gathered() {
        let big: Vec<u8> = sample().repeat(4);
        assert!(big.len() as u64 > WHOLE_BODY_MAX);
        let mut whole = Whole::for_body(Wrapper::Zlib, 1, Some(1000)).unwrap();
        let mut out = Vec::new();
        whole.data(&big, &mut out).unwrap();
        assert!(matches!(whole.state, State::Streaming(_)));
        whole.finish(&mut out).unwrap();
        assert_eq!(decode(Wrapper::Zlib, &out), big);
        let gathers = |level, declared| Whole::for_body(Wrapper::Gzip, level, declared).is_some();
        assert!(gathers(6, Some(WHOLE_BODY_MAX)) && gathers(1, Some(0)));
        assert!(!gathers(6, Some(WHOLE_BODY_MAX + 1)));
        assert!(!gathers(6, None));
        assert!(!gathers(7, Some(1000)));
    }

    #[test]
    fn level_six_is_libdeflates_five_and_the_others_their_own() {
        let body = sample();
        let libdeflate = |level: i32| {
            let mut compressor = Compressor::new(CompressionLvl::new(level).unwrap());
            let mut room = vec![0; compressor.gzip_compress_bound(body.len())];
            let n = compressor.gzip_compress(&body, &mut room).unwrap();
            room.truncate(n);
            room
        };
        for (configured, served) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 5)] {
            let declared = Some(body.len() as u64);
            let mut whole = Whole::for_body(Wrapper::Gzip, configured, declared).unwrap();
            let mut out = Vec::new();
            whole.data(&body, &mut out).unwrap();
            whole.finish(&mut out).unwrap();
            assert_eq!(out, libdeflate(served), "level {configured}");
        }
        assert_ne!(libdeflate(5), libdeflate(6), "the sample tells 5 from 6");
    }
}
